"""Journey in headless Chromium: a student trains through the queue, reloads the page and finds
the job still going, stops it and lands on the run that kept its complete epochs.
Screenshots land in ``tests/artifacts/journey-queue-*.png``."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.jobs import daemon, queue

from browser_support import CHROMIUM, chosen, exceptions, new_page, settle, shot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)"),
]


@pytest.fixture
def served_queue(served_runs: Path) -> Iterator[Path]:
    """The served app's runs root; the training daemon its test started is stopped after."""
    yield served_runs
    pid = queue.queue_dir(served_runs) / "worker.pid"
    if pid.exists() and daemon.worker_alive(served_runs):
        os.kill(int(pid.read_text()), signal.SIGTERM)


def test_train_reload_and_stop(
    server: tuple[str, float], browser: object, served_queue: Path
) -> None:
    url, _ = server
    page = new_page(browser)
    page.goto(f"{url}/?home_tab=Train+a+model", wait_until="domcontentloaded")
    page.get_by_label("Epochs").wait_for()
    settle(page)
    form = page.get_by_test_id("stForm").filter(has=page.get_by_label("Epochs"))
    form.get_by_label("Epochs").fill("40")
    form.get_by_label("Samples (0 = all / default)").fill("1000")
    form.get_by_label("Run name (optional)").fill("journey-queue")
    form.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("Epoch 2/40").first.wait_for(timeout=300_000)  # in line, then training
    shot(page, "journey-queue-training")
    assert "job=" in page.evaluate("location.href")
    assert page.get_by_role("button", name="Train", exact=True).is_disabled()

    page.reload(wait_until="domcontentloaded")  # the job outlives the session
    page.get_by_text("Stop (keep the last complete epoch)").wait_for(timeout=120_000)
    page.get_by_text("Your job journey-queue is running").wait_for()
    shot(page, "journey-queue-reloaded")
    page.get_by_role("button", name="Stop (keep the last complete epoch)").click()
    page.get_by_text("Stopped after epoch").wait_for(timeout=120_000)
    settle(page)
    shot(page, "journey-queue-stopped")
    assert chosen(page, "Run").startswith("journey-queue")  # the kept run is selected
    assert not exceptions(page)
    job = queue.jobs(served_queue)[-1]
    assert job.state == "cancelled" and job.name == "journey-queue"
