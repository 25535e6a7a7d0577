"""Classroom load: the real app, N students at once, each clicking through a lesson.

Usage: ``.venv/bin/python bench/classroom.py [--sessions 30] [--workers 1] [--storm]``.
Starts the app (``python -m ui.serve``, as ``make run`` does; with ``--workers N``, N of them
behind nginx, as ``make run WORKERS=N`` does) on a free local port (runs root: a fresh temp
folder, so only the shipped runs), waits for ``/_stcore/health``, then drives
``--sessions`` protocol-level tabs (:mod:`bench.streamlit_client`; no browser) through:

1. open home ``/``,
2. switch run in the sidebar (``mlp-digits`` or ``vit-shapes``, alternating; another run where
   one is missing),
3. open ``/projections?run=cnn-shapes`` (a new page load),
4. change the projections layer (one of ``--layers`` layers, so later students find it cached),
5. open ``/attributions?run=cnn-shapes`` (a new page load),

with a pause of about ``--think`` seconds between steps, during which a page's timed fragments
(``st.fragment(run_every=...)``) rerun as in a browser. Students start spread over ``--ramp``
seconds, once the warm-up has ended (a class arrives at a server started before it; ``--cold``:
as soon as it answers, during the warm-up). Latency is from sending the rerun to
``script_finished``. An interaction is "cached" when it started after the first interaction
with the same step and target (page, run, layer) had finished: the first student paid for
loading and fitting, this one should not. Errors: an
exception element, a script that does not finish within ``--timeout`` s, a closed socket. A
student whose step failed stops there. The server's RSS (with children) is sampled every 0.2 s.
``--laps 2`` sends everyone through the lesson twice, so that every step is also measured cached.
Each student has their own cookie, so nginx keeps them on one process, as a browser would be.

``--storm``: half the students (every other one) also open Home's Train tab in a second tab
``--storm-at`` s after the last one arrived, within 10 s of each other, set a small job
(``--storm-epochs``, ``--storm-samples``), press Train and watch that tab for twice
``--think`` (its place in line and progress refresh on timers). The bench then waits (at most
``--storm-wait`` s) for the queue to drain and cancels what is left. ``storm_p95_s``: the p95
of lesson interactions that ran while jobs were queued or training.

Prints a table, then as its last line one JSON object: ``sessions``, ``workers``,
``cached_p95_s``, ``first_p95_s`` (interactions that were not cached: first visits, or waiting
on one), ``errors``, ``peak_rss_gb`` (every app process, their workers, nginx and the training
worker, RSS summed: shared pages counted once per process), ``peak_pss_gb`` (the same family's
PSS: what the machine holds for it), ``storm_p95_s``, ``jobs_submitted``, ``jobs_finished``,
``jobs_cancelled``, then ``interactions``, ``p50_s``, ``p95_s`` (all interactions),
``p95_cached_s``, ``errors`` (failed interactions and failed timed fragment reruns),
``peak_rss_mb``, then ``max_s``, ``cached_interactions``, ``skipped_steps``,
``auto_reruns`` and ``p95_auto_rerun_s`` (timed fragment reruns, not counted as interactions),
``idle_rss_mb``, ``p95_not_first_s`` (everything but the very first interaction of each step and
target, including those still waiting on it), ``wall_s``, ``server_tracebacks`` (in its log).
The same object, with the commit measured, the machine's load and the arguments, is saved to
``bench/results/classroom-<sessions>x<workers>[-storm].json`` (``--out`` elsewhere).
Bounded: every wait has a timeout and the whole test stops after ``--deadline`` s. Traffic goes
only to 127.0.0.1. Run it with the project's interpreter (``.venv/bin/python``): the app is
started with the same one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.streamlit_client import RunResult, StreamlitTab  # noqa: E402
from core.jobs import queue  # noqa: E402
from ui.proxy import COOKIE, Cluster  # noqa: E402
from ui.serve import free_port, launch, warmed  # noqa: E402

STEPS = ("1 home", "2 switch run", "3 projections", "4 change layer", "5 attributions")
STORM = ("6 open Train tab", "7 press Train")
TRAIN_QUERY = "home_tab=Train+a+model"
AUTO = "(timed fragment reruns)"
SWITCH_TO = ("mlp-digits", "vit-shapes")
LESSON_RUN = "cnn-shapes"
LESSON_QUERY = f"run={LESSON_RUN}"


@dataclass
class Interaction:
    """One measured script run: which step, on what, by whom, when, and how it went."""

    step: str
    target: str
    session: int
    start: float
    result: RunResult

    @property
    def end(self) -> float:
        return self.start + self.result.seconds


class MemorySampler(threading.Thread):
    """Samples the memory of processes and their children every ``period`` s.

    RSS counts a page shared by several processes (the torch libraries, a forked worker's
    inherited memory) once in each; PSS splits it between them, so the family's PSS is what
    the machine holds for it. Both are kept: ``samples`` as (time, RSS bytes), ``pss`` bytes.
    """

    def __init__(self, pids: list[int], period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.processes = [psutil.Process(pid) for pid in pids]
        self.period = period
        self.samples: list[tuple[float, int]] = []
        self.pss: list[int] = []
        self.stopped = threading.Event()

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    def peak_during(self, spans: list[tuple[float, float]]) -> int:
        """The highest RSS sampled while any of ``spans`` (start, end) was in progress."""
        return max(
            (rss for t, rss in self.samples if any(a <= t <= b for a, b in spans)), default=0
        )

    def family(self) -> list[psutil.Process]:
        """The processes and their descendants alive now."""
        found = []
        for process in self.processes:
            try:
                found += [process, *process.children(recursive=True)]
            except psutil.Error:
                continue
        return found

    def rss(self) -> int:
        return self.measure()[0]

    def measure(self) -> tuple[int, int]:
        """The family's summed RSS and PSS, in bytes."""
        rss = pss = 0
        for process in self.family():
            try:
                info = process.memory_full_info()
            except psutil.Error:
                continue
            rss, pss = rss + info.rss, pss + info.pss
        return rss, pss

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self.processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system + times.children_user + times.children_system
        return total

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            rss, pss = self.measure()
            self.samples.append((time.perf_counter(), rss))
            self.pss.append(pss)


def start_server(port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Starts the app as a class would use it and waits for health (log kept for errors)."""
    with log_path.open("wb") as log:
        try:
            return launch(port, env=env, log=log)
        except RuntimeError as err:
            raise RuntimeError(f"{err} Its log:\n{log_path.read_text()[-3000:]}") from err


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(5)


def option_for(box_options: tuple[str, ...], name: str) -> str | None:
    """The formatted option of a run or layer called ``name`` (labels may add details)."""
    return next((o for o in box_options if o == name or o.startswith(f"{name} ")), None)


class Student:
    """One student: opens tabs one after another and goes through the lesson ``--laps`` times."""

    def __init__(
        self, index: int, host_port: str, args: argparse.Namespace, log: list[Interaction]
    ) -> None:
        self.index, self.host_port, self.args, self.log = index, host_port, args, log
        self.rng = random.Random(args.seed * 1000 + index)

    @property
    def in_storm(self) -> bool:
        return self.args.storm and self.index % 2 == 0

    async def attend(self) -> int:
        """Arrives, follows the lesson; returns how many steps were not taken after a failure."""
        arrival = self.args.ramp * self.index / max(self.args.sessions, 1)
        storm = None
        if self.in_storm:
            at = self.args.ramp + self.args.storm_at + self.rng.uniform(0, 10)
            storm = asyncio.create_task(self.press_train(at - arrival))
        await asyncio.sleep(arrival)
        try:
            return await self.lessons()
        finally:
            if storm is not None:
                await storm

    async def press_train(self, delay: float) -> None:
        """In a second tab: opens Home's Train tab, sets a small job and presses Train."""
        await asyncio.sleep(max(0.0, delay))
        async with self.tab() as tab:
            if not await self.step(STORM[0], "", tab.open("", TRAIN_QUERY)):
                return
            try:
                tab.set_number("Epochs", self.args.storm_epochs)
                tab.set_number("Samples (0 = all / default)", self.args.storm_samples)
            except KeyError as err:
                self.missing(STORM[1], str(err), 0)
                return
            if await self.step(STORM[1], "", tab.click("Train")):
                await tab.think(self.args.think * 2)  # watches its place in line a while

    async def lessons(self) -> int:
        for lap in range(self.args.laps):
            skipped = await self.lesson()
            if skipped:
                return skipped + (self.args.laps - lap - 1) * len(STEPS)
        return 0

    async def lesson(self) -> int:
        """The five steps once; returns how many were not taken after a failure."""
        async with self.tab() as tab:
            if not await self.step(STEPS[0], "", tab.open()):
                return 4
            await self.think(tab)
            runs = tab.selectboxes.get("Run")
            if runs is None:
                return self.missing(STEPS[1], "Run", 3)
            wanted = SWITCH_TO[self.index % len(SWITCH_TO)]
            choice = option_for(runs.options, wanted) or next(
                o for o in runs.options if o != runs.value
            )
            if not await self.step(
                STEPS[1], choice.split(" ")[0], tab.set_selectbox("Run", choice)
            ):
                return 3
            await self.think(tab)
        async with self.tab() as tab:
            if not await self.step(STEPS[2], LESSON_RUN, tab.open("projections", LESSON_QUERY)):
                return 2
            await self.think(tab)
            layers = tab.selectboxes.get("Layer")
            if layers is None:
                return self.missing(STEPS[3], "Layer", 1)
            others = [o for o in layers.options if o != layers.value]
            pick = self.index % self.args.layers
            layer = others[round((pick + 1) * (len(others) - 1) / (self.args.layers + 1))]
            if not await self.step(STEPS[3], layer, tab.set_selectbox("Layer", layer)):
                return 1
            await self.think(tab)
        async with self.tab() as tab:
            await self.step(STEPS[4], LESSON_RUN, tab.open("attributions", LESSON_QUERY))
            await self.think(tab)
        return 0

    @contextlib.asynccontextmanager
    async def tab(self) -> AsyncIterator[StreamlitTab]:
        cookie = f"{COOKIE}=student-{self.index}"
        tab = StreamlitTab(self.host_port, self.args.timeout, self.log_auto_rerun, cookie)
        try:
            yield tab
        finally:
            await tab.close()

    async def step(self, name: str, target: str, action: Awaitable[RunResult]) -> bool:
        start = time.perf_counter()
        result = await action
        self.log.append(Interaction(name, target, self.index, start, result))
        return result.ok

    async def think(self, tab: StreamlitTab) -> None:
        await tab.think(self.args.think * self.rng.uniform(0.5, 1.5))

    def log_auto_rerun(self, result: RunResult) -> None:
        start = time.perf_counter() - result.seconds
        self.log.append(Interaction(AUTO, "", self.index, start, result))

    def missing(self, step: str, label: str, skipped: int) -> int:
        """Logs a step that failed because the page did not draw its selectbox."""
        problem = f"the page drew no widget labelled {label!r}"
        self.log.append(
            Interaction(
                step, "", self.index, time.perf_counter(), RunResult(0.0, "exception", [problem])
            )
        )
        return skipped


async def classroom(host_port: str, args: argparse.Namespace) -> tuple[list[Interaction], int]:
    """Runs every student; returns the interactions and the number of steps never taken."""
    log: list[Interaction] = []
    students = [Student(i, host_port, args, log) for i in range(args.sessions)]
    tasks = [asyncio.create_task(student.attend()) for student in students]
    done, pending = await asyncio.wait(tasks, timeout=args.deadline)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    skipped = len(pending) * len(STEPS) * args.laps  # at most: cancelled ones took some steps
    for task in done:
        if task.exception() is not None:
            raise task.exception()
        skipped += task.result()
    return log, skipped


def cached_flags(log: list[Interaction], after_end: bool = True) -> list[bool]:
    """Whether each interaction came after the first one with its step and target.

    "After" means: started once that first one had ended (``after_end``: a cache hit), or
    merely started later (else: it may still be waiting on the first one's computation).
    """
    keys = [(item.step, item.target) for item in log]
    first: dict[tuple[str, str], float] = {}
    for item, key in zip(log, keys, strict=True):
        first[key] = min(first.get(key, float("inf")), item.end if after_end else item.start)
    if after_end:
        return [item.start >= first[key] for item, key in zip(log, keys, strict=True)]
    return [item.start > first[key] for item, key in zip(log, keys, strict=True)]


def percentiles(seconds: list[float]) -> tuple[float, float, float]:
    """p50, p95 and max (NaN where there is nothing to measure)."""
    if not seconds:
        return float("nan"), float("nan"), float("nan")
    p50, p95 = np.percentile(seconds, [50, 95])
    return float(p50), float(p95), max(seconds)


def json_seconds(value: float) -> float | None:
    """Seconds for the JSON line: 3 decimals, ``null`` where nothing was measured."""
    return None if np.isnan(value) else round(value, 3)


def report(
    log: list[Interaction],
    skipped: int,
    memory: MemorySampler,
    idle_rss: int,
    args: argparse.Namespace,
    drained: float | None = None,
    jobs: list[queue.Job] | None = None,
) -> dict:
    """Prints the table and returns the summary (``drained``: when the training queue emptied;
    ``jobs``: the queue's jobs at the end)."""
    cached = cached_flags(log)
    print(
        f"\n{'step':<26}{'n':>4}{'err':>5}{'p50 s':>8}{'p95 s':>8}{'max s':>8}"
        f"{'cached n':>10}{'p50 s':>8}{'p95 s':>8}{'kB/run':>8}{'RSS MB':>8}"
    )
    for name in (*STEPS, *STORM, AUTO):
        rows = [(item, c) for item, c in zip(log, cached, strict=True) if item.step == name]
        if not rows:
            continue
        all_s = [item.result.seconds for item, _ in rows]
        warm = [item.result.seconds for item, c in rows if c]
        errors = sum(not item.result.ok for item, _ in rows)
        kb = np.mean([item.result.bytes for item, _ in rows]) / 1e3
        rss = memory.peak_during([(item.start, item.end) for item, _ in rows]) / 2**20
        p50, p95, top = percentiles(all_s)
        w50, w95, _ = percentiles(warm)
        print(
            f"{name:<26}{len(rows):>4}{errors:>5}{p50:>8.2f}{p95:>8.2f}{top:>8.2f}"
            f"{len(warm):>10}{w50:>8.2f}{w95:>8.2f}{kb:>8.0f}{rss:>8.0f}"
        )
    began = min((item.start for item in log), default=0.0)
    print(
        "cached: started after the first interaction with the same step and target had ended; "
        "RSS MB: the server's peak while the step ran"
    )
    for title, want_cached in (
        ("uncached (first visit, or waiting on it)", False),
        ("cached", True),
    ):
        slowest = sorted(
            (item for item, c in zip(log, cached, strict=True) if c == want_cached),
            key=lambda item: -item.result.seconds,
        )
        print(f"\nslowest {title}:")
        for item in slowest[:6]:
            print(
                f"  {item.result.seconds:7.2f} s  {item.step} {item.target} "
                f"(student {item.session}, at +{item.start - began:.0f} s)"
            )

    problems = Counter(
        f"{item.step}: {item.result.status}: {p[:160]}"
        for item in log
        for p in item.result.problems
    )
    alerts = Counter(f"{item.step}: {a[:160]}" for item in log for a in item.result.alerts)
    for title, counter in (("errors", problems), ("st.error boxes shown", alerts)):
        if counter:
            print(f"\n{title}:")
            for text, count in counter.most_common(10):
                print(f"  {count:>3} × {text}")
    interactions = [item for item in log if item.step != AUTO]
    flags = [c for item, c in zip(log, cached, strict=True) if item.step != AUTO]
    all_s = [item.result.seconds for item in interactions]
    warm_s = [item.result.seconds for item, c in zip(interactions, flags, strict=True) if c]
    later = cached_flags(interactions, after_end=False)
    later_s = [item.result.seconds for item, c in zip(interactions, later, strict=True) if c]
    auto_s = [item.result.seconds for item in log if item.step == AUTO]
    p50, p95, top = percentiles(all_s)
    p95_cached = percentiles(warm_s)[1]
    first_s = [item.result.seconds for item, c in zip(interactions, flags, strict=True) if not c]
    presses = [item.start for item in log if item.step == STORM[1]]
    storm_s = [
        item.result.seconds
        for item in log
        if item.step in STEPS and presses and drained and min(presses) <= item.start <= drained
    ]
    jobs = jobs or []
    states = Counter(job.state for job in jobs)
    summary = {
        "sessions": args.sessions,
        "workers": args.workers,
        "cached_p95_s": json_seconds(p95_cached),
        "first_p95_s": json_seconds(percentiles(first_s)[1]),
        "errors": sum(not item.result.ok for item in log),
        "peak_rss_gb": round(memory.peak / 2**30, 2),
        "peak_pss_gb": round(max(memory.pss, default=0) / 2**30, 2),
        "storm_p95_s": json_seconds(percentiles(storm_s)[1]),
        "jobs_finished": states["done"],
        "jobs_submitted": len(jobs),
        "jobs_cancelled": states["cancelled"],
        "jobs_failed": states["failed"],
        "storm_interactions": len(storm_s),
        "interactions": len(interactions),
        "p50_s": json_seconds(p50),
        "p95_s": json_seconds(p95),
        "peak_rss_mb": round(memory.peak / 2**20),
        "max_s": json_seconds(top),
        "cached_interactions": len(warm_s),
        "skipped_steps": skipped,
        "auto_reruns": len(auto_s),
        "p95_auto_rerun_s": json_seconds(percentiles(auto_s)[1]),
        "idle_rss_mb": round(idle_rss / 2**20),
        "p95_not_first_s": json_seconds(percentiles(later_s)[1]),
    }
    print(
        f"\n{len(interactions)} interactions by {args.sessions} students, "
        f"{summary['errors']} errors, {skipped} steps not taken · p50 {p50:.2f} s, p95 {p95:.2f} s"
        f" (cached p95 {p95_cached:.2f} s over {len(warm_s)}) · server RSS "
        f"{summary['idle_rss_mb']} MB idle, {summary['peak_rss_mb']} MB peak "
        f"(PSS peak {summary['peak_pss_gb']:.2f} GB) · "
        f"{sum(item.result.restarts for item in log)} runs cut short by st.rerun()"
    )
    return summary


def serve(
    args: argparse.Namespace, port: int, runs_root: Path, logs: Path
) -> tuple[list[int], Callable[[], None]]:
    """Starts one app process, or ``--workers`` behind nginx; returns the app processes' pids
    (nginx's last) and how to stop them all."""
    env = {"LAYERSCOPE_RUNS": str(runs_root), "LAYERSCOPE_WORKER_IDLE_S": "60"}
    if args.workers == 1:
        server = start_server(port, env, logs / "server-0.log")
        return [server.pid], lambda: stop_server(server)
    cluster = Cluster(args.workers, port, env=env, log_dir=logs)
    assert cluster.nginx is not None
    return [s.pid for s in cluster.servers] + [cluster.nginx.pid], cluster.stop


def drain_queue(runs_root: Path, wait: float) -> float:
    """Waits up to ``wait`` s for every training job to end, then cancels the rest (and waits
    for that); returns when the last job ended (``perf_counter``)."""
    deadline = time.perf_counter() + wait
    while any(job.active for job in queue.jobs(runs_root)) and time.perf_counter() < deadline:
        time.sleep(1)
    drained = time.perf_counter()
    left = [job for job in queue.jobs(runs_root) if job.active]
    for job in left:
        queue.cancel(job.id, runs_root)
    deadline = time.perf_counter() + 120
    while left and any(job.active for job in queue.jobs(runs_root)):
        if time.perf_counter() > deadline:
            break
        time.sleep(1)
    return drained


def stop_training_worker(runs_root: Path) -> None:
    """Stops the training daemon the app started (it outlives the app by design)."""
    pid_file = queue.queue_dir(runs_root) / "worker.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


def commit() -> str:
    """The commit measured (``+dirty`` when the work tree has uncommitted changes)."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head + ("+dirty" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=30, help="students at once")
    parser.add_argument("--workers", type=int, default=1, help="app processes (>1: behind nginx)")
    parser.add_argument("--ramp", type=float, default=10.0, help="s over which students arrive")
    parser.add_argument("--think", type=float, default=15.0, help="mean pause between steps (s)")
    parser.add_argument("--layers", type=int, default=3, help="distinct layers students pick")
    parser.add_argument("--laps", type=int, default=1, help="times each student does the lesson")
    parser.add_argument("--timeout", type=float, default=120.0, help="s one script run may take")
    parser.add_argument("--deadline", type=float, default=1200.0, help="s the whole test may take")
    parser.add_argument("--storm", action="store_true", help="half the students press Train")
    parser.add_argument("--storm-at", type=float, default=5.0, help="s after the last arrival")
    parser.add_argument("--storm-epochs", type=int, default=2, help="epochs of a storm job")
    parser.add_argument("--storm-samples", type=int, default=1000, help="samples of a storm job")
    parser.add_argument("--storm-wait", type=float, default=900.0, help="s to drain the queue")
    parser.add_argument(
        "--cold", action="store_true", help="students arrive at once, during the warm-up"
    )
    parser.add_argument("--out", type=Path, default=None, help="results file (JSON)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    port = free_port()
    measured = commit()
    with tempfile.TemporaryDirectory(prefix="classroom-") as tmp:
        runs_root = Path(tmp) / "runs"
        runs_root.mkdir()
        started = time.perf_counter()
        pids, stop = serve(args, port, runs_root, Path(tmp))
        try:
            if not args.cold:  # a class arrives at a server started before it
                warm = [warmed(log) for log in sorted(Path(tmp).glob("server-*.log"))]
                print(f"warm-up done in {', '.join(f'{w} s' for w in warm)}", flush=True)
            sampler = MemorySampler(pids)
            idle_rss = sampler.rss()
            sampler.start()
            load = os.getloadavg()[0]
            print(
                f"app up on 127.0.0.1:{port} ({args.workers} process(es)) in "
                f"{time.perf_counter() - started:.1f} s (RSS {idle_rss / 2**20:.0f} MB, machine "
                f"load {load:.1f}); {args.sessions} students arriving over {args.ramp:.0f} s…",
                flush=True,
            )
            began = time.perf_counter()
            log, skipped = asyncio.run(classroom(f"127.0.0.1:{port}", args))
            wall = time.perf_counter() - began
            drained = drain_queue(runs_root, args.storm_wait) if args.storm else None
            per_process = [psutil.Process(pid).memory_info().rss for pid in pids[: args.workers]]
            sampler.stopped.set()
            sampler.join()
            cpu = sampler.cpu_seconds()
            jobs = queue.jobs(runs_root)
        finally:
            stop_training_worker(runs_root)
            stop()
        server_log = "".join(p.read_text(errors="replace") for p in Path(tmp).glob("server-*.log"))
    summary = report(log, skipped, sampler, idle_rss, args, drained, jobs)
    tracebacks = server_log.count("Traceback (most recent call last)")
    print(
        f"wall {wall:.0f} s · server CPU {cpu:.0f} s · this client's CPU "
        f"{time.process_time():.0f} s · machine load "
        f"{os.getloadavg()[0]:.1f} · {tracebacks} traceback(s) in the server logs · RSS of each "
        f"app process (without its fit worker) at the end: "
        f"{', '.join(f'{r / 2**20:.0f} MB' for r in per_process)}"
    )
    if tracebacks:
        start = server_log.index("Traceback (most recent call last)")
        print(server_log[start : start + 2000])
    summary.update(
        wall_s=round(wall, 1),
        server_tracebacks=tracebacks,
        rss_per_process_mb=[round(r / 2**20) for r in per_process],
    )
    storm = "-storm" if args.storm else ""
    out = (
        args.out
        or ROOT / "bench" / "results" / f"classroom-{args.sessions}x{args.workers}{storm}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "commit": measured,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_before": round(load, 2),
        "cpus": os.cpu_count(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        **summary,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved to {out}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
