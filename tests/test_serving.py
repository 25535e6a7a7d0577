"""Two app processes behind nginx (``ui.proxy``): a browser sticks to one process, and when that
process dies its reconnect lands on the other and the page its URL names comes back."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from bench.streamlit_client import StreamlitTab
from ui.proxy import COOKIE, Cluster
from ui.serve import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed"),
]


async def visit(port: int, student: str, page: str = "", query: str = "") -> str:
    """Opens one page as ``student`` (their cookie) and closes it; returns the run's status."""
    tab = StreamlitTab(f"127.0.0.1:{port}", timeout=180, cookie=f"{COOKIE}={student}")
    try:
        return (await tab.open(page, query)).status
    finally:
        await tab.close()


def opened(port: int, student: str, page: str = "", query: str = "") -> str:
    """:func:`visit` on a thread of its own: the browser tests' Playwright keeps an event loop
    running on this one, where ``asyncio.run`` refuses to start another."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, visit(port, student, page, query)).result()


def descendants(process: subprocess.Popen) -> list[psutil.Process]:
    """The processes ``process`` started (its fit worker), still running or not."""
    try:
        return psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_sticky_sessions_and_a_dead_process(tmp_path: Path) -> None:
    cluster = Cluster(2, free_port(), env={"LAYERSCOPE_RUNS": str(tmp_path)})
    orphans: list[psutil.Process] = []  # a killed server's fit worker outlives it
    try:
        students = [f"student-{i}" for i in range(6)]
        for student in students:
            assert opened(cluster.port, student) == "ok"
        homes = {s: cluster.backend_of(s) for s in students}
        assert set(homes.values()) == set(cluster.backends)  # both processes serve someone
        assert opened(cluster.port, "student-0", "projections") == "ok"
        assert cluster.backend_of("student-0") == homes["student-0"]  # sticky

        victim = cluster.backends.index(homes["student-0"])
        orphans += descendants(cluster.servers[victim])
        cluster.servers[victim].kill()
        cluster.servers[victim].wait(10)
        query = "run=cnn-shapes&sample=3"
        assert opened(cluster.port, "student-0", "projections", query) == "ok"
        survivor = cluster.backends[1 - victim]
        assert cluster.backend_of("student-0") == survivor  # reconnected to the other one
        others = [s for s in students if homes[s] == survivor]
        assert all(opened(cluster.port, s) == "ok" for s in others[:2])
    finally:
        orphans += [child for server in cluster.servers for child in descendants(server)]
        cluster.stop()
        for child in orphans:  # else left running, ~400 MB each, after the suite
            with contextlib.suppress(psutil.NoSuchProcess):
                child.terminate()
        for child in psutil.wait_procs(orphans, timeout=10)[1]:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
