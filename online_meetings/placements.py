"""LTI tool placements: which courses show which configured tool in their navigation.

The courses are the published (``available``) courses of the configured terms, from the
account courses list, plus ``CANVAS.ADD_COURSE_IDS`` (an added id Canvas does not know
is a warning). A placement is a visible course tab ``context_external_tool_<n>`` whose
``<n>`` is a tool in ``lti_type``. A course whose tabs answer 403 is a warning.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any, NamedTuple

from courseinv.http_client.canvas import CanvasClient
from courseinv.http_client.errors import Forbidden, NotFound
from courseinv.runner.payload import Fields, checked_list

log = logging.getLogger(__name__)

TOOL_TAB = re.compile(r"context_external_tool_(\d+)")


class Course(NamedTuple):
    id: int
    account_id: int | None
    name: str | None


class Placement(NamedTuple):
    """One ``lti_placement`` row (without its surrogate id)."""

    course_id: int
    account_id: int | None
    course_name: str | None
    placement_type_id: int


def scope_courses(
    canvas: CanvasClient, account_id: int, term_ids: Iterable[int], add_course_ids: Iterable[int]
) -> list[Course]:
    """Available courses of the terms plus the added ids, de-duplicated, by id."""
    courses: dict[int, Course] = {}
    lists = canvas.map(
        lambda term_id: list(_available_courses(canvas, account_id, term_id)),
        list(dict.fromkeys(term_ids)),
        desc="term course lists",
    )
    for _, term_courses in lists:
        courses.update((c.id, c) for c in term_courses)
    extra = [cid for cid in dict.fromkeys(add_course_ids) if cid not in courses]
    for _, course in canvas.map(
        lambda cid: _added_course(canvas, cid), extra, desc="added courses"
    ):
        if course is not None:
            courses[course.id] = course
    return sorted(courses.values())


def _available_courses(canvas: CanvasClient, account_id: int, term_id: int) -> Iterable[Course]:
    params = {"enrollment_term_id": term_id, "published": "true"}
    endpoint = f"/api/v1/accounts/{account_id}/courses"
    for course in canvas.paginate(endpoint, params):
        if Fields(course, endpoint, "course").str("workflow_state") == "available":
            yield _course(course, endpoint)


def _added_course(canvas: CanvasClient, course_id: int) -> Course | None:
    try:
        course = canvas.get(f"/api/v1/courses/{course_id}", allow_404=True)
    except Forbidden:
        course = None
    if course is None:
        log.warning(
            "ADD_COURSE_IDS: course %s not found (or not visible) in Canvas; skipped", course_id
        )
        return None
    return _course(course, f"/api/v1/courses/{course_id}")


def _course(course: Mapping[str, Any], endpoint: str) -> Course:
    c = Fields(course, endpoint, "course")
    return Course(c.id(), c.int("account_id", required=False), c.text("name", required=False))


def find_placements(
    canvas: CanvasClient, courses: Collection[Course], tool_ids: Collection[int]
) -> list[Placement]:
    """Placements of the ``tool_ids`` tools in ``courses``, by (course id, tool id)."""
    by_id = {c.id: c for c in courses}
    run = canvas.map(
        lambda cid: _tool_tabs(canvas, cid),
        list(by_id),
        desc="course tabs",
        skip=(Forbidden, NotFound),
    )
    placements = [
        Placement(course_id, by_id[course_id].account_id, by_id[course_id].name, tool_id)
        for course_id, tools in run
        for tool_id in tools
        if tool_id in tool_ids
    ]
    if run.skipped:
        log.warning("Course tabs: %d course(s) skipped (403/404), see above", len(run.skipped))
    return sorted(placements)


def _tool_tabs(canvas: CanvasClient, course_id: int) -> set[int]:
    endpoint = f"/api/v1/courses/{course_id}/tabs"
    tabs = canvas.get(endpoint, {"include[]": "external"})
    return visible_tools(tabs, endpoint)


def visible_tools(tabs: Any, endpoint: str = "course tabs") -> set[int]:
    """Tool ids of the external-tool tabs that are not hidden (each tab's fields checked)."""
    tools: set[int] = set()
    for tab in checked_list(tabs, endpoint, "tabs"):
        t = Fields(tab, endpoint, "tab")
        hidden = t.bool("hidden", required=False)
        match = TOOL_TAB.fullmatch(t.text("id", required=False) or "")
        if match and not hidden:
            tools.add(int(match.group(1)))
    return tools
