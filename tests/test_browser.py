"""The real app in headless Chromium: start `streamlit run`, open every page, screenshot each.

Needs Debian's ``chromium`` (``make test`` installs it when root with apt) and the Playwright
Python package (dev extra, which drives the system browser: nothing is downloaded). Without
them the tests skip and say why. Screenshots land in ``tests/artifacts/``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from browser_support import ARTIFACTS, CHROMIUM, new_page, open_url, settle, stop_server

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
    page = open_url(browser, f"{url}/{path}?run={run}", path)
    assert page.locator("[data-testid='stSidebar']").count() == 1
    assert f"run={run}" in page.url


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weights torchvision resnet18 for the 6 shapes classes, as a local file."""
    from safetensors.torch import save_file

    from core.models.zoo import build_model

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
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Weights file")
    uploader.locator("input[type=file]").set_input_files(str(resnet_weights))
    page.get_by_text("resnet18.safetensors").wait_for(state="attached")
    page.get_by_role("button", name="Import").click()
    page.get_by_text("Imported resnet18-shapes").wait_for(timeout=300_000)
    settle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    for path in ("feature_maps", "attributions"):
        shown = open_url(browser, f"{url}/{path}?run=resnet18-shapes", f"{path}-resnet18")
        assert "run=resnet18-shapes" in shown.url


def test_torchvision_vit_attention(
    server: tuple[str, float], browser: object, served_runs: Path, tmp_path: Path
) -> None:
    """A random-weights tv:vit_b_16 from a local file: the attention page draws its heads."""
    from safetensors.torch import save_file

    from core.models.runs import import_run
    from core.models.zoo import build_model

    weights = tmp_path / "vit_b_16.safetensors"
    save_file(build_model("tv:vit_b_16", (3, 32, 32), 6).state_dict(), str(weights))
    name = import_run("tv:vit_b_16", weights, "shapes", n_samples=600, root=served_runs).name
    url, _ = server
    page = open_url(browser, f"{url}/attention?run={name}", "attention-vit_b_16")
    page.get_by_text("12 layers × 12 heads").first.wait_for()


def test_plain_streamlit_run_serves_a_deep_link_first(tmp_path: Path, browser: object) -> None:
    """`streamlit run app.py` on a fresh server: the first visitor opens /feature_maps directly
    and gets the app (its sidebar and page links), not Streamlit's legacy page list."""
    from ui.serve import free_port, launch

    port = free_port()
    env = {"LAYERSCOPE_RUNS": str(tmp_path / "runs"), "LAYERSCOPE_DATA": str(tmp_path / "data")}
    process = launch(port, env=env, plain=True)
    try:
        url = f"http://127.0.0.1:{port}/feature_maps?run=cnn-shapes&fm_channel=3"
        page = open_url(browser, url, "plain-streamlit-deep-link")
        sidebar = page.get_by_test_id("stSidebar")
        assert sidebar.get_by_text("layerscope").count() == 1
        assert sidebar.get_by_role("link", name="Attributions", exact=True).count() == 1
        assert page.get_by_test_id("stSidebarNav").count() == 0  # no legacy page list
        assert page.get_by_role("heading", name="Feature maps").count() == 1
        assert page.get_by_label("Channel (0–15)").input_value() == "3"
    finally:
        stop_server(process)
