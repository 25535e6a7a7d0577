"""Journeys through the token views in headless Chromium: a student opens the attention page on
the shipped ViT, reads where its heads look, how much attention lands on the object and the token
norms, then colours patches by PCA on the feature-maps page, for the ViT and the CNN.
Screenshots land in ``tests/artifacts/journey-tokens-*.png``.
"""

from __future__ import annotations

import re

import pytest

from browser_support import CHROMIUM, choose, exceptions, go_to, location, open_url, settle, shot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)"),
]


def test_attention_opens_on_a_correct_sample_with_object_and_norm_views(
    server: tuple[str, float], browser: object
) -> None:
    url, _ = server
    page = open_url(browser, f"{url}/attention?run=vit-shapes", "journey-tokens-attention")
    caption = page.get_by_text(re.compile(r"sample \d+: \w+, predicted")).first.inner_text()
    truth, predicted = re.search(r"sample \d+: (\w+), predicted (\w+)", caption).groups()
    assert truth == predicted, caption  # the page opens on a correctly classified sample
    page.get_by_text("Attention on the object, layer by layer").scroll_into_view_if_needed()
    page.get_by_text("of its CLS attention on it").wait_for()
    page.get_by_text("Token norms and high-norm outliers").scroll_into_view_if_needed()
    settle(page)
    shot(page, "journey-tokens-attention-full")
    assert not exceptions(page), exceptions(page)
    sample = location(page)[1]["sample"]
    go_to(page, "Feature maps")
    assert location(page)[1]["sample"] == sample  # the same sample on every page
    page.get_by_role("tab", name="PCA as colour").click()
    settle(page)
    choose(page, "Layer", "blocks.3")
    page.get_by_text(re.compile(r"^blocks\.3: one PCA fitted")).wait_for()
    settle(page)
    shot(page, "journey-tokens-pca-vit")
    assert not exceptions(page), exceptions(page)
    assert location(page)[1].get("fm_tab") == "PCA as colour"
    choose(page, "Run", "cnn-shapes")
    page.get_by_text(re.compile(r"^block1\.conv1: one PCA fitted")).wait_for()
    settle(page)
    shot(page, "journey-tokens-pca-cnn")
    assert not exceptions(page), exceptions(page)
