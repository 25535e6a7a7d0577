"""The machine's one training worker: takes queued jobs in order and trains each in a child
process, ``Limits.workers`` at a time.

``python -m core.jobs.daemon --root <runs root>``; servers start it with :func:`ensure_worker`
when a job is submitted or followed. One daemon per runs root: it holds an ``flock`` on
``.queue/worker.lock`` while it lives (a second one exits at once), and it exits after
``LAYERSCOPE_WORKER_IDLE_S`` seconds (default 600) with nothing to do.

Each job trains in its own process (:func:`run_job`, at a lower CPU priority than the servers,
so pages stay responsive while jobs train), so a crash or an out-of-memory kill takes
only that job: the daemon marks it failed with what happened and settles its run folder (the
last complete epoch kept as a stopped run, or nothing). A daemon that starts finds jobs left
``running`` by a dead one and settles them the same way. A training process whose daemon died
stops after its current step, keeping its last complete epoch. Cancel: a marker file the
training process checks between steps (:func:`core.jobs.queue.cancel`).

What can go wrong: the disk fills during a checkpoint: the write fails atomically (the previous
checkpoint stays), the job fails with that message, and the run keeps what was complete.
"""

from __future__ import annotations

import argparse
import fcntl
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, TYPE_CHECKING

from core.files import read_json, write_json
from core.jobs import queue
from core.jobs.queue import Job, Limits
from core.models.runs import runs_root

if TYPE_CHECKING:
    from core.models.train import TrainProgress

LOCK = "worker.lock"
SPAWNED = "worker.spawned"
POLL_S = 0.3
PROGRESS_EVERY_S = 0.5
NICE = 10
"""How much lower than the servers' CPU priority training runs (``os.nice``)."""
SPAWN_GRACE_S = 15.0
"""After starting a daemon, servers wait this long for it to take the lock before another."""


def _idle_exit_s() -> float:
    return float(os.environ.get("LAYERSCOPE_WORKER_IDLE_S", "600"))


def _try_lock(path: Path) -> IO[str] | None:
    """The open, ``flock``-ed lock file, or ``None`` when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def worker_alive(root: str | Path | None = None) -> bool:
    """Whether a daemon holds the lock of runs root ``root``."""
    handle = _try_lock(queue.queue_dir(root) / LOCK)
    if handle is None:
        return True
    handle.close()  # closing releases the lock
    return False


def ensure_worker(root: str | Path | None = None) -> bool:
    """Starts the daemon for ``root`` unless one is alive or was just started; True if started.

    Cheap (one ``flock`` try): pages call it whenever a student's job is queued or running, so
    a daemon that died is replaced and its jobs settled.
    """
    root = Path(root or runs_root())
    folder = queue.queue_dir(root)
    spawned = folder / SPAWNED
    if worker_alive(root):
        return False
    if spawned.exists() and time.time() - spawned.stat().st_mtime < SPAWN_GRACE_S:
        return False
    spawned.touch()
    with (folder / "worker.log").open("ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "core.jobs.daemon", "--root", str(root)],
            cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not in the server's process group: outlives a server
        )
    return True


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def settle_run(job: Job, root: Path) -> Path | None:
    """Leaves the run folder of an interrupted ``job`` consistent: a ``stopped`` run of its
    last complete epoch (``run.json`` names the weights on disk), or no folder at all.

    Returns:
        The kept run folder, or ``None``.
    """
    from core.files import load_state_dict, state_dict_hash

    path = root / job.name
    try:
        meta = read_json(path / "run.json")
    except (OSError, ValueError):
        return None
    if meta.get("config") != job.config or meta.get("status") != "training":
        return None  # not this job's folder, or already settled
    try:
        history = read_json(path / "metrics.json")
        weights = load_state_dict(path / "model.safetensors") if history else None
    except (OSError, ValueError):
        history, weights = [], None
    if not history or weights is None:
        shutil.rmtree(path, ignore_errors=True)
        return None
    meta.update(status="stopped", weights_sha256=state_dict_hash(weights))
    write_json(path / "run.json", meta)
    return path


def _fail(job: Job, root: Path, what: str) -> Job:
    """Marks ``job`` failed because ``what``, settling its run folder."""
    run = settle_run(job, root)
    done = len(job.progress["history"]) if job.progress else 0
    if run is not None:
        kept = len(read_json(run / "metrics.json"))
        what += f" Run **{run.name}** keeps its {kept} complete epoch{'s' * (kept != 1)}."
    elif done == 0:
        what += " No epoch had completed: nothing was kept."
    return queue.save(job, root, state="failed", error=what, run=str(run) if run else None,
                      ended=time.time())  # fmt: skip


def describe_exit(code: int | None) -> str:
    """A dead training process's exit, for the student."""
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (perhaps out of memory)" if -code == signal.SIGKILL else ""
        return f"The training process was killed by {name}{hint}."
    return f"The training process ended unexpectedly (exit code {code})."


def run_job(root: str, job_id: str, threads: int, niceness: int = NICE) -> None:
    """Trains job ``job_id`` (in a child process of the daemon, ``niceness`` below the servers'
    priority, ``threads`` torch threads) and records how it ended."""
    import torch

    from core.models.train import train

    os.nice(niceness)  # batch work: the pages' interactions get the CPU first
    torch.set_num_threads(threads)
    job = queue.save(queue.get(job_id, root), root, pid=os.getpid())
    parent = os.getppid()
    last = 0.0

    def report(progress: TrainProgress) -> None:
        nonlocal job, last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S or progress.step == progress.steps_per_epoch:
            last = now
            job = queue.save(job, root, progress=asdict(progress))

    orphaned = lambda: os.getppid() != parent  # noqa: E731
    stop = lambda: queue.cancel_requested(job_id, root) or orphaned()  # noqa: E731
    try:
        path = train(job.train_config, name=job.name, runs_root=root, progress=report,
                     should_stop=stop)  # fmt: skip
    except Exception as err:  # the student sees it; the run folder is settled
        reason = "the disk is full" if isinstance(err, OSError) and err.errno == 28 else ""
        text = f"{type(err).__name__}: {err}" + (f" ({reason})." if reason else "")
        _fail(job, Path(root), text)
        return
    if orphaned():
        state, error = "failed", "The training worker stopped while this job ran."
    else:
        state, error = ("cancelled" if queue.cancel_requested(job_id, root) else "done"), None
    queue.save(job, root, state=state, error=error, run=str(path) if path else None,
               ended=time.time())  # fmt: skip


def serve(root: Path) -> None:
    """The daemon's loop (returns at once when another daemon holds the lock)."""
    handle = _try_lock(queue.queue_dir(root) / LOCK)
    if handle is None:
        return
    (queue.queue_dir(root) / "worker.pid").write_text(str(os.getpid()))
    context = multiprocessing.get_context("spawn")
    children: dict[str, multiprocessing.process.BaseProcess] = {}
    for job in queue.jobs(root):  # left running by a daemon that died
        if job.state == "running" and not _pid_alive(job.pid):
            _fail(job, root, "The training worker stopped while this job ran.")
    idle_since = time.monotonic()
    while True:
        limits = Limits.load(root)
        for job_id, child in list(children.items()):
            if child.is_alive():
                continue
            child.join()
            del children[job_id]
            job = queue.get(job_id, root)
            if job is not None and job.active:
                _fail(job, root, describe_exit(child.exitcode))
        current = queue.jobs(root)
        for job in current:
            if job.state != "queued":
                continue
            if queue.cancel_requested(job.id, root):
                queue.save(job, root, state="cancelled", ended=time.time())
            elif len(children) < limits.workers:
                queue.save(job, root, state="running", started=time.time())
                threads = max(1, ((os.cpu_count() or 2) - 1) // limits.workers)
                child = context.Process(target=run_job, args=(str(root), job.id, threads))
                child.start()
                children[job.id] = child
        if children or any(job.active for job in current):
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > _idle_exit_s():
            return
        time.sleep(POLL_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=None, help="runs root (default: $LAYERSCOPE_RUNS)")
    args = parser.parse_args()
    serve(Path(args.root) if args.root else runs_root())


if __name__ == "__main__":
    main()
