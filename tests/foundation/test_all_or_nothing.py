"""Every job publishes all of its writes of one run together, or none of them.

For each job: a successful run through the CLI, then a run whose sources changed and
whose HTTP source fails part-way (a sandbox fault, nothing patched). Every table the job
writes must be byte-identical afterwards: the same rows (compared as exact Python
values, ordered by key), the same MariaDB ``CHECKSUM TABLE`` and the same DDL (a table
swapped in by a publish carries new constraint names, so even an identical republish
shows). Only the new ``failed`` row of ``job_run`` differs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from courseinv.db.tables import data_source_status, job_run, metadata
from courseinv.sandbox.institution import Institution, InstitutionSpec
from courseinv.sandbox.lti import start_zoom_sandbox
from courseinv.sandbox.mivideo import start_mivideo_sandbox
from sqlalchemy import Engine, select, text

from tests.conftest import run_cli
from tests.course_inventory.helpers import Canvas

pytestmark = pytest.mark.mariadb

JOB_TABLES = {
    "COURSE_INVENTORY": (
        "term", "account", "course", "course_section", "enrollment", "canvas_course_usage",
    ),
    "MIVIDEO": ("mivideo_media_started_hourly", "mivideo_media_created", "mivideo_media_courses"),
    "ONLINE_MEETINGS": ("lti_type", "lti_placement", "lti_zoom_meeting"),
}  # fmt: skip
AUTO_INCREMENT = re.compile(r" AUTO_INCREMENT=\d+")


def snapshot(engine: Engine, names: tuple[str, ...]) -> dict[str, Any]:
    """Rows, checksum and DDL of each table: any changed byte or swapped table shows."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for name in names:
            table = metadata.tables[name]
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
            checksum = conn.execute(text(f"CHECKSUM TABLE `{name}`")).one()[1]
            ddl = conn.execute(text(f"SHOW CREATE TABLE `{name}`")).one()[1]
            # A rolled-back insert may advance the counter; that is no change of data.
            out[name] = ([tuple(map(repr, r)) for r in rows], checksum, AUTO_INCREMENT.sub("", ddl))
    return out


def runs(engine: Engine) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        done = conn.execute(select(job_run.c.job_name, job_run.c.status).order_by(job_run.c.id))
        sources = conn.execute(select(data_source_status).order_by(data_source_status.c.id))
        return [tuple(r) for r in done.all()], [tuple(r) for r in sources.all()]


def run_twice(
    engine: Engine,
    config_path: Path,
    job: str,
    break_part_way: Callable[[], None],
    secrets: list[str],
) -> str:
    """A good run, then the broken one; check nothing changed. Returns the failure's stderr."""
    first = run_cli(["run", "--config", str(config_path)])
    assert first.returncode == 0, first.stderr[-3000:]
    before, (jobs_before, sources_before) = snapshot(engine, JOB_TABLES[job]), runs(engine)
    assert all(rows for rows, _, _ in before.values()), "every table should hold rows"

    break_part_way()
    failed = run_cli(["run", "--config", str(config_path)])

    assert failed.returncode == 1, failed.stderr[-3000:]
    after, (jobs_after, sources_after) = snapshot(engine, JOB_TABLES[job]), runs(engine)
    for name in JOB_TABLES[job]:
        assert after[name] == before[name], f"{name} changed although the run failed"
    assert jobs_after == [*jobs_before, (job, "failed")]
    assert sources_after == sources_before
    for secret in secrets:
        assert secret not in failed.stdout + failed.stderr
    return failed.stderr


def write_config(path: Path, engine: Engine, **config: Any) -> Path:
    url = engine.url.render_as_string(hide_password=False)
    full = {"INVENTORY_DB": {"url": url}, "DATA_DIR": str(path.parent / "data"), **config}
    path.write_text(json.dumps(full), encoding="utf-8")
    return path


def test_course_inventory_failing_part_way_changes_nothing(
    mariadb_engine: Engine, tmp_path: Path
) -> None:
    institution = Institution.generate(InstitutionSpec(seed=8, terms=1, courses_per_term=30))
    with Canvas(institution) as canvas:
        path = write_config(
            tmp_path / "env.hjson",
            mariadb_engine,
            JOB_NAMES=["COURSE_INVENTORY"],
            MAX_REQ_ATTEMPTS=2,
            CANVAS={
                "CANVAS_URL": canvas.url,
                "CANVAS_TOKEN": canvas.token,
                "CANVAS_ACCOUNT_ID": canvas.account_id,
                "CANVAS_TERM_IDS": institution.term_ids,
            },
        )

        def break_part_way() -> None:
            canvas.fail_after = 5  # Canvas goes down in the middle of the enrollments

        stderr = run_twice(mariadb_engine, path, "COURSE_INVENTORY", break_part_way, [canvas.token])
        assert canvas.log.count("graphql") >= 5 and "gave up" in stderr


def test_mivideo_failing_part_way_changes_nothing(mariadb_engine: Engine, tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    with start_mivideo_sandbox(
        5, [101, 102, 3456], env_dir, today=date(2026, 3, 12), days=2,
        events_per_day=60, media_per_day=20,
    ) as sb:  # fmt: skip
        path = write_config(
            env_dir / "env.hjson",
            mariadb_engine,
            JOB_NAMES=["MIVIDEO"],
            MAX_REQ_ATTEMPTS=2,
            MIVIDEO=sb.config,
        )

        def break_part_way() -> None:
            today = sb.advance_day()  # new events and 1,200 new media to read ...
            sb.kaltura.add_bulk(1_200, datetime.combine(today, datetime.min.time(), UTC))
            sb.kaltura.fail_media_list(after=1)  # ... and Kaltura fails on the second page

        stderr = run_twice(
            mariadb_engine, path, "MIVIDEO", break_part_way, [sb.kaltura.admin_secret]
        )
        assert "media.list" in stderr and "HTTP 500" in stderr


def test_online_meetings_failing_part_way_changes_nothing(
    mariadb_engine: Engine, tmp_path: Path
) -> None:
    institution = Institution.generate(InstitutionSpec(seed=7, terms=1, courses_per_term=30))
    zoom, zoom_config, lti_tools = start_zoom_sandbox(institution)
    try:
        with Canvas(institution) as canvas:
            config = {
                "JOB_NAMES": ["ONLINE_MEETINGS"],
                "CANVAS": {
                    "CANVAS_URL": canvas.url,
                    "CANVAS_TOKEN": canvas.token,
                    "CANVAS_ACCOUNT_ID": canvas.account_id,
                    "CANVAS_TERM_IDS": institution.term_ids,
                },
                "ZOOM": zoom_config,
                "LTI_TOOLS": lti_tools,
            }
            path = write_config(tmp_path / "env.hjson", mariadb_engine, **config)

            def break_part_way() -> None:
                # The tools are renamed (a change lti_type would get) and Zoom hits its
                # daily limit after a few meetings, once Canvas was read completely.
                renamed = [{**t, "des": t["des"] + " (renamed)"} for t in lti_tools]
                write_config(path, mariadb_engine, **{**config, "LTI_TOOLS": renamed})
                zoom.daily_limit = zoom.api_requests + 3

            secrets = [canvas.token, zoom_config["CLIENT_SECRET"]]
            stderr = run_twice(mariadb_engine, path, "ONLINE_MEETINGS", break_part_way, secrets)
            assert "daily rate limit" in stderr
    finally:
        zoom.stop()
