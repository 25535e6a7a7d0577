"""Runs every benchmark in ``bench/`` in its own process and prints one table of their figures.

Each benchmark prints a readable table and, as its last line, one JSON object; this collects
those objects. The last line here is one JSON object keyed by benchmark.

    python bench/run_all.py [--only capture training ...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
QUICK_ARGS = {
    "capture": ["--repeats", "3"],
    "classroom": ["--sessions", "10"],
}
ORDER = ["capture", "training", "attribution", "projection", "views", "pages", "classroom"]


def run(name: str, extra: list[str]) -> dict[str, object]:
    """Runs ``bench/<name>.py`` and returns its last-line JSON (or an error entry)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *extra],
        cwd=BENCH.parent,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    print(done.stdout, end="")
    lines = done.stdout.strip().splitlines()
    try:
        figures = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    except json.JSONDecodeError:
        figures = None
    if figures is None:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    figures["wall_s"] = round(time.perf_counter() - start, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="benchmarks to run")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sessions")
    args = parser.parse_args()
    names = [n for n in ORDER if (BENCH / f"{n}.py").exists() and (not args.only or n in args.only)]
    results = {}
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        results[name] = run(name, QUICK_ARGS.get(name, []) if args.quick else [])
    print("\n=== summary ===")
    print(f"{'benchmark':<12} {'figure':<32} {'value':>12}")
    for name, figures in results.items():
        for key, value in figures.items():
            print(f"{name:<12} {key:<32} {value!s:>12}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
