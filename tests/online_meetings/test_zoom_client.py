"""The Zoom client against the Zoom sandbox, over real HTTP."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from courseinv.http_client.zoom import MeetingInfo, ZoomClient, ZoomDailyLimit, ZoomError
from courseinv.sandbox.zoom import ZoomServer

MEETINGS = {
    111111111: {"host_id": "host-a", "status": "waiting"},
    222222222: {"host_id": "host-b", "status": "started"},
    333333333: {
        "host_id": "host-c",
        "status": "ended",
        "start_time": datetime(2024, 1, 2, tzinfo=UTC),
    },
    444444444: {"host_id": "host-d", "status": "deleted"},
}


@pytest.fixture
def zoom() -> Iterator[ZoomServer]:
    with ZoomServer(MEETINGS) as server:
        yield server


def client(server: ZoomServer, **overrides: str) -> ZoomClient:
    return ZoomClient({**server.config(), **overrides}, max_attempts=3, workers=2)


def test_meeting_statuses(zoom: ZoomServer) -> None:
    c = client(zoom)
    assert c.meeting(111111111) == MeetingInfo("host-a", "waiting")
    assert c.meeting(222222222) == MeetingInfo("host-b", "started")
    assert c.meeting(333333333) == MeetingInfo("host-c", "ended")
    assert c.meeting(444444444) == MeetingInfo(None, "deleted")
    assert c.meeting(555555555) == MeetingInfo(None, "deleted")  # never existed
    assert zoom.log.by_endpoint() == {"meetings": 5, "oauth": 1, "past_meetings": 3}


@pytest.mark.parametrize(
    ("meeting_id", "field", "value", "path"),
    [
        (111111111, "host_id", 12345, "/meetings/111111111"),
        (222222222, "status", ["started"], "/meetings/222222222"),
        (333333333, "host_id", {"id": "h"}, "/past_meetings/333333333"),
    ],
)
def test_malformed_meeting_field_is_a_named_error(
    zoom: ZoomServer, meeting_id: int, field: str, value: object, path: str
) -> None:
    zoom.field_overrides[meeting_id] = {field: value}
    with pytest.raises(ZoomError) as info:
        client(zoom).meeting(meeting_id)
    assert str(info.value) == (
        f"GET {path}: meeting {meeting_id}: {field} is {value!r} (expected a string)"
    )


def test_null_host_and_status_are_accepted(zoom: ZoomServer) -> None:
    zoom.field_overrides[111111111] = {"host_id": None, "status": None}
    assert client(zoom).meeting(111111111) == MeetingInfo(None, "waiting")


@pytest.mark.parametrize("retry_after", [1, "iso"])
def test_qps_storm_honours_retry_after(zoom: ZoomServer, retry_after: int | str) -> None:
    c = client(zoom)
    zoom.rate_limit_storm(2, retry_after, iso_s=0.5)
    assert c.meeting(111111111) == MeetingInfo("host-a", "waiting")
    assert zoom.log.count("meetings", 429) == 2
    assert zoom.log.count("meetings", 200) == 1
    assert zoom.early_retries == 0


def test_daily_limit_stops_all_calls(zoom: ZoomServer) -> None:
    c = client(zoom)
    zoom.daily_limit = 1
    assert c.meeting(111111111).status == "waiting"
    with pytest.raises(ZoomDailyLimit, match="daily rate limit"):
        c.meeting(222222222)
    with pytest.raises(ZoomDailyLimit):
        c.meeting(111111111)
    assert zoom.log.count("meetings", 429) == 1  # not retried, and nothing sent after it
    assert zoom.log.count("meetings") == 2


def test_expired_token_renewed_once(zoom: ZoomServer) -> None:
    c = client(zoom)
    assert c.meeting(111111111).status == "waiting"
    zoom.expire_tokens()
    assert c.meeting(222222222).status == "started"
    assert zoom.log.count("oauth") == 2
    assert zoom.log.count("meetings", 401) == 1


def test_token_rejected_again_is_an_error(zoom: ZoomServer) -> None:
    c = client(zoom)
    zoom.token_ttl_s = 0  # every token is dead on arrival (but Zoom says it lasts)
    with pytest.raises(ZoomError, match="rejected the access token"):
        c.meeting(111111111)
    assert zoom.log.count("oauth") == 2  # renewed once, not in a loop


def test_bad_credentials_never_leak(zoom: ZoomServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "wrong-secret-value-123"
    with pytest.raises(ZoomError) as failure:
        client(zoom, CLIENT_SECRET=secret).meeting(111111111)
    assert "OAuth token request failed (HTTP 401" in str(failure.value)
    assert secret not in str(failure.value) + caplog.text
    assert zoom.log.count("meetings") == 0
