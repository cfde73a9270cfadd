"""The HTML run report: one self-contained page per ``course-inventory run``.

Written to ``DATA_DIR/reports/<run id>.html`` with a copy as ``latest.html``. It shows, per
job: outcome and reason, rows per table with the change from the job's previous successful
run, HTTP requests by API/endpoint and status, retries and throttled responses, the
rate-limit room over time (chart) and the time spent in each phase (chart); then the
freshness of every data source.

Charts are drawn by matplotlib into inline SVG: the page has no JavaScript and loads
nothing (works offline, from a mail attachment or a file share). Whatever a run's
``job_run.details`` lacks (an older run, a job that records no phases, an HTTP layer
that keeps only counters) is said in words instead of charted.
"""

from __future__ import annotations

import html
import io
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from courseinv.db.engine import describe
from courseinv.runner.status import (
    Freshness,
    RunRecord,
    ago,
    freshness,
    previous_success,
    runs_of,
)
from sqlalchemy import Engine

DROP_WARN = 0.5  # a table that lost half its rows (or more) since the previous run is flagged


def write_report(engine: Engine, run_id: str, reports_dir: Path) -> Path:
    """Render the report of ``run_id``; write it and ``latest.html``; return its path."""
    # matplotlib keeps its font cache under MPLCONFIGDIR (default ~/.config/matplotlib); a
    # container user often has no writable home, so keep it beside the reports instead.
    os.environ.setdefault("MPLCONFIGDIR", str(reports_dir / ".matplotlib"))
    runs = runs_of(engine, run_id)
    previous = {r.id: previous_success(engine, r) for r in runs}
    page = render_report(run_id, runs, previous, freshness(engine), describe(engine))
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"{safe_name(run_id)}.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    latest_tmp = reports_dir / "latest.html.tmp"
    shutil.copyfile(path, latest_tmp)
    latest_tmp.replace(reports_dir / "latest.html")
    return path.resolve()


def safe_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id) or "run"


# -- the page ---------------------------------------------------------------------------


def render_report(
    run_id: str,
    runs: Sequence[RunRecord],
    previous: Mapping[int, RunRecord | None],
    sources: Sequence[Freshness],
    database: str,
    now: datetime | None = None,
) -> str:
    """The whole HTML page (a pure function of the records: testable without a database)."""
    now = now or max((r.finished_at or r.started_at for r in runs), default=datetime(1970, 1, 1))
    failed = [r for r in runs if r.status != "succeeded"]
    outcome = "no jobs ran" if not runs else ("FAILED" if failed else "succeeded")
    body = [
        _overview(run_id, runs, database, outcome),
        _phase_section(runs),
        *(_job_section(r, previous.get(r.id)) for r in runs),
        _freshness_section(sources, now),
    ]
    template = Template(
        resources.files("courseinv.runner").joinpath("templates/report.html").read_text("utf-8")
    )
    return template.substitute(
        title=_e(f"course-inventory run {run_id}: {outcome}"),
        outcome_class="failed" if failed or not runs else "succeeded",
        body="\n".join(body),
    )


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            # (text, css class) pairs carry a class; plain values are escaped text
            text, klass = cell if isinstance(cell, tuple) else (cell, "")
            cells.append(
                f'<td class="{klass}">{_e(text)}</td>' if klass else f"<td>{_e(text)}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _overview(run_id: str, runs: Sequence[RunRecord], database: str, outcome: str) -> str:
    started = min((r.started_at for r in runs), default=None)
    ends = [r.finished_at for r in runs if r.finished_at]
    finished = max(ends) if ends and len(ends) == len(runs) else None
    rows = []
    for r in runs:
        http = http_summary(r.details)
        status_cls = "ok" if r.status == "succeeded" else "bad"
        rows.append(
            [
                (r.job_name, "job"),
                (r.status, status_cls),
                _when(r.started_at),
                _seconds(r.seconds),
                _num(r.rows_written),
                _num(r.warnings),
                _num(r.requests),
                _num(http.get("retries")),
                _num(http.get("throttled")),
                r.reason or "",
            ]
        )
    facts = [
        ("run", run_id),
        ("outcome", outcome),
        ("started", _when(started)),
        ("finished", _when(finished)),
        ("host", ", ".join(sorted({r.host for r in runs if r.host})) or "-"),
        ("output database", database),
    ]
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    header = (
        "job",
        "outcome",
        "started",
        "duration",
        "rows written",
        "warnings",
        "requests",
        "retries",
        "throttled",
        "reason",
    )
    return (
        f'<section id="overview"><h1>course-inventory run <code>{_e(run_id)}</code></h1>'
        f'<dl class="facts">{dl}</dl>'
        + (_table(header, rows, "jobs") if runs else "<p>No job ran in this run.</p>")
        + "</section>"
    )


def _phase_section(runs: Sequence[RunRecord]) -> str:
    bars: list[tuple[str, float]] = []
    for r in runs:
        phases = r.details.get("phases") or []
        for p in phases:
            bars.append((f"{r.job_name}: {p.get('name')}", float(p.get("seconds") or 0.0)))
        if r.seconds is not None:
            outside = r.seconds - sum(float(p.get("seconds") or 0.0) for p in phases)
            if outside > 0.05 or not phases:
                label = "other (setup, imports)" if phases else "whole job (no phases recorded)"
                bars.append((f"{r.job_name}: {label}", max(0.0, outside)))
    body = (
        '<figure class="chart" id="chart-phases">'
        + charts.phase_chart(bars)
        + "<figcaption>Time spent in each phase (seconds)</figcaption></figure>"
        if bars
        else "<p>No timings recorded.</p>"
    )
    return f'<section id="phases"><h2>Time spent in each phase</h2>{body}</section>'


def _job_section(r: RunRecord, prev: RunRecord | None) -> str:
    status_cls = "ok" if r.status == "succeeded" else "bad"
    parts = [
        f'<section class="job" id="job-{_e(r.job_name)}">',
        f'<h2>{_e(r.job_name)} <span class="{status_cls}">{_e(r.status)}</span></h2>',
    ]
    if r.reason:
        parts.append(f'<p class="reason">Reason: {_e(r.reason)}</p>')
    parts.append(_rows_table(r, prev))
    parts.append(_http_block(r))
    parts.append("</section>")
    return "".join(parts)


def _rows_table(r: RunRecord, prev: RunRecord | None) -> str:
    now, before = r.tables, prev.tables if prev else {}
    if not now and not before:
        return "<h3>Rows per table</h3><p>No table was written.</p>"
    rows = []
    for table in sorted(set(now) | set(before)):
        new, old = now.get(table), before.get(table)
        rows.append([(table, "table"), _num(new), _num(old), change(new, old)])
    since = (
        f"Change compared with the job's previous successful run, #{prev.id} of "
        f"{_when(prev.started_at)}."
        if prev
        else "The job has no earlier successful run to compare with."
    )
    return f"<h3>Rows per table</h3><p>{_e(since)}</p>" + _table(
        ("table", "rows this run", "previous run", "change"), rows, "rows"
    )


def change(new: int | None, old: int | None) -> tuple[str, str]:
    """Text and class of the change in a table's rows; a big drop is flagged ``drop``."""
    if new is None:
        return ("not written this run", "muted")
    if old is None:
        return ("new", "")
    delta = new - old
    pct = f" ({delta / old:+.0%})" if old else ""
    klass = "drop" if old and new <= old * (1 - DROP_WARN) else ""
    return (f"{delta:+,}{pct}", klass)


def http_summary(details: Mapping[str, Any]) -> dict[str, Any]:
    """Counters (requests, retries, throttled, gave_up, ...) of a run's ``details``."""
    detail = details.get("http_detail")
    totals = detail.get("totals") if isinstance(detail, dict) else None
    http = totals if isinstance(totals, dict) else details.get("http")
    if not isinstance(http, dict):
        return {}
    return {k: v for k, v in http.items() if isinstance(v, int | float)}


def _http_block(r: RunRecord) -> str:
    detail = r.details.get("http_detail")
    detail = detail if isinstance(detail, dict) else {}
    counters = http_summary(r.details)
    out = ["<h3>HTTP requests</h3>"]
    if not counters:
        return out[0] + "<p>No HTTP statistics recorded.</p>"
    names = ["requests", "retries", "throttled", "gave_up"]
    names += sorted(k for k in counters if k not in names)
    out.append(_table(names, [[_num(counters.get(n, 0)) for n in names]], "counters"))
    by_endpoint = detail.get("requests")
    if isinstance(by_endpoint, list) and by_endpoint:
        rows = sorted(by_endpoint, key=lambda e: (-int(e.get("count", 0)), str(e.get("endpoint"))))
        out.append(
            _table(
                ("API", "endpoint", "status", "requests"),
                [
                    [
                        e.get("api"),
                        (e.get("endpoint"), "endpoint"),
                        _status_cell(e.get("status")),
                        _num(int(e.get("count", 0))),
                    ]
                    for e in rows
                ],
                "endpoints",
            )
        )
    else:
        out.append("<p>Requests by endpoint and status were not recorded for this run.</p>")
    series = detail.get("rate_limit")
    drawn = {
        api: points
        for api, points in (series if isinstance(series, dict) else {}).items()
        if isinstance(points, list) and points
    }
    if drawn:
        out.append(
            f'<figure class="chart" id="chart-room-{_e(r.job_name)}">'
            + charts.room_chart(drawn)
            + "<figcaption>Rate-limit room over the job (X-Rate-Limit-Remaining as reported, "
            "and the client's estimate)</figcaption></figure>"
        )
    else:
        out.append("<p>No rate-limit readings were recorded for this job.</p>")
    return "".join(out)


def _status_cell(status: Any) -> tuple[str, str]:
    text = str(status)
    if text.isdigit():
        return (text, "ok" if int(text) < 400 else ("warn" if int(text) in (403, 429) else "bad"))
    return (text, "bad")


def _freshness_section(sources: Sequence[Freshness], now: datetime) -> str:
    if not sources:
        return (
            '<section id="freshness"><h2>Data source freshness</h2><p>None recorded.</p></section>'
        )
    rows = [
        [(s.source, "source"), _when(s.updated_at), ago(now - s.updated_at), f"#{s.job_run_id}"]
        for s in sources
    ]
    return (
        '<section id="freshness"><h2>Data source freshness</h2>'
        + _table(("source", "data updated", "age at the end of the run", "job run"), rows, "fresh")
        + "</section>"
    )


class _Charts:
    """matplotlib figures rendered to inline SVG (imported only when a report is drawn)."""

    STYLE = {
        "svg.fonttype": "none",  # text stays text: smaller, selectable, searchable
        "svg.hashsalt": "course-inventory",  # stable ids: the same data gives the same SVG
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }

    def _svg(self, fig: Any) -> str:
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
        text = buf.getvalue()
        return text[text.index("<svg") :]

    def phase_chart(self, bars: list[tuple[str, float]]) -> str:
        from matplotlib import rc_context
        from matplotlib.figure import Figure

        with rc_context(self.STYLE):
            fig = Figure(figsize=(8, 0.35 * len(bars) + 0.9))
            ax = fig.add_subplot()
            labels = [b[0] for b in reversed(bars)]
            values = [b[1] for b in reversed(bars)]
            jobs = [label.split(":")[0] for label in labels]
            palette = {j: f"C{i}" for i, j in enumerate(dict.fromkeys(reversed(jobs)))}
            ax.barh(labels, values, color=[palette[j] for j in jobs])
            for y, value in enumerate(values):
                ax.annotate(
                    f"{value:.1f} s",
                    (value, y),
                    xytext=(3, 0),
                    textcoords="offset points",
                    va="center",
                )
            ax.set_xlabel("seconds")
            ax.margins(x=0.12)
            return self._svg(fig)

    def room_chart(self, series: Mapping[str, list[Mapping[str, Any]]]) -> str:
        from matplotlib import rc_context
        from matplotlib.figure import Figure

        with rc_context(self.STYLE):
            fig = Figure(figsize=(8, 3))
            ax = fig.add_subplot()
            for i, (api, points) in enumerate(sorted(series.items())):
                t = [float(p.get("t", 0.0)) for p in points]
                remaining = [p.get("remaining") for p in points]
                ax.plot(
                    t,
                    [float("nan") if v is None else v for v in remaining],
                    color=f"C{i}",
                    label=f"{api}: remaining (reported)",
                    lw=1.2,
                )
                estimate = [p.get("estimated_headroom") for p in points]
                if any(v is not None for v in estimate):
                    ax.plot(
                        t,
                        [float("nan") if v is None else v for v in estimate],
                        color=f"C{i}",
                        ls="--",
                        lw=1,
                        label=f"{api}: estimated room",
                    )
            ax.set_xlabel("seconds since the job started")
            ax.set_ylabel("rate-limit room")
            ax.set_ylim(bottom=0)
            ax.legend(loc="lower left", frameon=False)
            return self._svg(fig)


charts = _Charts()
