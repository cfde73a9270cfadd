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
from functools import partial
from typing import Any

from courseinv.db.tables import live_event
from courseinv.http_client.progress import Progress
from courseinv.live_events.parse import read_events
from courseinv.live_events.sqs import SQS_BATCH, Message, Queue, QueueUnavailable
from courseinv.live_events.store import BatchResult, store_batch
from courseinv.runner.jobs import DataSourceName, DataSourceStatus, JobContext, JobError
from sqlalchemy import Engine, func, select

DEFAULT_BATCH_MESSAGES = 500
RECEIVERS = 3  # receive calls in flight at once while a batch is gathered

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

    def add(self, messages: int, result: BatchResult, not_deleted: int) -> None:
        self.messages += messages
        self.batches += 1
        self.stored += result.inserted
        self.duplicates += result.duplicates
        self.rejected += result.rejected
        self.unhandled += result.unhandled
        self.drift += result.drift
        self.truncated += result.truncated
        self.not_deleted += not_deleted
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

    Pipelined: while one batch is being stored, the next is received (``RECEIVERS``
    receive calls in flight) and the previous one (already committed) is deleted, on
    helper threads (boto3 clients are thread-safe). A batch is deleted only after its
    own commit.
    """
    totals = DrainTotals()
    with (
        ThreadPoolExecutor(2, thread_name_prefix="sqs") as pool,
        ThreadPoolExecutor(RECEIVERS, thread_name_prefix="sqs-receive") as receivers,
        Progress("LIVE_EVENTS messages", None, logger=logger) as progress,
    ):
        first = min(batch_messages, max_messages)
        ahead: Future | None = pool.submit(_collect, queue, first, receivers)
        deleting: Future | None = None
        taken = 0
        while ahead is not None:
            batch, drained = ahead.result()
            taken += len(batch)
            room = min(batch_messages, max_messages - taken)
            more = not drained and room > 0
            ahead = pool.submit(_collect, queue, room, receivers) if more else None
            if not batch:
                continue
            try:
                result = _store(queue, engine, batch)
            except Exception:
                _release_ahead(queue, ahead)
                raise
            if deleting is not None:
                _deleted(deleting.result(), logger, totals)
            deleting = pool.submit(queue.delete, batch)
            totals.add(len(batch), result, 0)
            progress.advance(len(batch))
        if deleting is not None:
            _deleted(deleting.result(), logger, totals)
    return totals


def _deleted(not_deleted: int, logger: logging.Logger, totals: DrainTotals) -> None:
    if not_deleted:
        logger.warning("LIVE_EVENTS: SQS did not delete %d messages", not_deleted)
        totals.not_deleted += not_deleted


def _release_ahead(queue: Queue, ahead: Future | None) -> None:
    """The batch received ahead of a failed one goes back to the queue too."""
    if ahead is None:
        return
    try:
        batch, _ = ahead.result()
        if batch:
            queue.release(batch)
    except QueueUnavailable as error:
        log.warning("LIVE_EVENTS: could not release the next batch: %s", error)


def _collect(queue: Queue, room: int, receivers: ThreadPoolExecutor) -> tuple[list[Message], bool]:
    """Up to ``room`` messages, from up to ``RECEIVERS`` receive calls at a time (SQS
    answers each with at most 10); ``drained`` when a long poll found nothing."""
    batch: list[Message] = []
    while len(batch) < room:
        wanted = room - len(batch)
        limits = [min(SQS_BATCH, wanted - i) for i in range(0, wanted, SQS_BATCH)][:RECEIVERS]
        replies = list(receivers.map(partial(queue.receive, wait=not batch), limits))
        for got in replies:
            batch.extend(got)
        if not all(replies):  # the queue ran short: store what we have
            return batch, not batch
    return batch, False


def _store(queue: Queue, engine: Engine, batch: list[Message]) -> BatchResult:
    items = [item for m in batch for item in read_events(m.body, source="sqs")]
    try:
        return store_batch(engine, items)
    except Exception:
        try:  # let the next run (or another consumer) take them at once
            queue.release(batch)
        except QueueUnavailable as error:
            log.warning("LIVE_EVENTS: could not release the batch: %s", error)
        raise


def newest_event_time(engine: Engine) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(select(func.max(live_event.c.event_time))).scalar()
