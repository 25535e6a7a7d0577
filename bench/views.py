"""First-open time of each view on the shipped runs: what a page computes before it has content.

Each view runs in a fresh process (imports done first, as on a running server), calling the
same ``ui.cache`` functions its page calls, with the page's defaults. Two figures per view:
``load`` (the run's model and dataset, which the server's warm-up does for the default run)
and ``view`` (everything the view computes before its content shows, from an empty cache).
Where a view shows a stand-in first (projections), ``first content`` is the stand-in.

    python bench/views.py [--only report depth ...] [--no-store]

``--no-store`` ignores the runs' stored results (``make assets``): what a first open costs for
a run without them, or for settings other than the defaults.

The last line is one JSON object: ``{"<view>_load_s": .., "<view>_content_s": ..,
"<view>_view_s": ..}`` for each view.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VIEWS = {
    "home": "cnn-shapes",
    "feature_maps": "cnn-shapes",
    "top_examples": "cnn-shapes",
    "feature_vis": "cnn-shapes",
    "projection": "cnn-shapes",
    "projection_layer_change": "cnn-shapes",
    "depth": "cnn-shapes",
    "report": "cnn-shapes",
    "report_vit": "vit-shapes",
    "report_mlp": "mlp-digits",
    "attention": "vit-shapes",
}


def _view(view: str, run: str, store: bool = True) -> dict[str, float]:
    """Times one view in this process."""
    logging.disable(logging.WARNING)  # cached calls outside a session warn; that is the point
    from core.analysis import Inputs
    from core.feature_maps import maps as fmaps
    from core.feature_maps import top_examples as topk
    from core.feature_maps import visualisation as fvis
    from core.models import precompute
    from ui import cache, fits

    if not store:
        precompute.load = lambda *args, **kwargs: None

    start = time.perf_counter()
    cache.loaded_run(run)
    cache.layers(run)
    load = time.perf_counter() - start
    start = time.perf_counter()
    content = None
    if view == "home":
        cache.predictions(run, "test")
        cache.predictions(run, "val")
    elif view == "feature_maps":
        options = fmaps.SampleMapsOptions()
        cache.analysis(run, "feature_maps.sample_maps", Inputs.sample(0), options)
    elif view == "top_examples":
        stats = topk.ChannelStatsOptions("block1.conv1")
        cache.analysis(run, "feature_maps.channel_stats", topk.RANKED, stats)
        field = topk.ReceptiveFieldOptions("block1.conv1")
        cache.analysis(run, "feature_maps.receptive_field", fmaps.SHAPE_INPUTS, field)
    elif view == "feature_vis":
        options = fvis.FeatureVisOptions("block1.conv1", 0)
        cache.analysis(run, "feature_maps.feature_vis", fvis.COLOUR_INPUTS, options)
    elif view in ("projection", "projection_layer_change"):
        layer = "head.pool" if view == "projection" else "block2.pool"
        if view == "projection_layer_change":  # the default layer was shown already
            fits.feature_info(run, "head.pool", 2000)
            fits.projection(run, "head.pool", 2000, "UMAP", 2)
            start = time.perf_counter()
        cache.projection_samples(run, 2000)
        cache.sample_predictions(run, 2000)
        fits.feature_info(run, layer, 2000)
        if not fits.projection_ready(run, layer, 2000, "UMAP", 2):
            fits.projection(run, layer, 2000, "PCA", 2)
        content = time.perf_counter() - start
        fits.projection(run, layer, 2000, "UMAP", 2)
    elif view == "depth":
        cache.projection_samples(run, 1000)
        cache.sample_predictions(run, 1000)
        fits.depth_projection(run, tuple(fits.report_layers(run)), 1000, "PCA")
    elif view.startswith("report"):
        fits.report(run, 1000)
        fits.report(run, 1000, "random")
        fits.report_cka(run, 1000)
        fits.report_cka(run, 1000, "random")
    elif view == "attention":
        cache.analysis(run, "attention.maps", Inputs.sample(0))
        cache.analysis(run, "attention.head_statistics", Inputs(split="val"))
    total = time.perf_counter() - start
    return {
        "load_s": round(load, 2),
        "view_s": round(total, 2),
        "content_s": round(total if content is None else content, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="views to time")
    parser.add_argument("--no-store", action="store_true", help="ignore stored results")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_view(args.one, VIEWS[args.one], store=not args.no_store)))
        return
    figures: dict[str, dict[str, float]] = {}
    print(f"{'view':<26}{'run':<12}{'load':>8}{'content':>10}{'complete':>10}")
    for view in args.only or VIEWS:
        done = subprocess.run(
            [sys.executable, __file__, "--one", view, *(["--no-store"] if args.no_store else [])],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            print(f"{view:<26}failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:100]}")
            continue
        figures[view] = json.loads(lines[-1])
        f = figures[view]
        print(
            f"{view:<26}{VIEWS[view]:<12}{f['load_s']:>7.1f}s{f['content_s']:>9.1f}s"
            f"{f['view_s']:>9.1f}s",
            flush=True,
        )
    print(json.dumps({f"{v}_{k}": x for v, f in figures.items() for k, x in f.items()}))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
