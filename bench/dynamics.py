"""The Training page's cost on the shipped ``cnn-shapes``: the grids, then the scrubber.

``grid_s``: computing (not reading from the store) one capture of every grid layer at every
checkpoint on 1,000 held-out samples, the layer x checkpoint CKA grid and the probe grid (label
and every factor). ``scrub_ms``: server time of one scrubber move once the grids are there
(Streamlit's AppTest reruns the page script; median over moves to every checkpoint, after one
warm pass). The last line is one JSON object of the figures.

    python bench/dynamics.py
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from core.models.runs import list_checkpoints, load_run
from core.training import recipes

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def grid_seconds(name: str = "cnn-shapes") -> dict[str, float]:
    """Seconds of each step of computing the grids, nothing read from the store."""
    run = load_run(name, device="cpu")
    times = {}
    start = time.perf_counter()
    states = recipes.checkpoint_states(run)
    captured = recipes.capture(run, "held_out", states=states)
    times["capture_s"] = time.perf_counter() - start
    for analysis in ("training.cka_to_final", "training.probe_grid"):
        begin = time.perf_counter()
        recipes.grid(run, analysis, states=states, captured=lambda: captured, store=False)
        times[analysis.split(".")[1] + "_s"] = time.perf_counter() - begin
    times["grid_s"] = time.perf_counter() - start
    times["checkpoints"] = len(states)
    times["layers"] = len(captured.layers)
    return times


def scrub_ms(name: str = "cnn-shapes") -> list[float]:
    """Server milliseconds of each scrubber move on the Training page (grids already there)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=600)
    at.query_params["run"] = name
    at.run()
    at.switch_page("pages/training.py").run()
    values = [c.value for c in list_checkpoints(load_run(name).info)]
    for value in values:  # warm: every checkpoint once
        at.select_slider(key="train_ckpt").set_value(value).run()
    moves = []
    for value in values:
        start = time.perf_counter()
        at.select_slider(key="train_ckpt").set_value(value).run()
        moves.append(1000 * (time.perf_counter() - start))
        assert not at.exception, at.exception
    return moves


def main() -> None:
    grid = grid_seconds()
    moves = scrub_ms()
    rows = [(k, f"{v:.2f}" if isinstance(v, float) else str(v)) for k, v in grid.items()]
    rows += [("scrub_ms (median)", f"{statistics.median(moves):.0f}"),
             ("scrub_ms (max)", f"{max(moves):.0f}")]  # fmt: skip
    for key, value in rows:
        print(f"{key:<24}{value:>10}")
    figures = {
        "threads": torch.get_num_threads(),
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in grid.items()},
        "scrub_ms": round(statistics.median(moves), 1),
        "scrub_ms_max": round(max(moves), 1),
        "scrub_moves": len(moves),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
