"""The training queue and its worker daemon: order, limits, names, cancel, and the faults
(a killed training process, a killed daemon, a full disk mid-checkpoint)."""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from core.files import load_state_dict, read_json, state_dict_hash
from core.jobs import daemon, queue
from core.jobs.queue import Job, JobRefused, Limits
from core.models import runs
from core.models.runs import read_run
from core.models.train import TrainConfig

TINY = TrainConfig(model="cnn", dataset="shapes", n_samples=240, epochs=2, batch_size=32, seed=1)
LONG = replace(TINY, epochs=300)


def wait_for(check: Callable[[], object], timeout: float = 120.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout} s")


def job_reaches(job: Job, root: Path, check: Callable[[Job], bool]) -> Job:
    return wait_for(lambda: (j := queue.get(job.id, root)) is not None and check(j) and j)


@pytest.fixture
def worker_root(isolated_runs: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A runs root whose daemon exits soon when idle, and is killed after the test."""
    monkeypatch.setenv("LAYERSCOPE_WORKER_IDLE_S", "5")
    monkeypatch.setenv("LAYERSCOPE_WORKERS", "1")
    yield isolated_runs
    pid_file = queue.queue_dir(isolated_runs) / "worker.pid"
    if pid_file.exists() and daemon.worker_alive(isolated_runs):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_limits_from_file_and_environment(
    isolated_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated_runs / "classroom.toml").write_text("[training]\nmax_queued = 3\nworkers = 2\n")
    monkeypatch.setenv("LAYERSCOPE_MAX_EPOCH_SAMPLES", "5000")
    assert Limits.load(isolated_runs) == Limits(max_queued=3, max_epoch_samples=5000, workers=2)
    monkeypatch.setenv("LAYERSCOPE_MAX_QUEUED", "zero")
    with pytest.raises(ValueError, match="max_queued must be a positive integer"):
        Limits.load(isolated_runs)


def test_refusals_say_why(isolated_runs: Path) -> None:
    limits = Limits(max_queued=2, max_epoch_samples=1000, workers=1)
    with pytest.raises(JobRefused, match=r"5 epochs × 240 samples = 1,200, and the limit is 1,000"):
        queue.submit(replace(TINY, epochs=5), "ann", root=isolated_runs, limits=limits)
    queue.submit(TINY, "ann", root=isolated_runs, limits=limits)
    with pytest.raises(JobRefused, match="already have a training job"):
        queue.submit(TINY, "ann", root=isolated_runs, limits=limits)
    queue.submit(TINY, "bob", root=isolated_runs, limits=limits)
    with pytest.raises(JobRefused, match=r"queue is full \(2 jobs waiting, the limit is 2\)"):
        queue.submit(TINY, "cy", root=isolated_runs, limits=limits)
    assert [j.owner for j in queue.jobs(isolated_runs)] == ["ann", "bob"]


def test_place_and_estimated_start(isolated_runs: Path) -> None:
    a, b, c = (queue.submit(TINY, o, root=isolated_runs) for o in ("a", "b", "c"))
    current = queue.jobs(isolated_runs)
    assert [queue.place(j, current) for j in (a, b, c)] == [1, 2, 3]
    each = TINY.epochs * 240 * queue.SECONDS_PER_SAMPLE_EPOCH
    assert queue.start_estimate(a, current, 1) == 0
    assert queue.start_estimate(c, current, 1) == pytest.approx(2 * each)
    assert queue.start_estimate(c, current, 2) == pytest.approx(each)


def test_two_students_naming_a_run_the_same(worker_root: Path) -> None:
    first = queue.submit(TINY, "ann", name="mine", root=worker_root)
    second = queue.submit(TINY, "bob", name="mine", root=worker_root)
    assert (first.name, first.renamed_from) == ("mine", None)
    assert (second.name, second.renamed_from) == ("mine-2", "mine")
    daemon.ensure_worker(worker_root)
    for job in (first, second):
        done = job_reaches(job, worker_root, lambda j: j.state == "done")
        assert done.message == ("success", f"Trained **{job.name}**: 2 epochs.")
    assert {read_run(worker_root / n).status for n in ("mine", "mine-2")} == {"complete"}


def test_cancel_in_line_and_while_running_keeps_complete_epochs(worker_root: Path) -> None:
    running = queue.submit(LONG, "ann", name="long", root=worker_root)
    waiting = queue.submit(TINY, "bob", name="never", root=worker_root)
    daemon.ensure_worker(worker_root)
    job_reaches(running, worker_root, lambda j: j.latest is not None and j.latest.epoch >= 3)
    queue.cancel(waiting.id, worker_root)
    cancelled = job_reaches(waiting, worker_root, lambda j: j.state == "cancelled")
    assert cancelled.message == ("warning", "Cancelled while waiting in line: nothing was trained.")
    queue.cancel(running.id, worker_root)
    stopped = job_reaches(running, worker_root, lambda j: not j.active)
    level, text = stopped.message
    kept = len(read_run(worker_root / "long").history)
    assert stopped.state == "cancelled" and level == "warning" and kept >= 2
    assert text.startswith(f"Stopped after epoch {kept}; kept {kept} epochs.")
    assert not (worker_root / "never").exists()


def assert_settled(path: Path) -> int:
    """The folder is a stopped run whose run.json names the weights on disk; returns epochs."""
    info = read_run(path)
    assert info.status == "stopped"
    assert info.weights_sha256 == state_dict_hash(load_state_dict(path / "model.safetensors"))
    assert runs.load_run(path.name).info.name == path.name  # loads like any run
    return len(info.history)


def test_killed_training_process_fails_the_job_and_keeps_complete_epochs(
    worker_root: Path,
) -> None:
    job = queue.submit(LONG, "ann", name="victim", root=worker_root)
    daemon.ensure_worker(worker_root)
    running = job_reaches(job, worker_root, lambda j: j.latest is not None and j.latest.epoch >= 3)
    os.kill(running.pid, signal.SIGKILL)
    failed = job_reaches(job, worker_root, lambda j: not j.active)
    kept = assert_settled(worker_root / "victim")
    assert failed.state == "failed" and kept >= 2
    level, text = failed.message
    assert level == "error" and "killed by SIGKILL (perhaps out of memory)" in text
    assert f"Run **victim** keeps its {kept} complete epochs." in text
    after = queue.submit(TINY, "ann", name="after", root=worker_root)  # the queue goes on
    assert job_reaches(after, worker_root, lambda j: j.state == "done")


def test_killed_daemon_is_replaced_and_its_job_settled(worker_root: Path) -> None:
    job = queue.submit(LONG, "ann", name="orphan", root=worker_root)
    daemon.ensure_worker(worker_root)
    job_reaches(job, worker_root, lambda j: j.latest is not None and j.latest.epoch >= 2)
    os.kill(int((queue.queue_dir(worker_root) / "worker.pid").read_text()), signal.SIGKILL)
    failed = job_reaches(job, worker_root, lambda j: not j.active)
    assert failed.state == "failed" and "training worker stopped" in failed.message[1]
    assert assert_settled(worker_root / "orphan") >= 1
    wait_for(lambda: not daemon.worker_alive(worker_root))
    next_job = queue.submit(TINY, "bob", root=worker_root)
    (queue.queue_dir(worker_root) / daemon.SPAWNED).unlink()  # no need to wait out the grace
    assert daemon.ensure_worker(worker_root)
    assert job_reaches(next_job, worker_root, lambda j: j.state == "done")


def test_full_disk_during_a_checkpoint(
    isolated_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = runs.save_state_dict

    def second_epoch_fills_the_disk(path: Path, state: dict) -> Path:
        if Path(path).name.startswith("epoch_002"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return saved(path, state)

    monkeypatch.setattr(runs, "save_state_dict", second_epoch_fills_the_disk)
    job = queue.submit(replace(TINY, epochs=3), "ann", name="full", root=isolated_runs)
    queue.save(job, isolated_runs, state="running", started=time.time())
    daemon.run_job(str(isolated_runs), job.id, 1, 0)  # here, as the daemon's child would
    failed = queue.get(job.id, isolated_runs)
    assert failed.state == "failed"
    assert "No space left on device" in failed.message[1] and "disk is full" in failed.message[1]
    assert "Run **full** keeps its 1 complete epoch." in failed.message[1]
    assert assert_settled(isolated_runs / "full") == 1
    assert not [p for p in (isolated_runs / "full").rglob("*.tmp")]  # no half-written file
    assert read_json(isolated_runs / "full" / "metrics.json")[0]["epoch"] == 1
