"""The one retrying, pooled HTTP session every external API client is built on.

Canvas (``canvas.py``), Kaltura and Zoom clients each wrap one ``RetryingSession``;
jobs never carry their own retry loops.

Quick use::

    session = RetryingSession(name="zoom", headers={"Authorization": f"Bearer {tok}"},
                              policy=RetryPolicy(max_attempts=config["MAX_REQ_ATTEMPTS"]),
                              pool_size=config["NUM_ASYNC_WORKERS"])
    reply = session.request("GET", url, params={"page_size": 300})
    reply.data            # parsed JSON
    reply.links["next"]   # parsed Link header (requests' ``Response.links``)
    session.get_json(url, allow_404=True)   # -> parsed JSON, or None on 404

What one ``request`` does:

- Sends with a (connect, read) timeout and a connection pool of ``pool_size``.
- Retries, up to ``policy.max_attempts`` attempts in all, on connection errors,
  timeouts, 408, 5xx and, when ``expect_json`` (the default), a 2xx body that is not
  valid JSON. Waits between attempts use exponential backoff with full jitter
  (``uniform(0, min(backoff_max, backoff_base * 2**n))``), or the server's
  ``Retry-After`` (seconds, HTTP-date or ISO date) capped at ``retry_after_max``.
- Throttling (429, or whatever the ``classify`` hook calls throttling) is retried on a
  separate, generous budget (``policy.max_throttle_retries``) so it never eats the
  attempts meant for real faults and a throttled request is not lost.
- Raises at once on permanent errors: 401 ``Unauthorized``, 403 ``Forbidden``,
  404 ``NotFound``, any other 4xx ``PermanentHttpError`` (see ``errors.py``), unless
  the status is in ``allow_status``, in which case the ``Reply`` is returned as is.
- Raises ``RetriesExhausted`` when a budget runs out.

Hooks for API-specific behaviour:

- ``classify(response) -> Verdict | None`` runs first on every response. Return a
  ``Verdict`` to override the default rules (e.g. Canvas: 403 with "Rate Limit
  Exceeded" is ``Action.THROTTLE``; Kaltura: HTTP 200 with ``objectType:
  KalturaAPIException`` is ``Action.FAIL`` or ``Action.RETRY``), ``None`` to keep
  them. It may also raise its own exception, which propagates unchanged.
- ``pacer``: an object with ``acquire()`` and ``release(response, throttled)`` called
  around every attempt (Canvas's adaptive throttle limiter in ``throttle.py``).
- ``auth``: an authenticator (``auth.py``) that puts credentials on every attempt. When
  a response says they were refused (401, or the authenticator's own rule), the
  session renews them once and repeats the request (no attempt spent); a second
  refusal, or an authenticator that cannot renew, raises ``Unauthorized``. Pass
  ``authenticate=False`` for a call that must go without them (a token request).
- ``stats``: an ``HttpStats`` (``stats.py``), shared or per session: attempts by
  endpoint and status, retries, throttled responses, the rate-limit time series.

Every method is retried (GraphQL queries, Kaltura and OAuth token calls are POSTs that
are safe to repeat); do not send non-idempotent writes through it. One session may
be shared by many threads: cookies are disabled, so its only shared state is the
connection pool.

Secrets: put tokens in ``headers`` (or the body), never in the URL: urllib3's own
DEBUG log prints full URLs. Errors and this module's log lines name only the method
and the URL path; the repr shows neither headers nor URL.
"""

from __future__ import annotations

import email.utils
import http.cookiejar
import json
import logging
import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from courseinv.http_client.auth import Authenticator
from courseinv.http_client.errors import (
    RetriesExhausted,
    ThrottleStalled,
    Unauthorized,
    permanent_error,
)
from courseinv.http_client.stats import HttpStats
from courseinv.http_client.stats import collect_stats as collect_stats  # for the runner
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

Stats = HttpStats  # the name the runner knows

# requests exceptions that mean "the exchange did not complete": worth another attempt.
TRANSIENT_EXCEPTIONS: tuple[type[Exception], ...] = (
    requests.exceptions.ConnectionError,  # includes ConnectTimeout, SSLError, ProxyError
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request tries. All durations in seconds."""

    max_attempts: int = 3  # attempts in all for faults (config MAX_REQ_ATTEMPTS)
    backoff_base: float = 0.5  # first backoff ceiling; doubles per failed attempt
    backoff_max: float = 30.0
    retry_after_max: float = 120.0  # cap on a server's Retry-After
    max_throttle_retries: int = 100  # separate budget for throttled responses
    throttle_backoff_base: float = 0.5
    throttle_backoff_max: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def backoff_ceiling(self, failures: int) -> float:
        """The longest wait after the ``failures``-th fault (the wait is drawn below it)."""
        return min(self.backoff_max, self.backoff_base * 2 ** (failures - 1))

    def throttle_ceiling(self, throttles: int) -> float:
        """The longest wait after the ``throttles``-th throttled response."""
        return min(self.throttle_backoff_max, self.throttle_backoff_base * 2 ** (throttles - 1))


class Action(Enum):
    ACCEPT = "accept"  # success: return it
    RETRY = "retry"  # transient fault: spend an attempt
    THROTTLE = "throttle"  # rate limited: wait and retry on the throttle budget
    FAIL = "fail"  # permanent: raise at once


@dataclass(frozen=True)
class Verdict:
    """A classifier's decision about one response; ``reason`` appears in logs/errors."""

    action: Action
    reason: str = ""


Classifier = Callable[[requests.Response], Verdict | None]


class Pacer(Protocol):
    """Gate around each attempt (e.g. an adaptive concurrency limiter)."""

    def acquire(self) -> None: ...

    def release(self, response: requests.Response | None, throttled: bool) -> None: ...


@dataclass(frozen=True)
class Reply:
    """A finished response: status, parsed JSON (``data``) and the raw response."""

    status: int
    data: Any
    response: requests.Response = field(repr=False)

    @property
    def headers(self) -> Mapping[str, str]:
        return self.response.headers

    @property
    def links(self) -> dict[str, dict[str, str]]:
        """Parsed ``Link`` header keyed by rel (case-insensitive header lookup)."""
        return self.response.links


@dataclass(frozen=True)
class _Transient:
    """An attempt that should be repeated."""

    reason: str
    throttled: bool = False
    retry_after: float | None = None
    auth_rejected: bool = False


class RetryingSession:
    """A pooled ``requests.Session`` with timeouts, typed errors and the retry policy."""

    def __init__(
        self,
        *,
        name: str = "http",
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        pool_size: int = 8,
        timeout: tuple[float, float] = (10.0, 60.0),
        classify: Classifier | None = None,
        pacer: Pacer | None = None,
        auth: Authenticator | None = None,
        stats: HttpStats | None = None,
    ) -> None:
        self.name = name
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self.stats = stats if stats is not None else HttpStats()
        self.auth = auth
        self._classify = classify
        self._pacer = pacer
        self._rng = random.Random()
        self._http = _pooled_session(pool_size)
        self._http.headers.update(headers or {})

    def __repr__(self) -> str:  # no headers: they hold the credentials
        return f"RetryingSession(name={self.name!r}, policy={self.policy!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RetryingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public calls -----------------------------------------------------------
    def get_json(
        self, url: str, params: Mapping[str, Any] | None = None, *, allow_404: bool = False
    ) -> Any:
        """GET ``url`` and return its parsed JSON; ``None`` on 404 when ``allow_404``."""
        reply = self.request("GET", url, params=params, allow_status={404} if allow_404 else ())
        return None if reply.status == 404 else reply.data

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        expect_json: bool = True,
        allow_status: Collection[int] = (),
        timeout: tuple[float, float] | None = None,
        authenticate: bool = True,
    ) -> Reply:
        """Send one request with retries; see the module docstring for the rules.

        ``allow_status``: statuses returned as a ``Reply`` instead of raised (``data`` is
        the parsed JSON body, or ``None`` when it is not JSON). ``expect_json=False``
        returns the body unparsed (``reply.response.content``) and ``data=None``.
        ``authenticate=False`` sends without the session's authenticator.
        """
        method = method.upper()
        path = urlsplit(url).path or "/"
        send = dict(
            params=params, json=json, data=data, headers=headers, timeout=timeout or self.timeout
        )
        auth = self.auth if authenticate else None
        failures = throttles = 0
        renewed = False
        while True:
            used = None
            attempt_send = dict(send)
            if auth is not None:
                used = auth.apply(attempt_send)
            outcome = self._attempt(
                method, url, path, attempt_send, expect_json, allow_status, auth
            )
            if isinstance(outcome, Reply):
                return outcome
            if outcome.auth_rejected:
                assert auth is not None
                if renewed or not auth.renew(used):
                    raise Unauthorized(method, path, 401, outcome.reason)
                renewed = True
                self.stats.add("auth_renewals", api=self.name)
                continue
            if outcome.throttled:
                throttles += 1
                self.stats.add("throttled", api=self.name)
                if throttles > self.policy.max_throttle_retries:
                    raise RetriesExhausted(method, path, failures + throttles, outcome.reason)
                delay = self._throttle_delay(throttles, outcome.retry_after)
                log.info(
                    "%s %s %s throttled (%s); waiting %.1fs",
                    self.name,
                    method,
                    path,
                    outcome.reason,
                    delay,
                )
            else:
                failures += 1
                if failures >= self.policy.max_attempts:
                    self.stats.add("gave_up", api=self.name)
                    raise RetriesExhausted(method, path, failures + throttles, outcome.reason)
                self.stats.add("retries", api=self.name)
                delay = self._backoff_delay(failures, outcome.retry_after)
                log.warning(
                    "%s %s %s failed (%s); attempt %d/%d in %.1fs",
                    self.name,
                    method,
                    path,
                    outcome.reason,
                    failures + 1,
                    self.policy.max_attempts,
                    delay,
                )
            time.sleep(delay)

    # -- one attempt ------------------------------------------------------------
    def _attempt(
        self,
        method: str,
        url: str,
        path: str,
        send: dict[str, Any],
        expect_json: bool,
        allow_status: Collection[int],
        auth: Authenticator | None = None,
    ) -> Reply | _Transient:
        try:
            if self._pacer is not None:
                self._pacer.acquire()
            response: requests.Response | None = None
            outcome: Reply | _Transient | None = None
            try:
                try:
                    response = self._http.request(method, url, **send)
                except TRANSIENT_EXCEPTIONS as exc:
                    outcome = _Transient(describe_exception(exc))
                    return outcome
                if auth is not None and auth.rejected(response):
                    describe = getattr(auth, "reason", None)
                    reason = describe(response) if describe else response.reason or ""
                    outcome = _Transient(reason or "credentials rejected", auth_rejected=True)
                    return outcome
                outcome = self._judge(method, path, response, expect_json, allow_status)
                return outcome
            finally:
                self.stats.record_request(
                    self.name, method, path, None if response is None else response.status_code
                )
                if self._pacer is not None:
                    throttled = isinstance(outcome, _Transient) and outcome.throttled
                    self._pacer.release(response, throttled)
                    self._record_bucket(response)
        except ThrottleStalled as exc:
            raise exc.at(method, path) from None

    def _record_bucket(self, response: requests.Response | None) -> None:
        """Rate-limit reading for the stats' time series (metered APIs only)."""
        header = getattr(self._pacer, "remaining_header", None)
        value = response.headers.get(header) if response is not None and header else None
        if value is None:
            return
        try:
            remaining = float(value)
        except ValueError:
            return
        estimate = getattr(self._pacer, "estimate", None)
        estimated = estimate().remaining if callable(estimate) else None
        self.stats.record_bucket(self.name, remaining, estimated)

    def _judge(
        self,
        method: str,
        path: str,
        response: requests.Response,
        expect_json: bool,
        allow_status: Collection[int],
    ) -> Reply | _Transient:
        status = response.status_code
        verdict = self._classify(response) if self._classify else None
        if verdict is None:
            if status in allow_status:
                return Reply(status, _json_or_none(response), response)
            verdict = default_verdict(response)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        match verdict.action:
            case Action.THROTTLE:
                return _Transient(verdict.reason, throttled=True, retry_after=retry_after)
            case Action.RETRY:
                return _Transient(verdict.reason, retry_after=retry_after)
            case Action.FAIL:
                raise permanent_error(method, path, status, verdict.reason)
        if not expect_json:
            return Reply(status, None, response)
        if status == 204 or (not response.content and method == "HEAD"):
            return Reply(status, None, response)
        try:
            return Reply(status, json.loads(response.content), response)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            return _Transient(f"HTTP {status} with invalid JSON ({len(response.content)} bytes)")

    # -- waits ------------------------------------------------------------------
    def _backoff_delay(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.policy.retry_after_max)
        return self._rng.uniform(0, self.policy.backoff_ceiling(failures))

    def _throttle_delay(self, throttles: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.policy.retry_after_max)
        return self._rng.uniform(0, self.policy.throttle_ceiling(throttles))


def default_verdict(response: requests.Response) -> Verdict:
    """The generic rules: 429 throttles; 408/5xx retry; other 4xx fail; else accept."""
    status = response.status_code
    reason = f"HTTP {status}"
    if status == 429:
        return Verdict(Action.THROTTLE, reason)
    if status == 408 or status >= 500:
        return Verdict(Action.RETRY, reason)
    if status >= 400:
        return Verdict(Action.FAIL, response.reason or "")
    return Verdict(Action.ACCEPT)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds, HTTP-date or ISO)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    when: datetime | None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def describe_exception(exc: BaseException) -> str:
    """Class names of ``exc`` and what it wraps; never its text (that holds the URL).

    E.g. ``ConnectionError / ProtocolError / ConnectionResetError``.
    """
    names: list[str] = []
    queue: list[BaseException] = [exc]
    seen: set[int] = set()
    while queue and len(seen) < 8:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        names.append(type(current).__name__)
        # urllib3/requests wrap the OS error in args or .reason rather than __cause__.
        inner = [*current.args, getattr(current, "reason", None), current.__cause__]
        queue.extend(e for e in inner if isinstance(e, BaseException))
    return " / ".join(dict.fromkeys(names))


def _json_or_none(response: requests.Response) -> Any:
    try:
        return json.loads(response.content) if response.content else None
    except ValueError:
        return None


def _pooled_session(pool_size: int) -> requests.Session:
    """A session whose pool keeps ``pool_size`` connections per host; no cookies."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(1, pool_size), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # API calls authenticate by header; blocking cookies also keeps the jar out of threads.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session
