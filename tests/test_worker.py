"""The fit worker: same results as in-process, in another process, and it recovers."""

from __future__ import annotations

import os

import numpy as np

from core import worker
from core.projections import fits as projection


def test_worker_runs_elsewhere_and_matches_in_process() -> None:
    assert worker.run(os.getpid) != os.getpid()
    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    there = worker.run(projection.project, x, "UMAP", 2, seed=0)
    here = projection.project(x, "UMAP", 2, seed=0)
    np.testing.assert_allclose(there.coords, here.coords, rtol=1e-5, atol=1e-5)
    assert worker.run(os.getenv, "NUMBA_NUM_THREADS") == str(worker.worker_threads())
