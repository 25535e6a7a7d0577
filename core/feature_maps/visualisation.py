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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.activations import layer_output
from core.device import model_device
from core.feature_maps.maps import check_channel
from core.hooks import get_module

PARAMETERISATIONS = ("fourier", "pixel")
_RECTIFIERS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU)

IMAGENET_COLOUR_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
"""Square root of ImageNet's RGB covariance, as in Lucid: the default colour decorrelation."""


@dataclass(frozen=True)
class FeatureVisConfig:
    """How to synthesise an input.

    Attributes:
        steps: optimisation steps.
        lr: Adam learning rate.
        jitter: largest random shift per step, in pixels.
        scale: largest random zoom per step, as a fraction (0.05: 0.95x to 1.05x).
        rotate: largest random rotation per step, in degrees.
        parameterisation: ``fourier`` (scaled spectrum) or ``pixel``.
        decorrelate: optimise in a decorrelated colour space (3-channel inputs only).
        seed: random seed for the start image and the transformations.
    """

    steps: int = 128
    lr: float = 0.05
    jitter: int = 2
    scale: float = 0.05
    rotate: float = 5.0
    parameterisation: str = "fourier"
    decorrelate: bool = True
    seed: int = 0


@dataclass(frozen=True)
class FeatureVis:
    """The result of :func:`visualise_channel`.

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
    image: torch.Tensor, config: FeatureVisConfig, generator: torch.Generator
) -> torch.Tensor:
    """One random shift, zoom and rotation of ``[1, C, H, W]`` (reflected at the borders)."""
    u = torch.rand(4, generator=generator) * 2 - 1
    scale = 1.0 + config.scale * float(u[0])
    angle = math.radians(config.rotate * float(u[1]))
    h, w = image.shape[-2:]
    shift_x, shift_y = 2 * config.jitter * float(u[2]) / w, 2 * config.jitter * float(u[3]) / h
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[[cos, -sin, shift_x], [sin, cos, shift_y]]], device=image.device)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, padding_mode="reflection", align_corners=False)


def _channel_mean(output: torch.Tensor, channel: int, layer: str) -> torch.Tensor:
    """The mean of one channel of a layer's batch output (``[N, C, ...]``, or tokens
    ``[N, T, D]`` with ``channel`` indexing ``D``)."""
    units = output.transpose(1, 2) if output.ndim == 3 else output
    check_channel(units.shape[1], channel, layer)
    return units[:, channel].mean()


def visualise_channel(
    model: nn.Module,
    layer: str,
    channel: int,
    input_shape: Sequence[int],
    config: FeatureVisConfig | None = None,
    *,
    colour: np.ndarray | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> FeatureVis:
    """Synthesises an input that maximises the mean activation of ``layer``'s ``channel``.

    Args:
        model: the model (only read; its lock is taken once per step).
        layer: a ``named_modules()`` name.
        channel: the channel of a conv layer, or the unit of a fully connected one.
        input_shape: the model's ``(C, H, W)``.
        config: steps and regularisers (default :class:`FeatureVisConfig`).
        colour: ``[3, 3]`` colour square root (see :func:`colour_sqrt`); default ImageNet's.
        progress: called as ``progress(step, steps, objective)`` after each step.

    Raises:
        ValueError: channel out of range, unknown parameterisation.
    """
    config = config or FeatureVisConfig()
    if config.parameterisation not in PARAMETERISATIONS:
        raise ValueError(
            f"Unknown parameterisation {config.parameterisation!r}: "
            f"use one of {', '.join(PARAMETERISATIONS)}."
        )
    generator = torch.Generator().manual_seed(config.seed)
    use_colour = config.decorrelate and input_shape[0] == 3
    basis = (colour if colour is not None else IMAGENET_COLOUR_SQRT) if use_colour else None
    device = model_device(model)
    image = _Image(input_shape, config.parameterisation, basis, generator).to(device)
    optimiser = torch.optim.Adam(image.parameters(), lr=config.lr)

    # A ReLU channel that is zero for the start image has zero gradient: ascend its input.
    pre_activation = isinstance(get_module(model, layer), _RECTIFIERS)

    def activation(x: torch.Tensor, before: bool = False) -> torch.Tensor:
        return _channel_mean(layer_output(model, x, layer, before=before), channel, layer)

    with torch.no_grad():
        start = float(activation(image()))
    values = []
    for step in range(config.steps):
        with torch.enable_grad():
            transformed = _random_transform(image(), config, generator)
            objective = activation(transformed, before=pre_activation)
            (grad,) = torch.autograd.grad(-objective, image.raw)
        image.raw.grad = grad
        optimiser.step()
        values.append(float(objective.detach()))
        if progress is not None:
            progress(step + 1, config.steps, values[-1])
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
