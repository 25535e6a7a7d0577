"""Attribution latency: ms per image for every method, beside a plain forward + backward.

Usage: ``python bench/attribution.py [--repeats 3] [--threads N]``. Measures the shipped
``cnn-shapes`` (32x32) and a randomly initialised ``tv:resnet18`` at 224x224, on the CPU, with
the default :class:`core.attribution.AttributionOptions` (IG 32 steps, GradientSHAP 16 samples,
internal batch 16, occlusion window H/8 and stride H/16). The baseline (one forward and one
backward of the target logit for one image) is timed in the same loop as each method, so the
ratio survives a noisy shared machine. Prints a table, then as its last line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.attributions.methods import METHODS, AttributionOptions, attribute  # noqa: E402
from core.models.runs import load_run  # noqa: E402
from core.models.zoo import build_model  # noqa: E402


def forward_backward_ms(model: torch.nn.Module, image: torch.Tensor) -> float:
    """One forward and one backward of the top logit for one image, in ms."""
    x = image[None].clone().requires_grad_(True)
    start = time.perf_counter()
    logits = model(x)
    logits[0, int(logits.argmax())].backward()
    return (time.perf_counter() - start) * 1000


def measure(
    model: torch.nn.Module, image: torch.Tensor, repeats: int
) -> dict[str, dict[str, float]]:
    options = AttributionOptions()
    rows = {}
    for method in METHODS:
        attribute(model, image, method, options)  # warm-up (fx rewrite, captum imports)
        ours, base = [], []
        for _ in range(repeats):
            base.append(forward_backward_ms(model, image))
            ours.append(attribute(model, image, method, options).seconds * 1000)
        rows[method] = {"ms": statistics.median(ours), "baseline_ms": statistics.median(base)}
        rows[method]["x_baseline"] = rows[method]["ms"] / rows[method]["baseline_ms"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run = load_run("cnn-shapes", device="cpu")
    cnn_image = torch.as_tensor(run.dataset.images[run.splits.val[0]])
    torch.manual_seed(0)
    resnet = build_model("tv:resnet18", (3, 224, 224), 6)
    resnet_image = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(0))
    figures = {
        "cnn-shapes (32x32)": measure(run.model, cnn_image, args.repeats),
        "tv:resnet18 (224x224, random)": measure(resnet, resnet_image, args.repeats),
    }
    print(f"CPU, {torch.get_num_threads()} torch threads, median of {args.repeats}")
    for model_name, rows in figures.items():
        print(f"\n{model_name}")
        print(f"{'method':<24}{'ms/image':>12}{'fwd+bwd ms':>12}{'x fwd+bwd':>12}")
        for method, row in rows.items():
            print(
                f"{METHODS[method]:<24}{row['ms']:>12.1f}{row['baseline_ms']:>12.1f}"
                f"{row['x_baseline']:>12.1f}"
            )
    print(json.dumps({"threads": torch.get_num_threads(), "repeats": args.repeats, **figures}))


if __name__ == "__main__":
    main()
