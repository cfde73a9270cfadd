"""Run the configured jobs, each in isolation, recording every attempt in ``job_run``."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from courseinv.config import Config
from courseinv.db.engine import describe, output_engine, wait_for_db
from courseinv.db.migrate import migrate
from courseinv.db.tables import data_source_status, job_run
from courseinv.http_client.session import Stats, collect_stats
from courseinv.runner.jobs import DataSourceStatus, JobContext, JobError, resolve_job
from courseinv.runner.logs import redactor
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


def run_jobs(config: Config, engine: Engine) -> list[JobOutcome]:
    """Run every job of JOB_NAMES in order; a failing job does not stop the others."""
    outcomes = []
    for name in config.job_names:
        ctx = JobContext(
            config=config,
            engine=engine,
            data_dir=config.data_dir(),
            env_dir=config.env_dir,
            log=logging.getLogger(f"job.{name.lower()}"),
        )
        outcomes.append(run_job(name, ctx))
    for outcome in outcomes:
        state = "succeeded" if outcome.succeeded else f"FAILED: {outcome.reason}"
        log.info("Job %s %s (%.1f s)", outcome.name, state, outcome.seconds)
    return outcomes


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


def run_job(name: str, ctx: JobContext) -> JobOutcome:
    """Run one job, record its attempt and statuses; never raises for a job failure."""
    started = time.monotonic()
    log.info("Starting job %s", name)
    try:
        run_id = _start_run(ctx.engine, name)
    except Exception as exc:
        reason = f"cannot record the job run: {_reason(exc)}"
        log.error("Job %s failed: %s", name, reason)
        return JobOutcome(name, False, time.monotonic() - started, reason)
    statuses: list[DataSourceStatus] | None = None
    reason: str | None = None
    with collect_stats() as http, _counting_warnings() as warnings:
        try:
            statuses = resolve_job(name)(ctx)
        except KeyboardInterrupt:
            _finish_run(ctx.engine, run_id, "failed", "interrupted", _counters(ctx, warnings, http))
            raise
        except JobError as exc:
            reason = _reason(exc)
            log.error("Job %s failed: %s", name, reason)
        except Exception as exc:
            reason = _reason(exc)
            log.exception("Job %s failed: %s", name, reason)
    counters = _counters(ctx, warnings, http)
    succeeded = reason is None
    _finish_run(
        ctx.engine, run_id, "succeeded" if succeeded else "failed", reason, counters, statuses
    )
    return JobOutcome(
        name,
        succeeded,
        time.monotonic() - started,
        reason,
        rows_written=dict(ctx.rows_written),
        warnings=counters["warnings"],
        http=http.snapshot(),
    )


def _counters(ctx: JobContext, warnings: _WarningCounter, http: Stats) -> dict:
    """The job_run columns that say what the run did."""
    stats = http.snapshot()
    return {
        "rows_written": sum(ctx.rows_written.values()),
        "warnings": warnings.count,
        "requests": stats.get("requests", 0),
        "details": json.dumps({"tables": ctx.rows_written, "http": stats}, sort_keys=True),
    }


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, JobError):
        text = f"{type(exc).__name__}: {text}"
    text = redactor()(text.splitlines()[0] if len(text) > REASON_MAX else text)
    return text[:REASON_MAX]


def _start_run(engine: Engine, name: str) -> int:
    with engine.begin() as conn:
        result = conn.execute(
            insert(job_run).values(
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
