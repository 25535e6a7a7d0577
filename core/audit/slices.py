"""Slices: where a model fails, per value of every recorded factor and per class.

An overall accuracy hides the images a model gets wrong together: all the red ones, all the
small ones. Each slice is the images sharing one value of one factor (or one class); for it:
the count, accuracy with its Wilson interval (:func:`core.models.evaluation.wilson_interval`),
mean confidence (top probability) and the confusion matrix. Slices come worst first (lowest
accuracy, then the larger slice), so the failures lead.

What can go wrong: a slice of a few images has a wide interval, so a low accuracy there may be
luck: the table shows the count and the interval beside it. Images of unknown class (label
``-1``) are left out. A dataset without factors gets per-class slices only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from core.analysis import Batch, register
from core.models.evaluation import predict, wilson_interval

CLASS = "class"
"""The pseudo-factor of per-class slices."""


@dataclass(frozen=True)
class SliceOptions:
    """Options of :func:`slices`."""

    batch_size: int = 512  # images per forward pass: bounds memory, never changes the result


@dataclass(frozen=True)
class Slices:
    """Scores of ``S`` slices (worst first) of ``N`` images, ``K`` classes.

    Attributes:
        factors: ``[S]`` the factor of each slice (:data:`CLASS` for per-class slices).
        values: ``[S]`` int category code (the class index for per-class slices).
        count: ``[S]`` images in the slice.
        correct: ``[S]`` correctly classified images.
        accuracy: ``[S]`` ``correct / count``.
        low, high: ``[S]`` Wilson 95 % interval of the accuracy.
        confidence: ``[S]`` mean top-class probability.
        confusion: ``[S, K, K]`` counts, row = true class, column = predicted.
        overall: accuracy over all ``n`` images.
        n: images scored.
    """

    factors: tuple[str, ...]
    values: np.ndarray
    count: np.ndarray
    correct: np.ndarray
    accuracy: np.ndarray
    low: np.ndarray
    high: np.ndarray
    confidence: np.ndarray
    confusion: np.ndarray
    overall: float
    n: int

    def names(
        self, categories: Mapping[str, Sequence[str]], class_names: Sequence[str]
    ) -> list[str]:
        """``[S]`` ``"colour=red"``, ``"class=circle"``: each slice for a person."""
        out = []
        for factor, value in zip(self.factors, self.values.tolist(), strict=True):
            known = class_names if factor == CLASS else categories.get(factor, ())
            out.append(f"{factor}={known[value] if value < len(known) else value}")
        return out

    @property
    def below_overall(self) -> np.ndarray:
        """``[S]`` bool: the slice's whole interval lies below the overall accuracy."""
        return self.high < self.overall


def slice_scores(
    predicted: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    factors: Mapping[str, np.ndarray],
) -> Slices:
    """:class:`Slices` from predictions ``[N]``, probabilities ``[N, K]`` and labels ``[N]``."""
    known = np.asarray(labels) >= 0
    predicted, probs, labels = predicted[known], probs[known], np.asarray(labels)[known]
    k = probs.shape[1]
    groups = {CLASS: labels, **{f: np.asarray(v)[known] for f, v in factors.items()}}
    rows = []
    for factor, codes in groups.items():
        for value in np.unique(codes):
            inside = codes == value
            confusion = np.bincount(
                labels[inside] * k + predicted[inside], minlength=k * k
            ).reshape(k, k)
            correct = int((predicted[inside] == labels[inside]).sum())
            count = int(inside.sum())
            confidence = float(probs[inside].max(axis=1).mean())
            rows.append((factor, int(value), count, correct, confidence, confusion))
    rows.sort(key=lambda r: (r[3] / r[2], -r[2], r[0], r[1]))
    count = np.array([r[2] for r in rows], dtype=np.int64)
    correct = np.array([r[3] for r in rows], dtype=np.int64)
    intervals = np.array([wilson_interval(c, n) for c, n in zip(correct, count, strict=True)])
    return Slices(
        factors=tuple(r[0] for r in rows),
        values=np.array([r[1] for r in rows], dtype=np.int64),
        count=count,
        correct=correct,
        accuracy=correct / np.maximum(count, 1),
        low=intervals[:, 0].reshape(-1) if len(rows) else np.zeros(0),
        high=intervals[:, 1].reshape(-1) if len(rows) else np.zeros(0),
        confidence=np.array([r[4] for r in rows], dtype=np.float64),
        confusion=np.stack([r[5] for r in rows]) if rows else np.zeros((0, k, k), np.int64),
        overall=float((predicted == labels).mean()) if len(labels) else float("nan"),
        n=len(labels),
    )


@register("audit.slices", "audit", "Slices: where the model fails", SliceOptions)
def slices(
    model: nn.Module,
    batch: Batch,
    options: SliceOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Slices:
    """Accuracy, confidence and confusion per class and per value of every factor of ``batch``.

    Args:
        model: a classifier returning logits.
        batch: ``[N, C, H, W]`` images with labels and (optionally) factors.
        options: the forward batch size.
        progress: called as ``progress(done, N)`` per forward pass.

    Returns:
        :class:`Slices`, worst first.
    """
    pred = predict(model, batch.images, batch.labels, options.batch_size, progress=progress)
    return slice_scores(pred.predicted, pred.probs, batch.labels, batch.factors)
