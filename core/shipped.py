"""The runs that ship in ``assets/runs``, and the command that regenerates them exactly.

``python -m core.shipped`` retrains each from its config on the CPU (deterministic: the
weights hash comes out the same) and replaces the folder. Per-epoch checkpoints are float16,
which keeps all three under 5 MB.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from core.runs import SHIPPED_RUNS
from core.train import TrainConfig, train

SHIPPED_CONFIGS = {
    "cnn-shapes": TrainConfig(model="cnn", dataset="shapes", epochs=4, device="cpu"),
    "vit-shapes": TrainConfig(
        model="vit",
        dataset="shapes",
        n_samples=20_000,
        epochs=15,
        batch_size=128,
        lr=1e-3,
        weight_decay=0.05,
        device="cpu",
    ),
    "mlp-digits": TrainConfig(model="mlp", dataset="digits", epochs=6, batch_size=32, device="cpu"),
}


def regenerate(names: list[str] | None = None, target: Path = SHIPPED_RUNS) -> list[Path]:
    """Retrains the shipped runs ``names`` (default all) into ``target``."""
    done = []
    for name in names or list(SHIPPED_CONFIGS):
        with tempfile.TemporaryDirectory() as tmp:
            path = train(SHIPPED_CONFIGS[name], name=name, runs_root=tmp)
            assert path is not None
            shutil.rmtree(target / name, ignore_errors=True)
            target.mkdir(parents=True, exist_ok=True)
            done.append(Path(shutil.copytree(path, target / name)))
        print(f"{name}: regenerated in {target / name}")
    return done


if __name__ == "__main__":
    import sys

    regenerate(sys.argv[1:] or None)
