"""First visits to a freshly started server: how long each page takes to finish its script.

Starts the app (``ui.serve.launch``: the warm-up begins with the server), then, as soon as it
answers, opens each page in a new protocol-level tab (``bench/streamlit_client.py``) one
after the other, as a first visitor touring the app would, and times each from the request to
``script_finished``. Every figure is a first open on that server: nothing was computed before
except what the warm-up did meanwhile. The last line is one JSON object of the figures.

    python bench/first_visit.py [--pages home report ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from streamlit_client import StreamlitTab  # noqa: E402

from ui.serve import free_port, launch  # noqa: E402

VISITS = [  # name, page, query
    ("home", "", "run=cnn-shapes"),
    ("feature_maps", "feature_maps", "run=cnn-shapes"),
    ("projections_map", "projections", "run=cnn-shapes"),
    ("projections_depth", "projections", "run=cnn-shapes&proj_view=Across+depth"),
    ("report_card", "projections", "run=cnn-shapes&proj_view=Layer+report+card"),
    ("attention", "attention", "run=vit-shapes"),
    ("report_card_vit", "projections", "run=vit-shapes&proj_view=Layer+report+card"),
    ("projections_mlp", "projections", "run=mlp-digits"),
    ("attributions", "attributions", "run=cnn-shapes"),
]


async def tour(host_port: str, names: list[str]) -> dict[str, float]:
    figures: dict[str, float] = {}
    for name, page, query in VISITS:
        if names and name not in names:
            continue
        tab = StreamlitTab(host_port, timeout=600)
        result = await tab.open(page, query)
        if name == "projections_map" and result.ok:  # then change the layer once
            figures["projections_map_s"] = round(result.seconds, 2)
            print(f"{name:<26}{result.seconds:>6.1f} s  {result.status}", flush=True)
            name = "projections_layer_change"
            result = await tab.set_selectbox("Layer", "block2.pool")
        await tab.close()
        figures[f"{name}_s"] = round(result.seconds, 2)
        problems = "; ".join(result.problems)[:160]
        boxes = ", ".join(sorted(tab.selectboxes))[:70]  # which view it drew
        print(
            f"{name:<26}{result.seconds:>6.1f} s  {result.status} {problems} [{boxes}]", flush=True
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", nargs="*", default=[], help="visits to make (default all)")
    args = parser.parse_args()
    port = free_port()
    start = time.perf_counter()
    server = launch(port, timeout=300)
    healthy = time.perf_counter() - start
    print(f"{'server healthy':<26}{healthy:>6.1f} s", flush=True)
    try:
        figures = asyncio.run(tour(f"127.0.0.1:{port}", args.pages))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps({"healthy_s": round(healthy, 2), **figures}))


if __name__ == "__main__":
    main()
