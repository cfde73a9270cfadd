"""Bounded fan-out: run ``func(item)`` for many items, at most ``workers`` at a time.

    run = fan_out(fetch_activity, course_ids, workers=8, desc="analytics",
                  skip=(NotFound, Forbidden))
    for course_id, activity in run:       # completion order, streamed
        ...
    run.skipped                           # [(course_id, error), ...] for the run record

- Results are yielded as they complete, not in input order.
- An error whose type is in ``skip`` is logged, counted as skipped in the progress and
  collected in ``.skipped``; the item is not yielded. Any other error cancels the items
  not yet started, waits for the running ones and is raised from the loop (the caller
  decides: catch it to fail the job with a clear message).
- Items are submitted lazily (a window of ``2 * workers``), so ``items`` may be a
  generator; ``total`` for progress comes from ``len(items)`` when it has one.
- Leaving the loop early (``break``) cancels what has not started.
- Progress (done/total, rate) is reported through ``progress.Progress``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

from courseinv.http_client.progress import Progress, ProgressFactory

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class FanOut(Generic[T, R]):
    """An iterable of ``(item, result)`` pairs; see the module docstring."""

    def __init__(
        self,
        func: Callable[[T], R],
        items: Iterable[T],
        *,
        workers: int,
        desc: str = "items",
        skip: tuple[type[BaseException], ...] = (),
        progress: ProgressFactory = Progress,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.func = func
        self.items = items
        self.workers = workers
        self.desc = desc
        self.skip = skip
        self.progress = progress
        self.skipped: list[tuple[T, BaseException]] = []
        self.done = 0

    def __iter__(self) -> Iterator[tuple[T, R]]:
        total = len(self.items) if isinstance(self.items, Sized) else None
        source = iter(self.items)
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self.desc)
        pending: dict[Future[R], T] = {}
        with self.progress(self.desc, total) as progress:
            try:
                self._refill(pool, source, pending)
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        item = pending.pop(future)
                        error = future.exception()
                        if error is None:
                            self.done += 1
                            progress.advance()
                            yield item, future.result()
                        elif isinstance(error, self.skip):
                            self._skip(item, error, progress)
                        else:
                            raise error
                    self._refill(pool, source, pending)
            finally:
                for future in pending:
                    future.cancel()
                pool.shutdown(wait=True, cancel_futures=True)

    def _refill(
        self, pool: ThreadPoolExecutor, source: Iterator[T], pending: dict[Future[R], T]
    ) -> None:
        while len(pending) < 2 * self.workers:
            try:
                item = next(source)
            except StopIteration:
                return
            pending[pool.submit(self.func, item)] = item

    def _skip(self, item: T, error: BaseException, progress: Progress) -> None:
        self.skipped.append((item, error))
        progress.advance(skipped=True)
        label = repr(item)
        label = label if len(label) <= 80 else label[:77] + "..."
        log.warning("%s: skipped %s: %s", self.desc, label, error)


def fan_out(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int,
    desc: str = "items",
    skip: tuple[type[BaseException], ...] = (),
    progress: ProgressFactory = Progress,
) -> FanOut[T, R]:
    """Run ``func`` over ``items`` with at most ``workers`` in flight; see ``FanOut``."""
    return FanOut(func, items, workers=workers, desc=desc, skip=skip, progress=progress)
