"""Projection latency: fresh-process first projection and first UMAP, warm overhead, 50k points.

Usage: ``python bench/projection.py [--n 5000] [--big 50000 | --big 0]``. Prints a table, then
as its last line one JSON object. "Fresh process" figures run in subprocesses that start the
UMAP warm-up thread at time zero, as the app does at server start, then ask at once for the
first projection (a PCA stand-in) and for UMAP. Wall times on a shared machine are noisy; CPU
times are given beside them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FRESH = """
import time, sys, json, threading
start = time.perf_counter()
import numpy as np
from core.projections import fits as projection
from ui.figures import projections as figs
threading.Thread(target=projection.warm_up, daemon=True).start()  # what the app does at start
x = np.load(sys.argv[1])
labels = np.arange(len(x)) % 6
hover = [str(i) for i in range(len(x))]
none = np.zeros(len(x), bool)
def draw(p):
    figs.point_map(p.coords, labels, list("abcdef"), hover, none).to_json()
draw(projection.project(x, "PCA"))
first = time.perf_counter() - start
draw(projection.project(x, "UMAP"))
print(json.dumps({"first_projection_s": first, "first_umap_s": time.perf_counter() - start,
                  "cpu_s": time.process_time()}))
"""

DIRECT = """
import time, sys, json
start = time.perf_counter()
import numpy as np, umap
x = np.load(sys.argv[1])
umap.UMAP(random_state=0).fit_transform(x)
print(json.dumps({"umap_learn_fresh_s": time.perf_counter() - start}))
"""


def fresh(code: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def features(n: int) -> np.ndarray:
    """A real layer: ``head.pool`` of the shipped cnn-shapes over n samples (64 dims)."""
    from core.analysis import Batch
    from core.data.datasets import stratified_sample
    from core.models import runs
    from core.projections.features import FeatureOptions, layer_features

    run = runs.load_run("cnn-shapes")
    idx = stratified_sample(run.dataset.labels, n, 0)
    batch = Batch(run.dataset.images[idx], run.dataset.labels[idx])
    return layer_features(run.model, batch, FeatureOptions("head.pool", max_dims=64)).features


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--big", type=int, default=50_000, help="Fashion-MNIST points; 0 skips")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import umap

    from core.projections import fits as projection

    rows: list[tuple[str, str]] = []
    result: dict[str, float] = {}
    x = features(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, x)
        result.update(fresh(FRESH, path))
        result.update(fresh(DIRECT, path))
    rows += [
        (
            f"fresh process, {args.n:,} pts: first projection drawn (PCA stand-in)",
            f"{result['first_projection_s']:.1f} s",
        ),
        (
            f"fresh process, {args.n:,} pts: UMAP ready (warm-up started at t=0)",
            f"{result['first_umap_s']:.1f} s",
        ),
        (
            f"fresh process, {args.n:,} pts: umap-learn alone, cold",
            f"{result['umap_learn_fresh_s']:.1f} s",
        ),
    ]

    projection.warm_up()
    x50 = x[:, :50].copy()
    knn = projection.exact_knn(x50, 15)

    def direct() -> None:
        umap.UMAP(random_state=0).fit_transform(x50)

    def same_graph() -> None:
        projection.umap_model(2, 0, 15, 0.1, precomputed_knn=knn).fit_transform(x50)

    def app() -> None:
        projection.project(x50, "UMAP")

    direct()  # compiles pynndescent for this process
    times = {"app": [], "umap-learn": [], "umap-learn, same graph": []}
    for _ in range(args.repeats):
        for name, fn in (
            ("app", app),
            ("umap-learn", direct),
            ("umap-learn, same graph", same_graph),
        ):
            times[name].append(timed(fn))
    med = {
        k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for k, v in times.items()
    }
    for name, (wall, cpu) in med.items():
        rows.append((f"warm UMAP, {args.n:,} x 50: {name}", f"{wall:.2f} s wall, {cpu:.2f} s CPU"))
    result["umap_overhead_ratio"] = med["app"][0] / med["umap-learn"][0]
    result["umap_overhead_ratio_cpu"] = med["app"][1] / med["umap-learn"][1]
    result["umap_overhead_ratio_same_graph"] = med["app"][0] / med["umap-learn, same graph"][0]

    if args.big:
        from core.data.datasets import load_dataset, stratified_sample
        from ui.figures import projections as figs

        data = load_dataset("fashion-mnist")
        idx = stratified_sample(data.labels, args.big, 0)
        pixels = data.images[idx].reshape(len(idx), -1)

        def big() -> None:
            p = projection.project(pixels, "UMAP")
            figs.point_map(
                p.coords,
                data.labels[idx],
                list(data.info.class_names),
                [str(i) for i in idx],
                np.zeros(len(idx), bool),
            ).to_json()

        wall, cpu = timed(big)
        result["big_umap_drawn_s"] = wall
        rows.append(
            (
                f"Fashion-MNIST {args.big:,} pts (784 -> PCA 50), UMAP + WebGL figure",
                f"{wall:.1f} s wall, {cpu:.1f} s CPU",
            )
        )

    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps({k: round(v, 3) for k, v in result.items()}))


if __name__ == "__main__":
    main()
