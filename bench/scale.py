"""Scale: a 50,000-point UMAP and its quality, extraction speed local vs Ray, a 1M-point map.

Usage: ``python bench/scale.py [--extract-n 8192] [--map-n 1000000] [--no-reference]``.
Prints a table, then as its last line one JSON object with ``umap_50k_s``,
``trustworthiness_50k`` (ours) and ``trustworthiness_50k_reference`` (a full umap-learn fit of
all 50,000 points, same settings), ``extract_local_img_per_s``, ``extract_ray_img_per_s``
(same machine, same model, same images; Ray's cluster start reported apart) and ``map_1m_s``
(1,000,000 points of a stored layer: project and draw the density image).

Conditions: Fashion-MNIST pixels (784 dims, PCA to 50), a stratified 50,000 of its 70,000;
umap-learn's kernels compiled before timing (the app compiles them at server start; the
compile is reported as ``umap_compile_s``). Trustworthiness (k = 10) is scikit-learn's, on a
stratified 5,000 of the 50,000, in the PCA-50 space both maps were made from. Wall times on
a shared machine are noisy: the load average at the start and end is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.data.datasets import load_dataset, make_shapes, stratified_sample  # noqa: E402
from core.extract.extract import extract  # noqa: E402
from core.projections.density import density_map  # noqa: E402
from core.projections.fits import umap_model, umap_slot, warm_up  # noqa: E402
from core.projections.large import FIT_N, project_large, project_store  # noqa: E402
from ui.figures.projections import category_colours, hex_colour, point_map  # noqa: E402


def umap_50k(reference: bool) -> dict:
    from sklearn.decomposition import PCA
    from sklearn.manifold import trustworthiness

    start = time.perf_counter()
    warm_up()
    out = {"umap_compile_s": time.perf_counter() - start}
    data = load_dataset("fashion-mnist", n=50_000, seed=0)
    x, y = data.images.reshape(len(data), -1), data.labels
    cpu = time.process_time()
    start = time.perf_counter()
    result = project_large(x, y, "UMAP", device="cpu")
    classes = list(data.info.class_names)
    hover = [classes[c] for c in y]
    point_map(result.coords, y, classes, hover, np.zeros(len(y), bool)).to_json()
    out["umap_50k_s"] = time.perf_counter() - start
    out["umap_50k_cpu_s"] = time.process_time() - cpu
    again = project_large(x, y, "UMAP", device="cpu")
    out["umap_50k_reproducible"] = bool(np.array_equal(again.coords, result.coords))
    out["umap_50k_how"] = result.describe()
    x50 = PCA(50, svd_solver="covariance_eigh", random_state=0).fit_transform(x)
    sub = stratified_sample(y, 5_000, 1)
    out["trustworthiness_50k"] = float(
        trustworthiness(x50[sub], result.coords[sub], n_neighbors=10)
    )
    if reference:
        start = time.perf_counter()
        with umap_slot():
            full = umap_model(2, 0, 15, 0.1).fit_transform(x50)
        out["umap_50k_reference_s"] = time.perf_counter() - start
        out["trustworthiness_50k_reference"] = float(
            trustworthiness(x50[sub], full[sub], n_neighbors=10)
        )
    return out


def extraction(n: int) -> dict:
    import ray

    data = make_shapes(n, seed=0)
    layers = ["block3", "head.flatten"]
    out: dict = {"extract_n": n}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        extract("cnn-shapes", layers, Path(tmp) / "local", dataset=data, progress=lambda *_: None)
        out["extract_local_img_per_s"] = n / (time.perf_counter() - start)
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})  # fmt: skip
        out["ray_start_s"] = time.perf_counter() - start
        try:
            start = time.perf_counter()
            store = extract(
                "cnn-shapes", layers, Path(tmp) / "ray", dataset=data, engine="ray", workers=2,
                progress=lambda *_: None,
            )  # fmt: skip
            out["extract_ray_img_per_s"] = n / (time.perf_counter() - start)
        finally:
            ray.shutdown()
        local = json.loads((Path(tmp) / "local" / "manifest.json").read_text())
        out["ray_equals_local"] = local["checksums"] == store.manifest["checksums"]
        out["store_bytes_per_image"] = {s.name: store.disk_bytes(s.array) / n for s in store.layers}
    return out


def map_1m(n: int) -> dict:
    out: dict = {"map_n": n}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        store = extract(
            "mlp-digits", ["relu2"], Path(tmp) / "store", data="shapes", n=n, seed=0,
            batch_size=4096, chunk_rows=65_536, progress=lambda *_: None,
        )  # fmt: skip
        out["map_1m_extract_s"] = time.perf_counter() - start
        start = time.perf_counter()
        result = project_store(store, "relu2", "UMAP", device="cpu")
        labels = store.read("labels")
        colours = [hex_colour(c) for c in category_colours(store.class_names)]
        density_map(result.coords, labels, colours)
        out["map_1m_s"] = time.perf_counter() - start
        out["map_1m_how"] = result.describe()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--extract-n", type=int, default=8192)
    parser.add_argument("--map-n", type=int, default=1_000_000)
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()
    load = [os.getloadavg()[0]]
    results = {"fit_n": FIT_N, "cores": os.cpu_count()}
    results |= umap_50k(not args.no_reference)
    results |= extraction(args.extract_n)
    if args.map_n:
        results |= map_1m(args.map_n)
    load.append(os.getloadavg()[0])
    results["load_average"] = load
    width = max(len(k) for k in results)
    for key, value in results.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
