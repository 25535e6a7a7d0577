"""The ``ray`` engine: chunks computed by Ray Data workers, on a local or existing cluster.

Ray is an optional extra (``pip install -e '.[ray]'``); only this module imports it, and only
when ``engine="ray"`` is asked for. The driver puts the images, labels and weights in Ray's
object store once; ``map_batches`` runs :class:`ChunkWorker`, a callable class that builds the
model once per worker (from the weights, so workers need no access to the run folder) and
computes one chunk per call with :func:`.compute.chunk_outputs`, exactly as the local engine
does, so both stores are equal bit for bit on the same kind of device. ``concurrency`` is the
number of workers; each asks for one GPU when the cluster has any (and then computes on
``cuda``), else for one CPU. ``address`` joins an existing cluster (``ray start --head`` or a
KubeRay/Anyscale head); without it a local instance with ``workers`` CPUs is started and shut
down afterwards.

What can go wrong: ray missing (``ImportError`` with the install line); a remote cluster whose
workers cannot import ``core`` (install layerscope there, or pass a ``runtime_env`` with a
``working_dir``: the error comes from Ray on the first chunk); one chunk's outputs must fit in
Ray's object store (4,096 rows: a few MB pooled, ``rows x C x H x W x 2`` bytes full).
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from core.data.datasets import Dataset
from core.extract.compute import build_from_spec, chunk_outputs

REPO = Path(__file__).resolve().parents[2]


class ChunkWorker:
    """Ray Data callable class: builds the model once, then computes one chunk per call."""

    def __init__(self, job: object, refs: list) -> None:
        import ray

        self.job = job
        images, labels, state = ray.get(refs[0])
        self.images, self.labels = images, labels
        self.model = build_from_spec(job.spec, state, job.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        payloads = []
        for start, stop in zip(batch["start"], batch["stop"], strict=True):
            outputs = chunk_outputs(
                self.model,
                self.images[start:stop],
                np.arange(start, stop, dtype=np.int64),
                self.labels[start:stop],
                self.job.layers,
                batch_size=self.job.batch_size,
                top_k=self.job.top_k,
            )
            payloads.append(pickle.dumps(outputs, protocol=5))
        return {"chunk": batch["chunk"], "payload": np.array(payloads, dtype=object)}


def ray_engine(
    job: object,
    state: dict[str, torch.Tensor],
    data: Dataset,
    chunks: Sequence[tuple[int, int, int]],
    *,
    workers: int = 2,
    address: str | None = None,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Computes ``(chunk, start, stop)`` chunks on Ray workers, yielding them as they finish."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(
            "The ray engine needs Ray: pip install -e '.[ray]' (or use --engine local)."
        ) from err
    if not chunks:
        return
    started = not ray.is_initialized()
    if started:
        env = {"env_vars": {"PYTHONPATH": str(REPO)}}
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            ray.init(
                num_cpus=workers, include_dashboard=False, runtime_env=env, log_to_driver=False
            )
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        job = dataclasses.replace(job, device="cuda" if gpus else "cpu")
        refs = [ray.put((data.images, data.labels, {k: v.cpu() for k, v in state.items()}))]
        items = [{"chunk": c, "start": s, "stop": e} for c, s, e in chunks]
        outputs = ray.data.from_items(items).map_batches(
            ChunkWorker,
            fn_constructor_kwargs={"job": job, "refs": refs},
            batch_size=1,
            concurrency=min(workers, len(items)),
            num_gpus=1 if gpus else 0,
            num_cpus=0 if gpus else 1,
            batch_format="numpy",
        )
        for batch in outputs.iter_batches(batch_size=1, batch_format="numpy"):
            for chunk, payload in zip(batch["chunk"], batch["payload"], strict=True):
                yield int(chunk), pickle.loads(payload)
    finally:
        if started:
            ray.shutdown()
