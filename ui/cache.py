"""Every cached analysis of the app, in one place.

Models and datasets are resources shared by all sessions (one copy per process, ``st.cache_*``);
arrays are cached with bounded entries. Hooked forward passes are serialised per model by
:func:`core.hooks.model_lock` inside ``core``.

Long computations (the layer report card, head statistics, layer features and projections,
across-depth maps, top-example statistics, feature visualisation) are not ``st.cache_*``
functions: they run through :func:`ui.progress.computed`, which keeps one process-wide result
per key, computes a key once when several sessions ask at the same time, and draws a progress
bar with the time left where the page asks, which Streamlit's Stop (or any widget change)
interrupts; nothing half-done is kept. Before computing, each looks in the run's result store
(:mod:`core.result_store`, filled for the shipped runs by ``make assets``), and stores what it
computed for the user's own runs. The recipes are :mod:`core.models.precompute`'s, so a stored
result is exactly what would be computed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import numpy as np
import streamlit as st

from core import worker
from core.activations import LayerInfo, list_layers
from core.analysis import REGISTRY, Analysis, Batch, Compatibility, Inputs, analyses
from core.attention import sites as attention_sites
from core.data import uploads
from core.data.datasets import stratified_sample
from core.feature_maps import maps as fmaps
from core.models import precompute as pre
from core.models import runs
from core.models.evaluation import Predictions, predict
from core.models.runs import LoadedRun, RunInfo
from core.projections import features as feats
from core.projections import fits as proj
from core.projections import report_card as card
from ui.progress import Flight, Progress, Results, computed

T = TypeVar("T")


def run_mtime(name: str) -> float:
    """Modification time of a run's ``run.json``: a cache key that changes when it is rewritten."""
    return (runs.find_run(name) / "run.json").stat().st_mtime


@st.cache_resource(max_entries=8, show_spinner="Loading the run…")
def _loaded_run(name: str, mtime: float) -> LoadedRun:
    return runs.load_run(name)


def loaded_run(name: str) -> LoadedRun:
    """The run's model and dataset, shared by every session."""
    return _loaded_run(name, run_mtime(name))


def run_list() -> list[RunInfo]:
    """All readable runs (cheap: a few small JSON files)."""
    return runs.list_runs()


def run_scan() -> tuple[list[RunInfo], list[runs.RunError]]:
    """All readable runs, and an error for each run folder that could not be read."""
    return runs.scan_runs()


@st.cache_resource(max_entries=16, show_spinner=False)
def _layers(name: str, mtime: float) -> list[LayerInfo]:
    run = _loaded_run(name, mtime)
    return list_layers(run.model, run.info.input_shape)


def layers(name: str) -> list[LayerInfo]:
    """The run's model summary."""
    return _layers(name, run_mtime(name))


@st.cache_resource(max_entries=16, show_spinner="Scoring the model…")
def _predictions(name: str, mtime: float, split: str) -> Predictions:
    run = _loaded_run(name, mtime)
    return _stored(
        run, "predictions", {"split": split}, Predictions, lambda: pre.predictions(run, split)
    )


def predictions(name: str, split: str = "val") -> Predictions:
    """The model's predictions on a split (``train``, ``val`` or ``test``)."""
    return _predictions(name, run_mtime(name), split)


def sample_image(name: str, sample: int) -> np.ndarray:
    """Validation sample ``sample`` of the run as ``[C, H, W]``."""
    return input_image(name, Inputs.sample(sample))


@st.cache_resource(max_entries=64, show_spinner=False)
def _upload_image(name: str, mtime: float, image_id: str) -> np.ndarray:
    fitted, _ = fmaps.fit_input(
        uploads.load_image(image_id), _loaded_run(name, mtime).info.input_shape
    )
    return fitted


def input_image(name: str, inputs: Inputs) -> np.ndarray:
    """The one image ``inputs`` names (an upload, fitted to the model's input) as ``[C, H, W]``."""
    return _image(name, run_mtime(name), inputs)


@st.cache_resource(max_entries=64, show_spinner=False)
def _upload_prediction(name: str, mtime: float, image_id: str) -> Predictions:
    image = _upload_image(name, mtime, image_id)
    return predict(_loaded_run(name, mtime).model, image[None], np.array([-1]))


def input_probs(name: str, inputs: Inputs) -> np.ndarray:
    """``[K]`` the model's class probabilities for the one image ``inputs`` names."""
    if inputs.upload:
        return _upload_prediction(name, run_mtime(name), inputs.upload).probs[0]
    return predictions(name, "val").probs[inputs.indices[0]]


def input_label(name: str, inputs: Inputs) -> int | None:
    """The true class of the one image ``inputs`` names (``None``: an upload, unknown)."""
    if inputs.upload:
        return None
    return int(predictions(name, "val").labels[inputs.indices[0]])


def input_prediction(name: str, inputs: Inputs) -> str:
    """What the model predicts for the image ``inputs`` names, e.g. ``"star (87%)"``."""
    probs = input_probs(name, inputs)
    top = int(probs.argmax())
    return f"{loaded_run(name).info.dataset.class_names[top]} ({probs[top]:.0%})"


# --- feature maps ------------------------------------------------------------------------------


def _image(name: str, mtime: float, inputs: Inputs) -> np.ndarray:
    """``[C, H, W]``: the validation sample or fitted upload that ``inputs`` names."""
    if inputs.upload:
        return _upload_image(name, mtime, inputs.upload)
    run = _loaded_run(name, mtime)
    return run.dataset.images[run.splits.val[inputs.indices[0]]]


def batch(name: str, inputs: Inputs) -> Batch:
    """The images ``inputs`` names, as an analysis batch (an upload's label is unknown: -1)."""
    return _batch(name, run_mtime(name), inputs)


def _batch(name: str, mtime: float, inputs: Inputs) -> Batch:
    run = _loaded_run(name, mtime)
    classes = run.info.dataset.class_names
    if inputs.upload:
        return Batch(_image(name, mtime, inputs)[None], np.array([-1]), class_names=classes)
    splits, data = run.splits, run.dataset
    named = {"held_out": np.concatenate([splits.val, splits.test]), "all": np.arange(len(data))}
    idx = named[inputs.split] if inputs.split in named else getattr(splits, inputs.split)
    if inputs.indices is not None:
        idx = idx[list(inputs.indices)]
    elif inputs.n is not None:
        idx = idx[stratified_sample(data.labels[idx], inputs.n, inputs.seed)]
    chosen = data.subset(idx)
    return Batch(chosen.images, chosen.labels, chosen.factors, classes)


_RESULTS: Results[Any] = Results("analyses", 256)
_STORED: dict[str, tuple[str, Callable[[Inputs, Any], dict[str, Any] | None]]] = {
    "feature_maps.feature_vis": ("feature-vis", lambda i, o: {"inputs": i, "options": o}),
    "attention.head_statistics": (  # a whole split, default options: make assets ships it
        "head-stats",
        lambda i, o: {"split": i.split} if i == Inputs(split=i.split) and o == type(o)() else None,
    ),
}
"""Analyses kept in the run's result store: name -> (stored name, key of these inputs and
options, ``None``: not stored). The shipped runs' store is written by ``make assets``."""


def registered(analysis: str) -> Analysis:
    """The registered analysis ``analysis`` (``"<family>.<name>"``), its family imported first."""
    if analysis not in REGISTRY:
        analyses(analysis.split(".")[0])
    return REGISTRY[analysis]


def analysis(name: str, analysis: str, inputs: Inputs, options: Any = None, label: str = "") -> Any:
    """Registered ``analysis`` of run ``name`` with ``options`` (``None``: its defaults) on the
    images ``inputs`` names: the one cached call every page uses.

    Computed once per process and key, with a progress bar (``label``, else the analysis's
    title) where it is called when slow; Stop interrupts it and keeps nothing. Analyses of
    :data:`_STORED` are read from the run's result store first. ``ValueError`` from ``core``
    (a method that does not apply, a bad layer) reaches the caller.
    """
    spec = registered(analysis)
    options = spec.options() if options is None else options
    mtime = run_mtime(name)
    run = _loaded_run(name, mtime)

    def compute(progress: Progress) -> Any:
        def result() -> Any:
            return spec.function(run.model, _batch(name, mtime, inputs), options, progress=progress)

        stored, key_of = _STORED.get(analysis, ("", lambda i, o: None))
        args = key_of(inputs, options)
        return result() if args is None else _stored(run, stored, args, object, result)

    key = (name, mtime, analysis, inputs, options)
    return computed(_RESULTS, key, compute, label or spec.title)


# --- projections and the layer report card -----------------------------------------------------


def _stored(
    run: LoadedRun, analysis: str, args: dict[str, Any], expected: type[T], compute: Callable[[], T]
) -> T:
    """The run's stored result of ``analysis(args)``, else ``compute()`` (stored for the
    user's own runs; the shipped runs' store is written by ``make assets`` only)."""
    found = pre.load(run, analysis, args, expected)
    if found is not None:
        return found
    result = compute()
    if not run.info.shipped:
        pre.save(run, analysis, args, result)
    return result


def _part(progress: Progress, start: float, stop: float) -> Progress:
    """A progress callback for one stage, filling ``[start, stop]`` (fractions) of ``progress``."""

    def report(done: int, total: int) -> None:
        fraction = done / total if total else 0.0
        progress(round(1000 * (start + (stop - start) * fraction)), 1000)

    return report


def _warm_up() -> None:
    default = runs.DEFAULT_RUN
    names = [r.name for r in run_list() if r.shipped]
    if default in names:
        layers(default)
        predictions(default, "val")
        predictions(default, "test")
    compiled = worker.submit(proj.warm_up)  # umap's compilation, in the worker, meanwhile
    for name in names:  # the other shipped runs: a few seconds each, before anyone asks
        if name != default:
            layers(name)
    compiled.result()


@st.cache_resource(show_spinner=False)
def start_warm_up() -> threading.Thread:
    """Starts the warm-up, once per server process, in a daemon thread.

    It loads and scores the default run (what the first visitor sees), then loads the other
    shipped runs while the fit worker compiles umap-learn's kernels (for projections that are
    not stored). The shipped runs' first views are read from their stores, so nothing else
    needs computing ahead.
    """
    thread = threading.Thread(target=_warm_up, name="warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_resource(max_entries=16, show_spinner=False)
def _projection_samples(name: str, mtime: float, n: int, seed: int) -> np.ndarray:
    return pre.projection_samples(_loaded_run(name, mtime), n, seed)


def projection_samples(name: str, n: int, seed: int = 0) -> np.ndarray:
    """``[n]`` indices into the run's whole dataset, stratified by class, sorted."""
    return _projection_samples(name, run_mtime(name), n, seed)


@st.cache_resource(max_entries=16, show_spinner="Scoring the samples…")
def _sample_predictions(name: str, mtime: float, n: int, seed: int) -> Predictions:
    run = _loaded_run(name, mtime)
    return _stored(
        run,
        "sample-predictions",
        {"n": n, "seed": seed},
        Predictions,
        lambda: pre.sample_predictions(run, n, seed),
    )


def sample_predictions(name: str, n: int, seed: int = 0) -> Predictions:
    """The model's predictions on :func:`projection_samples`."""
    return _sample_predictions(name, run_mtime(name), n, seed)


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
    run = _loaded_run(name, mtime)

    def compute(progress: Progress) -> feats.FeatureInfo:
        args = {"layer": layer, "n": n, "seed": seed}
        return _stored(
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
    run = _loaded_run(name, mtime)

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
    found = _stored_projection(_loaded_run(name, mtime), layer, n, method, dims, seed)[1]
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
    run = _loaded_run(name, mtime)

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
    run, model = _loaded_run(name, mtime), _versus(versus)

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
    run = _loaded_run(name, mtime)
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


# --- attention ---------------------------------------------------------------------------------


@st.cache_data(max_entries=64, show_spinner=False)
def _attention_compatibility(arch: str, input_shape: tuple[int, int, int]) -> Compatibility:
    return attention_sites.architecture_compatibility(arch, input_shape)


def run_has_attention(name: str) -> Compatibility:
    """Whether the run's model has attention layers, and why not (true when it has; decided
    without loading its weights)."""
    info = next((r for r in run_list() if r.name == name), None)
    if info is None:
        return Compatibility(False, f"There is no run called {name}.")
    return _attention_compatibility(info.arch, tuple(info.input_shape))


def cls_layers(name: str) -> list[str]:
    """``"<block> (CLS)"`` pseudo-layers of a ViT run, shallow to deep (empty for other runs)."""
    return pre.cls_layers(loaded_run(name)) if run_has_attention(name) else []


def attention_runs() -> list[str]:
    """Names of the runs whose model has attention layers."""
    return [r.name for r in run_list() if run_has_attention(r.name)]
