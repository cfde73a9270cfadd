"""Run the configured jobs, each in isolation, recording every attempt in ``job_run``."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from courseinv.config import Config
from courseinv.db.engine import describe, output_engine, wait_for_db
from courseinv.db.errors import is_db_error, short_db_reason
from courseinv.db.migrate import migrate
from courseinv.db.tables import data_source_status, job_run
from courseinv.http_client.session import Stats, collect_stats
from courseinv.runner.jobs import DataSourceStatus, JobContext, JobError, resolve_job
from courseinv.runner.logs import job_scope, redactor
from sqlalchemy import Engine, insert, update

log = logging.getLogger(__name__)

REASON_MAX = 1000


@dataclass(frozen=True)
class JobOutcome:
    name: str
    succeeded: bool
    seconds: float
    reason: str | None = None
    rows_written: dict[str, int] = field(default_factory=dict)
    warnings: int = 0
    http: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None


def utcnow() -> datetime:
    """Naive UTC, the form every timestamp is stored in."""
    return datetime.now(UTC).replace(tzinfo=None)


def prepare_database(config: Config) -> Engine:
    """The output engine, once the database answers and its schema is current."""
    engine = output_engine(config, config.data_dir())
    log.info("Output database: %s", describe(engine))
    wait_for_db(engine, float(config["DB_WAIT_SECONDS"]))
    migrate(engine)
    return engine


def new_run_id() -> str:
    """``20261130T021500Z-3f9a``: when the run started (UTC), and a tie-breaker."""
    return f"{utcnow():%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def run_jobs(config: Config, engine: Engine, run_id: str | None = None) -> list[JobOutcome]:
    """Run every job of JOB_NAMES in order; a failing job does not stop the others.

    The attempts share ``run_id`` in ``job_run`` (the run report's name).
    """
    run_id = run_id or new_run_id()
    outcomes = []
    for name in config.job_names:
        ctx = JobContext(
            config=config,
            engine=engine,
            data_dir=config.data_dir(),
            env_dir=config.env_dir,
            log=logging.getLogger(f"job.{name.lower()}"),
        )
        with job_scope(name):
            outcomes.append(run_job(name, ctx, run_id))
    return outcomes


def run_and_report(config: Config, engine: Engine) -> tuple[list[JobOutcome], Path | None]:
    """Run the jobs, then write the HTML run report; returns the outcomes and its path."""
    run_id = new_run_id()
    log.info("Run %s: jobs %s", run_id, ", ".join(config.job_names))
    outcomes = run_jobs(config, engine, run_id)
    return outcomes, write_run_report(config, engine, run_id)


def write_run_report(config: Config, engine: Engine, run_id: str) -> Path | None:
    """Write ``DATA_DIR/reports/<run_id>.html`` and ``latest.html``; never fails the run."""
    from courseinv.runner.report import write_report

    try:
        path = write_report(engine, run_id, config.data_dir() / "reports")
    except Exception as exc:
        log.warning("Could not write the run report: %s", _reason(exc), exc_info=True)
        return None
    log.info("Run report: %s", path, extra={"report": str(path)})
    return path


def summary_lines(outcomes: list[JobOutcome], report: Path | None) -> list[str]:
    """The end-of-run summary for stdout: one line per job, then where the report is."""
    width = max((len(o.name) for o in outcomes), default=0)
    lines = []
    for o in outcomes:
        rows = sum(o.rows_written.values())
        state = "ok    " if o.succeeded else "FAILED"
        line = (
            f"{o.name:<{width}}  {state}  {rows:>10,} rows  {o.seconds:>7.1f} s  "
            f"{o.warnings:>3} warning(s)"
        )
        lines.append(line + (f"  {o.reason}" if o.reason else ""))
    lines.append(f"report: {report}" if report else "report: not written (see the log)")
    return lines


class _WarningCounter(logging.Handler):
    """Counts WARNING records logged anywhere while a job runs (errors are its failure)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR:
            self.count += 1


@contextmanager
def _counting_warnings() -> Iterator[_WarningCounter]:
    counter = _WarningCounter()
    root = logging.getLogger()
    root.addHandler(counter)
    try:
        yield counter
    finally:
        root.removeHandler(counter)


def run_job(name: str, ctx: JobContext, run: str | None = None) -> JobOutcome:
    """Run one job, record its attempt and statuses; never raises for a job failure."""
    started = time.monotonic()
    log.info("Starting job %s", name)
    try:
        run_id = _start_run(ctx.engine, name, run)
    except Exception as exc:
        reason = f"cannot record the job run: {_reason(exc)}"
        log.error("Job %s failed: %s", name, reason)
        return JobOutcome(name, False, time.monotonic() - started, reason, run_id=run)
    statuses: list[DataSourceStatus] | None = None
    reason: str | None = None
    with collect_stats() as http, _counting_warnings() as warnings:
        try:
            statuses = resolve_job(name)(ctx)
        except KeyboardInterrupt:
            ctx.end_phase()
            _finish_run(ctx.engine, run_id, "failed", "interrupted", _counters(ctx, warnings, http))
            raise
        except JobError as exc:
            reason = _reason(exc)
            log.error("Job %s failed: %s", name, reason)
        except Exception as exc:
            reason = _reason(exc)
            log.exception("Job %s failed: %s", name, reason)
        ctx.end_phase()
    counters = _counters(ctx, warnings, http)
    succeeded = reason is None
    _finish_run(
        ctx.engine, run_id, "succeeded" if succeeded else "failed", reason, counters, statuses
    )
    outcome = JobOutcome(
        name,
        succeeded,
        time.monotonic() - started,
        reason,
        rows_written=dict(ctx.rows_written),
        warnings=counters["warnings"],
        http=http.snapshot(),
        run_id=run,
    )
    fields = {"job_run_id": run_id, "rows_written": counters["rows_written"],
              "warnings": outcome.warnings, "requests": counters["requests"],
              "seconds": round(outcome.seconds, 3)}  # fmt: skip
    if succeeded:  # a failure was logged above, with its reason, once
        log.info("Job %s succeeded (%.1f s)", name, outcome.seconds, extra=fields)
    return outcome


def _counters(ctx: JobContext, warnings: _WarningCounter, http: Stats) -> dict:
    """The job_run columns that say what the run did; ``details`` feeds the run report."""
    stats = http.snapshot()
    details = {"tables": ctx.rows_written, "http": stats, "phases": ctx.phases}
    richer = _http_details(http)
    if richer is not None:  # by API/endpoint and status, rate-limit room over time
        details["http_detail"] = richer
    return {
        "rows_written": sum(ctx.rows_written.values()),
        "warnings": warnings.count,
        "requests": stats.get("requests", 0),
        "details": json.dumps(details, sort_keys=True, default=str),
    }


def _http_details(http: Any) -> dict[str, Any] | None:
    """The collector's full record (``as_dict()``: see ``http_client``), when it keeps one."""
    as_dict = getattr(http, "as_dict", None)
    return as_dict() if callable(as_dict) else None


def _reason(exc: BaseException) -> str:
    if is_db_error(exc):  # never SQL text or row values in job_run.reason
        return redactor()(short_db_reason(exc))[:REASON_MAX]
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, JobError):
        text = f"{type(exc).__name__}: {text}"
    text = redactor()(text.splitlines()[0] if len(text) > REASON_MAX else text)
    return text[:REASON_MAX]


def _start_run(engine: Engine, name: str, run: str | None) -> int:
    with engine.begin() as conn:
        result = conn.execute(
            insert(job_run).values(
                run_id=run,
                job_name=name,
                started_at=utcnow(),
                status="running",
                host=socket.gethostname()[:255],
                pid=os.getpid(),
            )
        )
        return int(result.inserted_primary_key[0])


def _finish_run(
    engine: Engine,
    run_id: int,
    status: str,
    reason: str | None,
    counters: dict,
    statuses: list[DataSourceStatus] | None = None,
) -> None:
    """Close the job_run row and add its data_source_status rows, in one transaction."""
    try:
        with engine.begin() as conn:
            conn.execute(
                update(job_run)
                .where(job_run.c.id == run_id)
                .values(finished_at=utcnow(), status=status, reason=reason, **counters)
            )
            rows = [
                {
                    "data_source_name": str(s.name),
                    "data_updated_at": s.updated_at.astimezone(UTC).replace(tzinfo=None),
                    "job_run_id": run_id,
                }
                for s in statuses or []
            ]
            if rows:
                conn.execute(insert(data_source_status), rows)
    except Exception as exc:  # the database itself may be what failed
        log.error("Could not record the outcome of job run %s: %s", run_id, _reason(exc))
