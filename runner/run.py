"""Run the configured jobs, each in isolation, recording every attempt in ``job_run``."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from courseinv.config import Config
from courseinv.db.engine import describe, output_engine, wait_for_db
from courseinv.db.migrate import migrate
from courseinv.db.tables import data_source_status, job_run
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
    try:
        statuses = resolve_job(name)(ctx)
    except KeyboardInterrupt:
        _finish_run(ctx.engine, run_id, "failed", "interrupted")
        raise
    except JobError as exc:
        reason = _reason(exc)
        log.error("Job %s failed: %s", name, reason)
    except Exception as exc:
        reason = _reason(exc)
        log.exception("Job %s failed: %s", name, reason)
    else:
        _finish_run(ctx.engine, run_id, "succeeded", None, statuses)
        return JobOutcome(name, True, time.monotonic() - started)
    _finish_run(ctx.engine, run_id, "failed", reason)
    return JobOutcome(name, False, time.monotonic() - started, reason)


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
    statuses: list[DataSourceStatus] | None = None,
) -> None:
    """Close the job_run row and add its data_source_status rows, in one transaction."""
    try:
        with engine.begin() as conn:
            conn.execute(
                update(job_run)
                .where(job_run.c.id == run_id)
                .values(finished_at=utcnow(), status=status, reason=reason)
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
