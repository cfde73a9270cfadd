"""What reading a delivery gives: parsed events, rejects, and their projection rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

EventFormat = Literal["canvas", "caliper"]


@dataclass(frozen=True)
class CourseState:
    """A course's name and state as one event tells it (``live_course_state``)."""

    course_id: int
    name: str | None
    workflow_state: str | None  # None: this event type does not carry it


@dataclass(frozen=True)
class EnrollmentState:
    """An enrollment as one event tells it (``live_enrollment_state``)."""

    enrollment_id: int
    course_id: int | None
    course_section_id: int | None
    user_id: int | None
    type: str | None
    workflow_state: str | None


@dataclass(frozen=True)
class Activity:
    """One page view or participation of a user in a course (``live_course_activity_hourly``)."""

    course_id: int
    user_id: int  # 0 when the event names no user
    page_views: int
    participations: int


@dataclass(frozen=True)
class ResourceLink:
    """An LTI resource link as one event tells it (``lti_resource_link``)."""

    lookup_uuid: str
    course_id: int | None
    context_external_tool_id: int | None
    url: str | None
    title: str | None
    workflow_state: str | None


Projection = CourseState | EnrollmentState | Activity | ResourceLink


@dataclass(frozen=True)
class ParsedEvent:
    """One readable event, ready for ``store_batch``."""

    event_key: str
    event_name: str
    event_format: EventFormat
    event_time: datetime  # naive UTC
    course_id: int | None
    user_id: int | None
    payload: str  # the event's JSON text (Caliper: the envelope around this event alone)
    source: str
    handled: bool  # a schema of this package checked it (else: stored, not projected)
    schema: str | None = None  # e.g. "canvas/course_created.v1"
    drift: tuple[str, ...] = ()  # field paths the schema does not know
    projection: Projection | None = None
    truncated: tuple[str, ...] = ()  # projection fields cut to their column's size


@dataclass(frozen=True)
class Rejected:
    """A delivery (or one event of it) that cannot be read: kept with the reason."""

    source: str
    reason: str
    payload: str  # the text as received (bytes that are not UTF-8: backslash-escaped)
