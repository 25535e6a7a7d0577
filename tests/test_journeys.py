"""Journeys through the real app in headless Chromium: the flows people follow across pages.

Each test is a person: picks a run on Home and visits every page through the sidebar, comes
back to a page, repeats a cached action, opens the same computation as a second student,
changes the run on a page whose widgets depend on it, or opens a copied link in a fresh
browser. Screenshots land in ``tests/artifacts/journey-*.png``.
"""

from __future__ import annotations

import pytest

from browser_support import (
    CHROMIUM,
    choose,
    chosen,
    exceptions,
    go_to,
    location,
    location_url,
    new_page,
    open_url,
    settle,
    shot,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)"),
]

PAGE_PATHS = {
    "Feature maps": "/feature_maps",
    "Projections": "/projections",
    "Attention": "/attention",
    "Attributions": "/attributions",
    "Home": "/",
}


def test_the_chosen_run_holds_on_every_page(server: tuple[str, float], browser: object) -> None:
    """Pick vit-shapes on Home, then visit every page by the sidebar's links, and back."""
    url, _ = server
    page = new_page(browser)
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("Test accuracy").wait_for()
    settle(page)
    choose(page, "Run", "vit-shapes")
    assert location(page)[1]["run"] == "vit-shapes"
    for title, path in PAGE_PATHS.items():
        go_to(page, title)
        where, query = location(page)
        shot(page, f"journey-run-{path.strip('/') or 'home'}")
        assert where == path, title
        assert query.get("run") == "vit-shapes", f"{title}: {query}"
        assert chosen(page, "Run").startswith("vit-shapes"), title
        assert "has no attention layers" not in page.content(), title
        assert not exceptions(page), f"{title}: {exceptions(page)}"
        links = page.get_by_test_id("stSidebar").get_by_role("link").all()
        assert all("run=vit-shapes" in (a.get_attribute("href") or "") for a in links)


def test_returning_to_feature_maps_keeps_its_view(
    server: tuple[str, float], browser: object
) -> None:
    url, _ = server
    page = open_url(browser, f"{url}/feature_maps?run=cnn-shapes&fm_channel=5", "journey-fm")
    for title in ("Home", "Feature maps", "Projections", "Feature maps"):
        go_to(page, title)
        assert not exceptions(page), f"{title}: {exceptions(page)}"
    assert location(page)[1].get("fm_channel") == "5"
    assert page.get_by_label("Channel (0–15)").input_value() == "5"


def synthesise(page: object) -> None:
    page.get_by_role("button", name="Synthesise an input").click()
    page.get_by_text("Activation of the result").wait_for(timeout=300_000)
    settle(page)


def test_feature_visualisation_repeats_and_is_shared(
    server: tuple[str, float], browser: object
) -> None:
    """The same user clicks twice; a second student asks for the same channel."""
    url, _ = server
    link = f"{url}/feature_maps?run=cnn-shapes&fm_vis_steps=32"
    first = open_url(browser, link, "journey-fvis")
    first.get_by_role("tab", name="Feature visualisation").click()
    settle(first)
    synthesise(first)
    synthesise(first)
    assert not exceptions(first), exceptions(first)
    second = open_url(browser, link, "journey-fvis-second")
    second.get_by_role("tab", name="Feature visualisation").click()
    settle(second)
    synthesise(second)
    shot(second, "journey-fvis-second")
    assert not exceptions(second), exceptions(second)


def test_changing_the_run_resets_what_depends_on_it(
    server: tuple[str, float], browser: object
) -> None:
    url, _ = server
    page = open_url(browser, f"{url}/attributions?run=cnn-shapes", "journey-attr-cnn")
    choose(page, "Class to explain", "circle")
    choose(page, "Run", "mlp-digits")
    shot(page, "journey-attr-digits")
    assert not exceptions(page), exceptions(page)
    assert chosen(page, "Class to explain") == "the predicted class"
    assert "attr_target" not in location(page)[1]
    assert location(page)[1]["run"] == "mlp-digits"


def test_an_own_image_is_used_on_every_page(
    server: tuple[str, float], browser: object, tmp_path: object
) -> None:
    """Upload a picture in the sidebar; every page then explains it, and a link keeps it."""
    from PIL import Image, ImageDraw

    picture = tmp_path / "my-star.png"
    image = Image.new("RGB", (64, 64), (40, 40, 40))
    ImageDraw.Draw(image).regular_polygon((32, 32, 22), 5, fill=(230, 60, 60))
    image.save(picture)
    url, _ = server
    page = open_url(browser, f"{url}/feature_maps?run=cnn-shapes", "journey-own-before")
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Use your own image").click()
    sidebar.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(picture))
    sidebar.get_by_text("is in use on every page").wait_for()
    settle(page)
    image_id = location(page)[1]["image"]
    for title in ("Attributions", "Feature maps", "Home", "Attributions"):
        go_to(page, title)
        assert location(page)[1].get("image") == image_id, title
        assert sidebar.get_by_text("is in use on every page").count() == 1, title
        assert not exceptions(page), f"{title}: {exceptions(page)}"
    assert page.get_by_text("your uploaded image").count() >= 1
    assert page.get_by_text("its class unknown").count() == 1
    shot(page, "journey-own-attributions")
    shared = open_url(browser, location_url(page), "journey-own-shared")
    assert shared.get_by_test_id("stSidebar").get_by_text("is in use on every page").count() == 1
    shared.get_by_role("button", name="Back to the validation sample").click()
    settle(shared)
    assert "image" not in location(shared)[1]
    assert shared.get_by_text("your uploaded image").count() == 0


def selected_tab(page: object) -> str:
    return page.get_by_role("tab", selected=True).first.inner_text()


@pytest.mark.parametrize(
    ("path", "choices", "tab"),
    [
        ("feature_maps?run=cnn-shapes", {"Layer": "block2.relu2"}, "Top examples"),
        ("projections?run=cnn-shapes", {"Colour by": "colour", "Layer": "block2.relu2"}, None),
        (
            "attention?run=vit-shapes",
            {"Query token": "patch (row 1, col 2)", "Head": "head 2"},
            None,
        ),
        ("attributions?run=cnn-shapes&sample=7", {"Class to explain": "star"}, "Sanity check"),
        ("?run=mlp-digits&sample=3", {}, "Train a model"),
    ],
)
def test_a_copied_link_reopens_the_same_view(
    server: tuple[str, float], browser: object, path: str, choices: dict, tab: str | None
) -> None:
    """Set non-default values, copy the address, open it in a fresh browser: the same view."""
    url, _ = server
    name = path.split("?")[0] or "home"
    page = open_url(browser, f"{url}/{path}", f"journey-link-{name}")
    for label, option in choices.items():
        choose(page, label, option)
    if tab:
        page.get_by_role("tab", name=tab).click()
        settle(page)
    link = location_url(page)
    fresh = open_url(browser, link, f"journey-link-{name}-reopened", chart=False)
    for label, option in choices.items():
        assert chosen(fresh, label) == option, (label, link)
    if tab:
        assert selected_tab(fresh) == tab
    assert location(fresh) == location(page)
