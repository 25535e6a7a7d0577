"""Every ``st.cache_*`` wrapper of the app, and the one call through which pages run analyses.

Runs, models and datasets are resources shared by all sessions (one copy per process). Any
registered analysis runs through :func:`analysis`: one process-wide result per key, computed
once when several sessions ask at the same time, with a progress bar and the time left where
the page asks (:mod:`ui.progress`); Stop or any widget change interrupts it and nothing
half-done is kept. Results the shipped runs' first views need are read from the run's result
store (:mod:`core.result_store`, written by ``make assets``); a user's own runs store what they
computed. Projections and the report card, which are several stages, are in :mod:`ui.fits`.
Hooked forward passes are serialised per model by :func:`core.hooks.model_lock` in ``core``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
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
from core.projections import fits as proj
from ui.progress import Progress, Results, computed

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
    return stored(
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

        kept_as, key_of = _STORED.get(analysis, ("", lambda i, o: None))
        args = key_of(inputs, options)
        return result() if args is None else stored(run, kept_as, args, object, result)

    key = (name, mtime, analysis, inputs, options)
    return computed(_RESULTS, key, compute, label or spec.title)


# --- projections and the layer report card -----------------------------------------------------


def stored(
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
    return stored(
        run,
        "sample-predictions",
        {"n": n, "seed": seed},
        Predictions,
        lambda: pre.sample_predictions(run, n, seed),
    )


def sample_predictions(name: str, n: int, seed: int = 0) -> Predictions:
    """The model's predictions on :func:`projection_samples`."""
    return _sample_predictions(name, run_mtime(name), n, seed)


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
