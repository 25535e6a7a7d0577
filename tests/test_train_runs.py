"""Training into run folders: determinism, progress, stopping, atomic checkpoints, the roots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.models import WeightsMismatchError, build_model
from core.runs import (
    DEFAULT_RUN,
    RunError,
    delete_run,
    import_run,
    list_runs,
    load_run,
    read_run,
)
from core.train import TrainConfig, TrainProgress, train

TINY = TrainConfig(model="cnn", dataset="shapes", n_samples=240, epochs=2, batch_size=32, seed=1)


def test_same_config_same_weights(isolated_runs: Path) -> None:
    a = read_run(train(TINY, name="a"))
    b = read_run(train(TINY, name="b"))
    assert a.weights_sha256 == b.weights_sha256 and len(a.weights_sha256) == 64
    c = read_run(train(TrainConfig(**{**TINY.__dict__, "seed": 2}), name="c"))
    assert c.weights_sha256 != a.weights_sha256


def test_run_folder_contents_and_progress(isolated_runs: Path) -> None:
    events: list[TrainProgress] = []
    path = train(TINY, name="tiny", progress=events.append)
    assert path == isolated_runs / "tiny"
    info = read_run(path)
    assert info.status == "complete" and info.test_accuracy is not None
    assert [h["epoch"] for h in info.history] == [1, 2]
    assert {"train_loss", "val_loss", "train_accuracy", "val_accuracy"} <= set(info.history[0])
    assert len(info.checkpoints) == 2
    steps = events[0].steps_per_epoch
    assert len(events) == 2 * steps and events[-1].fraction == pytest.approx(1.0)
    run = load_run("tiny")
    assert not run.model.training and len(run.dataset) == 240
    early = load_run("tiny", epoch=1)
    assert any(
        not torch.equal(p, q)
        for p, q in zip(early.model.parameters(), run.model.parameters(), strict=True)
    )


def test_stop_keeps_last_complete_epoch(isolated_runs: Path) -> None:
    calls = {"n": 0}

    def stop_in_second_epoch(progress: TrainProgress) -> None:
        calls["n"] += 1

    steps = 240 * 70 // 100 // 32
    path = train(
        TrainConfig(**{**TINY.__dict__, "epochs": 3}),
        name="stopped",
        progress=stop_in_second_epoch,
        should_stop=lambda: calls["n"] >= steps + 2,
    )
    info = read_run(path)
    assert info.status == "stopped" and len(info.history) == 1
    from core.io import load_state_dict, state_dict_hash

    assert state_dict_hash(load_state_dict(path / "model.safetensors")) == info.weights_sha256
    assert train(TINY, name="never", should_stop=lambda: True) is None
    assert not (isolated_runs / "never").exists()


def test_kill_mid_epoch_leaves_last_epoch_loadable(isolated_runs: Path) -> None:
    class Killed(BaseException):
        pass

    steps = 240 * 70 // 100 // 32

    def kill(progress: TrainProgress) -> None:
        if progress.epoch == 2 and progress.step == steps // 2:
            raise Killed

    with pytest.raises(Killed):
        train(TINY, name="killed", progress=kill)
    info = read_run(isolated_runs / "killed")
    assert info.status == "training" and len(info.history) == 1
    assert not [p for p in (isolated_runs / "killed").rglob("*") if p.name.endswith(".tmp")]
    load_run("killed")


def test_list_load_delete(isolated_runs: Path) -> None:
    names = [r.name for r in list_runs()]
    assert DEFAULT_RUN in names  # shipped
    train(TINY, name="mine")
    assert "mine" in [r.name for r in list_runs()]
    delete_run("mine")
    assert "mine" not in [r.name for r in list_runs()]
    with pytest.raises(RunError):
        delete_run(DEFAULT_RUN)
    with pytest.raises(RunError, match="No run"):
        load_run("nope")


def test_names_are_unique(isolated_runs: Path) -> None:
    first = train(TINY, name=DEFAULT_RUN)
    assert first.name == f"{DEFAULT_RUN}-2"


def test_half_written_run_is_reported(isolated_runs: Path) -> None:
    path = train(TINY, name="broken")
    (path / "model.safetensors").unlink()
    with pytest.raises(RunError, match=r"model\.safetensors is missing"):
        load_run("broken")
    (path / "metrics.json").write_text("[{")
    with pytest.raises(RunError, match="cannot be read"):
        read_run(path)
    assert "broken" not in [r.name for r in list_runs()]


def test_import_run_and_bad_weights(isolated_runs: Path, tmp_path: Path) -> None:
    model = build_model("tv:resnet18", (3, 32, 32), 6)
    save_file(model.state_dict(), tmp_path / "r18.safetensors")
    path = import_run("tv:resnet18", tmp_path / "r18.safetensors", "shapes", n_samples=200)
    info = read_run(path)
    assert info.status == "imported" and info.input_shape == (3, 32, 32)
    assert load_run(path.name).model.fc.out_features == 6
    before = sorted(os.listdir(isolated_runs))
    with pytest.raises(WeightsMismatchError):
        import_run("tv:resnet34", tmp_path / "r18.safetensors", "shapes", n_samples=200)
    assert sorted(os.listdir(isolated_runs)) == before


def test_shipped_runs_are_small_and_complete() -> None:
    root = Path(__file__).resolve().parent.parent / "assets" / "runs"
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 5 * 2**20
    for name in ("cnn-shapes", "mlp-digits", "vit-shapes"):
        meta = json.loads((root / name / "run.json").read_text())
        assert meta["status"] == "complete" and meta["test_accuracy"] > 0.5
