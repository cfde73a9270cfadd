"""Finding Zoom meeting numbers in Canvas calendar events."""

from __future__ import annotations

from datetime import datetime

import pytest
from courseinv.http_client.canvas import CanvasClient
from courseinv.online_meetings.calendar import (
    CalendarMeeting,
    course_meetings,
    event_meeting_ids,
    meeting_ids,
    read_course_meetings,
)
from courseinv.sandbox.httpserver import Request, Response, SandboxServer, json_response


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://umich.zoom.us/j/93512345678", {93512345678}),
        ("Join: https://us02web.zoom.us/j/81234567890?pwd=QWErty.1", {81234567890}),
        ("https://zoom.us/j/123456789#success", {123456789}),
        ('<a href="https://UMICH.zoom.us/j/987654321?pwd=x&amp;uname=y">Zoom</a>', {987654321}),
        ("http://a.zoom.us/j/111111111 or https://b.zoom.us/j/222222222", {111111111, 222222222}),
        ("https://umich.zoom.us/my/professor.room", set()),
        ("https://notzoom.us/j/123456789", set()),
        ("https://zoom.us.example.com/j/123456789", set()),
        ("https://example.com/j/123456789", set()),
        ("https://umich.zoom.us/j/123abc", set()),
        ("Meeting ID 935 1234 5678", set()),
        (None, set()),
    ],
)
def test_meeting_ids(text: str | None, expected: set[int]) -> None:
    assert meeting_ids(text) == expected


def test_event_fields_and_non_string_values() -> None:
    event = {
        "location_name": "Zoom https://umich.zoom.us/j/111111111",
        "location_address": "https://umich.zoom.us/j/222222222?pwd=a",
        "description": "<p>https://umich.zoom.us/j/111111111</p>",
        "title": "https://umich.zoom.us/j/333333333",  # not a field meetings are read from
        "url": None,
    }
    assert event_meeting_ids(event) == {111111111, 222222222}


def test_course_meetings_one_per_meeting_and_start_time() -> None:
    events = [
        {"start_at": "2024-01-15T14:00:00Z", "description": "https://umich.zoom.us/j/111111111"},
        {
            "start_at": "2024-01-15T09:00:00-05:00",
            "location_name": "https://umich.zoom.us/j/111111111",
        },
        {"start_at": "2024-01-22T14:00:00Z", "description": "https://umich.zoom.us/j/111111111"},
        {"start_at": None, "description": "https://umich.zoom.us/j/222222222"},
        {"start_at": "2024-01-22T14:00:00Z", "description": "no meeting here"},
    ]
    assert course_meetings(events) == [
        CalendarMeeting(111111111, datetime(2024, 1, 15, 14)),
        CalendarMeeting(111111111, datetime(2024, 1, 22, 14)),
        CalendarMeeting(222222222, None),
    ]


class CalendarServer(SandboxServer):
    """Calendar events of a few courses; a request naming FORBIDDEN answers 403."""

    FORBIDDEN = 13

    def __init__(self, events: dict[int, list[dict]]) -> None:
        super().__init__()
        self.events = events
        self.add_route("GET", r"/api/v1/calendar_events", "calendar_events", self._events)

    def _events(self, request: Request) -> Response:
        codes = request.args("context_codes[]")
        if f"course_{self.FORBIDDEN}" in codes:
            return json_response({"status": "unauthorized"}, 403)
        ids = [int(code.removeprefix("course_")) for code in codes]
        return json_response([e for cid in ids for e in self.events.get(cid, [])])


def test_read_course_meetings_batches_and_isolates_a_forbidden_course() -> None:
    def event(course_id: int, meeting_id: int) -> dict:
        return {
            "context_code": f"course_{course_id}",
            "start_at": "2024-01-15T14:00:00Z",
            "description": f"https://umich.zoom.us/j/{meeting_id}",
        }

    courses = list(range(1, 26))  # three requests of <= 10 courses; course 13 answers 403
    events = {c: [event(c, 100_000_000 + c)] for c in courses}
    with CalendarServer(events) as server, CanvasClient(server.url, "token", workers=2) as canvas:
        found = read_course_meetings(canvas, courses)
    start = datetime(2024, 1, 15, 14)
    assert found == {
        c: [CalendarMeeting(100_000_000 + c, start)]
        for c in courses
        if c != CalendarServer.FORBIDDEN
    }
    # 3 batches, the one with course 13 again course by course (10 more).
    assert server.log.count("calendar_events") == 13
    assert server.log.count("calendar_events", 403) == 2
