"""Linear probes and k-NN: the logits hold the label; noise does not; the report card's shape."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from core.activations import INPUT, list_layers
from core.analysis import Batch
from core.hooks import count_hooks
from core.models.zoo import build_model
from core.projections.probes import probe_scores
from core.projections.report_card import (
    GramOptions,
    ReportOptions,
    depth_layers,
    layer_grams,
    layer_report,
    random_init_model,
)


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
    batch = Batch(images, labels, {"corner": factor})
    report = layer_report(model, batch, ReportOptions(cka_samples=50))
    assert report.layers == tuple(layers) and report.targets == ("label", "corner")
    assert report.probe.shape == report.knn.shape == (4, 2, 3)
    assert report.grams.shape == (4, 50, 50)
    assert report.probe[-1, 0].mean() > 0.9  # the logits decide the label
    assert report.probe[0, 1].mean() > 0.9  # the pixel is in the input
    np.testing.assert_allclose(np.diag(report.cka()), 1.0, atol=1e-5)
    assert count_hooks(model) == 0


def test_knn_equals_scikit_learn() -> None:
    from sklearn.neighbors import KNeighborsClassifier

    from core.projections.probes import knn_accuracy

    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 7))
    y = rng.integers(0, 4, 300)
    for k in (1, 5, 8):
        expected = KNeighborsClassifier(k).fit(x[:200], y[:200]).score(x[200:], y[200:])
        assert knn_accuracy(x[:200], y[:200], x[200:], y[200:], k) == pytest.approx(expected)


def test_newton_probe_finds_the_lbfgs_optimum() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 600)
    x = rng.normal(size=(600, 20)) + np.eye(5, 20)[y] * 1.5
    linear, _ = probe_scores(x, y, n_splits=1, seed=0)
    from core.projections.probes import _splits

    ((train, test),) = _splits(y, 1, 0.25, 0)
    scaler = StandardScaler().fit(x[train])
    reference = LogisticRegression(max_iter=5000, tol=1e-8).fit(
        scaler.transform(x[train]), y[train]
    )
    assert linear.scores[0] == pytest.approx(
        reference.score(scaler.transform(x[test]), y[test]), abs=1 / len(test)
    )


def test_pca_scores_equal_a_full_pca_up_to_sign() -> None:
    from sklearn.decomposition import PCA

    from core.projections.report_card import pca_scores

    rng = np.random.default_rng(4)
    for shape in ((40, 300), (300, 40)):  # wide (Gram route) and tall (covariance route)
        x = rng.normal(size=shape).astype(np.float32) * np.linspace(3, 0.1, shape[1])
        expected = PCA(10, svd_solver="full").fit_transform(x)
        np.testing.assert_allclose(np.abs(pca_scores(x, 10)), np.abs(expected), atol=2e-3)


def test_layer_report_is_the_same_captured_in_one_pass_or_layer_by_layer() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", (3, 16, 16), 3)
    rng = np.random.default_rng(5)
    images = rng.random((60, 3, 16, 16), dtype=np.float32)
    batch = Batch(images, np.arange(60) % 3, {"other": np.arange(60) % 2})
    options = ReportOptions(cka_samples=30)
    calls: list[tuple[int, int]] = []
    one_pass = layer_report(model, batch, options, progress=lambda d, t: calls.append((d, t)))
    each = layer_report(model, batch, ReportOptions(cka_samples=30, capture_bytes=1))
    np.testing.assert_array_equal(one_pass.probe, each.probe)
    np.testing.assert_array_equal(one_pass.knn, each.knn)
    np.testing.assert_allclose(one_pass.grams, each.grams, rtol=1e-5, atol=1e-5)
    assert calls[0][0] == 0 and calls[-1][0] == calls[-1][1]
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))
    stored = one_pass.without_grams()
    assert not stored.has_grams and stored.grams.nbytes == 0
    assert (stored.n_splits, stored.max_dims) == (3, 64)
    with pytest.raises(ValueError, match="Gram"):
        stored.cka()
    grams = layer_grams(model, Batch(images[:30], batch.labels[:30]), GramOptions())
    assert grams.layers == one_pass.layers
    np.testing.assert_allclose(grams.grams, one_pass.grams, rtol=1e-5, atol=1e-5)


def test_a_raising_progress_stops_the_report() -> None:
    model = build_model("mlp", (1, 4, 4), 2)
    images = np.random.default_rng(0).random((40, 1, 4, 4), dtype=np.float32)
    seen = []

    def stop(done: int, total: int) -> None:
        seen.append(done)
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        batch = Batch(images, np.arange(40) % 2)
        layer_report(model, batch, ReportOptions(layers=(INPUT, "relu1")), progress=stop)
    assert len(seen) == 2 and count_hooks(model) == 0
