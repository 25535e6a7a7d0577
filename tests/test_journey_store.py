"""Journey: a researcher opens an activation store of 60,000 images on the projections page,
sees a density map of every point, box-selects the densest spot and sees the nearest images.

The store is extracted (mlp-digits over 8x8 ``shapes``: quick) and its map fitted before the
browser opens it, as ``python -m core.extract`` and a first visit would leave it. Screenshots:
``tests/artifacts/journey-store-*.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.extract.extract import extract
from core.projections.density import density_map
from core.projections.large import project_store
from ui.figures.projections import category_colours, hex_colour

from browser_support import ARTIFACTS, CHROMIUM, exceptions, open_url, settle

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)"),
]
N = 60_000


@pytest.fixture(scope="module")
def stored_map(served_stores: Path):
    store = extract(
        "mlp-digits", ["relu2"], served_stores / "shapes-60k", data="shapes", n=N, seed=0,
        batch_size=2048, chunk_rows=16_384, progress=lambda *_: None,
    )  # fmt: skip
    result = project_store(store, "relu2", "UMAP")
    colours = [hex_colour(c) for c in category_colours(store.class_names)]
    return density_map(result.coords, store.read("labels"), colours)


def test_open_a_store_see_the_density_map_and_select_through(
    server: tuple[str, float], browser: object, stored_map
) -> None:
    url, _ = server
    page = open_url(
        browser, f"{url}/projections?run=cnn-shapes&proj_view=Store&store=shapes-60k",
        "journey-store-map",
    )  # fmt: skip
    page.get_by_text(f"Density image of all {N:,} points").wait_for()
    assert "fitted on a stratified sample of 5,000 of 60,000 points" in page.content()
    densest = int(np.argmax(stored_map.cell_count))
    cx, cy = stored_map.cell_xy[densest]
    (x0, x1), (y0, y1) = stored_map.x_range, stored_map.y_range
    area = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    px = float(area["x"] + (cx - x0) / (x1 - x0) * area["width"])
    py = float(area["y"] + (y1 - cy) / (y1 - y0) * area["height"])
    page.mouse.move(px - 12, py - 12)  # a small box around the densest cell
    page.mouse.down()
    page.mouse.move(px + 12, py + 12, steps=6)
    page.mouse.up()
    heading = page.get_by_text("Nearest points ·")
    heading.wait_for(timeout=120_000)
    settle(page)
    heading.scroll_into_view_if_needed()
    gallery = page.locator("[data-testid='stMain'] img")
    gallery.nth(7).wait_for()  # the images load from the media endpoint after the script ends
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "journey-store-click.png"))
    assert not exceptions(page), exceptions(page)
    assert gallery.count() >= 8
