"""What the Training page computes for a run, one recipe per grid, stored beside the run.

The page's cache (``ui/cache.py``), ``make assets`` (:func:`precompute_training`) and
``bench/dynamics.py`` call the same recipe with the same arguments, so a result read from the
run's store (:mod:`core.result_store`, keyed on the final weights' hash and on the checkpoint
list) is exactly the one the page would compute. Samples: ``held_out`` (validation + test) or
``train`` (the samples the run trained on, with the labels it trained on: random ones for the
relabelled samples of a label-noise run), a class-stratified sample of ``n``.

What can go wrong: a run without checkpoints (an imported one) has one column per grid.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import result_store
from core.activations import list_layers
from core.analysis import Batch, get
from core.data.datasets import stratified_sample
from core.files import load_state_dict
from core.models.precompute import VERSIONS
from core.models.runs import LoadedRun, list_checkpoints, load_run, relabelled
from core.projections.report_card import default_layer
from core.training.checkpoints import CheckpointCapture, capture_checkpoints
from core.training.projection import AlignedOptions
from core.training.transfer import TransferOptions, TransferReport, transfer_report

N = 1000
"""Samples each grid is computed on by default."""
SEED = 0
GRIDS = (
    "training.cka_to_final",
    "training.probe_grid",
    "training.aligned_projection",
    "training.filters",
    "training.learning_events",
)
"""The analyses the Training page shows."""
SPLITS = ("held_out", "train")
BOTH_SPLITS = ("training.probe_grid", "training.learning_events")
"""Grids the page shows on training samples too (memorisation, noisy labels)."""


@dataclass(frozen=True)
class Samples:
    """The samples a grid is computed on.

    Attributes:
        batch: their images, labels (as trained on, for ``train``) and factors.
        indices: ``[N]`` their indices into the run's dataset.
        relabelled: ``[N]`` bool, the label was replaced by label noise.
    """

    batch: Batch
    indices: np.ndarray
    relabelled: np.ndarray


def training_indices(run: LoadedRun) -> np.ndarray:
    """``[M]`` dataset indices the run trained on (its subset of the training split)."""
    subset = run.info.config.get("train_subset")
    return run.splits.train if subset is None else run.splits.train[:subset]


def samples(run: LoadedRun, split: str = "held_out", n: int = N, seed: int = SEED) -> Samples:
    """A stratified sample of ``n`` ``held_out`` or ``train`` samples (see the module)."""
    if split not in SPLITS:
        raise ValueError(f"Samples come from {' or '.join(SPLITS)}, not {split!r}.")
    pool = (
        training_indices(run)
        if split == "train"
        else np.concatenate([run.splits.val, run.splits.test])
    )
    idx = pool[stratified_sample(run.dataset.labels[pool], n, seed)]
    chosen = run.dataset.subset(idx)
    labels = chosen.labels.copy()
    noisy = np.zeros(len(idx), bool)
    if split == "train":
        flipped, new = relabelled(run.info)
        where = {int(i): int(y) for i, y in zip(flipped, new, strict=True)}
        noisy = np.isin(idx, flipped)
        labels[noisy] = [where[int(i)] for i in idx[noisy]]
    batch = Batch(chosen.images, labels, chosen.factors, run.info.dataset.class_names)
    return Samples(batch, idx, noisy)


def checkpoint_states(run: LoadedRun) -> list[dict[str, torch.Tensor]]:
    """The run's checkpoints' state dicts, in training order."""
    return [load_state_dict(c.path) for c in list_checkpoints(run.info)]


def _key(run: LoadedRun, analysis: str, split: str, n: int, options: Any) -> dict[str, Any]:
    """What a stored grid depends on besides the final weights: its version is
    ``core.models.precompute.VERSIONS[<stored name>]`` (bump it when a recipe changes)."""
    values = [c.value for c in list_checkpoints(run.info)]
    v = VERSIONS[_stored_name(analysis)]
    return {"split": split, "n": n, "seed": SEED, "options": options, "ckpt": values, "v": v}


def _stored_name(analysis: str) -> str:
    return analysis.replace(".", "-")


def capture(
    run: LoadedRun,
    split: str = "held_out",
    n: int = N,
    states: list[dict[str, torch.Tensor]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CheckpointCapture:
    """Every grid layer's pooled features and the logits of :func:`samples` at every
    checkpoint: the one capture the grids of a split share."""
    states = checkpoint_states(run) if states is None else states
    return capture_checkpoints(run.model, samples(run, split, n).batch, states, progress=progress)


def stored_grid(
    run: LoadedRun, analysis: str, split: str = "held_out", options: Any = None, n: int = N
) -> Any | None:
    """:func:`grid`'s result when the run's store holds it (for these weights and
    checkpoints), else ``None``: cheap, nothing is computed."""
    options = get(analysis).options() if options is None else options
    key = _key(run, analysis, split, n, options)
    info = run.info
    return result_store.load_result(info.path, _stored_name(analysis), key, info.weights_sha256)


def grid(
    run: LoadedRun,
    analysis: str,
    split: str = "held_out",
    options: Any = None,
    n: int = N,
    *,
    captured: Callable[[], CheckpointCapture] | None = None,
    states: list[dict[str, torch.Tensor]] | None = None,
    progress: Callable[[int, int], None] | None = None,
    store: bool = True,
) -> Any:
    """Training analysis ``analysis`` (one of :data:`GRIDS`) of ``run`` over its checkpoints.

    Read from the run's store when there; otherwise computed (and stored, unless ``store`` is
    false or the run is shipped: ``make assets`` writes those).

    Args:
        run: the run with its final weights.
        analysis: the registered name.
        split: ``held_out`` or ``train`` (see :func:`samples`).
        options: the analysis's options (``None``: its defaults).
        n: samples.
        captured: returns :func:`capture` of this split and ``n`` (called only if needed).
        states: the checkpoints, if already loaded.
        progress: ``progress(done, total)``.
        store: read and write the run's store.
    """
    spec = get(analysis)
    options = spec.options() if options is None else options
    info = run.info
    name, key = _stored_name(analysis), _key(run, analysis, split, n, options)
    found = stored_grid(run, analysis, split, options, n) if store else None
    if found is not None:
        return found
    chosen = samples(run, split, n)
    states = checkpoint_states(run) if states is None else states
    extra = {} if captured is None or analysis == "training.filters" else {"captured": captured()}
    result = spec.function(
        run.model, chosen.batch, options, checkpoints=states, progress=progress, **extra
    )
    if store and not info.shipped and info.weights_sha256:
        with contextlib.suppress(OSError):  # a read-only run folder: computed again next time
            result_store.save_result(info.path, name, key, info.weights_sha256, result)
    return result


def transfer(
    run: LoadedRun, n: int = N, *, store: bool = True, write_shipped: bool = False
) -> TransferReport | None:
    """The fine-tuned ``run`` against the run it started from, on ``n`` of its held-out
    samples; ``None`` when it did not start from another run. Read from and written to the
    run's store (a shipped run's only with ``write_shipped``: ``make assets``)."""
    source_name = run.info.config.get("init_from")
    if not source_name:
        return None
    source = load_run(source_name, device=str(next(run.model.parameters()).device))
    key = {"source": source.info.weights_sha256, "n": n, "seed": SEED}
    key["v"] = VERSIONS["training-transfer"]
    info = run.info
    found = (
        result_store.load_result(info.path, "training-transfer", key, info.weights_sha256)
        if store
        else None
    )
    if found is not None:
        return found
    report = transfer_report(
        run.model, samples(run, "held_out", n).batch, TransferOptions(), source=source.model
    )
    if store and info.weights_sha256:
        with contextlib.suppress(OSError):
            result_store.save_result(
                info.path, "training-transfer", key, info.weights_sha256, report
            )
    return report


def _stored_options(analysis: str, captured: CheckpointCapture) -> list[Any]:
    """The options a shipped run stores ``analysis`` for: the defaults, and for the aligned
    projection every other layer too (the default layer's options stay ``layer=""``)."""
    default = get(analysis).options()
    if analysis != "training.aligned_projection":
        return [default]
    others = [AlignedOptions(n) for n in captured.layers if n != default_layer(captured.layers)]
    return [default, *others]


def precompute_training(run: LoadedRun, log: Callable[[str], None] = print) -> list[Path]:
    """Computes and stores every grid the Training page opens with (default options)."""
    states = checkpoint_states(run)
    layers = list_layers(run.model, run.info.input_shape)
    captures = {split: capture(run, split, N, states) for split in SPLITS}
    written = []
    for analysis in GRIDS:
        if not get(analysis).compatible(layers):
            continue
        for split in SPLITS if analysis in BOTH_SPLITS else ("held_out",):
            start = time.perf_counter()
            shared = captures[split]
            for options in _stored_options(analysis, shared):
                result = grid(
                    run, analysis, split, options, states=states, captured=lambda c=shared: c,
                    store=False,
                )  # fmt: skip
                key = _key(run, analysis, split, N, options)
                path = result_store.save_result(
                    run.info.path, _stored_name(analysis), key, run.info.weights_sha256, result
                )
                written.append(path)
                log(
                    f"{run.info.name}: {analysis} {options} on {split} in "
                    f"{time.perf_counter() - start:.1f} s, {path.stat().st_size / 1024:.0f} KiB"
                )
    if transfer(run, write_shipped=True) is not None:
        log(f"{run.info.name}: transfer report stored")
        written += [p for p in result_store.stored_results(run.info.path) if "transfer" in p.name]
    return written
