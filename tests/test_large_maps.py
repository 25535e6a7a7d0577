"""Maps of many points: exact neighbours by matrix product, fit on a stratified sample plus
transform (reproducible, stated), PCA on a sample, the GPU switch's CPU fallback, projections
of a store, and the density image with its click-through cells."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_blobs
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness
from sklearn.neighbors import NearestNeighbors

from core.data.datasets import make_shapes
from core.extract.extract import extract
from core.projections import gpu
from core.projections.density import density_map, nearest_points
from core.projections.large import (
    _init_graph_transform,
    knn_matmul,
    project_large,
    project_store,
)


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(3000, n_features=20, centers=5, cluster_std=2.0, random_state=0)
    return x.astype(np.float32), y


def test_knn_by_matrix_product_is_exact(blobs):
    x = blobs[0]
    dists, idx = NearestNeighbors(n_neighbors=10).fit(x).kneighbors(x[:500])
    got_idx, got_dists = knn_matmul(x[:500], x, 10, block=128)
    np.testing.assert_array_equal(got_idx, idx)
    np.testing.assert_allclose(got_dists, dists, atol=1e-5)


def test_vectorised_transform_start_equals_umap_learns():
    from umap.umap_ import init_graph_transform

    graph = sp.random(200, 80, density=0.08, random_state=1, format="csr")
    graph.data[::9] = 1.0  # duplicates of fitted points start exactly on them
    embedding = np.random.default_rng(0).normal(size=(80, 2)).astype(np.float32)
    np.testing.assert_allclose(
        _init_graph_transform(graph, embedding),
        init_graph_transform(graph, embedding),
        atol=1e-5,
    )


def test_umap_fits_a_stratified_sample_transforms_the_rest_and_reruns_identically(blobs):
    x, y = blobs
    first = project_large(x, y, fit_n=1000, epochs=50, device="cpu")
    again = project_large(x, y, fit_n=1000, epochs=50, device="cpu")
    np.testing.assert_array_equal(first.coords, again.coords)
    assert first.coords.shape == (3000, 2) and np.isfinite(first.coords).all()
    assert len(first.fit_rows) == 1000
    np.testing.assert_array_equal(np.bincount(y[first.fit_rows]), [200] * 5)  # stratified
    assert "stratified sample of 1,000 of 3,000 points" in first.describe()
    assert "the other 2,000 transformed" in first.describe()
    assert trustworthiness(x, first.coords, n_neighbors=10) > 0.85


def test_pca_is_fitted_on_the_sample_and_applied_to_every_row(blobs):
    x, y = blobs
    result = project_large(x, y, "PCA", fit_n=600)
    pca = PCA(2, svd_solver="covariance_eigh", random_state=0).fit(x[result.fit_rows])
    np.testing.assert_allclose(result.coords, pca.transform(x), rtol=1e-4, atol=1e-4)


def test_tsne_is_refused_rather_than_subsampled(blobs):
    with pytest.raises(ValueError, match="UMAP or PCA"):
        project_large(*blobs, "t-SNE")


def test_without_cuda_the_gpu_switch_falls_back_to_umap_learn(blobs, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not gpu.use_gpu("cuda") and not gpu.use_gpu(None)
    x, y = blobs
    result = project_large(x[:600], y[:600], fit_n=300, epochs=20, device="cuda")
    assert result.backend == "umap-learn"


@pytest.mark.skipif(importlib.util.find_spec("torchdr") is None, reason="torchdr not installed")
def test_the_gpu_implementation_runs_through_torchdr(blobs):
    x = blobs[0]
    coords = gpu.gpu_umap(x[:400], 10, 0.1, seed=0, device="cpu")  # same code path, on CPU
    assert coords.shape == (400, 2) and np.isfinite(coords).all()


def test_a_store_is_projected_once_and_read_back(tmp_path):
    data = make_shapes(400, seed=5)
    store = extract(
        "cnn-shapes", ["head.flatten"], tmp_path / "store", dataset=data, chunk_rows=150,
        device="cpu", progress=lambda *_: None,
    )  # fmt: skip
    first = project_store(store, "head.flatten", "UMAP", fit_n=200)
    assert first.coords.shape == (400, 2) and first.input_dims == 64
    assert len(list((store.path / "maps").glob("*.npz"))) == 1
    again = project_store(store, "head.flatten", "UMAP", fit_n=200)
    np.testing.assert_array_equal(again.coords, first.coords)
    assert again.describe() == first.describe()


def test_density_map_counts_every_point_and_cells_lead_to_the_nearest_points(blobs):
    x, y = blobs
    coords = x[:, :2]
    colours = ["#ff0000", "#00ff00", "#0000ff", "#ffff00", "#00ffff"]
    dmap = density_map(coords, y, colours, width=200, height=150)
    assert dmap.image.shape == (150, 200, 4) and dmap.image.dtype == np.uint8
    assert dmap.cell_count.sum() == len(coords) == dmap.n
    assert (dmap.image[..., 3] > 0).any()
    near = nearest_points(coords, dmap.cell_xy[:1], 5)
    d2 = ((coords - dmap.cell_xy[0]) ** 2).sum(1)
    np.testing.assert_array_equal(near, np.argsort(d2, kind="stable")[:5])
