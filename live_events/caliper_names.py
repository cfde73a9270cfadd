"""Which Canvas event a Caliper 1.1 event is: Caliper carries no event name, so it is read
from the event's type and action and the Canvas entity type of its object's URN."""

from __future__ import annotations

from typing import Any

from courseinv.live_events.normalise import urn_kind

# (Caliper type, action) -> event name, for types that say it alone.
BY_TYPE = {
    ("NavigationEvent", "NavigatedTo"): "asset_accessed",
    ("AssessmentEvent", "Submitted"): "quiz_submitted",
    ("AssignableEvent", "Submitted"): "submission_created",
    ("GradeEvent", "Graded"): "grade_change",
    ("MessageEvent", "Posted"): "discussion_entry_created",
    ("ThreadEvent", "Created"): "discussion_topic_created",
    ("SessionEvent", "LoggedIn"): "logged_in",
    ("SessionEvent", "LoggedOut"): "logged_out",
}

# Generic "Event": (action, URN entity type of the object) -> event name.
BY_ENTITY = {
    ("Created", "account"): "user_account_association_created",
    ("Created", "assignment"): "assignment_created",
    ("Modified", "assignment"): "assignment_updated",
    ("Created", "assignment_override"): "assignment_override_created",
    ("Modified", "assignment_override"): "assignment_override_updated",
    ("Created", "attachment"): "attachment_created",
    ("Modified", "attachment"): "attachment_updated",
    ("Deleted", "attachment"): "attachment_deleted",
    ("Created", "course"): "course_created",
    ("Modified", "course"): "course_updated",
    ("Created", "enrollment"): "enrollment_created",
    ("Modified", "enrollment"): "enrollment_updated",
    ("Created", "group"): "group_created",
    ("Created", "groupCategory"): "group_category_created",
    ("Created", "groupMembership"): "group_membership_created",
    ("Created", "quiz"): "quiz_created",
    ("Modified", "quiz"): "quiz_updated",
    ("Modified", "submission"): "submission_updated",
    ("Created", "wikiPage"): "wiki_page_created",
    ("Modified", "wikiPage"): "wiki_page_updated",
    ("Deleted", "wikiPage"): "wiki_page_deleted",
}

CANVAS_EXT = "com.instructure.canvas"


def caliper_event_name(event: dict[str, Any]) -> str:
    """The Canvas event name of a Caliper event; ``caliper:<type>/<action>/<entity>`` when
    the combination is not one Canvas documents (stored, counted, not projected)."""
    kind, action = event.get("type"), event.get("action")
    named = BY_TYPE.get((kind, action))
    if named:
        return named
    obj = event.get("object") if isinstance(event.get("object"), dict) else {}
    entity = urn_kind(obj.get("id")) or obj.get("type")
    if kind == "Event":
        name = BY_ENTITY.get((action, entity))
        if name == "course_updated" and obj.get("type") == "Document":
            return "syllabus_updated"
        if name and entity == "enrollment" and _is_enrollment_state(obj):
            return name.replace("enrollment_", "enrollment_state_")
        if name:
            return name
    return f"caliper:{kind}/{action}/{entity}"[:255]


def _is_enrollment_state(obj: dict[str, Any]) -> bool:
    ext = (obj.get("extensions") or {}).get(CANVAS_EXT) or {}
    return "state" in ext and "workflow_state" not in ext
