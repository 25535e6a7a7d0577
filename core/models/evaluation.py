"""Predictions and the numbers a home page shows: accuracy with its interval, loss, confusion.

An accuracy is a proportion measured on a finite split, so it is reported with a Wilson score
interval (Wilson 1927), which stays inside ``[0, 1]`` and keeps its coverage near 0 and 1 where
the normal approximation collapses to a zero-width interval. It is compared with chance: the
share of the most frequent label in the same split, what always guessing that class would score.

The registered analysis is :func:`predictions` (``models.predictions``); :func:`predict`, the
arrays-in building block it calls, also scores the training loop and imported weights.

What can go wrong: an empty split has no accuracy (NaN) and no interval; the chance rate is
estimated from the split's own labels, so on a tiny split it is itself uncertain; images of
unknown class (label ``-1``, an upload) are left out of the loss, accuracy and confusion.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.analysis import Batch, register
from core.device import model_device
from core.hooks import model_lock

CONFIDENCE = 0.95
"""Coverage of the reported accuracy intervals."""
Z_95 = 1.96
"""Two-sided standard-normal quantile for :data:`CONFIDENCE`."""


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``correct / n``.

    Args:
        correct: successes, ``0 <= correct <= n``.
        n: trials.
        z: standard-normal quantile (1.96 for 95 %).

    Returns:
        ``(low, high)`` within ``[0, 1]``; ``(nan, nan)`` when ``n == 0``.
    """
    if not 0 <= correct <= n:
        raise ValueError(f"Need 0 <= correct <= n, got {correct} of {n}.")
    if n == 0:
        return float("nan"), float("nan")
    p = correct / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Predictions:
    """Model outputs over a set of ``N`` samples and ``K`` classes.

    Attributes:
        probs: ``[N, K]`` float32 softmax probabilities.
        predicted: ``[N]`` int64 argmax class.
        labels: ``[N]`` int64 true class (``-1``: unknown).
        loss: mean cross-entropy over the known labels.
        accuracy: fraction of ``predicted == labels`` over the known labels.
    """

    probs: np.ndarray
    predicted: np.ndarray
    labels: np.ndarray
    loss: float
    accuracy: float

    @property
    def n(self) -> int:
        """Number of samples scored."""
        return len(self.labels)

    @property
    def first_correct(self) -> int:
        """Index of the first correctly classified sample (0 when none is): a view's default,
        so a first look at a model does not open on one of its mistakes."""
        hits = np.flatnonzero(self.predicted == self.labels)
        return int(hits[0]) if len(hits) else 0

    @property
    def correct(self) -> int:
        """Number of samples with ``predicted == labels``."""
        return int((np.asarray(self.predicted) == np.asarray(self.labels)).sum())

    @property
    def accuracy_interval(self) -> tuple[float, float]:
        """Wilson :data:`CONFIDENCE` interval of the accuracy; ``(nan, nan)`` with no samples."""
        return wilson_interval(self.correct, self.n)

    @property
    def chance_accuracy(self) -> float:
        """Share of the most frequent label: the accuracy of always guessing that class."""
        if self.n == 0:
            return float("nan")
        return float(np.unique(self.labels, return_counts=True)[1].max() / self.n)

    @property
    def at_chance(self) -> bool:
        """True when the interval reaches down to chance (or there are no samples).

        Then the split does not show that the model beats always guessing the majority class.
        """
        return self.n == 0 or self.accuracy_interval[0] <= self.chance_accuracy

    @property
    def confusion(self) -> np.ndarray:
        """``[K, K]`` counts over the known labels: row = true class, column = predicted."""
        k = self.probs.shape[1] if self.probs.ndim == 2 else 0
        known = np.asarray(self.labels) >= 0
        cells = np.asarray(self.labels)[known] * k + np.asarray(self.predicted)[known]
        return np.bincount(cells, minlength=k * k).reshape(k, k)


CHANCE_WARNING = (
    "This model is at chance on these images: its accuracy is not clearly above always "
    "guessing the most frequent class. Explanations of a model at chance mean little."
)
"""What a page says when :attr:`Predictions.at_chance` is true."""


def accuracy_text(pred: Predictions) -> str:
    """One line for a caption, e.g. ``"99.9 % (95 % CI 99.6–100.0 %, n = 1,500)"``.

    When the interval reaches chance it says so, e.g. ``"…, n = 30; not above chance, 40.0 %)"``.
    """
    if pred.n == 0:
        return "no samples (n = 0)"
    low, high = pred.accuracy_interval
    text = (
        f"{100 * pred.accuracy:.1f} % ({100 * CONFIDENCE:.0f} % CI "
        f"{100 * low:.1f}–{100 * high:.1f} %, n = {pred.n:,}"
    )
    if pred.at_chance:
        text += f"; not above chance, {100 * pred.chance_accuracy:.1f} %"
    return text + ")"


@dataclass(frozen=True)
class PredictionOptions:
    """Options of :func:`predictions`."""

    batch_size: int = 512  # images per forward pass: bounds memory, never changes the result


@register(
    "models.predictions",
    family="models",
    title="Predictions and accuracy",
    options=PredictionOptions,
)
def predictions(
    model: nn.Module,
    batch: Batch,
    options: PredictionOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Predictions:
    """The model's class probabilities for ``batch`` and its score against the batch's labels.

    Returns:
        :class:`Predictions` over the batch's ``N`` images: ``probs [N, K]``, ``predicted [N]``,
        ``labels [N]``, with the accuracy, its interval, chance and the confusion ``[K, K]``.
    """
    return predict(model, batch.images, batch.labels, options.batch_size, progress=progress)


def predict(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int = 512,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Predictions:
    """Runs ``model`` over ``images [N, C, H, W]`` and scores it against ``labels [N]``
    (``-1``: unknown, left out of the loss and accuracy); ``progress(done, N)`` per pass."""
    device = model_device(model)
    logits = []
    with model_lock(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.as_tensor(images[start : start + batch_size]).to(device)
            logits.append(model(batch).float().cpu())
            if progress is not None:
                progress(min(start + batch_size, len(images)), len(images))
    out = torch.cat(logits) if logits else torch.empty(0, 0)
    labels = np.asarray(labels)
    target = torch.as_tensor(labels)
    known = target >= 0  # -1: an image whose class is unknown (an upload)
    loss = float(F.cross_entropy(out[known], target[known])) if known.any() else float("nan")
    probs = out.softmax(dim=1).numpy()
    predicted = probs.argmax(axis=1) if probs.size else np.zeros(len(probs), dtype=np.int64)
    mask = known.numpy()
    accuracy = float((predicted[mask] == labels[mask]).mean()) if mask.any() else float("nan")
    return Predictions(probs, predicted, np.asarray(labels), loss, accuracy)
