"""Zoom meetings of a course, read from its Canvas calendar events.

A meeting is named by a Zoom join URL (``https://<host>.zoom.us/j/<digits>``, with or
without a query string or fragment) in an event's location fields or description. The
same meeting in several places of one event, or in several events at the same start
time, is one meeting; a recurring meeting listed at several start times is one meeting
per start time.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from http_client.canvas import CanvasClient
from http_client.errors import Forbidden, NotFound

# Fields of a Canvas calendar event that may carry a join URL.
MEETING_FIELDS = ("location_name", "location_address", "description")

# Scheme, optional subdomains (umich., us02web., ...), zoom.us, /j/, the meeting number.
# The number must end the path segment, so /j/123abc is not a meeting.
JOIN_URL = re.compile(
    r"https?://(?:[a-z0-9-]+\.)*zoom\.us/j/(\d+)(?![\w-])",
    re.IGNORECASE,
)


class CalendarMeeting(NamedTuple):
    """One Zoom meeting at one calendar start time (UTC, naive; None when unknown)."""

    meeting_id: int
    start_time: datetime | None


def read_course_meetings(
    canvas: CanvasClient, course_ids: Collection[int]
) -> dict[int, list[CalendarMeeting]]:
    """Each course's Zoom meetings from its calendar events (403/404: warned, skipped)."""
    run = canvas.map(
        lambda course_id: course_meetings(calendar_events(canvas, course_id)),
        list(course_ids),
        desc="calendar events",
        skip=(Forbidden, NotFound),
    )
    return dict(run)


def calendar_events(canvas: CanvasClient, course_id: int) -> Iterable[Mapping[str, Any]]:
    """Every calendar event of a course (all dates), following Link pagination."""
    params = {"context_codes[]": f"course_{course_id}", "all_events": "true", "type": "event"}
    return canvas.paginate("/api/v1/calendar_events", params)


def meeting_ids(text: str | None) -> set[int]:
    """Every Zoom meeting number in ``text`` (plain text or HTML)."""
    return {int(number) for number in JOIN_URL.findall(text or "")}


def event_meeting_ids(event: Mapping[str, Any]) -> set[int]:
    """Meeting numbers in a calendar event's location fields and description."""
    found: set[int] = set()
    for name in MEETING_FIELDS:
        value = event.get(name)
        if isinstance(value, str):
            found |= meeting_ids(value)
    return found


def course_meetings(events: Iterable[Mapping[str, Any]]) -> list[CalendarMeeting]:
    """Distinct (meeting id, start time) pairs of a course's calendar events, sorted."""
    meetings = {
        CalendarMeeting(meeting_id, parse_utc(event.get("start_at")))
        for event in events
        for meeting_id in event_meeting_ids(event)
    }
    return sorted(meetings, key=lambda m: (m.meeting_id, m.start_time or datetime.min))


def parse_utc(value: str | None) -> datetime | None:
    """An ISO 8601 timestamp as a naive UTC datetime (the database convention)."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
