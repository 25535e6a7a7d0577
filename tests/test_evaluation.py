"""core.models.evaluation: Wilson intervals by hand, chance checks, the accuracy caption and
the registered ``models.predictions`` analysis with its confusion matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from core.analysis import REGISTRY, Batch
from core.models.evaluation import (
    PredictionOptions,
    Predictions,
    accuracy_text,
    predict,
    predictions,
    wilson_interval,
)

Z = 1.96


def _predictions(labels: np.ndarray, predicted: np.ndarray) -> Predictions:
    probs = np.zeros((len(labels), int(max(labels.max(), predicted.max())) + 1))
    return Predictions(probs, predicted, labels, 0.0, float((predicted == labels).mean()))


def test_wilson_by_hand() -> None:
    # p = 0.8, z^2/n = 0.38416: centre 0.99208 / 1.38416, half 1.96 * sqrt(0.025604) / 1.38416
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert low == pytest.approx((0.99208 - Z * math.sqrt(0.025604)) / 1.38416, rel=1e-9)
    # the extremes have closed forms: n / (n + z^2) and z^2 / (n + z^2)
    assert wilson_interval(0, 10) == pytest.approx((0.0, Z**2 / (10 + Z**2)))
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + Z**2), 1.0))


@pytest.mark.parametrize(("correct", "n"), [(1, 3), (8, 10), (50, 100), (1499, 1500)])
def test_wilson_bounds_invert_the_score_test(correct: int, n: int) -> None:
    """Each bound p solves (p_hat - p)^2 = z^2 p (1 - p) / n, one either side of p_hat."""
    p_hat = correct / n
    low, high = wilson_interval(correct, n)
    assert low < p_hat < high
    for p in (low, high):
        assert (p_hat - p) ** 2 == pytest.approx(Z**2 * p * (1 - p) / n, rel=1e-9)


def test_wilson_edge_cases() -> None:
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="correct <= n"):
        wilson_interval(11, 10)


def test_accuracy_text_and_chance() -> None:
    labels = np.arange(1500) % 3
    predicted = labels.copy()
    predicted[0] = 1
    good = _predictions(labels, predicted)
    assert good.n == 1500 and good.correct == 1499
    assert good.chance_accuracy == pytest.approx(1 / 3) and not good.at_chance
    assert good.accuracy_interval == pytest.approx(wilson_interval(1499, 1500))
    assert accuracy_text(good) == "99.9 % (95 % CI 99.6–100.0 %, n = 1,500)"

    # 14 of 30 right while always guessing class 0 would get 12 of 30: not above chance
    labels = np.array([0] * 12 + [1] * 8 + [2] * 10)
    predicted = labels.copy()
    predicted[:16] = 2
    weak = _predictions(labels, predicted)
    assert weak.correct == 14 and weak.chance_accuracy == pytest.approx(0.4)
    assert weak.at_chance
    assert accuracy_text(weak) == "46.7 % (95 % CI 30.2–63.9 %, n = 30; not above chance, 40.0 %)"


def test_predict_exposes_the_interval() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(2))
        model[1].bias.zero_()
    images = np.array([[[[1.0, 0.0]]], [[[0.0, 1.0]]], [[[1.0, 0.0]]]], np.float32)
    pred = predict(model, images, np.array([0, 1, 1]))
    assert pred.n == 3 and pred.correct == 2 and pred.accuracy == pytest.approx(2 / 3)
    assert pred.accuracy_interval == pytest.approx(wilson_interval(2, 3))
    assert pred.at_chance  # three samples prove nothing
    empty = predict(model, images[:0], np.array([], dtype=np.int64))
    assert empty.n == 0 and empty.at_chance and accuracy_text(empty) == "no samples (n = 0)"


def test_predictions_analysis_scores_a_batch_exactly() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(3))  # logits = pixels: the brightest pixel wins
    pixels = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]]
    images = np.array(pixels, np.float32)[:, None, None, :]
    batch = Batch(images, np.array([0, 1, 2, 2, -1]), class_names=("a", "b", "c"))
    calls: list[tuple[int, int]] = []
    pred = predictions(
        model, batch, PredictionOptions(batch_size=2), progress=lambda d, n: calls.append((d, n))
    )
    assert REGISTRY["models.predictions"].function is predictions
    assert pred.predicted.tolist() == [0, 1, 2, 1, 0]
    assert pred.accuracy == pytest.approx(3 / 4)  # the upload (-1) is left out
    expected = [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert pred.confusion.tolist() == expected  # row: true class; the upload is left out
    assert calls == [(2, 5), (4, 5), (5, 5)]
