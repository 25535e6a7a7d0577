"""Helpers for driving the real app in headless Chromium (Playwright over Debian's chromium).

Shared by the page tests (``test_browser.py``) and the journey tests (``test_journeys.py``);
the server and browser fixtures live in ``conftest.py``. Playwright's ``page.url`` can lag
behind Streamlit's ``history.replaceState``, so :func:`location` asks the page itself.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def stop_server(process: subprocess.Popen) -> None:
    """Stops an app server (:func:`ui.serve.stop`) and then whatever it started that is still
    running (its fit worker, left behind when the server is killed after its grace period)."""
    import psutil

    from ui.serve import stop

    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    stop(process)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    for child in psutil.wait_procs(children, timeout=10)[1]:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


BUSY = "[data-testid='stStatusWidget'], [data-testid='stSpinner']"


def settle(page: object, timeout: float = 180) -> None:
    """Waits until Streamlit has finished running the script (no status widget for 1.5 s)."""
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
    deadline = time.time() + timeout
    quiet_since = None
    while time.time() < deadline:
        if page.locator(BUSY).count() > 0:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 1.5:
            return
        time.sleep(0.25)
    raise AssertionError("the page kept running")


def new_page(browser: object) -> object:
    """A fresh browser context (a new session, like another student) and a page in it."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    return page


def shot(page: object, name: str) -> None:
    """A full-page screenshot in ``tests/artifacts/<name>.png``, to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def exceptions(page: object) -> list[str]:
    """The text of every Streamlit exception box on the page."""
    return [e.inner_text() for e in page.locator("[data-testid='stException']").all()]


def open_url(browser: object, url: str, name: str, chart: bool = True) -> object:
    """Opens ``url`` in a fresh context, waits for content and a finished script, screenshots."""
    page = new_page(browser)
    page.goto(url, wait_until="domcontentloaded")
    if chart:
        page.locator(".js-plotly-plot").first.wait_for(timeout=300_000)
    else:  # the script has drawn the sidebar at least
        page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first.wait_for()
    settle(page)
    shot(page, name)
    assert not exceptions(page), f"exception on {name}: {exceptions(page)}"
    return page


def location(page: object) -> tuple[str, dict[str, str]]:
    """The page's current path and query parameters, as the browser's address bar has them."""
    url = urlparse(page.evaluate("location.href"))
    return url.path, {k: v[0] for k, v in parse_qs(url.query).items()}


def location_url(page: object) -> str:
    """The page's current address, as a person would copy it from the address bar."""
    return page.evaluate("location.href")


def go_to(page: object, title: str) -> None:
    """Clicks the sidebar's link to the page titled ``title`` and waits for it to finish."""
    page.get_by_test_id("stSidebar").get_by_role("link", name=title, exact=True).click()
    page.wait_for_timeout(500)
    settle(page)


def select_box(page: object, label: str) -> object:
    """The selectbox widget labelled ``label``."""
    return page.get_by_test_id("stSelectbox").filter(has=page.get_by_text(label, exact=True)).first


def choose(page: object, label: str, option: str) -> None:
    """Picks the option starting with ``option`` in the selectbox labelled ``label``."""
    box = select_box(page, label).get_by_role("combobox")
    box.click()
    box.fill(option)  # filters the list: long lists only render the options in view
    page.get_by_role("option", name=re.compile(f"^{re.escape(option)}")).first.click()
    page.wait_for_timeout(500)
    settle(page)


def chosen(page: object, label: str) -> str:
    """The text the selectbox labelled ``label`` shows."""
    return select_box(page, label).get_by_role("combobox").input_value()
