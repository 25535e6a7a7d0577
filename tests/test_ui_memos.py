"""The per-process memos that keep a rerun cheap: figures by content, the run list by the run
folders' state. Both must never serve stale or foreign content."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from core.models.runs import SHIPPED_RUNS
from ui import cache
from ui.figures import memo

BUILDS: list[tuple] = []


def heat_figure(z: np.ndarray, title: str = "", texts: list[str] | None = None) -> go.Figure:
    BUILDS.append((z, title, texts))
    return go.Figure(go.Heatmap(z=z, text=texts)).update_layout(title=title)


@pytest.fixture(autouse=True)
def empty_memo() -> None:
    memo._figures.clear()
    BUILDS.clear()


def test_equal_content_reuses_the_figure_and_other_content_does_not() -> None:
    z = np.arange(6.0).reshape(2, 3)
    first = memo.figure(heat_figure, z, "a", texts=["x", "y"])
    assert memo.figure(heat_figure, z.copy(), "a", texts=["x", "y"]) is first
    assert len(BUILDS) == 1
    changed = z.copy()
    changed[1, 2] = -1.0
    others = [
        memo.figure(heat_figure, changed, "a", texts=["x", "y"]),  # one value
        memo.figure(heat_figure, z.astype(np.float32), "a", texts=["x", "y"]),  # dtype
        memo.figure(heat_figure, z.reshape(3, 2), "a", texts=["x", "y"]),  # shape
        memo.figure(heat_figure, z, "b", texts=["x", "y"]),  # a string
        memo.figure(heat_figure, z, "a", texts=["x", "z"]),  # a hover text
        memo.figure(heat_figure, z, "a"),  # a keyword left out
    ]
    assert len(BUILDS) == 7 and all(o is not first for o in others)
    assert others[0].data[0].z[1][2] == -1.0


def test_an_argument_without_a_content_key_is_built_every_time() -> None:
    class Opaque:
        pass

    def tagged(z: np.ndarray, tag: object) -> go.Figure:
        return heat_figure(z, type(tag).__name__)

    z = np.zeros((2, 2))
    assert memo.content_key(tagged, (z, Opaque()), {}) is None
    memo.figure(tagged, z, Opaque())
    memo.figure(tagged, z, Opaque())
    assert len(BUILDS) == 2 and not memo._figures


def test_the_memo_keeps_at_most_max_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "MAX_FIGURES", 3)
    for k in range(5):
        memo.figure(heat_figure, np.full((2, 2), float(k)))
    assert len(memo._figures) == 3
    memo.figure(heat_figure, np.full((2, 2), 4.0))  # the newest is kept
    assert len(BUILDS) == 5


def test_the_run_list_sees_a_run_added_rewritten_and_deleted_at_once(
    isolated_runs: Path,
) -> None:
    names = {r.name for r in cache.run_list()}
    assert cache.run_list() is cache.run_list()  # read once while nothing changed
    shutil.copytree(SHIPPED_RUNS / "mlp-digits", isolated_runs / "copy")
    assert {r.name for r in cache.run_list()} == names | {"copy"}
    meta_path = isolated_runs / "copy" / "run.json"
    meta = json.loads(meta_path.read_text())
    meta["status"] = "stopped"
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta))
    tmp.replace(meta_path)  # as every run file is written: atomically
    assert next(r for r in cache.run_list() if r.name == "copy").status == "stopped"
    shutil.rmtree(isolated_runs / "copy")
    assert {r.name for r in cache.run_list()} == names
