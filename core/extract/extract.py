"""Extraction: plan the store, compute the missing chunks on an engine, write them.

The driver (this module) owns the store: it creates or reopens it, re-verifies the chunks the
manifest says are done (a chunk damaged on disk is redone, not trusted), hands the rest to an
engine and writes each chunk the engine returns. Engines are generators of
``(chunk, arrays)``: ``local`` computes in this process, chunk by chunk (memory: the source
images plus one chunk of outputs); ``ray`` (:mod:`.ray_engine`) fans chunks out to Ray
workers. Stopping at any point (Ctrl-C, a killed process) loses at most the chunks in flight.

What can go wrong: a store folder made for another run/dataset/layers (``StoreError``), a
layer name the model does not have (``ValueError`` naming it), ray not installed for
``engine="ray"`` (``ImportError`` saying how to install the extra).
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.activations import capture
from core.data.datasets import Dataset
from core.device import pick_device
from core.extract.compute import SPATIAL, ModelSpec, build_from_spec, chunk_outputs, kinds_for
from core.extract.sources import dataset_hash, load_source
from core.extract.store import ActivationStore
from core.files import load_state_dict, state_dict_hash
from core.models.runs import RunInfo, find_run, read_run

ENGINES = ("local", "ray")
CHUNK_ROWS = 4096
"""Rows per chunk: the unit of resumption, checksums and work handed to a worker."""
TOP_K = 16
"""Top-activating examples kept per channel and shard."""

Progress = Callable[[int, int, int], None]
"""``progress(chunks done, chunks in all, images done)``."""


@dataclass(frozen=True)
class Job:
    """What every engine needs to compute chunks (picklable: it travels to Ray workers).

    Attributes:
        spec: how to rebuild the model.
        layers: ``(layer name, stored kinds)`` in store order.
        batch_size: inputs per forward pass.
        top_k: examples kept per channel and shard.
        device: ``cpu``, ``cuda``, ...: where a worker computes.
    """

    spec: ModelSpec
    layers: tuple[tuple[str, tuple[str, ...]], ...]
    batch_size: int
    top_k: int
    device: str


def local_engine(
    job: Job,
    state: dict[str, torch.Tensor],
    data: Dataset,
    chunks: Sequence[tuple[int, int, int]],
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Computes ``(chunk, start, stop)`` chunks in this process, one after another."""
    model = build_from_spec(job.spec, state, job.device)
    ids = np.arange(len(data), dtype=np.int64)
    for chunk, start, stop in chunks:
        yield (
            chunk,
            chunk_outputs(
                model,
                data.images[start:stop],
                ids[start:stop],
                data.labels[start:stop],
                job.layers,
                batch_size=job.batch_size,
                top_k=job.top_k,
            ),
        )


def _versions(engine: str) -> dict[str, str]:
    import zarr

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "zarr": zarr.__version__,
    }
    if engine == "ray":
        import ray

        out["ray"] = ray.__version__
    return out


def _layer_plan(
    model: torch.nn.Module, images: np.ndarray, layers: Sequence[str], spatial: str
) -> list[dict[str, Any]]:
    """Each layer's stored kinds, array names and per-sample shapes (one probe forward pass)."""
    probe = capture(model, images[:1], list(layers))
    plan = []
    for i, name in enumerate(layers):
        shape = probe.arrays[name].shape[1:]
        channels = int(shape[0] if len(shape) == 3 else shape[-1])
        kinds = kinds_for(shape, spatial)
        shapes = {"pooled": [channels], "full": list(shape)}
        plan.append(
            {
                "name": name,
                "arrays": {k: f"layer_{i}_{k}" for k in kinds},
                "shapes": {k: shapes[k] for k in kinds},
                "channels": channels,
            }
        )
    return plan


def print_progress(start: float) -> Progress:
    """A progress callback printing one updating line to stderr."""

    def show(done: int, total: int, images: int) -> None:
        rate = images / max(time.perf_counter() - start, 1e-9)
        sys.stderr.write(f"\rchunk {done}/{total} · {images:,} images · {rate:,.0f} img/s   ")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def extract(
    run: str | RunInfo,
    layers: Sequence[str],
    out: str | Path,
    *,
    data: str | None = None,
    n: int | None = None,
    seed: int = 0,
    spatial: str = "pooled",
    engine: str = "local",
    batch_size: int = 256,
    chunk_rows: int = CHUNK_ROWS,
    top_k: int = TOP_K,
    workers: int = 2,
    address: str | None = None,
    device: str | None = None,
    dataset: Dataset | None = None,
    progress: Progress | None = None,
) -> ActivationStore:
    """Extracts ``layers`` of a run over a dataset into the store at ``out`` (or resumes it).

    Args:
        run: a run's name (shipped or the user's) or its :class:`RunInfo`.
        layers: ``named_modules()`` names (or :data:`core.activations.INPUT`).
        out: the store folder.
        data: a folder, a dataset name, or ``None`` for the run's dataset (see
            :func:`.sources.load_source`); ignored when ``dataset`` is given.
        n, seed: how many images and which, for dataset names.
        spatial: one of :data:`.compute.SPATIAL`.
        engine: one of :data:`ENGINES`.
        batch_size: inputs per forward pass.
        chunk_rows: rows per chunk (the unit of resumption).
        top_k: top examples kept per channel and shard.
        workers: Ray workers (``ray`` only).
        address: an existing Ray cluster's address (``ray`` only; ``None`` starts a local one).
        device: where to compute (default :func:`core.device.pick_device`; Ray workers use a
            GPU each when the cluster has them).
        dataset: images already loaded (tests, benchmarks).
        progress: called after each chunk (default: a line on stderr).

    Returns:
        The store, complete.
    """
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}: use one of {', '.join(ENGINES)}.")
    if spatial not in SPATIAL:
        raise ValueError(f"Unknown spatial option {spatial!r}: use one of {', '.join(SPATIAL)}.")
    info = run if isinstance(run, RunInfo) else read_run(find_run(run))
    source = {"source": "given", "n": len(dataset), "seed": seed} if dataset is not None else None
    if dataset is None:
        dataset, source = load_source(data, info, n, seed)
    state = load_state_dict(info.path / "model.safetensors")
    spec = ModelSpec(
        info.arch,
        tuple(info.input_shape),
        len(info.dataset.class_names),
        info.normalization.to_json() if info.normalization else None,
    )
    device = str(pick_device(device))
    model = build_from_spec(spec, state, "cpu")
    plan = _layer_plan(model, dataset.images, layers, spatial)
    n_rows, classes = len(dataset), spec.num_classes
    n_chunks = -(-n_rows // chunk_rows)
    arrays: dict[str, tuple[tuple, str]] = {
        "ids": ((n_rows,), "int64"),
        "labels": ((n_rows,), "int64"),
        "logits": ((n_rows, classes), "float32"),
    }
    for i, layer in enumerate(plan):
        for kind, name in layer["arrays"].items():
            arrays[name] = ((n_rows, *layer["shapes"][kind]), "float16")
        arrays[f"topk_{i}_values"] = ((n_chunks, layer["channels"], top_k), "float32")
        arrays[f"topk_{i}_ids"] = ((n_chunks, layer["channels"], top_k), "int64")
    manifest = {
        "run": info.name,
        "run_hash": state_dict_hash(state),
        "dataset": {**source, "name": dataset.info.name, "data": data},
        "dataset_hash": dataset_hash(dataset.images, dataset.labels),
        "class_names": list(dataset.info.class_names),
        "input_shape": list(info.input_shape),
        "n": n_rows,
        "chunk_rows": chunk_rows,
        "layers": plan,
        "top_k": top_k,
        "top_k_score": "spatial max (float32, before the float16 cast)",
        "engine": engine,
        "batch_size": batch_size,
        "versions": _versions(engine),
    }
    store = ActivationStore.create(out, manifest, arrays)
    store.forget(set(store.verify()))
    pending = [(c, *store.rows(c)) for c in range(n_chunks) if c not in store.done_chunks()]
    job = Job(spec, tuple((p["name"], tuple(p["arrays"])) for p in plan), batch_size, top_k, device)
    if engine == "ray":
        from core.extract.ray_engine import ray_engine

        chunks = ray_engine(job, state, dataset, pending, workers=workers, address=address)
    else:
        chunks = local_engine(job, state, dataset, pending)
    progress = progress or print_progress(time.perf_counter())
    images = 0
    for chunk, outputs in chunks:
        store.write_chunk(chunk, outputs)
        images += len(outputs["ids"])
        progress(len(store.done_chunks()), n_chunks, images)
    store.update_manifest(job=asdict(job) | {"spec": asdict(spec)})
    return store
