"""Maps of very many points: fit on a stratified sample, transform the rest in batches.

A full UMAP of ``N`` points costs a neighbour search over all of them and an optimisation whose
epochs touch every edge, single-threaded under a fixed seed (29 s for 50,000 Fashion-MNIST
points on 2 cores). :func:`project_large` instead:

1. reduces wide rows to :data:`~core.projections.fits.MAX_INPUT_DIMS` by a PCA fitted on the
   sample (every row then transformed in batches);
2. fits umap-learn on a stratified sample of ``fit_n`` rows, given the *exact* neighbour graph
   of the sample computed as one blocked matrix product (:func:`knn_matmul`: no pynndescent,
   no compilation, no approximation), with :data:`FIT_EPOCHS` epochs, started from the
   sample's PCA (umap-learn's default spectral start is not reproducible when the neighbour
   graph has several components: two fits of well-separated classes gave different maps);
3. places every other row with umap-learn's own ``transform`` (neighbours in the sample by the
   same matrix product, through :class:`ExactIndex`, then :data:`TRANSFORM_EPOCHS` epochs with
   the sample fixed), :data:`TRANSFORM_BATCH` rows at a time, in a fixed order. Its start
   positions come from :func:`_init_graph_transform`, a vectorised copy of umap-learn's
   per-row Python loop (which alone took 28 s for 40,000 rows).

Every step is seeded and batch boundaries are fixed, so a rerun gives the same coordinates.
PCA is fitted on the sample and applied to all; t-SNE has no transform, so it is refused
above ``fit_n`` points rather than silently subsampled. :class:`LargeProjection` records the
sample size and method, and :meth:`LargeProjection.describe` says them on the figure.

When CUDA is present, :func:`core.projections.gpu.gpu_umap` (TorchDR) fits the whole set on
the GPU behind the same function; without it (or ``device="cpu"``) umap-learn is used, and
remains the reference. What can go wrong: fewer than 5 points (``ValueError``); a class with
very few rows (the stratified sample keeps class proportions, so it may miss it entirely:
its points are still transformed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from unittest.mock import patch

import numpy as np

from core.data.datasets import stratified_sample
from core.projections.fits import MAX_INPUT_DIMS, umap_model, umap_slot
from core.threads import limited_threads

if TYPE_CHECKING:
    from core.extract.store import ActivationStore

FIT_N = 5_000
"""Rows a large map is fitted on (the rest are transformed)."""
FIT_EPOCHS = 200
"""Optimisation epochs of the fit (umap-learn's default is 500 up to 10,000 points)."""
TRANSFORM_EPOCHS = 30
"""Epochs placing transformed rows (umap-learn's own default above 10,000 new rows)."""
TRANSFORM_BATCH = 25_000
"""Rows placed per ``transform`` call."""
KNN_BLOCK = 4096
"""Query rows per block of the neighbour matrix product (memory: block x sample floats)."""
LARGE_METHODS = ("UMAP", "PCA")


@dataclass(frozen=True)
class LargeProjection:
    """2-D coordinates of ``N`` rows, and how they were made.

    Attributes:
        coords: ``[N, 2]`` float32.
        method: ``UMAP`` or ``PCA``.
        fit_rows: ``[fit_n]`` sorted row indices of the stratified sample the map was fitted on.
        input_dims: width of the rows given.
        reduced_dims: width after the PCA pre-reduction (``None``: none).
        epochs: UMAP fit epochs (0 for PCA).
        backend: ``umap-learn`` or ``torchdr (cuda)``.
        seconds: wall time.
    """

    coords: np.ndarray
    method: str
    fit_rows: np.ndarray
    input_dims: int
    reduced_dims: int | None
    epochs: int
    backend: str
    seconds: float

    @property
    def n(self) -> int:
        """Number of points."""
        return len(self.coords)

    def describe(self) -> str:
        """One sentence for a figure: the method, the sample, the rest."""
        fit = len(self.fit_rows)
        if fit >= self.n:
            how = f"{self.method} of all {self.n:,} points"
        else:
            how = (
                f"{self.method} fitted on a stratified sample of {fit:,} of {self.n:,} points; "
                f"the other {self.n - fit:,} transformed into it"
            )
        width = f"{self.input_dims} dims"
        if self.reduced_dims:
            width += f" → PCA {self.reduced_dims}"
        return f"{how} ({width}, {self.backend}, {self.seconds:.1f} s)"


def knn_matmul(
    queries: np.ndarray, base: np.ndarray, k: int, block: int = KNN_BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest rows of ``base`` for each query, chosen by ``|q|² - 2 q·b + |b|²``.

    Args:
        queries: ``[M, d]`` float32.
        base: ``[S, d]`` float32.
        k: neighbours per query (``<= S``).
        block: queries per matrix product.

    Returns:
        ``(indices [M, k] int32, distances [M, k] float32)``, nearest first (ties: lower index).
    """
    import torch

    base_t = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32))
    base_sq = (base_t * base_t).sum(1)
    indices = np.empty((len(queries), k), np.int32)
    dists = np.empty((len(queries), k), np.float32)
    for start in range(0, len(queries), block):
        q = torch.from_numpy(np.ascontiguousarray(queries[start : start + block], np.float32))
        d2 = torch.addmm(base_sq[None, :], q, base_t.T, alpha=-2.0) + (q * q).sum(1, keepdim=True)
        part = torch.topk(d2, k, dim=1, largest=False).indices
        # the expansion loses digits (a point's distance to itself comes out ~1e-2): the
        # chosen neighbours' distances are recomputed directly, and ordered by those
        part_d = torch.linalg.vector_norm(q[:, None, :] - base_t[part], dim=2).numpy()
        part = part.numpy()
        order = np.lexsort((part, part_d), axis=1)  # nearest first, ties: lower index
        indices[start : start + len(q)] = np.take_along_axis(part, order, 1)
        dists[start : start + len(q)] = np.take_along_axis(part_d, order, 1)
    return indices, dists


class ExactIndex:
    """The search index umap-learn's ``transform`` queries, answered by :func:`knn_matmul`.

    umap-learn keeps the third element of ``precomputed_knn`` as its search index and calls
    ``index.query(X, k, epsilon=...)`` in ``transform``; this one searches the fitted rows
    exactly instead of building a pynndescent index.
    """

    _angular_trees = False

    def __init__(self, rows: np.ndarray):
        self.rows = np.ascontiguousarray(rows, dtype=np.float32)

    def query(self, x: np.ndarray, k: int, epsilon: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``(indices [M, k], distances [M, k])`` of ``x``'s nearest fitted rows."""
        return knn_matmul(x, self.rows, k)


def _pca(sample: np.ndarray, dims: int, seed: int):
    from sklearn.decomposition import PCA

    pca = PCA(min(dims, *sample.shape), svd_solver="covariance_eigh", random_state=seed)
    return pca.fit(sample)


def _init_graph_transform(graph, embedding: np.ndarray) -> np.ndarray:
    """umap-learn's ``init_graph_transform`` without its Python loop over rows (0.7 ms a row).

    A new point starts at the weighted mean of its neighbours' positions, or exactly at a
    neighbour it duplicates (weight 1); a point without neighbours is NaN.
    """
    from sklearn.preprocessing import normalize

    graph = graph.tocsr()
    out = (normalize(graph, norm="l1") @ embedding).astype(np.float32)
    rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
    ones = graph.data == 1
    if ones.any():
        first = np.unique(rows[ones], return_index=True)
        out[first[0]] = embedding[graph.indices[np.flatnonzero(ones)[first[1]]]]
    out[np.diff(graph.indptr) == 0] = np.nan
    return out


def _batched(transform: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int):
    return np.concatenate(
        [transform(x[s : s + batch]).astype(np.float32) for s in range(0, len(x), batch)]
    )


def project_large(
    x: np.ndarray,
    labels: np.ndarray,
    method: str = "UMAP",
    *,
    fit_n: int = FIT_N,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    epochs: int = FIT_EPOCHS,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LargeProjection:
    """A 2-D map of ``x [N, D]``: fitted on a stratified sample, the rest transformed.

    Args:
        x: ``[N, D]`` rows (any float dtype; float16 stores are read as float32 per batch).
        labels: ``[N]`` class codes (the sample is stratified by them).
        method: one of :data:`LARGE_METHODS`.
        fit_n: sample size; ``N <= fit_n`` fits every row.
        seed: seeds the sample, PCA and UMAP.
        n_neighbors, min_dist: UMAP's.
        epochs: UMAP fit epochs (the transform runs :data:`TRANSFORM_EPOCHS`).
        device: ``cuda`` fits with TorchDR (:mod:`core.projections.gpu`); ``None`` picks it
            when CUDA is available and TorchDR is installed; ``cpu`` forces umap-learn.
        progress: called as ``progress(rows placed, N)``.

    Raises:
        ValueError: unknown method or fewer than 5 rows.
    """
    if method not in LARGE_METHODS:
        raise ValueError(
            f"{method} has no transform for new points: large maps are UMAP or PCA, fitted on "
            "a sample and applied to every point."
        )
    n = len(x)
    if n < 5:
        raise ValueError(f"Projecting needs at least 5 samples, not {n}.")
    start = time.perf_counter()
    x = x.reshape(n, -1)
    input_dims, reduced = x.shape[1], None
    rows = stratified_sample(np.asarray(labels), fit_n, seed)
    with limited_threads():
        if method == "PCA" or input_dims > MAX_INPUT_DIMS:
            pca = _pca(
                np.asarray(x[rows], np.float32), 2 if method == "PCA" else MAX_INPUT_DIMS, seed
            )
            x = _batched(pca.transform, x, TRANSFORM_BATCH)
            reduced = None if method == "PCA" else x.shape[1]
        else:
            x = np.asarray(x, np.float32)
    if method == "PCA":
        return LargeProjection(
            x, method, rows, input_dims, reduced, 0, "scikit-learn", time.perf_counter() - start
        )
    from core.projections.gpu import gpu_umap, use_gpu

    if use_gpu(device):
        coords = gpu_umap(x, n_neighbors, min_dist, seed)
        return LargeProjection(
            coords, method, np.arange(n), input_dims, reduced, 0, "torchdr (cuda)",
            time.perf_counter() - start,
        )  # fmt: skip
    sample = x[rows]
    k = min(n_neighbors, len(rows) - 1)
    with limited_threads():
        knn = knn_matmul(sample, sample, k)
    coords = np.empty((n, 2), np.float32)
    with umap_slot():
        model = umap_model(
            2, seed, k, min_dist,
            precomputed_knn=(*knn, ExactIndex(sample)),
            force_approximation_algorithm=True,
            n_epochs=epochs,
            init="pca",
        )  # fmt: skip
        coords[rows] = model.fit_transform(sample)
        model.n_epochs = 3 * TRANSFORM_EPOCHS  # umap-learn's transform runs n_epochs // 3
        rest = np.setdiff1d(np.arange(n), rows)
        with patch("umap.umap_.init_graph_transform", _init_graph_transform):
            for s in range(0, len(rest), TRANSFORM_BATCH):
                part = rest[s : s + TRANSFORM_BATCH]
                coords[part] = model.transform(x[part])
                if progress is not None:
                    progress(len(rows) + s + len(part), n)
    return LargeProjection(
        coords, method, rows, input_dims, reduced, epochs, "umap-learn",
        time.perf_counter() - start,
    )  # fmt: skip


def store_rows(store: ActivationStore, layer: str) -> np.ndarray:
    """A stored layer as ``[N, D]`` float32 rows (pooled when stored both ways), verified."""
    stored = store.layer(layer)
    return np.concatenate(
        [v.reshape(len(v), -1).astype(np.float32) for _, v in store.iter_chunks(stored.array)]
    )


def project_store(
    store: ActivationStore,
    layer: str,
    method: str = "UMAP",
    *,
    fit_n: int = FIT_N,
    seed: int = 0,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LargeProjection:
    """:func:`project_large` of a stored layer, kept in the store's ``maps/`` folder.

    A map computed once is read back on the next call (same layer, method, sample size,
    seed): opening a million-point store in the app twice fits once.
    """
    stored = store.layer(layer)
    path = store.path / "maps" / f"{stored.array}_{method}_{fit_n}_{seed}.npz"
    if path.is_file():
        with np.load(path) as f:
            meta = json.loads(str(f["meta"]))
            return LargeProjection(f["coords"], method, f["fit_rows"], **meta)
    labels = store.read("labels")
    result = project_large(
        store_rows(store, layer), labels, method, fit_n=fit_n, seed=seed, device=device,
        progress=progress,
    )  # fmt: skip
    meta = {k: getattr(result, k) for k in ("input_dims", "reduced_dims", "epochs", "backend")}
    meta["seconds"] = result.seconds
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, coords=result.coords, fit_rows=result.fit_rows, meta=np.array(json.dumps(meta)))
    tmp.replace(path)
    return result
