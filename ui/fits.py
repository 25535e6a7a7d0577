"""Projections, depth maps and the layer report card: computed once per process and key, with
progress and time left, Stop interrupting (see :mod:`ui.progress`).

Why apart from :mod:`ui.cache`: these are not ``st.cache_*`` wrappers but multi-stage
computations: a capture of layer features shared between views, then UMAP / t-SNE fits in the
fit worker process (:mod:`core.worker`, polled so a stop can withdraw a queued fit), or probes
and Gram matrices for the report card. Each first looks in the run's result store (the shipped
runs' default views are there, written by ``make assets``) and stores what it computed for the
user's own runs. What can go wrong: a fit interrupted while running in the worker finishes
there and is kept whole; a queued one is withdrawn.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import numpy as np

from core import worker
from core.models import precompute as pre
from core.models.runs import LoadedRun
from core.projections import features as feats
from core.projections import fits as proj
from core.projections import report_card as card
from ui.cache import cls_layers, layers, loaded_run, run_mtime
from ui.progress import Flight, Progress, Results, computed

T = TypeVar("T")


def _part(progress: Progress, start: float, stop: float) -> Progress:
    """A progress callback for one stage, filling ``[start, stop]`` (fractions) of ``progress``."""

    def report(done: int, total: int) -> None:
        fraction = done / total if total else 0.0
        progress(round(1000 * (start + (stop - start) * fraction)), 1000)

    return report


# --- layer features and projections -------------------------------------------------------------

_FEATURES: Results[feats.LayerFeatures] = Results("layer features", 64)
_FEATURE_INFO: Results[feats.FeatureInfo] = Results("layer widths", 256)
_PROJECTIONS: Results[proj.Projection] = Results("projection", 64)
_DEPTHS: Results[proj.DepthProjection] = Results("depth projection", 8)
_FITS: dict[tuple, Future] = {}
_FITS_LOCK = threading.Lock()
_FIT_SECONDS = {"UMAP": (1.0, 1.5), "t-SNE": (2.0, 6.0), "PCA": (0.2, 0.1)}
"""Rough fit time per method: ``(fixed seconds, seconds per 1,000 points)``; updated as fits end."""


def _forward(progress: Progress | None) -> Callable[[Flight, bool], None] | None:
    """Reports an inner computation's progress (or its wait for another session's) as the
    outer one's, so the outer bar moves and Stop still interrupts."""
    if progress is None:
        return None
    return lambda flight, _waiting: progress(round(1000 * flight.fraction), 1000)


def _layer_features_with(
    run: LoadedRun, mtime: float, layer: str, n: int, seed: int, progress: Progress | None
) -> feats.LayerFeatures:
    name = run.info.name

    def compute(inner: Progress) -> feats.LayerFeatures:
        return pre.layer_features(run, layer, n, seed, progress=inner)

    key = (name, mtime, layer, n, seed)
    result = _FEATURES.compute(key, compute, label=f"Capturing {layer}", report=_forward(progress))
    _FEATURE_INFO.put(key, result.info)
    return result


def feature_info(name: str, layer: str, n: int, seed: int = 0) -> feats.FeatureInfo:
    """The width of ``layer`` over :func:`projection_samples`, and of its PCA reduction (stored
    for the shipped runs' default views, so it needs no forward pass there)."""
    mtime = run_mtime(name)
    key = (name, mtime, layer, n, seed)
    held = _FEATURES.get(key)
    if held is not None:
        return held.info
    run = loaded_run(name)

    def compute(progress: Progress) -> feats.FeatureInfo:
        args = {"layer": layer, "n": n, "seed": seed}
        return pre.stored(
            run,
            "feature-info",
            args,
            feats.FeatureInfo,
            lambda: _layer_features_with(run, mtime, layer, n, seed, progress).info,
        )

    return computed(_FEATURE_INFO, key, compute, f"Capturing {layer} for {n:,} samples")


def _fit_in_worker(
    key: tuple, fn: Callable[..., T], args: tuple, kwargs: dict, n: int, method: str,
    progress: Progress | None, results: Results | None = None,
) -> T:  # fmt: skip
    """``fn(*args, **kwargs)`` in the fit worker, polled so that progress (an estimate from
    the method and ``n``) is reported and a stop can interrupt the wait.

    Interrupted, a fit still queued is withdrawn; one already running finishes in the worker
    and its result is kept in ``results`` under ``key`` (a whole result, never a partial one).
    """
    with _FITS_LOCK:
        future = _FITS.get(key)
        if future is None or future.cancelled():
            future = _FITS[key] = worker.submit(fn, *args, **kwargs)
    fixed, per_thousand = _FIT_SECONDS.get(method, (2.0, 3.0))
    expected = fixed + per_thousand * n / 1000
    started = time.monotonic()
    try:
        while True:
            try:
                result = future.result(timeout=0.2)
                break
            except TimeoutError:
                if progress is not None:
                    elapsed = time.monotonic() - started
                    progress(round(1000 * min(0.95, elapsed / expected)), 1000)
    except BaseException:
        if not future.cancel() and results is not None and not future.done():

            def keep(done: Future) -> None:
                with contextlib.suppress(Exception):
                    results.put(key, done.result())

            future.add_done_callback(keep)
        with _FITS_LOCK:
            _FITS.pop(key, None)
        raise
    with _FITS_LOCK:
        _FITS.pop(key, None)
    seconds = time.monotonic() - started
    _FIT_SECONDS[method] = (fixed, max(0.2, 0.7 * per_thousand + 0.3 * seconds * 1000 / n))
    return result


def _stored_projection(
    run: LoadedRun, layer: str, n: int, method: str, dims: int, seed: int
) -> tuple[dict[str, Any], proj.Projection | None]:
    args = {"layer": layer, "n": n, "method": method, "dims": dims, "seed": seed}
    return args, pre.load(run, "projection", args, proj.Projection)


def projection(
    name: str, layer: str, n: int, method: str, dims: int, seed: int = 0
) -> proj.Projection:
    """A projection of :func:`layer_features` (shared by every session).

    UMAP and t-SNE run in the fit worker (:mod:`core.worker`); the progress bar shows the
    capture, then an estimate of the fit's time.
    """
    mtime = run_mtime(name)
    key = (name, mtime, layer, n, method, dims, seed)
    run = loaded_run(name)

    def compute(progress: Progress) -> proj.Projection:
        args, found = _stored_projection(run, layer, n, method, dims, seed)
        if found is not None:
            return found
        progress(0, 1000)
        capture_share = 0.0 if _FEATURES.ready((name, mtime, layer, n, seed)) else 0.4
        if method == "PCA":
            capture_share = 0.9
        features = _layer_features_with(
            run, mtime, layer, n, seed, _part(progress, 0.0, capture_share)
        ).features
        if method == "PCA":
            result = proj.project(features, method, dims, seed=seed)
        else:
            result = _fit_in_worker(
                key, proj.project, (features, method, dims), {"seed": seed}, n, method,
                _part(progress, capture_share, 1.0), _PROJECTIONS,
            )  # fmt: skip
        if not run.info.shipped:
            pre.save(run, "projection", args, result)
        return result

    label = f"{method} of {layer} ({n:,} samples)"
    return computed(_PROJECTIONS, key, compute, label)


def projection_ready(name: str, layer: str, n: int, method: str, dims: int, seed: int = 0) -> bool:
    """The projection is computed already, or stored (getting it will not wait).

    Asks the projections' table itself, so it is false again once a result is dropped.
    """
    mtime = run_mtime(name)
    key = (name, mtime, layer, n, method, dims, seed)
    if _PROJECTIONS.ready(key):
        return True
    found = _stored_projection(loaded_run(name), layer, n, method, dims, seed)[1]
    if found is not None:
        _PROJECTIONS.put(key, found)
        return True
    return False


def depth_projection(
    name: str, layers: tuple[str, ...], n: int, method: str, seed: int = 0
) -> proj.DepthProjection:
    """The same samples projected at each of ``layers``, aligned layer to layer.

    The layers are captured in as few forward passes as memory allows; UMAP fits run in the
    fit worker one layer at a time, with progress between layers.
    """
    mtime = run_mtime(name)
    key = (name, mtime, layers, n, method, seed)
    run = loaded_run(name)

    def compute(progress: Progress) -> proj.DepthProjection:
        args = {"layers": tuple(layers), "n": n, "method": method, "seed": seed}
        found = pre.load(run, "depth", args, proj.DepthProjection)
        if found is not None:
            return found
        progress(0, 1000)
        fkeys = [(name, mtime, layer, n, seed) for layer in layers]
        missing = [layer for layer, k in zip(layers, fkeys, strict=True) if not _FEATURES.ready(k)]
        capture_share = 0.6 if method == "PCA" else 0.25
        if missing:
            captured = pre.layers_features(
                run, missing, n, seed, progress=_part(progress, 0.0, capture_share)
            )
            for layer, result in zip(missing, captured, strict=True):
                _FEATURES.put((name, mtime, layer, n, seed), result)
                _FEATURE_INFO.put((name, mtime, layer, n, seed), result.info)
        features = [
            _layer_features_with(run, mtime, layer, n, seed, None).features for layer in layers
        ]
        maps: list[np.ndarray] = []
        for i, x in enumerate(features):
            previous = maps[-1] if maps else None
            if method == "PCA":
                maps.append(proj.depth_step(x, previous, method, seed=seed))
            else:
                step = _part(
                    progress,
                    capture_share + (1 - capture_share) * i / len(layers),
                    capture_share + (1 - capture_share) * (i + 1) / len(layers),
                )
                maps.append(
                    _fit_in_worker(
                        (*key, i),
                        proj.depth_step,
                        (x, previous, method),
                        {"seed": seed},
                        n,
                        method,
                        step,
                    )
                )
            done = capture_share + (1 - capture_share) * (i + 1) / len(layers)
            progress(round(1000 * done), 1000)
        result = proj.DepthProjection(tuple(layers), np.stack(maps), method)
        if not run.info.shipped:
            pre.save(run, "depth", args, result)
        return result

    label = f"{method} of {len(layers)} layers, each aligned to the last ({n:,} samples)"
    return computed(_DEPTHS, key, compute, label)


# --- the layer report card -----------------------------------------------------------------------

_REPORTS: Results[card.LayerReport] = Results("layer report", 16)
_GRAMS: Results[card.Grams] = Results("Gram matrices", 4)
_CKAS: Results[card.CKA] = Results("CKA", 32)


def report_layers(name: str) -> list[str]:
    """The run's layers the report card covers, shallow to deep (CLS tokens for a ViT)."""
    return card.depth_layers(layers(name), tokens=cls_layers(name))


def _versus(versus: str) -> str | LoadedRun:
    return versus if versus in ("trained", "random") else loaded_run(versus)


def _versus_key(versus: str | None) -> tuple:
    if versus in (None, "trained", "random", "self"):
        return (versus,)
    return (versus, run_mtime(versus))


def report(name: str, n: int = 1000, versus: str = "trained", seed: int = 0) -> card.LayerReport:
    """The layer report card of run ``name`` on ``n`` held-out samples (val + test).

    ``versus`` picks the model: ``"trained"`` (the run), ``"random"`` (the same architecture
    with random weights) or another run's name (fed this run's samples). The report is kept
    without its Gram matrices; CKA comes from :func:`report_cka`.
    """
    mtime = run_mtime(name)
    key = (name, mtime, n, *_versus_key(versus), seed)
    run, model = loaded_run(name), _versus(versus)

    def compute(progress: Progress) -> card.LayerReport:
        args = pre.report_args(run, n, model, seed)
        found = pre.load(run, "report", args, card.LayerReport)
        if found is not None:
            return found
        full = pre.report(run, n, model, seed, progress=progress)
        _GRAMS.put(key, card.Grams(full.layers, full.grams))
        result = full.without_grams()
        if not run.info.shipped:
            pre.save(run, "report", args, result)
        return result

    targets = 1 + len(run.info.dataset.factors)
    label = "random-init " if versus == "random" else "" if versus == "trained" else f"{versus} "
    text = f"Probing every {label}layer for {targets} targets ({n:,} held-out samples)"
    return computed(_REPORTS, key, compute, text)


def _grams(
    run: LoadedRun, mtime: float, n: int, versus: str, seed: int, progress: Progress
) -> card.Grams:
    key = (run.info.name, mtime, n, *_versus_key(versus), seed)
    model = _versus(versus)

    def compute(inner: Progress) -> card.Grams:
        return pre.report_grams(run, n, model, seed, progress=inner)

    return _GRAMS.compute(key, compute, label="Gram matrices", report=_forward(progress))


def report_cka(name: str, n: int = 1000, versus: str | None = None, seed: int = 0) -> card.CKA:
    """Linear CKA between the report card's layers of run ``name`` and those of ``versus``.

    ``versus``: ``None`` (the run against itself), ``"random"`` (random init) or another run's
    name (fed this run's samples). Same samples as :func:`report` (its first ``CKA_SAMPLES``).
    """
    mtime = run_mtime(name)
    key = (name, mtime, n, *_versus_key(versus), seed)
    run = loaded_run(name)
    other = None if versus is None else _versus(versus)

    def compute(progress: Progress) -> card.CKA:
        args = pre.cka_args(run, n, other, seed)
        found = pre.load(run, "cka", args, card.CKA)
        if found is not None:
            return found
        progress(0, 1000)
        a = _grams(run, mtime, n, "trained", seed, _part(progress, 0, 1 if versus is None else 0.5))
        b = None if versus is None else _grams(run, mtime, n, versus, seed, _part(progress, 0.5, 1))
        result = card.cka_between(a, b)
        if not run.info.shipped:
            pre.save(run, "cka", args, result)
        return result

    label = "itself" if versus is None else "random init" if versus == "random" else versus
    return computed(_CKAS, key, compute, f"Comparing the layers of {name} with {label}")
