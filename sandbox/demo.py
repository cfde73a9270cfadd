"""``course-inventory demo``: every job against the sandbox, into a local SQLite file.

Starts the simulated institution (Canvas, UDW in SQLite, BigQuery, Kaltura, Zoom fakes on
127.0.0.1), writes a temporary config pointing at them, runs COURSE_INVENTORY, MIVIDEO and
ONLINE_MEETINGS through the normal runner into ``<data dir>/course_inventory.sqlite3``, and
prints what was loaded. Development only: the data is invented.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from courseinv.sandbox.canvas import CanvasServer
from courseinv.sandbox.httpserver import Latency, SandboxServer
from courseinv.sandbox.institution import Institution, InstitutionSpec
from courseinv.sandbox.live_events import StreamSpec, generate_stream
from courseinv.sandbox.lti import start_zoom_sandbox
from courseinv.sandbox.mivideo import start_mivideo_sandbox
from courseinv.sandbox.sqs import send_all, sqs_server
from courseinv.sandbox.udw import seed_udw
from sqlalchemy import Engine, func, select

JOBS = ["COURSE_INVENTORY", "MIVIDEO", "ONLINE_MEETINGS", "LIVE_EVENTS"]


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
        live_events = stack.enter_context(_live_events_queue(inst, args.seed))
        config = {
            "JOB_NAMES": JOBS,
            "LOG_LEVEL": "INFO",
            "DATA_DIR": str(args.data_dir.resolve()),
            "CANVAS": {
                "CANVAS_URL": canvas.url,
                "CANVAS_TOKEN": canvas.token,
                "CANVAS_ACCOUNT_ID": inst.root_account_id,
                "CANVAS_TERM_IDS": inst.term_ids,
                # courses the sandbox serves (a deleted one would only cause a warning)
                "ADD_COURSE_IDS": [c.id for c in inst.courses if c.workflow_state != "deleted"][:3],
            },
            "UDW": {"url": f"sqlite:///{udw_path}"},
            "MIVIDEO": mivideo.config,
            "ZOOM": zoom_config,
            "LTI_TOOLS": lti_tools,
            "LIVE_EVENTS": live_events,
        }
        servers: dict[str, SandboxServer] = {
            "Canvas": canvas,
            "BigQuery": mivideo.bigquery,
            "Kaltura": mivideo.kaltura,
            "Zoom": zoom,
        }
        yield {"config": config, "servers": servers, "institution": inst}


@contextmanager
def _live_events_queue(inst: Institution, seed: int) -> Iterator[dict[str, Any]]:
    """A local SQS server holding a Live Events stream of the institution (both formats,
    with duplicates, out-of-order, malformed, unknown types and new fields); yields the
    LIVE_EVENTS config section. Kept short: the local server slows with queue length."""
    with sqs_server() as sqs:
        queue_url = sqs.create_queue("canvas-live-events")
        spec = StreamSpec(events=200, seed=seed, malformed_rate=0.03, unknown_type_rate=0.03,
                          new_field_rate=0.05, long_value_rate=0.02)  # fmt: skip
        send_all(sqs.client(), queue_url, generate_stream(inst, spec).messages)
        yield sqs.config(queue_url)


def _row_counts(engine: Engine) -> dict[str, int]:
    """Rows per application table, by table name."""
    from courseinv.db.tables import APP_TABLES

    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in sorted(APP_TABLES, key=lambda t: t.name)
        }


class ExpectedWarnings(logging.Filter):
    """Holds back the warnings the sandbox causes on purpose and counts them instead.

    The simulated Canvas, like a real one, has courses without analytics and courses whose
    tabs the token may not read; the demo summarises those in one line. Any other warning
    is shown as usual.
    """

    KINDS = {
        "course(s) without analytics in Canvas": re.compile(r"activity analytics unavailable"),
        "course(s) whose tabs Canvas refused (403)": re.compile(r"course tabs: skipped .*403"),
    }
    FOLLOW_UPS = re.compile(r"Course tabs: \d+ course\(s\) skipped")  # sums up the above

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        message = record.getMessage()
        for kind, pattern in self.KINDS.items():
            if pattern.search(message):
                self.counts[kind] += 1
                return False
        return not self.FOLLOW_UPS.search(message)

    def summary(self) -> str:
        if not self.counts:
            return "none"
        return ", ".join(f"{n} {kind}" for kind, n in self.counts.items())


def _hold_back_expected_warnings() -> ExpectedWarnings:
    expected = ExpectedWarnings()
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_course_inventory", False):
            handler.addFilter(expected)
    return expected


def demo_main(argv: list[str]) -> int:
    from courseinv.config import load_config
    from courseinv.runner.jobs import job_names
    from courseinv.runner.logs import setup_logging
    from courseinv.runner.run import prepare_database, run_and_report, summary_lines

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
            expected = _hold_back_expected_warnings()
            engine = prepare_database(config)
            outcomes, report = run_and_report(config, engine)
            counts = _row_counts(engine)
            database = Path(str(engine.url.database)).resolve()
            engine.dispose()
            requests = {name: s.log.by_endpoint() for name, s in sandbox["servers"].items()}
    status_config = _write_status_config(sandbox["config"], args.data_dir)
    print("\n== course-inventory demo ==")
    print("\n".join("  " + line for line in summary_lines(outcomes, report)[:-1]))
    _print_details(counts, requests, expected.summary())
    print(f"\n  time taken:  {time.monotonic() - started:.1f} s")
    print(f"  database:    {database}")
    print(f"  run report:  {report or 'not written (see the log)'}")
    print(f"  try:         sqlite3 {database} 'SELECT * FROM job_run'")
    print(f"               course-inventory --config {status_config} status")
    return 0 if all(o.succeeded for o in outcomes) else 1


def _write_status_config(config: dict[str, Any], data_dir: Path) -> Path:
    """A config for ``status`` on the demo database (the sandbox itself is gone)."""
    path = data_dir.resolve() / "demo-env.hjson"
    path.parent.mkdir(parents=True, exist_ok=True)
    sections = ("JOB_NAMES", "DATA_DIR", "CANVAS", "MIVIDEO", "ZOOM", "LTI_TOOLS", "LIVE_EVENTS")
    keep = {k: config[k] for k in sections if k in config}
    note = "// Written by `course-inventory demo`: enough for `status` on the demo database.\n"
    path.write_text(note + json.dumps(keep, indent=2), encoding="utf-8")
    return path


def _print_details(counts: dict[str, int], requests: dict, expected: str) -> None:
    print("\n  rows per table:")
    for name, n in counts.items():
        print(f"    {name:<30} {n:>9,}")
    print("\n  requests made:")
    for server, by_endpoint in requests.items():
        total = sum(by_endpoint.values())
        detail = ", ".join(f"{ep} {n:,}" for ep, n in sorted(by_endpoint.items()))
        print(f"    {server:<9} {total:>7,}  ({detail})")
    print(f"\n  expected warnings (the sandbox's gaps, as in a real Canvas): {expected}")
