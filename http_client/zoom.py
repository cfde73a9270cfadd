"""Zoom REST client: Server-to-Server OAuth and the status of a meeting.

Built on the shared ``RetryingSession`` (retries, timeouts, 429 with Retry-After in
seconds or as an ISO date-time) with an ``OAuth2ClientCredentials`` authenticator
(``auth.py``: grant ``account_credentials``, client id and secret as HTTP Basic; the
token is cached, renewed ahead of expiry and once on a 401, in the session). Zoom's
own rule, plugged into the session's classifier: a 429 whose ``X-RateLimit-Type`` is
``Daily-limit`` raises ``ZoomDailyLimit`` at once (waiting until tomorrow is not an
option), and the client refuses further calls.

Neither the client secret nor a token ever appears in a log line, an error message or
a repr.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import requests
from courseinv.http_client.auth import AuthError, OAuth2ClientCredentials
from courseinv.http_client.errors import Unauthorized
from courseinv.http_client.fanout import fan_out
from courseinv.http_client.session import Action, Reply, RetryingSession, RetryPolicy, Verdict
from courseinv.http_client.stats import HttpStats

log = logging.getLogger(__name__)


class ZoomError(Exception):
    """Zoom could not be used for this run; the message is safe to show."""


class ZoomDailyLimit(ZoomError):
    """Zoom's daily request limit is reached: no more calls this run."""


class MeetingInfo(NamedTuple):
    """What Zoom says about one meeting: host and status (deleted: unknown host)."""

    host_id: str | None
    status: str  # waiting | started | ended | deleted


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

    def __init__(
        self,
        zoom_config: Mapping[str, Any],
        *,
        max_attempts: int,
        workers: int,
        stats: HttpStats | None = None,
    ) -> None:
        self._api_url = str(zoom_config["API_URL"]).rstrip("/")
        self.session = RetryingSession(
            name="zoom",
            policy=RetryPolicy(max_attempts=max_attempts),
            pool_size=workers,
            classify=classify,
            stats=stats,
        )
        self.session.auth = OAuth2ClientCredentials(
            zoom_config["OAUTH_URL"],
            {"grant_type": "account_credentials", "account_id": zoom_config["ACCOUNT_ID"]},
            basic=(zoom_config["CLIENT_ID"], zoom_config["CLIENT_SECRET"]),
            http=self.session,
            what="Zoom OAuth",
            hint="check ZOOM.ACCOUNT_ID, CLIENT_ID and CLIENT_SECRET",
        )
        self._stopped: ZoomDailyLimit | None = None

    def __repr__(self) -> str:  # no credentials
        return f"ZoomClient(api_url={self._api_url!r})"

    def close(self) -> None:
        self.session.close()

    def fetch_token(self) -> None:
        """Obtain an access token now (``check-config``); ``ZoomError`` if refused."""
        try:
            self.session.auth.token()  # type: ignore[union-attr]
        except AuthError as exc:
            raise ZoomError(exc.args[0].split(": ", 1)[-1]) from None

    # -- meetings ----------------------------------------------------------------
    def meeting(self, meeting_id: int) -> MeetingInfo:
        """Host and status: live meetings, else past ones (``ended``), else ``deleted``."""
        path = f"/meetings/{meeting_id}"
        live = self._get(path)
        if live is not None:
            host = _optional_str(live, "host_id", path, meeting_id)
            return MeetingInfo(host, _optional_str(live, "status", path, meeting_id) or "waiting")
        path = f"/past_meetings/{meeting_id}"
        past = self._get(path)
        if past is not None:
            return MeetingInfo(_optional_str(past, "host_id", path, meeting_id), "ended")
        return MeetingInfo(None, "deleted")

    def _get(self, path: str) -> dict[str, Any] | None:
        """GET an API path: its JSON object, or None on 404."""
        reply = self._send(path)
        if reply.status == 404:
            return None
        if not isinstance(reply.data, dict):
            raise ZoomError(f"Zoom answered GET {path} with something other than a JSON object")
        return reply.data

    def _send(self, path: str) -> Reply:
        if self._stopped is not None:
            raise self._stopped
        try:
            return self.session.request("GET", self._api_url + path, allow_status={404})
        except ZoomDailyLimit as exc:
            self._stopped = exc
            raise
        except Unauthorized:
            raise ZoomError(f"Zoom rejected the access token for GET {path} (HTTP 401)") from None
        except AuthError as exc:
            raise ZoomError(exc.args[0].split(": ", 1)[-1]) from None


def _optional_str(obj: Mapping[str, Any], field: str, path: str, meeting_id: int) -> str | None:
    """A string field that may be missing or null; any other type names the meeting."""
    value = obj.get(field)
    if value is None or isinstance(value, str):
        return value
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:39] + "…"
    raise ZoomError(f"GET {path}: meeting {meeting_id}: {field} is {shown} (expected a string)")


def meeting_statuses(
    zoom_config: Mapping[str, Any],
    meeting_ids: Iterable[int],
    *,
    max_attempts: int,
    workers: int,
    stats: HttpStats | None = None,
) -> dict[int, MeetingInfo]:
    """Host and status of each distinct meeting: one Zoom lookup per meeting id."""
    client = ZoomClient(zoom_config, max_attempts=max_attempts, workers=workers, stats=stats)
    try:
        run = fan_out(
            client.meeting, sorted(set(meeting_ids)), workers=workers, desc="zoom meetings"
        )
        return dict(run)
    finally:
        client.close()
