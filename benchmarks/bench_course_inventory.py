"""COURSE_INVENTORY at scale: a sandbox institution over real HTTP, the job via the CLI.

Usage: python benchmarks/bench_course_inventory.py [--courses 20000] [--db sqlite|mariadb]
           [--latency-ms 50] [--workers 8] [--baseline]

The Canvas sandbox (default throttle: bucket 700, 50 units reserved per request in
flight, leak 10/s; GraphQL costs 0.25, REST 0.05) serves ``--courses`` courses (20,000 →
about 900,000 enrollments) at ``--latency-ms`` per request from this process; a UDW is
seeded in a SQLite file. The job runs twice through ``course-inventory run`` in a child
process (so its peak RSS, VmHWM, is its own): a first run into an empty output database, then a
second run that finds published_at in the database (audit logs only for courses that
have none).

Reported side by side:

* project   the measured runs: wall time, requests by endpoint, 403s, peak RSS.
* floor     the physical floor for the same requests: the larger of
            latency-bound  requests x latency / in-flight limit
                           (in-flight limit = min(workers, capacity / reservation)), and
            throttle-bound (total cost - (capacity - reservation)) / leak rate
                           (an empty bucket absorbs at most capacity - reservation).
* naive     one request at a time, no throttle trouble: requests x latency. Computed, not
            run, unless ``--baseline`` (then the job also runs with NUM_ASYNC_WORKERS = 1
            into a fresh SQLite database).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from courseinv.sandbox.canvas import CanvasServer, ThrottleSpec  # noqa: E402
from courseinv.sandbox.httpserver import Latency  # noqa: E402
from courseinv.sandbox.institution import Institution, InstitutionSpec  # noqa: E402
from courseinv.sandbox.udw import seed_udw  # noqa: E402


@dataclass
class RunResult:
    label: str
    seconds: float
    exit_code: int
    peak_rss_mb: float
    requests: dict[str, int]
    statuses: dict[int, int]
    throttled: int
    cost: float


def child_main(argv: list[str]) -> int:
    """``--child OUT.json CLI ARGS...``: run the CLI, then record this process's peak RSS."""
    out, cli_args = Path(argv[0]), argv[1:]
    from courseinv.runner.cli import main

    code = main(cli_args)
    out.write_text(json.dumps({"exit_code": code, "peak_rss_mb": peak_rss_kb() / 1024}))
    return code


def peak_rss_kb() -> int:
    """This process's own peak RSS: Linux's VmHWM. Not ``ru_maxrss``: it keeps the peak
    of the process image replaced by ``exec``, i.e. the parent benchmark's own memory
    (institution, sandbox) when the child was spawned."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_job(
    label: str, canvas: CanvasServer, config: Path, workdir: Path, log_file: Path
) -> RunResult:
    canvas.log.reset()
    canvas.throttle = canvas.throttle  # empty bucket, as after a night's rest
    throttled_before = canvas.throttled
    out = workdir / f"{label}.json"
    cmd = [sys.executable, __file__, "--child", str(out), "run", "--config", str(config)]
    started = time.monotonic()
    with log_file.open("a", encoding="utf-8") as log:
        log.write(f"\n===== {label} =====\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=log, cwd=ROOT, check=False)
    seconds = time.monotonic() - started
    child = json.loads(out.read_text()) if out.exists() else {"peak_rss_mb": float("nan")}
    by_endpoint = canvas.log.by_endpoint()
    return RunResult(
        label=label,
        seconds=seconds,
        exit_code=proc.returncode,
        peak_rss_mb=float(child["peak_rss_mb"]),
        requests=by_endpoint,
        statuses=canvas.log.by_status(),
        throttled=canvas.throttled - throttled_before,
        cost=request_cost(canvas.throttle, by_endpoint),
    )


def request_cost(throttle: ThrottleSpec | None, requests: dict[str, int]) -> float:
    if throttle is None:
        return 0.0
    return sum(throttle.cost_of(endpoint) * n for endpoint, n in requests.items())


def floor_seconds(
    result: RunResult, throttle: ThrottleSpec, latency_s: float, workers: int
) -> float:
    """The physical floor for the requests the run made (see the module docstring)."""
    answered = sum(n for s, n in result.statuses.items() if s not in (0, 403, 429))
    in_flight = max(1, min(workers, int(throttle.capacity // throttle.up_front)))
    latency_bound = answered * latency_s / in_flight
    # A request is admitted only while the bucket holds less than capacity - reservation.
    room = throttle.capacity - throttle.up_front
    throttle_bound = max(0.0, result.cost - room) / throttle.leak_per_s
    return max(latency_bound, throttle_bound)


def write_config(
    path: Path,
    canvas: CanvasServer,
    inst: Institution,
    output_url: str,
    udw_url: str,
    workers: int,
    canvas_extra: dict[str, Any] | None = None,
) -> Path:
    """The COURSE_INVENTORY config of a benchmark run (``canvas_extra``: more CANVAS keys)."""
    config = {
        "JOB_NAMES": ["COURSE_INVENTORY"],
        "LOG_LEVEL": "INFO",
        "DATA_DIR": str(path.parent / "data"),
        "NUM_ASYNC_WORKERS": workers,
        "CANVAS": {
            "CANVAS_URL": canvas.url,
            "CANVAS_TOKEN": canvas.token,
            "CANVAS_ACCOUNT_ID": canvas.account_id,
            "CANVAS_TERM_IDS": inst.term_ids,
            **(canvas_extra or {}),
        },
        "UDW": {"url": udw_url},
        "INVENTORY_DB": {"url": output_url},
    }
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def output_database(kind: str, workdir: Path) -> tuple[str, Any]:
    """(URL, cleanup) of an empty output database."""
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'inventory.sqlite3'}", lambda: None
    from tests.conftest import create_database, drop_database

    url = create_database(kind)
    return url, lambda: drop_database(url)


def row_counts(url: str) -> dict[str, int]:
    from courseinv.db.engine import make_engine
    from courseinv.db.tables import metadata
    from sqlalchemy import func, select

    engine = make_engine(url)
    names = ("term", "account", "course", "course_section", "enrollment", "canvas_course_usage")
    try:
        with engine.connect() as conn:
            return {
                n: int(conn.execute(select(func.count()).select_from(metadata.tables[n])).scalar())
                for n in names
            }
    finally:
        engine.dispose()


def report(
    results: list[RunResult],
    args: argparse.Namespace,
    throttle: ThrottleSpec,
    counts: dict[str, int],
    setup_s: float,
    inst: Institution,
) -> None:
    latency_s = args.latency_ms / 1000
    print(
        f"\nCOURSE_INVENTORY benchmark: {len(inst.courses):,} courses, "
        f"{len(inst.enrollments):,} enrollments generated, latency {args.latency_ms:g} ms, "
        f"throttle capacity {throttle.capacity:g}, workers {args.workers}, output {args.db}"
    )
    print(f"setup (institution, UDW seed, sandbox start): {setup_s:.1f} s")
    print("rows published: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    endpoints = sorted({e for r in results for e in r.requests})
    print(f"\n{'':24}" + "".join(f"{r.label:>16}" for r in results))
    rows: list[tuple[str, list[str]]] = [
        ("exit code", [str(r.exit_code) for r in results]),
        ("wall time (s)", [f"{r.seconds:.1f}" for r in results]),
        ("peak RSS job (MB)", [f"{r.peak_rss_mb:.0f}" for r in results]),
        ("requests (all)", [f"{sum(r.requests.values()):,}" for r in results]),
        *[(f"  {e}", [f"{r.requests.get(e, 0):,}" for r in results]) for e in endpoints],
        (
            "403/429 throttled",
            [f"{r.statuses.get(403, 0) + r.statuses.get(429, 0):,}" for r in results],
        ),
        (
            "5xx / resets",
            [
                f"{sum(n for s, n in r.statuses.items() if s >= 500)} / {r.statuses.get(0, 0)}"
                for r in results
            ],
        ),
        ("bucket cost (units)", [f"{r.cost:,.0f}" for r in results]),
        (
            "floor (s)",
            [f"{floor_seconds(r, throttle, latency_s, args.workers):.1f}" for r in results],
        ),
        ("naive sequential (s)", [f"{sum(r.requests.values()) * latency_s:.1f}" for r in results]),
    ]
    for name, values in rows:
        print(f"{name:24}" + "".join(f"{v:>16}" for v in values))
    first = results[0]
    floor = floor_seconds(first, throttle, latency_s, args.workers)
    print(
        f"\nfirst run: {first.seconds:.1f} s = {first.seconds / max(floor, 1e-9):.2f}x the floor; "
        f"naive sequential would take {sum(first.requests.values()) * latency_s:.0f} s "
        "(computed: requests x latency)"
    )


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--courses", type=int, default=20_000)
    parser.add_argument("--db", choices=("sqlite", "mariadb", "postgres"), default="sqlite")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", action="store_true", help="also run with one worker")
    args = parser.parse_args()

    started = time.monotonic()
    inst = Institution.generate(InstitutionSpec.sized(args.courses, seed=args.seed))
    throttle = ThrottleSpec()
    with tempfile.TemporaryDirectory(prefix="bench_ci_") as tmp:
        workdir = Path(tmp)
        udw_url = f"sqlite:///{workdir / 'udw.sqlite3'}"
        seed_udw(inst, udw_url)
        output_url, cleanup = output_database(args.db, workdir)
        log_file = Path(tempfile.gettempdir()) / "bench_course_inventory.log"
        log_file.write_text("", encoding="utf-8")
        try:
            with CanvasServer(inst, latency=Latency(args.latency_ms), throttle=throttle) as canvas:
                config = write_config(
                    workdir / "env.hjson", canvas, inst, output_url, udw_url, args.workers
                )
                setup_s = time.monotonic() - started
                results = [run_job("first run", canvas, config, workdir, log_file)]
                results.append(run_job("second run", canvas, config, workdir, log_file))
                if args.baseline:
                    fresh = f"sqlite:///{workdir / 'naive.sqlite3'}"  # empty: no cached dates
                    naive = write_config(workdir / "naive.hjson", canvas, inst, fresh, udw_url, 1)
                    results.append(run_job("1 worker", canvas, naive, workdir, log_file))
            counts = row_counts(output_url)
        finally:
            cleanup()
    report(results, args, throttle, counts, setup_s, inst)
    print(f"job logs: {log_file}")
    return 0 if all(r.exit_code == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
