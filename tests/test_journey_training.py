"""A journey through the Training page in headless Chromium: scrub to a checkpoint, change the
projected layer, open another page at that checkpoint, come back. Screenshots land in
``tests/artifacts/journey-training-*.png``."""

from __future__ import annotations

import pytest

from browser_support import (
    CHROMIUM,
    choose,
    chosen,
    exceptions,
    go_to,
    location,
    open_url,
    settle,
    shot,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)"),
]


def slider_text(page: object, where: str) -> str:
    """The value the checkpoint slider in ``stMain`` or ``stSidebar`` shows."""
    thumb = page.get_by_test_id(where).get_by_role("slider").first
    return thumb.get_attribute("aria-valuetext") or ""


def test_scrub_change_layer_visit_another_page_and_come_back(
    server: tuple[str, float], browser: object
) -> None:
    url, _ = server
    page = open_url(browser, f"{url}/training?run=cnn-shapes", "journey-training-open")
    for key in ("Home", "ArrowRight", "ArrowRight", "ArrowRight"):  # init, 1/8, 1/4, 1/2
        page.get_by_test_id("stMain").get_by_role("slider").first.focus()
        page.keyboard.press(key)
        page.wait_for_timeout(800)
        settle(page)
    assert location(page)[1].get("ckpt") == "0.5"
    assert slider_text(page, "stMain") == slider_text(page, "stSidebar") == "epoch 1/2"
    choose(page, "Layer to project", "block2.pool")
    assert chosen(page, "Layer to project") == "block2.pool"
    shot(page, "journey-training-scrubbed")
    assert not exceptions(page), exceptions(page)

    go_to(page, "Feature maps")
    page.get_by_test_id("stMain").locator(".js-plotly-plot").first.wait_for(timeout=300_000)
    settle(page)
    where, query = location(page)
    assert where == "/feature_maps" and query.get("ckpt") == "0.5", query
    assert slider_text(page, "stSidebar") == "epoch 1/2"
    shot(page, "journey-training-feature-maps-at-ckpt")
    assert not exceptions(page), exceptions(page)

    go_to(page, "Training")
    page.get_by_test_id("stMain").locator(".js-plotly-plot").nth(1).wait_for(timeout=300_000)
    settle(page)
    assert location(page)[1].get("ckpt") == "0.5"
    assert slider_text(page, "stMain") == "epoch 1/2"
    assert chosen(page, "Layer to project") == "block2.pool"
    shot(page, "journey-training-back")
    assert not exceptions(page), exceptions(page)


def test_the_grids_and_galleries_render(server: tuple[str, float], browser: object) -> None:
    url, _ = server
    page = open_url(browser, f"{url}/training?run=cnn-shapes&ckpt=1", "journey-training-ckpt1")
    for view, name in (("Layers × checkpoints", "grids"), ("Samples", "samples")):
        page.get_by_test_id("stMain").get_by_text(view, exact=True).click()
        page.wait_for_timeout(800)
        settle(page)
        page.get_by_test_id("stMain").locator(".js-plotly-plot").nth(1).wait_for()
        shot(page, f"journey-training-{name}")
        assert not exceptions(page), exceptions(page)
    assert location(page)[1].get("ckpt") == "1"
