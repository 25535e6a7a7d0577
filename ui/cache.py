"""Every ``st.cache_*`` wrapper of the app, in one place.

Models and datasets are resources shared by all sessions (one copy per process); arrays are
cached as data with bounded entries. Results that are large and read-only (a layer's
activations over a split) are resources too, so a rerun does not unpickle them. Hooked
forward passes are serialised per model by :func:`core.hooks.model_lock` inside ``core``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import streamlit as st

from core import attention as attn
from core import attribution as attr
from core import faithfulness as faith
from core import featuremaps as fmaps
from core import features as feats
from core import featurevis as fvis
from core import layer_attribution as layer_attr
from core import projection as proj
from core import report_card as card
from core import runs, sanity, topk, worker
from core.activations import Capture, LayerInfo, list_layers
from core.data import adapt_images, stratified_sample
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
    idx = getattr(run.splits, split)
    return predict(run.model, run.dataset.images[idx], run.dataset.labels[idx])


def predictions(name: str, split: str = "val") -> Predictions:
    """The model's predictions on a split (``train``, ``val`` or ``test``)."""
    return _predictions(name, run_mtime(name), split)


def sample_image(name: str, sample: int) -> np.ndarray:
    """Validation sample ``sample`` of the run as ``[C, H, W]``."""
    run = loaded_run(name)
    return run.dataset.images[run.splits.val[sample]]


# --- feature maps ------------------------------------------------------------------------------


@st.cache_resource(max_entries=64, show_spinner=False)
def _sample_maps(name: str, mtime: float, sample: int) -> fmaps.SampleMaps:
    run = _loaded_run(name, mtime)
    names = [layer.name for layer in _layers(name, mtime)]
    image = run.dataset.images[run.splits.val[sample]]
    return fmaps.sample_maps(run.model, image, run.info.input_shape, names)


def sample_maps(name: str, sample: int) -> fmaps.SampleMaps:
    """Every layer's output for validation sample ``sample``, from one forward pass."""
    return _sample_maps(name, run_mtime(name), sample)


@st.cache_resource(max_entries=16, show_spinner=False)
def _image_maps(name: str, mtime: float, data: bytes) -> fmaps.SampleMaps:
    run = _loaded_run(name, mtime)
    names = [layer.name for layer in _layers(name, mtime)]
    return fmaps.sample_maps(run.model, fmaps.read_image(data), run.info.input_shape, names)


def image_maps(name: str, data: bytes) -> fmaps.SampleMaps:
    """Every layer's output for an uploaded image file (resized to the model's input)."""
    return _image_maps(name, run_mtime(name), data)


@st.cache_resource(max_entries=16, show_spinner=False)
def _weight_images(name: str, mtime: float, kind: str) -> fmaps.WeightImages:
    run = _loaded_run(name, mtime)
    if kind == "filters":
        return fmaps.first_conv_filters(run.model)
    return fmaps.input_weights(run.model, run.info.input_shape)


def weight_images(name: str, kind: str) -> fmaps.WeightImages:
    """``filters``: the first conv's filters; ``inputs``: an MLP's first-layer weights."""
    return _weight_images(name, run_mtime(name), kind)


@st.cache_resource(max_entries=16, show_spinner="Ranking the validation split for this layer…")
def _channel_stats(name: str, mtime: float, layer: str) -> topk.ChannelStats:
    run = _loaded_run(name, mtime)
    return topk.channel_stats(run.model, run.dataset.images[run.splits.val], layer)


def channel_stats(name: str, layer: str) -> topk.ChannelStats:
    """Every channel's max, peak and mean for each validation sample of the run."""
    return _channel_stats(name, run_mtime(name), layer)


@st.cache_resource(max_entries=32, show_spinner="Measuring receptive fields…")
def _receptive_field(name: str, mtime: float, layer: str) -> topk.ReceptiveField:
    run = _loaded_run(name, mtime)
    return topk.receptive_field(run.model, layer, run.info.input_shape)


def receptive_field(name: str, layer: str) -> topk.ReceptiveField:
    """Which input pixels each position of ``layer``'s maps sees."""
    return _receptive_field(name, run_mtime(name), layer)


@st.cache_resource(max_entries=32, show_spinner=False)
def _feature_vis(
    name: str,
    mtime: float,
    layer: str,
    channel: int,
    config: fvis.FeatureVisConfig,
    _progress: Callable[[int, int, float], None] | None = None,
) -> fvis.FeatureVis:
    run = _loaded_run(name, mtime)
    shape = run.info.input_shape
    colour = fvis.colour_sqrt(run.dataset.images[run.splits.train[:512]]) if shape[0] == 3 else None
    return fvis.visualise_channel(
        run.model, layer, channel, shape, config, colour=colour, progress=_progress
    )


def feature_vis(
    name: str,
    layer: str,
    channel: int,
    config: fvis.FeatureVisConfig,
    progress: Callable[[int, int, float], None] | None = None,
) -> fvis.FeatureVis:
    """An input synthesised to excite ``layer``'s ``channel`` (colour basis from the run's data)."""
    return _feature_vis(name, run_mtime(name), layer, channel, config, progress)


# --- projections and the layer report card -----------------------------------------------------


def _warm_up() -> None:
    default = runs.DEFAULT_RUN
    if default in {r.name for r in run_list()}:
        layers(default)
        predictions(default, "val")
        predictions(default, "test")
    worker.run(proj.warm_up)


@st.cache_resource(show_spinner=False)
def start_warm_up() -> threading.Thread:
    """Starts the warm-up, once per server process, in a daemon thread.

    It loads and scores the default run (what the first visitor sees), then compiles
    umap-learn's kernels (the first projection).
    """
    thread = threading.Thread(target=_warm_up, name="warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_resource(max_entries=16, show_spinner=False)
def _projection_samples(name: str, mtime: float, n: int, seed: int) -> np.ndarray:
    return stratified_sample(_loaded_run(name, mtime).dataset.labels, n, seed)


def projection_samples(name: str, n: int, seed: int = 0) -> np.ndarray:
    """``[n]`` indices into the run's whole dataset, stratified by class, sorted."""
    return _projection_samples(name, run_mtime(name), n, seed)


@st.cache_resource(max_entries=16, show_spinner="Scoring the samples…")
def _sample_predictions(name: str, mtime: float, n: int, seed: int) -> Predictions:
    run = _loaded_run(name, mtime)
    idx = _projection_samples(name, mtime, n, seed)
    return predict(run.model, run.dataset.images[idx], run.dataset.labels[idx])


def sample_predictions(name: str, n: int, seed: int = 0) -> Predictions:
    """The model's predictions on :func:`projection_samples`."""
    return _sample_predictions(name, run_mtime(name), n, seed)


@st.cache_resource(max_entries=64, show_spinner=False)
def _layer_features(name: str, mtime: float, layer: str, n: int, seed: int) -> feats.LayerFeatures:
    run = _loaded_run(name, mtime)
    idx = _projection_samples(name, mtime, n, seed)
    return feats.layer_features(run.model, run.dataset.images[idx], layer, seed=seed)


def layer_features(name: str, layer: str, n: int, seed: int = 0) -> feats.LayerFeatures:
    """``layer`` over :func:`projection_samples`, PCA-reduced to <= 50 dims when wider."""
    return _layer_features(name, run_mtime(name), layer, n, seed)


@st.cache_resource(show_spinner=False)
def _ready_projections() -> set[tuple]:
    return set()


@st.cache_resource(max_entries=64, show_spinner=False)
def _projection(
    name: str, mtime: float, layer: str, n: int, method: str, dims: int, seed: int
) -> proj.Projection:
    features = _layer_features(name, mtime, layer, n, seed).features
    result = (
        proj.project(features, method, dims, seed=seed)
        if method == "PCA"
        else worker.run(proj.project, features, method, dims, seed=seed)
    )
    _ready_projections().add((name, mtime, layer, n, method, dims, seed))
    return result


def projection(
    name: str, layer: str, n: int, method: str, dims: int, seed: int = 0
) -> proj.Projection:
    """A projection of :func:`layer_features` (shared by every session)."""
    return _projection(name, run_mtime(name), layer, n, method, dims, seed)


def projection_ready(name: str, layer: str, n: int, method: str, dims: int, seed: int = 0) -> bool:
    """The projection is computed already (no wait)."""
    return (name, run_mtime(name), layer, n, method, dims, seed) in _ready_projections()


@st.cache_resource(max_entries=8, show_spinner=False)
def _depth_projection(
    name: str, mtime: float, layers: tuple[str, ...], n: int, method: str, seed: int
) -> proj.DepthProjection:
    features = [_layer_features(name, mtime, layer, n, seed).features for layer in layers]
    return worker.run(proj.project_depth, features, layers, method, seed=seed)


def depth_projection(
    name: str, layers: tuple[str, ...], n: int, method: str, seed: int = 0
) -> proj.DepthProjection:
    """The same samples projected at each of ``layers``, aligned layer to layer."""
    return _depth_projection(name, run_mtime(name), layers, n, method, seed)


def report_layers(name: str) -> list[str]:
    """The run's layers the report card covers, shallow to deep (CLS tokens for a ViT)."""
    return card.depth_layers(layers(name), tokens=cls_layers(name))


def _held_out(name: str, mtime: float, n: int, seed: int) -> np.ndarray:
    run = _loaded_run(name, mtime)
    held = np.concatenate([run.splits.val, run.splits.test])
    return np.sort(held[stratified_sample(run.dataset.labels[held], n, seed)])


@st.cache_resource(max_entries=8, show_spinner=False)
def _report(name: str, mtime: float, n: int, versus: str, seed: int) -> card.LayerReport:
    run = _loaded_run(name, mtime)
    idx = _held_out(name, mtime, n, seed)
    data = run.dataset
    targets = {card.LABEL: data.labels[idx], **{k: v[idx] for k, v in data.factors.items()}}
    if versus == "trained":
        model, names, images = run.model, report_layers(name), data.images[idx]
    elif versus == "random":
        info = run.info
        model = card.random_init_model(info.arch, info.input_shape, len(data.info.class_names))
        names, images = report_layers(name), data.images[idx]
    else:
        other = _loaded_run(versus, run_mtime(versus))
        model, names = other.model, report_layers(versus)
        images = adapt_images(data.images[idx], other.info.input_shape)
    return card.layer_report(model, images, targets, names, seed=seed)


def report(name: str, n: int = 1000, versus: str = "trained", seed: int = 0) -> card.LayerReport:
    """The layer report card of run ``name`` on ``n`` held-out samples (val + test).

    ``versus`` picks the model: ``"trained"`` (the run), ``"random"`` (the same architecture
    with random weights) or another run's name (fed this run's samples).
    """
    return _report(name, run_mtime(name), n, versus, seed)


# --- attention ---------------------------------------------------------------------------------


@st.cache_data(max_entries=64, show_spinner=False)
def _architecture_has_attention(arch: str, input_shape: tuple[int, int, int]) -> bool:
    return attn.architecture_has_attention(arch, input_shape)


def run_has_attention(name: str) -> bool:
    """Whether the run's model has attention layers (decided without loading its weights)."""
    info = next((r for r in run_list() if r.name == name), None)
    return info is not None and _architecture_has_attention(info.arch, tuple(info.input_shape))


@st.cache_resource(max_entries=16, show_spinner=False)
def _cls_layers(name: str, mtime: float) -> list[str]:
    sites = attn.attention_sites(_loaded_run(name, mtime).model)
    return [attn.cls_layer_name(block) for block in dict.fromkeys(s.block for s in sites)]


def cls_layers(name: str) -> list[str]:
    """``"<block> (CLS)"`` pseudo-layers of a ViT run, shallow to deep (empty for other runs)."""
    return _cls_layers(name, run_mtime(name)) if run_has_attention(name) else []


def attention_runs() -> list[str]:
    """Names of the runs whose model has attention layers."""
    return [r.name for r in run_list() if run_has_attention(r.name)]


@st.cache_resource(max_entries=32, show_spinner="Reading attention…")
def _sample_attention(
    name: str, mtime: float, sample: int
) -> tuple[attn.AttentionMaps, np.ndarray]:
    run = _loaded_run(name, mtime)
    index = run.splits.val[sample : sample + 1]
    maps = attn.capture_attention(run.model, run.dataset.images[index])
    return maps, attn.attention_rollout(maps.probs[0])


def sample_attention(name: str, sample: int) -> tuple[attn.AttentionMaps, np.ndarray]:
    """Validation sample ``sample``'s attention maps (N = 1) and rollout ``[layers, T, T]``."""
    return _sample_attention(name, run_mtime(name), sample)


@st.cache_resource(max_entries=8, show_spinner="Measuring every head over the validation split…")
def _head_statistics(name: str, mtime: float, split: str) -> attn.HeadStatistics:
    run = _loaded_run(name, mtime)
    return attn.head_statistics(run.model, run.dataset.images[getattr(run.splits, split)])


def head_statistics(name: str, split: str = "val") -> attn.HeadStatistics:
    """Mean attention distance, entropy and extra-token share of every head over a split."""
    return _head_statistics(name, run_mtime(name), split)


@st.cache_resource(max_entries=8, show_spinner="Reading the CLS token of every block…")
def _cls_tokens(name: str, mtime: float, split: str, n: int | None) -> Capture:
    run = _loaded_run(name, mtime)
    return attn.cls_tokens(run.model, run.dataset.images[getattr(run.splits, split)[:n]])


def cls_tokens(name: str, split: str = "val", n: int | None = None) -> Capture:
    """The CLS token after every block over the first ``n`` samples of a split, one "layer"
    per block named ``"<block> (CLS)"`` with arrays ``[N, dim]`` (read-only, shared)."""
    return _cls_tokens(name, run_mtime(name), split, n)


# --- attributions ------------------------------------------------------------------------------


@st.cache_resource(max_entries=16, show_spinner=False)
def _cam_layers(name: str, mtime: float) -> tuple[list[str], str | None]:
    run = _loaded_run(name, mtime)
    shape = run.info.input_shape
    return attr.cam_layers(run.model, shape), attr.default_cam_layer(run.model, shape)


def cam_layers(name: str) -> tuple[list[str], str | None]:
    """Layers Grad-CAM can read in the run's model, and the default one (``None``: none)."""
    return _cam_layers(name, run_mtime(name))


@st.cache_data(max_entries=256, show_spinner=False)
def _attribution(
    name: str, mtime: float, sample: int, method: str, options: attr.AttributionOptions
) -> attr.Attribution:
    run = _loaded_run(name, mtime)
    return attr.attribute(run.model, run.dataset.images[run.splits.val[sample]], method, options)


def attribution(
    name: str, sample: int, method: str, options: attr.AttributionOptions
) -> attr.Attribution:
    """One method's attribution of validation sample ``sample``."""
    return _attribution(name, run_mtime(name), sample, method, options)


@st.cache_data(max_entries=64, show_spinner="Attributing the prediction to the layer's units…")
def _unit_attribution(
    name: str, mtime: float, sample: int, layer: str, method: str, options: attr.AttributionOptions
) -> layer_attr.UnitAttribution:
    run = _loaded_run(name, mtime)
    image = run.dataset.images[run.splits.val[sample]]
    return layer_attr.unit_attribution(run.model, image, layer, method, options)


def unit_attribution(
    name: str, sample: int, layer: str, method: str, options: attr.AttributionOptions
) -> layer_attr.UnitAttribution:
    """Layer Conductance / Layer IG of ``layer``'s units for validation sample ``sample``."""
    return _unit_attribution(name, run_mtime(name), sample, layer, method, options)


@st.cache_data(max_entries=16, show_spinner="Randomising the model from the top, layer by layer…")
def _sanity_check(
    name: str,
    mtime: float,
    sample: int,
    methods: tuple[str, ...],
    options: attr.AttributionOptions,
    steps: int,
) -> sanity.SanityCheck:
    run = _loaded_run(name, mtime)
    image = run.dataset.images[run.splits.val[sample]]
    return sanity.cascading_randomization(run.model, image, methods, options, max_steps=steps)


def sanity_check(
    name: str, sample: int, methods: tuple[str, ...], options: attr.AttributionOptions, steps: int
) -> sanity.SanityCheck:
    """The cascading-randomisation sanity check of ``methods`` on a validation sample."""
    return _sanity_check(name, run_mtime(name), sample, methods, options, steps)


@st.cache_data(max_entries=64, show_spinner=False)
def _faithfulness(
    name: str,
    mtime: float,
    samples: tuple[int, ...],
    method: str,
    options: attr.AttributionOptions,
    steps: int,
) -> faith.FaithfulnessCurves:
    run = _loaded_run(name, mtime)
    images = run.dataset.images[run.splits.val[list(samples)]]
    return faith.faithfulness(run.model, images, method, options, steps=steps)


def faithfulness(
    name: str,
    samples: tuple[int, ...],
    method: str,
    options: attr.AttributionOptions,
    steps: int,
) -> faith.FaithfulnessCurves:
    """Deletion/insertion curves of ``method`` on validation samples ``samples``."""
    return _faithfulness(name, run_mtime(name), samples, method, options, steps)
