"""The projections page's Store view: opens an activation store, draws every point (a WebGL
scatter below the threshold, a density image above it) and says how the map was made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.extract.extract import extract

APP = str(Path(__file__).resolve().parent.parent / "app.py")
N = 600


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stores")
    extract(
        "cnn-shapes", ["head.flatten"], root / "shapes-small", data="shapes", n=N, seed=1,
        chunk_rows=256, device="cpu", progress=lambda *_: None,
    )  # fmt: skip
    return root


def _open(stores: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("LAYERSCOPE_STORES", str(stores))
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["run"] = "cnn-shapes"
    at.run()
    at.switch_page("pages/projections.py").run()
    at.button_group(key="proj_view").set_value("Store").run()
    return at


def _traces(at: AppTest) -> list[dict]:
    return [t for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"]]


def test_a_small_store_is_a_scatter_of_every_point(stores, monkeypatch) -> None:
    at = _open(stores, monkeypatch)
    assert not at.exception
    traces = _traces(at)
    assert sum(len(t.get("text", [])) for t in traces if t["type"] == "scattergl") == N
    caption = " ".join(c.value for c in at.caption)
    assert f"All {N:,} points" in caption and "UMAP fitted on a stratified sample" not in caption


def test_above_the_threshold_a_density_image_with_clickable_cells(stores, monkeypatch) -> None:
    monkeypatch.setattr("ui.views.projections.DENSITY_THRESHOLD", 100)
    at = _open(stores, monkeypatch)
    assert not at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["images"][0]["source"].startswith("data:image/png")
    cells = next(t for t in spec["data"] if t.get("name") == "cells")
    assert 0 < len(cells["text"]) <= 64 * 64
    assert "circle" in [t.get("name") for t in spec["data"]]  # a legend entry per class
    assert f"Density image of all {N:,} points" in " ".join(c.value for c in at.caption)
