"""``course-inventory demo``: every job against the sandbox, into a local SQLite file.

Starts the simulated institution (Canvas, UDW in SQLite, BigQuery, Kaltura, Zoom fakes on
127.0.0.1), writes a temporary config pointing at them, runs COURSE_INVENTORY, MIVIDEO and
ONLINE_MEETINGS through the normal runner into ``<data dir>/course_inventory.sqlite3``, and
prints what was loaded. Development only: the data is invented.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from courseinv.sandbox.canvas import CanvasServer
from courseinv.sandbox.httpserver import Latency, SandboxServer
from courseinv.sandbox.institution import Institution, InstitutionSpec
from courseinv.sandbox.lti import start_zoom_sandbox
from courseinv.sandbox.mivideo import start_mivideo_sandbox
from courseinv.sandbox.udw import seed_udw
from sqlalchemy import Engine, func, select

JOBS = ["COURSE_INVENTORY", "MIVIDEO", "ONLINE_MEETINGS"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="course-inventory demo", description=__doc__.splitlines()[0])
    p.add_argument("--courses", type=int, default=300, help="courses in the sandbox (300)")
    p.add_argument("--seed", type=int, default=1, help="institution seed (1)")
    p.add_argument("--latency-ms", type=float, default=5.0, help="latency of every fake API")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where the database goes")
    return p


@contextmanager
def running_sandbox(args: argparse.Namespace, env_dir: Path) -> Iterator[dict[str, Any]]:
    """Start every fake; yield the config that points the jobs at them, and the servers."""
    latency = Latency(args.latency_ms, args.latency_ms / 2)
    inst = Institution.generate(InstitutionSpec.sized(args.courses, seed=args.seed))
    udw_path = env_dir / "udw.sqlite3"
    seed_udw(inst, f"sqlite:///{udw_path}")
    with ExitStack() as stack:
        canvas = CanvasServer(inst, latency=latency, seed=args.seed)
        stack.enter_context(canvas)
        course_ids = [c.id for c in inst.courses]
        mivideo = stack.enter_context(
            start_mivideo_sandbox(args.seed, course_ids, env_dir, latency=latency)
        )
        zoom, zoom_config, lti_tools = start_zoom_sandbox(inst, latency=latency)
        stack.callback(zoom.stop)
        config = {
            "JOB_NAMES": JOBS,
            "LOG_LEVEL": "INFO",
            "DATA_DIR": str(args.data_dir.resolve()),
            "CANVAS": {
                "CANVAS_URL": canvas.url,
                "CANVAS_TOKEN": canvas.token,
                "CANVAS_ACCOUNT_ID": inst.root_account_id,
                "CANVAS_TERM_IDS": inst.term_ids,
                "ADD_COURSE_IDS": course_ids[:3],
            },
            "UDW": {"url": f"sqlite:///{udw_path}"},
            "MIVIDEO": mivideo.config,
            "ZOOM": zoom_config,
            "LTI_TOOLS": lti_tools,
        }
        servers: dict[str, SandboxServer] = {
            "Canvas": canvas,
            "BigQuery": mivideo.bigquery,
            "Kaltura": mivideo.kaltura,
            "Zoom": zoom,
        }
        yield {"config": config, "servers": servers, "institution": inst}


def _row_counts(engine: Engine) -> dict[str, int]:
    from courseinv.db.tables import APP_TABLES

    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in APP_TABLES
        }


def demo_main(argv: list[str]) -> int:
    from courseinv.config import load_config
    from courseinv.db.engine import describe
    from courseinv.runner.jobs import job_names
    from courseinv.runner.logs import setup_logging
    from courseinv.runner.run import prepare_database, run_jobs

    args = _parser().parse_args(argv)
    setup_logging("INFO")
    print("DEVELOPMENT SANDBOX: invented data served on 127.0.0.1, for demonstration only.\n")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="course-inventory-demo-") as tmp:
        env_dir = Path(tmp)
        with running_sandbox(args, env_dir) as sandbox:
            path = env_dir / "env.hjson"
            path.write_text(json.dumps(sandbox["config"], indent=2), encoding="utf-8")
            config = load_config(path, environ={}, job_names=job_names())
            setup_logging(config["LOG_LEVEL"], config.secrets)
            engine = prepare_database(config)
            outcomes = run_jobs(config, engine)
            counts = _row_counts(engine)
            where = describe(engine)
            engine.dispose()
            requests = {name: s.log.by_endpoint() for name, s in sandbox["servers"].items()}
    _print_summary(outcomes, counts, requests, where, time.monotonic() - started)
    return 0 if all(o.succeeded for o in outcomes) else 1


def _print_summary(outcomes: list, counts: dict[str, int], requests: dict, where: str,
                   seconds: float) -> None:  # fmt: skip
    print("\n== course-inventory demo ==")
    for o in outcomes:
        state = "ok" if o.succeeded else f"FAILED: {o.reason}"
        print(f"  job {o.name:<17} {state} ({o.seconds:.1f} s)")
    print("\n  rows per table:")
    for name, n in counts.items():
        print(f"    {name:<30} {n:>9,}")
    print("\n  requests made:")
    for server, by_endpoint in requests.items():
        total = sum(by_endpoint.values())
        detail = ", ".join(f"{ep} {n:,}" for ep, n in by_endpoint.items())
        print(f"    {server:<9} {total:>7,}  ({detail})")
    print(f"\n  time taken: {seconds:.1f} s")
    print(f"  database:   {where}")
    print("  try:       sqlite3 <database> 'SELECT * FROM job_run'")
