"""The result store: nested results round-trip without pickle, only for the same weights and
arguments, and a write is atomic."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest

from core import result_store as store
from core.attention.layout import TokenLayout
from core.attention.statistics import HeadStatistics
from core.models.evaluation import Predictions
from core.projections.report_card import LayerReport

SHA = "a" * 64


def _stats(seed: int = 0) -> HeadStatistics:
    rng = np.random.default_rng(seed)
    layout = TokenLayout(n_tokens=65, patch_start=1, grid=(8, 8), patch=(4, 4), image=(32, 32))
    return HeadStatistics(
        distance=rng.random((10, 4, 4), dtype=np.float32),
        entropy=rng.random((10, 4, 4), dtype=np.float32),
        extra_share=rng.random((10, 4, 4), dtype=np.float32),
        layers=("blocks.0.attn", "blocks.1.attn"),
        layout=layout,
        seconds=1.5,
    )


def _assert_same(a: object, b: object) -> None:
    assert type(a) is type(b)
    if dataclasses.is_dataclass(a):
        for field in dataclasses.fields(a):
            _assert_same(getattr(a, field.name), getattr(b, field.name))
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, tuple | list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def test_nested_result_round_trips(tmp_path: Path) -> None:
    stats = _stats()
    args = {"split": "val", "config": ("a", 1, 2.5), "v": 1}
    path = store.save_result(tmp_path, "head-stats", args, SHA, stats)
    assert path.parent == tmp_path / "results" and path.name.startswith("head-stats-")
    loaded = store.load_result(tmp_path, "head-stats", args, SHA, HeadStatistics)
    _assert_same(stats, loaded)
    assert isinstance(loaded.layout.grid, tuple) and not loaded.distance.flags.writeable
    report = LayerReport(
        layers=("(input)", "fc"),
        targets=("label",),
        probe=np.ones((2, 1, 3), np.float32),
        knn=np.zeros((2, 1, 3), np.float32),
        chance=np.array([0.5], np.float32),
        grams=np.zeros((2, 0, 0), np.float32),
    )
    store.save_result(tmp_path, "report", {"n": 10}, SHA, report)
    _assert_same(report, store.load_result(tmp_path, "report", {"n": 10}, SHA))
    # numpy scalars keep their type; dict keys order does not change the key
    preds = Predictions(np.eye(3, dtype=np.float32), np.arange(3), np.arange(3), 0.25, 1.0)
    store.save_result(tmp_path, "predictions", {"a": 1, "b": 2}, SHA, preds)
    _assert_same(preds, store.load_result(tmp_path, "predictions", {"b": 2, "a": 1}, SHA))
    with np.load(path, allow_pickle=False) as data:  # plain npz, readable without pickle
        assert "__meta__" in data.files


def test_other_weights_or_arguments_are_not_read(tmp_path: Path) -> None:
    store.save_result(tmp_path, "head-stats", {"split": "val"}, SHA, _stats())
    assert store.load_result(tmp_path, "head-stats", {"split": "val"}, "b" * 64) is None
    assert store.load_result(tmp_path, "head-stats", {"split": "test"}, SHA) is None
    assert store.load_result(tmp_path, "head-stats", {"split": "val"}, "") is None
    assert store.load_result(tmp_path, "head-stats", {"split": "val"}, SHA, Predictions) is None
    assert store.load_result(tmp_path, "missing", {}, SHA) is None
    with pytest.raises(ValueError, match="hash"):
        store.save_result(tmp_path, "head-stats", {}, "", _stats())


def test_unstorable_results_are_refused(tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True)
    class Outside:
        x: int

    with pytest.raises(TypeError, match="core"):
        store.save_result(tmp_path, "outside", {}, SHA, Outside(1))
    bad = dataclasses.replace(_stats(), layers=np.array([object()], dtype=object))
    with pytest.raises(TypeError, match="pickle"):
        store.save_result(tmp_path, "bad", {}, SHA, bad)
    assert store.stored_results(tmp_path) == []


def test_corrupt_file_reads_as_missing(tmp_path: Path) -> None:
    path = store.save_result(tmp_path, "head-stats", {}, SHA, _stats())
    path.write_bytes(path.read_bytes()[:100])
    assert store.load_result(tmp_path, "head-stats", {}, SHA) is None


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = store.save_result(tmp_path, "head-stats", {}, SHA, _stats(0))
    before = path.read_bytes()

    def half_written(file, **arrays):  # writes some bytes, then fails
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", half_written)
    with pytest.raises(OSError, match="disk full"):
        store.save_result(tmp_path, "head-stats", {}, SHA, _stats(1))
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old result is intact
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    _assert_same(_stats(0), store.load_result(tmp_path, "head-stats", {}, SHA))

    # readers racing a writer see one whole result or the other, never a broken one
    stop = threading.Event()
    seen: list[object] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(store.load_result(tmp_path, "head-stats", {}, SHA))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(20):
        store.save_result(tmp_path, "head-stats", {}, SHA, _stats(i % 2))
    stop.set()
    reader.join()
    assert seen and all(isinstance(s, HeadStatistics) for s in seen)


def test_a_result_stored_before_its_class_moved_still_reads(tmp_path: Path) -> None:
    """Shipped results outlive a refactor that moves a result class to another module."""
    import json

    result = Predictions(np.eye(2, dtype=np.float32), np.arange(2), np.arange(2), 0.1, 1.0)
    path = store.save_result(tmp_path, "predictions", {"split": "val"}, "abc", result)
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["__meta__"][()]))
    meta["result"]["$dataclass"] = "core.evaluation:Predictions"  # where it used to live
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez_compressed(path, **arrays)
    loaded = store.load_result(tmp_path, "predictions", {"split": "val"}, "abc", Predictions)
    assert loaded is not None and loaded.accuracy == 1.0
