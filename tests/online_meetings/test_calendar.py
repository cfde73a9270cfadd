"""Finding Zoom meeting numbers in Canvas calendar events."""

from __future__ import annotations

from datetime import datetime

import pytest

from online_meetings.calendar import (
    CalendarMeeting,
    course_meetings,
    event_meeting_ids,
    meeting_ids,
)


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
