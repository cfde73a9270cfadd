"""ONLINE_MEETINGS in the sandbox: ground truth for its three tables, and the Zoom fake.

For development, tests, the demo and benchmarks only.

``expected_online_meetings`` states what ``lti_type``, ``lti_placement`` and
``lti_zoom_meeting`` must hold after a run, from the institution's own records (which
tool tabs each course has, which meetings its calendar was generated with), not by
re-parsing what the Canvas fake serves with the job's rules:

* courses: ``available`` courses of the terms under the account, plus the added ids
  of courses Canvas knows (not ``deleted``); a course whose tabs answer 403 has none;
* a placement per visible tool tab whose tool is in ``lti_tools``;
* a meeting row per Zoom placement, meeting the course's calendar was generated with,
  and distinct start time of the events that carry its join URL (``/j/<id>`` followed
  by a non-digit); host and status as Zoom has them, no host for deleted meetings.

Placements are identified by ``(course_id, placement_type_id)`` instead of the
surrogate id; frames are sorted and carry the ``db/tables.py`` columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from courseinv.sandbox.institution import Institution
from courseinv.sandbox.zoom import ZoomServer

# Which calendar-event fields a join URL may sit in (Canvas's names).
EVENT_TEXT_FIELDS = ("location_name", "location_address", "description")
# Tools the demo reports on: a subset of the institution's, so some tool tabs are ignored.
DEMO_TOOL_IDS = (77, 312, 4101, 9001)


def lti_tools_for(institution: Institution, tool_ids: Iterable[int] = DEMO_TOOL_IDS) -> list[dict]:
    """``LTI_TOOLS`` config entries for some of the institution's tools (always Zoom)."""
    wanted = dict.fromkeys([institution.zoom_tool_id, *tool_ids])
    return [
        {
            "canvas_id": t,
            "des": institution.external_tools[t],
            "rpt_group_nm": _group(t, institution),
        }
        for t in wanted
        if t in institution.external_tools
    ]


def _group(tool_id: int, institution: Institution) -> str:
    return "Online meetings" if tool_id == institution.zoom_tool_id else "Teaching tools"


def start_zoom_sandbox(
    institution: Institution, **server_options: Any
) -> tuple[ZoomServer, dict[str, Any], list[dict]]:
    """Start a Zoom fake serving the institution's meetings.

    Returns the running server (call ``stop()``), the ``ZOOM`` config section pointing at
    it, and an ``LTI_TOOLS`` list that includes the Zoom tool.
    """
    server = ZoomServer(institution.zoom_meetings, **server_options)
    server.start()
    zoom_config = {**server.config(), "LTI_TOOL_ID": institution.zoom_tool_id}
    return server, zoom_config, lti_tools_for(institution)


def expected_online_meetings(
    institution: Institution,
    lti_tools: Sequence[Mapping[str, Any]],
    zoom_tool_id: int | None,
    add_course_ids: Iterable[int] = (),
    term_ids: Iterable[int] = (),
    *,
    account_id: int | None = None,
) -> dict[str, pd.DataFrame]:
    """The three tables after a successful run (see the module docstring).

    ``lti_tools`` is everything ``lti_type`` holds (config plus rows that were already
    there); ``zoom_tool_id`` None means ZOOM is not configured.
    """
    tool_ids = {int(t["canvas_id"]) for t in lti_tools}
    placements = [
        (course.id, course.account_id, course.name, tool_id)
        for course in _courses_in_scope(institution, term_ids, add_course_ids, account_id)
        for tool_id in sorted(_visible_tools(institution, course.id) & tool_ids)
    ]
    meetings = [
        (course_id, tool_id, *row)
        for course_id, _, _, tool_id in placements
        if tool_id == zoom_tool_id
        for row in _course_meeting_rows(institution, course_id)
    ]
    return {
        "lti_type": _lti_type(lti_tools),
        "lti_placement": pd.DataFrame(
            sorted(placements),
            columns=["course_id", "account_id", "course_name", "placement_type_id"],
        ),
        "lti_zoom_meeting": pd.DataFrame(
            sorted(meetings, key=lambda r: (r[0], r[1], r[2], r[4] or datetime.min)),
            columns=[
                "course_id",
                "placement_type_id",
                "meeting_id",
                "host_id",
                "start_time",
                "status",
            ],
        ).astype({"start_time": "datetime64[us]"}),
    }


def _lti_type(lti_tools: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    rows = {int(t["canvas_id"]): (t["des"], t.get("rpt_group_nm")) for t in lti_tools}
    return pd.DataFrame(
        [(k, *v) for k, v in sorted(rows.items())], columns=["canvas_id", "des", "rpt_group_nm"]
    )


def _courses_in_scope(
    institution: Institution,
    term_ids: Iterable[int],
    add_course_ids: Iterable[int],
    account_id: int | None,
) -> list[Any]:
    terms = set(term_ids)
    accounts = institution.account_subtree(account_id or institution.root_account_id)
    chosen = {
        c.id: c
        for c in institution.courses
        if c.term_id in terms and c.account_id in accounts and c.workflow_state == "available"
    }
    for course_id in add_course_ids:
        course = institution.course_by_id.get(course_id)
        if course is not None and course.workflow_state != "deleted":
            chosen.setdefault(course_id, course)
    return [chosen[k] for k in sorted(chosen)]


def _visible_tools(institution: Institution, course_id: int) -> set[int]:
    if course_id in institution.tabs_forbidden:
        return set()
    return {
        int(tab["tool_id"])
        for tab in institution.tabs(course_id) or ()
        if tab.get("type") == "external" and not tab.get("hidden")
    }


def _course_meeting_rows(
    institution: Institution, course_id: int
) -> list[tuple[int, str | None, datetime | None, str]]:
    events = institution.calendar_events(course_id)
    rows = []
    for meeting_id in institution.course_meetings.get(course_id, ()):
        meeting = institution.zoom_meetings[meeting_id]
        host = None if meeting.status == "deleted" else meeting.host_id
        carries = re.compile(rf"/j/{meeting_id}(?!\d)")
        starts = {
            _naive_utc(event["start_at"])
            for event in events
            if any(carries.search(str(event.get(f) or "")) for f in EVENT_TEXT_FIELDS)
        }
        rows += [(meeting_id, host, start, meeting.status) for start in starts]
    return rows


def _naive_utc(value: object) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
