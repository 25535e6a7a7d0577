"""A layer's output over many inputs as a feature matrix ``[N, d]``, PCA-reduced when wide.

This is the torch side of a projection: it runs the model. :mod:`core.projections.fits` (the fits)
needs no torch, so the fit worker process (:mod:`core.worker`) stays small. Memory stays
bounded for wide layers over many samples: the PCA is fitted on a sample of rows, then every
batch is captured and reduced in turn.

Registered analyses: ``projections.layer_features`` (:func:`layer_features`) and, on top of it,
the map and across-depth projections (:mod:`core.projections.maps`).

What can go wrong: an unknown layer (``KeyError`` naming the layers that exist).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.activations import capture, capture_dataset
from core.analysis import Batch, register
from core.projections.fits import MAX_INPUT_DIMS
from core.projections.report_card import default_layer, report_layers
from core.threads import limited_threads

PCA_FIT_SAMPLES = 5_000
""":func:`layer_features` fits its PCA on at most this many samples, then streams the rest."""
CAPTURE_BYTES = 256 * 2**20
""":func:`layers_features` captures as many layers per forward pass as fit in this."""


@dataclass(frozen=True)
class FeatureInfo:
    """What :class:`LayerFeatures` says about a layer, without the features (a few bytes).

    Attributes:
        layer_dims: flattened width of the layer's output (``D``).
        pca_dims: the reduced width, or ``None`` when the layer was not reduced.
        explained_variance: fraction of the variance the kept components hold.
    """

    layer_dims: int
    pca_dims: int | None
    explained_variance: float


@dataclass(frozen=True)
class LayerFeatures:
    """A layer's output as rows, reduced when wide.

    Attributes:
        features: ``[N, d]`` float32, ``d <= max_dims``.
        layer_dims: flattened width of the layer's output (``D``).
        pca_dims: ``d`` when PCA reduced the layer, ``None`` when ``features`` is the layer.
        explained_variance: fraction of the variance the kept components hold (1.0 unreduced).
    """

    features: np.ndarray
    layer_dims: int
    pca_dims: int | None
    explained_variance: float

    @property
    def info(self) -> FeatureInfo:
        """The widths and explained variance, without the features."""
        return FeatureInfo(self.layer_dims, self.pca_dims, self.explained_variance)


@dataclass(frozen=True)
class FeatureOptions:
    """Which layer :func:`layer_features` reads, and how wide its rows may be."""

    layer: str = ""  # a layer name or INPUT; "": the last layer before the logits
    max_dims: int = MAX_INPUT_DIMS  # wider layers are PCA-reduced to this
    seed: int = 0  # PCA's random state
    batch_size: int = 256  # samples per forward pass


def feature_layer(model: nn.Module, batch: Batch, layer: str) -> str:
    """``layer``, or for ``""`` the default one (:func:`.report_card.default_layer`)."""
    return layer or default_layer(report_layers(model, batch.images.shape[1:]))


@register(
    "projections.layer_features",
    family="projections",
    title="Layer features",
    options=FeatureOptions,
)
def layer_features(
    model: nn.Module,
    batch: Batch,
    options: FeatureOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> LayerFeatures:
    """A layer's output over ``batch``, PCA-reduced to ``options.max_dims`` when wider.

    Args:
        model: the model.
        batch: ``[N, C, H, W]`` inputs.
        options: the layer, the width, PCA's seed, the batch size (:class:`FeatureOptions`).
        progress: called as ``progress(done, total)``.

    Returns:
        :class:`LayerFeatures` with ``features [N, min(D, max_dims)]``.
    """
    layer = feature_layer(model, batch, options.layer)
    return _stream(
        model, batch.images, layer, options.max_dims, options.seed, options.batch_size, progress
    )


def _stream(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    layer: str,
    max_dims: int,
    seed: int,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> LayerFeatures:
    """A layer's output over ``images``, PCA-reduced to ``max_dims`` when wider.

    Memory stays bounded for wide layers over many samples: the PCA is fitted on at most
    :data:`PCA_FIT_SAMPLES` samples (evenly spaced; all of them when fewer), then every batch
    is captured and reduced in turn. With ``N <= PCA_FIT_SAMPLES`` the result equals
    ``PCA(max_dims, random_state=seed).fit_transform`` of the flattened layer.
    """
    n = len(images)

    def rows(idx: np.ndarray | slice) -> np.ndarray:
        return capture(model, images[idx], [layer]).arrays[layer].reshape(len(images[idx]), -1)

    first = rows(slice(0, min(n, batch_size)))
    width = first.shape[1]
    pca = None
    if width > max_dims:
        fit_idx = np.linspace(0, n - 1, min(n, PCA_FIT_SAMPLES)).round().astype(int)
        fit_rows = np.concatenate(
            [rows(fit_idx[s : s + batch_size]) for s in range(0, len(fit_idx), batch_size)]
        )
        from sklearn.decomposition import PCA  # here: seconds to import, not needed before

        with limited_threads():
            pca = PCA(n_components=min(max_dims, *fit_rows.shape), random_state=seed)
            pca.fit(fit_rows)
        del fit_rows
    out = np.empty((n, width if pca is None else pca.n_components_), np.float32)
    for start in range(0, n, batch_size):
        part = first if start == 0 else rows(slice(start, start + batch_size))
        out[start : start + len(part)] = part if pca is None else pca.transform(part)
        if progress is not None:
            progress(min(start + batch_size, n), n)
    explained = 1.0 if pca is None else float(pca.explained_variance_ratio_.sum())
    return LayerFeatures(out, width, None if pca is None else out.shape[1], explained)


def _reduce(rows: np.ndarray, max_dims: int, seed: int) -> LayerFeatures:
    rows = rows.reshape(len(rows), -1)
    width = rows.shape[1]
    if width <= max_dims:
        return LayerFeatures(np.ascontiguousarray(rows, np.float32), width, None, 1.0)
    from sklearn.decomposition import PCA

    with limited_threads():
        pca = PCA(n_components=min(max_dims, *rows.shape), random_state=seed)
        pca.fit(rows)
        out = pca.transform(rows).astype(np.float32)
    return LayerFeatures(out, width, out.shape[1], float(pca.explained_variance_ratio_.sum()))


def layers_features(
    model: nn.Module,
    images: np.ndarray,
    layers: Sequence[str],
    *,
    max_dims: int = MAX_INPUT_DIMS,
    seed: int = 0,
    capture_bytes: int = CAPTURE_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> list[LayerFeatures]:
    """:func:`layer_features` of several layers, with as few forward passes as memory allows.

    Layers are captured together, as many per pass as fit ``capture_bytes`` for all
    ``images``; each is then reduced like :func:`layer_features` (the same PCA, fitted on all
    rows). Beyond :data:`PCA_FIT_SAMPLES` images, or for a layer too wide for the budget on its
    own, each layer is streamed by :func:`layer_features` instead.

    Args:
        model, images, max_dims, seed: as for :func:`layer_features`.
        layers: layer names (or :data:`core.activations.INPUT`, ``<block> (CLS)``).
        capture_bytes: activations held at once.
        progress: called as ``progress(done, total)``; raising from it stops the work.
    """
    n = len(images)
    total = len(layers) * 2 * 100
    done = 0

    def tell(units: float) -> None:
        if progress is not None:
            progress(min(total, round(units)), total)

    tell(0)
    widths = {k: v[0].size for k, v in capture(model, images[:1], list(layers)).arrays.items()}
    groups: list[list[str]] = []
    used = capture_bytes + 1
    for layer in layers:
        size = widths[layer] * 4 * n
        if used + size > capture_bytes or not groups or size > capture_bytes:
            groups.append([])
            used = 0
        groups[-1].append(layer)
        used += size
    out: dict[str, LayerFeatures] = {}
    for group in groups:
        share = len(group) * 100
        if n > PCA_FIT_SAMPLES or widths[group[0]] * 4 * n > capture_bytes:
            for layer in group:

                def streamed(d: int, t: int, base: int = done) -> None:
                    tell(base + 200 * d / max(t, 1))

                out[layer] = _stream(model, images, layer, max_dims, seed, progress=streamed)
                done += 200
            continue

        def captured(d: int, t: int, base: int = done, share: int = share) -> None:
            tell(base + share * d / max(t, 1))

        arrays = capture_dataset(model, images, group, progress=captured).arrays
        done += share
        for layer in group:
            out[layer] = _reduce(arrays.pop(layer), max_dims, seed)
            done += 100
            tell(done)
        del arrays
    return [out[layer] for layer in layers]
