"""Signed Live Events over HTTP into MariaDB: `events serve` vs one transaction per request.

Usage: python benchmarks/bench_receiver.py [--events 4000] [--concurrency 32]
           [--rate 1000] [--db mariadb|postgres|sqlite]

One bounded run on 127.0.0.1. The sandbox signs its institution's event stream once
(both formats, documented shapes, 5 % redeliveries; ``200 + 2 x --events`` messages);
then for each mode a fresh
database is migrated, ``course-inventory events serve`` is started in its own process
(uvicorn, one worker) against the sandbox JWKS, and this process posts to it:

* saturation  every event as fast as answered, ``--concurrency`` kept-alive connections
              (a closed loop): events/s accepted and stored, latency p50/p99.
* paced       the same number of further messages offered at ``--rate`` events/s (an
              open loop, latency measured from each request's send): the latency at the
              goal.

Modes (``--modes``): ``grouped`` (the receiver as shipped: group commit across requests,
one transaction in flight), ``per-request`` (``--max-batch 1 --writers 8``: every request
its own transaction, eight in flight, as a straightforward threaded receiver would do),
``grouped-w4`` (group commit with four transactions in flight), ``grouped-p2`` (two
server processes, group commit in each). Afterwards ``live_event``
must hold every distinct event exactly once. The ceilings of the pipeline's CPU stages (signature check,
``read_events``, ``store_batch`` in batches of 100) are measured in this process on one
core, to show where the time goes. This 2-core machine also runs the load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from courseinv.db.engine import make_engine  # noqa: E402
from courseinv.db.migrate import migrate  # noqa: E402
from courseinv.http_client import RetryingSession  # noqa: E402
from courseinv.live_events.jwks import JwksCache  # noqa: E402
from courseinv.live_events.jwt_verify import SignedEventVerifier  # noqa: E402
from courseinv.live_events.parse import read_events  # noqa: E402
from courseinv.live_events.store import store_batch  # noqa: E402
from courseinv.sandbox.live_events_signing import (  # noqa: E402
    JwksServer,
    KeyRing,
    PostPlan,
    PostResult,
    post_stream,
    stream_claims,
)

from tests.conftest import create_database, drop_database  # noqa: E402

MODES = {
    "grouped": [],  # as shipped: one writer, group commit
    "per-request": ["--max-batch", "1", "--writers", "8"],  # the baseline
    "grouped-w4": ["--writers", "4"],  # group commit, four transactions in flight
    "grouped-p2": ["--processes", "2"],  # group commit in each of two server processes
}
WARMUP = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live children (the worker processes of --processes)."""
    total = 0.0
    for p in [pid, *children(pid)]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


class Receiver:
    """``course-inventory events serve`` in its own process, on a fresh database."""

    def __init__(self, db_kind: str, jwks_url: str, extra: list[str], workdir: Path) -> None:
        if db_kind == "sqlite":
            self.url = f"sqlite:///{workdir / 'bench.sqlite3'}"
            (workdir / "bench.sqlite3").unlink(missing_ok=True)
        else:
            self.url = create_database(db_kind)
        self.kind = db_kind
        engine = make_engine(self.url)
        migrate(engine)
        engine.dispose()
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        config = workdir / "env.hjson"
        config.write_text(json.dumps({
            "JOB_NAMES": ["LIVE_EVENTS"], "LOG_LEVEL": "WARNING", "DATA_DIR": str(workdir),
            "INVENTORY_DB": {"url": self.url},
            "LIVE_EVENTS": {"JWKS_URL": jwks_url, "LISTEN": f"127.0.0.1:{port}"},
        }))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "courseinv.runner.cli", "--config", str(config),
             "events", "serve", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"receiver exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
            try:
                if requests.get(self.base + "/healthz", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError("receiver did not start")

    def health(self) -> dict[str, Any]:
        return requests.get(self.base + "/healthz", timeout=10).json()

    def stored(self) -> int:
        engine = make_engine(self.url)
        with engine.connect() as conn:
            n = conn.execute(text("SELECT COUNT(*) FROM live_event")).scalar_one()
        engine.dispose()
        return n

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        if self.kind != "sqlite":
            drop_database(self.url)


def run_mode(name: str, db_kind: str, jwks: JwksServer, bodies: list[bytes], args: argparse.Namespace,
             workdir: Path, distinct: int) -> dict[str, Any]:
    receiver = Receiver(db_kind, jwks.jwks_url, MODES[name], workdir)
    try:
        url = receiver.base + "/"
        post_stream(bodies[:WARMUP], PostPlan(url, concurrency=8))
        n = args.events
        cpu0 = cpu_seconds(receiver.proc.pid)
        sat = post_stream(bodies[WARMUP:WARMUP + n], PostPlan(url, concurrency=args.concurrency))
        cpu1 = cpu_seconds(receiver.proc.pid)
        paced = post_stream(bodies[WARMUP + n:WARMUP + 2 * n],
                            PostPlan(url, rate=args.rate, concurrency=max(args.concurrency, 64)))
        health = receiver.health()
        stored = receiver.stored()
    finally:
        receiver.close()
    return {"mode": name, "saturation": sat, "paced": paced, "stored": stored,
            "expected": distinct, "health": health, "cpu_ms_per_event": (cpu1 - cpu0) * 1000 / n}


def ceilings(ring: KeyRing, jwks: JwksServer, events: list[dict[str, Any]], tokens: list[str],
             db_kind: str) -> dict[str, float]:
    """Events/s of each CPU stage alone, on one core of this process."""
    sample = min(len(events), 600)
    verifier = SignedEventVerifier(JwksCache(jwks.jwks_url, RetryingSession(name="jwks").get_json))

    async def verify_all() -> float:
        await verifier.keys.refresh()
        t = time.perf_counter()
        for token in tokens[:sample]:
            await verifier.verify(token)
        return time.perf_counter() - t

    verify_s = asyncio.run(verify_all())
    t = time.perf_counter()
    items = [item for e in events[:sample] for item in read_events(e, source="https")]
    read_s = time.perf_counter() - t
    url = f"sqlite:///{tempfile.mkdtemp()}/ceiling.sqlite3" if db_kind == "sqlite" else create_database(db_kind)
    engine = make_engine(url)
    migrate(engine)
    t = time.perf_counter()
    for i in range(0, len(items), 100):
        store_batch(engine, items[i:i + 100])
    store_s = time.perf_counter() - t
    engine.dispose()
    if db_kind != "sqlite":
        drop_database(url)
    return {"verify": sample / verify_s, "read_events": sample / read_s, "store_batch(100)": sample / store_s}


def row(label: str, result: PostResult, extra: str = "") -> str:
    ok = sum(v for k, v in result.statuses.items() if 200 <= k < 300)
    rate = ok / result.elapsed_s if result.elapsed_s else 0.0
    return (f"| {label:<24} | {ok:>6} | {rate:>9.0f} | {result.percentile_ms(50):>8.1f} | "
            f"{result.percentile_ms(99):>8.1f} | {result.retries:>7} | {extra} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000, help="events per phase (default 4000)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections at saturation")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered events/s when paced")
    parser.add_argument("--db", default="mariadb", choices=["mariadb", "postgres", "sqlite"])
    parser.add_argument("--modes", default="grouped,per-request",
                        help=f"comma-separated, of {', '.join(MODES)} (default grouped,per-request)")
    args = parser.parse_args()

    total = WARMUP + 2 * args.events
    print(f"Signing {total} messages of the sandbox stream (RS256, 2048-bit key)...", flush=True)
    events = stream_claims(total, seed=13)[:total]
    # Distinct by the store's own key (a redelivered Caliper envelope may differ in sendTime).
    distinct = len({i.event_key for e in events for i in read_events(e, source="https")})
    ring = KeyRing(prefix="bench")
    t = time.perf_counter()
    tokens = [ring.sign(e, lifetime_s=3600) for e in events]
    print(f"  signed in {time.perf_counter() - t:.1f} s; mean token {sum(map(len, tokens)) // len(tokens)} bytes")
    bodies = [tok.encode() for tok in tokens]
    results = []
    load0 = f"{os.getloadavg()[0]:.1f}"
    with JwksServer(ring) as jwks, tempfile.TemporaryDirectory() as tmp:
        stages = ceilings(ring, jwks, events, tokens, args.db)
        for mode in args.modes.split(","):
            print(f"Mode {mode}...", flush=True)
            results.append(run_mode(mode, args.db, jwks, bodies, args, Path(tmp), distinct))

    print(f"\nload average before / after: {load0} / {os.getloadavg()[0]:.1f} (2 cores)")
    print("CPU stages alone, one core of this process (events/s): "
          + ", ".join(f"{k} {v:,.0f}" for k, v in stages.items()))
    print(f"\n{args.db}, {args.events} messages per phase ({distinct} distinct events in all), saturation with {args.concurrency} "
          f"connections, paced at {args.rate:.0f}/s offered\n")
    print("| mode / phase             |   2xx  | events/s  | p50 ms   | p99 ms   | retries | notes |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        h = r["health"]
        notes = (f"{h['transactions']} transactions, largest {h['largest_transaction']}, "
                 f"server CPU {r['cpu_ms_per_event']:.2f} ms/event")
        print(row(f"{r['mode']} saturation", r["saturation"], notes))
        print(row(f"{r['mode']} paced", r["paced"], f"stored {r['stored']}/{r['expected']}"))
    by_mode = {r["mode"]: r for r in results}
    if "grouped" in by_mode and "per-request" in by_mode:
        g, s = (by_mode[m]["saturation"].sent / by_mode[m]["saturation"].elapsed_s
                for m in ("grouped", "per-request"))
        print(f"\ngrouped / per-request throughput at saturation: {g / s:.2f}x")
    lost = [r["mode"] for r in results if r["stored"] != r["expected"]]
    if lost:
        print(f"EVENTS MISSING in: {', '.join(lost)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
