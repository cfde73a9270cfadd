"""COURSE_INVENTORY from account reports vs from the API, both nights, in one run.

Usage: python benchmarks/bench_reports.py [--courses 20000] [--latency-ms 50]
           [--generation 180] [--other-generation 60,600] [--nights both|first]
           [--other-nights both|first] [--api-seconds FIRST,CACHED] [--workers 8]
           [--reports-workers 12] [--seed 0]

One sandbox institution (20,000 courses → about 915,000 enrollments over two terms) is
served by the Canvas sandbox with its default throttle (bucket 700, 50 units reserved
per request in flight, leak 10/s) at ``--latency-ms`` per request, with the account
report service mounted and the file store on a second port. The job runs through
``course-inventory run`` in a child process (peak RSS is its own), into SQLite:

* ``api``: INVENTORY_SOURCE api, first night (empty database) and cached night (the
  database holds published_at, so audit logs are read only for never-published courses).
* ``reports G s``: INVENTORY_SOURCE reports with the sandbox's report generation time
  set to G seconds per run (the terms' runs generate in parallel), both nights. Every
  night starts fresh runs (REUSE_MAX_AGE_SECONDS 0: yesterday's report is too old).
  ``--generation`` is the value called realistic; ``--other-generation`` the values
  shown beside it.

The sandbox writes each term's CSVs once before the timed runs (its own CSV writing is
not the job's cost). After each night the six tables of the reports path are compared
with the API path's (row counts and a content hash per table): they must be equal.
Reported per run: wall time, peak RSS of the job (its own VmHWM), the 1-minute load
average before and after it, requests by endpoint, throttled (403) responses, and the
ratio to the API path's wall time on the same night. ``--reports-workers`` sets
NUM_ASYNC_WORKERS of the reports path apart from the api path's ``--workers``: its REST
reads are light enough on the throttle budget for more in flight.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_course_inventory import RunResult, child_main, run_job, write_config  # noqa: E402
from courseinv.course_inventory.report_runs import report_parameters  # noqa: E402
from courseinv.sandbox.canvas import CanvasServer, ThrottleSpec  # noqa: E402
from courseinv.sandbox.canvas_reports import (  # noqa: E402
    CanvasReports,
    FileStoreServer,
    ReportSpec,
)
from courseinv.sandbox.httpserver import Latency  # noqa: E402
from courseinv.sandbox.institution import Institution, InstitutionSpec  # noqa: E402
from courseinv.sandbox.udw import seed_udw  # noqa: E402

TABLES = ("term", "account", "course", "course_section", "enrollment", "canvas_course_usage")
KEYS = {name: ["canvas_id"] for name in TABLES} | {"canvas_course_usage": ["course_id", "date"]}
LOADS: dict[str, tuple[float, float]] = {}  # run label -> 1-min load average before, after


def table_digest(url: str) -> dict[str, tuple[int, int]]:
    """(rows, content hash) per output table, order-independent via primary-key sort."""
    import pandas as pd
    from courseinv.db.engine import make_engine
    from courseinv.db.tables import metadata
    from sqlalchemy import select

    engine = make_engine(url)
    out = {}
    try:
        with engine.connect() as conn:
            for name in TABLES:
                table = metadata.tables[name]
                frame = pd.read_sql(select(table).order_by(*(table.c[k] for k in KEYS[name])), conn)
                if name == "canvas_course_usage":
                    frame = frame.drop(columns="id")
                digest = int(pd.util.hash_pandas_object(frame.astype(str), index=False).sum())
                out[name] = (len(frame), digest)
    finally:
        engine.dispose()
    return out


def series(
    label: str,
    source: str,
    canvas: CanvasServer,
    inst: Institution,
    workdir: Path,
    udw_url: str,
    args: argparse.Namespace,
    log_file: Path,
    nights: tuple[str, ...] = ("first", "cached"),
) -> tuple[list[RunResult], dict[str, tuple[int, int]]]:
    """The nights of one configuration into a fresh SQLite database; its table digest."""
    slug = label.replace(" ", "_")
    output = f"sqlite:///{workdir / f'{slug}.sqlite3'}"
    workers = args.reports_workers if source == "reports" else args.workers
    reports = {"INVENTORY_SOURCE": source, "REPORTS": {"REUSE_MAX_AGE_SECONDS": 0}}
    config = write_config(workdir / f"{slug}.hjson", canvas, inst, output, udw_url, workers, reports)
    results = []
    for night in nights:
        before = os.getloadavg()[0]
        result = run_job(f"{label} {night}", canvas, config, workdir, log_file)
        results.append(result)
        LOADS[result.label] = (before, os.getloadavg()[0])
        print(
            f"  {result.label}: {result.seconds:.1f} s, exit {result.exit_code}, "
            f"load {LOADS[result.label][0]:.1f} -> {LOADS[result.label][1]:.1f}",
            flush=True,
        )
    return results, table_digest(output)


def given_api_runs(text: str) -> list[RunResult]:
    """Placeholder api results carrying only the wall times given on the command line."""
    first, cached = (float(x) for x in text.split(","))
    return [
        RunResult(f"api {night}", seconds, 0, float("nan"), {}, {}, 0, 0.0)
        for night, seconds in (("first", first), ("cached", cached))
    ]


def truth_counts(inst: Institution) -> dict[str, int]:
    want = inst.expected_course_inventory(inst.term_ids, udw=True)
    return {name: len(frame) for name, frame in want.items()}


def report(
    results: list[RunResult],
    api: dict[str, RunResult],
    args: argparse.Namespace,
    inst: Institution,
    setup_s: float,
    equal: dict[str, bool],
    rows: dict[str, tuple[int, int]],
) -> None:
    print(
        f"\nCOURSE_INVENTORY, api vs reports: {len(inst.courses):,} courses, "
        f"{len(inst.enrollments):,} enrollments generated in {len(inst.term_ids)} terms, "
        f"latency {args.latency_ms:g} ms, default throttle, workers {args.workers} (api) / "
        f"{args.reports_workers} (reports), SQLite"
    )
    print(f"setup (institution, UDW seed, report files written, sandbox start): {setup_s:.1f} s")
    print("rows published: " + ", ".join(f"{k} {v[0]:,}" for k, v in rows.items()))
    if args.api_seconds:
        print(f"api runs not repeated: x api uses the given wall times {args.api_seconds} s")
        print("rows equal to the ground truth: " + ", ".join(f"{k} {v}" for k, v in equal.items()))
    else:
        print("tables equal to the api path: " + ", ".join(f"{k} {v}" for k, v in equal.items()))
    endpoints = sorted({e for r in results for e in r.requests})
    width = 20
    print(f"\n{'':26}" + "".join(f"{r.label:>{width}}" for r in results))
    lines: list[tuple[str, list[str]]] = [
        ("exit code", [str(r.exit_code) for r in results]),
        ("wall time (s)", [f"{r.seconds:.1f}" for r in results]),
        (
            "x api (same night)",
            [f"{r.seconds / api[r.label.split()[-1]].seconds:.2f}" for r in results],
        ),
        ("peak RSS job (MB)", [f"{r.peak_rss_mb:.0f}" for r in results]),
        ("load avg before/after", [_loads(r.label) for r in results]),
        ("requests (all)", [f"{sum(r.requests.values()):,}" for r in results]),
        *[(f"  {e}", [f"{r.requests.get(e, 0):,}" for r in results]) for e in endpoints],
        (
            "403/429 throttled",
            [f"{r.statuses.get(403, 0) + r.statuses.get(429, 0):,}" for r in results],
        ),
        ("bucket cost (units)", [f"{r.cost:,.0f}" for r in results]),
    ]
    for name, values in lines:
        print(f"{name:26}" + "".join(f"{v:>{width}}" for v in values))


def _loads(label: str) -> str:
    before, after = LOADS.get(label, (float("nan"), float("nan")))
    return f"{before:.1f}/{after:.1f}"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--courses", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=8, help="NUM_ASYNC_WORKERS, api path")
    parser.add_argument(
        "--reports-workers", type=int, default=12, help="NUM_ASYNC_WORKERS, reports path"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generation", type=float, default=180.0, help="realistic, seconds")
    parser.add_argument("--other-generation", default="60,600", help="comma-separated seconds")
    parser.add_argument("--nights", choices=("both", "first"), default="both")
    parser.add_argument("--other-nights", choices=("both", "first"), default="both")
    parser.add_argument(
        "--api-seconds",
        default="",
        help="FIRST,CACHED: skip the api runs and use these wall times (an earlier run's)",
    )
    args = parser.parse_args()
    others = [float(g) for g in args.other_generation.split(",") if g.strip()]

    started = time.monotonic()
    inst = Institution.generate(InstitutionSpec.sized(args.courses, seed=args.seed))
    latency = Latency(args.latency_ms)
    results: list[RunResult] = []
    equal: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="bench_reports_") as tmp:
        workdir = Path(tmp)
        udw_url = f"sqlite:///{workdir / 'udw.sqlite3'}"
        seed_udw(inst, udw_url)
        log_file = Path(tempfile.gettempdir()) / "bench_reports.log"
        log_file.write_text("", encoding="utf-8")
        with (
            CanvasServer(inst, latency=latency, throttle=ThrottleSpec()) as canvas,
            FileStoreServer(latency=latency) as store,
        ):
            service = CanvasReports(canvas, store, ReportSpec(generation_seconds=args.generation))
            for term in inst.term_ids:
                service.prebuild(canvas.account_id, report_parameters(term))
            setup_s = time.monotonic() - started
            print(f"setup done in {setup_s:.0f} s; running", flush=True)
            api_digest: dict[str, tuple[int, int]] | None = None
            if args.api_seconds:
                api_runs = given_api_runs(args.api_seconds)
            else:
                api_runs, api_digest = series(
                    "api", "api", canvas, inst, workdir, udw_url, args, log_file
                )
                results += api_runs
            for g in [args.generation, *others]:
                service.spec.generation_seconds = g
                which = args.nights if g == args.generation else args.other_nights
                nights: tuple[str, ...] = ("first",) if which == "first" else ("first", "cached")
                label = f"reports {g:g}s"
                runs, digest = series(
                    label, "reports", canvas, inst, workdir, udw_url, args, log_file, nights
                )
                results += runs
                if api_digest is None:  # no api run here: compare with the ground truth counts
                    api_digest = digest
                    equal[label] = truth_counts(inst) == {k: v[0] for k, v in digest.items()}
                else:
                    equal[label] = digest == api_digest
            assert store.tokens_seen == 0, "the Canvas token reached the file store"
    api = {r.label.split()[-1]: r for r in api_runs}
    report(results, api, args, inst, setup_s, equal, api_digest)
    print(
        f"\nreport generation time: {args.generation:g} s per run (realistic), "
        f"also {', '.join(f'{g:g} s' for g in others)}; job logs: {log_file}"
    )
    ok = all(r.exit_code == 0 for r in results) and all(equal.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
