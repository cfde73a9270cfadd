"""Kaltura media entries over API v3 (plain HTTP on the shared ``RetryingSession``).

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

import functools
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
from courseinv.http_client.errors import HttpError
from courseinv.http_client.session import Action, RetryingSession, RetryPolicy, Verdict

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


@dataclass(frozen=True)
class CourseLink:
    course_id: int
    in_context: bool


def course_links(categories: str | None, prefixes: Iterable[str]) -> set[CourseLink]:
    """Canvas courses in an entry's comma-separated category full names.

    Only ``<prefix>>site>channels><decimal id>`` and ``...><id>>InContext`` count.
    """
    pattern = _category_pattern(tuple(prefixes))
    links = set()
    for name in (categories or "").split(","):
        m = pattern.fullmatch(name.strip())
        if m:
            links.add(CourseLink(int(m.group(1)), m.group(2) is not None))
    return links


@functools.lru_cache(maxsize=16)
def _category_pattern(prefixes: tuple[str, ...]) -> re.Pattern[str]:
    roots = "|".join(re.escape(p) for p in prefixes if p)
    # [0-9], not \d: Unicode digits are not Canvas ids. At most 18 digits fit BIGINT.
    return re.compile(rf"(?:{roots})>site>channels>([0-9]{{1,18}})(>InContext)?")


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
    ) -> None:
        self._base = service_url.rstrip("/") + "/api_v3/service"
        self._partner_id = partner_id
        self._secret = secret
        self._ks: str | None = None
        self._session = RetryingSession(
            name="kaltura",
            policy=RetryPolicy(max_attempts=max_attempts),
            pool_size=1,
            timeout=timeout,
            classify=_classify,
        )
        self.requests = 0  # media.list calls, for the report

    def __repr__(self) -> str:  # never the secret or the KS
        return f"KalturaClient(base={self._base!r}, partner_id={self._partner_id})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> KalturaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- session --------------------------------------------------------------------------
    def start_session(self) -> None:
        """Start an ADMIN session with the partner's admin secret."""
        data = {
            "format": 1,
            "secret": self._secret,
            "partnerId": self._partner_id,
            "type": ADMIN_SESSION,
            "expiry": SESSION_EXPIRY_S,
        }
        result = self._call("session", "start", data)
        if not isinstance(result, str) or not result:
            raise KalturaError("Kaltura session.start did not return a session key")
        self._ks = result

    # -- media ------------------------------------------------------------------------------
    def iter_media(self, categories: str, since: int) -> Iterator[dict[str, Any]]:
        """Every entry under ``categories`` created at/after ``since``, oldest first."""
        if self._ks is None:
            self.start_session()
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
        """POST one API call; on INVALID_KS start a new session and repeat it once."""
        for renewed in (False, True):
            body = {**data, "ks": self._ks} if authenticated else data
            try:
                reply = self._session.request(
                    "POST", f"{self._base}/{service}/action/{action}", data=body
                )
            except HttpError as exc:
                raise KalturaError(f"Kaltura {service}.{action} failed: {exc}") from None
            result = reply.data
            code = _exception_code(result)
            if code is None:
                return result
            if code == "INVALID_KS" and authenticated and not renewed:
                log.info("Kaltura session expired; starting a new one")
                self.start_session()
                continue
            message = self._redact(str(result.get("message") or ""))
            raise KalturaError(f"Kaltura {service}.{action} failed: {code}: {message}", code)
        raise AssertionError("unreachable")  # pragma: no cover

    def _redact(self, text: str) -> str:
        for secret in (self._ks, self._secret):
            if secret:
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
