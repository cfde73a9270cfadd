"""Kaltura media entries over API v3 (plain HTTP on the shared ``RetryingSession``).

The Kaltura session key (KS) is an authenticator of the session (``KalturaSession``):
``session.start`` with the partner's admin secret, the KS put in every call's body; an
INVALID_KS answer (an expired session) makes the session start a new one once and
repeat the call (the renew-on-401 rule of ``session.py``).

``KalturaClient.iter_media(categories, since)`` yields every media entry in (or under)
the given categories created at or after ``since`` (unix seconds), oldest first, each
exactly once. It walks with a keyset instead of page numbers, so Kaltura's cap on
paging depth (QUERY_EXCEEDED_MAX_MATCHES_ALLOWED beyond 10,000 matches) never applies:
every request asks for page 1 of ``createdAt >= lower``, ordered by ``+createdAt``,
with ``idNotIn`` = the ids already seen at second ``lower``; after each page ``lower``
moves to the newest createdAt seen. However many entries share one second, none is
skipped or repeated, and the number of requests is ceil(entries / 500) (plus one when
the last page is exactly full and Kaltura's totalCount cannot settle it).

Errors: Kaltura answers HTTP 200 with ``objectType: KalturaAPIException``. INVALID_KS
(an expired session) starts a new session once; other codes raise ``KalturaError``.
Transport faults (5xx, resets, truncated JSON) are retried by the session. The admin
secret and the KS travel only in POST bodies and never appear in a log line or an
error message (Kaltura's own messages quote the KS; it is redacted).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import requests
from courseinv.http_client.errors import HttpError, Unauthorized
from courseinv.http_client.session import Action, RetryingSession, RetryPolicy, Verdict
from courseinv.http_client.stats import HttpStats

log = logging.getLogger(__name__)

PAGE_SIZE = 500  # Kaltura's maximum
ADMIN_SESSION = 2
SESSION_EXPIRY_S = 6 * 3600
# Kaltura exception codes that mean "try again".
RETRYABLE_CODES = frozenset({"INTERNAL_SERVERERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"})
REDACTED = "[REDACTED]"


class KalturaError(Exception):
    """Kaltura could not be used for this run; the message is safe to show."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class KalturaSession:
    """Authenticator: a Kaltura session key (KS) from ``session.start``, sent in the body.

    ``rejected``: an HTTP 200 whose body is a KalturaAPIException INVALID_KS. ``renew``
    starts a new session unless another thread already did.
    """

    def __init__(self, http: RetryingSession, base: str, partner_id: int, secret: str) -> None:
        self._http = http
        self._base = base
        self._partner_id = partner_id
        self._secret = secret
        self._ks: str | None = None
        self._lock = threading.Lock()
        self.starts = 0

    def __repr__(self) -> str:
        return f"KalturaSession(partner_id={self._partner_id}, <ks redacted>)"

    def secrets(self) -> list[str]:
        return [s for s in (self._ks, self._secret) if s]

    def apply(self, send: dict[str, Any]) -> object:
        ks = self.key()
        send["data"] = {**(send.get("data") or {}), "ks": ks}
        return ks

    def rejected(self, response: requests.Response) -> bool:
        if response.status_code != 200 or b"INVALID_KS" not in response.content:
            return False
        try:
            return _exception_code(response.json()) == "INVALID_KS"
        except ValueError:
            return False

    def reason(self, response: requests.Response) -> str:
        """Why the KS was refused, with Kaltura's message (it quotes the KS) redacted."""
        try:
            message = str(response.json().get("message") or "")
        except (ValueError, AttributeError):
            message = ""
        for secret in self.secrets():
            message = message.replace(secret, REDACTED)
        return f"INVALID_KS: {message}"

    def renew(self, used: object) -> bool:
        with self._lock:
            if self._ks is None or self._ks == used:
                log.info("Kaltura session expired; starting a new one")
                self._ks = self._start()
        return True

    def key(self) -> str:
        with self._lock:
            if self._ks is None:
                self._ks = self._start()
            return self._ks

    def _start(self) -> str:
        data = {
            "format": 1,
            "secret": self._secret,
            "partnerId": self._partner_id,
            "type": ADMIN_SESSION,
            "expiry": SESSION_EXPIRY_S,
        }
        self.starts += 1
        try:
            reply = self._http.request(
                "POST", f"{self._base}/session/action/start", data=data, authenticate=False
            )
        except HttpError as exc:
            raise KalturaError(f"Kaltura session.start failed: {exc}") from None
        result = reply.data
        code = _exception_code(result)
        if code is not None:
            message = str(result.get("message") or "").replace(self._secret, REDACTED)
            raise KalturaError(f"Kaltura session.start failed: {code}: {message}", code)
        if not isinstance(result, str) or not result:
            raise KalturaError("Kaltura session.start did not return a session key")
        return result


class KalturaClient:
    """``session.start`` and the keyset walk over ``media.list``."""

    def __init__(
        self,
        service_url: str,
        partner_id: int,
        secret: str,
        *,
        max_attempts: int = 3,
        timeout: tuple[float, float] = (10.0, 120.0),
        stats: HttpStats | None = None,
    ) -> None:
        self._base = service_url.rstrip("/") + "/api_v3/service"
        self._partner_id = partner_id
        self._session = RetryingSession(
            name="kaltura",
            policy=RetryPolicy(max_attempts=max_attempts),
            pool_size=1,
            timeout=timeout,
            classify=_classify,
            stats=stats,
        )
        self.auth = KalturaSession(self._session, self._base, partner_id, secret)
        self._session.auth = self.auth
        self.requests = 0  # media.list calls, for the report

    def __repr__(self) -> str:  # never the secret or the KS
        return f"KalturaClient(base={self._base!r}, partner_id={self._partner_id})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> KalturaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_session(self) -> None:
        """Start an ADMIN session now (else it starts with the first call)."""
        self.auth.key()

    # -- media ------------------------------------------------------------------------------
    def iter_media(self, categories: str, since: int) -> Iterator[dict[str, Any]]:
        """Every entry under ``categories`` created at/after ``since``, oldest first."""
        lower, seen_at_lower = since, set[str]()
        while True:
            page = self._list_page(categories, lower, seen_at_lower)
            objects = page.get("objects") or []
            for entry in objects:
                entry_id, created = _entry_key(entry)
                if created < lower or entry_id in seen_at_lower:
                    raise KalturaError(
                        "Kaltura media.list returned entries out of createdAt order or "
                        "ignored idNotIn; cannot page reliably"
                    )
                if created > lower:
                    lower, seen_at_lower = created, set()
                seen_at_lower.add(entry_id)
                yield entry
            total = page.get("totalCount")
            if len(objects) < PAGE_SIZE or (isinstance(total, int) and total <= len(objects)):
                return

    def _list_page(self, categories: str, lower: int, exclude: set[str]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": 1,
            "filter[objectType]": "KalturaMediaEntryFilter",
            "filter[categoriesFullNameIn]": categories,
            "filter[createdAtGreaterThanOrEqual]": lower,
            "filter[orderBy]": "+createdAt",
            "pager[objectType]": "KalturaFilterPager",
            "pager[pageSize]": PAGE_SIZE,
            "pager[pageIndex]": 1,
        }
        if exclude:
            data["filter[idNotIn]"] = ",".join(sorted(exclude))
        self.requests += 1
        result = self._call("media", "list", data, authenticated=True)
        if not isinstance(result, dict) or not isinstance(result.get("objects", []), list):
            raise KalturaError("Kaltura media.list answered with an unexpected shape")
        return result

    # -- one call -----------------------------------------------------------------------------
    def _call(
        self, service: str, action: str, data: dict[str, Any], *, authenticated: bool = False
    ) -> Any:
        """POST one API call (the session renews an expired KS once)."""
        try:
            reply = self._session.request(
                "POST",
                f"{self._base}/{service}/action/{action}",
                data=data,
                authenticate=authenticated,
            )
        except Unauthorized as exc:
            raise KalturaError(
                f"Kaltura {service}.{action} failed: {exc.reason}", "INVALID_KS"
            ) from None
        except HttpError as exc:
            raise KalturaError(f"Kaltura {service}.{action} failed: {exc}") from None
        result = reply.data
        code = _exception_code(result)
        if code is None:
            return result
        message = self._redact(str(result.get("message") or ""))
        raise KalturaError(f"Kaltura {service}.{action} failed: {code}: {message}", code)

    def _redact(self, text: str) -> str:
        for secret in self.auth.secrets():
            text = text.replace(secret, REDACTED)
        return text


def _exception_code(result: Any) -> str | None:
    if isinstance(result, dict) and result.get("objectType") == "KalturaAPIException":
        return str(result.get("code") or "UNKNOWN")
    return None


def _classify(response: requests.Response) -> Verdict | None:
    """Session hook: retryable KalturaAPIException codes spend an attempt."""
    if response.status_code != 200 or b"KalturaAPIException" not in response.content:
        return None
    try:
        code = _exception_code(response.json())
    except ValueError:
        return None  # truncated: the session's invalid-JSON rule retries it
    if code in RETRYABLE_CODES:
        return Verdict(Action.RETRY, f"Kaltura {code}")
    return None


def _entry_key(entry: Any) -> tuple[str, int]:
    entry_id = entry.get("id") if isinstance(entry, dict) else None
    created = entry.get("createdAt") if isinstance(entry, dict) else None
    if not isinstance(entry_id, str) or not entry_id:
        raise KalturaError(f"Kaltura media.list: entry {entry_id!r}: id is not an entry id")
    if isinstance(created, bool) or not isinstance(created, int):
        raise KalturaError(
            f"Kaltura media.list: media entry {entry_id}: createdAt is {str(created)[:40]!r} "
            "(expected an integer)"
        )
    return entry_id, created
