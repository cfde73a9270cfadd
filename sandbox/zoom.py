"""A fake of Zoom's REST API (Server-to-Server OAuth, meetings, past meetings).

For development, tests, the demo and benchmarks only: it simulates Zoom on 127.0.0.1.

Endpoints (request-log names in brackets):

- ``POST /oauth/token`` [oauth]: HTTP Basic ``client_id:client_secret``, form
  ``grant_type=account_credentials&account_id=...`` → ``{access_token, token_type,
  expires_in, scope}``. Tokens expire after ``token_ttl_s`` seconds.
- ``GET /v2/meetings/{id}`` [meetings]: meetings whose status is ``waiting`` or
  ``started``; otherwise 404 ``{"code": 3001}``.
- ``GET /v2/past_meetings/{id}`` [past_meetings]: ``ended`` meetings; otherwise 404 3001.

An unknown or expired bearer token on the API answers 401 ``{"code": 124}``.

Knobs (change them while it runs): ``token_ttl_s``; ``expire_tokens()`` and
``expire_tokens_at_request`` (the n-th API request finds every earlier token expired);
``rate_limit_storm(count, retry_after)`` (the next ``count`` API requests answer 429
``X-RateLimit-Type: QPS`` with ``Retry-After`` in seconds, as an ISO date-time, or absent);
``daily_limit`` (API requests allowed before 429 ``Daily-limit`` with ``Retry-After`` at
tomorrow's midnight UTC); plus the base class's latency, faults and ``down``.
``early_retries`` counts requests that came back before the ``Retry-After`` they were given.
"""

from __future__ import annotations

import base64
import math
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from courseinv.sandbox.httpserver import Request, Response, Route, SandboxServer, json_response

MeetingStatus = Literal["waiting", "started", "ended", "deleted"]
LIVE_STATUSES = ("waiting", "started")
API_ENDPOINTS = ("meetings", "past_meetings")
# Seconds of slack allowed before a Retry-After deadline counts as an early retry.
EARLY_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class ZoomMeeting:
    """One meeting as the fake knows it."""

    id: int
    host_id: str
    status: MeetingStatus
    topic: str = "Meeting"
    start_time: datetime | None = None  # UTC
    duration: int = 60

    @classmethod
    def coerce(cls, meeting_id: int, value: Any) -> ZoomMeeting:
        """Build from a ``ZoomMeeting``, a mapping or any object with the same attributes."""
        if isinstance(value, ZoomMeeting):
            return value

        def get(name: str, default: Any = None) -> Any:
            if isinstance(value, Mapping):
                return value.get(name, default)
            return getattr(value, name, default)

        return cls(
            id=int(meeting_id),
            host_id=str(get("host_id")),
            status=get("status"),
            topic=get("topic") or "Meeting",
            start_time=_utc(get("start_time")),
            duration=int(get("duration", 60) or 60),
        )


@dataclass
class _Storm:
    remaining: int = 0
    retry_after: float | Literal["iso"] | None = 1.0
    retry_after_s: float = 1.0


class ZoomServer(SandboxServer):
    """Zoom's OAuth token endpoint and meeting lookups over a fixed set of meetings."""

    name = "zoom"
    SCOPE = "meeting:read:admin report:read:admin user:read:admin"

    def __init__(
        self,
        meetings: Mapping[int, Any],
        *,
        account_id: str = "sandbox-account",
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",
        token_ttl_s: float = 3600,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.meetings = {int(k): ZoomMeeting.coerce(int(k), v) for k, v in meetings.items()}
        self.account_id, self.client_id, self.client_secret = account_id, client_id, client_secret
        self.token_ttl_s = token_ttl_s
        self.expire_tokens_at_request: int | None = None
        self.daily_limit: int | None = None
        self.early_retries = 0
        self.api_requests = 0
        self.issued_tokens: list[str] = []  # every token handed out, for leak checks
        self.field_overrides: dict[int, dict[str, Any]] = {}  # meeting id -> hostile fields
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._storm = _Storm()
        self._not_before: dict[str, float] = {}  # path -> wall-clock Retry-After deadline
        self._lock = threading.Lock()
        self.add_route("POST", r"/oauth/token", "oauth", self._token)
        self.add_route("GET", r"/v2/meetings/([^/]+)", "meetings", self._meeting)
        self.add_route("GET", r"/v2/past_meetings/([^/]+)", "past_meetings", self._past_meeting)

    # -- knobs -------------------------------------------------------------------
    def expire_tokens(self) -> None:
        """Make every token issued so far invalid (as if its hour had passed)."""
        with self._lock:
            self._tokens.clear()

    def rate_limit_storm(
        self, count: int, retry_after: float | Literal["iso"] | None = 1.0, *, iso_s: float = 1.0
    ) -> None:
        """Answer the next ``count`` API requests with a QPS 429.

        ``retry_after`` is the Retry-After in seconds, ``"iso"`` for an ISO date-time
        ``iso_s`` seconds ahead (rounded up to a whole second), or None for no header.
        """
        seconds = iso_s if retry_after == "iso" else (retry_after or 0.0)
        with self._lock:
            self._storm = _Storm(count, retry_after, float(seconds))

    def config(self) -> dict[str, Any]:
        """The ``ZOOM`` config section (without LTI_TOOL_ID) pointing at this server."""
        return {
            "ACCOUNT_ID": self.account_id,
            "CLIENT_ID": self.client_id,
            "CLIENT_SECRET": self.client_secret,
            "OAUTH_URL": f"{self.url}/oauth/token",
            "API_URL": f"{self.url}/v2",
        }

    # -- hooks -------------------------------------------------------------------
    def before(self, request: Request, route: Route) -> Response | None:
        if route.endpoint not in API_ENDPOINTS:
            return None
        with self._lock:
            self.api_requests += 1
            self._check_early(request.path)
            if self.expire_tokens_at_request == self.api_requests:
                self._tokens.clear()
            if not self._token_valid(request.bearer_token()):
                return json_response({"code": 124, "message": "Invalid access token."}, 401)
            if self.daily_limit is not None and self.api_requests > self.daily_limit:
                return self._daily_limited()
            if self._storm.remaining > 0:
                self._storm.remaining -= 1
                return self._qps_limited(request.path)
        return None

    def _token_valid(self, token: str | None) -> bool:
        expiry = self._tokens.get(token or "")
        return expiry is not None and time.monotonic() < expiry

    def _check_early(self, path: str) -> None:
        deadline = self._not_before.pop(path, None)
        if deadline is not None and time.time() < deadline - EARLY_TOLERANCE_S:
            self.early_retries += 1

    def _qps_limited(self, path: str) -> Response:
        storm = self._storm
        headers = {"X-RateLimit-Type": "QPS", "X-RateLimit-Category": "Light"}
        deadline = time.time() + storm.retry_after_s
        if storm.retry_after == "iso":
            deadline = math.ceil(deadline)
            headers["Retry-After"] = _iso(datetime.fromtimestamp(deadline, UTC))
        elif storm.retry_after is not None:
            headers["Retry-After"] = _seconds(storm.retry_after)
        if storm.retry_after is not None:
            self._not_before[path] = deadline
        body = {"code": 429, "message": "You have exceeded the rate limit of your account."}
        return json_response(body, 429, **headers)

    def _daily_limited(self) -> Response:
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        headers = {
            "X-RateLimit-Type": "Daily-limit",
            "X-RateLimit-Category": "Light",
            "X-RateLimit-Limit": str(self.daily_limit),
            "X-RateLimit-Remaining": "0",
            "Retry-After": _iso(tomorrow),
        }
        message = "You have reached the maximum daily rate limit for this API."
        body = {"code": 429, "message": message}
        return json_response(body, 429, **headers)

    # -- handlers ----------------------------------------------------------------
    def _token(self, request: Request) -> Response:
        if _basic_credentials(request) != (self.client_id, self.client_secret):
            return json_response(
                {"reason": "Invalid client_id or client_secret", "error": "invalid_client"}, 401
            )
        form = request.form()
        if form.get("grant_type") != ["account_credentials"]:
            return json_response(
                {"reason": "Unsupported grant type", "error": "unsupported_grant_type"}, 400
            )
        if form.get("account_id") != [self.account_id]:
            return json_response({"reason": "Invalid account_id", "error": "invalid_request"}, 400)
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl_s
            self.issued_tokens.append(token)
        return json_response(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": int(self.token_ttl_s),
                "scope": self.SCOPE,
                "api_url": self.url,
            }
        )

    def _lookup(self, request: Request) -> ZoomMeeting | None:
        raw = request.match.group(1) if request.match else ""
        return self.meetings.get(int(raw)) if raw.isdigit() else None

    def _meeting(self, request: Request) -> Response:
        meeting = self._lookup(request)
        if meeting is None or meeting.status not in LIVE_STATUSES:
            return _not_found(request)
        return json_response(
            {
                "id": meeting.id,
                "uuid": _uuid(meeting.id),
                "host_id": meeting.host_id,
                "topic": meeting.topic,
                "type": 2,
                "status": meeting.status,
                "start_time": _iso(meeting.start_time) if meeting.start_time else None,
                "duration": meeting.duration,
                "timezone": "America/Detroit",
                "join_url": f"https://umich.zoom.us/j/{meeting.id}",
                **self.field_overrides.get(meeting.id, {}),
            }
        )

    def _past_meeting(self, request: Request) -> Response:
        meeting = self._lookup(request)
        if meeting is None or meeting.status != "ended":
            return _not_found(request)
        start = meeting.start_time
        end = start + timedelta(minutes=meeting.duration) if start else None
        return json_response(
            {
                "id": meeting.id,
                "uuid": _uuid(meeting.id),
                "host_id": meeting.host_id,
                "topic": meeting.topic,
                "type": 2,
                "start_time": _iso(start) if start else None,
                "end_time": _iso(end) if end else None,
                "duration": meeting.duration,
                "participants_count": 2,
                **self.field_overrides.get(meeting.id, {}),
            }
        )


def _not_found(request: Request) -> Response:
    raw = request.match.group(1) if request.match else ""
    return json_response({"code": 3001, "message": f"Meeting does not exist: {raw}."}, 404)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip()).decode("utf-8").partition(":")
    except ValueError:
        return None
    return (user, password) if sep else None


def _utc(value: datetime | str | None) -> datetime | None:
    """A timezone-aware UTC datetime; naive values and strings are read as UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _uuid(meeting_id: int) -> str:
    return base64.b64encode(meeting_id.to_bytes(16, "big")).decode("ascii")
