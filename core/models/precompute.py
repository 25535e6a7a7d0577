"""What the app's views compute for a run, one recipe per result, and the results it ships.

The app's cache (``ui/cache.py``) and ``make assets`` (:func:`precompute_run`, through
``python -m core.models.shipped --results``) call the same recipes with the same arguments, so a
result read from a run's store (:mod:`core.result_store`) is exactly the one the app would
compute. Each stored analysis has a version in :data:`VERSIONS`: change a recipe's output and
bump it, and the old files stop being read.

What ships for each run (computed by :func:`precompute_run`) is what the first views need:
predictions for the home page and the projections' colours, the layer report card (trained
and random init, at the default sample count) with its CKA matrices, head statistics (and
attention on the object, for ``shapes``) for a ViT, the map view's default projections (UMAP
and PCA, 2-D, of the report card's layers and any other layers asked for), the across-depth
view (PCA and UMAP), and the Attributions page's first maps (each method on the first
correctly classified validation sample): every server process would otherwise compute these
itself, on the first visit of each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from core import result_store
from core.activations import INPUT, list_layers
from core.analysis import Batch, Inputs
from core.attention import objects
from core.attention import sites as attention_sites
from core.attention import statistics as head_stats
from core.attributions.methods import (
    AttributionOptions,
    attribution_maps,
    first_view_options,
    supported_methods,
)
from core.data.datasets import adapt_images, stratified_sample
from core.models.evaluation import Predictions, predict
from core.models.runs import LoadedRun, RunInfo, inputs_batch
from core.projections import features as feats
from core.projections import fits as proj
from core.projections import report_card as card

T = TypeVar("T")
Progress = Callable[[int, int], None]

SEED = 0
REPORT_N = 1000
"""The report card's default held-out sample count."""
PROJECTION_N = 2000
"""The map view's default sample count (or the whole dataset when smaller)."""
DEPTH_N = 1000
"""The across-depth view's default sample count."""
VERSIONS = {
    "predictions": 1,
    "sample-predictions": 1,
    "report": 2,
    "cka": 1,
    "head-stats": 1,
    "object-attention": 1,
    "feature-info": 1,
    "projection": 1,
    "depth": 1,
    "feature-vis": 1,
    "attribution-maps": 1,
    "training-cka_to_final": 1,  # the Training page's (core.training.recipes)
    "training-probe_grid": 1,
    "training-aligned_projection": 1,
    "training-filters": 1,
    "training-learning_events": 1,
    "training-transfer": 1,
}
"""Stored analyses and the version of their recipe."""


def _info(run: LoadedRun | RunInfo) -> RunInfo:
    return run.info if isinstance(run, LoadedRun) else run


def load(
    run: LoadedRun | RunInfo, analysis: str, args: dict[str, Any], expected: type[T]
) -> T | None:
    """The stored result of ``analysis(args)`` for this run's weights, or ``None``."""
    info = _info(run)
    full = {**args, "v": VERSIONS[analysis]}
    return result_store.load_result(info.path, analysis, full, info.weights_sha256, expected)


def save(
    run: LoadedRun | RunInfo, analysis: str, args: dict[str, Any], result: object
) -> Path | None:
    """Stores ``result``; ``None`` (nothing written) when the run has no weights hash or its
    folder cannot be written."""
    info = _info(run)
    if not info.weights_sha256:
        return None
    full = {**args, "v": VERSIONS[analysis]}
    with contextlib.suppress(OSError):
        return result_store.save_result(info.path, analysis, full, info.weights_sha256, result)
    return None


# --- the recipes ------------------------------------------------------------------------------


def cls_layers(run: LoadedRun) -> list[str]:
    """``"<block> (CLS)"`` pseudo-layers of a ViT, shallow to deep (empty for other models)."""
    return attention_sites.cls_layers(run.model)


def report_layers(run: LoadedRun) -> list[str]:
    """The layers the report card covers, shallow to deep (CLS tokens for a ViT)."""
    return card.report_layers(run.model, run.info.input_shape)


def map_layers(run: LoadedRun) -> list[str]:
    """Every layer the map view offers: the input, CLS tokens, then ``named_modules()``."""
    layers = list_layers(run.model, run.info.input_shape)
    return [INPUT, *cls_layers(run)] + [layer.name for layer in layers]


def projection_n(run: LoadedRun) -> int:
    """The map view's default sample count for this run."""
    return min(PROJECTION_N, len(run.dataset))


def predictions(run: LoadedRun, split: str) -> Predictions:
    """The model's predictions on a split (``train``, ``val`` or ``test``)."""
    idx = getattr(run.splits, split)
    return predict(run.model, run.dataset.images[idx], run.dataset.labels[idx])


def projection_samples(run: LoadedRun, n: int, seed: int = SEED) -> np.ndarray:
    """``[n]`` indices into the whole dataset, stratified by class, sorted."""
    return stratified_sample(run.dataset.labels, n, seed)


def sample_predictions(run: LoadedRun, n: int, seed: int = SEED) -> Predictions:
    """The model's predictions on :func:`projection_samples`."""
    idx = projection_samples(run, n, seed)
    return predict(run.model, run.dataset.images[idx], run.dataset.labels[idx])


def held_out(run: LoadedRun, n: int, seed: int = SEED) -> np.ndarray:
    """``[n]`` validation and test indices, stratified by class, sorted: the report's samples."""
    held = np.concatenate([run.splits.val, run.splits.test])
    return np.sort(held[stratified_sample(run.dataset.labels[held], n, seed)])


def report_model(run: LoadedRun, versus: str | LoadedRun) -> tuple[Any, list[str], np.ndarray]:
    """The model a report probes, its layers, and the images to feed it (held-out order).

    ``versus``: ``"trained"`` (the run), ``"random"`` (the same architecture, random weights),
    or another loaded run (fed this run's samples, resized if needed).
    """
    if versus == "trained":
        return run.model, report_layers(run), run.dataset.images
    if versus == "random":
        info = run.info
        model = card.random_init_model(info.arch, info.input_shape, len(info.dataset.class_names))
        return model, report_layers(run), run.dataset.images
    assert isinstance(versus, LoadedRun)
    images = adapt_images(run.dataset.images, versus.info.input_shape)
    return versus.model, report_layers(versus), images


def versus_arg(versus: str | LoadedRun) -> str | dict[str, str]:
    """How ``versus`` enters a stored result's arguments (another run: name and weights)."""
    if isinstance(versus, LoadedRun):
        return {"run": versus.info.name, "weights": versus.info.weights_sha256}
    return versus


def report(
    run: LoadedRun,
    n: int = REPORT_N,
    versus: str | LoadedRun = "trained",
    seed: int = SEED,
    progress: Progress | None = None,
) -> card.LayerReport:
    """The layer report card of ``run`` on ``n`` held-out samples (Gram matrices included)."""
    idx = held_out(run, n, seed)
    data = run.dataset
    model, layers, images = report_model(run, versus)
    batch = Batch(images[idx], data.labels[idx], {k: v[idx] for k, v in data.factors.items()})
    options = card.ReportOptions(layers=tuple(layers), seed=seed)
    return card.layer_report(model, batch, options, progress=progress)


def report_args(run: LoadedRun, n: int, versus: str | LoadedRun, seed: int) -> dict[str, Any]:
    """The stored arguments of :func:`report` (the layers included: they define the rows)."""
    layers = report_layers(versus if isinstance(versus, LoadedRun) else run)
    return {"n": n, "versus": versus_arg(versus), "seed": seed, "layers": tuple(layers)}


def report_grams(
    run: LoadedRun,
    n: int = REPORT_N,
    versus: str | LoadedRun = "trained",
    seed: int = SEED,
    cka_samples: int = card.CKA_SAMPLES,
    progress: Progress | None = None,
) -> card.Grams:
    """The Gram matrices a report of ``versus`` keeps for CKA, without probing."""
    idx = held_out(run, n, seed)[:cka_samples]
    model, layers, images = report_model(run, versus)
    batch = Batch(images[idx], run.dataset.labels[idx])
    options = card.GramOptions(layers=tuple(layers))
    return card.layer_grams(model, batch, options, progress=progress)


def cka_args(run: LoadedRun, n: int, versus: str | LoadedRun | None, seed: int) -> dict[str, Any]:
    """The stored arguments of a CKA matrix (``versus=None``: the run against itself)."""
    return {
        "n": n,
        "versus": "self" if versus is None else versus_arg(versus),
        "seed": seed,
        "layers": tuple(report_layers(run)),
    }


def head_statistics(
    run: LoadedRun, split: str = "val", progress: Progress | None = None
) -> head_stats.HeadStatistics:
    """Per-head attention statistics over a split (the analysis's default options)."""
    idx = getattr(run.splits, split)
    batch = Batch(run.dataset.images[idx], run.dataset.labels[idx])
    options = head_stats.StatisticsOptions()
    return head_stats.head_statistics(run.model, batch, options, progress=progress)


def object_attention(
    run: LoadedRun, split: str = "val", progress: Progress | None = None
) -> objects.ObjectAttention:
    """Attention on the object per layer over a split (the analysis's default options)."""
    idx = getattr(run.splits, split)
    data = run.dataset
    batch = Batch(data.images[idx], data.labels[idx], masks=data.masks[idx])
    return objects.object_attention(run.model, batch, objects.ObjectOptions(), progress=progress)


def layer_features(
    run: LoadedRun, layer: str, n: int, seed: int = SEED, progress: Progress | None = None
) -> feats.LayerFeatures:
    """``layer`` over :func:`projection_samples`, PCA-reduced to <= 50 dims when wider."""
    idx = projection_samples(run, n, seed)
    batch = Batch(run.dataset.images[idx], run.dataset.labels[idx])
    options = feats.FeatureOptions(layer, seed=seed)
    return feats.layer_features(run.model, batch, options, progress=progress)


def layers_features(
    run: LoadedRun,
    layers: Sequence[str],
    n: int,
    seed: int = SEED,
    progress: Progress | None = None,
) -> list[feats.LayerFeatures]:
    """:func:`layer_features` of several layers, in as few forward passes as memory allows."""
    idx = projection_samples(run, n, seed)
    return feats.layers_features(
        run.model, run.dataset.images[idx], layers, seed=seed, progress=progress
    )


# --- what ships --------------------------------------------------------------------------------


def precompute_run(
    run: LoadedRun,
    *,
    map_layers_too: Iterable[str] = (),
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Computes and stores what the first views of ``run`` need (see the module docstring).

    Args:
        run: the loaded run (its folder is written).
        map_layers_too: layers besides the report card's whose default map view is stored.
        log: called with one line per result.

    Returns:
        The files written.
    """
    written: list[Path] = []

    def keep(analysis: str, args: dict[str, Any], compute: Callable[[], object]) -> object:
        start = time.perf_counter()
        result = compute()
        path = save(run, analysis, args, result)
        if path is not None:
            written.append(path)
            log(
                f"{run.info.name}: {analysis} {args_text(args)} in "
                f"{time.perf_counter() - start:.1f} s, {path.stat().st_size / 1024:.0f} KiB"
            )
        return result

    for split in ("val", "test"):
        keep("predictions", {"split": split}, lambda s=split: predictions(run, s))
    n_map = projection_n(run)
    for n in dict.fromkeys((n_map, DEPTH_N)):
        keep("sample-predictions", {"n": n, "seed": SEED}, lambda n=n: sample_predictions(run, n))

    reports = {}
    for versus in ("trained", "random"):
        args = report_args(run, REPORT_N, versus, SEED)
        full = report(run, REPORT_N, versus, SEED)
        reports[versus] = full
        keep("report", args, full.without_grams)
    for versus, other in ((None, None), ("random", reports["random"])):
        args = cka_args(run, REPORT_N, versus, SEED)
        trained = reports["trained"]
        keep("cka", args, lambda t=trained, o=other: card.cka_between(t, o))

    if attention_sites.has_attention(run.model):
        keep("head-stats", {"split": "val"}, lambda: head_statistics(run, "val"))
        if run.dataset.masks is not None:
            keep("object-attention", {"split": "val"}, lambda: object_attention(run, "val"))

    inputs = Inputs.sample(predictions(run, "val").first_correct)
    batch = inputs_batch(run, inputs)
    layers = list_layers(run.model, run.info.input_shape)
    first = dataclasses.asdict(first_view_options(layers, run.info.input_shape[-1]))
    for method in supported_methods(layers):
        options = AttributionOptions(**first, methods=(method,))
        args = {"inputs": inputs, "options": options}
        keep("attribution-maps", args, lambda o=options: attribution_maps(run.model, batch, o))

    ladder = report_layers(run)
    wanted = list(dict.fromkeys([*ladder, *map_layers_too]))
    features = dict(zip(wanted, layers_features(run, wanted, n_map), strict=True))
    for layer in wanted:
        x = features[layer]
        keep("feature-info", {"layer": layer, "n": n_map, "seed": SEED}, lambda x=x: x.info)
        for method in ("UMAP", "PCA"):
            args = {"layer": layer, "n": n_map, "method": method, "dims": 2, "seed": SEED}
            keep(
                "projection",
                args,
                lambda x=x, m=method: proj.project(x.features, m, 2, seed=SEED),
            )

    depth_features = layers_features(run, ladder, DEPTH_N)
    for method in ("PCA", "UMAP"):
        args = {"layers": tuple(ladder), "n": DEPTH_N, "method": method, "seed": SEED}
        keep(
            "depth",
            args,
            lambda m=method: proj.project_depth(
                [f.features for f in depth_features], ladder, m, seed=SEED
            ),
        )
    return written


def args_text(args: dict[str, Any]) -> str:
    """Arguments for a log line (long layer lists shortened)."""
    parts = []
    for key, value in args.items():
        if isinstance(value, tuple | list) and len(value) > 3:
            value = f"[{len(value)} layers]"
        parts.append(f"{key}={value}")
    return " ".join(parts)


def stored(
    run: LoadedRun, analysis: str, args: dict[str, Any], expected: type[T], compute: Callable[[], T]
) -> T:
    """The run's stored result of ``analysis(args)``, else ``compute()`` (stored for the
    user's own runs; the shipped runs' store is written by ``make assets`` only)."""
    found = load(run, analysis, args, expected)
    if found is not None:
        return found
    result = compute()
    if not run.info.shipped:
        save(run, analysis, args, result)
    return result
