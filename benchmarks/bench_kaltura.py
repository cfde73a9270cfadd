"""Kaltura media listing past the 10,000-match cap: keyset walk vs the original pager.

Usage: python benchmarks/bench_kaltura.py [--media 25000] [--tie 300] [--latency-ms 50]

The Kaltura fake serves ``--media`` entries, ``--tie`` of which share one createdAt second
straddling match 10,000 (where Kaltura refuses to page deeper), at ``--latency-ms`` per
request. Reported side by side, each run from an empty state:

* project   ``http_client.kaltura.KalturaClient.iter_media``: always page 1 of
            ``createdAt >= lower`` with ``idNotIn`` = ids seen at second ``lower``.
* naive     the original job's pager: pages 1, 2, ... of ``createdAt >= lower``; on
            QUERY_EXCEEDED_MAX_MATCHES_ALLOWED, ``lower`` = the last entry's createdAt,
            ``idNotIn`` = that one id, back to page 1. Entries sharing that second come again.
* floor     ceil(media / 500) requests (500 is Kaltura's largest page) x latency.

For each: requests, wall time, entries received, distinct entries, duplicates, missing.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from courseinv.http_client.kaltura import PAGE_SIZE, KalturaClient  # noqa: E402
from courseinv.http_client.session import RetryingSession  # noqa: E402
from courseinv.sandbox.httpserver import Latency  # noqa: E402
from courseinv.sandbox.kaltura import KalturaServer  # noqa: E402


def naive_walk(server: KalturaServer, since: int) -> Iterator[dict[str, Any]]:
    """The original pager (course-inventory's mivideo job), over plain HTTP."""
    session = RetryingSession(name="naive")
    url = f"{server.url}/api_v3/service"
    ks = session.request("POST", f"{url}/session/action/start", data={
        "format": 1, "secret": server.admin_secret, "partnerId": server.partner_id, "type": 2,
    }).data  # fmt: skip
    lower, exclude, index, last = since, "", 1, None
    while True:
        data = {"format": 1, "ks": ks, "filter[categoriesFullNameIn]": server.root,
                "filter[orderBy]": "+createdAt", "filter[createdAtGreaterThanOrEqual]": lower,
                "filter[idNotIn]": exclude, "pager[pageSize]": PAGE_SIZE,
                "pager[pageIndex]": index}  # fmt: skip
        page = session.request("POST", f"{url}/media/action/list", data=data).data
        if page.get("code") == "QUERY_EXCEEDED_MAX_MATCHES_ALLOWED":
            lower, exclude, index = last["createdAt"], last["id"], 1
            continue
        objects = page["objects"]
        yield from objects
        if objects:
            last = objects[-1]
        if len(objects) < PAGE_SIZE:
            return
        index += 1


def measure(name: str, walk: Iterator[dict[str, Any]], server: KalturaServer,
            expected: set[str]) -> dict[str, Any]:  # fmt: skip
    server.log.reset()
    started = time.perf_counter()
    ids = [e["id"] for e in walk]
    seconds = time.perf_counter() - started
    distinct = set(ids)
    return {"name": name, "requests": server.log.count("media.list"), "seconds": seconds,
            "received": len(ids), "distinct": len(distinct),
            "duplicates": len(ids) - len(distinct), "missing": len(expected - distinct)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=int, default=25_000)
    parser.add_argument("--tie", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()

    server = KalturaServer(1, [101, 102, 103], date(2026, 1, 1), days=0, media_per_day=0,
                           latency=Latency(args.latency_ms))  # fmt: skip
    start = datetime(2026, 1, 2, tzinfo=UTC)
    server.add_bulk(args.media, start, tie_size=args.tie)
    expected = set(server.expected_media_created()["id"])
    since = int(start.timestamp())
    with server:
        client = KalturaClient(server.url, server.partner_id, server.admin_secret)
        rows = [
            measure("project", client.iter_media(server.root, since), server, expected),
            measure("naive", naive_walk(server, since), server, expected),
        ]
        client.close()
    floor = math.ceil(len(expected) / PAGE_SIZE)
    rows.append({"name": "floor", "requests": floor, "seconds": floor * args.latency_ms / 1000,
                 "received": len(expected), "distinct": len(expected), "duplicates": 0,
                 "missing": 0})  # fmt: skip

    print(f"Kaltura media.list: {len(expected):,} media, a {args.tie}-entry createdAt tie "
          f"across match 10,000, {args.latency_ms:g} ms per request")  # fmt: skip
    header = f"{'':<8} {'requests':>9} {'seconds':>8} {'received':>9} {'distinct':>9} "
    print(header + f"{'duplicates':>11} {'missing':>8}")
    for r in rows:
        print(f"{r['name']:<8} {r['requests']:>9,} {r['seconds']:>8.2f} {r['received']:>9,} "
              f"{r['distinct']:>9,} {r['duplicates']:>11,} {r['missing']:>8,}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
