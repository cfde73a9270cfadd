"""What a handled event tells the reporting tables (one projection per event).

Participations: a user's own actions in a course (submissions, quiz submissions,
discussion topics and entries); page views: ``asset_accessed`` (Caliper
``NavigationEvent``). An activity whose course is unknown (not in the event) projects
nothing; the event is stored all the same.
"""

from __future__ import annotations

from typing import Any

from courseinv.live_events.caliper_names import CANVAS_EXT
from courseinv.live_events.model import (
    Activity,
    CourseState,
    EnrollmentState,
    Projection,
    ResourceLink,
)
from courseinv.live_events.normalise import local_id, urn_id

PAGE_VIEWS = {"asset_accessed"}
PARTICIPATIONS = {
    "submission_created",
    "quiz_submitted",
    "discussion_entry_created",
    "discussion_topic_created",
}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# --- Canvas raw ------------------------------------------------------------------------


def canvas_course_id(metadata: dict[str, Any], body: dict[str, Any]) -> int | None:
    """The course an event is about: the request's Course context, else the body's own
    Course context, else the body's course_id."""
    for where in (metadata, body):
        if where.get("context_type") == "Course":
            found = local_id(where.get("context_id"))
            if found is not None:
                return found
    return local_id(body.get("course_id"))


def canvas_projection(
    name: str, metadata: dict[str, Any], body: dict[str, Any]
) -> Projection | None:
    if name in ("course_created", "course_updated"):
        return CourseState(
            local_id(body["course_id"]), _str(body.get("name")), _str(body.get("workflow_state"))
        )
    if name == "course_completed":
        course = _dict(body.get("course"))
        return CourseState(local_id(course["id"]), _str(course.get("name")), None)
    if name in ("enrollment_created", "enrollment_updated"):
        return EnrollmentState(
            enrollment_id=local_id(body["enrollment_id"]),
            course_id=local_id(body.get("course_id")),
            course_section_id=local_id(body.get("course_section_id")),
            user_id=local_id(body.get("user_id")),
            type=_str(body.get("type")),
            workflow_state=_str(body.get("workflow_state")),
        )
    if name in ("lti_resource_link_created", "lti_resource_link_updated"):
        in_course = body.get("context_type") == "Course"
        return ResourceLink(
            lookup_uuid=body["lookup_uuid"],
            course_id=local_id(body.get("context_id")) if in_course else None,
            context_external_tool_id=local_id(body.get("context_external_tool_id")),
            url=_str(body.get("url")),
            title=_str(body.get("title")),
            workflow_state=_str(body.get("workflow_state")),
        )
    if name in PAGE_VIEWS or name in PARTICIPATIONS:
        return _activity(name, canvas_course_id(metadata, body), local_id(metadata.get("user_id")))
    return None


# --- Caliper ---------------------------------------------------------------------------


def caliper_ext(entity: Any) -> dict[str, Any]:
    return _dict(_dict(_dict(entity).get("extensions")).get(CANVAS_EXT))


def caliper_course_id(event: dict[str, Any]) -> int | None:
    """The course of a Caliper event: its group (course or section), else its object."""
    for entity in (event.get("group"), event.get("object")):
        found = urn_id(_dict(entity).get("id"), "course")
        if found is not None:
            return found
    return None


def caliper_user_id(event: dict[str, Any]) -> int | None:
    return urn_id(_dict(event.get("actor")).get("id"), "user")


def caliper_projection(name: str, event: dict[str, Any]) -> Projection | None:
    obj = _dict(event.get("object"))
    ext = caliper_ext(obj)
    if name in ("course_created", "course_updated"):
        return CourseState(
            urn_id(obj["id"], "course"), _str(obj.get("name")), _str(ext.get("workflow_state"))
        )
    if name in ("enrollment_created", "enrollment_updated"):
        return EnrollmentState(
            enrollment_id=urn_id(obj["id"], "enrollment"),
            course_id=urn_id(ext.get("course_id"), "course"),
            course_section_id=urn_id(ext.get("course_section_id"), "section"),
            user_id=urn_id(ext.get("user_id"), "user"),
            type=_str(ext.get("type")),
            workflow_state=_str(ext.get("workflow_state")),
        )
    if name in PAGE_VIEWS or name in PARTICIPATIONS:
        return _activity(name, caliper_course_id(event), caliper_user_id(event))
    return None


def _activity(name: str, course_id: int | None, user_id: int | None) -> Activity | None:
    if course_id is None:
        return None
    views = int(name in PAGE_VIEWS)
    return Activity(course_id, user_id or 0, views, 1 - views)
