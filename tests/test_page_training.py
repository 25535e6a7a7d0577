"""The Training page on the shipped cnn-shapes: scrubber, every view, the sidebar checkpoint
shared with other pages (``?ckpt=``), and a run without checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_page(page: str = "pages/training.py", **query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["run"] = "cnn-shapes"
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def show(at: AppTest, view: str) -> AppTest:
    at.button_group(key="train_view").set_value(view).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def test_every_view_renders_and_the_scrubber_moves_the_marker() -> None:
    at = open_page()
    assert not at.error, [e.value for e in at.error]
    figures = specs(at)
    animation = next(f for f in figures if f.get("frames"))
    assert [fr["name"] for fr in animation["frames"]][:4] == [
        "init", "epoch 1/8", "epoch 1/4", "epoch 1/2",
    ]  # fmt: skip
    at.select_slider(key="train_ckpt").set_value("0.5").run()
    assert not at.exception
    assert at.query_params["ckpt"] == ["0.5"] or at.query_params["ckpt"] == "0.5"
    assert at.select_slider(key="ckpt").value == "0.5"  # the sidebar shows the same checkpoint
    curves = specs(at)[0]
    assert any(s.get("x0") == 0.5 for s in curves["layout"]["shapes"])
    show(at, "Layers × checkpoints")
    heatmaps = [f for f in specs(at) if f["data"][0]["type"] == "heatmap"]
    assert len(heatmaps) == 2
    assert heatmaps[0]["data"][0]["x"][:2] == ["init", "epoch 1/8"]
    assert "Settled" in " ".join(c.value for c in at.caption)
    show(at, "Samples")
    assert len(specs(at)) >= 2  # galleries
    show(at, "Overfitting")
    assert any("Label probe at epoch 1/2" in str(f["layout"].get("title")) for f in specs(at))


def test_another_page_opens_at_the_checkpoint() -> None:
    at = open_page("pages/feature_maps.py", ckpt="0")
    assert at.select_slider(key="ckpt").value == "0"
    assert not at.error, [e.value for e in at.error]


def test_a_bad_checkpoint_falls_back_with_a_toast() -> None:
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params.update(run="cnn-shapes", ckpt="0.3")
    at.run()
    assert not at.exception, at.exception
    assert at.select_slider(key="ckpt").value == "final"
    assert any("no checkpoint" in t.value for t in at.toast)
