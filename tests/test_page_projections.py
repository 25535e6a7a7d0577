"""The projections page: opens on a projection, switches layer and method, shows the report card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture
def app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["run"] = "cnn-shapes"
    at.run()
    at.switch_page("pages/projections.py").run()
    return at


def _specs(at: AppTest) -> str:
    """Titles and trace names of every plotly chart on the page."""
    words = []
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        words.append(str(spec["layout"].get("title", {}).get("text", "")))
        words += [str(trace.get("name", "")) for trace in spec["data"]]
    return " | ".join(words)


def test_opens_on_a_projection_and_switches_layer_and_method(app: AppTest) -> None:
    assert not app.exception
    assert "UMAP · head.pool" in _specs(app)
    assert "reduced by PCA to 50" in " ".join(c.value for c in app.caption)
    app.selectbox(key="proj_layer").set_value("block1.pool")
    app.button_group(key="proj_method").set_value("PCA").run()
    assert not app.exception
    assert "PCA · block1.pool" in _specs(app)
    app.selectbox(key="proj_colour").set_value("colour").run()
    assert not app.exception
    assert "orange" in _specs(app)  # one legend entry per colour
    assert app.get("download_button")


def test_report_card_renders(app: AppTest) -> None:
    app.session_state["card_n"] = 500  # a quicker card than the default 1,000 samples
    app.button_group(key="proj_view").set_value("Layer report card").run()
    assert not app.exception
    assert "linearly readable" in _specs(app)
    assert [m.label for m in app.metric][:2] == ["label probe · input", "label probe · last layer"]
