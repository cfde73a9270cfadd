"""LIVE_EVENTS: draining mixed Canvas Live Events from a local SQS server into MariaDB.

Usage: python benchmarks/bench_live_events.py [--events 200000] [--depth 200]
           [--db mysql+pymysql://root@127.0.0.1:3306/] [--modes ceiling,baseline,project]
           [--baseline-messages N]   (mode baseline on the first N messages only)

One sandbox stream (``--events`` distinct events, both formats, 5 % duplicate deliveries,
out-of-order, 5 % of unprojected types) goes through the local SQS server (MiniStack, spoken to
by unmodified boto3) once per mode. A producer process keeps the queue at about ``--depth``
messages, topping it up while it drains (local servers slow with queue length). Each
consumer runs in its own process (so its peak RSS is its own), from an empty database:

* ceiling   the local server's own ceiling: receive 10 + delete 10 on six threads at
            once with the project's SQS client, no database.
* baseline  what LEDbelly does: per message, parse the JSON and INSERT the event in its
            own statement (autocommit), then delete the batch. No schema check, no
            projections.
* project   the LIVE_EVENTS job's ``drain``: receiver threads overlapping one writer,
            schema checks, event keys, four projections, drift and rejects, one
            transaction per batch, delete after commit.

* baseline-db, project-db   the database side alone: the same messages read from memory
            (no queue), to show what one process does when the queue is not the limit.
            Their peak RSS includes the message list handed to the process.

By default the ceiling is measured first and again after the SQS modes (the machine is
shared: its load moves every number); "vs ceiling" is against the better of the two.

Reported side by side: messages, seconds, messages/s, ratio to baseline (the matching
one: SQS or memory) and to the ceiling, peak RSS and CPU time per message of the
consumer process, the 1-minute load average before and after each mode, and whether the
project's tables equal the ground truth.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from courseinv.sandbox.institution import Institution, InstitutionSpec  # noqa: E402
from courseinv.sandbox.live_events import StreamSpec, generate_stream  # noqa: E402
from courseinv.sandbox.sqs import SqsServer, queue_depth, send_all, sqs_server  # noqa: E402

CEILING_THREADS = 6
SPEC = dict(duplicate_rate=0.05, out_of_order_rate=0.1, unprojected_rate=0.05)


def make_stream(events: int, seed: int):
    inst = Institution.generate(InstitutionSpec.sized(300, seed=seed))
    return generate_stream(inst, StreamSpec(events=events, seed=seed, **SPEC))


# -- producer ----------------------------------------------------------------------------


def produce(server_url: str, queue_url: str, messages: list[str], depth: int) -> None:
    """Send ``messages`` in batches of 10, keeping about ``depth`` messages queued."""
    server = SqsServer(server_url, None)  # type: ignore[arg-type]
    client = server.client()
    sent = 0
    while sent < len(messages):
        visible, _ = queue_depth(client, queue_url)
        room = max(0, depth - visible)
        if room < 10:
            time.sleep(0.1)
            continue
        chunk = messages[sent : sent + room]
        sent += send_all(client, queue_url, chunk)


# -- consumers (each in its own process) -------------------------------------------------


def consume_ceiling(server_url: str, queue_url: str, total: int, _db: str) -> dict[str, Any]:
    """Receive 10 + delete 10 on ``CEILING_THREADS`` threads at once, with the project's
    own SQS client (``Queue``): what the server sustains with no database."""
    import threading

    queue = _queue(server_url, queue_url)
    lock, done, calls = threading.Lock(), [0], [0]

    def worker() -> None:
        while True:
            with lock:
                if done[0] >= total:
                    return
            messages = queue.receive(10)
            if messages:
                queue.delete(messages)
            with lock:
                calls[0] += 1
                done[0] += len(messages)

    threads = [threading.Thread(target=worker) for _ in range(CEILING_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.close()
    return {"messages": done[0], "receives": calls[0]}


def _queue(server_url: str, queue_url: str, queue_class: Any = None) -> Any:
    """The project's SQS client for the bench queue (long polls of 1 s)."""
    from courseinv.live_events.sqs import Queue
    from courseinv.sandbox.sqs import ACCESS_KEY, REGION, SECRET_KEY

    return (queue_class or Queue)(
        {
            "SQS_QUEUE_URL": queue_url,
            "SQS_ENDPOINT_URL": server_url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "WAIT_SECONDS": 1,
        }
    )


def _baseline_connection(db_url: str) -> Any:
    """A plain PyMySQL connection in autocommit, as LEDbelly uses."""
    import pymysql
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    return pymysql.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=url.database,
        charset="utf8mb4",
        autocommit=True,
    )


def consume_baseline(server_url: str, queue_url: str, total: int, db_url: str) -> dict[str, Any]:
    """LEDbelly's way: one INSERT statement per event, each committed on its own."""
    conn = _baseline_connection(db_url)
    cursor = conn.cursor()
    client = SqsServer(server_url, None).client()  # type: ignore[arg-type]
    done = inserted = 0
    while done < total:
        reply = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        messages = reply.get("Messages", [])
        for m in messages:
            event = json.loads(m["Body"])
            inserted += _insert_one(cursor, event, m["Body"])
        if messages:
            client.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
            done += len(messages)
    conn.close()
    return {"messages": done, "rows": inserted}


def _insert_one(cursor, event: dict, body: str) -> int:
    if "metadata" in event:
        meta = event["metadata"]
        key, name, fmt, when = str(uuid.uuid4()), meta["event_name"], "canvas", meta["event_time"]
    else:
        e = event["data"][0]
        key, name, fmt, when = e["id"], e["type"] + "/" + e["action"], "caliper", e["eventTime"]
    return cursor.execute(
        "INSERT IGNORE INTO live_event (event_key, event_name, event_format, event_time, "
        "received_at, payload, batch_id, source) VALUES (%s, %s, %s, %s, NOW(6), %s, '-', 'sqs')",
        (key, name, fmt, when.replace("T", " ").rstrip("Z")[:26], body),
    )


def consume_project(server_url: str, queue_url: str, total: int, db_url: str) -> dict[str, Any]:
    from courseinv.db.engine import make_engine
    from courseinv.live_events.job import drain
    from courseinv.live_events.sqs import Queue

    class CountingQueue(Queue):
        """Counts receive calls (messages per call tells how full the queue was kept)."""

        calls = 0

        def receive(self, *args: Any, **kwargs: Any) -> list:
            CountingQueue.calls += 1
            return super().receive(*args, **kwargs)

    engine = make_engine(db_url)
    queue = _queue(server_url, queue_url, CountingQueue)
    done = stored = batches = 0
    while done < total:  # drain() returns when a long poll finds the queue empty
        totals = drain(queue, engine, max_messages=total - done)
        done += totals.messages
        stored += totals.stored
        batches += totals.batches
    queue.close()
    engine.dispose()
    return {"messages": done, "rows": stored, "batches": batches, "receives": queue.calls}


def consume_baseline_db(messages: list[str], db_url: str) -> dict[str, Any]:
    """The baseline's database side alone: the same messages from memory, no queue."""
    conn = _baseline_connection(db_url)
    cursor = conn.cursor()
    inserted = sum(_insert_one(cursor, json.loads(body), body) for body in messages)
    conn.close()
    return {"messages": len(messages), "rows": inserted}


def consume_project_db(messages: list[str], db_url: str) -> dict[str, Any]:
    """The project's read + store alone (the job's batch size), the same messages from memory."""
    from courseinv.db.engine import make_engine
    from courseinv.live_events.job import DEFAULT_BATCH_MESSAGES
    from courseinv.live_events.parse import read_events
    from courseinv.live_events.store import store_batch

    engine = make_engine(db_url)
    stored = 0
    for start in range(0, len(messages), DEFAULT_BATCH_MESSAGES):
        chunk = messages[start : start + DEFAULT_BATCH_MESSAGES]
        stored += store_batch(
            engine, [i for m in chunk for i in read_events(m, source="sqs")]
        ).inserted
    engine.dispose()
    return {"messages": len(messages), "rows": stored}


CONSUMERS = {
    "ceiling": consume_ceiling,
    "baseline": consume_baseline,
    "project": consume_project,
    "baseline-db": consume_baseline_db,
    "project-db": consume_project_db,
}
MEMORY_MODES = ("baseline-db", "project-db")
COUNTS = ("rows", "batches", "receives")  # printed when a consumer reports them


def _consumer_main(mode: str, args: tuple, out: Any) -> None:
    started = time.perf_counter()
    result = CONSUMERS[mode](*args)
    result["seconds"] = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_mb"] = _peak_rss_mb()
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    out.put(result)


def _peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries that over
    from the parent across fork + exec, so every consumer would show the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- databases ---------------------------------------------------------------------------


def fresh_database(server_url: str) -> str:
    from courseinv.db.engine import make_engine
    from courseinv.db.migrate import migrate
    from sqlalchemy import create_engine, text

    name = f"bench_live_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    admin.dispose()
    url = f"{server_url.rstrip('/')}/{name}?charset=utf8mb4"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    return url


def drop_database(server_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(server_url)
    with admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{make_url(url).database}`"))
    admin.dispose()


def run_mode(mode: str, sqs: SqsServer, messages: list[str], depth: int, db_server: str):
    if mode in MEMORY_MODES:
        return run_memory_mode(mode, messages, db_server)
    queue_url = sqs.create_queue(f"bench-{mode}-{uuid.uuid4().hex[:6]}", visibility_timeout=120)
    db_url = fresh_database(db_server) if mode != "ceiling" else ""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    producer = ctx.Process(target=produce, args=(sqs.url, queue_url, messages, depth))
    consumer = ctx.Process(
        target=_consumer_main, args=(mode, (sqs.url, queue_url, len(messages), db_url), out)
    )
    producer.start()
    consumer.start()
    result = out.get()
    consumer.join()
    producer.join()
    return result, db_url


def run_memory_mode(mode: str, messages: list[str], db_server: str):
    db_url = fresh_database(db_server)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    consumer = ctx.Process(target=_consumer_main, args=(mode, (messages, db_url), out))
    consumer.start()
    result = out.get()
    consumer.join()
    return result, db_url


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--depth", type=int, default=200, help="messages kept queued (top-up)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--db", default="mysql+pymysql://root@127.0.0.1:3306/")
    p.add_argument(
        "--modes",
        default="ceiling,project,baseline,ceiling,baseline-db,project-db",
        help="comma-separated, run in this order; a repeated mode is measured again",
    )
    p.add_argument(
        "--baseline-messages",
        type=int,
        default=None,
        help="the first N messages only for mode baseline (one INSERT per event is slow)",
    )
    args = p.parse_args()

    t0 = time.perf_counter()
    stream = make_stream(args.events, args.seed)
    print(
        f"stream: {args.events:,} events -> {len(stream.messages):,} messages "
        f"(generated in {time.perf_counter() - t0:.1f} s)"
    )
    results: dict[str, dict[str, Any]] = {}
    with sqs_server() as sqs:
        for mode in args.modes.split(","):
            messages = stream.messages
            if mode == "baseline" and args.baseline_messages:
                messages = messages[: args.baseline_messages]
            load_before = os.getloadavg()[0]
            result, db_url = run_mode(mode, sqs, messages, args.depth, args.db)
            result["load"] = f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"
            if mode in ("project", "project-db"):
                result["truth"] = _check_truth(db_url, stream.truth)
            if db_url:
                drop_database(args.db, db_url)
            results[_label(mode, results)] = result
            rate = result["messages"] / result["seconds"]
            print(
                f"  {mode:<9} {result['messages']:>8,} messages in {result['seconds']:7.1f} s "
                f"= {rate:8.1f}/s  peak RSS {result['peak_rss_mb']:6.0f} MB  load {result['load']}  "
                f"CPU {1000 * result['cpu_seconds'] / result['messages']:.2f} ms/message  "
                + "  ".join(f"{k} {result[k]:,}" for k in COUNTS if k in result),
                flush=True,
            )
    _table(results)
    return 0


def _check_truth(db_url: str, truth) -> str:
    from courseinv.db.engine import make_engine

    from tests.live_events.helpers import expected, projections

    engine = make_engine(db_url)
    try:
        got, want = projections(engine), expected(truth)
        bad = [name for name in want if got[name] != want[name]]
        return "equal" if not bad else "DIFFERS: " + ", ".join(bad)
    finally:
        engine.dispose()


def _label(mode: str, results: dict[str, Any]) -> str:
    """``mode``, or ``mode #2``... when the run measures a mode again (e.g. the ceiling
    before and after the others, to show how the machine's load moved it)."""
    label, n = mode, 1
    while label in results:
        n += 1
        label = f"{mode} #{n}"
    return label


def _mode(label: str) -> str:
    return label.split(" #")[0]


def _table(results: dict[str, dict[str, Any]]) -> None:
    """One row per measurement. "vs ceiling": against the best ceiling of the run."""
    rate = {m: r["messages"] / r["seconds"] for m, r in results.items()}
    ceiling = max((v for m, v in rate.items() if _mode(m) == "ceiling"), default=None)
    print(
        "\n| mode | messages | seconds | messages/s | vs baseline | vs ceiling | peak RSS MB "
        "| CPU ms/message | load 1-min before / after |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for label, r in results.items():
        mode = _mode(label)
        base = "baseline-db" if mode in MEMORY_MODES else "baseline"
        vs_base = f"{rate[label] / rate[base]:.2f}x" if base in rate and mode != "ceiling" else "-"
        vs_ceil = (
            f"{100 * rate[label] / ceiling:.0f} %" if ceiling and mode not in MEMORY_MODES else "-"
        )
        print(
            f"| {label} | {r['messages']:,} | {r['seconds']:.1f} | {rate[label]:.1f} | {vs_base} "
            f"| {vs_ceil} | {r['peak_rss_mb']:.0f} "
            f"| {1000 * r['cpu_seconds'] / r['messages']:.2f} | {r['load']} |"
        )
    for label, r in results.items():
        if "truth" in r:
            print(f"{label} tables vs ground truth: {r['truth']}")


if __name__ == "__main__":
    sys.exit(main())
