"""Receiving for LIVE_EVENTS: receiver threads keep long polls in flight and hand the
messages to one writer in batches.

``Feed`` runs ``receivers`` threads, each looping ``receive`` (up to 10 messages) and
putting what it got on a bounded hand-over queue, so SQS waits overlap the writer's
database work. A receiver claims its share of ``max_messages`` before it asks, so a run
never takes more than that. The feed ends when a long poll finds the queue empty (every
receiver then stops after its call in flight) or when ``max_messages`` were taken.
A receive failure is handed over too, and raised to the writer in order.
"""

from __future__ import annotations

import queue as queues
import threading
import time
from collections.abc import Iterator

from courseinv.live_events.sqs import SQS_BATCH, Message, Queue

LINGER = 0.05  # seconds a writer waits for more messages before storing a short batch


class Feed:
    """Receiver threads feeding one writer (use as a context manager)."""

    def __init__(self, queue: Queue, *, max_messages: int, receivers: int, buffer: int) -> None:
        self._queue = queue
        self._left = max_messages  # messages not yet claimed by a receive call
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        # Items: a list of messages, an exception, or None (one receiver has finished).
        self._handover: queues.Queue = queues.Queue(maxsize=max(1, buffer // SQS_BATCH))
        self._threads = [
            threading.Thread(target=self._receive_loop, name=f"sqs-receive-{i}", daemon=True)
            for i in range(receivers)
        ]
        self._running = len(self._threads)  # receivers that have not handed over None
        self._error: Exception | None = None

    def __enter__(self) -> Feed:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batches(self, size: int) -> Iterator[list[Message]]:
        """Batches of up to ``size`` messages until the feed ends; a receive failure
        is raised here after the messages received before it."""
        while True:
            batch = self._take(size)
            if not batch:
                return
            yield batch

    def close(self) -> list[Message]:
        """Stop the receivers; return the messages received but not taken (the caller
        releases them)."""
        self._stopped.set()
        left: list[Message] = []
        while self._running:
            item = self._handover.get()
            if item is None:
                self._running -= 1
            elif isinstance(item, list):
                left.extend(item)
        for thread in self._threads:
            thread.join()
        return left

    def _take(self, size: int) -> list[Message]:
        batch: list[Message] = []
        deadline = None
        while len(batch) < size and self._running:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._handover.get(timeout=timeout)
            except queues.Empty:
                break
            if item is None:
                self._running -= 1
            elif isinstance(item, Exception):
                self._error = item
                self._stopped.set()
            else:
                batch.extend(item)
                deadline = deadline or time.monotonic() + LINGER
        if not batch and self._error is not None:
            error, self._error = self._error, None
            raise error
        return batch

    def _receive_loop(self) -> None:
        try:
            while not self._stopped.is_set():
                wanted = self._claim()
                if not wanted:
                    break
                got = self._queue.receive(wanted)
                self._unclaim(wanted - len(got))
                if not got:  # a long poll found the queue empty: the run ends
                    self._stopped.set()
                    break
                self._handover.put(got)  # waits while the writer is behind
        except Exception as error:  # QueueUnavailable, or a bug: the writer raises it
            self._handover.put(error)
        finally:
            self._handover.put(None)

    def _claim(self) -> int:
        with self._lock:
            wanted = min(SQS_BATCH, self._left)
            self._left -= wanted
            return wanted

    def _unclaim(self, count: int) -> None:
        with self._lock:
            self._left += count
