"""Hostile BigQuery rows and Kaltura entries fail MIVIDEO with a named error (issue 14, item 7).

The fakes serve the malformed field themselves (``tamper``); the error names the source,
the object (row or entry) and the field, and the three tables keep their contents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from courseinv.mivideo.job import run
from courseinv.runner.jobs import JobError
from courseinv.sandbox.mivideo import MivideoSandbox, start_mivideo_sandbox
from sqlalchemy import Engine

from tests.mivideo.test_job import COURSES, TODAY, assert_tables_equal, context, load, read_tables


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[MivideoSandbox]:
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    with start_mivideo_sandbox(
        23, COURSES, env_dir, today=TODAY, days=2, events_per_day=80, media_per_day=15
    ) as sb:
        yield sb


def row_cell(column: int, value: Any) -> Callable[[Any], Any]:
    """Edit one cell of the first result row of a BigQuery results page."""

    def apply(body: Any) -> Any:
        if body.get("rows"):
            body["rows"][0]["f"][column]["v"] = value
        return body

    return apply


def entry_field(name: str, value: Any) -> Callable[[Any], Any]:
    """Edit a field of the first entry of a Kaltura media.list answer."""

    def apply(body: Any) -> Any:
        if isinstance(body, dict) and body.get("objects"):
            body["objects"][0][name] = value
        return body

    return apply


CASES = {
    "null course_id": ("bigquery", "jobs.getQueryResults", row_cell(1, None),
                       ["BigQuery media_started_hourly: row (hour ", "course_id is null"]),
    "null event hour": ("bigquery", "jobs.getQueryResults", row_cell(0, None),
                        ["event_hour_utc is null"]),
    "float-like createdAt": ("kaltura", "media.list", entry_field("createdAt", "1773000000.0"),
                             ["Kaltura media.list: media entry ", "createdAt is '1773000000.0'"]),
    "fractional duration": ("kaltura", "media.list", entry_field("duration", "12.5"),
                            ["Kaltura media.list: media entry ", "duration is '12.5'"]),
    "numeric categories": ("kaltura", "media.list", entry_field("categories", 5),
                           ["categories is 5 (expected a string)"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_field_is_a_named_error_and_tables_stay(
    case: str, sandbox: MivideoSandbox, sqlite_engine: Engine, tmp_path: Path
) -> None:
    ctx = context(load(sandbox), sqlite_engine, tmp_path)
    run(ctx)
    before = read_tables(sqlite_engine, with_ids=True)
    server, endpoint, edit, expected = CASES[case]
    getattr(sandbox, server).tamper(endpoint, edit)
    with pytest.raises(JobError) as info:
        run(ctx)
    for part in expected:
        assert part in str(info.value), str(info.value)
    after = read_tables(sqlite_engine, with_ids=True)
    for name, frame in before.items():
        assert after[name].equals(frame), name
    assert_tables_equal(after, before)
