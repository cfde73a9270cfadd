"""Hostile Canvas payloads fail ONLINE_MEETINGS with a named error (issue 14, item 7)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from courseinv.online_meetings.job import run
from courseinv.runner.jobs import JobError
from sqlalchemy import Engine

from tests.online_meetings.test_job import (  # noqa: F401 (fixtures)
    Sandbox,
    canvas,
    institution,
    make_context,
    sandbox,
)


def first(name: str, value: Any) -> Callable[[Any], Any]:
    def apply(body: Any) -> Any:
        if isinstance(body, list) and body:
            body[0][name] = value
        return body

    return apply


def every(name: str, value: Any) -> Callable[[Any], Any]:
    def apply(body: Any) -> Any:
        for item in body if isinstance(body, list) else []:
            item[name] = value
        return body

    return apply


CASES = {
    "calendar start_at": ("calendar_events", every("start_at", "soon"),
                          ["/api/v1/calendar_events: calendar event ", "start_at is 'soon'"]),
    "tab hidden": ("tabs", first("hidden", "yes"),
                   ["/tabs: tab ", "hidden is 'yes' (expected true or false)"]),
    "float-like course id": ("courses", first("id", "500002.0"),
                             ["/courses: course 500002.0: id is '500002.0'"]),
    "course account_id": ("courses", first("account_id", "x1"), ["account_id is 'x1'"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_field_is_a_named_error(
    case: str, sandbox: Sandbox, sqlite_engine: Engine, tmp_path: Path  # noqa: F811
) -> None:
    endpoint, edit, expected = CASES[case]
    sandbox.canvas.tamper(endpoint, edit)
    try:
        with pytest.raises(JobError) as info:
            run(make_context(sandbox, sqlite_engine, tmp_path, zoom=endpoint == "calendar_events"))
    finally:
        sandbox.canvas.tamper(endpoint, None)
    for part in expected:
        assert part in str(info.value), str(info.value)
