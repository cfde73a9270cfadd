"""The learning throttle limiter on four Canvas throttle profiles, against the floor.

Usage: python benchmarks/bench_throttle.py [--requests 1200] [--latency-ms 50]
           [--workers 8] [--profiles default,small-fast,large-slow,shared] [--no-fixed] [-v]

For each profile of ``sandbox.canvas.THROTTLE_PROFILES`` (current Canvas defaults; a
small bucket with a fast leak and a small up-front charge; a large bucket with a slow
leak; the defaults shared with another client that drains the bucket half of the time),
a Canvas sandbox answers ``GET /api/v1/courses/:id`` in ``--latency-ms`` and each client
fetches ``--requests`` courses with ``--workers`` threads, each run on a fresh token
(an empty bucket), each result checked against the institution:

* learning   ``CanvasClient.map`` with the default ``AdaptiveLimiter`` (learns the bucket).
* fixed-par  the same limiter with learning off: Canvas's default parameters assumed
             (up-front 50, leak 10/s), as the limiter did before issue 11 (only the room is
             read from the first answer). On small-fast (room 60) it can only send one
             request at a time: about 100 s at the defaults.
* fixed-conc the same threads over the plain ``RetryingSession`` (retries, throttled
             requests retried with backoff and jitter) with no limiter: a fixed-concurrency
             client that only backs off after a refusal.
* floor      max(requests x latency / workers, (requests x cost - room) / leak), where
             room is the high-water mark and, for the shared bucket, leak is what the
             other client leaves (leak - its average drain).
* bound      the best any client can do with exact knowledge of the bucket and no
             per-request overhead: a millisecond-step simulation that keeps as many of
             the workers busy as the reservations allow (``level + u x in flight`` under
             the mark). Above the floor where up-front charges, not the leak, limit.

Columns: wall seconds, requests answered, refusals (403/429 sent by the sandbox), refusals
per 1,000 requests, and wall / floor; the load average before and after the run. Goal for
``learning``: <= 1.3 x floor and <= 1 refusal per 1,000 on every profile.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from courseinv.http_client import AdaptiveLimiter, CanvasClient, RetryingSession  # noqa: E402
from courseinv.http_client.auth import BearerToken  # noqa: E402
from courseinv.http_client.canvas import canvas_classify  # noqa: E402
from courseinv.sandbox.canvas import THROTTLE_PROFILES, CanvasProcess, ThrottleSpec  # noqa: E402
from courseinv.sandbox.httpserver import Latency  # noqa: E402
from courseinv.sandbox.institution import Institution, InstitutionSpec  # noqa: E402


@dataclass
class Run:
    label: str
    seconds: float
    answered: int
    refused: int

    def per_mille(self) -> float:
        return 1000.0 * self.refused / max(1, self.answered)


def floor_seconds(spec: ThrottleSpec, requests: int, latency_s: float, workers: int) -> float:
    leak = spec.leak_per_s
    if spec.competitor is not None:
        leak -= spec.competitor.rate * spec.competitor.duty
    cost = spec.cost
    return max(requests * latency_s / workers, (requests * cost - spec.capacity) / leak)


def bound_seconds(spec: ThrottleSpec, requests: int, latency_s: float, workers: int) -> float:
    """Ideal schedule: start a request whenever the bucket can hold its reservation."""
    step, t, level, started = 0.001, 0.0, 0.0, 0
    ends: list[float] = []
    done = 0
    comp = spec.competitor
    while done < requests:
        active = comp is not None and comp.active(t)
        others = comp.in_flight * spec.up_front if comp is not None and active else 0.0
        while ends and ends[0] <= t:
            ends.pop(0)
            done += 1
            level += spec.cost
        while (
            started < requests
            and len(ends) < workers
            and level + others + spec.up_front * (len(ends) + 1) < spec.capacity
        ):
            ends.append(t + latency_s)
            started += 1
        drain = comp.rate if comp is not None and active else 0.0
        level = min(spec.maximum, max(0.0, level + (drain - spec.leak_per_s) * step))
        t += step
    return t


def learning(server: CanvasProcess, ids: list[int], workers: int) -> list[int]:
    return _with_client(server, ids, workers, AdaptiveLimiter(workers))


def fixed_parameters(server: CanvasProcess, ids: list[int], workers: int) -> list[int]:
    return _with_client(server, ids, workers, AdaptiveLimiter(workers, learn=False))


def _with_client(
    server: CanvasProcess, ids: list[int], workers: int, limiter: AdaptiveLimiter
) -> list[int]:
    client = CanvasClient(server.url, server.issue_token(), workers=workers, limiter=limiter)
    got = [c["id"] for _, c in client.map(lambda i: client.get(f"/api/v1/courses/{i}"), ids)]
    logging.getLogger(__name__).info("estimate %s; stats %s", limiter.estimate(), client.stats())
    client.close()
    return got


def fixed_concurrency(server: CanvasProcess, ids: list[int], workers: int) -> list[int]:
    session = RetryingSession(
        name="fixed",
        pool_size=workers,
        classify=canvas_classify,
        auth=BearerToken(server.issue_token()),
    )
    lock = threading.Lock()
    got: list[int] = []

    def fetch(course_id: int) -> None:
        data = session.get_json(f"{server.url}/api/v1/courses/{course_id}")
        with lock:
            got.append(data["id"])

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fetch, ids))
    session.close()
    return got


def measure(
    label: str,
    client: Callable[[CanvasProcess, list[int], int], list[int]],
    server: CanvasProcess,
    ids: list[int],
    workers: int,
) -> Run:
    server.reset_log()
    started = time.monotonic()
    got = client(server, ids, workers)
    seconds = time.monotonic() - started
    if sorted(got) != sorted(ids):
        raise SystemExit(f"{label}: wrong data ({len(got)} courses for {len(ids)} asked)")
    refused = server.count(status=403) + server.count(status=429)
    return Run(label, seconds, server.count(status=200), refused)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--profiles", default=",".join(THROTTLE_PROFILES))
    parser.add_argument("--no-fixed", action="store_true", help="only the learning limiter")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    inst_spec = InstitutionSpec.sized(400, terms=1, seed=5)
    inst = Institution.generate(inst_spec)
    live = [c.id for c in inst.courses if c.workflow_state != "deleted"]
    ids = [live[i % len(live)] for i in range(args.requests)]
    clients: list[tuple[str, Callable[[CanvasProcess, list[int], int], list[int]]]] = [
        ("learning", learning)
    ]
    if not args.no_fixed:
        clients += [("fixed-par", fixed_parameters), ("fixed-conc", fixed_concurrency)]
    print(
        f"{args.requests} requests, latency {args.latency_ms:g} ms, {args.workers} workers, "
        f"load average {_load()}\n"
        f"{'profile':<11} {'floor s':>8} {'bound s':>8}  "
        + "  ".join(
            f"{name + ' s':>13} {'ok':>5} {'ref':>5} {'/1000':>6} {'xfloor':>6}"
            for name, _ in clients
        )
    )
    for name in args.profiles.split(","):
        spec = THROTTLE_PROFILES[name]
        floor = floor_seconds(spec, args.requests, args.latency_ms / 1000, args.workers)
        bound = bound_seconds(spec, args.requests, args.latency_ms / 1000, args.workers)
        cells = []
        latency = Latency(args.latency_ms)
        with CanvasProcess(inst_spec, throttle=spec, latency=latency) as server:
            for label, client in clients:
                run = measure(label, client, server, ids, args.workers)
                cells.append(
                    f"{run.seconds:>13.2f} {run.answered:>5} {run.refused:>5} "
                    f"{run.per_mille():>6.2f} {run.seconds / floor:>6.2f}"
                )
        print(f"{name:<11} {floor:>8.2f} {bound:>8.2f}  " + "  ".join(cells), flush=True)
    print(f"load average {_load()}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
