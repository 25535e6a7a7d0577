"""Feature visualisation by optimisation: an input synthesised to drive one channel up.

Plain gradient ascent on pixels finds high-frequency patterns that excite a unit without
looking like anything (Olah et al., "Feature Visualization", Distill 2017). The usual
regularisers are used here: the image is parameterised in a scaled Fourier basis (low
frequencies move faster) with decorrelated colour, squashed into ``[0, 1]`` by a sigmoid, and
every step sees a randomly jittered, scaled and rotated copy, so only patterns that survive
small transformations are reinforced. For a ReLU layer the ascent follows the ReLU's input, since
a channel at zero for the start image has no gradient.

The model is only read: gradients are taken with ``torch.autograd.grad`` with respect to the
image parameters, so nothing accumulates in the (shared) model's ``.grad``; the pass stops at
the target layer. What can go wrong: a channel out of range, an unknown parameterisation, a
layer whose activation does not depend on the input (the objective stays flat; ``gain`` says so).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.activations import layer_output
from core.analysis import Batch, Inputs, register
from core.device import model_device
from core.feature_maps.maps import check_channel, resolve_layer
from core.hooks import get_module

Parameterisation = Literal["fourier", "pixel"]
PARAMETERISATIONS: tuple[str, ...] = typing.get_args(Parameterisation)

COLOUR_INPUTS = Inputs(split="train", n=512)
"""The images whose colour covariance decorrelates colour (a class-stratified sample)."""

_RECTIFIERS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU)

IMAGENET_COLOUR_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
"""Square root of ImageNet's RGB covariance, as in Lucid: used without images with colour."""


@dataclass(frozen=True)
class FeatureVisOptions:
    """Which unit to excite, and how to synthesise the input that does."""

    layer: str = ""  # a named_modules() name; "": the first convolution, else the first layer
    channel: int = 0  # the channel of a conv layer, the unit of a fully connected one
    steps: int = 128  # optimisation steps
    lr: float = 0.05  # Adam learning rate
    jitter: int = 2  # largest random shift per step, in pixels
    scale: float = 0.05  # largest random zoom per step, a fraction (0.05: 0.95x to 1.05x)
    rotate: float = 5.0  # largest random rotation per step, in degrees
    parameterisation: Parameterisation = "fourier"  # scaled spectrum, or raw pixels
    decorrelate: bool = True  # optimise in a decorrelated colour space (3-channel inputs only)
    seed: int = 0  # the start image and the random transformations
    direction: tuple[float, ...] = ()  # not empty: excite this direction of the channels instead


@dataclass(frozen=True)
class FeatureVis:
    """The result of :func:`feature_vis`.

    Attributes:
        layer: the layer's name.
        channel: the channel (or unit).
        image: ``[C, H, W]`` the synthesised input in ``[0, 1]``.
        objective: ``[steps]`` what each step ascended: the channel's mean activation on the
            transformed input the step saw (for a ReLU layer, its input: the pre-activation).
        start: the channel's mean activation for the start image (untransformed).
        final: the same for the result.
    """

    layer: str
    channel: int
    image: np.ndarray
    objective: np.ndarray
    start: float
    final: float

    @property
    def gain(self) -> float:
        """How much the optimisation raised the activation."""
        return self.final - self.start


def colour_sqrt(images: np.ndarray) -> np.ndarray:
    """The square root of an image set's RGB covariance, for decorrelating colour.

    Args:
        images: ``[N, 3, H, W]``.

    Returns:
        ``[3, 3]`` matrix ``U sqrt(S)`` of the covariance's eigen-decomposition.
    """
    pixels = images.transpose(1, 0, 2, 3).reshape(3, -1)
    eigenvalues, vectors = np.linalg.eigh(np.cov(pixels))
    return (vectors * np.sqrt(np.clip(eigenvalues, 0, None))).astype(np.float32)


def _colour_basis(images: np.ndarray) -> np.ndarray:
    """``[3, 3]``: :func:`colour_sqrt` of ``images``, or ImageNet's when they are none or grey."""
    basis = colour_sqrt(images) if len(images) else IMAGENET_COLOUR_SQRT
    return basis if np.any(basis) else IMAGENET_COLOUR_SQRT


class _Image(nn.Module):
    """A ``[1, C, H, W]`` image in ``[0, 1]`` from free parameters."""

    def __init__(
        self,
        shape: Sequence[int],
        parameterisation: str,
        colour: np.ndarray | None,
        generator: torch.Generator,
    ):
        super().__init__()
        c, h, w = shape
        self.size = (h, w)
        if parameterisation == "fourier":
            fy = torch.fft.fftfreq(h)[:, None]
            fx = torch.fft.rfftfreq(w)[None, :]
            frequencies = torch.sqrt(fx * fx + fy * fy)
            self.register_buffer("spectrum_scale", 1.0 / frequencies.clamp(min=1.0 / max(h, w)))
            init = torch.randn(1, c, h, w // 2 + 1, 2, generator=generator) * 0.01
        else:
            init = torch.randn(1, c, h, w, generator=generator) * 0.01
        self.parameterisation = parameterisation
        self.raw = nn.Parameter(init)
        if colour is not None:
            colour = colour / np.linalg.norm(colour, axis=0).max()
            self.register_buffer("colour", torch.from_numpy(colour.astype(np.float32)))
        else:
            self.colour = None

    def forward(self) -> torch.Tensor:
        if self.parameterisation == "fourier":
            spectrum = torch.view_as_complex(self.raw) * self.spectrum_scale
            x = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / 4.0
        else:
            x = self.raw
        if self.colour is not None:
            x = torch.einsum("nchw,dc->ndhw", x, self.colour)
        return torch.sigmoid(x)


def _random_transform(
    image: torch.Tensor, options: FeatureVisOptions, generator: torch.Generator
) -> torch.Tensor:
    """One random shift, zoom and rotation of ``[1, C, H, W]`` (reflected at the borders)."""
    u = torch.rand(4, generator=generator) * 2 - 1
    scale = 1.0 + options.scale * float(u[0])
    angle = math.radians(options.rotate * float(u[1]))
    h, w = image.shape[-2:]
    shift_x, shift_y = 2 * options.jitter * float(u[2]) / w, 2 * options.jitter * float(u[3]) / h
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[[cos, -sin, shift_x], [sin, cos, shift_y]]], device=image.device)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, padding_mode="reflection", align_corners=False)


def _channel_mean(
    output: torch.Tensor, channel: int, layer: str, direction: tuple[float, ...] = ()
) -> torch.Tensor:
    """The mean of one channel of a layer's batch output (``[N, C, ...]``, or tokens
    ``[N, T, D]`` with ``channel`` indexing ``D``); with a ``direction`` (``C`` numbers, e.g.
    an SAE feature's), the mean over positions of the channel vectors' projection on it."""
    units = output.transpose(1, 2) if output.ndim == 3 else output
    if direction:
        if len(direction) != units.shape[1]:
            raise ValueError(
                f"The direction has {len(direction)} values; {layer} has {units.shape[1]} channels."
            )
        weights = torch.tensor(direction, dtype=units.dtype, device=units.device)
        return torch.einsum("nc...,c->n...", units, weights).mean()
    check_channel(units.shape[1], channel, layer)
    return units[:, channel].mean()


@register(
    "feature_maps.feature_vis",
    family="feature_maps",
    title="Feature visualisation",
    options=FeatureVisOptions,
)
def feature_vis(
    model: nn.Module,
    batch: Batch,
    options: FeatureVisOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureVis:
    """Synthesises an input that maximises the mean activation of a layer's channel.

    Args:
        model: the model (only read; its lock is taken once per step).
        batch: images in the model's input shape; their colour covariance decorrelates colour
            (see :func:`colour_sqrt` and :data:`COLOUR_INPUTS`; ImageNet's for no images or
            grey ones).
        options: the unit, steps and regularisers.
        progress: called as ``progress(step, steps)`` after each step.

    Raises:
        ValueError: channel out of range, unknown parameterisation.
    """
    if options.parameterisation not in PARAMETERISATIONS:
        raise ValueError(
            f"Unknown parameterisation {options.parameterisation!r}: "
            f"use one of {', '.join(PARAMETERISATIONS)}."
        )
    input_shape = tuple(batch.images.shape[1:])
    layer = resolve_layer(model, input_shape, options.layer)
    channel = options.channel
    generator = torch.Generator().manual_seed(options.seed)
    basis = _colour_basis(batch.images) if options.decorrelate and input_shape[0] == 3 else None
    device = model_device(model)
    image = _Image(input_shape, options.parameterisation, basis, generator).to(device)
    optimiser = torch.optim.Adam(image.parameters(), lr=options.lr)

    # A ReLU channel that is zero for the start image has zero gradient: ascend its input.
    pre_activation = isinstance(get_module(model, layer), _RECTIFIERS)

    def activation(x: torch.Tensor, before: bool = False) -> torch.Tensor:
        output = layer_output(model, x, layer, before=before)
        return _channel_mean(output, channel, layer, options.direction)

    with torch.no_grad():
        start = float(activation(image()))
    values = []
    for step in range(options.steps):
        with torch.enable_grad():
            transformed = _random_transform(image(), options, generator)
            objective = activation(transformed, before=pre_activation)
            (grad,) = torch.autograd.grad(-objective, image.raw)
        image.raw.grad = grad
        optimiser.step()
        values.append(float(objective.detach()))
        if progress is not None:
            progress(step + 1, options.steps)
    with torch.no_grad():
        result = image()
        final = float(activation(result))
    return FeatureVis(
        layer=layer,
        channel=channel,
        image=result[0].cpu().numpy(),
        objective=np.asarray(values, dtype=np.float32),
        start=start,
        final=final,
    )
