"""Capturing every layer vs a plain forward pass, side by side in one process.

For ``cnn`` and ``tv:resnet18`` (64x64 input, batch 256, random weights): the median time of a
plain forward pass, of :func:`core.activations.capture` over every layer, and their ratio, in
wall time (``*_ratio``) and in process CPU time (``*_cpu_ratio``, steadier on a shared machine).
The last line is one JSON object of the figures.

    python bench/capture.py [--batch 256] [--size 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from core.activations import capture, list_layers
from core.models.zoo import build_model


def median_seconds(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    shape = (3, args.size, args.size)
    x = torch.rand(args.batch, *shape)
    figures: dict[str, float] = {"batch": args.batch, "size": args.size}
    print(
        f"{'model':<12} {'layers':>6} {'forward ms':>11} {'capture ms':>11} {'ratio':>6} "
        f"{'cpu ratio':>9}"
    )
    for arch, key in (("cnn", "cnn"), ("tv:resnet18", "resnet18")):
        model = build_model(arch, shape, 10)
        names = [layer.name for layer in list_layers(model, shape)]

        def forward(model=model) -> None:
            with torch.no_grad():
                model(x)

        def hooked(model=model, names=names) -> None:
            capture(model, x, names)

        # Interleave to share any drift in machine load between the two.
        plain, captured = [], []
        for _ in range(2):
            plain.append(median_seconds(forward, args.repeats))
            captured.append(median_seconds(hooked, args.repeats))
        t_plain, t_capture = min(p[0] for p in plain), min(c[0] for c in captured)
        cpu_ratio = min(c[1] for c in captured) / min(p[1] for p in plain)
        ratio = t_capture / t_plain
        figures.update(
            {
                f"{key}_forward_ms": round(t_plain * 1e3, 1),
                f"{key}_capture_ms": round(t_capture * 1e3, 1),
                f"{key}_layers": len(names),
                f"{key}_ratio": round(ratio, 3),
                f"{key}_cpu_ratio": round(cpu_ratio, 3),
            }
        )
        print(
            f"{arch:<12} {len(names):>6} {t_plain * 1e3:>11.1f} {t_capture * 1e3:>11.1f} "
            f"{ratio:>6.2f} {cpu_ratio:>9.2f}"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
