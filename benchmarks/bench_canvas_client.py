"""The Canvas client fetching every course's enrollments over GraphQL, against the sandbox.

Usage: python benchmarks/bench_canvas_client.py [--courses 5000] [--latency-ms 50]
           [--workers 8] [--no-naive] [-v]

The Canvas sandbox (default throttle: bucket 700, 50 units reserved per request in
flight, leak 10/s, GraphQL cost 0.25) serves ``--courses`` courses at ``--latency-ms``
per request. Every non-deleted course's enrollments connection is paged (100 per page)
with the COURSE_INVENTORY job's ``ENROLLMENTS_QUERY``. Reported side by side, each run on its own
token (so its own bucket), each checked against the institution's ground truth:

* project  ``CanvasClient.map`` + ``graphql_connection``: ``--workers`` threads gated by
           the adaptive throttle limiter.
* naive    the same ``--workers`` threads over the plain ``RetryingSession`` (pooled,
           retries, throttled requests retried with exponential backoff and jitter) but
           without the limiter: what a client that only backs off after a 403 does.
* floor    max(requests x latency / workers, (requests x cost - 700) / leak rate), with
           ``requests`` the answered GraphQL requests (pages) the work needs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from courseinv.course_inventory.canvas_pull import ENROLLMENTS_QUERY  # noqa: E402
from courseinv.http_client import CanvasClient, RetryingSession  # noqa: E402
from courseinv.http_client.canvas import canvas_classify  # noqa: E402
from courseinv.sandbox.canvas import CanvasServer, ThrottleSpec  # noqa: E402
from courseinv.sandbox.httpserver import Latency  # noqa: E402
from courseinv.sandbox.institution import DELETED, Institution, InstitutionSpec  # noqa: E402

CONNECTION = ("course", "enrollmentsConnection")


@dataclass
class Run:
    label: str
    seconds: float
    answered: int  # GraphQL requests answered 200
    throttled: int  # 403/429 responses
    enrollments: int


def expected_total(inst: Institution, course_ids: list[int]) -> int:
    by_id = inst.course_by_id
    return sum(int((inst.course_enrollments(by_id[c]).state != DELETED).sum()) for c in course_ids)


def project(server: CanvasServer, course_ids: list[int], workers: int) -> int:
    client = CanvasClient(server.url, server.issue_token(), workers=workers)

    def fetch(course_id: int) -> int:
        variables = {"courseId": str(course_id)}
        return sum(1 for _ in client.graphql_connection(ENROLLMENTS_QUERY, variables, CONNECTION))

    total = sum(n for _, n in client.map(fetch, course_ids, desc="enrollments"))
    logging.getLogger(__name__).info("project client stats: %s", client.stats())
    client.close()
    return total


def naive(server: CanvasServer, course_ids: list[int], workers: int) -> int:
    session = RetryingSession(
        name="naive",
        headers={"Authorization": f"Bearer {server.issue_token()}"},
        pool_size=workers,
        classify=canvas_classify,
    )
    url = server.url + "/api/graphql"

    def fetch(course_id: int) -> int:
        count, after = 0, None
        while True:
            body = {
                "query": ENROLLMENTS_QUERY,
                "variables": {"courseId": str(course_id), "after": after},
            }
            connection = session.request("POST", url, json=body).data["data"]["course"][
                "enrollmentsConnection"
            ]
            count += len(connection["nodes"])
            if not connection["pageInfo"]["hasNextPage"]:
                return count
            after = connection["pageInfo"]["endCursor"]

    with ThreadPoolExecutor(workers) as pool:
        total = sum(pool.map(fetch, course_ids))
    session.close()
    return total


def measure(label: str, server: CanvasServer, work: Callable[[], int]) -> Run:
    server.log.reset()
    started = time.monotonic()
    enrollments = work()
    seconds = time.monotonic() - started
    return Run(
        label=label,
        seconds=seconds,
        answered=server.log.count("graphql", 200),
        throttled=server.log.count(status=403) + server.log.count(status=429),
        enrollments=enrollments,
    )


def floor_seconds(requests: int, latency_s: float, workers: int, throttle: ThrottleSpec) -> float:
    latency_bound = requests * latency_s / workers
    throttle_bound = (
        requests * throttle.cost_of("graphql") - throttle.capacity
    ) / throttle.leak_per_s
    return max(latency_bound, throttle_bound)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--courses", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    inst = Institution.generate(InstitutionSpec.sized(args.courses, seed=args.seed))
    course_ids = [c.id for c in inst.courses if c.workflow_state != "deleted"]
    want = expected_total(inst, course_ids)
    throttle = ThrottleSpec()
    latency_s = args.latency_ms / 1000
    runs: list[Run] = []
    with CanvasServer(inst, latency=Latency(args.latency_ms), throttle=throttle) as server:
        runs.append(measure("project", server, lambda: project(server, course_ids, args.workers)))
        if not args.no_naive:
            runs.append(measure("naive", server, lambda: naive(server, course_ids, args.workers)))

    report(args, inst, course_ids, want, runs, throttle, latency_s)
    return 0 if all(r.enrollments == want for r in runs) else 1


def report(
    args: argparse.Namespace,
    inst: Institution,
    course_ids: list[int],
    want: int,
    runs: list[Run],
    throttle: ThrottleSpec,
    latency_s: float,
) -> None:
    requests = runs[0].answered
    floor = floor_seconds(requests, latency_s, args.workers, throttle)
    print(
        f"Canvas client benchmark: {len(inst.courses)} courses ({len(course_ids)} not deleted), "
        f"{want} enrollments, latency {args.latency_ms:g} ms, workers {args.workers}, "
        f"throttle capacity {throttle.capacity:g} / up-front {throttle.up_front:g} / "
        f"leak {throttle.leak_per_s:g}/s / GraphQL cost {throttle.cost_of('graphql'):g}"
    )
    header = f"{'run':<8} {'wall s':>8} {'requests':>9} {'403/429':>8} {'enrollments':>12} {'x floor':>8}"
    print(header)
    print("-" * len(header))
    rows: list[tuple[str, Any, Any, Any, Any, Any]] = [
        (
            r.label,
            f"{r.seconds:.1f}",
            r.answered,
            r.throttled,
            f"{r.enrollments}{'' if r.enrollments == want else ' WRONG'}",
            f"{r.seconds / floor:.2f}",
        )
        for r in runs
    ]
    rows.append(("floor", f"{floor:.1f}", requests, 0, want, "1.00"))
    for row in rows:
        print(f"{row[0]:<8} {row[1]:>8} {row[2]:>9} {row[3]:>8} {row[4]:>12} {row[5]:>8}")
    latency_bound = requests * latency_s / args.workers
    throttle_bound = (
        requests * throttle.cost_of("graphql") - throttle.capacity
    ) / throttle.leak_per_s
    print(
        f"floor = max(latency-bound {latency_bound:.1f} s, throttle-bound {throttle_bound:.1f} s)"
    )


if __name__ == "__main__":
    sys.exit(main())
