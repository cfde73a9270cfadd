"""Run the configured jobs, each in isolation, recording every attempt in ``job_run``."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from courseinv.config import Config
from courseinv.db import interrupts
from courseinv.db.engine import describe, output_engine, wait_for_db
from courseinv.db.errors import is_db_error, short_db_reason
from courseinv.db.locks import LockBusy, job_lock
from courseinv.db.migrate import migrate
from courseinv.db.publish import PublishPolicy
from courseinv.db.tables import data_source_status, job_run
from courseinv.http_client.errors import HttpError, RetriesExhausted
from courseinv.http_client.session import Stats, collect_stats
from courseinv.runner.checks import cause_in_words
from courseinv.runner.jobs import DataSourceStatus, JobContext, JobError, resolve_job
from courseinv.runner.logs import job_scope, redactor
from sqlalchemy import Engine, insert, select, update

log = logging.getLogger(__name__)

REASON_MAX = 1000
DEFAULT_LOCK_WAIT_S = 60
FINISH_ATTEMPTS = 3
FINISH_PAUSE_S = 1.0


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


def run_jobs(
    config: Config, engine: Engine, run_id: str | None = None, *, allow_shrink: bool = False
) -> list[JobOutcome]:
    """Run every job of JOB_NAMES in order; a failing job does not stop the others.

    The attempts share ``run_id`` in ``job_run`` (the run report's name). ``allow_shrink``
    lets this run publish tables that shrink past the configured limit. A
    :class:`Terminated` signal stops the loop once the current job is recorded.
    """
    run_id = run_id or new_run_id()
    policy = PublishPolicy.from_config(config, allow_shrink=allow_shrink)
    outcomes = []
    for name in config.job_names:
        ctx = JobContext(
            config=config,
            engine=engine,
            data_dir=config.data_dir(),
            env_dir=config.env_dir,
            log=logging.getLogger(f"job.{name.lower()}"),
            publish_policy=policy,
        )
        with job_scope(name):
            outcomes.append(run_job(name, ctx, run_id))
    return outcomes


def run_and_report(
    config: Config, engine: Engine, *, allow_shrink: bool = False
) -> tuple[list[JobOutcome], Path | None]:
    """Run the jobs, then write the HTML run report; returns the outcomes and its path."""
    run_id = new_run_id()
    log.info("Run %s: jobs %s", run_id, ", ".join(config.job_names))
    outcomes = run_jobs(config, engine, run_id, allow_shrink=allow_shrink)
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


# -- signals ------------------------------------------------------------------------------


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: end the run cleanly (exit code 128 + signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def terminate_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into :class:`Terminated` raised in the main thread.

    Unwinding then drops staging tables, removes temporary files and records the job
    as failed. Further signals are ignored meanwhile so that the cleanup can finish.
    Inside an ``interrupts.critical()`` block (a bulk upload) the signal waits for the
    block to end.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        if interrupts.defer(signum):  # raised again when the critical section ends
            return
        for sig in TERMINATING_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        log.warning("Received %s: stopping", signal.Signals(signum).name)
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in TERMINATING_SIGNALS}
    try:
        yield
    finally:
        for sig, action in previous.items():
            signal.signal(sig, action)


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
    """Run one job under its lock, record its attempt and statuses.

    Never raises for a job failure; :class:`Terminated` and ``KeyboardInterrupt`` are
    recorded and re-raised.
    """
    started = time.monotonic()
    waiting_since = utcnow()
    wait = float(ctx.config.get("JOB_LOCK_WAIT_SECONDS", DEFAULT_LOCK_WAIT_S))
    log.info("Starting job %s", name)
    try:
        with job_lock(ctx.engine, name, wait, lambda: describe_holder(ctx.engine, name)):
            return _run_locked(name, ctx, started, run)
    except LockBusy as exc:  # our own message: no exception type in front
        reason = redactor()(str(exc))[:REASON_MAX]
    except (Terminated, KeyboardInterrupt):  # while waiting for the lock: nothing to record
        raise
    except Exception as exc:  # the lock or the bookkeeping: the database itself failed
        reason = f"cannot run the job: {_reason(exc)}"
    log.error("Job %s failed: %s", name, reason)
    _record_refused(ctx.engine, name, waiting_since, reason, run)
    return JobOutcome(name, False, time.monotonic() - started, reason, run_id=run)


def _run_locked(name: str, ctx: JobContext, started: float, run: str | None) -> JobOutcome:
    _mark_abandoned(ctx.engine, name)
    run_id = _start_run(ctx.engine, name, run)
    statuses: list[DataSourceStatus] | None = None
    reason: str | None = None
    with collect_stats() as http, _counting_warnings() as warnings:
        try:
            statuses = resolve_job(name)(ctx)
        except (Terminated, KeyboardInterrupt) as exc:
            ctx.end_phase()
            why = "terminated" if isinstance(exc, Terminated) else "interrupted"
            _finish(ctx, run_id, why, _counters(ctx, warnings, http), None)
            raise
        except JobError as exc:
            reason = _reason(exc)
            log.error("Job %s failed: %s", name, reason)
        except Exception as exc:
            reason = _reason(exc)
            log.exception("Job %s failed: %s", name, reason)
        ctx.end_phase()
    counters = _counters(ctx, warnings, http)
    succeeded = _finish(ctx, run_id, reason, counters, statuses)
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


def _finish(
    ctx: JobContext,
    run_id: int,
    reason: str | None,
    counters: dict,
    statuses: list[DataSourceStatus] | None,
) -> bool:
    """Record the outcome truthfully; returns whether the run counts as succeeded.

    A job whose tables were swapped in succeeded whatever failed afterwards: the new
    data is live. Without its statuses (it did not return) no freshness rows are added.
    """
    if reason is not None and ctx.published:
        log.warning("Job published its tables, then: %s", reason)
        reason = f"tables published; afterwards: {reason}"[:REASON_MAX]
        _finish_run(ctx.engine, run_id, "succeeded", reason, counters, statuses)
        return True
    status = "succeeded" if reason is None else "failed"
    _finish_run(ctx.engine, run_id, status, reason, counters, statuses)
    return reason is None


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
    if isinstance(exc, RetriesExhausted):  # the cause in words, not a chain of class names
        words = cause_in_words(exc.last_reason) or exc.last_reason
        text = f"{exc.method} {exc.path}: gave up after {exc.attempts} attempt(s): {words}"
    else:
        text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, JobError | HttpError):
        text = f"{type(exc).__name__}: {text}"
    text = redactor()(text.splitlines()[0] if len(text) > REASON_MAX else text)
    return text[:REASON_MAX]


def describe_holder(engine: Engine, name: str) -> str:
    """Who holds the job lock, from the newest ``running`` row of the job."""
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(job_run.c.id, job_run.c.host, job_run.c.pid, job_run.c.started_at)
                .where(job_run.c.job_name == name, job_run.c.status == "running")
                .order_by(job_run.c.id.desc())
                .limit(1)
            ).first()
    except Exception as exc:
        return f"holder unknown: {_reason(exc)}"
    if row is None:
        return "holder unknown: it has not recorded its run yet"
    return (
        f"held by host {row.host}, pid {row.pid}, since {row.started_at:%Y-%m-%d %H:%M:%S} UTC "
        f"(job_run {row.id})"
    )


def _mark_abandoned(engine: Engine, name: str) -> None:
    """Close ``running`` rows of this job: with its lock held, their process is gone."""
    with engine.begin() as conn:
        rows = conn.execute(
            select(job_run.c.id, job_run.c.host, job_run.c.pid, job_run.c.started_at).where(
                job_run.c.job_name == name, job_run.c.status == "running"
            )
        ).all()
        for row in rows:
            log.warning(
                "Job %s: run %s (host %s, pid %s, started %s UTC) ended without recording "
                "an outcome: marked abandoned",
                name, row.id, row.host, row.pid, row.started_at,
            )  # fmt: skip
            conn.execute(
                update(job_run)
                .where(job_run.c.id == row.id, job_run.c.status == "running")
                .values(
                    status="abandoned",
                    finished_at=utcnow(),
                    reason="the process ended without recording an outcome (killed?)",
                )
            )


def _record_refused(
    engine: Engine, name: str, since: datetime, reason: str, run: str | None
) -> None:
    """A run that never started (lock busy, database failing): one ``failed`` row."""
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(job_run).values(
                    run_id=run,
                    job_name=name,
                    started_at=since,
                    finished_at=utcnow(),
                    status="failed",
                    reason=reason,
                    host=socket.gethostname()[:255],
                    pid=os.getpid(),
                )
            )
    except Exception as exc:
        log.error("Could not record the failed start of job %s: %s", name, _reason(exc))


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
    """Close the job_run row and add its data_source_status rows, in one transaction.

    Retried: the job's connections may have been lost (a pooled one is checked first).
    """
    for attempt in range(1, FINISH_ATTEMPTS + 1):
        try:
            with interrupts.critical():  # a signal now must not lose the outcome
                _write_finish(engine, run_id, status, reason, counters, statuses)
            return
        except Exception as exc:  # the database itself may be what failed
            if attempt == FINISH_ATTEMPTS:
                log.error("Could not record the outcome of job run %s: %s", run_id, _reason(exc))
            else:
                time.sleep(FINISH_PAUSE_S * attempt)


def _write_finish(
    engine: Engine,
    run_id: int,
    status: str,
    reason: str | None,
    counters: dict,
    statuses: list[DataSourceStatus] | None,
) -> None:
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
