"""The feature-maps page in AppTest: the shipped CNN, an imported torchvision ResNet-18 with
random weights, links with ?layer=&channel=, and bad inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from core.models.runs import import_run
from core.models.zoo import build_model

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_page(**query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    at.switch_page("pages/feature_maps.py").run()
    assert not at.exception, at.exception
    return at


def show_tab(at: AppTest, tab: str) -> AppTest:
    at.session_state["fm_tab"] = tab
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def chart_count(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def test_cnn_shapes_opens_on_the_grid_and_every_tab_works() -> None:
    at = open_page(run="cnn-shapes")
    assert at.selectbox(key="fm_layer").value == "block1.conv1"
    assert at.number_input(key="fm_channel").value == 0
    assert chart_count(at) == 3  # input, channel overlay, grid
    assert {b.key for b in at.get("download_button")} == {"fm_csv", "fm_npy"}
    assert any("16 of 16 channels" in c.value for c in at.caption)
    at.segmented_control(key="fm_order").set_value("mean").run()
    at.number_input(key="fm_channel").set_value(7).run()
    assert not at.exception
    show_tab(at, "Across depth")
    assert any("first layer to the last" in c.value for c in at.caption)
    show_tab(at, "Learned filters")
    assert any("16 filters of 3×3" in s.value for s in at.subheader)
    show_tab(at, "Top examples")
    assert any("receptive field" in c.value and "3×3 input pixels" in c.value for c in at.caption)
    show_tab(at, "Feature visualisation")
    at.slider(key="fm_vis_steps").set_value(32).run()
    at.button(key="fm_vis_go").click().run()
    assert not at.exception
    start, final = (float(m.value) for m in at.metric[-2:])
    assert final > start


def test_query_params_preselect_layer_and_channel() -> None:
    at = open_page(run="cnn-shapes", layer="block2.relu2", channel="5")
    assert at.selectbox(key="fm_layer").value == "block2.relu2"
    assert at.number_input(key="fm_channel").value == 5
    assert not at.warning


def test_bad_inputs_give_messages_not_tracebacks() -> None:
    at = open_page(run="cnn-shapes", layer="no.such.layer", channel="99")
    toasts = " ".join(t.value for t in at.toast)
    assert "no layer “no.such.layer”" in toasts
    assert "has no channel 99" in toasts
    assert not at.warning
    assert at.number_input(key="fm_channel").value == 0
    at.selectbox(key="fm_layer").set_value("head.fc").run()  # not spatial: a strip, not a grid
    assert not at.exception
    assert any("has no spatial maps" in i.value for i in at.info)
    assert at.number_input(key="fm_channel").label.startswith("Unit (0–5)")
    show_tab(at, "Top examples")  # units of a fully connected layer rank too
    assert any("highest value of unit" in c.value for c in at.caption)


def test_nan_activations_are_reported(tmp_path: Path) -> None:
    model = build_model("cnn", (3, 32, 32), 6)
    state = model.state_dict()
    state["block2.conv1.weight"][3] = float("nan")
    save_file(state, tmp_path / "nan.safetensors")
    import_run("cnn", tmp_path / "nan.safetensors", n_samples=120, name="nan-cnn")
    at = open_page(run="nan-cnn", layer="block2.conv1", channel="3")
    assert not at.exception
    assert any("1 of 32 channels contain NaN" in w.value for w in at.warning)
    at.segmented_control(key="fm_order").set_value("mean").run()
    show_tab(at, "Across depth")
    show_tab(at, "Top examples")


@pytest.fixture
def resnet18_run(tmp_path: Path) -> str:
    torch.manual_seed(0)
    model = build_model("tv:resnet18", (3, 32, 32), 6)
    save_file(model.state_dict(), tmp_path / "resnet18.safetensors")
    path = import_run("tv:resnet18", tmp_path / "resnet18.safetensors", n_samples=200)
    return path.name


def test_torchvision_resnet18_with_random_weights(resnet18_run: str) -> None:
    at = open_page(run=resnet18_run)
    assert at.selectbox(key="fm_layer").value == "conv1"
    assert chart_count(at) == 3
    at.selectbox(key="fm_layer").set_value("layer4.1.relu").run()  # reused ReLU: first call
    assert not at.exception
    at.selectbox(key="fm_layer").set_value("layer4").run()  # 512 channels: paged
    assert at.selectbox(key="fm_page").options[-1] == "449–512 of 512"
    at.selectbox(key="fm_page").set_value(7).run()
    at.number_input(key="fm_channel").set_value(500).run()
    assert not at.exception
    show_tab(at, "Learned filters")
    assert any("64 filters of 7×7" in s.value for s in at.subheader)
    at.selectbox(key="fm_layer").set_value("layer2")
    show_tab(at, "Top examples")
    show_tab(at, "Across depth")
    assert any(".conv1" in m for m in at.multiselect(key="fm_depth_layers").value)


@pytest.mark.parametrize(
    ("run", "layer", "weights"),
    [("mlp-digits", "flatten", "First fully connected layer (fc1)"), ("vit-shapes", None, None)],
)
def test_mlp_and_vit_open_every_tab(run: str, layer: str | None, weights: str | None) -> None:
    at = open_page(run=run)
    if layer is not None:
        assert at.selectbox(key="fm_layer").value == layer
    for tab in ("Across depth", "Learned filters", "Top examples", "Feature visualisation"):
        show_tab(at, tab)
    at.session_state["fm_tab"] = "Learned filters"
    at.run()
    if weights is not None:
        assert any(weights in s.value for s in at.subheader)
    else:
        assert any("First convolution" in s.value for s in at.subheader)


@pytest.mark.parametrize("run", ["cnn-shapes", "vit-shapes"])
def test_pca_colour_tab_colours_a_grid_and_one_image_across_layers(run: str) -> None:
    at = open_page(run=run)
    show_tab(at, "PCA as colour")
    assert [c.key for c in at.get("plotly_chart")][-2:] == ["fm_pca_grid", "fm_pca_depth"]
    assert any("validation images" in c.value and "basis is kept" in c.value for c in at.caption)
    layers = at.multiselect(key="fm_pca_layers").value
    assert 2 <= len(layers) <= 8
    if run == "vit-shapes":
        assert layers[-1] == "blocks.3"
        at.selectbox(key="fm_layer").set_value("blocks.3").run()
        assert any("**blocks.3**" in c.value for c in at.caption)
    at.slider(key="fm_pca_threshold").set_value(0.5).run()
    assert not at.exception, at.exception
