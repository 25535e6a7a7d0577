"""Every ``st.cache_*`` wrapper of the app, in one place.

Models and datasets are resources shared by all sessions (one copy per process); arrays are
cached as data with bounded entries. Results that are large and read-only (a layer's
activations over a split) are resources too, so a rerun does not unpickle them. Hooked
forward passes are serialised per model by :func:`core.hooks.model_lock` inside ``core``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core import runs
from core.activations import Capture, LayerInfo, capture_dataset, list_layers
from core.evaluation import Predictions, predict
from core.runs import LoadedRun, RunInfo


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
    """All runs (cheap: reads a few small JSON files)."""
    return runs.list_runs()


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
    idx = getattr(run.splits, split)
    return predict(run.model, run.dataset.images[idx], run.dataset.labels[idx])


def predictions(name: str, split: str = "val") -> Predictions:
    """The model's predictions on a split (``train``, ``val`` or ``test``)."""
    return _predictions(name, run_mtime(name), split)


@st.cache_resource(max_entries=32, show_spinner="Capturing activations…")
def _split_activations(
    name: str, mtime: float, split: str, layers: tuple[str, ...], n: int | None
) -> Capture:
    run = _loaded_run(name, mtime)
    idx = getattr(run.splits, split)[:n]
    return capture_dataset(run.model, run.dataset.images[idx], list(layers), batch_size=256)


def split_activations(
    name: str, layers: tuple[str, ...], split: str = "val", n: int | None = None
) -> Capture:
    """``layers`` captured over the first ``n`` samples of a split (read-only, shared)."""
    return _split_activations(name, run_mtime(name), split, layers, n)


def sample_image(name: str, sample: int) -> np.ndarray:
    """Validation sample ``sample`` of the run as ``[C, H, W]``."""
    run = loaded_run(name)
    return run.dataset.images[run.splits.val[sample]]
