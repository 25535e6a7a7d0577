"""The layer report card: for every layer, how much of the label and each factor it holds.

For one model over held-out samples, layer by layer: linear-probe and k-NN accuracy for the
label and for each dataset factor (:mod:`core.projections.probes`), and each layer's centred
Gram matrix for CKA (:mod:`core.projections.similarity`). Running the same on
:func:`random_init_model` gives the baseline without learning; CKA between two reports
compares two runs on the same samples.

Layers are captured a few at a time, as many per forward pass as fit :data:`CAPTURE_BYTES`
(one pass for a small model, instead of one pass per layer), so memory stays bounded. Wide
layers are PCA-reduced to ``max_dims`` before probing (fitted without labels, on all the
report's samples), exactly, through the smaller of the ``[N, N]`` Gram and the ``[D, D]``
covariance matrix. Progress is reported per forward batch and per target, so a caller can stop
the report between any two (see :mod:`ui.progress`).

Registered analyses: ``projections.layer_report`` (:func:`layer_report`) and
``projections.layer_grams`` (:func:`layer_grams`).

What can go wrong: a factor with a class of one sample (``ValueError``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.activations import INPUT, LayerInfo, capture, capture_dataset, list_layers
from core.analysis import Batch, register
from core.models.zoo import build_model
from core.projections.similarity import centred_gram, cka_matrix
from core.threads import limited_threads

LABEL = "label"
CAPTURE_BYTES = 256 * 2**20
"""Activations kept at once while a report captures its layers (float32, all samples)."""
PROBE_MAX_DIMS = 64
"""Layers wider than this are PCA-reduced to it before probing."""
PROBE_SPLITS = 3
"""Stratified train/test splits per probe (the error bar is over these)."""
CKA_SAMPLES = 500
"""A report keeps the Gram matrices of its first this many samples, for CKA."""
_DEPTH_TYPES = {"ReLU", "GELU", "SiLU", "Tanh", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"}


@dataclass(frozen=True)
class LayerReport:
    """Per-layer scores of one model on one set of samples.

    Attributes:
        layers: layer names, shallow to deep (``L``).
        targets: ``"label"`` then the factor names (``T``).
        probe: ``[L, T, S]`` linear-probe test accuracy per split.
        knn: ``[L, T, S]`` k-NN test accuracy per split.
        chance: ``[T]`` majority-class accuracy.
        grams: ``[L, M, M]`` centred Gram matrices of the first ``M`` samples, for CKA.
        max_dims: layers wider than this were PCA-reduced to it before probing.
    """

    layers: tuple[str, ...]
    targets: tuple[str, ...]
    probe: np.ndarray
    knn: np.ndarray
    chance: np.ndarray
    grams: np.ndarray
    max_dims: int = PROBE_MAX_DIMS

    @property
    def n_splits(self) -> int:
        """Splits per probe (``S``): the error bar is over these."""
        return int(self.probe.shape[2])

    def most_readable(self, target: int) -> int:
        """The layer (its index) whose linear probe reads target ``target`` best (mean)."""
        return int(self.probe[:, target].mean(1).argmax())

    @property
    def has_grams(self) -> bool:
        """Whether the Gram matrices are kept (a stored report drops them; see :class:`CKA`)."""
        return self.grams.ndim == 3 and self.grams.shape[1] > 0

    def cka(self, other: LayerReport | None = None) -> np.ndarray:
        """Linear CKA ``[L, L_other]`` between this report's layers and ``other``'s (or its own).

        Raises:
            ValueError: a report without its Gram matrices (see :meth:`without_grams`).
        """
        if not self.has_grams or (other is not None and not other.has_grams):
            raise ValueError("This report was kept without its Gram matrices: use a CKA result.")
        return cka_matrix(list(self.grams), None if other is None else list(other.grams))

    def without_grams(self) -> LayerReport:
        """The same report without the ``[L, M, M]`` Gram matrices (megabytes), for storing."""
        empty = np.zeros((len(self.layers), 0, 0), np.float32)
        return dataclasses.replace(self, grams=empty)


@dataclass(frozen=True)
class Grams:
    """The centred Gram matrices of a model's layers over the same samples, for CKA.

    Attributes:
        layers: layer names (``L``).
        grams: ``[L, N, N]`` float32.
    """

    layers: tuple[str, ...]
    grams: np.ndarray


@dataclass(frozen=True)
class ReportOptions:
    """How :func:`layer_report` probes (the defaults are the report card's)."""

    layers: tuple[str, ...] = ()  # layers to probe, shallow to deep; (): report_layers(model)
    n_splits: int = PROBE_SPLITS  # splits per probe: the error bar
    seed: int = 0  # seed of the splits and the probes
    max_dims: int = PROBE_MAX_DIMS  # wider layers are PCA-reduced to this before probing
    cka_samples: int = CKA_SAMPLES  # samples whose Gram matrices are kept (M)
    capture_bytes: int = CAPTURE_BYTES  # activations held at once (layers captured in groups)


@dataclass(frozen=True)
class GramOptions:
    """Which layers :func:`layer_grams` summarises."""

    layers: tuple[str, ...] = ()  # layers, shallow to deep; (): report_layers(model)
    capture_bytes: int = CAPTURE_BYTES  # activations held at once (layers captured in groups)


@dataclass(frozen=True)
class CKA:
    """Linear CKA between the layers of two models (or one) on the same samples.

    Attributes:
        layers: the first model's layers (rows).
        other_layers: the second model's layers (columns).
        matrix: ``[L, L_other]`` CKA.
    """

    layers: tuple[str, ...]
    other_layers: tuple[str, ...]
    matrix: np.ndarray


def depth_layers(
    layers: Sequence[LayerInfo], limit: int = 12, tokens: Sequence[str] = ()
) -> list[str]:
    """A ladder of layers to report on: the input, each activation and pooling, the logits.

    For a transformer, pass ``tokens`` (the CLS token of each block, ``"<block> (CLS)"``):
    the ladder is then the input, those, and the logits. Evenly thinned to ``limit``
    (keeping the first and last) for deep models.
    """
    leaves = [layer for layer in layers if layer.is_leaf]
    picked = list(tokens) or [layer.name for layer in leaves[:-1] if layer.type in _DEPTH_TYPES]
    if len(picked) < 2:
        picked = [layer.name for layer in leaves[:-1]]
    names = [INPUT, *picked, leaves[-1].name]
    if len(names) > limit:
        names = [names[i] for i in np.linspace(0, len(names) - 1, limit).round().astype(int)]
    return list(dict.fromkeys(names))


def report_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
    """:func:`depth_layers` of ``model`` (with its CLS tokens when it is a transformer)."""
    from core.attention import sites  # the CLS pseudo-layers are named there

    tokens = []
    if sites.has_attention(model):
        blocks = dict.fromkeys(site.block for site in sites.attention_sites(model))
        tokens = [sites.cls_layer_name(block) for block in blocks]
    return depth_layers(list_layers(model, tuple(input_shape)), tokens=tokens)


def default_layer(ladder: Sequence[str]) -> str:
    """The layer a map shows first: the last of ``ladder`` before the logits."""
    return ladder[-2] if len(ladder) > 1 else ladder[-1]


def random_init_model(
    arch: str, input_shape: tuple[int, int, int], num_classes: int, seed: int = 0
) -> nn.Module:
    """The architecture with freshly initialised weights (the same ones for the same seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(arch, input_shape, num_classes)


def pca_scores(x: np.ndarray, dims: int) -> np.ndarray:
    """Exact PCA coordinates ``[N, min(dims, N, D)]`` of ``x [N, D]`` (signs arbitrary).

    The eigenvectors of the smaller of ``Xc Xc^T`` and ``Xc^T Xc`` (``Xc``: centred columns),
    the top ``dims`` only: the same components as a full SVD, in a fraction of the time for
    the wide-and-short matrices a report probes.
    """
    import scipy.linalg  # here: seconds to import (see core.projections.fits)

    x = np.asarray(x, np.float32).reshape(len(x), -1)
    n, d = x.shape
    k = min(dims, n, d)
    centred = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
    with limited_threads():
        small = centred @ centred.T if d > n else centred.T @ centred
        size = small.shape[0]
        values, vectors = scipy.linalg.eigh(
            small.astype(np.float64), subset_by_index=[size - k, size - 1]
        )
        values, vectors = values[::-1], vectors[:, ::-1]
        if d > n:
            scores = vectors * np.sqrt(np.clip(values, 0, None))
        else:
            scores = centred.astype(np.float64) @ vectors
    return scores.astype(np.float32)


def _layer_groups(
    model: nn.Module, images: np.ndarray, layers: Sequence[str], budget: int
) -> list[list[str]]:
    """Consecutive runs of ``layers`` whose activations over ``images`` fit ``budget`` bytes."""
    probe = capture(model, images[:1], list(layers)).arrays
    groups: list[list[str]] = []
    used = budget + 1
    for layer in layers:
        size = probe[layer].size * 4 * len(images)
        if used + size > budget or not groups:
            groups.append([])
            used = 0
        groups[-1].append(layer)
        used += size
    return groups


@register(
    "projections.layer_report",
    family="projections",
    title="Layer report card",
    options=ReportOptions,
)
def layer_report(
    model: nn.Module,
    batch: Batch,
    options: ReportOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> LayerReport:
    """Probes every layer of ``model`` over ``batch`` for its label and each of its factors.

    Args:
        model: the model (trained, or from :func:`random_init_model`).
        batch: ``[N, C, H, W]`` held-out inputs; targets are ``"label"`` then its factors.
        options: layers, splits, seed, PCA width, CKA samples (:class:`ReportOptions`).
        progress: called as ``progress(done, total)`` after each forward batch and each
            probed target; raising from it stops the report.

    Returns:
        A :class:`LayerReport` (``T = 1 + len(batch.factors)``).
    """
    from core.projections.probes import probe_scores  # scikit-learn: imported when first needed

    images = batch.images
    targets = {LABEL: np.asarray(batch.labels), **batch.factors}
    layers = options.layers or tuple(report_layers(model, images.shape[1:]))
    n_splits, seed, max_dims = options.n_splits, options.seed, options.max_dims
    names = tuple(targets)
    n = len(images)
    probe = np.empty((len(layers), len(names), n_splits), np.float32)
    knn = np.empty_like(probe)
    grams: list[np.ndarray] = []
    # Work units: capturing a layer counts as one target's probes; progress is in hundredths.
    total = len(layers) * (len(names) + 1) * 100
    done = 0

    def tell(units: float) -> None:
        if progress is not None:
            progress(min(total, round(units)), total)

    tell(0)
    index = 0
    for group in _layer_groups(model, images, layers, options.capture_bytes):
        share = len(group) * 100

        def captured(batch_done: int, batch_total: int, base: int = done, share: int = share):
            tell(base + share * batch_done / max(batch_total, 1))

        arrays = capture_dataset(model, images, group, progress=captured).arrays
        done += share
        for layer in group:
            raw = arrays.pop(layer).reshape(n, -1)
            grams.append(centred_gram(raw[: options.cka_samples]))
            if raw.shape[1] > max_dims:
                raw = pca_scores(raw, max_dims)
            for j, name in enumerate(names):
                linear, nearest = probe_scores(raw, targets[name], n_splits=n_splits, seed=seed)
                probe[index, j], knn[index, j] = linear.scores, nearest.scores
                done += 100
                tell(done)
            index += 1
        del arrays
    chance = np.array([np.bincount(targets[n]).max() / len(targets[n]) for n in names], np.float32)
    return LayerReport(tuple(layers), names, probe, knn, chance, np.stack(grams), max_dims)


@register(
    "projections.layer_grams",
    family="projections",
    title="Gram matrices for CKA",
    options=GramOptions,
)
def layer_grams(
    model: nn.Module,
    batch: Batch,
    options: GramOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Grams:
    """The centred Gram matrices ``[L, N, N]`` of the layers over ``batch`` (for CKA only).

    The same matrices :func:`layer_report` keeps, for ``batch`` its first ``cka_samples``;
    :func:`cka_between` compares two models' on the same samples.
    """
    images = batch.images
    layers = options.layers or tuple(report_layers(model, images.shape[1:]))
    n = len(images)
    grams: list[np.ndarray] = []
    total = len(layers) * 2
    for group in _layer_groups(model, images, layers, options.capture_bytes):
        base = len(grams) * 2

        def captured(batch_done: int, batch_total: int, base: int = base, size: int = len(group)):
            if progress is not None:
                progress(base + round(size * batch_done / max(batch_total, 1)), total)

        arrays = capture_dataset(model, images, group, progress=captured).arrays
        for layer in group:
            grams.append(centred_gram(arrays.pop(layer).reshape(n, -1)))
            if progress is not None:
                progress(len(grams) * 2, total)
    return Grams(tuple(layers), np.stack(grams))


def cka_between(a: Grams | LayerReport, b: Grams | LayerReport | None = None) -> CKA:
    """:class:`CKA` between the layers of ``a`` and ``b`` (or of ``a`` and itself), from their
    Gram matrices of the same samples."""
    other = a if b is None else b
    matrix = cka_matrix(list(a.grams), None if b is None else list(b.grams))
    return CKA(tuple(a.layers), tuple(other.layers), matrix)
