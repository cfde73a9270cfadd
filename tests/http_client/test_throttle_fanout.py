"""Throttle awareness, bounded fan-out and progress reporting, over real HTTP."""

from __future__ import annotations

import io
import logging
import threading
import time

import pytest
import requests
from courseinv.http_client import (
    AdaptiveLimiter,
    CanvasClient,
    NotFound,
    Progress,
    RetryPolicy,
    fan_out,
)
from courseinv.sandbox.httpserver import json_response

from tests.http_client.servers import TOKEN, BucketServer, ScriptedServer

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, throttle_backoff_base=0.01)


# -- throttling ----------------------------------------------------------------------
@pytest.mark.parametrize("status", [403, 429])
def test_small_bucket_exact_results_and_few_throttles(status: int) -> None:
    workers, n = 8, 80
    # Another client used the token just before: the bucket starts nearly full.
    bucket = BucketServer(
        hwm=200, up_front=50, cost=0.5, leak=100, work_s=0.02, status=status, initial_level=190
    )
    with bucket as s:
        client = CanvasClient(s.url, TOKEN, workers=workers, policy=FAST)
        run = client.map(lambda i: client.get(f"/api/v1/courses/{i}")["id"], range(n))
        got = [i for _, i in run]
        assert sorted(got) == list(range(n))  # nothing lost, nothing doubled
        throttled = s.log.count(status=status)
        # The first request (sent alone) may be refused; then the limiter keeps the
        # reservations in flight under the room the responses report.
        assert throttled <= 3
        assert s.log.count(status=200) == n
        assert s.peak_in_flight <= 4  # 200 / 50 reservations fit at once
        assert client.stats()["throttled"] == throttled


def test_throttle_does_not_consume_attempts() -> None:
    # Bucket smaller than two reservations, and full at first.
    with BucketServer(hwm=90, up_front=50, cost=0.1, leak=200, work_s=0.01, initial_level=80) as s:
        policy = RetryPolicy(max_attempts=1, throttle_backoff_base=0.01)
        client = CanvasClient(s.url, TOKEN, workers=4, policy=policy)
        got = sorted(
            r["id"] for _, r in client.map(lambda i: client.get(f"/api/v1/courses/{i}"), range(20))
        )
        assert got == list(range(20))
        assert s.log.count(status=403) >= 1


def bucket_response(remaining: float, cost: float = 1.5) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response.headers["X-Rate-Limit-Remaining"] = f"{remaining}"
    response.headers["X-Request-Cost"] = f"{cost}"
    return response


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_limiter_learns_up_front_from_a_calibration_pair() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(8, clock=clock)  # starts from Canvas's defaults: u = 50
    assert limiter.estimate().up_front == 50
    limiter.acquire()  # the lone probe
    limiter.release(bucket_response(100.0, cost=0.0), False)
    assert limiter.estimate().room == 100.0
    # A pair goes out together; the first answer still sees the other's reservation.
    go = [threading.Event(), threading.Event()]
    done = [threading.Event(), threading.Event()]

    def request(i: int, remaining: float) -> None:
        limiter.acquire()
        go[i].wait(5)
        limiter.release(bucket_response(remaining, cost=0.0), False)
        done[i].set()

    threads = [threading.Thread(target=request, args=(i, r)) for i, r in enumerate((96.0, 100.0))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while limiter.in_flight < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert limiter.in_flight == 2
    for i in range(2):  # u = 4: a small up-front charge
        go[i].set()
        assert done[i].wait(5)
    for t in threads:
        t.join()
    assert limiter.estimate().up_front == pytest.approx(4.0)
    # 100 units of room admit many 4-unit reservations: only the slow-start ceiling (4
    # after three answers) limits; with Canvas's default 50 units just one would fit.
    clock.now += 1.0
    assert limiter.permitted() == 4
    assert limiter.estimate().remaining == pytest.approx(100.0)


def test_limiter_learns_leak_from_lone_answers() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(4, up_front_cost=5, clock=clock, leak_window=1.0)
    limiter._calibrations = 0

    def lone(remaining: float, cost: float) -> None:
        limiter.acquire()
        limiter.release(bucket_response(remaining, cost), False)

    lone(1000.0, 0.0)  # an empty bucket: its room
    level = 700.0
    for _ in range(6):  # every 2 s: +2 units/s leak, -3 units cost
        clock.now += 2.0
        level = level - 2 * 2.0 + 3.0
        lone(1000.0 - level, 3.0)
    assert limiter.estimate().leak == pytest.approx(2.0, abs=0.01)


def test_refused_alone_raises_up_front_and_pauses() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(4, up_front_cost=5, leak_rate=10, clock=clock)
    limiter.acquire()
    refused = bucket_response(40.0)
    refused.status_code = 403
    limiter.release(refused, True)  # alone and refused with 40 left: u >= 40
    assert limiter.estimate().up_front >= 40 and limiter.throttled == 1
    assert limiter.permitted() == 0
    clock.now += 0.5 + 40 / 10
    assert limiter.permitted() == 1


def test_limiter_probes_with_one_request_first() -> None:
    limiter = AdaptiveLimiter(4)
    limiter.acquire()
    second = threading.Event()
    waiter = threading.Thread(target=lambda: (limiter.acquire(), second.set()))
    waiter.start()
    assert not second.wait(0.1)  # held back until the first answer is known
    limiter.release(bucket_response(600), False)
    assert second.wait(2)
    waiter.join()
    assert limiter.in_flight == 1


# -- fan-out -------------------------------------------------------------------------
def test_fan_out_overlaps_latency(server: ScriptedServer) -> None:
    n, latency, workers = 24, 0.1, 8
    client = CanvasClient(server.url, TOKEN, workers=workers, policy=FAST)
    started = time.monotonic()
    got = {
        i: r
        for i, r in client.map(
            lambda i: client.get(f"/api/v1/slow/{i}", {"s": latency}), range(n), desc="slow"
        )
    }
    elapsed = time.monotonic() - started
    assert got == {i: {"id": i} for i in range(n)}
    assert elapsed < 0.6 * n * latency  # ideal n * latency / workers = 0.3 s


def test_fan_out_skips_chosen_errors_and_records_them(server: ScriptedServer) -> None:
    server.script("thing", [json_response({"errors": []}, 404)] * 3)
    client = CanvasClient(server.url, TOKEN, workers=4, policy=FAST)
    run = client.map(lambda i: client.get(f"/api/v1/things/{i}"), range(10), skip=(NotFound,))
    done = dict(run)
    assert len(done) == 7 and len(run.skipped) == 3
    assert all(isinstance(e, NotFound) for _, e in run.skipped)
    assert set(done) | {i for i, _ in run.skipped} == set(range(10))


def test_fan_out_raises_other_errors_and_stops_early() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            started.append(i)
        if i == 5:
            raise ValueError("broken item 5")
        time.sleep(0.002)
        return i

    with pytest.raises(ValueError, match="broken item 5"):
        for _ in fan_out(work, iter(range(10_000)), workers=2):
            pass
    assert len(started) < 50  # lazily submitted, the rest cancelled

    started.clear()
    for _ in fan_out(work, range(100, 10_000), workers=2):
        break
    assert len(started) < 20


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    stream = io.StringIO()
    with Progress("courses", 3, stream=stream, tty=True) as progress:
        for _ in range(3):
            progress.advance()
            time.sleep(0.11)
    text = stream.getvalue()
    assert text.count("\r") >= 3 and text.endswith("\n") and text.count("\n") == 1
    assert "courses: 3/3 (100.0%)" in text and "/s" in text


def test_progress_off_terminal_logs_periodically(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="courseinv.http_client.progress")
    with Progress("analytics", 4, stream=io.StringIO(), interval=0.0) as progress:
        progress.advance()
        progress.advance(skipped=True)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("analytics: 1/4 (25.0%)") and "ETA" in lines[0]
    assert lines[-1].startswith("analytics: 2/4 (50.0%)") and "1 skipped" in lines[-1]
    assert lines[-1].endswith("(done)") and len(lines) == 3
