"""An :class:`core.audit.report.Audit` as files: a self-contained ``report.html`` and an
``evidence.zip`` of every table as CSV, with the settings, hashes and library versions.

The HTML opens offline: plotly's JavaScript is inlined once in the head and each chart is a
``<div>`` drawn by it; nothing is fetched from the network. Both files are deterministic: the
same audit gives the same bytes (chart ids are numbered, zip members carry a fixed date and
come in a fixed order), so two runs of ``python -m core.audit`` can be compared byte for byte.

The charts are :mod:`core.audit.figures`'s (plain plotly, no streamlit), so the report and the
page draw the same figures. What can go wrong: an unwritable ``out`` folder raises ``OSError``;
nothing half-written is left (:func:`core.files.write_bytes` is atomic).
"""

from __future__ import annotations

import csv
import html
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.audit.report import Audit, AuditSettings, Section, Table, build_audit
from core.files import write_bytes
from core.models.runs import LoadedRun

ZIP_DATE = (2020, 1, 1, 0, 0, 0)
"""The date of every member of ``evidence.zip`` (so that equal audits give equal bytes)."""
SHOWN_ROWS = 40
"""Rows of a table shown in the HTML; the CSV in the zip has them all."""
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.problem{background:#fff3cd;border:1px solid #e0c36a;padding:.6em 1em}
.finding{margin:.3em 0} code{font-size:12px}
"""


def table_csv(table: Table) -> str:
    """The table as CSV text (floats in full precision)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    return out.getvalue()


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"


def evidence_files(audit: Audit) -> dict[str, str]:
    """Name -> text of every evidence file: provenance, findings, and each table as CSV."""
    files = {
        "provenance.json": _json(audit.meta),
        "findings.json": _json([{"text": f.text, "section": f.section} for f in audit.findings]),
        "sections.json": _json(
            [
                {"key": s.key, "title": s.title, "text": s.text, "problem": s.problem}
                for s in audit.sections
            ]
        ),
    }
    for section in audit.sections:
        for table in section.tables:
            files[f"{table.name}.csv"] = table_csv(table)
    return files


def evidence_zip(audit: Audit) -> bytes:
    """``evidence.zip``'s bytes (deterministic)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in evidence_files(audit).items():
            info = zipfile.ZipInfo(f"evidence/{name}", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text)
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
        for row in table.rows[:SHOWN_ROWS]
    )
    more = len(table.rows) - SHOWN_ROWS
    note = f"<p>… {more} more rows in <code>{table.name}.csv</code>.</p>" if more > 0 else ""
    return f"<p><code>{table.name}.csv</code></p><table><tr>{head}</tr>{body}</table>{note}"


def _figures(section: Section) -> list[Any]:
    from core.audit import figures

    data = section.data
    if section.key == "accuracy":
        rows = [("independent", data["predictions"])]
        if data["shortcut"] is not None:
            rows.append(("aligned", data["shortcut"].aligned))
        return [figures.accuracy_chart(rows)]
    if section.key == "slices":
        return [figures.slice_chart(data["slices"], data["names"])]
    if section.key == "concepts":
        return [figures.concept_chart(t, c, k) for c, k, t in data["tests"]]
    return []


def report_html(audit: Audit) -> str:
    """The whole report as one HTML page (plotly inlined once)."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    count = 0

    def chart(fig: Any) -> str:
        nonlocal count
        count += 1
        return pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=False,
            div_id=f"chart-{count}",
            config={"displaylogo": False, "responsive": True},
        )

    parts = [
        f"<h1>Audit of {html.escape(audit.run)}</h1>",
        "<h2 id='findings'>Findings</h2><ul>",
        *(
            f"<li class='finding'>{html.escape(f.text)} <a href='#{f.section}'>evidence</a></li>"
            for f in audit.findings
        ),
        "</ul>",
        "<h2 id='settings'>Settings, seeds and provenance</h2>",
        "<p>Every number below comes from these settings; the evidence zip holds them as "
        "<code>provenance.json</code>.</p>",
        _table_html(Table("settings", ("setting", "value"), tuple(audit.meta["settings"].items()))),
        _table_html(
            Table(
                "provenance",
                ("item", "value"),
                tuple(
                    (k, v)
                    for k, v in audit.meta.items()
                    if k not in ("settings", "versions", "dataset")
                )
                + tuple((f"version of {k}", v) for k, v in audit.meta["versions"].items()),
            )
        ),
    ]
    for section in audit.sections:
        parts.append(f"<h2 id='{section.key}'>{html.escape(section.title)}</h2>")
        if section.problem:
            parts.append(
                f"<p class='problem'>This part could not be made: "
                f"{html.escape(section.problem)}</p>"
            )
            continue
        parts.append(f"<p>{html.escape(section.text)}</p>")
        parts += [chart(fig) for fig in _figures(section)]
        parts += [_table_html(t) for t in section.tables]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Audit of {html.escape(audit.run)}</title><style>{STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )


def audit_files(
    name: str,
    settings: AuditSettings | None = None,
    *,
    loaded: LoadedRun | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[bytes, bytes]:
    """Audits run ``name`` (:func:`core.audit.report.build_audit`) and returns the bytes of
    ``report.html`` and ``evidence.zip``: what the app's audit button offers for download."""
    audit = build_audit(name, settings, loaded=loaded, progress=progress)
    return report_html(audit).encode(), evidence_zip(audit)


def write_report(audit: Audit, out: str | Path) -> tuple[Path, Path]:
    """Writes ``report.html`` and ``evidence.zip`` into ``out`` (made if missing)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    page = write_bytes(out / "report.html", report_html(audit).encode())
    evidence = write_bytes(out / "evidence.zip", evidence_zip(audit))
    return page, evidence
