"""AppTest of the audit page: the shortcut run's two accuracies, slices, a concept test, the
report button and its downloads; a run without factors."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGE = "pages/audit.py"


def _open(run: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=600)
    at.query_params["run"] = run
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def _charts(at: AppTest, key: str) -> list:
    return [c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id]


def test_the_shortcut_run_shows_slices_a_concept_test_and_makes_the_report(monkeypatch) -> None:
    import core.audit.html
    from core.audit.report import AuditSettings, build_audit

    small = AuditSettings(attribution_samples=(0,), faithfulness_n=8, faithfulness_chunk=8)
    monkeypatch.setattr(  # the button's report, made smaller (test_audit.py checks the rest)
        core.audit.html, "build_audit", lambda name, settings=None, **kw: build_audit(
            name, small, **kw)
    )  # fmt: skip
    at = _open("cnn-shapes-shortcut")
    assert at.title[0].value == "Audit"
    boxes = [w.value for w in (*at.warning, *at.info)]
    assert any("aligned" in text and "independent" in text for text in boxes), boxes
    assert _charts(at, "aud_slice_chart") and _charts(at, "aud_tcav")
    slices = at.dataframe[0].value
    assert list(slices["accuracy"]) == sorted(slices["accuracy"])  # worst first
    assert {"colour=red", "class=circle"} <= set(slices["slice"])
    tcav = at.dataframe[1].value
    assert set(tcav["verdict"]) <= {"significant", "not significant"}
    at.selectbox(key="aud_value").set_value(3).run()  # colour=green
    assert not at.exception
    at.button(key="aud_make").click().run()
    assert not at.exception, at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download report.html", "Download evidence.zip"], labels


def test_a_run_without_factors_says_so() -> None:
    at = _open("mlp-digits")
    assert any("no factors" in i.value for i in at.info)
    assert _charts(at, "aud_slice_chart")  # per-class slices still
    assert not at.warning
