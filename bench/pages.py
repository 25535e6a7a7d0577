"""Page interaction latency: server time per rerun (AppTest), and as seen in a real browser.

For each page on the shipped runs: the first render (loads the run, computes), then reruns
after changing the sample in the sidebar (cached activations), whose median is the figure that
matters (target <= 0.2 s for feature maps, <= 1 s everywhere). A bare rerun of an empty
Streamlit script is the baseline. Where Chromium and Playwright are available, the same sample
steps are timed in headless Chromium against the real server, from the click until the script
has finished and the page is still. The last line is one JSON object of the figures.

    python bench/pages.py [--reruns 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from ui.serve import free_port, launch

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ("home", "pages/home.py", "cnn-shapes"),
    ("feature_maps", "pages/feature_maps.py", "cnn-shapes"),
    ("projections", "pages/projections.py", "cnn-shapes"),
    ("attention", "pages/attention.py", "vit-shapes"),
    ("attributions", "pages/attributions.py", "cnn-shapes"),
]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def browser_latency(steps: int) -> dict[str, float]:
    """Median seconds from a sample-step click to a settled page, per page, in Chromium."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {}
    if chromium is None:
        return {}
    port = free_port()
    server = launch(port)
    figures: dict[str, float] = {}
    state = "document.querySelector('[data-testid=stApp]')?.dataset.testScriptState"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(300_000)
            step_up = "[data-testid='stSidebar'] [data-testid='stNumberInputStepUp']"
            for name, _, run in PAGES:
                url_path = "" if name == "home" else name
                page.goto(f"http://127.0.0.1:{port}/{url_path}?run={run}")
                page.locator(".js-plotly-plot").first.wait_for()
                page.wait_for_function(f"{state} === 'notRunning'")
                times = []
                for _ in range(steps):
                    start = time.perf_counter()
                    page.locator(step_up).click()
                    with contextlib.suppress(PlaywrightTimeout):  # may finish before we look
                        page.wait_for_function(f"{state} !== 'notRunning'", timeout=2_000)
                    page.wait_for_function(f"{state} === 'notRunning'", polling=10)
                    times.append(time.perf_counter() - start)
                figures[f"{name}_browser_ms"] = round(statistics.median(times) * 1e3, 1)
                print(
                    f"{name:<14} in Chromium, sample step: {figures[f'{name}_browser_ms']:.0f} ms"
                )
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reruns", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.py"
        empty.write_text("import streamlit as st\nst.write('hi')\n")
        bare = AppTest.from_file(str(empty)).run()
        baseline = statistics.median(timed(bare.run) for _ in range(args.reruns))
    figures: dict[str, float] = {"bare_rerun_ms": round(baseline * 1e3, 1)}
    print(f"{'page':<14} {'first s':>8} {'rerun ms (median)':>18} {'errors':>7}")
    for name, path, run in PAGES:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        at.query_params["run"] = run
        at.run()
        first = timed(lambda at=at, path=path: at.switch_page(path).run())
        reruns = []
        for i in range(1, args.reruns + 1):
            at.number_input(key="sample").set_value(i)
            reruns.append(timed(at.run))
        median = statistics.median(reruns)
        errors = len(at.exception)
        figures.update(
            {f"{name}_first_s": round(first, 2), f"{name}_rerun_ms": round(median * 1e3, 1)}
        )
        figures[f"{name}_errors"] = errors
        print(f"{name:<14} {first:>8.2f} {median * 1e3:>18.1f} {errors:>7}")
    figures.update(browser_latency(args.reruns))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
