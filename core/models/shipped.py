"""The runs that ship in ``assets/runs``, and the command that regenerates them exactly.

``python -m core.models.shipped [names]`` retrains each from its config on the CPU
(deterministic for a given thread count: ``make assets`` runs it with ``OMP_NUM_THREADS=1``, so
the weights hash comes out the same on any machine), replaces the folder, and stores the
results its first views need in the folder's ``results/``
(:func:`core.models.precompute.precompute_run`), so that no view of a shipped run computes for
long on first open. ``python -m core.models.shipped --results [names]`` recomputes only those
results, for the weights already there. Checkpoints are float16, and a run in
:data:`KEEP_CHECKPOINTS` keeps only a few; with their results, all the runs stay under 10 MB.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from core.models.runs import SHIPPED_RUNS, LoadedRun, list_checkpoints, read_run
from core.models.train import TrainConfig, train

SHIPPED_CONFIGS = {
    "cnn-shapes": TrainConfig(model="cnn", dataset="shapes", epochs=4, device="cpu"),
    "vit-shapes": TrainConfig(
        model="vit-conv",
        dataset="shapes",
        n_samples=20_000,
        epochs=8,
        batch_size=128,
        lr=3e-3,
        weight_decay=0.05,
        device="cpu",
        augment=True,
    ),
    "mlp-digits": TrainConfig(model="mlp", dataset="digits", epochs=6, batch_size=32, device="cpu"),
    "cnn-shapes-shortcut": TrainConfig(
        model="cnn", dataset="shapes", epochs=4, device="cpu", shortcut="colour=0.95"
    ),
}


MAP_LAYERS = {"cnn-shapes": "all", "mlp-digits": "all", "vit-shapes": "blocks"}
"""Layers whose default map view ships besides the report card's: ``all`` of them (about 30 KiB
a layer), or only the transformer ``blocks``' outputs (to save space on a deep ViT)."""


TRAINING_RESULTS = ("cnn-shapes",)
"""Runs whose Training page grids ship (the others' are computed on first open)."""
KEEP_CHECKPOINTS: dict[str, tuple[float, ...]] = {
    "vit-shapes": (0, 0.5, 1, 2, 4),
    "cnn-shapes-shortcut": (),
}
"""The checkpoints (fractional epochs) a run ships besides its final weights; the others are
deleted to fit the assets budget. A run not named here keeps every checkpoint."""


def prune_checkpoints(run: Path, keep: tuple[float, ...]) -> None:
    """Deletes the run's checkpoints except those at the epochs ``keep``."""
    for checkpoint in list_checkpoints(read_run(run)):
        if checkpoint.epoch not in keep:
            checkpoint.path.unlink()


def _map_layers(run: LoadedRun, which: str) -> list[str]:
    from core.models import precompute

    layers = precompute.map_layers(run)
    if which == "all":
        return layers
    if which == "blocks":
        return [name for name in layers if name.count(".") == 1 and name.startswith("blocks.")]
    return []


def precompute_results(names: list[str] | None = None, target: Path = SHIPPED_RUNS) -> list[Path]:
    """Replaces the stored results of the shipped runs ``names`` (default all) in ``target``.

    Needs the runs' weights in place; computes on the CPU, as the app would.
    """
    from core import result_store
    from core.models import precompute
    from core.models.runs import load_run
    from core.training.recipes import precompute_training

    written = []
    for name in names or list(SHIPPED_CONFIGS):
        start = time.perf_counter()
        for old in result_store.stored_results(target / name):
            old.unlink()
        run = load_run(name, roots=[target], device="cpu")
        layers = _map_layers(run, MAP_LAYERS.get(name, "none"))
        files = precompute.precompute_run(run, map_layers_too=layers)
        if name in TRAINING_RESULTS:
            files += precompute_training(run)
        size = sum(f.stat().st_size for f in files)
        print(
            f"{name}: {len(files)} results, {size / 2**20:.2f} MiB, "
            f"in {time.perf_counter() - start:.0f} s"
        )
        written += files
    return written


def regenerate(names: list[str] | None = None, target: Path = SHIPPED_RUNS) -> list[Path]:
    """Retrains the shipped runs ``names`` (default all) into ``target``, with their results."""
    done = []
    for name in names or list(SHIPPED_CONFIGS):
        with tempfile.TemporaryDirectory() as tmp:
            path = train(SHIPPED_CONFIGS[name], name=name, runs_root=tmp)
            assert path is not None
            shutil.rmtree(target / name, ignore_errors=True)
            target.mkdir(parents=True, exist_ok=True)
            done.append(Path(shutil.copytree(path, target / name)))
        if name in KEEP_CHECKPOINTS:
            prune_checkpoints(target / name, KEEP_CHECKPOINTS[name])
        print(f"{name}: regenerated in {target / name}")
        precompute_results([name], target)
    return done


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Regenerates the shipped runs exactly.")
    parser.add_argument("names", nargs="*", help="runs (default: all)")
    parser.add_argument(
        "--results", action="store_true", help="only recompute their stored results"
    )
    options = parser.parse_args()
    if options.results:
        precompute_results(options.names or None)
    else:
        regenerate(options.names or None)
