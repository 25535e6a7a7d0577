"""The features journey in headless Chromium: train a small SAE on the shipped CNN, read its
health panel, open a feature, leave the page and come back, then open the copied link in a
fresh browser. Screenshots land in ``tests/artifacts/journey-features-*.png``."""

from __future__ import annotations

import pytest

from browser_support import (
    CHROMIUM,
    exceptions,
    go_to,
    location,
    location_url,
    open_url,
    settle,
    shot,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)"),
]


def test_train_an_sae_open_a_feature_come_back_and_reload(
    server: tuple[str, float], browser: object
) -> None:
    url, _ = server
    link = f"{url}/features?run=cnn-shapes&fe_train_steps=100"
    page = open_url(browser, link, "journey-features-empty", chart=False)
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("Variance explained").wait_for(timeout=400_000)
    settle(page)
    shot(page, "journey-features-health")
    assert not exceptions(page), exceptions(page)
    assert "fe_sae" in location(page)[1]

    page.get_by_role("tab", name="Feature", exact=True).click()
    settle(page)
    box = page.get_by_label("Feature (0–255)")
    box.fill("5")
    box.press("Enter")
    page.wait_for_timeout(500)
    settle(page)
    page.get_by_text("Top 12 of 1,500 validation images").wait_for()
    shot(page, "journey-features-feature")
    assert not exceptions(page), exceptions(page)
    query = location(page)[1]
    assert query.get("fe_tab") == "Feature" and query.get("fe_feature") == "5", query

    go_to(page, "Home")
    go_to(page, "Features")
    page.get_by_text("Top 12 of 1,500 validation images").wait_for()
    settle(page)
    query = location(page)[1]
    assert query.get("fe_feature") == "5" and query.get("fe_tab") == "Feature", query
    assert page.get_by_label("Feature (0–255)").input_value() == "5"

    again = open_url(browser, location_url(page), "journey-features-reloaded")
    again.get_by_text("Top 12 of 1,500 validation images").wait_for()
    settle(again)
    shot(again, "journey-features-reloaded")
    assert again.get_by_label("Feature (0–255)").input_value() == "5"
    assert not exceptions(again), exceptions(again)
    for text, name in (
        ("Fires together with", "journey-features-feature-lower"),
        ("Multiply the feature's contribution by", "journey-features-steer"),
    ):
        again.get_by_text(text).first.scroll_into_view_if_needed()
        again.wait_for_timeout(500)
        shot(again, name)
    for tab, text in (("Ground truth", "Mean best AUC, features"), ("Feature map", "decoder")):
        again.get_by_role("tab", name=tab, exact=True).click()
        again.get_by_text(text).first.wait_for(timeout=300_000)
        settle(again)
        shot(again, f"journey-features-{tab.lower().replace(' ', '-')}")
        assert not exceptions(again), f"{tab}: {exceptions(again)}"
