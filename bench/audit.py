"""Audit report time: ``python -m core.audit`` for a run, section by section, on the CPU.

Usage: ``python bench/audit.py [RUN ...] [--threads N] [--out DIR]`` (default ``cnn-shapes``
and ``cnn-shapes-shortcut``, torch's default threads). Times loading, each section, and
writing the two files, with the default :class:`core.audit.report.AuditSettings`; the
target is at most 90 s for ``cnn-shapes`` on 2 CPU cores. The shipped runs' stored report
card is read, not recomputed (as the app and the command do). Prints a table, then as its
last line one JSON object whose ``audit_s`` is the first run's total wall time (and
``audit_cpu_s`` its CPU time, the fairer figure on a loaded machine).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.audit.html import write_report  # noqa: E402
from core.audit.report import build_audit  # noqa: E402


def measure(name: str, out: Path) -> dict[str, float]:
    """Seconds for each section of ``name``'s audit, its writing and the total."""
    marks: list[tuple[str, float]] = []
    cpu = _cpu()
    start = time.perf_counter()
    audit = build_audit(name, status=lambda title: marks.append((title, time.perf_counter())))
    built = time.perf_counter()
    write_report(audit, out / name)
    end = time.perf_counter()
    times = {"load": marks[0][1] - start}
    for (title, t0), (_, t1) in zip(marks, [*marks[1:], ("", built)], strict=True):
        times[title] = t1 - t0
    problems = [s.key for s in audit.sections if s.problem]
    return {
        **times,
        "write": end - built,
        "total": end - start,
        "cpu": _cpu() - cpu,
        "problems": problems,
    }


def _cpu() -> float:
    """CPU seconds (user + system, all threads) this process has used: on a shared, loaded
    machine a better measure of the work than the wall clock."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="*", default=["cnn-shapes", "cnn-shapes-shortcut"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="keep the reports here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        results = {name: measure(name, out) for name in args.runs}
    print(f"CPU, {torch.get_num_threads()} torch threads")
    for name, times in results.items():
        print(f"\n{name}")
        for part, seconds in times.items():
            if part not in ("problems", "cpu"):
                print(f"  {part:<36}{seconds:8.1f} s")
        print(f"  {'CPU time (all threads)':<36}{times['cpu']:8.1f} s")
        print(f"  parts that could not be made: {times['problems'] or 'none'}")
    first = results[args.runs[0]]
    print(
        json.dumps(
            {
                "threads": torch.get_num_threads(),
                "run": args.runs[0],
                "audit_s": round(first["total"], 2),
                "audit_cpu_s": round(first["cpu"], 2),
                "runs": {n: round(t["total"], 2) for n, t in results.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
