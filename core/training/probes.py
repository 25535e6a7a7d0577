"""Linear-probe accuracy of the label and of each known factor, per layer and checkpoint.

When does a layer come to hold the class, or the colour? A linear probe on each layer's pooled
features at each checkpoint answers it; the same grid on training samples (with the labels
trained on) and on held-out ones shows where a network memorises: on a label-noise run, the
layers whose training probe beats the held-out one.

Speed: a grid is layers x checkpoints x targets probes (hundreds), so the probe here is a ridge
classifier (least squares on one-hot targets, then argmax; scikit-learn's ``RidgeClassifier``),
solved in closed form for every target at once on the same split: one ``D x D`` solve per layer
and checkpoint. The report card's logistic probes (:mod:`core.projections.probes`) read the
same information with another loss; accuracies differ by a few points, the ordering of layers
does not change in our runs. The splits are the report card's (stratified on the label).

What can go wrong: a label class with one sample cannot be split (``ValueError``); on few
samples the accuracies are noisy (``std`` says how much).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from core.analysis import Batch, register
from core.projections.probes import _splits
from core.threads import limited_threads
from core.training.checkpoints import CheckpointCapture, State, capture_checkpoints

LABEL = "label"
"""The target name of the class label in :attr:`ProbeGrid.targets`."""
ALPHA = 1.0
"""The ridge penalty (on standardised features)."""


@dataclass(frozen=True)
class ProbeGridOptions:
    """Options of :func:`probe_grid`."""

    n_splits: int = 3  # stratified train/test splits per probe (the error bar)
    factors: bool = True  # probe each dataset factor too, not only the label
    seed: int = 0  # the splits' seed


@dataclass(frozen=True)
class ProbeGrid:
    """Held-out linear-probe accuracy per target, layer and checkpoint.

    Attributes:
        layers: ``[L]`` layer names, shallow to deep.
        targets: ``[P]`` ``"label"`` then the factors' names.
        accuracy: ``[P, L, T]`` mean held-out accuracy over splits.
        std: ``[P, L, T]`` its standard deviation over splits.
        chance: ``[P]`` accuracy of always guessing the most frequent value.
        n: samples probed (each split tests a quarter of them).
    """

    layers: tuple[str, ...]
    targets: tuple[str, ...]
    accuracy: np.ndarray
    std: np.ndarray
    chance: np.ndarray
    n: int


def ridge_predict(
    train_x: np.ndarray, train_y: Sequence[np.ndarray], test_x: np.ndarray, alpha: float = ALPHA
) -> list[np.ndarray]:
    """Ridge-classifier predictions for several targets at once, as ``RidgeClassifier(alpha)``
    after ``StandardScaler`` predicts them.

    Args:
        train_x: ``[M, D]`` features.
        train_y: each ``[M]`` integer classes (one array per target).
        test_x: ``[K, D]`` features.

    Returns:
        One ``[K]`` array of predicted classes per target.
    """
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    a = ((train_x - mean) / std).astype(np.float64)
    b = ((test_x - mean) / std).astype(np.float64)
    classes = [np.unique(y) for y in train_y]
    onehot = np.concatenate(
        [(y[:, None] == c[None]).astype(np.float64) for y, c in zip(train_y, classes, strict=True)],
        axis=1,
    )
    a_mean, y_mean = a.mean(axis=0), onehot.mean(axis=0)
    ac = a - a_mean
    with limited_threads():
        w = np.linalg.solve(ac.T @ ac + alpha * np.eye(a.shape[1]), ac.T @ (onehot - y_mean))
    scores = (b - a_mean) @ w + y_mean
    out, start = [], 0
    for c in classes:
        out.append(c[scores[:, start : start + len(c)].argmax(axis=1)])
        start += len(c)
    return out


@register(
    "training.probe_grid",
    family="training",
    title="Probe accuracy over training",
    options=ProbeGridOptions,
)
def probe_grid(
    model: nn.Module,
    batch: Batch,
    options: ProbeGridOptions,
    *,
    checkpoints: Sequence[State] = (),
    captured: CheckpointCapture | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ProbeGrid:
    """Ridge-probe accuracy of the label (and each factor) per layer and checkpoint.

    Args:
        captured: the batch's capture at ``checkpoints``, if already made.
    """
    targets = {LABEL: np.asarray(batch.labels)}
    if options.factors:
        targets.update({k: np.asarray(v) for k, v in batch.factors.items()})
    if captured is None:
        captured = capture_checkpoints(model, batch, checkpoints, progress=progress)
    splits = _splits(targets[LABEL], options.n_splits, 0.25, options.seed)
    shape = (len(targets), len(captured.layers), len(captured.features), len(splits))
    scores = np.zeros(shape, np.float32)
    ys = list(targets.values())
    for li, layer in enumerate(captured.layers):
        for t, step in enumerate(captured.features):
            x = step[layer]
            for s, (train, test) in enumerate(splits):
                predicted = ridge_predict(x[train], [y[train] for y in ys], x[test])
                for p, y in enumerate(ys):
                    scores[p, li, t, s] = (predicted[p] == y[test]).mean()
    chance = np.array([np.bincount(y).max() / len(y) for y in ys], np.float32)
    return ProbeGrid(
        captured.layers, tuple(targets), scores.mean(-1), scores.std(-1), chance, len(batch)
    )
