"""One run of a job at a time per output database (a lock per job name, bounded wait),
different jobs side by side; two concurrent runs of every real job give the ground truth."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from courseinv.config import load_config
from courseinv.runner.jobs import (
    DataSourceName,
    DataSourceStatus,
    JobContext,
    JobFunc,
    job_names,
    register_job,
    unregister_job,
)
from courseinv.runner.run import JobOutcome, run_job
from courseinv.sandbox.canvas import CanvasServer
from courseinv.sandbox.institution import Institution, InstitutionSpec
from courseinv.sandbox.lti import start_zoom_sandbox
from courseinv.sandbox.mivideo import start_mivideo_sandbox
from sqlalchemy import Engine

from tests.foundation.reliability import Child, job_runs, write_config


def gated_job(gate: threading.Event, entered: threading.Event) -> JobFunc:
    def job(ctx: JobContext) -> list[DataSourceStatus]:
        entered.set()
        assert gate.wait(60)
        return [DataSourceStatus(DataSourceName.CANVAS_API)]

    return job


def quick_job(ctx: JobContext) -> list[DataSourceStatus]:
    return [DataSourceStatus(DataSourceName.CANVAS_API)]


class JobThread(threading.Thread):
    def __init__(self, name: str, ctx: JobContext) -> None:
        super().__init__(daemon=True)
        self.name_, self.ctx = name, ctx
        self.outcome: JobOutcome | None = None

    def run(self) -> None:
        self.outcome = run_job(self.name_, self.ctx)


@pytest.mark.parametrize("kind", ["sqlite", "mariadb", "postgres"])
def test_second_run_of_a_job_waits_or_fails_naming_the_holder(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    engine: Engine = request.getfixturevalue(f"{kind}_engine")
    gate, entered = threading.Event(), threading.Event()
    register_job("HELD", gated_job(gate, entered))
    register_job("OTHER", quick_job)
    try:
        url = engine.url.render_as_string(hide_password=False)
        config = load_config(
            write_config(tmp_path / "env.hjson", url, ["HELD"]), environ={}, job_names=job_names()
        )

        def ctx(wait: float) -> JobContext:
            settings = {**config, "JOB_LOCK_WAIT_SECONDS": wait}
            return JobContext(settings, engine, tmp_path, tmp_path, logging.getLogger("t"))

        holder = JobThread("HELD", ctx(0))
        holder.start()
        assert entered.wait(30)
        other = run_job("OTHER", ctx(0))  # another job runs side by side
        started = time.monotonic()
        refused = run_job("HELD", ctx(1))
        waited = time.monotonic() - started
        waiter = JobThread("HELD", ctx(60))
        waiter.start()
        time.sleep(1)
        assert waiter.is_alive()  # waiting for the holder
        gate.set()
        holder.join(30)
        waiter.join(30)
    finally:
        gate.set()
        unregister_job("HELD")
        unregister_job("OTHER")

    assert other.succeeded
    assert not refused.succeeded and 1 <= waited < 10
    message = (
        f"another run of HELD is still running (held by host {socket.gethostname()}, "
        f"pid {os.getpid()}, since "
    )
    assert refused.reason.startswith(message) and "JOB_LOCK_WAIT_SECONDS" in refused.reason
    assert holder.outcome.succeeded and waiter.outcome.succeeded
    runs = job_runs(engine)
    by_status = sorted((r["job_name"], r["status"]) for r in runs)
    assert by_status == [
        ("HELD", "failed"), ("HELD", "succeeded"), ("HELD", "succeeded"), ("OTHER", "succeeded")
    ]  # fmt: skip
    refused_row = next(r for r in runs if r["status"] == "failed")
    assert refused_row["reason"] == refused.reason
    held = [r for r in runs if r["job_name"] == "HELD" and r["status"] == "succeeded"]
    assert held[1]["started_at"] >= held[0]["finished_at"]  # the waiter began after


# -- two concurrent runs of every real job ---------------------------------------------------


def run_twice_at_once(config: Path, folder: Path) -> list[Child]:
    """Two ``course-inventory run`` started together; the second waits for the first."""
    env = {"JOB_LOCK_WAIT_SECONDS": "300"}
    children = [
        Child({}, ["run", "--config", str(config)], folder / f"run{i}", env=env) for i in (1, 2)
    ]
    for child in children:
        assert child.wait(timeout=300) == 0, child.stderr[-3000:]
        assert child.leftovers() == []
    return children


def assert_serialized(engine: Engine, job: str) -> None:
    runs = [r for r in job_runs(engine) if r["job_name"] == job]
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert runs[1]["started_at"] >= runs[0]["finished_at"]  # its run began once the first ended


def test_two_mivideo_runs_at_once_count_every_event_once(
    mariadb_engine: Engine, tmp_path: Path
) -> None:
    from tests.mivideo.test_job import COURSES, assert_tables_equal, expected, read_tables

    env_dir = tmp_path / "env"
    env_dir.mkdir()
    with start_mivideo_sandbox(21, COURSES, env_dir, today=date(2026, 3, 12), days=3,
                               events_per_day=120, media_per_day=30) as sb:  # fmt: skip
        config = env_dir / "env.hjson"
        url = mariadb_engine.url.render_as_string(hide_password=False)
        _write(config, JOB_NAMES=["MIVIDEO"], MIVIDEO=sb.config, INVENTORY_DB={"url": url})
        run_twice_at_once(config, tmp_path)
        assert_tables_equal(read_tables(mariadb_engine), expected(sb))
    assert_serialized(mariadb_engine, "MIVIDEO")


@pytest.fixture(scope="module")
def institution() -> Institution:
    return Institution.generate(InstitutionSpec(seed=7, terms=2, courses_per_term=30))


@pytest.fixture(scope="module")
def canvas(institution: Institution) -> Iterator[CanvasServer]:
    with CanvasServer(institution) as server:
        yield server


def canvas_config(canvas: CanvasServer, institution: Institution) -> dict[str, Any]:
    return {"CANVAS_URL": canvas.url, "CANVAS_TOKEN": canvas.token,
            "CANVAS_ACCOUNT_ID": canvas.account_id, "CANVAS_TERM_IDS": institution.term_ids}  # fmt: skip


def test_two_course_inventory_runs_at_once_give_the_ground_truth(
    institution: Institution, canvas: CanvasServer, postgres_engine: Engine, tmp_path: Path
) -> None:
    from tests.course_inventory.helpers import assert_tables_equal, read_tables

    config = tmp_path / "env.hjson"
    url = postgres_engine.url.render_as_string(hide_password=False)
    _write(config, JOB_NAMES=["COURSE_INVENTORY"], CANVAS=canvas_config(canvas, institution),
           INVENTORY_DB={"url": url})  # fmt: skip
    run_twice_at_once(config, tmp_path)
    truth = institution.expected_course_inventory(institution.term_ids, udw=False)
    assert_tables_equal(read_tables(postgres_engine), truth)
    assert_serialized(postgres_engine, "COURSE_INVENTORY")


def test_two_online_meetings_runs_at_once_give_the_ground_truth(
    institution: Institution, canvas: CanvasServer, sqlite_engine: Engine, tmp_path: Path
) -> None:
    from courseinv.sandbox.lti import expected_online_meetings

    from tests.online_meetings.test_job import assert_tables_equal, read_tables

    zoom, zoom_config, lti_tools = start_zoom_sandbox(institution)
    try:
        config = tmp_path / "env.hjson"
        url = sqlite_engine.url.render_as_string(hide_password=False)
        _write(config, JOB_NAMES=["ONLINE_MEETINGS"], CANVAS=canvas_config(canvas, institution),
               INVENTORY_DB={"url": url}, ZOOM=zoom_config, LTI_TOOLS=lti_tools)  # fmt: skip
        run_twice_at_once(config, tmp_path)
    finally:
        zoom.stop()
    truth = expected_online_meetings(
        institution, lti_tools, institution.zoom_tool_id, (), institution.term_ids
    )
    assert_tables_equal(read_tables(sqlite_engine), truth)
    assert_serialized(sqlite_engine, "ONLINE_MEETINGS")


def _write(path: Path, **config: Any) -> None:
    config = {"LOG_LEVEL": "DEBUG", "DATA_DIR": str(path.parent / "data"), **config}
    path.write_text(json.dumps(config), encoding="utf-8")
