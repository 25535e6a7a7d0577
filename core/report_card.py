"""The layer report card: for every layer, how much of the label and each factor it holds.

For one model over held-out samples, layer by layer: linear-probe and k-NN accuracy for the
label and for each dataset factor (:mod:`core.probes`), and each layer's centred Gram matrix
for CKA (:mod:`core.similarity`). Running the same on :func:`random_init_model` gives the
baseline without learning; CKA between two reports compares two runs on the same samples.

Layers are captured one at a time, so memory is one layer's output over the samples; wide
layers are PCA-reduced to ``max_dims`` before probing (fitted without labels, on all the
report's samples). What can go wrong: a factor with a class of one sample (``ValueError``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.activations import INPUT, LayerInfo, capture_dataset
from core.models import build_model
from core.probes import probe_scores
from core.projection import limited_threads, pca_reduce
from core.similarity import centred_gram, cka_matrix

LABEL = "label"
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
    """

    layers: tuple[str, ...]
    targets: tuple[str, ...]
    probe: np.ndarray
    knn: np.ndarray
    chance: np.ndarray
    grams: np.ndarray

    def cka(self, other: LayerReport | None = None) -> np.ndarray:
        """Linear CKA ``[L, L_other]`` between this report's layers and ``other``'s (or its own)."""
        return cka_matrix(list(self.grams), None if other is None else list(other.grams))


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


def random_init_model(
    arch: str, input_shape: tuple[int, int, int], num_classes: int, seed: int = 0
) -> nn.Module:
    """The architecture with freshly initialised weights (the same ones for the same seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(arch, input_shape, num_classes)


def layer_report(
    model: nn.Module,
    images: np.ndarray,
    targets: Mapping[str, np.ndarray],
    layers: Sequence[str],
    *,
    n_splits: int = 3,
    seed: int = 0,
    max_dims: int = 64,
    cka_samples: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> LayerReport:
    """Probes every layer of ``model`` over ``images`` for every target.

    Args:
        model: the model (trained, or from :func:`random_init_model`).
        images: ``[N, C, H, W]`` held-out inputs.
        targets: name -> ``[N]`` integer classes; ``"label"`` first by convention.
        layers: layer names (or :data:`core.activations.INPUT`), shallow to deep.
        n_splits: splits per probe (the error bar).
        seed: seed of the PCA, the splits and the probes.
        max_dims: layers wider than this are PCA-reduced to it before probing.
        cka_samples: samples whose Gram matrices are kept for CKA (``M``).
        progress: called as ``progress(done, total)`` after each layer.

    Returns:
        A :class:`LayerReport`.
    """
    names = tuple(targets)
    probe = np.empty((len(layers), len(names), n_splits), np.float32)
    knn = np.empty_like(probe)
    grams = []
    for i, layer in enumerate(layers):
        raw = capture_dataset(model, images, [layer]).arrays[layer].reshape(len(images), -1)
        grams.append(centred_gram(raw[:cka_samples]))
        if raw.shape[1] > max_dims:
            with limited_threads():
                raw = pca_reduce(raw, max_dims, seed)[0]
        for j, name in enumerate(names):
            linear, nearest = probe_scores(raw, targets[name], n_splits=n_splits, seed=seed)
            probe[i, j], knn[i, j] = linear.scores, nearest.scores
        if progress is not None:
            progress(i + 1, len(layers))
    chance = np.array([np.bincount(targets[n]).max() / len(targets[n]) for n in names], np.float32)
    return LayerReport(tuple(layers), names, probe, knn, chance, np.stack(grams))
