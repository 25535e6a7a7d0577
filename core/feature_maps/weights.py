"""A model's first-layer weights seen as images: convolution filters, or an MLP's input weights.

They read weights only, so they cost no forward pass; the batch an analysis gets is only looked
at for the input's shape. What can go wrong: a model without a convolution (no filters), a first
fully connected layer that does not read the flattened pixels (its weights are not images).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from core.activations import LayerInfo
from core.analysis import COMPATIBLE, Batch, Compatibility, register


@dataclass(frozen=True)
class WeightsOptions:
    """No options: the weights shown are the model's first convolution or first linear layer."""


@dataclass(frozen=True)
class WeightImages:
    """A layer's weights seen as images in its input space.

    Attributes:
        layer: the layer's name.
        weights: ``[K, C, H, W]`` the raw weights, one image per output unit or filter.
        images: ``[K, C, H, W]`` in ``[0, 1]``, each scaled on its own so that 0.5 is zero
            weight and 0 or 1 its largest magnitude.
    """

    layer: str
    weights: np.ndarray
    images: np.ndarray


def _as_images(weights: np.ndarray) -> np.ndarray:
    peak = np.abs(weights).reshape(len(weights), -1).max(axis=1)
    peak = np.where(peak > 0, peak, 1.0).reshape(-1, 1, 1, 1)
    return (0.5 + weights / (2 * peak)).astype(np.float32)


def _first(model: nn.Module, kind: type[nn.Module], what: str) -> tuple[str, nn.Module]:
    for name, module in model.named_modules():
        if isinstance(module, kind):
            return name, module
    raise ValueError(f"This model has no {what}.")


def has_convolution(layers: Sequence[LayerInfo]) -> Compatibility:
    """Whether the model has a convolution, whose filters :func:`first_conv_filters` shows."""
    if any(la.type == "Conv2d" for la in layers):
        return COMPATIBLE
    return Compatibility(False, "This model has no convolutional layer, so no filters.")


def reads_pixels(layers: Sequence[LayerInfo]) -> Compatibility:
    """Whether the model's first layer with weights is fully connected (so it reads the
    flattened pixels and :func:`input_weights` can show its weights as images)."""
    first = next((la for la in layers if la.params), None)
    if first is not None and first.type == "Linear":
        return COMPATIBLE
    return Compatibility(
        False, "This model's first layer with weights is not fully connected on the pixels."
    )


@register(
    "feature_maps.first_conv_filters",
    family="feature_maps",
    title="First-layer filters",
    options=WeightsOptions,
    is_compatible=has_convolution,
)
def first_conv_filters(
    model: nn.Module,
    batch: Batch,
    options: WeightsOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> WeightImages:
    """The first convolution's filters as images: the learned edge and colour detectors.

    Filters over 1 or 3 input channels are grey or RGB images; over other channel counts,
    the mean over input channels (grey). ``batch`` is not read.

    Raises:
        ValueError: the model has no ``nn.Conv2d``.
    """
    name, conv = _first(model, nn.Conv2d, "convolutional layer")
    weights = conv.weight.detach().float().cpu().numpy()
    if weights.shape[1] not in (1, 3):
        weights = weights.mean(axis=1, keepdims=True)
    return WeightImages(name, weights, _as_images(weights))


@register(
    "feature_maps.input_weights",
    family="feature_maps",
    title="Input weights of a fully connected first layer",
    options=WeightsOptions,
    is_compatible=reads_pixels,
)
def input_weights(
    model: nn.Module,
    batch: Batch,
    options: WeightsOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> WeightImages:
    """An MLP's first layer: each unit's weights as an image ``[C, H, W]`` in input space.

    Only the shape of ``batch``'s images is read.

    Raises:
        ValueError: the first ``nn.Linear`` does not read the flattened input.
    """
    name, linear = _first(model, nn.Linear, "fully connected layer")
    c, h, w = batch.images.shape[1:]
    if linear.in_features != c * h * w:
        raise ValueError(
            f"The first fully connected layer ({name!r}) reads {linear.in_features} features, "
            f"not the {c * h * w} input pixels, so its weights are not images."
        )
    weights = linear.weight.detach().float().cpu().numpy().reshape(-1, c, h, w)
    return WeightImages(name, weights, _as_images(weights))
