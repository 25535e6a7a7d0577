"""Shared fixtures: an isolated runs root for every test; one served app and one headless
Chromium for the browser tests (started on first use, shared by every browser test)."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

from browser_support import CHROMIUM, CHROMIUM_ARGS, stop_server

# One thread per math library, here and in every process the tests start (the served app, fit
# workers, Ray workers, training daemons; they inherit the environment): the suite runs in two
# processes on a two-core machine beside the app servers, and each library's default (a thread
# per core, spinning at barriers) makes that four or more busy threads per core, which slowed
# tiny models' passes tenfold. The shipped runs' stored results were made with one thread too
# (``make assets``). An explicit OMP_NUM_THREADS in the environment wins.
THREADS = int(os.environ.setdefault("OMP_NUM_THREADS", "1"))
for _variable in ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, str(THREADS))
torch.set_num_threads(THREADS)
threadpool_limits(THREADS)  # numpy's BLAS, loaded before this file

# The files that take longest, longest first (measured with --durations; browser journeys and
# the servers they start). xdist hands whole files to its two processes in collection order
# (``--no-loadscope-reorder`` in pyproject.toml), so longest first means no long file starts
# last and runs alone at the end (it did: the audit and features journeys, one test each, ran
# last by xdist's own order, most tests first). The other files follow, most tests first.
LONGEST_FIRST = (
    "test_journeys.py",
    "test_browser.py",
    "test_audit_browser.py",
    "test_journey_features.py",
    "test_serving.py",
    "test_journey_store.py",
    "test_journey_training.py",
    "test_jobs.py",
    "test_train_runs.py",
    "test_page_attention.py",
    "test_page_projections.py",
    "test_journeys_tokens.py",
    "test_extract.py",
    "test_page_audit.py",
    "test_journey_queue.py",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Orders the files as :data:`LONGEST_FIRST` says (each file's tests keep their order)."""
    counts = Counter(item.path.name for item in items)

    def rank(item: pytest.Item) -> tuple[int, int, str]:
        name = item.path.name
        first = LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
        return first, -counts[name], str(item.path)

    items.sort(key=rank)


@pytest.fixture(autouse=True)
def isolated_runs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test gets its own empty user runs root (the shipped runs stay visible)."""
    root = tmp_path_factory.mktemp("runs")
    monkeypatch.setenv("LAYERSCOPE_RUNS", str(root))
    return root


@pytest.fixture(scope="session")
def served_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served app's (empty) user runs root; the shipped runs are visible beside it."""
    return tmp_path_factory.mktemp("served-runs")


@pytest.fixture(scope="session")
def served_stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served app's (empty) activation stores root (``LAYERSCOPE_STORES``)."""
    return tmp_path_factory.mktemp("served-stores")


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, served_runs: Path, served_stores: Path
) -> Iterator[tuple[str, float]]:
    """The app served on a free localhost port; yields its URL and seconds until healthy."""
    from ui.serve import free_port, launch

    port = free_port()
    env = {
        "LAYERSCOPE_RUNS": str(served_runs),
        "LAYERSCOPE_DATA": str(tmp_path_factory.mktemp("served-data")),
        "LAYERSCOPE_STORES": str(served_stores),
    }
    started = time.perf_counter()
    log = (tmp_path_factory.mktemp("server-log") / "server.log").open("wb")
    process = launch(port, env=env, log=log)
    try:
        yield f"http://127.0.0.1:{port}", time.perf_counter() - started
    finally:
        stop_server(process)
        log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright (nothing is downloaded)."""
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()
