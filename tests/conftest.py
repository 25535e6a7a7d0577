"""Shared fixtures: an isolated runs root, tiny datasets and models."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_runs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test gets its own empty user runs root (the shipped runs stay visible)."""
    root = tmp_path_factory.mktemp("runs")
    monkeypatch.setenv("LAYERSCOPE_RUNS", str(root))
    return root
