"""2-D and 3-D maps of a layer's activations: PCA, UMAP and t-SNE, alone and across depth.

A layer's output ``[N, *shape]`` is flattened to ``[N, D]``. Wide layers (``D > 50``) are
first reduced by PCA to 50 dimensions before UMAP or t-SNE (the standard recipe: it removes
noise and makes neighbour search cheap); :class:`Projection` records that it happened.

UMAP is the slow one, for three reasons this module handles:

- **Compilation.** umap-learn compiles its numba kernels on first use (about 12 s on 2 cores,
  and numba's disk cache does not cover umap's own kernels). :func:`warm_up` fits a tiny
  problem so the server pays that once at start, in a background thread.
- **Neighbour search.** umap-learn switches to pynndescent at 4,096 points, whose first use
  compiles for another ~28 s. Up to :data:`EXACT_KNN_MAX` points we compute the exact
  neighbour graph with scikit-learn instead (a fraction of a second at 5,000 x 50) and hand it
  to umap-learn as ``precomputed_knn``: same algorithm, no approximation, no compilation.
- **Sharing.** umap-learn's numba thread count is process state, and a fit on every core
  starves the torch forward pass of another browser session. Fits are serialised by one
  process-wide lock and run with at most :func:`fit_threads` threads (numba and BLAS). The app
  goes further and runs UMAP and t-SNE in :mod:`core.worker`'s process, so a fit never holds
  the server's interpreter lock.

A fixed seed makes umap-learn single-threaded (1.3-1.8x slower) but gives the same
coordinates on every run, which an audit needs; we choose reproducibility.

What can go wrong: too few samples for the method (``ValueError``), a layer whose features
are all constant (PCA returns zeros; UMAP raises).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from core.threads import fit_threads, limited_threads

# scikit-learn and scipy are imported where used: they take seconds to import, and a server's
# first page (which imports this module through ui.cache) needs neither.

METHODS = ("UMAP", "PCA", "t-SNE")
MAX_INPUT_DIMS = 50
"""Layers wider than this are reduced by PCA before UMAP or t-SNE."""
EXACT_KNN_MAX = 20_000
"""Up to this many points UMAP gets an exact neighbour graph from scikit-learn."""

_umap_lock = threading.Lock()
warnings.filterwarnings("ignore", message="n_jobs value .* overridden", category=UserWarning)
warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)


@dataclass(frozen=True)
class Projection:
    """Low-dimensional coordinates of ``N`` samples.

    Attributes:
        coords: ``[N, dims]`` float32.
        method: ``UMAP``, ``PCA`` or ``t-SNE``.
        input_dims: width of the features given (``D``).
        reduced_dims: width after the PCA pre-reduction, or ``None`` when there was none.
        seconds: wall time of the fit (waiting for the lock not included).
    """

    coords: np.ndarray
    method: str
    input_dims: int
    reduced_dims: int | None
    seconds: float


@contextmanager
def umap_slot() -> Iterator[None]:
    """Holds the process-wide UMAP lock and caps numba's threads at :func:`fit_threads`."""
    import numba

    with _umap_lock:
        before = numba.get_num_threads()
        numba.set_num_threads(min(fit_threads(), numba.config.NUMBA_NUM_THREADS))
        try:
            yield
        finally:
            numba.set_num_threads(before)


def pca_reduce(x: np.ndarray, dims: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """PCA of ``x [N, D]`` to ``min(dims, N, D)`` components.

    Returns:
        ``([N, d] float32 coordinates, explained variance fraction)``.
    """
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(dims, *x.shape), random_state=seed)
    coords = pca.fit_transform(x).astype(np.float32)
    return coords, float(pca.explained_variance_ratio_.sum())


def exact_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest neighbours of every row, itself first, as umap-learn expects.

    Returns:
        ``(indices [N, k] int32, distances [N, k] float32)``.
    """
    from sklearn.neighbors import NearestNeighbors

    dists, idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
    return idx.astype(np.int32), dists.astype(np.float32)


def umap_model(dims: int, seed: int, n_neighbors: int, min_dist: float, **kwargs: object) -> object:
    """The ``umap.UMAP`` estimator layerscope fits (for comparisons: same settings)."""
    import umap

    return umap.UMAP(
        n_components=dims,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        random_state=seed,
        n_jobs=1,
        **kwargs,
    )


def _tsne(x: np.ndarray, dims: int, seed: int, perplexity: float, init: np.ndarray | None):
    from sklearn.manifold import TSNE

    tsne = TSNE(
        n_components=dims,
        perplexity=min(perplexity, (len(x) - 1) / 3),
        init="pca" if init is None else init,
        random_state=seed,
    )
    return tsne.fit_transform(x).astype(np.float32)


def _umap(
    x: np.ndarray, dims: int, seed: int, n_neighbors: int, min_dist: float, init: np.ndarray | None
) -> np.ndarray:
    k = min(n_neighbors, len(x) - 1)
    if len(x) <= EXACT_KNN_MAX:
        with limited_threads():
            knn: tuple = exact_knn(x, k)
    else:
        knn = (None, None, None)
    extra = {} if init is None else {"init": init}
    with umap_slot():
        model = umap_model(dims, seed, k, min_dist, precomputed_knn=knn, **extra)
        return model.fit_transform(x).astype(np.float32)


def project(
    x: np.ndarray,
    method: str = "UMAP",
    dims: int = 2,
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    perplexity: float = 30.0,
    max_input_dims: int = MAX_INPUT_DIMS,
    init: np.ndarray | None = None,
) -> Projection:
    """Projects rows ``x [N, ...]`` (flattened to ``[N, D]``) to ``dims`` dimensions.

    PCA is scikit-learn's ``PCA(n_components=dims, random_state=seed)``. UMAP is
    ``umap.UMAP(n_components=dims, n_neighbors, min_dist, random_state=seed)`` given the exact
    neighbour graph (see the module docstring). t-SNE is scikit-learn's with ``init="pca"``.
    UMAP and t-SNE first reduce ``D > max_input_dims`` to ``max_input_dims`` by PCA.

    Args:
        x: ``[N, ...]`` features, one row per sample.
        method: one of :data:`METHODS`.
        dims: 2 or 3.
        seed: random state of every step.
        n_neighbors, min_dist: UMAP's.
        perplexity: t-SNE's (capped at ``(N - 1) / 3``).
        max_input_dims: width above which UMAP and t-SNE get a PCA pre-reduction.
        init: ``[N, dims]`` starting coordinates for UMAP or t-SNE (see :func:`project_depth`).

    Raises:
        ValueError: unknown method, ``dims`` not 2 or 3, or fewer than 5 samples.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown projection method {method!r}: use one of {', '.join(METHODS)}.")
    if dims not in (2, 3):
        raise ValueError(f"A projection has 2 or 3 dimensions, not {dims}.")
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    if len(x) < 5:
        raise ValueError(f"Projecting needs at least 5 samples, not {len(x)}.")
    input_dims, reduced = x.shape[1], None
    start = time.perf_counter()
    if method == "PCA":
        with limited_threads():
            coords = pca_reduce(x, dims, seed)[0]
    else:
        if input_dims > max_input_dims:
            with limited_threads():
                x = pca_reduce(x, max_input_dims, seed)[0]
            reduced = x.shape[1]
        if method == "UMAP":
            coords = _umap(x, dims, seed, n_neighbors, min_dist, init)
        else:
            with limited_threads():
                coords = _tsne(x, dims, seed, perplexity, init)
    return Projection(coords, method, input_dims, reduced, time.perf_counter() - start)


def align_to(coords: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Rotates/reflects and rescales ``coords [N, d]`` onto ``reference [N, d]`` (Procrustes).

    Only an orthogonal map, one scale and a shift are applied, so the shape of the point
    cloud is unchanged; it just stops jumping (flips, rotations) from layer to layer.
    """
    a = coords - coords.mean(axis=0)
    b = reference - reference.mean(axis=0)
    from scipy.linalg import orthogonal_procrustes

    rotation, scale = orthogonal_procrustes(a, b)
    return (a @ rotation * (scale / max((a**2).sum(), 1e-12)) + reference.mean(axis=0)).astype(
        np.float32
    )


@dataclass(frozen=True)
class DepthProjection:
    """The same samples projected at several layers, each aligned to the one before.

    Attributes:
        layers: layer names, shallow to deep.
        coords: ``[L, N, dims]`` float32.
        method: the projection method.
    """

    layers: tuple[str, ...]
    coords: np.ndarray
    method: str


def project_depth(
    features: Sequence[np.ndarray],
    layers: Sequence[str],
    method: str = "PCA",
    dims: int = 2,
    *,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> DepthProjection:
    """Projects each layer's ``[N, D_l]`` features and aligns every map to the previous one.

    UMAP and t-SNE also start each layer from the previous layer's map, so neighbouring
    layers that organise samples alike get maps that look alike; Procrustes then removes the
    remaining rotation and reflection.

    Args:
        features: one ``[N, D_l]`` array per layer, same samples in the same order.
        layers: their names.
        method, dims, seed: as for :func:`project`.
        progress: called as ``progress(done, total)`` after each layer.
    """
    maps: list[np.ndarray] = []
    for i, x in enumerate(features):
        maps.append(depth_step(x, maps[-1] if maps else None, method, dims, seed=seed))
        if progress is not None:
            progress(i + 1, len(features))
    return DepthProjection(tuple(layers), np.stack(maps), method)


def depth_step(
    x: np.ndarray, previous: np.ndarray | None, method: str = "PCA", dims: int = 2, *, seed: int = 0
) -> np.ndarray:
    """One layer of :func:`project_depth`: ``x``'s map, started from and aligned to ``previous``.

    A module-level function of arrays, so a caller can run each layer in the fit worker
    (:mod:`core.worker`) and report progress between layers.
    """
    init = None if previous is None or method == "PCA" else _rescale(previous, method)
    coords = project(x, method, dims, seed=seed, init=init).coords
    return coords if previous is None else align_to(coords, previous)


def _rescale(coords: np.ndarray, method: str) -> np.ndarray:
    """Starting coordinates at the scale each method expects (t-SNE: std 1e-4; UMAP: 0..10)."""
    centred = coords - coords.mean(axis=0)
    if method == "t-SNE":
        return (centred / max(centred[:, 0].std(), 1e-12) * 1e-4).astype(np.float32)
    return (10 * (centred - centred.min(0)) / np.ptp(centred, axis=0).clip(1e-12)).astype(
        np.float32
    )


def warm_up(n: int = 300, seed: int = 0) -> float:
    """Fits a tiny UMAP so numba compiles umap-learn's kernels now, not for the first user.

    Call it once at server start in a daemon thread; it holds the fit lock while it runs, so a
    user's first UMAP waits for it instead of compiling in parallel.

    Returns:
        Seconds it took.
    """
    start = time.perf_counter()
    x = np.random.default_rng(seed).normal(size=(n, 10)).astype(np.float32)
    project(x, "UMAP", 2, seed=seed)
    return time.perf_counter() - start
