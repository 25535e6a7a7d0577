"""Projections equal scikit-learn / umap-learn called directly; alignment; streaming features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from core.activations import INPUT
from core.analysis import Batch
from core.hooks import count_hooks
from core.models.zoo import build_model
from core.projections import features, maps
from core.projections import fits as projection
from core.projections.report_card import default_layer, report_layers


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=5, size=(3, 8))
    return (centres[np.arange(150) % 3] + rng.normal(size=(150, 8))).astype(np.float32)


def test_pca_equals_scikit_learn(blobs: np.ndarray) -> None:
    result = projection.project(blobs, "PCA", 3, seed=1)
    expected = PCA(n_components=3, random_state=1).fit_transform(blobs)
    np.testing.assert_allclose(result.coords, expected, rtol=1e-4, atol=1e-4)
    assert result.reduced_dims is None and result.input_dims == 8


def test_umap_equals_umap_learn(blobs: np.ndarray) -> None:
    result = projection.project(blobs, "UMAP", 2, seed=3, n_neighbors=10)
    knn = projection.exact_knn(blobs, 10)
    direct = projection.umap_model(2, 3, 10, 0.1, precomputed_knn=knn).fit_transform(blobs)
    np.testing.assert_array_equal(result.coords, direct)


def test_wide_input_is_pca_reduced_first() -> None:
    x = np.random.default_rng(0).normal(size=(60, 80)).astype(np.float32)
    result = projection.project(x, "t-SNE", 2, seed=0, perplexity=10)
    assert (result.input_dims, result.reduced_dims) == (80, 50)
    reduced = PCA(n_components=50, random_state=0).fit_transform(x)
    direct = TSNE(2, perplexity=10, init="pca", random_state=0).fit_transform(reduced)
    np.testing.assert_allclose(result.coords, direct, atol=1e-3)


def test_bad_arguments_raise_value_errors(blobs: np.ndarray) -> None:
    with pytest.raises(ValueError, match="method"):
        projection.project(blobs, "MDS")
    with pytest.raises(ValueError, match="dimensions"):
        projection.project(blobs, "PCA", 4)
    with pytest.raises(ValueError, match="at least 5"):
        projection.project(blobs[:3], "PCA")


def test_align_to_undoes_rotation_reflection_and_scale(blobs: np.ndarray) -> None:
    ref = blobs[:, :2]
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = 3.0 * (ref @ rot) * np.array([1, -1]) + 5.0
    np.testing.assert_allclose(projection.align_to(moved, ref), ref, atol=1e-4)


def test_depth_projection_is_aligned_layer_to_layer(blobs: np.ndarray) -> None:
    flipped = blobs * np.array([-1] + [1] * 7, dtype=np.float32)
    depth = projection.project_depth([blobs, flipped], ["a", "b"], "PCA")
    assert depth.coords.shape == (2, 150, 2)
    np.testing.assert_allclose(depth.coords[1], depth.coords[0], atol=1e-3)


def test_layer_features_streams_and_equals_pca_of_the_layer() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 3)
    images = np.random.default_rng(0).random((70, 1, 8, 8), dtype=np.float32)
    batch = Batch(images, np.arange(70) % 3)
    options = features.FeatureOptions("fc1", max_dims=20, batch_size=32)
    result = features.layer_features(model, batch, options)
    with torch.no_grad():
        full = model.fc1(torch.from_numpy(images).flatten(1)).numpy()
    expected = PCA(n_components=20, random_state=0).fit_transform(full)
    assert (result.layer_dims, result.pca_dims) == (256, 20)
    np.testing.assert_allclose(np.abs(result.features), np.abs(expected), atol=1e-3)
    narrow = features.layer_features(model, batch, features.FeatureOptions(INPUT, max_dims=100))
    np.testing.assert_array_equal(narrow.features, images.reshape(70, -1))
    assert narrow.pca_dims is None and count_hooks(model) == 0


def test_layers_features_equal_layer_features_one_by_one() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 3)
    images = np.random.default_rng(0).random((70, 1, 8, 8), dtype=np.float32)
    names = [INPUT, "fc1", "relu2"]
    together = features.layers_features(model, images, names, max_dims=20)
    apart = features.layers_features(model, images, names, max_dims=20, capture_bytes=1)
    for layer, a, b in zip(names, together, apart, strict=True):
        options = features.FeatureOptions(layer, max_dims=20)
        one = features.layer_features(model, Batch(images, np.zeros(70, int)), options)
        assert (
            (a.layer_dims, a.pca_dims)
            == (one.layer_dims, one.pca_dims)
            == (b.layer_dims, b.pca_dims)
        )
        np.testing.assert_allclose(a.features, one.features, atol=1e-4)
        np.testing.assert_allclose(b.features, one.features, atol=1e-4)
        assert a.info == one.info
    assert count_hooks(model) == 0


def test_projection_is_the_fit_of_the_default_layers_features() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 3)
    batch = Batch(np.random.default_rng(1).random((40, 1, 8, 8), dtype=np.float32), np.zeros(40))
    options = maps.ProjectionOptions(method="PCA", seed=2)
    result = maps.projection(model, batch, options)
    layer = default_layer(report_layers(model, (1, 8, 8)))
    x = features.layer_features(model, batch, features.FeatureOptions(layer, seed=2)).features
    np.testing.assert_array_equal(result.coords, projection.project(x, "PCA", 2, seed=2).coords)
    assert count_hooks(model) == 0


def test_depth_projection_is_project_depth_of_the_ladders_features() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 3)
    batch = Batch(np.random.default_rng(2).random((40, 1, 8, 8), dtype=np.float32), np.zeros(40))
    result = maps.depth_projection(model, batch, maps.DepthOptions())
    ladder = report_layers(model, (1, 8, 8))
    x = [f.features for f in features.layers_features(model, batch.images, ladder)]
    expected = projection.project_depth(x, ladder, "PCA")
    assert result.layers == tuple(ladder)
    np.testing.assert_array_equal(result.coords, expected.coords)
