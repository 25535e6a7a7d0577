"""Training ``cnn`` on ``shapes`` to the target accuracy, against a bare PyTorch loop.

Both run the same model, data, optimiser, schedule and number of steps in this process; the
bare loop has no progress callbacks, validation or checkpoints. The figure that matters is the
time until validation accuracy first reaches the target (95 %). The last line is one JSON
object of the figures.

    python bench/training.py [--epochs 4] [--target 0.95]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
import torch.nn.functional as F

from core.data.datasets import load_dataset, split_indices
from core.models.runs import read_run
from core.models.train import TrainConfig, train
from core.models.zoo import build_model


def bare_loop(config: TrainConfig) -> float:
    """Seconds for the same optimisation steps with nothing around them."""
    data = load_dataset(config.dataset, n=config.n_samples, seed=config.seed)
    splits = split_indices(len(data), config.seed)
    x = torch.from_numpy(data.images[splits.train])
    y = torch.from_numpy(data.labels[splits.train])
    torch.manual_seed(config.seed)
    model = build_model(config.model, data.info.input_shape, len(data.info.class_names))
    steps = len(x) // config.batch_size
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=config.epochs * steps, pct_start=0.25
    )
    model.train()
    start = time.perf_counter()
    for _ in range(config.epochs):
        order = torch.randperm(len(x))
        for step in range(steps):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--target", type=float, default=0.95)
    args = parser.parse_args()
    config = TrainConfig(model="cnn", dataset="shapes", epochs=args.epochs, device="cpu")
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        path = train(config, runs_root=root)
        total = time.perf_counter() - start
        info = read_run(path)
    reached = next((h for h in info.history if h["val_accuracy"] >= args.target), None)
    bare = bare_loop(config)
    loop_seconds = info.history[-1]["seconds"]
    figures = {
        "threads": torch.get_num_threads(),
        "epochs": args.epochs,
        "train_total_s": round(total, 2),
        "train_loop_s": round(loop_seconds, 2),
        "bare_loop_s": round(bare, 2),
        "loop_overhead_ratio": round(loop_seconds / bare, 3),
        "target": args.target,
        "epochs_to_target": reached["epoch"] if reached else None,
        "seconds_to_target": round(reached["seconds"], 2) if reached else None,
        "val_accuracy": round(info.history[-1]["val_accuracy"], 4),
        "test_accuracy": round(info.test_accuracy, 4),
    }
    print(f"{'what':<34} {'value':>10}")
    for key, value in figures.items():
        print(f"{key:<34} {value!s:>10}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
