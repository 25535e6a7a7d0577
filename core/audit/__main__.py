"""``python -m core.audit RUN --out DIR``: the audit report without a browser or Streamlit.

Writes ``DIR/report.html`` and ``DIR/evidence.zip`` (see :mod:`core.audit.html`), showing a
progress line on stderr. Exit status 0 when written (parts that could not be made are named in
the report), 2 when the run does not exist or its ``run.json`` cannot be read.
"""

from __future__ import annotations

import argparse
import sys
import time

from core.audit.html import write_report
from core.audit.report import AuditSettings, build_audit
from core.models.runs import RunError


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m core.audit", description=__doc__)
    parser.add_argument("run", help="a run's name (yours or a shipped one)")
    parser.add_argument("--out", default="audit-out", help="folder for the two files")
    parser.add_argument("--method", default="fastcav", choices=("fastcav", "tcav"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    state = {"title": "loading the run", "done": 0.0}

    def show() -> None:
        elapsed = time.perf_counter() - started
        line = f"\r[{state['done']:6.1%}] {elapsed:5.0f} s  {state['title']:<40}"
        print(line, end="", file=sys.stderr, flush=True)

    def status(title: str) -> None:
        state["title"] = title
        show()

    def progress(done: int, total: int) -> None:
        state["done"] = done / total
        show()

    settings = AuditSettings(concept_method=args.method, seed=args.seed)
    try:
        audit = build_audit(args.run, settings, progress=progress, status=status)
    except RunError as err:
        print(f"\n{err}", file=sys.stderr)
        return 2
    page, evidence = write_report(audit, args.out)
    print(file=sys.stderr)
    for finding in audit.findings:
        print(f"- {finding.text}")
    print(f"Wrote {page} and {evidence} in {time.perf_counter() - started:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
