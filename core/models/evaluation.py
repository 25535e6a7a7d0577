"""Predictions and the numbers a home page shows: accuracy with its interval, loss, confusion.

An accuracy is a proportion measured on a finite split, so it is reported with a Wilson score
interval (Wilson 1927), which stays inside ``[0, 1]`` and keeps its coverage near 0 and 1 where
the normal approximation collapses to a zero-width interval. It is compared with chance: the
share of the most frequent label in the same split, what always guessing that class would score.

What can go wrong: an empty split has no accuracy (NaN) and no interval; the chance rate is
estimated from the split's own labels, so on a tiny split it is itself uncertain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
        probs: ``[N, K]`` softmax probabilities.
        predicted: ``[N]`` argmax class.
        labels: ``[N]`` true class.
        loss: mean cross-entropy.
        accuracy: fraction of ``predicted == labels``.
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


def predict(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 512
) -> Predictions:
    """Runs ``model`` over ``images [N, C, H, W]`` and scores it against ``labels [N]``
    (``-1``: unknown, left out of the loss and accuracy)."""
    device = model_device(model)
    logits = []
    with model_lock(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.as_tensor(images[start : start + batch_size]).to(device)
            logits.append(model(batch).float().cpu())
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


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``[K, K]`` counts: row = true class, column = predicted class."""
    return np.bincount(labels * num_classes + predicted, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
