"""AppTest of the attributions page: cnn-shapes, an imported torchvision ResNet, a tiny ViT."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.models.evaluation import CHANCE_WARNING

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGE = "pages/attributions.py"


def _open(run: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["run"] = run
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def test_cnn_opens_on_the_grid_and_runs_the_checks() -> None:
    at = _open("cnn-shapes")
    assert at.title[0].value.endswith("Attributions")
    grid = [c for c in at.get("plotly_chart") if c.proto.id and "attr_grid" in c.proto.id]
    assert grid, "the side-by-side grid is on the page when it opens"
    assert not at.warning and not at.error
    assert any("convergence delta" in c.value for c in at.caption)
    # a class other than the prediction
    at.selectbox(key="attr_target").set_value("circle").run()
    assert not at.exception
    # sanity check, two methods, two steps
    at.multiselect(key="attr_sanity_methods").set_value(["saliency", "grad_cam"])
    at.slider(key="attr_sanity_steps").set_value(2)
    at.button(key="attr_sanity_run").click().run()
    assert not at.exception
    verdicts = at.dataframe[0].value["verdict"].tolist()
    assert len(verdicts) == 2 and all(verdicts)
    # deletion / insertion on two cheap methods, two validation samples
    at.multiselect(key="attr_faith_methods").set_value(["saliency", "grad_cam"])
    at.slider(key="attr_faith_n").set_value(2)
    at.slider(key="attr_faith_steps").set_value(8)
    at.button(key="attr_faith_run").click().run()
    assert not at.exception
    table = at.dataframe[-1].value
    assert len(table) == 2 and table.filter(like="AUC").notna().all().all()
    # layer units with links to the feature-maps page
    at.button(key="attr_units_run").click().run()
    assert not at.exception
    links = [e for e in at.main if getattr(e, "type", "") == "page_link"] or at.get("page_link")
    assert links


@pytest.fixture
def resnet_run(isolated_runs: Path) -> str:
    import torch
    from safetensors.torch import save_file

    from core.models.runs import import_run
    from core.models.zoo import build_model

    torch.manual_seed(0)
    model = build_model("tv:resnet18", (3, 32, 32), 6)
    path = isolated_runs / "resnet18.safetensors"
    save_file(model.state_dict(), path)
    return import_run("tv:resnet18", path, "shapes", n_samples=120, name="rn18").name


def test_imported_torchvision_resnet(resnet_run: str) -> None:
    at = _open(resnet_run)
    # random weights: at chance, and said so; no other warning (DeepLift/Guided Backprop on
    # shared in-place ReLUs work)
    assert [w.value for w in at.warning] == [CHANCE_WARNING] and not at.error
    at.multiselect(key="attr_methods").set_value(["saliency", "deeplift", "grad_cam"]).run()
    at.multiselect(key="attr_sanity_methods").set_value(["deeplift"])
    at.slider(key="attr_sanity_steps").set_value(2)
    at.button(key="attr_sanity_run").click().run()
    at.multiselect(key="attr_faith_methods").set_value(["deeplift"])
    at.slider(key="attr_faith_n").set_value(1)
    at.slider(key="attr_faith_steps").set_value(8)
    at.button(key="attr_faith_run").click().run()
    assert not at.exception and not at.error
    assert len(at.dataframe[-1].value) == 1


def test_tiny_vit_shows_grad_cam_beside_rollout(isolated_runs: Path) -> None:
    from core.models.train import TrainConfig, train

    train(
        TrainConfig(model="vit", dataset="shapes", n_samples=300, epochs=1),
        name="tiny-vit",
        runs_root=isolated_runs,
    )
    at = _open("tiny-vit")
    assert {w.value for w in at.warning} <= {CHANCE_WARNING} and not at.error  # one epoch
    assert any("rollout" in s.value for s in at.subheader)
