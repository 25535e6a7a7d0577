"""The first convolution's filters at every checkpoint: edges and colour blobs forming.

Reuses :func:`core.feature_maps.weights.first_conv_filters` on the model at each checkpoint.
Each filter is scaled on its own at each checkpoint (0.5 is zero weight), so a filter's
pattern is comparable across checkpoints, its size is not: :attr:`FilterFrames.norms` says it.

What can go wrong: a model without a convolution (the analysis does not apply).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from core.analysis import Batch, register
from core.feature_maps.weights import WeightsOptions, first_conv_filters, has_convolution
from core.training.checkpoints import State, at_checkpoints


@dataclass(frozen=True)
class FilterOptions:
    """No options: the first convolution's filters."""


@dataclass(frozen=True)
class FilterFrames:
    """The first convolution's filters at each checkpoint.

    Attributes:
        layer: the convolution's name.
        images: ``[T, K, C, H, W]`` in ``[0, 1]`` (see ``WeightImages.images``).
        norms: ``[T, K]`` each filter's L2 norm.
    """

    layer: str
    images: np.ndarray
    norms: np.ndarray


@register(
    "training.filters",
    family="training",
    title="First-layer filters over training",
    options=FilterOptions,
    is_compatible=has_convolution,
)
def filters_over_training(
    model: nn.Module,
    batch: Batch,
    options: FilterOptions,
    *,
    checkpoints: Sequence[State] = (),
    progress: Callable[[int, int], None] | None = None,
) -> FilterFrames:
    """The first convolution's filters as images, at every checkpoint."""
    layer, images, norms = "", [], []
    for net in at_checkpoints(model, checkpoints):  # one model reloaded: read it at each step
        frame = first_conv_filters(net, batch, WeightsOptions())
        layer = frame.layer
        images.append(frame.images.copy())
        norms.append(np.linalg.norm(frame.weights.reshape(len(frame.weights), -1), axis=1))
    return FilterFrames(layer, np.stack(images), np.stack(norms).astype(np.float32))
