"""Group the events of concurrent requests into small database transactions.

Each request hands its parsed items to ``BatchingWriter.submit`` and awaits it; the call
returns only after the transaction holding those items has committed (so the request
may answer 2xx), or raises ``StoreUnavailable`` / ``StoreFailed``.

One writer task takes every pending submission (up to ``max_items``), stores them in one
transaction on a worker thread, and resolves their futures. While a transaction is
being committed new submissions queue up and go into the next one, so the batch size
follows the load with no added wait: one request alone is committed at once, a burst of
requests shares a transaction. With ``writers`` > 1, that many transactions may be in
flight at once (the store must be safe under concurrency, as it is for competing SQS
consumers).

When a transaction of several requests fails for a reason other than the database being
unreachable, each request's items are retried alone, so one bad request cannot fail the
others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger(__name__)

Store = Callable[[list[Any]], Any]  # items -> result; one transaction; raises on failure


class StoreUnavailable(Exception):
    """The database could not be reached or did not commit (answer 503; sender retries)."""


class StoreFailed(Exception):
    """The transaction failed for another reason, even alone (answer 500)."""


@dataclass
class _Pending:
    items: Sequence[Any]
    future: asyncio.Future[Any] = field(repr=False)


@dataclass
class WriterStats:
    transactions: int = 0
    items: int = 0
    failures: int = 0
    largest_batch: int = 0
    last_ok: bool | None = None  # outcome of the latest transaction (None: none yet)


def is_unavailable(exc: BaseException) -> bool:
    """Connection-level failures: the database is down, restarting or unreachable."""
    if isinstance(exc, PoolTimeout | DisconnectionError | OSError):
        return True
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


class BatchingWriter:
    """Group commit for concurrent requests; start() inside the running event loop."""

    def __init__(
        self, store: Store, *, max_items: int = 500, writers: int = 1, group: bool = True
    ) -> None:
        self._store = store
        # group=False: one transaction per request (the benchmark's baseline).
        self._max_items = max_items if group else 0
        self._writers = writers
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="store")
        self._tasks: list[asyncio.Task[None]] = []
        self.stats = WriterStats()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self._writers)]

    async def stop(self) -> None:
        """Store everything already submitted, then stop the writer tasks."""
        for _ in self._tasks:
            await self._queue.put(None)
        await asyncio.gather(*self._tasks)
        self._executor.shutdown(wait=True)

    async def submit(self, items: Sequence[Any]) -> Any:
        """Store ``items``; returns the store's result once committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(items, future))
        return await future

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch, stop = self._take_more([first])
            await self._commit(batch)
            if stop:
                return

    def _take_more(self, batch: list[_Pending]) -> tuple[list[_Pending], bool]:
        count = len(batch[0].items)
        while count < self._max_items and not self._queue.empty():
            nxt = self._queue.get_nowait()
            if nxt is None:
                return batch, True
            batch.append(nxt)
            count += len(nxt.items)
        return batch, False

    async def _commit(self, batch: list[_Pending]) -> None:
        items = [item for pending in batch for item in pending.items]
        try:
            result = await self._in_thread(items)
        except Exception as exc:
            if len(batch) > 1 and not is_unavailable(exc):
                log.warning("A transaction of %d requests failed (%s); retrying each alone",
                            len(batch), type(exc).__name__)
                for pending in batch:
                    await self._commit([pending])
                return
            self._fail(batch, exc)
            return
        for pending in batch:
            if not pending.future.done():
                pending.future.set_result(result)

    async def _in_thread(self, items: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, self._store, items)
        except Exception:
            self.stats.failures += 1
            self.stats.last_ok = False
            raise
        self.stats.transactions += 1
        self.stats.items += len(items)
        self.stats.largest_batch = max(self.stats.largest_batch, len(items))
        self.stats.last_ok = True
        return result

    def _fail(self, batch: list[_Pending], exc: Exception) -> None:
        unavailable = is_unavailable(exc)
        # Only connection errors are described: other database errors may quote values.
        detail = f" (database unavailable: {_connection_reason(exc)})" if unavailable else ""
        log.error("Storing %d request(s) failed: %s%s", len(batch), type(exc).__name__, detail)
        error = StoreUnavailable if unavailable else StoreFailed
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error(type(exc).__name__))


def _connection_reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0][:200] if lines else type(orig).__name__
