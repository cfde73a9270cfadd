"""Job LIVE_EVENTS: drain the SQS queue of Canvas Live Events into the database.

Per database batch (up to ``BATCH_MESSAGES`` messages, gathered from receives of up to
10): read every message (``parse.read_events``), store them in ONE transaction
(``store.store_batch``), and only after the commit delete the batch's messages. A crash
between commit and delete redelivers messages whose events are already stored: the
store counts them once. A batch that could not be stored is made visible again at once
and the job fails (exit non-zero); bad events never fail it (they are rejects).

The run ends when a long poll finds the queue empty or after ``MAX_MESSAGES_PER_RUN``.
Several copies may drain one queue at once (competing consumers).
Freshness CANVAS_LIVE_EVENTS: the newest event time stored.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from courseinv.db.tables import live_event
from courseinv.http_client.progress import Progress
from courseinv.live_events.feed import Feed
from courseinv.live_events.parse import read_events
from courseinv.live_events.sqs import SQS_BATCH, Message, Queue, QueueUnavailable
from courseinv.live_events.store import BatchResult, store_batch
from courseinv.runner.jobs import DataSourceName, DataSourceStatus, JobContext, JobError
from sqlalchemy import Engine, func, select

DEFAULT_BATCH_MESSAGES = 500
RECEIVERS = 6  # receive calls in flight at once (as the benchmark's server ceiling)
DELETERS = 3  # delete calls in flight at once

log = logging.getLogger(__name__)


@dataclass
class DrainTotals:
    """What one drain did, summed over its batches."""

    messages: int = 0
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    unhandled: int = 0
    drift: int = 0
    truncated: int = 0
    not_deleted: int = 0
    projected: Counter[str] = field(default_factory=Counter)

    def add(self, messages: int, result: BatchResult) -> None:
        self.messages += messages
        self.batches += 1
        self.stored += result.inserted
        self.duplicates += result.duplicates
        self.rejected += result.rejected
        self.unhandled += result.unhandled
        self.drift += result.drift
        self.truncated += result.truncated
        self.projected.update(result.projected)

    def rows(self) -> dict[str, int]:
        return {"live_event": self.stored, "live_event_rejected": self.rejected, **self.projected}


def run(ctx: JobContext) -> list[DataSourceStatus]:
    section = _section(ctx.config)
    attempts = int(ctx.config.get("MAX_REQ_ATTEMPTS", 3))
    queue = Queue(section, max_attempts=attempts)
    ctx.phase("drain SQS into the database")
    try:
        totals = drain(
            queue,
            ctx.engine,
            max_messages=int(section.get("MAX_MESSAGES_PER_RUN", 100_000)),
            batch_messages=int(section.get("BATCH_MESSAGES", DEFAULT_BATCH_MESSAGES)),
            logger=ctx.log,
        )
    except QueueUnavailable as error:
        raise JobError(str(error)) from None
    finally:
        queue.close()
    ctx.record_rows(totals.rows())
    ctx.log.info(
        "LIVE_EVENTS: %d messages in %d batches: %d events stored, %d duplicates, "
        "%d rejected, %d of unprojected types, %d unknown fields, %d values truncated",
        totals.messages, totals.batches, totals.stored, totals.duplicates, totals.rejected,
        totals.unhandled, totals.drift, totals.truncated,
    )  # fmt: skip
    ctx.phase("freshness")
    newest = newest_event_time(ctx.engine)
    if newest is None:
        return []
    return [DataSourceStatus(DataSourceName.CANVAS_LIVE_EVENTS, newest.replace(tzinfo=UTC))]


def _section(config: Mapping[str, Any]) -> Mapping[str, Any]:
    section = config.get("LIVE_EVENTS") or {}
    if not section.get("SQS_QUEUE_URL"):
        raise JobError("LIVE_EVENTS.SQS_QUEUE_URL is not configured (the queue to drain)")
    return section


def drain(
    queue: Queue,
    engine: Engine,
    *,
    max_messages: int,
    batch_messages: int = DEFAULT_BATCH_MESSAGES,
    logger: logging.Logger = log,
) -> DrainTotals:
    """Receive, store and delete batches until the queue is empty or ``max_messages``.

    Pipelined: up to ``RECEIVERS`` threads keep receive calls in flight (``Feed``) while this
    thread stores one batch at a time; a batch's deletes (10 per call) run on
    ``DELETERS`` threads after its own commit, overlapping the next batch. Whatever was
    received but not stored when a store or a receive fails is made visible again.
    """
    totals = DrainTotals()
    with (
        ThreadPoolExecutor(DELETERS, thread_name_prefix="sqs-delete") as deleters,
        Progress("LIVE_EVENTS messages", None, logger=logger) as progress,
    ):
        deletes: list[Future[int]] = []
        # No more receives in flight than one batch needs: what is held ahead stays small.
        receivers = min(RECEIVERS, max(1, batch_messages // SQS_BATCH))
        feed = Feed(queue, max_messages=max_messages, receivers=receivers, buffer=batch_messages)
        with feed:
            try:
                for batch in feed.batches(batch_messages):
                    result = _store(queue, engine, batch)
                    deletes.extend(
                        deleters.submit(queue.delete, batch[i : i + SQS_BATCH])
                        for i in range(0, len(batch), SQS_BATCH)
                    )
                    totals.add(len(batch), result)
                    progress.advance(len(batch))
                    deletes = _settled(deletes, logger, totals)
            finally:
                _release(queue, feed.close())
        for future in deletes:
            _deleted(future.result(), logger, totals)
    return totals


def _settled(deletes: list[Future[int]], logger: logging.Logger, totals: DrainTotals) -> list:
    """Count the finished deletes (raising their failure); return the ones still running."""
    running = []
    for future in deletes:
        if future.done():
            _deleted(future.result(), logger, totals)
        else:
            running.append(future)
    return running


def _deleted(not_deleted: int, logger: logging.Logger, totals: DrainTotals) -> None:
    if not_deleted:
        logger.warning("LIVE_EVENTS: SQS did not delete %d messages", not_deleted)
        totals.not_deleted += not_deleted


def _release(queue: Queue, messages: list[Message]) -> None:
    """Messages received but not stored go back to the queue at once."""
    if not messages:
        return
    try:
        queue.release(messages)
    except QueueUnavailable as error:
        log.warning("LIVE_EVENTS: could not release %d messages: %s", len(messages), error)


def _store(queue: Queue, engine: Engine, batch: list[Message]) -> BatchResult:
    items = [item for m in batch for item in read_events(m.body, source="sqs")]
    try:
        return store_batch(engine, items)
    except Exception:
        _release(queue, batch)  # let the next run (or another consumer) take them at once
        raise


def newest_event_time(engine: Engine) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(select(func.max(live_event.c.event_time))).scalar()
