"""Linear probes and k-NN: the logits hold the label; noise does not; the report card's shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.activations import INPUT, list_layers
from core.hooks import count_hooks
from core.models import build_model
from core.probes import probe_scores
from core.report_card import depth_layers, layer_report, random_init_model


def test_probe_on_logits_reads_the_label() -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(300) % 4
    logits = np.eye(4)[labels] * 3 + rng.normal(scale=0.5, size=(300, 4))
    linear, knn = probe_scores(logits, labels, n_splits=3, seed=0)
    assert linear.mean == pytest.approx(1.0, abs=0.02)
    assert knn.mean == pytest.approx(1.0, abs=0.02)
    assert linear.scores.shape == (3,) and linear.chance == 0.25


def test_probe_on_noise_is_near_chance() -> None:
    rng = np.random.default_rng(1)
    linear, _ = probe_scores(rng.normal(size=(400, 6)), np.arange(400) % 2, seed=0)
    assert abs(linear.mean - 0.5) < 0.1


def test_targets_that_cannot_be_split_raise() -> None:
    with pytest.raises(ValueError, match="at least 2 samples"):
        probe_scores(np.zeros((5, 2)), np.array([0, 0, 1, 1, 2]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        probe_scores(np.zeros((5, 2)), np.zeros(5, dtype=np.int64))


def test_random_init_is_reproducible() -> None:
    a = random_init_model("mlp", (1, 8, 8), 3, seed=4)
    b = random_init_model("mlp", (1, 8, 8), 3, seed=4)
    torch.testing.assert_close(a.fc1.weight, b.fc1.weight)


def test_layer_report_shapes_and_the_logits_of_a_trained_like_model() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", (1, 4, 4), 2)
    images = np.random.default_rng(0).random((80, 1, 4, 4), dtype=np.float32)
    with torch.no_grad():
        margin = model(torch.from_numpy(images)).diff(dim=1)[:, 0].numpy()
    labels = (margin > np.median(margin)).astype(np.int64)
    factor = (images[:, 0, 0, 0] > 0.5).astype(np.int64)
    layers = depth_layers(list_layers(model, (1, 4, 4)))
    assert layers == [INPUT, "relu1", "relu2", "head"]
    report = layer_report(
        model, images, {"label": labels, "corner": factor}, layers, cka_samples=50
    )
    assert report.probe.shape == report.knn.shape == (4, 2, 3)
    assert report.grams.shape == (4, 50, 50)
    assert report.probe[-1, 0].mean() > 0.9  # the logits decide the label
    assert report.probe[0, 1].mean() > 0.9  # the pixel is in the input
    np.testing.assert_allclose(np.diag(report.cka()), 1.0, atol=1e-5)
    assert count_hooks(model) == 0
