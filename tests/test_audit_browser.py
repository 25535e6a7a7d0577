"""The audit journey in headless Chromium: open /audit on the shortcut run, look at its slices
and concept test, make the report, download report.html and open it offline without a console
error. Screenshots land in ``tests/artifacts/audit-*.png``."""

from __future__ import annotations

import pytest

from browser_support import CHROMIUM, exceptions, new_page, settle, shot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)"),
]


def test_audit_the_shortcut_run_and_open_its_report(
    server: tuple[str, float], browser: object, tmp_path
) -> None:
    url, _ = server
    page = new_page(browser)
    page.goto(f"{url}/audit?run=cnn-shapes-shortcut", wait_until="domcontentloaded")
    page.locator(".js-plotly-plot").first.wait_for(timeout=300_000)
    settle(page, timeout=600)
    shot(page, "audit-slices")
    assert not exceptions(page)
    assert page.get_by_text("independent").count() > 0  # both accuracies
    page.get_by_role("tab", name="Concept test").click()
    settle(page, timeout=600)
    shot(page, "audit-concepts")
    assert page.get_by_text("TCAV score per layer").count() > 0
    page.get_by_role("tab", name="Report").click()
    page.get_by_role("button", name="Make the audit report").click()
    page.get_by_role("button", name="Download report.html").wait_for(timeout=600_000)
    settle(page)
    shot(page, "audit-report-ready")
    assert not exceptions(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download report.html").click()
    report = tmp_path / "report.html"
    download.value.save_as(report)

    offline = browser.new_context(viewport={"width": 1200, "height": 900}, offline=True)
    viewer = offline.new_page()
    errors: list[str] = []
    viewer.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    viewer.on("pageerror", lambda e: errors.append(str(e)))
    viewer.goto(report.as_uri())
    viewer.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    charts = viewer.locator(".js-plotly-plot").count()
    shot(viewer, "audit-report-html")
    assert charts >= 3, charts
    assert not errors, errors
    assert "colour" in viewer.locator("#findings ~ ul").first.inner_text()
    offline.close()
