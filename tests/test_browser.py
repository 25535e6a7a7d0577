"""The real app in headless Chromium: start `streamlit run`, open every page, screenshot each.

Needs Debian's ``chromium`` (``make test`` installs it when root with apt) and the Playwright
Python package (dev extra, which drives the system browser: nothing is downloaded). Without
them the tests skip and say why. Screenshots land in ``tests/artifacts/``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ui.serve import free_port, launch

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
BUSY = "[data-testid='stStatusWidget'], [data-testid='stSpinner']"
PAGES = [  # the first request goes straight to a page, as a shared link would
    ("feature_maps", "cnn-shapes"),
    ("projections", "cnn-shapes"),
    ("attention", "vit-shapes"),
    ("attributions", "cnn-shapes"),
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served app's (empty) user runs root; the shipped runs are visible beside it."""
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, runs_root: Path
) -> Iterator[tuple[str, float]]:
    """The app served on a free localhost port; yields its URL and seconds until healthy."""
    port = free_port()
    env = {
        "LAYERSCOPE_RUNS": str(runs_root),
        "LAYERSCOPE_DATA": str(tmp_path_factory.mktemp("data")),
    }
    started = time.perf_counter()
    process = launch(port, env=env)
    try:
        yield f"http://127.0.0.1:{port}", time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def settle(page: object, timeout: float = 180) -> None:
    """Waits until Streamlit has finished running the script (no status widget for 1.5 s)."""
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
    deadline = time.time() + timeout
    quiet_since = None
    while time.time() < deadline:
        running = page.locator(BUSY).count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 1.5:
            return
        time.sleep(0.25)
    raise AssertionError("the page kept running")


def new_page(browser: object) -> object:
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.set_default_timeout(120_000)
    return page


def open_page(browser: object, url: str, name: str) -> object:
    """Opens ``url``, waits for its first chart and for the script to finish, screenshots it."""
    page = new_page(browser)
    page.goto(url, wait_until="domcontentloaded")
    page.locator(".js-plotly-plot").first.wait_for(timeout=300_000)
    settle(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    assert page.locator("[data-testid='stException']").count() == 0, f"exception on {name}"
    return page


def test_home_shows_default_run(server: tuple[str, float], browser: object) -> None:
    url, startup = server
    started = time.perf_counter()
    page = new_page(browser)
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("Test accuracy").wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    first_content = time.perf_counter() - started
    print(f"server healthy after {startup:.1f} s; home content after {first_content:.1f} s more")
    settle(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=True)
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.get_by_text("cnn-shapes").count() > 0
    metric = page.locator("[data-testid='stMetricValue']").first.inner_text()
    assert float(metric.rstrip("%")) > 95


@pytest.mark.parametrize(("path", "run"), PAGES)
def test_every_page_renders(
    server: tuple[str, float], browser: object, path: str, run: str
) -> None:
    url, _ = server
    page = open_page(browser, f"{url}/{path}?run={run}", path)
    assert page.locator("[data-testid='stSidebar']").count() == 1
    assert f"run={run}" in page.url


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weights torchvision resnet18 for the 6 shapes classes, as a local file."""
    from safetensors.torch import save_file

    from core.models import build_model

    path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
    save_file(build_model("tv:resnet18", (3, 32, 32), 6).state_dict(), str(path))
    return path


def test_bring_your_own_resnet18_then_its_pages(
    server: tuple[str, float], browser: object, resnet_weights: Path
) -> None:
    """Upload weights through the home page, as a user would, then open the model's pages."""
    url, _ = server
    page = new_page(browser)
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("Test accuracy").wait_for()
    page.get_by_role("tab", name="Bring your own").click()
    page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(
        str(resnet_weights)
    )
    page.get_by_text("resnet18.safetensors").wait_for()
    page.get_by_role("button", name="Import").click()
    page.get_by_text("Imported resnet18-shapes").wait_for(timeout=300_000)
    settle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    for path in ("feature_maps", "attributions"):
        shown = open_page(browser, f"{url}/{path}?run=resnet18-shapes", f"{path}-resnet18")
        assert "run=resnet18-shapes" in shown.url


def test_torchvision_vit_attention(
    server: tuple[str, float], browser: object, runs_root: Path, tmp_path: Path
) -> None:
    """A random-weights tv:vit_b_16 from a local file: the attention page draws its heads."""
    from safetensors.torch import save_file

    from core.models import build_model
    from core.runs import import_run

    weights = tmp_path / "vit_b_16.safetensors"
    save_file(build_model("tv:vit_b_16", (3, 32, 32), 6).state_dict(), str(weights))
    name = import_run("tv:vit_b_16", weights, "shapes", n_samples=600, root=runs_root).name
    url, _ = server
    page = open_page(browser, f"{url}/attention?run={name}", "attention-vit_b_16")
    page.get_by_text("12 layers × 12 heads").first.wait_for()
