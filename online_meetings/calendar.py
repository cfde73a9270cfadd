"""Zoom meetings of a course, read from its Canvas calendar events.

A meeting is named by a Zoom join URL (``https://<host>.zoom.us/j/<digits>``, with or
without a query string or fragment) in an event's location fields or description. The
same meeting in several places of one event, or in several events at the same start
time, is one meeting; a recurring meeting listed at several start times is one meeting
per start time.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from courseinv.http_client.canvas import CanvasClient
from courseinv.http_client.errors import Forbidden, NotFound
from courseinv.runner.payload import Fields

log = logging.getLogger(__name__)

# Canvas reads at most this many context codes per calendar-events request.
CONTEXT_CODES_MAX = 10
CALENDAR_EVENTS = "/api/v1/calendar_events"
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
    """Each course's Zoom meetings from its calendar events, ten courses per request."""
    ids = sorted(set(course_ids))
    batches = [tuple(ids[i : i + CONTEXT_CODES_MAX]) for i in range(0, len(ids), CONTEXT_CODES_MAX)]
    found: dict[int, list[CalendarMeeting]] = {}
    for _, meetings in canvas.map(lambda b: _batch_meetings(canvas, b), batches, desc="calendars"):
        found.update(meetings)
    return found


def _batch_meetings(
    canvas: CanvasClient, course_ids: tuple[int, ...]
) -> dict[int, list[CalendarMeeting]]:
    try:
        events = list(calendar_events(canvas, course_ids))
    except (Forbidden, NotFound) as exc:
        if len(course_ids) == 1:
            log.warning("Calendar events of course %s skipped: %s", course_ids[0], exc)
            return {}
        # One course the token may not read spoils the batch: ask course by course.
        return {k: v for cid in course_ids for k, v in _batch_meetings(canvas, (cid,)).items()}
    by_course: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for event in events:
        code = Fields(event, CALENDAR_EVENTS, "calendar event").str("context_code", required=False)
        by_course[str(code)].append(event)
    return {cid: course_meetings(by_course.get(f"course_{cid}", ())) for cid in course_ids}


def calendar_events(canvas: CanvasClient, course_ids: Sequence[int]) -> Iterable[Mapping[str, Any]]:
    """Every calendar event (all dates) of up to ten courses, following Link pagination."""
    params = {
        "context_codes[]": [f"course_{cid}" for cid in course_ids],
        "all_events": "true",
        "type": "event",
    }
    return canvas.paginate(CALENDAR_EVENTS, params)


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
        CalendarMeeting(meeting_id, event_start(event))
        for event in events
        for meeting_id in event_meeting_ids(event)
    }
    return sorted(meetings, key=lambda m: (m.meeting_id, m.start_time or datetime.min))


def event_start(event: Mapping[str, Any]) -> datetime | None:
    """A calendar event's ``start_at`` as naive UTC (None when absent); checked."""
    moment = Fields(event, CALENDAR_EVENTS, "calendar event").utc("start_at", required=False)
    return moment.replace(tzinfo=None) if moment is not None else None


def parse_utc(value: str | None) -> datetime | None:
    """An ISO 8601 timestamp as a naive UTC datetime (the database convention)."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
