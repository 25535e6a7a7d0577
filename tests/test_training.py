"""Training dynamics: checkpoints and run references, label noise, and the training family's
analyses against hand computations and scipy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from core.analysis import Batch
from core.models.runs import (
    RunError,
    list_checkpoints,
    load_run,
    read_run,
    relabelled,
    run_ref,
    split_ref,
)
from core.models.train import TrainConfig, first_epoch_steps, train, training_set
from core.training.checkpoints import capture_checkpoints
from core.training.events import events_from, gallery, learning_events
from core.training.filters import filters_over_training
from core.training.probes import ProbeGridOptions, probe_grid
from core.training.projection import (
    AlignedOptions,
    aligned_projection,
    chain_align,
    procrustes,
)
from core.training.similarity import CkaOptions, cka_to_final, settled_at

TINY = TrainConfig(model="cnn", dataset="shapes", n_samples=300, epochs=2, batch_size=16, seed=1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(TINY, name="tiny", runs_root=tmp_path_factory.mktemp("runs"))


def states(run_dir: Path) -> list[dict[str, torch.Tensor]]:
    from core.files import load_state_dict

    return [load_state_dict(c.path) for c in list_checkpoints(read_run(run_dir))]


def val_batch(run_dir: Path) -> tuple[torch.nn.Module, Batch]:
    run = load_run(run_dir.name, roots=[run_dir.parent], device="cpu")
    data = run.dataset.subset(run.splits.val)
    return run.model, Batch(data.images, data.labels, data.factors, run.info.dataset.class_names)


def test_checkpoints_init_in_epoch_and_per_epoch(tiny_run: Path) -> None:
    found = list_checkpoints(read_run(tiny_run))
    assert [c.value for c in found] == ["0", "0.125", "0.25", "0.5", "1", "2"]
    assert [c.label for c in found][:4] == ["init", "epoch 1/8", "epoch 1/4", "epoch 1/2"]
    state = states(tiny_run)[0]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert not list((tiny_run / "checkpoints").glob("*.tmp"))


def test_in_epoch_steps_keep_distinct_steps_only() -> None:
    assert first_epoch_steps(16) == {2: 0.125, 4: 0.25, 8: 0.5}
    assert first_epoch_steps(3) == {1: 0.25, 2: 0.5}  # 1/8 and 1/4 both round to step 0 or 1
    assert first_epoch_steps(1) == {}


def test_run_reference_loads_the_checkpoint(tiny_run: Path) -> None:
    assert split_ref("cnn-shapes@ckpt=0.5") == ("cnn-shapes", 0.5)
    assert split_ref("cnn-shapes@epoch_002") == ("cnn-shapes", 2.0)
    assert split_ref("cnn-shapes") == ("cnn-shapes", None)
    assert run_ref("tiny@ckpt=1", 0.25) == "tiny@ckpt=0.25" and run_ref("tiny", None) == "tiny"
    roots = [tiny_run.parent]
    final, init = load_run("tiny", roots=roots), load_run("tiny@ckpt=0", roots=roots)
    assert init.info.name == "tiny@ckpt=0" and init.info.checkpoint.label == "init"
    assert init.info.weights_sha256 != final.info.weights_sha256
    from core.files import load_state_dict

    first = load_state_dict(tiny_run / "checkpoints" / "epoch_000.safetensors")
    for key, value in init.model.state_dict().items():
        torch.testing.assert_close(value, first[key].to(value.dtype))
    with pytest.raises(RunError, match=r"no checkpoint at epoch 0\.3"):
        load_run("tiny@ckpt=0.3", roots=roots)


def test_a_run_without_the_new_checkpoints_still_loads_and_lists(
    tiny_run: Path, tmp_path: Path
) -> None:
    import shutil

    old = Path(shutil.copytree(tiny_run, tmp_path / "old"))
    for path in (old / "checkpoints").glob("epoch_000*"):
        path.unlink()
    assert [c.value for c in list_checkpoints(read_run(old))] == ["1", "2"]
    assert load_run("old@epoch_001", roots=[tmp_path]).info.checkpoint.epoch == 1


def test_label_noise_replaces_that_share_with_other_classes() -> None:
    labels = np.repeat(np.arange(4), 50)
    split = np.random.default_rng(0).permutation(200)[:100]
    config = TrainConfig(label_noise=0.2, train_subset=80, seed=3)
    chosen = training_set(config, split, labels)
    assert len(chosen.indices) == 80 and len(chosen.relabelled) == 16
    assert set(chosen.relabelled) <= set(chosen.indices)
    assert np.all(labels[chosen.relabelled] != chosen.new_labels)
    changed = chosen.indices[chosen.labels != labels[chosen.indices]]
    assert np.array_equal(np.sort(changed), chosen.relabelled)
    clean = training_set(TrainConfig(seed=3), split, labels)
    assert len(clean.relabelled) == 0 and np.array_equal(clean.indices, split)


def test_a_noise_run_records_its_relabelled_samples(tmp_path: Path) -> None:
    config = TrainConfig(n_samples=240, epochs=1, batch_size=32, label_noise=0.25, seed=2)
    info = read_run(train(config, name="noisy", runs_root=tmp_path))
    idx, new = relabelled(info)
    assert len(idx) == round(0.25 * 168) and np.all(
        new != load_run("noisy", roots=[tmp_path]).dataset.labels[idx]
    )


def test_cka_of_the_last_checkpoint_with_itself_is_one(tiny_run: Path) -> None:
    model, batch = val_batch(tiny_run)
    grid = cka_to_final(model, batch, CkaOptions(), checkpoints=states(tiny_run))
    assert grid.cka.shape == (len(grid.layers), 6) and grid.layers[0] == "block1.relu1"
    np.testing.assert_allclose(grid.cka[:, -1], 1.0, atol=1e-5)
    assert np.all(grid.cka[:, :-1] <= 1 + 1e-5)


def test_settled_at_is_the_start_of_the_last_run_above_threshold() -> None:
    cka = np.array([[0.95, 0.5, 0.92, 1.0], [0.1, 0.2, 0.3, 1.0], [0.91, 0.99, 0.95, 1.0]])
    assert settled_at(cka, 0.9).tolist() == [2, 3, 0]


def test_forgetting_events_on_a_hand_made_sequence() -> None:
    correct = np.array(
        [  # sample: 0 learned at 1, 1 forgotten twice, 2 never learned, 3 learned, lost once
            [0, 1, 0, 1],
            [1, 0, 0, 1],
            [1, 1, 0, 1],
            [1, 0, 0, 0],
            [1, 1, 0, 0],
        ],
        bool,
    )
    events = events_from(correct)
    assert events.first_learned.tolist() == [1, 0, -1, 0]
    assert events.final_learned.tolist() == [1, 4, -1, -1]
    assert events.forgetting.tolist() == [0, 2, 0, 1]
    np.testing.assert_allclose(events.accuracy, [0.5, 0.5, 0.75, 0.25, 0.5])
    assert gallery(events, "earliest").tolist() == [0, 1, 2, 3]
    assert gallery(events, "latest").tolist() == [3, 2, 1, 0]
    assert gallery(events, "forgotten").tolist() == [1, 3]


def test_learning_events_match_predictions_at_each_checkpoint(tiny_run: Path) -> None:
    model, batch = val_batch(tiny_run)
    ckpts = states(tiny_run)
    events = learning_events(model, batch, None, checkpoints=ckpts)
    last = capture_checkpoints(model, batch, ckpts[-1:], [])
    np.testing.assert_array_equal(events.predicted[-1], last.logits[0].argmax(1))
    assert events.accuracy[-1] == pytest.approx((events.predicted[-1] == batch.labels).mean())


def test_procrustes_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    expected, _ = scipy.linalg.orthogonal_procrustes(a, b)
    np.testing.assert_allclose(procrustes(a, b), expected, atol=1e-10)
    turn = np.array([[0.0, -1.0], [1.0, 0.0]])
    frames = chain_align([a @ turn.T, a])
    np.testing.assert_allclose(frames[0], a, atol=1e-5)  # undoes the rotation exactly
    np.testing.assert_allclose(frames[1], a, atol=1e-6)  # the last frame stays as it is


def test_aligned_projection_probe_grid_and_filters(tiny_run: Path) -> None:
    model, batch = val_batch(tiny_run)
    ckpts = states(tiny_run)
    proj = aligned_projection(model, batch, AlignedOptions("block3.pool"), checkpoints=ckpts)
    assert proj.frames.shape == (6, len(batch), 2) and proj.layer == "block3.pool"
    np.testing.assert_allclose(np.sqrt((proj.frames[-1] ** 2).sum(1).mean()), 1.0, atol=1e-4)
    grid = probe_grid(model, batch, ProbeGridOptions(), checkpoints=ckpts[-2:])
    assert grid.targets[0] == "label" and len(grid.targets) == 1 + len(batch.factors)
    assert grid.accuracy.shape == (len(grid.targets), len(grid.layers), 2)
    assert grid.chance[0] == pytest.approx(np.bincount(batch.labels).max() / len(batch))
    assert np.all((grid.accuracy >= 0) & (grid.accuracy <= 1))
    frames = filters_over_training(model, batch, None, checkpoints=ckpts)
    assert frames.images.shape == (6, 16, 3, 3, 3) and frames.layer == "block1.conv1"
    assert not np.allclose(frames.norms[0], frames.norms[-1])


def test_ridge_probe_predicts_as_sklearn_ridge_classifier() -> None:
    from sklearn.linear_model import RidgeClassifier
    from sklearn.preprocessing import StandardScaler

    from core.training.probes import ridge_predict

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6))
    y1, y2 = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0), (x[:, 2] > 0.3).astype(int)
    train, test = slice(0, 90), slice(90, None)
    ours = ridge_predict(x[train], [y1[train], y2[train]], x[test])
    scaler = StandardScaler().fit(x[train])
    for y, predicted in zip((y1, y2), ours, strict=True):
        reference = RidgeClassifier(alpha=1.0).fit(scaler.transform(x[train]), y[train])
        np.testing.assert_array_equal(predicted, reference.predict(scaler.transform(x[test])))


def test_transfer_copies_fitting_layers_freezes_and_reports(isolated_runs: Path) -> None:
    from core.training.transfer import TransferOptions, transfer_report

    source = train(TINY, name="source")
    config = TrainConfig(
        model="cnn", dataset="digits", n_samples=300, epochs=1, batch_size=32,
        init_from="source", freeze_blocks=1,
    )  # fmt: skip
    tuned = load_run(train(config, name="tuned").name)
    assert tuned.info.config["init_from"] == "source"
    assert tuned.info.input_shape == (3, 32, 32)  # the source's: digits adapted to it
    before = load_run("source")
    state, old = tuned.model.state_dict(), before.model.state_dict()
    torch.testing.assert_close(state["block1.conv1.weight"], old["block1.conv1.weight"])
    assert not torch.equal(state["block2.conv1.weight"], old["block2.conv1.weight"])
    assert state["head.fc.weight"].shape[0] == 10 and source is not None
    _, batch = val_batch(tuned.info.path)
    same = transfer_report(tuned.model, batch, TransferOptions())
    np.testing.assert_allclose(same.cka, 1.0, atol=1e-5)
    assert np.all(same.relative_change == 0)
    report = transfer_report(tuned.model, batch, TransferOptions(), source=before.model)
    change = dict(zip(report.params, report.relative_change, strict=True))
    assert change["block1.conv1.weight"] == 0 and change["block3.conv2.weight"] > 0
    assert "head.fc.weight" not in change  # 6 classes before, 10 after


def test_cnn_shapes_ships_its_checkpoints_and_training_grids() -> None:
    from core.models.runs import SHIPPED_RUNS
    from core.training import recipes

    run = load_run("cnn-shapes", roots=[SHIPPED_RUNS], device="cpu")
    assert [c.label for c in list_checkpoints(run.info)][:4] == [
        "init", "epoch 1/8", "epoch 1/4", "epoch 1/2",
    ]  # fmt: skip
    for analysis in recipes.GRIDS:
        for split in recipes.SPLITS if analysis in recipes.BOTH_SPLITS else ("held_out",):
            assert recipes.stored_grid(run, analysis, split) is not None, (analysis, split)
    cka = recipes.stored_grid(run, "training.cka_to_final")
    np.testing.assert_allclose(cka.cka[:, -1], 1.0, atol=1e-5)
    for layer in cka.layers[:-2]:
        options = AlignedOptions(layer)
        assert recipes.stored_grid(run, "training.aligned_projection", options=options)
