"""The training queue: jobs as JSON files under ``<runs root>/.queue/jobs``, first in, first out.

Why files: a classroom is served by several server processes (``make run WORKERS=N``); a job
submitted through one must be seen, followed and cancelled through any other, and must outlive
the process and the browser session that submitted it. Each job is one file written atomically
(:func:`core.files.write_json`) and named by its submission time, so sorted names are the
queue's order. After submission only the worker daemon and the training process it starts
write a job's file; a cancel is a separate marker file, so two writers never race on one file.

Limits (queued jobs, epochs × samples, training processes at once) come from
``classroom.toml`` in the runs root or from environment variables (:meth:`Limits.load`): a
teacher raises them there.

What can go wrong: a job is refused (a limit, a second job for the same student) with
:class:`JobRefused` and a message for the student; a run name that another run or an active
job already holds is made unique at submission (:attr:`Job.renamed_from` says so); an
unreadable job file is skipped, never fatal.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import secrets
import statistics
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from core.files import write_bytes, write_json
from core.models.runs import RunError, runs_root, unique_name
from core.models.train import QUICK_RUN_SECONDS, TrainConfig, TrainOutcome, TrainProgress

QUEUE_DIR = ".queue"
ACTIVE = ("queued", "running")
"""States of a job that has not ended; it then becomes ``done``, ``failed`` or ``cancelled``."""
DEFAULT_SAMPLES = {"shapes": 10_000, "digits": 1_797, "fashion-mnist": 70_000}
"""Samples a dataset gives when ``n_samples`` is ``None`` (see :func:`core.data.load_dataset`)."""
SECONDS_PER_SAMPLE_EPOCH = QUICK_RUN_SECONDS / (TrainConfig().epochs * DEFAULT_SAMPLES["shapes"])
"""Training time per sample and epoch before any job has finished here (the default run's)."""
CONFIG_FILE = "classroom.toml"


def _default_workers() -> int:
    return max(1, (os.cpu_count() or 2) // 4)


@dataclass(frozen=True)
class Limits:
    """What the queue accepts; ``[training]`` in ``<runs root>/classroom.toml`` or
    ``LAYERSCOPE_<FIELD>`` environment variables (e.g. ``LAYERSCOPE_MAX_QUEUED=60``) raise them.

    Attributes:
        max_queued: jobs waiting at once (running ones not counted).
        max_epoch_samples: epochs × samples of one job (default: 20 epochs of 10,000 shapes).
        workers: training processes at once (default: a quarter of the cores, at least 1).
    """

    max_queued: int = 30
    max_epoch_samples: int = 200_000
    workers: int = field(default_factory=_default_workers)

    @classmethod
    def load(cls, root: str | Path | None = None) -> Limits:
        """The limits for runs root ``root``: defaults, then the file, then the environment.

        Raises:
            ValueError: a value that is not a positive integer (the message names it).
        """
        values: dict[str, Any] = {}
        path = Path(root or runs_root()) / CONFIG_FILE
        if path.is_file():
            values.update(tomllib.loads(path.read_text()).get("training", {}))
        for f in fields(cls):
            if env := os.environ.get(f"LAYERSCOPE_{f.name.upper()}"):
                values[f.name] = env
        chosen = {}
        for f in fields(cls):
            if f.name in values:
                try:
                    chosen[f.name] = int(values[f.name])
                except ValueError:
                    chosen[f.name] = 0
                if chosen[f.name] < 1:
                    raise ValueError(f"{f.name} must be a positive integer, not {values[f.name]!r}")
        return cls(**chosen)


class JobRefused(ValueError):
    """A job the queue does not take; the message says why and what to do."""


@dataclass(frozen=True)
class Job:
    """One training job as its file holds it.

    Attributes:
        id: ``<submission time in ns>-<random>``: sorting ids is the queue's order.
        owner: the student (browser) who submitted it.
        config: the :class:`TrainConfig` as a dict.
        name: the run's name, unique when submitted.
        submitted: submission time (epoch seconds).
        state: ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``.
        renamed_from: the name asked for, when another run or job held it.
        started: when training began.
        ended: when the job ended.
        progress: the last :class:`TrainProgress` as a dict.
        run: the run folder, once training ended with one (``None``: nothing kept).
        error: why it failed.
        pid: the training process.
    """

    id: str
    owner: str
    config: dict[str, Any]
    name: str
    submitted: float
    state: str = "queued"
    renamed_from: str | None = None
    started: float | None = None
    ended: float | None = None
    progress: dict[str, Any] | None = None
    run: str | None = None
    error: str | None = None
    pid: int | None = None

    @property
    def active(self) -> bool:
        """Queued or running."""
        return self.state in ACTIVE

    @property
    def train_config(self) -> TrainConfig:
        """What to train."""
        return TrainConfig(**self.config)

    @property
    def latest(self) -> TrainProgress | None:
        """The last progress report (``None`` before the first step)."""
        if self.progress is None:
            return None
        p = dict(self.progress)
        p["step_losses"] = tuple(tuple(point) for point in p["step_losses"])
        return TrainProgress(**p)

    @property
    def size(self) -> int:
        """Epochs × samples: what the limit and the time estimate count."""
        return self.train_config.epochs * samples_of(self.train_config)

    @property
    def outcome(self) -> TrainOutcome | None:
        """How the job ended (``None`` while queued or running)."""
        if self.active:
            return None
        epochs = self.train_config.epochs
        run = Path(self.run) if self.run else None
        try:
            outcome = TrainOutcome.of(run, epochs)
        except RunError:  # the run was deleted since
            outcome = TrainOutcome(None, 0, epochs, True)
        if self.state == "failed":
            return replace(outcome, error=self.error or "unknown error")
        return outcome

    @property
    def message(self) -> tuple[str, str]:
        """``(level, text)`` for the student once the job ended: ``success``, ``warning`` or
        ``error``, and what happened."""
        if self.state == "cancelled" and self.started is None:
            return "warning", "Cancelled while waiting in line: nothing was trained."
        outcome = self.outcome
        assert outcome is not None, "only an ended job has a message"
        return outcome.level, outcome.message


def samples_of(config: TrainConfig) -> int:
    """The samples ``config`` trains on (its dataset's default when ``n_samples`` is unset)."""
    return config.n_samples or DEFAULT_SAMPLES.get(config.dataset, max(DEFAULT_SAMPLES.values()))


def queue_dir(root: str | Path | None = None) -> Path:
    """Where the jobs of runs root ``root`` (default :func:`runs_root`) live."""
    return Path(root or runs_root()) / QUEUE_DIR


def _path(root: str | Path | None, job_id: str, suffix: str = ".json") -> Path:
    return queue_dir(root) / "jobs" / f"{job_id}{suffix}"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``path`` (created if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_job(path: Path) -> Job | None:
    """The job in ``path`` (``None``: missing, or a file being replaced or damaged)."""
    try:
        return Job(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def jobs(root: str | Path | None = None) -> list[Job]:
    """Every readable job, oldest first."""
    folder = queue_dir(root) / "jobs"
    found = (read_job(p) for p in sorted(folder.glob("*.json"))) if folder.is_dir() else ()
    return [job for job in found if job is not None]


def get(job_id: str, root: str | Path | None = None) -> Job | None:
    """The job ``job_id`` (``None``: no such job)."""
    return read_job(_path(root, job_id))


def save(job: Job, root: str | Path | None = None, **changes: Any) -> Job:
    """Writes ``job`` with ``changes`` (atomically) and returns it as written."""
    job = replace(job, **changes)
    write_json(_path(root, job.id), asdict(job))
    return job


def submit(
    config: TrainConfig,
    owner: str,
    name: str | None = None,
    root: str | Path | None = None,
    limits: Limits | None = None,
) -> Job:
    """Puts a job at the end of the queue and returns it.

    Raises:
        JobRefused: ``owner`` has a job queued or running, the queue is full, or the job is
            larger than the limit.
    """
    root = Path(root or runs_root())
    limits = limits or Limits.load(root)
    samples = samples_of(config)
    if config.epochs * samples > limits.max_epoch_samples:
        raise JobRefused(
            f"This run is too large for the class queue: {config.epochs} epochs × {samples:,} "
            f"samples = {config.epochs * samples:,}, and the limit is "
            f"{limits.max_epoch_samples:,}. Use fewer epochs or samples (a teacher can raise "
            f"`max_epoch_samples` in {CONFIG_FILE})."
        )
    with file_lock(queue_dir(root) / "submit.lock"):
        current = jobs(root)
        if any(job.owner == owner and job.active for job in current):
            raise JobRefused(
                "You already have a training job in the queue or running: one at a time. "
                "Cancel it below to submit another."
            )
        waiting = sum(job.state == "queued" for job in current)
        if waiting >= limits.max_queued:
            raise JobRefused(
                f"The training queue is full ({waiting} jobs waiting, the limit is "
                f"{limits.max_queued}). Try again when some have finished (a teacher can raise "
                f"`max_queued` in {CONFIG_FILE})."
            )
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = name or f"{config.model}-{config.dataset}-{stamp}"
        held = {job.name for job in current if job.active}
        resolved, i = unique_name(base, root), 2
        while resolved in held:
            resolved, i = unique_name(f"{base}-{i}", root), i + 1
        job = Job(
            id=f"{time.time_ns():020d}-{secrets.token_hex(3)}",
            owner=owner,
            config=asdict(config),
            name=resolved,
            submitted=time.time(),
            renamed_from=name if name and resolved != name else None,
        )
        return save(job, root)


def cancel(job_id: str, root: str | Path | None = None) -> None:
    """Asks for ``job_id`` to end: removed from the queue, or stopped after the current step
    (the run keeps its last complete epoch). The worker acts on it within a second."""
    write_bytes(_path(root, job_id, ".cancel"), b"")


def cancel_requested(job_id: str, root: str | Path | None = None) -> bool:
    """Whether :func:`cancel` was called for ``job_id``."""
    return _path(root, job_id, ".cancel").exists()


def acknowledge(job_id: str, root: str | Path | None = None) -> None:
    """Marks an ended job's outcome as shown to its student (not shown again)."""
    write_bytes(_path(root, job_id, ".seen"), b"")


def current_job(owner: str, root: str | Path | None = None) -> Job | None:
    """``owner``'s job that is queued or running, else their last ended one not yet shown."""
    mine = [job for job in jobs(root) if job.owner == owner]
    active = [job for job in mine if job.active]
    if active:
        return active[-1]
    if mine and not _path(root, mine[-1].id, ".seen").exists():
        return mine[-1]
    return None


def seconds_per_unit(current: list[Job]) -> float:
    """Training seconds per sample-epoch: the median of the last finished jobs, or a default."""
    rates = [
        (job.ended - job.started) / job.size
        for job in current
        if job.state == "done" and job.started and job.ended
    ][-5:]
    return statistics.median(rates) if rates else SECONDS_PER_SAMPLE_EPOCH


def place(job: Job, current: list[Job]) -> int:
    """1-based place of a queued job in line (1: next to start)."""
    return 1 + sum(other.state == "queued" and other.id < job.id for other in current)


def start_estimate(job: Job, current: list[Job], workers: int) -> float:
    """Seconds until a queued job should start: the running jobs' time left and the queued
    jobs ahead of it, shared among ``workers`` training processes, first in first out."""
    rate = seconds_per_unit(current)
    free = [_left(other, rate) for other in current if other.state == "running"]
    free += [0.0] * max(0, workers - len(free))
    for other in current:
        if other.state == "queued" and other.id < job.id:
            soonest = free.pop(free.index(min(free)))
            free.append(soonest + other.size * rate)
    return min(free)


def _left(job: Job, rate: float) -> float:
    latest = job.latest
    if latest is not None and latest.eta_seconds is not None:
        return latest.eta_seconds
    return max(0.0, job.size * rate - (time.time() - (job.started or time.time())))
