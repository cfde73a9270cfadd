"""The MIVIDEO job over real HTTP against the sandbox fakes, into real databases."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from courseinv.config.loader import Config, load_config
from courseinv.db.tables import (
    data_source_status,
    job_run,
    mivideo_media_courses,
    mivideo_media_created,
    mivideo_media_started_hourly,
)
from courseinv.mivideo.categories import CourseLink, course_links
from courseinv.mivideo.events import query_text
from courseinv.mivideo.job import run
from courseinv.runner.jobs import DataSourceName, JobContext, JobError, job_names
from courseinv.sandbox.httpserver import Faults
from courseinv.sandbox.mivideo import MivideoSandbox, start_mivideo_sandbox
from sqlalchemy import Engine, select

from tests.conftest import run_cli

TODAY = date(2026, 3, 12)
COURSES = [101, 102, 3456, 77_001, 12_345_678_901]
TABLES = ("mivideo_media_started_hourly", "mivideo_media_created", "mivideo_media_courses")


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[MivideoSandbox]:
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    with start_mivideo_sandbox(
        21, COURSES, env_dir, today=TODAY, days=3, events_per_day=120, media_per_day=30
    ) as sb:
        yield sb


def write_config(sb: MivideoSandbox, **top: Any) -> Path:
    """An env.hjson next to the generated key, MIVIDEO pointing at the fakes."""
    path = sb.key_path.parent / "env.hjson"
    config = {"JOB_NAMES": ["MIVIDEO"], "MIVIDEO": sb.config, "LOG_LEVEL": "DEBUG", **top}
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def load(sb: MivideoSandbox, **top: Any) -> Config:
    return load_config(write_config(sb, **top), environ={}, job_names=job_names())


def context(config: Config, engine: Engine, tmp_path: Path) -> JobContext:
    log = logging.getLogger("job.mivideo")
    return JobContext(config, engine, tmp_path / "data", config.env_dir, log)


def read_tables(engine: Engine, *, with_ids: bool = False) -> dict[str, pd.DataFrame]:
    """The three tables, sorted and typed like the sandbox's ground truth."""
    out = {}
    with engine.connect() as conn:
        for table, order in (
            (mivideo_media_started_hourly, ["event_hour_utc", "course_id"]),
            (mivideo_media_created, ["id"]),
            (mivideo_media_courses, ["media_id", "course_id", "in_context"]),
        ):
            rows = conn.execute(select(table)).mappings().all()
            columns = [c.name for c in table.columns]
            frame = pd.DataFrame([dict(r) for r in rows], columns=columns)
            if table is mivideo_media_started_hourly and not with_ids:
                frame = frame.drop(columns="id")  # the surrogate key is not ground truth
            frame = frame.sort_values(order, ignore_index=True)
            out[table.name] = _typed(frame)
    return out


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    kinds = {"course_id": "int64", "event_count": "int64", "duration": "int64",
             "in_context": "bool", "id": "object"}  # fmt: skip
    for column in ("event_hour_utc", "event_time_utc_latest", "created_at"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]")
    frame = frame.astype({c: t for c, t in kinds.items() if c in frame and c != "id"})
    return frame


def expected(sb: MivideoSandbox) -> dict[str, pd.DataFrame]:
    return {name: _typed(frame) for name, frame in sb.expected_tables().items()}


def assert_tables_equal(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], want[name], check_dtype=False, obj=name)


# -- the core scenario on each database --------------------------------------------------------


def test_first_run_rerun_and_next_day(
    any_engine: Engine, sandbox: MivideoSandbox, tmp_path: Path
) -> None:
    ctx = context(load(sandbox), any_engine, tmp_path)

    statuses = run(ctx)
    want = expected(sandbox)
    assert all(len(want[t]) > 20 for t in TABLES)
    assert_tables_equal(read_tables(any_engine), want)
    newest = want["mivideo_media_started_hourly"]["event_time_utc_latest"].max()
    by_name = {s.name: s.updated_at for s in statuses}
    assert by_name[DataSourceName.UNIZIN_DATA_PLATFORM_EVENTS] == newest.tz_localize(UTC)
    assert abs(by_name[DataSourceName.KALTURA_API] - datetime.now(UTC)) < timedelta(minutes=1)

    # A second run the same day adds and changes nothing.
    before = read_tables(any_engine, with_ids=True)
    statuses = run(ctx)
    assert_tables_equal(read_tables(any_engine, with_ids=True), before)
    by_name = {s.name: s.updated_at for s in statuses}
    assert by_name[DataSourceName.UNIZIN_DATA_PLATFORM_EVENTS] == newest.tz_localize(UTC)

    # The next sandbox day: exactly the new hours and media are added.
    sandbox.advance_day()
    run(ctx)
    after = read_tables(any_engine, with_ids=True)
    want = expected(sandbox)
    assert_tables_equal(read_tables(any_engine), want)
    hourly_before, hourly_after = before[TABLES[0]], after[TABLES[0]]
    kept = hourly_after.merge(hourly_before, how="inner")
    assert len(kept) == len(hourly_before)  # old rows untouched (same ids and values)
    new_hours = hourly_after[~hourly_after["id"].isin(hourly_before["id"])]
    assert len(new_hours) > 0
    assert (new_hours["event_hour_utc"] >= pd.Timestamp(TODAY)).all()
    assert (new_hours["event_hour_utc"] < pd.Timestamp(TODAY + timedelta(days=1))).all()
    assert len(after[TABLES[1]]) > len(before[TABLES[1]])


# -- specific behaviours (MariaDB) ---------------------------------------------------------------


def test_noise_is_not_counted(
    mariadb_engine: Engine, sandbox: MivideoSandbox, tmp_path: Path
) -> None:
    run(context(load(sandbox), mariadb_engine, tmp_path))
    tables = read_tables(mariadb_engine)
    hourly = tables["mivideo_media_started_hourly"]

    store = sandbox.events
    window = [e for e in store.events if sandbox.start < e.event_time < store.start_of_today]
    counted = [e for e in window if e.counted_course_id is not None]
    kaf_started = [
        e for e in window
        if e.type == "MediaEvent" and e.action == "Started" and e.ed_app.endswith("/KafEdApp")
    ]  # fmt: skip
    assert hourly["event_count"].sum() == len(counted)
    assert len(kaf_started) > len(counted)  # KAF plays with bad/missing course ids exist
    assert len(window) > len(kaf_started)  # and other actions, types and tools
    assert set(hourly["course_id"]) <= set(COURSES)
    # Junk categories carry random numbers; none of them becomes a course link.
    assert set(tables["mivideo_media_courses"]["course_id"]) <= set(COURSES)


def test_a_late_event_in_the_watermark_hour_is_added_not_replaced(
    mariadb_engine: Engine, sandbox: MivideoSandbox, tmp_path: Path
) -> None:
    ctx = context(load(sandbox), mariadb_engine, tmp_path)
    run(ctx)
    store = sandbox.events
    last = max(
        (e for e in store.events if e.counted_course_id and e.event_time < store.start_of_today),
        key=lambda e: e.event_time,
    )
    # Ingested after the first run, timed after its watermark, in the same hour.
    late_time = last.event_time + (store.start_of_today - last.event_time) / 2
    assert late_time.hour == last.event_time.hour
    store.events.append(dataclasses.replace(last, id="urn:uuid:late", event_time=late_time))

    statuses = run(ctx)

    hourly = read_tables(mariadb_engine)["mivideo_media_started_hourly"]
    pd.testing.assert_frame_equal(
        hourly, expected(sandbox)["mivideo_media_started_hourly"], check_dtype=False
    )
    hour = pd.Timestamp(last.event_time.replace(minute=0, second=0, microsecond=0, tzinfo=None))
    row = hourly[
        (hourly["event_hour_utc"] == hour) & (hourly["course_id"] == last.counted_course_id)
    ]
    assert row["event_count"].item() >= 2  # the stored count plus the late event
    assert statuses[0].updated_at == late_time


def test_more_than_25000_media_with_a_tie_across_the_cap(
    mariadb_engine: Engine, tmp_path: Path
) -> None:
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    with start_mivideo_sandbox(
        4, COURSES, env_dir, today=TODAY, days=1, events_per_day=20, media_per_day=0
    ) as sb:
        bulk = sb.kaltura.add_bulk(26_000, sb.start + timedelta(hours=1), tie_size=300)
        run(context(load(sb), mariadb_engine, tmp_path))
        media = read_tables(mariadb_engine)["mivideo_media_created"]
        want = expected(sb)["mivideo_media_created"]
        requests = sb.kaltura.log.count("media.list")

    assert len(want) > 25_000
    pd.testing.assert_frame_equal(media, want, check_dtype=False)
    assert media["id"].is_unique
    tie_second = bulk[10_000].created_at
    tied = {e.id for e in bulk if e.created_at == tie_second}
    assert len(tied) == 300 and tied <= set(media["id"])
    floor = math.ceil(len(want) / 500)
    assert floor <= requests <= floor + 1


def test_5xx_and_truncated_responses_are_retried(
    mariadb_engine: Engine, sqlite_engine: Engine, sandbox: MivideoSandbox, tmp_path: Path
) -> None:
    sandbox.kaltura.add_bulk(1_600, sandbox.start + timedelta(hours=2))
    sandbox.bigquery.page_rows = 20
    # Fault-free request counts, from a run into a scratch SQLite database.
    run(context(load(sandbox), sqlite_engine, tmp_path))
    baseline = {"bigquery": _bq_calls(sandbox), "kaltura": sandbox.kaltura.log.count("media.list")}
    for server in sandbox.servers:
        server.log.reset()
        server.faults = Faults(error_5xx=0.2, truncated=0.2)

    run(context(load(sandbox, MAX_REQ_ATTEMPTS=10), mariadb_engine, tmp_path))

    assert_tables_equal(read_tables(mariadb_engine), expected(sandbox))
    errors = {s.name: sum(n for st, n in s.log.by_status().items() if st >= 500)
              for s in sandbox.servers}  # fmt: skip
    assert errors["bigquery"] > 0 and errors["kaltura"] > 0
    # Truncated bodies are 200s that had to be asked again: more non-5xx answers than a
    # fault-free run needed.
    assert _bq_calls(sandbox) - errors["bigquery"] > baseline["bigquery"]
    assert sandbox.kaltura.log.count("media.list", 200) > baseline["kaltura"]


def _bq_calls(sb: MivideoSandbox) -> int:
    log = sb.bigquery.log
    return sum(log.count(e) for e in ("jobs.insert", "jobs.getQueryResults", "jobs.get"))


def test_expired_session_is_renewed_once(
    mariadb_engine: Engine, sandbox: MivideoSandbox, tmp_path: Path
) -> None:
    sandbox.kaltura.add_bulk(1_200, sandbox.start + timedelta(hours=2))
    sandbox.kaltura.expire_sessions(after=1)
    run(context(load(sandbox), mariadb_engine, tmp_path))
    assert_tables_equal(read_tables(mariadb_engine), expected(sandbox))
    assert sandbox.kaltura.log.count("session.start") == 2


def test_secrets_never_appear_in_logs_or_errors(
    mariadb_engine: Engine,
    sandbox: MivideoSandbox,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = context(load(sandbox), mariadb_engine, tmp_path)
    sandbox.kaltura.add_bulk(700, sandbox.start + timedelta(hours=2))
    sandbox.kaltura.expire_sessions(after=1)  # a KS expires half-way: renewed
    run(ctx)
    sandbox.kaltura.reject_sessions = True  # renewed KS rejected too: the job fails
    with pytest.raises(JobError) as failure:
        run(ctx)
    assert "INVALID_KS" in str(failure.value) and "[REDACTED]" in str(failure.value)

    key = json.loads(sandbox.key_path.read_text())
    secrets = [sandbox.kaltura.admin_secret, key["private_key"], key["private_key_id"]]
    secrets += [line for line in key["private_key"].splitlines() if "-----" not in line]
    secrets += sandbox.kaltura.issued_ks
    assert len(sandbox.kaltura.issued_ks) >= 3
    captured = capsys.readouterr()
    texts = {"log": caplog.text, "stdout": captured.out, "stderr": captured.err,
             "error": str(failure.value)}  # fmt: skip
    assert "media.list" in caplog.text or "Kaltura" in caplog.text  # something was logged
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret appears in the {where}"


def test_configured_event_table_and_project(sqlite_engine: Engine, tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    with start_mivideo_sandbox(
        8, COURSES, env_dir, today=TODAY, days=2, events_per_day=60, media_per_day=5,
        events_table="event_store.expanded",
    ) as sb:  # fmt: skip
        del sb.config["bigquery_project"]  # default: the key file's project_id
        sb.config["udp_events_table"] = "event_store.expanded"
        run(context(load(sb), sqlite_engine, tmp_path))
        assert_tables_equal(read_tables(sqlite_engine), expected(sb))
        assert sb.bigquery.queries[-1].project == "sandbox-udp"
        assert "FROM `event_store.expanded`" in sb.bigquery.queries[-1].sql


def test_missing_key_file_is_a_clear_error(
    sqlite_engine: Engine, sandbox: MivideoSandbox, tmp_path: Path
) -> None:
    config = load(sandbox)
    sandbox.key_path.unlink()
    with pytest.raises(JobError, match=r"udp_service_account_json_filename: .* file not found"):
        run(context(config, sqlite_engine, tmp_path))


def test_wrong_kaltura_secret_is_a_clear_error(
    sqlite_engine: Engine, sandbox: MivideoSandbox, tmp_path: Path
) -> None:
    sandbox.config["kaltura_user_secret"] = "not-the-secret"
    with pytest.raises(JobError, match=r"session\.start failed: START_SESSION_ERROR"):
        run(context(load(sandbox), sqlite_engine, tmp_path))
    assert read_tables(sqlite_engine)["mivideo_media_started_hourly"].empty


# -- through the CLI: success, a failure half-way, then the resume -------------------------------


def test_cli_run_failure_half_way_and_resume(
    mariadb_engine: Engine, sandbox: MivideoSandbox, tmp_path: Path
) -> None:
    run(context(load(sandbox), mariadb_engine, tmp_path))  # yesterday's run, in-process
    url = mariadb_engine.url.render_as_string(hide_password=False)
    path = write_config(
        sandbox, INVENTORY_DB={"url": url}, DATA_DIR=str(tmp_path / "data"),
        LOG_LEVEL="INFO", MAX_REQ_ATTEMPTS=2,
    )  # fmt: skip

    new_today = sandbox.advance_day()
    sandbox.kaltura.add_bulk(1_200, datetime.combine(new_today, datetime.min.time(), UTC))
    sandbox.kaltura.fail_media_list(after=1)  # the walk dies on its second page of three
    before = read_tables(mariadb_engine, with_ids=True)
    failed = run_cli(["run", "--config", str(path)])
    assert failed.returncode == 1
    assert_tables_equal(read_tables(mariadb_engine, with_ids=True), before)
    assert "media.list" in failed.stderr and "HTTP 500" in failed.stderr
    assert sandbox.kaltura.admin_secret not in failed.stderr + failed.stdout

    sandbox.kaltura.fail_media_list(None)
    resumed = run_cli(["run", "--config", str(path)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_tables_equal(read_tables(mariadb_engine), expected(sandbox))

    with mariadb_engine.connect() as conn:
        runs = conn.execute(select(job_run.c.status).order_by(job_run.c.id)).scalars().all()
        names = conn.execute(select(data_source_status.c.data_source_name)).scalars().all()
    assert runs == ["failed", "succeeded"]
    assert sorted(names) == ["KALTURA_API", "UNIZIN_DATA_PLATFORM_EVENTS"]


# -- units -------------------------------------------------------------------------------------


def test_course_links_take_decimal_channel_ids_only() -> None:
    categories = ",".join(
        [
            "Root>site>channels>123",
            "Root>site>channels>123>InContext",
            "Root>site>channels>Shared Repository",
            "Root>site>channels>12abc",
            "Root>site>channels>٣٤",  # Arabic-Indic digits are not a Canvas id
            "Root>site>galleries>55",
            "Root2>site>channels>66",
            "Other>site>channels>77",
            "Root>site>channels>88>Sub",
            "Other>site>channels>99>InContext",
        ]
    )
    assert course_links(categories, ["Root"]) == {CourseLink(123, False), CourseLink(123, True)}
    assert course_links(categories, ["Root", "Other"]) == {
        CourseLink(123, False), CourseLink(123, True), CourseLink(77, False),
        CourseLink(99, True),
    }  # fmt: skip
    assert course_links(None, ["Root"]) == set()


@pytest.mark.parametrize(
    "name", ["events", "a.b; DROP TABLE x", "`p.d.t`", "p.d.t.x", "d.t`x", "d .t", "d.t\n"]
)
def test_event_table_name_is_validated(name: str) -> None:
    with pytest.raises(JobError, match="udp_events_table"):
        query_text(name)


def test_query_text_quotes_the_table_and_keeps_parameters_named() -> None:
    sql = query_text("my-project.event_store.expanded")
    assert "FROM `my-project.event_store.expanded`" in sql
    assert "@after_time" in sql and "@hour_from" in sql and "{" not in sql
