"""``course-inventory status``: the latest runs per job and each data source's freshness.

Reads ``job_run`` and ``data_source_status`` only (it never migrates or writes). The same
readers feed the HTML run report (``report.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from courseinv.db.tables import data_source_status, job_run
from sqlalchemy import Engine, func, inspect, select

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class RunRecord:
    """One ``job_run`` row, its ``details`` JSON parsed (empty when absent or unreadable)."""

    id: int
    job_name: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    reason: str | None = None
    rows_written: int | None = None
    warnings: int | None = None
    requests: int | None = None
    run_id: str | None = None
    host: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def tables(self) -> dict[str, int]:
        tables = self.details.get("tables")
        return {str(k): int(v) for k, v in tables.items()} if isinstance(tables, dict) else {}

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "job": self.job_name,
            "status": self.status,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "seconds": self.seconds,
            "rows_written": self.rows_written,
            "tables": self.tables,
            "warnings": self.warnings,
            "requests": self.requests,
            "reason": self.reason,
            "host": self.host,
        }


@dataclass(frozen=True)
class Freshness:
    """How fresh one data source is: its newest ``data_updated_at`` and the run that said so."""

    source: str
    updated_at: datetime
    job_run_id: int

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {
            "source": self.source,
            "updated_at": iso(self.updated_at),
            "age_seconds": round((now - self.updated_at).total_seconds()),
            "job_run_id": self.job_run_id,
        }


def iso(value: datetime | None) -> str | None:
    """Naive UTC as ISO 8601 with ``Z``."""
    return None if value is None else value.replace(microsecond=0).isoformat() + "Z"


def parse_duration(text: str) -> timedelta:
    """``90m``, ``26h``, ``2d``, ``1w``, ``3600`` (seconds) as a timedelta."""
    match = DURATION.match(text)
    if not match:
        raise ValueError(f"expected a duration like 90m, 26h or 2d, got {text!r}")
    return timedelta(seconds=float(match.group(1)) * UNIT_SECONDS[match.group(2)])


def parse_since(text: str, now: datetime) -> datetime:
    """A naive UTC time: a duration back from now (``7d``) or an ISO date/time (UTC)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        message = f"expected a duration (7d) or an ISO date (2026-01-31), got {text!r}"
        raise ValueError(message) from None
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def has_history(engine: Engine) -> bool:
    """Whether the database has been migrated (``job_run`` exists); never creates a file."""
    url = engine.url
    file_db = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if file_db and not Path(str(url.database)).exists():
        return False
    return inspect(engine).has_table(job_run.name)


def _record(row: Any) -> RunRecord:
    try:
        details = json.loads(row.details) if row.details else {}
    except ValueError:
        details = {}
    return RunRecord(
        id=int(row.id),
        job_name=row.job_name,
        status=row.status,
        started_at=row.started_at,
        finished_at=row.finished_at,
        reason=row.reason,
        rows_written=row.rows_written,
        warnings=row.warnings,
        requests=row.requests,
        run_id=row.run_id,
        host=row.host,
        details=details if isinstance(details, dict) else {},
    )


def recent_runs(
    engine: Engine, *, since: datetime | None = None, limit: int | None = None
) -> list[RunRecord]:
    """Job runs, newest first, started at or after ``since``, at most ``limit``."""
    query = select(job_run).order_by(job_run.c.id.desc())
    if since is not None:
        query = query.where(job_run.c.started_at >= since)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [_record(r) for r in conn.execute(query)]


def latest_per_job(engine: Engine, jobs: Iterable[str] = ()) -> dict[str, RunRecord]:
    """The newest run of every job that ever ran (and of ``jobs``, when they did)."""
    newest = select(func.max(job_run.c.id)).group_by(job_run.c.job_name)
    query = select(job_run).where(job_run.c.id.in_(newest.scalar_subquery()))
    with engine.connect() as conn:
        found = {r.job_name: _record(r) for r in conn.execute(query)}
    order = [*jobs, *sorted(set(found) - set(jobs))]
    return {name: found[name] for name in order if name in found}


def runs_of(engine: Engine, run_id: str) -> list[RunRecord]:
    """The job runs of one ``course-inventory run``, in the order they ran."""
    query = select(job_run).where(job_run.c.run_id == run_id).order_by(job_run.c.id)
    with engine.connect() as conn:
        return [_record(r) for r in conn.execute(query)]


def previous_success(engine: Engine, record: RunRecord) -> RunRecord | None:
    """The newest earlier successful run of the same job (what "change" compares with)."""
    query = (
        select(job_run)
        .where(
            job_run.c.job_name == record.job_name,
            job_run.c.id < record.id,
            job_run.c.status == "succeeded",
        )
        .order_by(job_run.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return _record(row) if row is not None else None


def freshness(engine: Engine) -> list[Freshness]:
    """Per data source, the newest ``data_updated_at`` recorded (and by which job run).

    Read whole and reduced here: one row per source per run is a small table.
    """
    query = select(
        data_source_status.c.data_source_name,
        data_source_status.c.data_updated_at,
        data_source_status.c.job_run_id,
    )
    best: dict[str, Freshness] = {}
    with engine.connect() as conn:
        for name, updated, run_id in conn.execute(query):
            seen = best.get(name)
            if seen is None or (updated, run_id) > (seen.updated_at, seen.job_run_id):
                best[name] = Freshness(name, updated, int(run_id))
    return [best[k] for k in sorted(best)]


# -- the command ------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusReport:
    """What ``status`` shows; ``problems`` non-empty means exit code 1."""

    database: str
    now: datetime
    latest: dict[str, RunRecord]
    never_ran: list[str]
    history: list[RunRecord]
    sources: list[Freshness]
    problems: list[str]
    report: Path | None
    reports_dir: Path | None = None

    def run_report(self, record: RunRecord) -> Path | None:
        """The HTML report of the run ``record`` belonged to, when it exists."""
        if not record.run_id or self.reports_dir is None:
            return None
        from courseinv.runner.report import safe_name

        path = self.reports_dir / f"{safe_name(record.run_id)}.html"
        return path if path.exists() else None

    def _run_json(self, record: RunRecord) -> dict[str, Any]:
        report = self.run_report(record)
        return {**record.as_json(), "report": str(report) if report else None}

    def as_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "now": iso(self.now),
            "healthy": not self.problems,
            "problems": self.problems,
            "latest": [self._run_json(r) for r in self.latest.values()],
            "never_ran": self.never_ran,
            "runs": [self._run_json(r) for r in self.history],
            "sources": [s.as_json(self.now) for s in self.sources],
            "report": str(self.report) if self.report else None,
        }


def build_status(
    engine: Engine,
    *,
    database: str,
    jobs: Sequence[str],
    now: datetime,
    since: datetime | None,
    limit: int,
    max_age: timedelta | None,
    reports_dir: Path,
) -> StatusReport:
    """Collect the status; ``jobs`` are the configured ones (the probe's subject)."""
    if not has_history(engine):
        latest: dict[str, RunRecord] = {}
        history: list[RunRecord] = []
        sources: list[Freshness] = []
    else:
        latest = latest_per_job(engine, jobs)
        history = recent_runs(engine, since=since, limit=limit)
        sources = freshness(engine)
    never = [j for j in jobs if j not in latest]
    problems = _problems(latest, jobs, never, now, max_age)
    report = reports_dir / "latest.html"
    return StatusReport(database, now, latest, never, history, sources, problems,
                        report if report.exists() else None, reports_dir)  # fmt: skip


def _problems(
    latest: dict[str, RunRecord],
    jobs: Sequence[str],
    never: list[str],
    now: datetime,
    max_age: timedelta | None,
) -> list[str]:
    problems = []
    for name in jobs:
        record = latest.get(name)
        if record is None:
            continue
        if record.status == "failed":
            problems.append(f"{name}: the latest run (#{record.id}) failed: {record.reason}")
        elif max_age is not None and now - record.started_at > max_age:
            problems.append(
                f"{name}: the latest run started {ago(now - record.started_at)} ago, "
                f"longer than --max-age {ago(max_age)}"
            )
    if max_age is not None:
        problems.extend(f"{name}: never ran" for name in never)
    return problems


def ago(delta: timedelta) -> str:
    """``3d 4h``, ``2h 05m``, ``12m``, ``40s``."""
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "in the future"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m" if minutes else f"{secs}s"


def _when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 60 else ago(timedelta(seconds=seconds))


def _num(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _table(header: Sequence[str], rows: list[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    for row in rows:
        lines.append("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    return [line.rstrip() for line in lines]


RUN_HEADER = ("JOB", "RUN", "OUTCOME", "STARTED (UTC)", "FINISHED (UTC)", "DURATION", "ROWS",
              "WARNINGS", "REQUESTS", "REASON")  # fmt: skip


def _run_row(r: RunRecord) -> list[str]:
    reason = (r.reason or "").splitlines()[0] if r.reason else ""
    reason = reason if len(reason) <= 90 else reason[:87] + "..."
    return [r.job_name, f"#{r.id}", r.status, _when(r.started_at), _when(r.finished_at),
            _duration(r.seconds), _num(r.rows_written), _num(r.warnings), _num(r.requests),
            reason]  # fmt: skip


def render_text(status: StatusReport) -> str:
    """The status for a terminal."""
    out = [f"course-inventory status  (now {_when(status.now)} UTC, database {status.database})"]
    out += ["", "Latest run per job:"]
    if not status.latest:
        out.append("  no runs recorded yet")
    if status.latest or status.never_ran:
        rows = [_run_row(r) for r in status.latest.values()]
        rows += [[name, "-", "never ran", "-", "-", "-", "-", "-", "-", ""]
                 for name in status.never_ran]  # fmt: skip
        out += _table(RUN_HEADER, rows)
    out += ["", f"Recent runs ({len(status.history)} shown, newest first):"]
    out += (
        _table(RUN_HEADER, [_run_row(r) for r in status.history])
        if status.history
        else ["  none in this window"]
    )
    out += ["", "Data source freshness:"]
    if status.sources:
        out += _table(
            ("SOURCE", "DATA UPDATED (UTC)", "AGE", "JOB RUN"),
            [[s.source, _when(s.updated_at), ago(status.now - s.updated_at), f"#{s.job_run_id}"]
             for s in status.sources],
        )  # fmt: skip
    else:
        out.append("  no data source has reported yet")
    out += ["", f"Run report: {status.report or 'none yet'}"]
    if status.problems:
        out += ["", "PROBLEMS:", *(f"  - {p}" for p in status.problems)]
    elif status.never_ran:
        out += ["", f"OK so far: no failed run; never ran: {', '.join(status.never_ran)}"]
    else:
        out += ["", "OK: every configured job's latest run succeeded"]
    return "\n".join(out)
