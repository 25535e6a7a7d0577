"""The home page through AppTest: the default run, training from the widgets, bad uploads."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.runs import list_runs

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=180)


def test_default_run_shows_accuracy_and_charts() -> None:
    at = app().run()
    assert not at.exception
    assert at.title[0].value == "cnn-shapes"
    accuracy = next(m for m in at.metric if m.label == "Test accuracy")
    assert float(accuracy.value.rstrip("%")) > 95
    assert at.query_params["run"] == ["cnn-shapes"] or at.query_params["run"] == "cnn-shapes"


def test_unknown_run_in_url_falls_back() -> None:
    at = app()
    at.query_params["run"] = "no-such-run"
    at.query_params["sample"] = "999999"
    at.run()
    assert not at.exception
    assert at.title[0].value == "cnn-shapes"
    assert len(at.toast) >= 1


def test_train_tiny_run_from_widgets(isolated_runs: Path) -> None:
    at = app().run()
    at.selectbox(key="train_dataset").set_value("digits")
    at.selectbox(key="train_arch").set_value("mlp")
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_samples").set_value(300)
    at.text_input(key="train_name").set_value("tiny-mlp")
    at.button[[b.label for b in at.button].index("Train")].click().run()
    assert not at.exception
    deadline = time.time() + 120
    while at.title[0].value != "tiny-mlp" and time.time() < deadline:
        time.sleep(0.5)
        at.run()
        assert not at.exception
    assert at.title[0].value == "tiny-mlp"
    assert at.session_state["run"] == "tiny-mlp"
    assert "tiny-mlp" in [r.name for r in list_runs()]
