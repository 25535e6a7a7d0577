"""A layer's map, and the same samples mapped at every layer: the torch side of the fits.

Why it exists: the map and across-depth views show fits (:mod:`core.projections.fits`, arrays
only, run in the fit worker by the app) of layer features (:mod:`core.projections.features`,
which runs the model). These two analyses chain them for any caller with a model and a batch;
the app's cache runs the same two steps itself so that UMAP and t-SNE fit in the worker.

What can go wrong: an unknown layer (``KeyError``), too few samples for the method
(``ValueError``, from :func:`core.projections.fits.project`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from core.analysis import Batch, register
from core.projections import fits
from core.projections.features import FeatureOptions, layer_features, layers_features
from core.projections.report_card import report_layers

Method = Literal["UMAP", "PCA", "t-SNE"]


@dataclass(frozen=True)
class ProjectionOptions:
    """One layer's map (the map view's defaults)."""

    layer: str = ""  # a layer name or INPUT; "": the last layer before the logits
    method: Method = "UMAP"  # one of fits.METHODS
    dims: Literal[2, 3] = 2  # 2-D or 3-D coordinates
    seed: int = 0  # random state of the PCA pre-reduction and the fit


@dataclass(frozen=True)
class DepthOptions:
    """The same samples at several layers (the across-depth view's defaults)."""

    layers: tuple[str, ...] = ()  # shallow to deep; (): report_card.report_layers(model)
    method: Method = "PCA"  # one of fits.METHODS
    dims: Literal[2, 3] = 2  # 2-D or 3-D coordinates
    seed: int = 0  # random state of every PCA and fit


@register("projections.projection", family="projections", title="Map", options=ProjectionOptions)
def projection(
    model: nn.Module,
    batch: Batch,
    options: ProjectionOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> fits.Projection:
    """``options.method`` of one layer's features over ``batch``: ``coords [N, dims]``."""
    features = layer_features(
        model, batch, FeatureOptions(options.layer, seed=options.seed), progress=progress
    )
    return fits.project(features.features, options.method, options.dims, seed=options.seed)


@register(
    "projections.depth_projection",
    family="projections",
    title="Across depth",
    options=DepthOptions,
)
def depth_projection(
    model: nn.Module,
    batch: Batch,
    options: DepthOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> fits.DepthProjection:
    """The samples of ``batch`` mapped at each layer, each map aligned to the one before.

    Returns:
        :class:`core.projections.fits.DepthProjection` with ``coords [L, N, dims]``.
    """
    layers = options.layers or tuple(report_layers(model, batch.images.shape[1:]))
    features = layers_features(model, batch.images, layers, seed=options.seed, progress=progress)
    return fits.project_depth(
        [f.features for f in features], layers, options.method, options.dims, seed=options.seed
    )
