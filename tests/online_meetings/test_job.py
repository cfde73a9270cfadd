"""The ONLINE_MEETINGS job over real HTTP (Canvas and Zoom sandboxes) into real databases."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from courseinv.config import load_config
from courseinv.db.publish import ShrinkRefused
from courseinv.db.tables import job_run, lti_placement, lti_type, lti_zoom_meeting
from courseinv.online_meetings.job import run
from courseinv.runner.jobs import DataSourceName, JobContext, JobError
from courseinv.sandbox.canvas import CanvasServer
from courseinv.sandbox.institution import Institution, InstitutionSpec
from courseinv.sandbox.lti import expected_online_meetings, start_zoom_sandbox
from courseinv.sandbox.zoom import ZoomServer
from sqlalchemy import Engine, insert, select

from tests.conftest import run_cli
from tests.tables import normalise

SPEC = InstitutionSpec(seed=7, terms=2, courses_per_term=30, share_tabs_403=0.1)
# A tool already in lti_type before the run and absent from LTI_TOOLS: it must stay, and
# its tabs count as placements.
PREVIOUS_TOOL = {"canvas_id": 5120, "des": "Piazza", "rpt_group_nm": None}
MISSING_COURSE_ID = 999_999_999


@pytest.fixture(scope="module")
def institution() -> Institution:
    return Institution.generate(SPEC)


@pytest.fixture(scope="module")
def canvas(institution: Institution) -> Iterator[CanvasServer]:
    with CanvasServer(institution) as server:
        yield server


@dataclass
class Sandbox:
    institution: Institution
    canvas: CanvasServer
    zoom: ZoomServer
    zoom_config: dict[str, Any]
    lti_tools: list[dict[str, Any]]
    add_course_ids: list[int]


@pytest.fixture
def sandbox(institution: Institution, canvas: CanvasServer) -> Iterator[Sandbox]:
    zoom, zoom_config, lti_tools = start_zoom_sandbox(institution)
    try:
        yield Sandbox(institution, canvas, zoom, zoom_config, lti_tools, added_courses(institution))
    finally:
        zoom.stop()


def added_courses(inst: Institution) -> list[int]:
    """Courses worth adding: out of scope, already in scope, tabs 403, gone, unknown."""
    in_terms = {c.id for c in inst.courses if c.workflow_state == "available"}
    first = {
        state: next(c.id for c in inst.courses if c.workflow_state == state)
        for state in ("unpublished", "completed", "deleted")
    }
    forbidden = min(
        c for c in inst.tabs_forbidden if inst.course_by_id[c].workflow_state != "deleted"
    )
    return [
        first["unpublished"],
        first["completed"],
        min(in_terms),
        forbidden,
        first["deleted"],
        MISSING_COURSE_ID,
    ]


def make_context(
    sb: Sandbox, engine: Engine, tmp_path: Path, *, zoom: bool = True, **overrides: Any
) -> JobContext:
    config: dict[str, Any] = {
        "JOB_NAMES": ["ONLINE_MEETINGS"],
        "CREATE_CSVS": True,
        "DATA_DIR": str(tmp_path / "data"),
        "NUM_ASYNC_WORKERS": 4,
        "CANVAS": {
            "CANVAS_URL": sb.canvas.url,
            "CANVAS_TOKEN": sb.canvas.token,
            "CANVAS_ACCOUNT_ID": sb.canvas.account_id,
            "CANVAS_TERM_IDS": sb.institution.term_ids,
            "ADD_COURSE_IDS": sb.add_course_ids,
        },
        "INVENTORY_DB": {"url": engine.url.render_as_string(hide_password=False)},
        "LTI_TOOLS": sb.lti_tools,
        **overrides,
    }
    if zoom:
        config["ZOOM"] = sb.zoom_config
    path = tmp_path / "env.hjson"
    path.write_text(json.dumps(config), encoding="utf-8")
    loaded = load_config(path, environ={})
    return JobContext(
        loaded, engine, loaded.data_dir(), loaded.env_dir, logging.getLogger("test.online_meetings")
    )


def seed_previous_tool(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(lti_type), [PREVIOUS_TOOL])


def expected(sb: Sandbox, *, zoom: bool = True) -> dict[str, pd.DataFrame]:
    return expected_online_meetings(
        sb.institution,
        [*sb.lti_tools, PREVIOUS_TOOL],
        sb.institution.zoom_tool_id if zoom else None,
        sb.add_course_ids,
        sb.institution.term_ids,
    )


def read_tables(engine: Engine) -> dict[str, pd.DataFrame]:
    """The three tables as stored, placements named by (course_id, placement_type_id)."""
    with engine.connect() as conn:
        types = pd.read_sql(select(lti_type).order_by(lti_type.c.canvas_id), conn)
        placements = pd.read_sql(select(lti_placement).order_by(lti_placement.c.id), conn)
        meetings = pd.read_sql(select(lti_zoom_meeting).order_by(lti_zoom_meeting.c.id), conn)
    named = meetings.merge(
        placements[["id", "course_id", "placement_type_id"]].rename(
            columns={"id": "lti_placement_id"}
        ),
        on="lti_placement_id",
        how="left",
        validate="many_to_one",
    )
    assert named["course_id"].notna().all()
    assert placements["id"].is_unique and meetings["id"].is_unique
    return {
        "lti_type": types,
        "lti_placement": placements.drop(columns="id")
        .sort_values(["course_id", "placement_type_id"])
        .reset_index(drop=True),
        "lti_zoom_meeting": named[
            ["course_id", "placement_type_id", "meeting_id", "host_id", "start_time", "status"]
        ]
        .sort_values(["course_id", "placement_type_id", "meeting_id", "start_time"])
        .reset_index(drop=True),
        "_raw_meetings": meetings,
        "_raw_placements": placements,
    }


def assert_tables_equal(actual: dict[str, pd.DataFrame], truth: dict[str, pd.DataFrame]) -> None:
    for name, want in truth.items():
        got = actual[name]
        assert list(got.columns) == list(want.columns), name
        assert len(got) == len(want), name
        assert normalise(got) == normalise(want), name


# -- tests --------------------------------------------------------------------------


def check_full_run(
    sb: Sandbox, engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seed_previous_tool(engine)
    caplog.set_level(logging.INFO)
    statuses = run(make_context(sb, engine, tmp_path))

    assert [s.name for s in statuses] == [DataSourceName.CANVAS_LTI, DataSourceName.ZOOM_API]
    truth = expected(sb)
    assert len(truth["lti_placement"]) > 20 and len(truth["lti_zoom_meeting"]) > 20
    assert set(truth["lti_zoom_meeting"]["status"]) == {"waiting", "started", "ended", "deleted"}
    assert_tables_equal(read_tables(engine), truth)

    # Warnings, not failures: the unknown added course and the courses whose tabs are 403.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(MISSING_COURSE_ID) in w and "not found" in w for w in warnings)
    forbidden = [c for c in sb.institution.tabs_forbidden if in_scope(sb, c)]
    assert forbidden, "the sandbox should have in-scope courses whose tabs answer 403"
    for course_id in forbidden:
        assert any(str(course_id) in w and "403" in w for w in warnings)

    # One Zoom lookup per distinct meeting, one token.
    distinct = truth["lti_zoom_meeting"]["meeting_id"].nunique()
    assert sb.zoom.log.count("meetings") == distinct
    assert sb.zoom.log.count("oauth") == 1
    assert {p.name for p in (tmp_path / "data").iterdir()} == {
        "lti_type.csv",
        "lti_placement.csv",
        "lti_zoom_meeting.csv",
    }


def in_scope(sb: Sandbox, course_id: int) -> bool:
    course = sb.institution.course_by_id[course_id]
    return course.workflow_state == "available" or course_id in sb.add_course_ids


def test_tables_equal_ground_truth(
    sandbox: Sandbox, any_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    check_full_run(sandbox, any_engine, tmp_path, caplog)


@pytest.mark.mariadb
@pytest.mark.parametrize("retry_after", [1, "iso"])
def test_zoom_429_storm_is_ridden_out(
    sandbox: Sandbox, mariadb_engine: Engine, tmp_path: Path, retry_after: int | str
) -> None:
    seed_previous_tool(mariadb_engine)
    sandbox.zoom.rate_limit_storm(4, retry_after, iso_s=0.5)
    run(make_context(sandbox, mariadb_engine, tmp_path))
    assert_tables_equal(read_tables(mariadb_engine), expected(sandbox))
    assert sandbox.zoom.log.count(status=429) == 4
    assert sandbox.zoom.early_retries == 0  # every retry waited for its Retry-After


@pytest.mark.mariadb
def test_expired_token_renewed_once_and_secrets_never_logged(
    sandbox: Sandbox, mariadb_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seed_previous_tool(mariadb_engine)
    sandbox.zoom.expire_tokens_at_request = 5
    sandbox.zoom.rate_limit_storm(2, 0.2)
    run(make_context(sandbox, mariadb_engine, tmp_path))
    assert_tables_equal(read_tables(mariadb_engine), expected(sandbox))
    assert sandbox.zoom.log.count("oauth") == 2
    assert sandbox.zoom.log.count(status=401) >= 1  # requests in flight with the old token
    secrets = [sandbox.zoom_config["CLIENT_SECRET"], *sandbox.zoom.issued_tokens]
    assert len(secrets) == 3
    logged = caplog.text + "\n".join(repr(r.__dict__) for r in caplog.records)
    for secret in secrets:
        assert secret not in logged


@pytest.mark.mariadb
def test_zoom_absent_gives_placements_only(
    sandbox: Sandbox, mariadb_engine: Engine, tmp_path: Path
) -> None:
    seed_previous_tool(mariadb_engine)
    run(make_context(sandbox, mariadb_engine, tmp_path))  # a full run first
    assert len(read_tables(mariadb_engine)["lti_zoom_meeting"]) > 0
    requests_before = sandbox.zoom.log.count()
    # Emptying lti_zoom_meeting needs the user's say-so (run --allow-shrink / ALLOW_SHRINK).
    with pytest.raises(ShrinkRefused, match="lti_zoom_meeting would go from"):
        run(make_context(sandbox, mariadb_engine, tmp_path, zoom=False))
    sandbox.canvas.log.reset()

    statuses = run(make_context(sandbox, mariadb_engine, tmp_path, zoom=False, ALLOW_SHRINK=True))

    assert [s.name for s in statuses] == [DataSourceName.CANVAS_LTI]
    truth = expected(sandbox, zoom=False)
    assert truth["lti_zoom_meeting"].empty
    assert_tables_equal(read_tables(mariadb_engine), truth)
    assert sandbox.zoom.log.count() == requests_before
    assert sandbox.canvas.log.count("calendar_events") == 0
    assert sandbox.canvas.log.count("tabs") > 0


@pytest.mark.mariadb
def test_daily_limit_fails_job_and_keeps_previous_rows(
    sandbox: Sandbox, mariadb_engine: Engine, tmp_path: Path
) -> None:
    seed_previous_tool(mariadb_engine)
    run(make_context(sandbox, mariadb_engine, tmp_path))
    before = read_tables(mariadb_engine)

    renamed = [{**t, "des": t["des"] + " (renamed)"} for t in sandbox.lti_tools]
    ctx = make_context(sandbox, mariadb_engine, tmp_path, LTI_TOOLS=renamed, LOG_LEVEL="DEBUG")
    sandbox.zoom.daily_limit = sandbox.zoom.api_requests + 3
    sandbox.zoom.log.reset()
    result = run_cli(["--config", str(ctx.config.path), "run"])

    assert result.returncode == 1, result.stderr
    output = result.stdout + result.stderr
    assert "daily rate limit" in output
    assert sandbox.zoom.log.count(status=429) >= 1
    assert sandbox.zoom.log.count("meetings") < before["lti_zoom_meeting"]["meeting_id"].nunique()
    after = read_tables(mariadb_engine)
    for name in ("lti_type", "_raw_placements", "_raw_meetings"):  # the renaming too
        pd.testing.assert_frame_equal(after[name], before[name])
    with mariadb_engine.connect() as conn:
        last = conn.execute(select(job_run).order_by(job_run.c.id.desc())).mappings().first()
    assert last is not None and last["status"] == "failed"
    assert "daily rate limit" in last["reason"]
    for secret in [sandbox.zoom_config["CLIENT_SECRET"], *sandbox.zoom.issued_tokens]:
        assert secret not in output


def test_daily_limit_raises_job_error_and_writes_nothing(
    sandbox: Sandbox, sqlite_engine: Engine, tmp_path: Path
) -> None:
    sandbox.zoom.daily_limit = 0
    with pytest.raises(JobError, match=r"daily rate limit.*left unchanged"):
        run(make_context(sandbox, sqlite_engine, tmp_path))
    assert sandbox.zoom.log.count(status=429) >= 1
    for name, frame in read_tables(sqlite_engine).items():
        assert frame.empty, name  # not even lti_type: all three publish together


def test_configured_tool_replaces_its_stored_row_and_others_stay(
    sandbox: Sandbox, sqlite_engine: Engine, tmp_path: Path
) -> None:
    seed_previous_tool(sqlite_engine)
    renamed = {**sandbox.lti_tools[0], "des": "Renamed tool", "rpt_group_nm": "Group B"}
    with sqlite_engine.begin() as conn:
        conn.execute(insert(lti_type), [{**renamed, "des": "Stale name"}])
    run(make_context(sandbox, sqlite_engine, tmp_path, zoom=False, LTI_TOOLS=[renamed]))
    stored = read_tables(sqlite_engine)["lti_type"]
    assert normalise(stored) == sorted(
        [
            (renamed["canvas_id"], "Renamed tool", "Group B"),
            tuple(PREVIOUS_TOOL.values()),
        ]
    )


def test_empty_lti_tools_is_a_config_error_and_keeps_the_tables(
    sandbox: Sandbox, sqlite_engine: Engine, tmp_path: Path
) -> None:
    run(make_context(sandbox, sqlite_engine, tmp_path))
    before = read_tables(sqlite_engine)
    config = json.loads((tmp_path / "env.hjson").read_text(encoding="utf-8"))
    config["LTI_TOOLS"] = []
    (tmp_path / "env.hjson").write_text(json.dumps(config), encoding="utf-8")
    result = run_cli(["run", "--config", str(tmp_path / "env.hjson")])
    assert result.returncode == 2
    assert "LTI_TOOLS: job ONLINE_MEETINGS needs at least one entry" in result.stderr
    after = read_tables(sqlite_engine)
    for name in ("lti_type", "_raw_placements", "_raw_meetings"):
        pd.testing.assert_frame_equal(after[name], before[name])
