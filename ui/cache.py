"""Every ``st.cache_*`` wrapper of the app, and the one call through which pages run analyses.

Runs are shared by all sessions, one copy per process (:func:`per_run`). Every registered
analysis runs through :func:`analysis`: computed once per key even when many sessions ask,
with a progress bar and time left (:mod:`ui.progress`); Stop interrupts it and keeps nothing.
The shipped runs' first views come from their result stores. Multi-stage projections and the
report card are in :mod:`ui.fits`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import streamlit as st

from core import worker
from core.activations import LayerInfo, list_layers
from core.analysis import Batch, Compatibility, Inputs, get
from core.attention import sites as attention_sites
from core.attributions.methods import AttributionOptions, first_view_options
from core.data import uploads
from core.data.datasets import Dataset
from core.extract import sources
from core.extract.store import MANIFEST, ActivationStore, stores_root
from core.feature_maps import maps as fmaps
from core.feature_maps.pca_colour import PcaColours, apply_basis
from core.models import precompute as pre
from core.models import runs
from core.models.evaluation import Predictions, predict
from core.models.runs import LoadedRun, RunInfo
from core.projections import fits as proj
from core.projections.density import DensityMap, density_map
from core.projections.large import LargeProjection, project_store
from core.training import recipes as training
from ui import exports
from ui.figures.common import nearest_upscale
from ui.progress import Progress, Results, computed

T = TypeVar("T")


MTIME_TRUSTED_S = 1.0
"""How long a run's ``run.json`` mtime is reused before the disk is asked again: a rerun asks
for it a few dozen times (every cached call's key), and each asks the file system thrice."""
_mtimes: dict[str, tuple[float, float]] = {}


def run_mtime(name: str) -> float:
    """Modification time of a run's ``run.json``: a cache key that changes when it is rewritten
    (seen within :data:`MTIME_TRUSTED_S`)."""
    now = time.monotonic()
    seen = _mtimes.get(name)
    if seen is not None and now - seen[0] < MTIME_TRUSTED_S:
        return seen[1]
    mtime = (runs.find_run(name) / "run.json").stat().st_mtime
    _mtimes[name] = (now, mtime)
    return mtime


@st.cache_resource(max_entries=16, show_spinner="Loading the run…")
def _loaded_run(name: str, mtime: float) -> LoadedRun:
    base, checkpoint = runs.split_ref(name)  # a checkpoint shares its run's dataset
    return (
        runs.load_run(name)
        if checkpoint is None
        else runs.at_checkpoint(_loaded_run(base, mtime), checkpoint)
    )


def loaded_run(name: str) -> LoadedRun:
    """The run's model and dataset, shared by every session."""
    return _loaded_run(name, run_mtime(name))


def per_run(
    max_entries: int = 16, spinner: str | bool = False
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Caches ``fn(run, *args)`` as ``fn(name, *args)``, one copy per process for every session.

    The key is the run's name, its ``run.json`` mtime (a rewritten run is a new entry) and the
    arguments, which must be hashable. Values are shared, never copied: treat them as read-only.
    """

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        def cached(name: str, mtime: float, *args: Any) -> T:
            return fn(_loaded_run(name, mtime), *args)

        cached.__qualname__ = f"per_run.{fn.__qualname__}"  # one st.cache per function
        cached = st.cache_resource(max_entries=max_entries, show_spinner=spinner)(cached)

        @functools.wraps(fn)
        def by_name(name: str, *args: Any) -> T:
            return cached(name, run_mtime(name), *args)

        return by_name

    return decorate


def _roots_state() -> tuple:
    """Every run root's folders with their mtimes: writing a run's files (atomically, by a
    rename inside its folder), adding or deleting a run changes it."""
    state = []
    for root in runs.run_roots():
        try:
            with os.scandir(root) as entries:
                state.append(tuple(sorted((e.name, e.stat().st_mtime_ns) for e in entries)))
        except OSError:
            state.append(None)
    return tuple(state)


@functools.lru_cache(maxsize=1)
def _scan(roots_state: tuple) -> tuple[list[RunInfo], list[runs.RunError]]:
    return runs.scan_runs()


def run_scan() -> tuple[list[RunInfo], list[runs.RunError]]:
    """All readable runs, and an error for each run folder that could not be read; read again
    only when a run folder changed (pages ask several times per rerun)."""
    return _scan(_roots_state())


def run_list() -> list[RunInfo]:
    """All readable runs."""
    return run_scan()[0]


@per_run()
def layers(run: LoadedRun) -> list[LayerInfo]:
    """The run's model summary (``name`` in, like every function here)."""
    return list_layers(run.model, run.info.input_shape)


@per_run(spinner="Scoring the model…")
def predictions(run: LoadedRun, split: str = "val") -> Predictions:
    """The model's predictions on a split (``train``, ``val`` or ``test``)."""
    return pre.stored(
        run, "predictions", {"split": split}, Predictions, lambda: pre.predictions(run, split)
    )


@per_run(max_entries=64)
def input_image(run: LoadedRun, inputs: Inputs) -> np.ndarray:
    """The one image ``inputs`` names (an upload, fitted to the model's input) as ``[C, H, W]``."""
    if inputs.upload:
        return fmaps.fit_input(uploads.load_image(inputs.upload), run.info.input_shape)[0]
    return run.dataset.images[run.splits.val[inputs.indices[0]]]


@per_run(max_entries=64)
def input_thumbnail(run: LoadedRun, inputs: Inputs, size: int = 192) -> bytes:
    """The one image ``inputs`` names, enlarged to ``size`` pixels (crisp), as PNG bytes: the
    sidebar shows it on every rerun, and encoding it each time cost more than the page."""
    return exports.png_bytes(nearest_upscale(input_image(run.info.name, inputs), size))


@per_run(max_entries=64)
def input_probs(run: LoadedRun, inputs: Inputs) -> np.ndarray:
    """``[K]`` the model's class probabilities for the one image ``inputs`` names."""
    if inputs.upload:
        image = input_image(run.info.name, inputs)
        return predict(run.model, image[None], np.array([-1])).probs[0]
    return predictions(run.info.name, "val").probs[inputs.indices[0]]


def input_label(name: str, inputs: Inputs) -> int | None:
    """The true class of the one image ``inputs`` names (``None``: an upload, unknown)."""
    return None if inputs.upload else int(predictions(name, "val").labels[inputs.indices[0]])


def input_prediction(name: str, inputs: Inputs) -> str:
    """What the model predicts for the image ``inputs`` names, e.g. ``"star (87%)"``."""
    probs = input_probs(name, inputs)
    top = int(probs.argmax())
    return f"{loaded_run(name).info.dataset.class_names[top]} ({probs[top]:.0%})"


@per_run(max_entries=32)
def batch(run: LoadedRun, inputs: Inputs) -> Batch:
    """The images ``inputs`` names, as an analysis batch (an upload's label is unknown: -1)."""
    classes = run.info.dataset.class_names
    if inputs.upload:
        image = input_image(run.info.name, inputs)
        return Batch(image[None], np.array([-1]), class_names=classes)
    return runs.inputs_batch(run, inputs)


_RESULTS: Results[Any] = Results("analyses", 256)


def _whole_split(run: LoadedRun, inputs: Inputs, options: Any) -> dict[str, Any] | None:
    """The key of a whole split with default options (what ``make assets`` ships), else None."""
    plain = inputs == Inputs(split=inputs.split) and options == type(options)()
    return {"split": inputs.split} if plain else None


def _first_maps(run: LoadedRun, inputs: Inputs, options: Any) -> dict[str, Any] | None:
    """The key of the Attributions page's first maps (what ``make assets`` ships), else None:
    other maps are not worth a file each."""
    name = run.info.name
    first = first_view_options(layers(name), run.info.input_shape[-1])
    opened = AttributionOptions(**dataclasses.asdict(first), methods=options.methods)
    sample = Inputs.sample(predictions(name, "val").first_correct)
    return {"inputs": inputs, "options": options} if (inputs, options) == (sample, opened) else None


_STORED: dict[str, tuple[str, Callable[[LoadedRun, Inputs, Any], dict[str, Any] | None]]] = {
    "feature_maps.feature_vis": ("feature-vis", lambda r, i, o: {"inputs": i, "options": o}),
    "attention.head_statistics": ("head-stats", _whole_split),
    "attention.object_attention": ("object-attention", _whole_split),
    "attributions.maps": ("attribution-maps", _first_maps),
}
"""Analyses kept in the run's result store: name -> (stored name, key of these inputs and
options, ``None``: not stored). The shipped runs' store is written by ``make assets``."""


def analysis(name: str, analysis: str, inputs: Inputs, options: Any = None, label: str = "") -> Any:
    """Registered ``analysis`` of run ``name`` with ``options`` (``None``: its defaults) on the
    images ``inputs`` names: the one cached call every page uses.

    Computed once per process and key, with a progress bar (``label``, else the analysis's
    title) where it is called when slow; Stop interrupts it and keeps nothing. Analyses of
    :data:`_STORED` are read from the run's result store first. ``ValueError`` from ``core``
    (a method that does not apply, a bad layer) reaches the caller.
    """
    spec = get(analysis)
    options = spec.options() if options is None else options
    mtime = run_mtime(name)
    run = _loaded_run(name, mtime)

    def compute(progress: Progress) -> Any:
        def result() -> Any:
            return spec.function(run.model, batch(name, inputs), options, progress=progress)

        kept_as, key_of = _STORED.get(analysis, ("", lambda r, i, o: None))
        args = key_of(run, inputs, options)
        return result() if args is None else pre.stored(run, kept_as, args, object, result)

    key = (name, mtime, analysis, inputs, options)
    return computed(_RESULTS, key, compute, label or spec.title)


def _warm_up() -> None:
    default = runs.DEFAULT_RUN
    names = [r.name for r in run_list() if r.shipped]
    if default in names:
        layers(default)
        predictions(default, "val")
        predictions(default, "test")
    attention_runs()  # Home's tour asks it; each architecture is built once on the meta device
    compiled = worker.submit(proj.warm_up)  # umap's compilation, in the worker, meanwhile
    for name in names:  # the other shipped runs: a few seconds each, before anyone asks
        if name != default:
            layers(name)
    compiled.result()


@st.cache_resource(show_spinner=False)
def start_warm_up() -> threading.Thread:
    """Starts the warm-up once per server process, in a daemon thread: loads and scores the
    default run, then loads the other shipped runs while the fit worker compiles umap-learn."""
    thread = threading.Thread(target=_warm_up, name="warm-up", daemon=True)
    thread.start()
    return thread


@per_run()
def projection_samples(run: LoadedRun, n: int, seed: int = 0) -> np.ndarray:
    """``[n]`` indices into the run's whole dataset, stratified by class, sorted."""
    return pre.projection_samples(run, n, seed)


@per_run(spinner="Scoring the samples…")
def sample_predictions(run: LoadedRun, n: int, seed: int = 0) -> Predictions:
    """The model's predictions on :func:`projection_samples`."""
    args = {"n": n, "seed": seed}
    return pre.stored(
        run, "sample-predictions", args, Predictions, lambda: pre.sample_predictions(run, n, seed)
    )


@st.cache_data(max_entries=64, show_spinner=False)
def _attention_compatibility(arch: str, input_shape: tuple[int, int, int]) -> Compatibility:
    return attention_sites.architecture_compatibility(arch, input_shape)


def run_has_attention(name: str) -> Compatibility:
    """Whether the run's model has attention layers, and why not (true when it has; decided
    without loading its weights)."""
    info = next((r for r in run_list() if r.name == runs.split_ref(name)[0]), None)
    if info is None:
        return Compatibility(False, f"There is no run called {name}.")
    return _attention_compatibility(info.arch, tuple(info.input_shape))


def cls_layers(name: str) -> list[str]:
    """``"<block> (CLS)"`` pseudo-layers of a ViT run, shallow to deep (empty for other runs)."""
    return pre.cls_layers(loaded_run(name)) if run_has_attention(name) else []


def attention_runs() -> list[str]:
    """Names of the runs whose model has attention layers."""
    return [r.name for r in run_list() if run_has_attention(r.name)]


# --- training dynamics: grids over a run's checkpoints (the Training page) ---------------------

_TRAINING: Results[Any] = Results("training", 64)
_GRID_LABELS = {
    "training.cka_to_final": "CKA of every layer with the final checkpoint",
    "training.probe_grid": "Probing every layer at every checkpoint",
    "training.aligned_projection": "Projecting the layer at every checkpoint",
    "training.filters": "Reading the filters at every checkpoint",
    "training.learning_events": "Scoring the samples at every checkpoint",
}


@per_run(max_entries=4, spinner="Reading the checkpoints…")
def checkpoint_states(run: LoadedRun) -> list[dict[str, Any]]:
    """The run's checkpoints' state dicts, in training order (a few MB per run)."""
    return training.checkpoint_states(run)


@per_run(max_entries=8)
def training_samples(run: LoadedRun, split: str) -> training.Samples:
    """The samples the Training page's grids use (``held_out`` or ``train``)."""
    return training.samples(run, split)


def training_capture(name: str, split: str) -> Any:
    """Every grid layer's pooled features at every checkpoint on the split's samples: computed
    once per run and split, with a progress bar and Stop."""
    mtime = run_mtime(name)
    run = _loaded_run(name, mtime)

    def compute(progress: Progress) -> Any:
        return training.capture(run, split, states=checkpoint_states(name), progress=progress)

    label = "Capturing every layer at every checkpoint"
    return computed(_TRAINING, (name, mtime, "capture", split), compute, label)


def training_grid(name: str, analysis: str, split: str = "held_out", options: Any = None) -> Any:
    """Training analysis ``analysis`` of run ``name`` (final weights) over its checkpoints:
    from the run's store when there, else computed once (capture, then the grid, each with a
    progress bar and Stop) and kept for every session."""
    mtime = run_mtime(name)
    run = _loaded_run(name, mtime)
    key = (name, mtime, analysis, split, options)
    found = _TRAINING.get(key)
    if found is None:
        found = training.stored_grid(run, analysis, split, options)
        if found is not None:
            _TRAINING.put(key, found)
    if found is not None:
        return found
    shared = None if analysis == "training.filters" else training_capture(name, split)

    def compute(progress: Progress) -> Any:
        states = checkpoint_states(name)
        return training.grid(
            run, analysis, split, options, states=states, captured=lambda: shared, progress=progress
        )

    return computed(_TRAINING, key, compute, _GRID_LABELS[analysis])


def training_transfer(name: str) -> Any:
    """The fine-tuned run ``name`` against its source (``None``: it did not start from one)."""
    mtime = run_mtime(name)
    run = _loaded_run(name, mtime)
    label = "Comparing the fine-tuned model with its source"
    return computed(_TRAINING, (name, mtime, "transfer"), lambda _: training.transfer(run), label)


@per_run(max_entries=32)
def checkpoints(run: LoadedRun) -> list[runs.Checkpoint]:
    """The run's checkpoints in training order (the sidebar's and the Training page's slider)."""
    return runs.list_checkpoints(run.info)


def pca_colour_image(name: str, image: np.ndarray, fitted: PcaColours) -> PcaColours:
    """One image ``[C, H, W]`` coloured with the basis ``fitted`` kept (one forward pass)."""
    return apply_basis(loaded_run(name).model, image[None], fitted.basis)


@per_run(max_entries=8)
def shortcut_accuracy(run: LoadedRun) -> Any:
    """The run's aligned and independent test accuracies (``None``: trained without a shortcut;
    see :func:`core.audit.shortcut.shortcut_accuracy`)."""
    from core.audit.shortcut import shortcut_accuracy as scored

    return scored(run)


_REPORTS: Results[tuple[bytes, bytes]] = Results("audit reports", 4)


def audit_report(name: str, make: bool) -> tuple[bytes, bytes] | None:
    """``(report.html, evidence.zip)`` bytes of run ``name``'s audit: made now (with progress
    and Stop) when ``make``, else the one already made in this process, if any."""
    from core.audit.html import audit_files

    key = (name, run_mtime(name))
    if not make:
        return _REPORTS.get(key)

    def compute(progress: Progress) -> tuple[bytes, bytes]:
        return audit_files(name, loaded=loaded_run(name), progress=progress)

    return computed(_REPORTS, key, compute, "Audit report", expected=60.0)


# --- dictionary features (sparse autoencoders) -------------------------------------------------

_SAE_TRUTH: Results[Any] = Results("sae-ground-truth", 16)


@st.cache_resource(max_entries=32, show_spinner=False)
def _sae_params(folder: str, mtime: float) -> Any:
    from core.dictionary.store import load_sae

    return load_sae(folder)


def sae_params(name: str, sae: str) -> Any:
    """The saved SAE ``sae`` of run ``name`` (:class:`core.dictionary.sae.SAEParams`)."""
    from core.dictionary.store import sae_folder

    folder = sae_folder(name, sae)
    return _sae_params(str(folder), (folder / "cfg.json").stat().st_mtime)


def sae_ground_truth(name: str, sae: str) -> Any:
    """The SAE's features against the layer's channels as detectors of the run's factors and
    classes, on the validation split (from the cached statistics of both)."""
    from core.dictionary.features import HEALTH_INPUTS, FeatureStatsOptions
    from core.dictionary.ground_truth import compare
    from core.feature_maps.top_examples import ChannelStatsOptions

    stats = analysis(name, "dictionary.features", HEALTH_INPUTS, FeatureStatsOptions(name, sae))
    options = ChannelStatsOptions(layer=stats.stats.layer)
    channels = analysis(name, "feature_maps.channel_stats", HEALTH_INPUTS, options)
    val = batch(name, HEALTH_INPUTS)

    def compute(_progress: Progress) -> Any:
        return compare(
            stats.stats.maxima, channels.maxima, val.labels, val.factors, val.class_names
        )

    key = (name, run_mtime(name), sae)
    return computed(_SAE_TRUTH, key, compute, "Comparing features with channels")


# --- activation stores (issue 17) ---------------------------------------------------------------

_STORE_MAPS: Results = Results("store maps", max_entries=8)


def _store_path(name: str) -> str:
    return str(stores_root() / name)


@st.cache_resource(max_entries=8, show_spinner=False)
def _opened_store(path: str, mtime: float) -> ActivationStore:
    return ActivationStore.open(path)


def opened_store(name: str) -> ActivationStore:
    """The store called ``name`` under :func:`core.extract.store.stores_root` (reopened when
    its manifest changes)."""
    path = _store_path(name)
    return _opened_store(path, (stores_root() / name / MANIFEST).stat().st_mtime)


@st.cache_data(max_entries=8, show_spinner="Reading the labels…")
def store_labels(name: str, mtime: float) -> np.ndarray:
    """``[N]`` labels of a store, verified."""
    return opened_store(name).read("labels")


def store_projection(name: str, layer: str, method: str) -> LargeProjection:
    """A store's map of ``layer`` (kept in the store; else fitted with a progress bar)."""
    store = opened_store(name)
    key = (store.path, store.manifest["dataset_hash"], layer, method)
    label = f"{method} of {layer} ({store.n:,} points)"
    return computed(
        _STORE_MAPS, key, lambda progress: project_store(store, layer, method, progress=progress),
        label,
    )  # fmt: skip


@st.cache_data(max_entries=8, show_spinner="Drawing the density map…")
def store_density(
    name: str, layer: str, method: str, colours: tuple[str, ...], mtime: float
) -> DensityMap:
    """The density image of :func:`store_projection`, coloured by label."""
    coords = store_projection(name, layer, method).coords
    return density_map(coords, store_labels(name, mtime), colours)


@st.cache_resource(max_entries=2, show_spinner="Loading the store's images…")
def store_dataset(name: str, mtime: float) -> Dataset | None:
    """The images a store describes, reloaded and checked against its dataset hash."""
    return sources.store_dataset(opened_store(name).manifest)
