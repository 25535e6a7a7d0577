"""Training into run folders: determinism, progress, stopping, atomic checkpoints, the roots."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.files import state_dict_hash
from core.models.runs import (
    DEFAULT_RUN,
    IMAGENET_NORMALIZATION,
    Normalization,
    RunError,
    chosen_normalization,
    combine_predictions,
    delete_run,
    evaluation_text,
    import_run,
    list_runs,
    load_run,
    parse_normalization,
    read_run,
)
from core.models.train import (
    MAX_LOSS_POINTS,
    MIN_STEPS_FOR_ETA,
    TrainConfig,
    TrainOutcome,
    TrainProgress,
    duration,
    loss_every,
    train,
)
from core.models.zoo import WeightsMismatchError, build_model

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
    assert [p.name for p in info.checkpoints] == [  # 5 steps an epoch: 1/8 and 1/4 share one
        "epoch_000.safetensors", "epoch_000.125.safetensors", "epoch_000.500.safetensors",
        "epoch_001.safetensors", "epoch_002.safetensors",
    ]  # fmt: skip
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
    from core.files import load_state_dict, state_dict_hash

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
    assert total < 10 * 10**6  # the assets budget: every shipped run, results included
    for name in ("cnn-shapes", "mlp-digits", "vit-shapes"):
        meta = json.loads((root / name / "run.json").read_text())
        assert meta["status"] == "complete" and meta["test_accuracy"] > 0.5


def test_progress_carries_step_losses_and_eta(isolated_runs: Path) -> None:
    events: list[TrainProgress] = []
    train(TINY, name="live", progress=events.append)
    total = events[0].total_steps
    assert events[0].step_losses == ((1, pytest.approx(events[0].loss)),)  # a point at once
    steps = [s for s, _ in events[-1].step_losses]
    assert steps == sorted(steps) and steps[-1] == total and len(steps) == total  # every step
    assert all(math.isfinite(loss) for _, loss in events[-1].step_losses)
    assert [e.eta_seconds for e in events[: MIN_STEPS_FOR_ETA - 1]] == [None] * 2
    etas = [e.eta_seconds for e in events[MIN_STEPS_FOR_ETA - 1 :]]
    assert all(eta is not None and eta >= 0 for eta in etas) and etas[-1] == 0
    assert "left" in events[-1].describe() and events[-1].elapsed > 0
    assert loss_every(10_000) * MAX_LOSS_POINTS >= 10_000 and loss_every(10) == 1
    assert duration(42) == "about 40 s" and duration(150) == "about 2 min"


def test_stop_message_reports_kept_epochs(isolated_runs: Path) -> None:
    calls = {"n": 0}
    steps = 240 * 70 // 100 // 32

    def count(_progress: TrainProgress) -> None:
        calls["n"] += 1

    path = train(
        TrainConfig(**{**TINY.__dict__, "epochs": 3}),
        name="halted",
        progress=count,
        should_stop=lambda: calls["n"] >= steps + 2,
    )
    outcome = TrainOutcome.of(path, 3)
    assert (outcome.kept_epochs, outcome.stopped, outcome.level) == (1, True, "warning")
    assert outcome.message.startswith("Stopped after epoch 1; kept 1 epoch.")
    nothing = TrainOutcome.of(None, 3)
    assert nothing.message == "Stopped before the first epoch completed: nothing was kept."
    done = TrainOutcome.of(train(TINY, name="done"), 2)
    assert (done.kept_epochs, done.stopped, done.level) == (2, False, "success")
    failed = TrainOutcome.of(None, 2, RuntimeError("out of memory"))
    assert failed.level == "error" and "out of memory" in failed.message


def test_import_records_normalisation_and_applies_it(isolated_runs: Path, tmp_path: Path) -> None:
    model = build_model("cnn", (3, 32, 32), 6)
    save_file(model.state_dict(), tmp_path / "cnn.safetensors")
    norm = Normalization((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    path = import_run(
        "cnn", tmp_path / "cnn.safetensors", "shapes", n_samples=200, normalization=norm
    )
    info = read_run(path)
    assert info.normalization == norm and info.config["weights_file"] == "cnn.safetensors"
    run = load_run(path.name, device="cpu")
    x = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor(norm.mean).view(1, 3, 1, 1), torch.tensor(norm.std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(run.model(x), model((x - mean) / std))
        torch.testing.assert_close(copy.deepcopy(run.model)(x), run.model(x))
    assert read_run(isolated_runs / path.name).weights_sha256 == state_dict_hash(
        model.state_dict()
    )  # the hook leaves the weights alone
    assert parse_normalization("", "") is None
    assert parse_normalization("0.5", "0.25") == Normalization((0.5,), (0.25,))
    assert chosen_normalization("imagenet", "junk", "") == IMAGENET_NORMALIZATION
    assert chosen_normalization("none", "junk", "") is None
    assert chosen_normalization("custom", "0.5", "0.25") == Normalization((0.5,), (0.25,))
    for mean_text, std_text, message in (
        ("0.5", "", "both"),
        ("a, b", "1", "numbers"),
        ("0.5, 0.5", "0.2", "one value per channel"),
        ("0.5", "0", "greater than 0"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_normalization(mean_text, std_text)
    with pytest.raises(ValueError, match="3 channel"):
        import_run(
            "cnn",
            tmp_path / "cnn.safetensors",
            "shapes",
            n_samples=200,
            normalization=Normalization((0.5, 0.5), (1.0, 1.0)),
        )


def test_import_scored_on_all_images(isolated_runs: Path, tmp_path: Path) -> None:
    from core.models.evaluation import predict

    model = build_model("mlp", (1, 8, 8), 10)
    save_file(model.state_dict(), tmp_path / "mlp.safetensors")
    path = import_run("mlp", tmp_path / "mlp.safetensors", "digits", evaluate="all")
    info = read_run(path)
    assert info.evaluated_on == "all" and info.evaluated_splits == ("train", "val", "test")
    run = load_run(path.name)
    parts = [
        predict(run.model, run.dataset.images[idx], run.dataset.labels[idx])
        for idx in (run.splits.train, run.splits.val, run.splits.test)
    ]
    combined = combine_predictions(parts)
    assert len(combined.labels) == len(run.dataset)
    assert combined.accuracy == pytest.approx(info.test_accuracy)
    assert "all 1,797 images" in evaluation_text(info, len(combined.labels), len(run.dataset))
    with pytest.raises(ValueError, match="evaluate"):
        import_run("mlp", tmp_path / "mlp.safetensors", "digits", evaluate="half")
