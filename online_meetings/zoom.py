"""Zoom REST client: Server-to-Server OAuth and the status of a meeting.

Built on the shared ``RetryingSession`` (retries, timeouts, 429 with Retry-After in
seconds or as an ISO date-time). Zoom-specific rules plugged into its hooks:

- a 429 whose ``X-RateLimit-Type`` is ``Daily-limit`` raises ``ZoomDailyLimit`` at once
  (waiting until tomorrow is not an option), and the client refuses further calls;
- 401 code 124 (invalid/expired token) re-fetches the token once and repeats the call.

The access token is cached until shortly before it expires. Neither the client secret
nor a token ever appears in a log line, an error message or a repr.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import requests
from courseinv.http_client.fanout import fan_out
from courseinv.http_client.session import Action, Reply, RetryingSession, RetryPolicy, Verdict

log = logging.getLogger(__name__)

INVALID_TOKEN_CODE = 124
# Renew a token this long before Zoom says it expires (at most a tenth of its life).
EXPIRY_MARGIN_S = 60.0


class ZoomError(Exception):
    """Zoom could not be used for this run; the message is safe to show."""


class ZoomDailyLimit(ZoomError):
    """Zoom's daily request limit is reached: no more calls this run."""


class MeetingInfo(NamedTuple):
    """What Zoom says about one meeting: host and status (deleted: unknown host)."""

    host_id: str | None
    status: str  # waiting | started | ended | deleted


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float  # time.monotonic()


def classify(response: requests.Response) -> Verdict | None:
    """Session hook: a daily-limit 429 is final; everything else follows the defaults."""
    if response.status_code == 429 and _rate_limit_type(response) == "daily-limit":
        resets = response.headers.get("Retry-After") or "an unknown time"
        path = urlsplit(response.url).path
        raise ZoomDailyLimit(
            f"Zoom API daily rate limit reached (GET {path}); Zoom accepts calls again at "
            f"{resets}. Zoom calls stopped for this run."
        )
    if response.status_code == 429:
        return Verdict(Action.THROTTLE, f"HTTP 429 {response.headers.get('X-RateLimit-Type', '')}")
    return None


def _rate_limit_type(response: requests.Response) -> str:
    return response.headers.get("X-RateLimit-Type", "").strip().lower()


class ZoomClient:
    """Looks up meetings on Zoom's REST API with a cached Server-to-Server OAuth token."""

    def __init__(self, zoom_config: Mapping[str, Any], *, max_attempts: int, workers: int) -> None:
        self._oauth_url = zoom_config["OAUTH_URL"]
        self._api_url = str(zoom_config["API_URL"]).rstrip("/")
        self._account_id = zoom_config["ACCOUNT_ID"]
        basic = f"{zoom_config['CLIENT_ID']}:{zoom_config['CLIENT_SECRET']}"
        self._basic = "Basic " + base64.b64encode(basic.encode("utf-8")).decode("ascii")
        self.session = RetryingSession(
            name="zoom",
            policy=RetryPolicy(max_attempts=max_attempts),
            pool_size=workers,
            classify=classify,
        )
        self._token: _Token | None = None
        self._lock = threading.Lock()
        self._stopped: ZoomDailyLimit | None = None

    def __repr__(self) -> str:  # no credentials
        return f"ZoomClient(api_url={self._api_url!r})"

    def close(self) -> None:
        self.session.close()

    # -- meetings ----------------------------------------------------------------
    def meeting(self, meeting_id: int) -> MeetingInfo:
        """Host and status: live meetings, else past ones (``ended``), else ``deleted``."""
        live = self._get(f"/meetings/{meeting_id}")
        if live is not None:
            return MeetingInfo(live.get("host_id"), live.get("status") or "waiting")
        past = self._get(f"/past_meetings/{meeting_id}")
        if past is not None:
            return MeetingInfo(past.get("host_id"), "ended")
        return MeetingInfo(None, "deleted")

    def _get(self, path: str) -> dict[str, Any] | None:
        """GET an API path: its JSON object, or None on 404. 401 code 124 renews the token."""
        token = self._current_token()
        reply = self._send(path, token)
        if reply.status == 401 and _error_code(reply) == INVALID_TOKEN_CODE:
            log.info("Zoom access token rejected (code 124); requesting a new one")
            reply = self._send(path, self._renew_token(stale=token))
        if reply.status == 401:
            raise ZoomError(f"Zoom rejected the access token for GET {path} (HTTP 401)")
        if reply.status == 404:
            return None
        if not isinstance(reply.data, dict):
            raise ZoomError(f"Zoom answered GET {path} with something other than a JSON object")
        return reply.data

    def _send(self, path: str, token: str) -> Reply:
        if self._stopped is not None:
            raise self._stopped
        try:
            return self.session.request(
                "GET",
                self._api_url + path,
                headers={"Authorization": f"Bearer {token}"},
                allow_status={401, 404},
            )
        except ZoomDailyLimit as exc:
            self._stopped = exc
            raise

    # -- token -------------------------------------------------------------------
    def _current_token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._token.renew_at:
                self._token = self._fetch_token()
            return self._token.value

    def _renew_token(self, *, stale: str) -> str:
        """A fresh token, unless another thread already replaced ``stale``."""
        with self._lock:
            if self._token is None or self._token.value == stale:
                self._token = self._fetch_token()
            return self._token.value

    def _fetch_token(self) -> _Token:
        reply = self.session.request(
            "POST",
            self._oauth_url,
            headers={"Authorization": self._basic},
            data={"grant_type": "account_credentials", "account_id": self._account_id},
            allow_status={400, 401, 403},
        )
        if (
            reply.status != 200
            or not isinstance(reply.data, dict)
            or "access_token" not in reply.data
        ):
            reason = (reply.data or {}).get("reason") if isinstance(reply.data, dict) else None
            raise ZoomError(
                f"Zoom OAuth token request failed (HTTP {reply.status}"
                + (f": {reason}" if reason else "")
                + "); check ZOOM.ACCOUNT_ID, CLIENT_ID and CLIENT_SECRET"
            )
        lifetime = float(reply.data.get("expires_in") or 3600)
        margin = min(EXPIRY_MARGIN_S, lifetime / 10)
        return _Token(reply.data["access_token"], time.monotonic() + lifetime - margin)


def _error_code(reply: Reply) -> int | None:
    return reply.data.get("code") if isinstance(reply.data, dict) else None


def meeting_statuses(
    zoom_config: Mapping[str, Any], meeting_ids: Iterable[int], *, max_attempts: int, workers: int
) -> dict[int, MeetingInfo]:
    """Host and status of each distinct meeting: one Zoom lookup per meeting id."""
    client = ZoomClient(zoom_config, max_attempts=max_attempts, workers=workers)
    try:
        run = fan_out(
            client.meeting, sorted(set(meeting_ids)), workers=workers, desc="zoom meetings"
        )
        return dict(run)
    finally:
        client.close()
