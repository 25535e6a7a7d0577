"""The attention page through the app: a built-in ViT, an imported torchvision ViT, a CNN."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from core.models.runs import SHIPPED_RUNS, import_run
from core.models.train import TrainConfig, train
from core.models.zoo import build_model

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_attention(run: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["run"] = run
    at.run()
    assert not at.exception, at.exception
    at.switch_page("pages/attention.py").run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def vit_run(isolated_runs: Path) -> str:
    """The shipped vit-shapes run, or a tiny one trained for the test until it ships."""
    if (SHIPPED_RUNS / "vit-shapes" / "run.json").is_file():
        return "vit-shapes"
    config = TrainConfig(model="vit", dataset="shapes", n_samples=300, epochs=1)
    return train(config, name="vit-test", runs_root=isolated_runs).name


def test_vit_page_shows_grid_rollout_statistics_and_picks_queries(vit_run: str) -> None:
    at = open_attention(vit_run)
    assert [s.value for s in at.subheader] == [
        "Every head of every layer",
        "Layer 0, head 0 up close",
        "Attention rollout",
        "Heads across the validation split",
        "Attention on the object, layer by layer",
        "Token norms and high-norm outliers",
    ]
    assert at.selectbox(key="att_query").value == 0  # CLS
    charts = ["att_grid", "att_pick", "att_matrix", "att_rollout", "att_distance", "att_entropy"]
    charts += ["att_object", "att_norms", "att_clean"]
    assert [c.key for c in at.get("plotly_chart")] == charts
    assert len(at.get("download_button")) == 5
    head = at.caption[0].value
    assert " layers × 4 heads · 65 tokens" in head
    truth, predicted = head.split("**")[1], head.split("**")[3]
    assert truth == predicted  # the page opens on a correctly classified sample
    assert any("of its CLS attention on it" in c.value and "n = " in c.value for c in at.caption)
    assert any("L2 norm of every token" in c.value for c in at.caption)
    at.selectbox(key="att_query").set_value(10).run()
    at.selectbox(key="att_layer").set_value(3).run()
    at.selectbox(key="att_head").set_value(2).run()
    at.toggle(key="att_shared").set_value(True).run()
    assert not at.exception, at.exception
    assert at.subheader[1].value == "Layer 3, head 2 up close"
    assert "patch (row 1, col 1)" in at.caption[1].value


def test_imported_torchvision_vit(tmp_path: Path, isolated_runs: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "vit_b_16.safetensors"
    save_file(build_model("tv:vit_b_16", (3, 32, 32), 6).state_dict(), str(weights))
    run = import_run("tv:vit_b_16", weights, "shapes", image_size=32, n_samples=200).name
    at = open_attention(run)
    assert "12 layers × 12 heads · 5 tokens" in at.caption[0].value
    assert len(at.get("plotly_chart")) == 9
    at.selectbox(key="att_query").set_value(4).run()
    assert not at.exception, at.exception
    assert "patch (row 1, col 1)" in at.caption[1].value


def test_model_without_attention_offers_runs_with_it(vit_run: str) -> None:
    at = open_attention("cnn-shapes")
    assert "has no attention layers" in at.warning[0].value
    assert not at.get("plotly_chart")
    goto = at.button(key=f"att_goto_{vit_run}")
    goto.click().run()
    assert not at.exception, at.exception
    assert at.session_state["run"] == vit_run  # the sidebar's run picker now holds it
