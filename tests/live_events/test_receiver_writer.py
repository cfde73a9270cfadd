"""The receiver's batching writer: group commit, answers only after commit, failure isolation.

The writer is given a store function (here one that records its calls, or fails on
purpose); the real store is exercised end to end in ``test_receiver_http.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from courseinv.live_events.receiver_writer import BatchingWriter, StoreFailed, StoreUnavailable
from sqlalchemy.exc import IntegrityError, OperationalError


class RecordingStore:
    """Commits (records) each batch after a delay; fails batches holding a poison item."""

    def __init__(self, delay_s: float = 0.02, unavailable: bool = False) -> None:
        self.delay_s = delay_s
        self.unavailable = unavailable
        self.committed: list[list[Any]] = []
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, items: list[Any]) -> int:
        with self.lock:
            self.calls += 1
        time.sleep(self.delay_s)
        if self.unavailable:
            raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
        if "poison" in items:
            raise IntegrityError("INSERT", {}, ValueError("bad row"))
        with self.lock:
            self.committed.append(list(items))
        return len(items)


def run_writer(store: RecordingStore, submissions: list[list[Any]], **options: Any) -> list[Any]:
    async def scenario() -> list[Any]:
        writer = BatchingWriter(store, **options)
        writer.start()

        async def one(items: list[Any]) -> Any:
            try:
                await writer.submit(items)
            except (StoreFailed, StoreUnavailable) as exc:
                return type(exc).__name__
            # Answered only once the items are in a committed batch.
            assert any(set(items) <= set(batch) for batch in store.committed)
            return "ok"

        outcomes = await asyncio.gather(*(one(items) for items in submissions))
        await writer.stop()
        return outcomes

    return asyncio.run(scenario())


def test_concurrent_submissions_share_transactions_and_answer_after_commit() -> None:
    store = RecordingStore()
    submissions = [[f"e{i}"] for i in range(100)]
    assert run_writer(store, submissions) == ["ok"] * 100
    assert sorted(e for batch in store.committed for e in batch) == sorted(f"e{i}" for i in range(100))
    assert store.calls < 20  # grouped: the first alone, the rest in a few batches
    assert max(len(b) for b in store.committed) > 10


def test_batches_are_bounded_by_max_items() -> None:
    store = RecordingStore()
    run_writer(store, [[f"e{i}", f"f{i}"] for i in range(60)], max_items=10)
    assert max(len(b) for b in store.committed) <= 10


def test_per_request_mode_commits_each_submission_alone() -> None:
    store = RecordingStore(delay_s=0.001)
    assert run_writer(store, [[f"e{i}"] for i in range(30)], group=False) == ["ok"] * 30
    assert store.calls == 30 and all(len(b) == 1 for b in store.committed)


def test_a_poison_request_fails_alone_and_the_others_are_stored() -> None:
    store = RecordingStore()
    submissions = [[f"e{i}"] for i in range(20)]
    submissions[7] = ["poison"]
    outcomes = run_writer(store, submissions)
    assert outcomes[7] == "StoreFailed"
    assert outcomes[:7] + outcomes[8:] == ["ok"] * 19
    assert "poison" not in {e for batch in store.committed for e in batch}


def test_database_unavailable_fails_every_waiting_request_with_unavailable() -> None:
    store = RecordingStore(unavailable=True)
    outcomes = run_writer(store, [[f"e{i}"] for i in range(12)])
    assert outcomes == ["StoreUnavailable"] * 12
    assert store.committed == []
    assert store.calls < 12  # not retried one by one: the database is down


@pytest.mark.parametrize("writers", [1, 3])
def test_stop_stores_everything_already_submitted(writers: int) -> None:
    store = RecordingStore(delay_s=0.01)

    async def scenario() -> list[Any]:
        writer = BatchingWriter(store, writers=writers)
        writer.start()
        tasks = [asyncio.create_task(writer.submit([f"e{i}"])) for i in range(40)]
        await asyncio.sleep(0)  # every submission is queued, none committed yet
        await writer.stop()  # the server is shutting down
        assert all(t.done() for t in tasks)
        return [t.result() for t in tasks]

    assert len(asyncio.run(scenario())) == 40
    assert sorted(e for b in store.committed for e in b) == sorted(f"e{i}" for i in range(40))
