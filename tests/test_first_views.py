"""The Attributions page's first maps on a shipped run come from the run's store: no server
process computes them (with several processes, each would)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.attributions import faithfulness, methods, sanity
from core.models.runs import SHIPPED_RUNS

BOUND = (faithfulness.attribute, sanity.attribute)
"""Modules that bind ``attribute`` at import keep the real one (imported before patching)."""

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.mark.parametrize("run", ["cnn-shapes", "vit-shapes"])
def test_the_first_maps_are_read_not_computed(
    run: str, isolated_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = f"copy-of-{run}"  # a name no other test has cached in this process
    shutil.copytree(SHIPPED_RUNS / run, isolated_runs / copy)
    calls = []
    monkeypatch.setattr(methods, "attribute", lambda *a, **k: calls.append(a) or 1 / 0)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["run"] = copy
    at.run()
    at.switch_page("pages/attributions.py").run()
    assert not at.exception and not at.warning
    assert [c for c in at.get("plotly_chart") if "attr_grid" in c.proto.id]
    assert not calls
    at.selectbox(key="attr_target").set_value(at.selectbox(key="attr_target").options[1]).run()
    assert calls, "another class is computed, not read (only the first view is stored)"
