"""A layer's output over many inputs as a feature matrix ``[N, d]``, PCA-reduced when wide.

This is the torch side of a projection: it runs the model. :mod:`core.projection` (the fits)
needs no torch, so the fit worker process (:mod:`core.worker`) stays small. Memory stays
bounded for wide layers over many samples: the PCA is fitted on a sample of rows, then every
batch is captured and reduced in turn.

What can go wrong: an unknown layer (``KeyError`` naming the layers that exist).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA
from torch import nn

from core.activations import capture
from core.projection import MAX_INPUT_DIMS, limited_threads

PCA_FIT_SAMPLES = 5_000
""":func:`layer_features` fits its PCA on at most this many samples, then streams the rest."""


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


def layer_features(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    layer: str,
    *,
    max_dims: int = MAX_INPUT_DIMS,
    seed: int = 0,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> LayerFeatures:
    """A layer's output over ``images``, PCA-reduced to ``max_dims`` when wider.

    Memory stays bounded for wide layers over many samples: the PCA is fitted on at most
    :data:`PCA_FIT_SAMPLES` samples (evenly spaced; all of them when fewer), then every batch
    is captured and reduced in turn. With ``N <= PCA_FIT_SAMPLES`` the result equals
    ``PCA(max_dims, random_state=seed).fit_transform`` of the flattened layer.

    Args:
        model: the model.
        images: ``[N, C, H, W]`` inputs.
        layer: a layer name, or :data:`core.activations.INPUT`.
        max_dims: width of the result for wide layers.
        seed: PCA's random state.
        batch_size: samples per forward pass.
        progress: called as ``progress(done, total)``.

    Returns:
        :class:`LayerFeatures` with ``features [N, min(D, max_dims)]``.
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
