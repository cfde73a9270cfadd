"""A fake Canvas LMS (REST + GraphQL) serving a sandbox ``Institution`` on 127.0.0.1.

For development, tests, the demo and benchmarks only: it imitates Canvas's paths,
parameters, JSON shapes, pagination, errors and throttling closely enough that the
project's Canvas client runs unchanged against it (see ``../shared/reference/canvas-api.md``).

Endpoints (request-log endpoint name in brackets)::

    GET  /api/v1/accounts/:id/terms                 [terms]     {"enrollment_terms": [...]}, paged
    GET  /api/v1/accounts/:id/terms/:term_id        [term]      one term
    GET  /api/v1/accounts/:id/courses               [courses]   paged, filters below
    GET  /api/v1/accounts/:id                       [account]
    GET  /api/v1/accounts/:id/sub_accounts          [sub_accounts] paged (recursive=true)
    GET  /api/v1/audit/course/courses/:id           [audit]     compound, newest first, paged
    GET  /api/v1/courses/:id/analytics/activity     [analytics] bare unordered array; 404s
    GET  /api/v1/courses/:id/tabs                   [tabs]      not paged; some 403
    GET  /api/v1/courses/:id/sections               [sections]  paged
    GET  /api/v1/courses/:id                        [course]
    GET  /api/v1/calendar_events                    [calendar_events] paged
    POST /api/graphql                               [graphql]   see ``sandbox.canvas_graphql``

Ids in paths accept SIS forms (``sis_course_id:X``, ``sis_account_id:X``,
``sis_term_id:X``) and ``self`` for accounts. Account courses honour
``enrollment_term_id``, ``with_enrollments``, ``enrollment_type[]``, ``published``,
``state[]`` (default: every state but ``deleted``), ``search_term`` and ``include[]``
(``total_students``, ``term``, ``account_name``); every spec.duplicate_every_pages-th
page repeats the previous page's last row, as real Canvas does when rows shift.

Authentication: ``Authorization: Bearer <token>``, ``?access_token=``, or for GraphQL an
``access_token`` field of the JSON or form body. Without one:
401 ``{"status": "unauthenticated", ...}``; with a wrong one: 401 ``Invalid access token.``;
both with a ``WWW-Authenticate`` header.

Pagination: ``per_page`` clamped to 1..``per_page_max`` (default 10); a ``Link`` header
with absolute ``current``, ``next`` (only when there is more) and ``first`` URLs that
repeat the query parameters and carry an opaque ``page=bookmark:...``; never ``last``.

Throttling (Canvas's ``request_throttle`` model, knobs in ``ThrottleSpec``, defaults as
current Canvas: high-water mark 600, maximum 800, up-front 50, leak 10/s): one leaky
bucket per access token; the level leaks ``leak_per_s`` units per second and never
exceeds ``maximum``. Each request first adds its up-front charge (``up_front``, held
while it is in flight, simulated latency included) and is refused at once when the
level reaches the high-water mark ``capacity``. When it finishes the charge is taken
off and its cost (``cost``, or ``endpoint_costs[endpoint]``) added. Every response
carries ``X-Rate-Limit-Remaining`` (capacity - level, negative when the level is past
the mark; the full capacity when the request has no valid token); answered requests
carry ``X-Request-Cost``. A refused request gets ``403`` (or 429 with ``status=429``,
as hosted Canvas now does), text body ``403 Forbidden (Rate Limit Exceeded)`` and
``X-Rate-Limit-Remaining`` = capacity - level (current Canvas) or ``0.0``
(``refusal_remaining="zero"``, older releases). ``THROTTLE_PROFILES`` holds four
configurations (defaults, small/fast, large/slow, shared with a ``Competitor`` that
drains the bucket part of the time). Parallelism is what gets a client throttled: 12
concurrent requests reserve 600 units.

Leniency, as Canvas: a scalar ``include=x`` (or ``state=x`` ...) counts as ``include[]=x``;
the token may come as ``access_token`` in the query string or a GraphQL body; a GraphQL
``after: ""`` means no cursor.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import unquote, urlencode

import numpy as np
from courseinv.sandbox.canvas_graphql import CanvasGraphQL
from courseinv.sandbox.httpserver import (
    Faults,
    Latency,
    Request,
    Response,
    Route,
    SandboxServer,
    json_response,
)
from courseinv.sandbox.institution import (
    DELETED,
    ENROLLMENT_TYPES,
    STUDENT,
    Account,
    Course,
    Institution,
    Section,
    Term,
    iso,
)

T = TypeVar("T")

NOT_FOUND = {"errors": [{"message": "The specified resource does not exist."}]}
UNAUTHORIZED = {
    "status": "unauthorized",
    "errors": [{"message": "user not authorized to perform that action"}],
}
WWW_AUTHENTICATE = 'Bearer realm="canvas-lms"'
# enrollment_type[] values of the account courses API -> enrollment type index.
ENROLLMENT_TYPE_PARAM = {
    "teacher": ENROLLMENT_TYPES.index("TeacherEnrollment"),
    "student": ENROLLMENT_TYPES.index("StudentEnrollment"),
    "ta": ENROLLMENT_TYPES.index("TaEnrollment"),
    "observer": ENROLLMENT_TYPES.index("ObserverEnrollment"),
    "designer": ENROLLMENT_TYPES.index("DesignerEnrollment"),
}
COURSE_STATE_PARAM = {
    "created": "unpublished",
    "claimed": "unpublished",
    "unpublished": "unpublished",
    "available": "available",
    "completed": "completed",
    "deleted": "deleted",
}
MAX_CONTEXT_CODES = 10  # calendar events: "additional ones are ignored"
# Array parameters of the endpoints served (``include[]`` ...); a bare ``include=x`` counts.
LIST_PARAMS = frozenset(
    {"include", "state", "enrollment_type", "workflow_state", "context_codes", "type"}
)


@dataclass(frozen=True)
class Competitor:
    """Another client on the same token, draining the bucket part of the time.

    While it is active (the first ``duty`` fraction of every ``period_s`` seconds) it
    charges ``rate`` units per second and holds ``in_flight`` up-front reservations.
    """

    rate: float = 12.0
    in_flight: int = 2
    period_s: float = 10.0
    duty: float = 0.5

    def active(self, t: float) -> bool:
        return (t % self.period_s) < self.duty * self.period_s

    def active_time(self, t0: float, t1: float) -> float:
        """Seconds of activity within [t0, t1] (times since the bucket was created)."""
        total, on = 0.0, self.duty * self.period_s
        k = int(t0 // self.period_s)
        while k * self.period_s < t1:
            start, end = k * self.period_s, k * self.period_s + on
            total += max(0.0, min(end, t1) - max(start, t0))
            k += 1
        return total


@dataclass(frozen=True)
class ThrottleSpec:
    """Canvas's leaky-bucket throttle (see the module docstring).

    Defaults are current Canvas's (``request_throttle.rb``): high-water mark 600,
    maximum 800, up-front charge 50, leak 10 units/s. ``refusal_remaining``: what a
    refused response reports in ``X-Rate-Limit-Remaining``: ``"level"`` (current
    Canvas: the mark minus the level) or ``"zero"`` (``0.0``, older releases).
    """

    capacity: float = 600.0  # high-water mark: refused when level + up_front reaches it
    maximum: float = 800.0  # the level never exceeds this
    cost: float = 0.05  # default cost of an answered request
    endpoint_costs: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({"graphql": 0.25})
    )
    leak_per_s: float = 10.0
    up_front: float = 50.0
    status: int = 403  # 429 imitates hosted Canvas since 2025
    refusal_remaining: str = "level"
    competitor: Competitor | None = None

    def cost_of(self, endpoint: str) -> float:
        return self.endpoint_costs.get(endpoint, self.cost)


DEFAULT_THROTTLE = ThrottleSpec()

# Throttle configurations an institution may run (tests and benchmarks use all four).
THROTTLE_PROFILES: dict[str, ThrottleSpec] = {
    # current Canvas defaults
    "default": DEFAULT_THROTTLE,
    # a small bucket that leaks fast, with a small up-front charge
    "small-fast": ThrottleSpec(
        capacity=60,
        maximum=80,
        up_front=4,
        leak_per_s=30,
        cost=0.3,
        endpoint_costs=MappingProxyType({"graphql": 0.5}),
    ),
    # a large bucket that leaks slowly, with a large up-front charge
    "large-slow": ThrottleSpec(
        capacity=3000,
        maximum=4000,
        up_front=300,
        leak_per_s=2,
        cost=1.0,
        endpoint_costs=MappingProxyType({"graphql": 1.5}),
    ),
    # the defaults, shared with another client that drains it half of the time
    "shared": ThrottleSpec(cost=0.1, competitor=Competitor()),
}


class LeakyBucket:
    """One token's bucket (and its simulated competitor). Thread-safe; 0 <= level <= max."""

    def __init__(self, spec: ThrottleSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self._clock = clock
        self._born = clock()
        self._level = 0.0
        self._at = self._born
        self._lock = threading.Lock()

    def _leak(self) -> float:
        now = self._clock()
        spec, dt = self.spec, now - self._at
        drained = 0.0
        if spec.competitor is not None:
            drained = spec.competitor.rate * spec.competitor.active_time(
                self._at - self._born, now - self._born
            )
        self._level = min(spec.maximum, max(0.0, self._level - dt * spec.leak_per_s + drained))
        self._at = now
        return now

    def _others(self, now: float) -> float:
        """Reservations the competitor holds right now."""
        c = self.spec.competitor
        if c is None or not c.active(now - self._born):
            return 0.0
        return c.in_flight * self.spec.up_front

    def reserve(self, amount: float) -> bool:
        """Add ``amount``; True when the request may run (level stays under the mark)."""
        with self._lock:
            now = self._leak()
            self._level = min(self.spec.maximum, self._level + amount)
            return self._level + self._others(now) < self.spec.capacity

    def settle(self, reserved: float, cost: float) -> float:
        """Release a reservation and charge ``cost``; returns the level as reported."""
        with self._lock:
            now = self._leak()
            self._level = min(self.spec.maximum, max(0.0, self._level - reserved + cost))
            return self._level + self._others(now)

    @property
    def level(self) -> float:
        with self._lock:
            now = self._leak()
            return self._level + self._others(now)


class _HttpError(Exception):
    """Raised by handlers to answer with ``response``."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _not_found() -> _HttpError:
    return _HttpError(json_response(NOT_FOUND, 404))


def _fmt(value: float) -> str:
    return str(round(value, 4))


def _truthy(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() in ("true", "1", "yes", "on")


class CanvasServer(SandboxServer):
    """The Canvas fake. ``with CanvasServer(inst) as canvas: canvas.url, canvas.token``."""

    name = "canvas"

    def __init__(
        self,
        institution: Institution,
        *,
        token: str | None = None,
        latency: Latency | None = None,
        faults: Faults | None = None,
        throttle: ThrottleSpec | None = DEFAULT_THROTTLE,
        per_page_max: int = 100,
        per_page_default: int = 10,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(latency=latency, faults=faults, seed=seed, host=host, port=port)
        self.institution = institution
        self.token = token or secrets.token_urlsafe(32)
        self._buckets: dict[str, LeakyBucket] = {}
        self._lock = threading.Lock()
        self.throttle = throttle
        self.per_page_max = per_page_max
        self.per_page_default = per_page_default
        self.graphql = CanvasGraphQL(institution)
        self.throttled = 0  # requests refused by the throttle
        self._tokens = {self.token}
        self._course_lists: dict[tuple[Any, ...], list[int]] = {}
        self._register_routes()

    @property
    def throttle(self) -> ThrottleSpec | None:
        """The throttle model (None: no metering). Setting it empties every bucket."""
        return self._throttle

    @throttle.setter
    def throttle(self, spec: ThrottleSpec | None) -> None:
        with self._lock:
            self._throttle = spec
            self._buckets.clear()

    @property
    def account_id(self) -> int:
        """The root account id (what CANVAS_ACCOUNT_ID should be)."""
        return self.institution.root_account_id

    def issue_token(self) -> str:
        """Another valid token, with its own throttle bucket."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens.add(token)
        return token

    def bucket_level(self, token: str | None = None) -> float:
        """Current level of a token's bucket (0 when it has not been used)."""
        with self._lock:
            bucket = self._buckets.get(token or self.token)
        return bucket.level if bucket else 0.0

    # -- routes --------------------------------------------------------------------------
    def _register_routes(self) -> None:
        seg = r"([^/]+)"
        v1 = "/api/v1"
        routes: list[tuple[str, str, str, Callable[[Request], Response]]] = [
            ("GET", f"{v1}/accounts/{seg}/terms", "terms", self._terms),
            ("GET", f"{v1}/accounts/{seg}/terms/{seg}", "term", self._term),
            ("GET", f"{v1}/accounts/{seg}/courses", "courses", self._account_courses),
            ("GET", f"{v1}/accounts/{seg}/sub_accounts", "sub_accounts", self._sub_accounts),
            ("GET", f"{v1}/accounts/{seg}", "account", self._account),
            ("GET", f"{v1}/audit/course/courses/{seg}", "audit", self._audit),
            ("GET", f"{v1}/courses/{seg}/analytics/activity", "analytics", self._analytics),
            ("GET", f"{v1}/courses/{seg}/tabs", "tabs", self._tabs),
            ("GET", f"{v1}/courses/{seg}/sections", "sections", self._sections),
            ("GET", f"{v1}/courses/{seg}", "course", self._course),
            ("GET", f"{v1}/calendar_events", "calendar_events", self._calendar_events),
            ("POST", "/api/graphql", "graphql", self._graphql),
        ]
        for method, pattern, endpoint, handler in routes:
            self.add_route(method, pattern, endpoint, _answering(handler))

    # -- extensions -----------------------------------------------------------------------
    def mount(self, routes: Sequence[tuple[str, str, str, Callable[[Request], Response]]]) -> None:
        """Serve extra ``(method, pattern, endpoint, handler)`` routes with this server's
        auth and throttle (the account reports of ``sandbox/canvas_reports.py``)."""
        for method, pattern, endpoint, handler in routes:
            self.add_route(method, pattern, endpoint, _answering(handler))

    def paginate(
        self, request: Request, items: Sequence[T], kind: str
    ) -> tuple[Sequence[T], dict[str, str]]:
        """One page of ``items`` and its ``Link`` header, as every list endpoint pages."""
        return self._paginate(request, items, kind)

    # -- auth and throttle ----------------------------------------------------------------
    @staticmethod
    def _token_of(request: Request) -> str | None:
        """Bearer header, ``access_token`` in the query, or (GraphQL) in the body."""
        token = request.bearer_token() or request.arg("access_token")
        if token or request.method != "POST" or not request.body:
            return token or None
        try:
            if request.headers.get("content-type", "").startswith("application/json"):
                body = request.json()
                token = body.get("access_token") if isinstance(body, dict) else None
            else:
                token = (request.form().get("access_token") or [None])[-1]
        except (ValueError, UnicodeDecodeError):
            return None
        return token if isinstance(token, str) and token else None

    def dispatch(self, request: Request) -> tuple[Response, str]:
        _lenient_query(request)
        throttle = self.throttle
        token = self._token_of(request)
        if throttle is None:
            return super().dispatch(request)
        if token not in self._tokens:  # no bucket; Canvas reports a full allowance
            response, endpoint = super().dispatch(request)
            response.headers["X-Rate-Limit-Remaining"] = _fmt(throttle.capacity)
            return response, endpoint
        with self._lock:
            bucket = self._buckets.get(token)
            if bucket is None:
                bucket = self._buckets[token] = LeakyBucket(throttle)
        # The reservation covers the whole time in flight, simulated latency included.
        if not bucket.reserve(throttle.up_front):
            # Refused at once, before any work, as Canvas's middleware does.
            level = bucket.settle(throttle.up_front, 0.0)
            route = self._match(request)
            return self._refusal(throttle, level), route.endpoint if route else "unmatched"
        try:
            response, endpoint = super().dispatch(request)
        except BaseException:
            bucket.settle(throttle.up_front, 0.0)
            raise
        cost = throttle.cost_of(endpoint)
        level = bucket.settle(throttle.up_front, cost)
        response.headers["X-Request-Cost"] = _fmt(cost)
        response.headers["X-Rate-Limit-Remaining"] = _fmt(throttle.capacity - level)
        return response, endpoint

    def _refusal(self, throttle: ThrottleSpec, level: float) -> Response:
        with self._lock:
            self.throttled += 1
        reason = "Forbidden" if throttle.status == 403 else "Too Many Requests"
        remaining = (
            "0.0" if throttle.refusal_remaining == "zero" else _fmt(throttle.capacity - level)
        )
        return Response(
            throttle.status,
            f"{throttle.status} {reason} (Rate Limit Exceeded)\n",
            {"Content-Type": "text/plain; charset=utf-8", "X-Rate-Limit-Remaining": remaining},
        )

    def before(self, request: Request, route: Route) -> Response | None:
        token = self._token_of(request)
        if token is None:
            body = {
                "status": "unauthenticated",
                "errors": [{"message": "user authorization required"}],
            }
            return json_response(body, 401, **{"WWW-Authenticate": WWW_AUTHENTICATE})
        if token not in self._tokens:
            body = {"errors": [{"message": "Invalid access token."}]}
            return json_response(body, 401, **{"WWW-Authenticate": WWW_AUTHENTICATE})
        return None

    # -- pagination -----------------------------------------------------------------------
    def _per_page(self, request: Request) -> int:
        raw = request.arg("per_page")
        try:
            value = int(raw) if raw is not None else self.per_page_default
        except ValueError:
            value = self.per_page_default
        return min(max(value, 1), self.per_page_max)

    def _paginate(
        self, request: Request, items: Sequence[T], kind: str, duplicate_every: int = 0
    ) -> tuple[Sequence[T], dict[str, str]]:
        """One page of ``items`` and its Link header. Bookmarks are opaque to clients."""
        per_page = self._per_page(request)
        offset, page_no = _decode_page(request.arg("page"), kind)
        start, count = offset, per_page
        if duplicate_every > 0 and per_page > 1 and page_no > 0 and page_no % duplicate_every == 0:
            start, count = offset - 1, per_page  # the previous page's last row comes again
        page = items[start : start + count]
        next_offset = start + count
        links = {"current": request.arg("page") or "first", "first": "first"}
        if next_offset < len(items):
            links["next"] = _encode_page(kind, next_offset, page_no + 1)
        return page, {"Link": self._link_header(request, links, per_page)}

    def _link_header(self, request: Request, pages: dict[str, str], per_page: int) -> str:
        host = request.headers.get("host") or self.url.removeprefix("http://")
        kept = [
            (k, v)
            for k, values in request.query.items()
            if k not in ("page", "per_page", "access_token")
            for v in values
        ]
        parts = []
        for rel in ("current", "next", "first"):
            if rel in pages:
                query = urlencode([*kept, ("page", pages[rel]), ("per_page", str(per_page))])
                parts.append(f'<http://{host}{request.path}?{query}>; rel="{rel}"')
        return ",".join(parts)

    # -- lookups --------------------------------------------------------------------------
    def _find_account(self, raw: str) -> Account:
        inst, key = self.institution, unquote(raw)
        if key == "self":
            return inst.accounts[inst.root_account_id]
        if key.startswith("sis_account_id:"):
            sis = key.removeprefix("sis_account_id:")
            found = next((a for a in inst.accounts.values() if a.sis_account_id == sis), None)
        else:
            found = inst.accounts.get(int(key)) if key.isdigit() else None
        if found is None:
            raise _not_found()
        return found

    def _find_term(self, raw: str) -> Term:
        inst, key = self.institution, unquote(raw)
        if key.startswith("sis_term_id:"):
            sis = key.removeprefix("sis_term_id:")
            found = next((t for t in inst.terms.values() if t.sis_term_id == sis), None)
        else:
            found = inst.terms.get(int(key)) if key.isdigit() else None
        if found is None:
            raise _not_found()
        return found

    def _find_course(self, raw: str, *, allow_deleted: bool = False) -> Course:
        inst, key = self.institution, unquote(raw)
        if key.startswith("sis_course_id:"):
            sis = key.removeprefix("sis_course_id:")
            found = next((c for c in inst.courses if c.sis_course_id == sis), None)
        else:
            found = inst.course_by_id.get(int(key)) if key.isdigit() else None
        if found is None or (found.workflow_state == "deleted" and not allow_deleted):
            raise _not_found()
        return found

    # -- JSON shapes ----------------------------------------------------------------------
    @staticmethod
    def _term_json(term: Term, *, overrides: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": term.id,
            "name": term.name,
            "start_at": iso(term.start_at),
            "end_at": iso(term.end_at),
            "created_at": iso(term.created_at),
            "workflow_state": "active",
            "grading_period_group_id": None,
            "sis_term_id": term.sis_term_id,
            "sis_import_id": None if term.sis_term_id is None else 41,
        }
        if overrides:
            body["overrides"] = {}
        return body

    def _account_json(self, account: Account) -> dict[str, Any]:
        root = self.institution.root_account_id
        return {
            "id": account.id,
            "name": account.name,
            "uuid": f"{account.id:040d}",
            "parent_account_id": account.parent_account_id,
            "root_account_id": None if account.id == root else root,
            "workflow_state": "active",
            "default_time_zone": "America/Detroit",
            "default_storage_quota_mb": 3000,
            "sis_account_id": account.sis_account_id,
            "integration_id": None,
            "sis_import_id": None,
        }

    def _course_json(self, course: Course, include: set[str]) -> dict[str, Any]:
        inst = self.institution
        body: dict[str, Any] = {
            "id": course.id,
            "name": course.name,
            "account_id": course.account_id,
            "uuid": course.uuid,
            "start_at": None,
            "grading_standard_id": None,
            "is_public": False,
            "created_at": iso(course.created_at),
            "course_code": course.course_code,
            "default_view": "modules",
            "root_account_id": inst.root_account_id,
            "enrollment_term_id": course.term_id,
            "license": "private",
            "end_at": None,
            "public_syllabus": False,
            "storage_quota_mb": 3000,
            "is_public_to_auth_users": False,
            "apply_assignment_group_weights": False,
            "time_zone": "America/Detroit",
            "blueprint": False,
            "template": False,
            "sis_course_id": course.sis_course_id,
            "sis_import_id": None if course.sis_course_id is None else 41,
            "integration_id": None,
            "hide_final_grades": False,
            "workflow_state": course.workflow_state,
            "restrict_enrollments_to_course_dates": False,
        }
        if "total_students" in include:
            body["total_students"] = course.total_students
        if "term" in include:
            body["term"] = self._term_json(inst.terms[course.term_id])
        if "account_name" in include:
            body["account_name"] = inst.accounts[course.account_id].name
        return body

    def _section_json(self, section: Section, course: Course, include: set[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": section.id,
            "course_id": section.course_id,
            "name": section.name,
            "start_at": None,
            "end_at": None,
            "created_at": iso(section.created_at),
            "restrict_enrollments_to_section_dates": False,
            "nonxlist_course_id": section.nonxlist_course_id,
            "sis_section_id": section.sis_section_id,
            "sis_course_id": course.sis_course_id,
            "integration_id": None,
            "sis_import_id": None if section.sis_section_id is None else 41,
        }
        if "total_students" in include:
            e = self.institution.course_enrollments(course)
            counted = (e.section_id == section.id) & (e.type == STUDENT) & (e.state != DELETED)
            body["total_students"] = int(np.count_nonzero(counted))
        return body

    # -- handlers -------------------------------------------------------------------------
    def _terms(self, request: Request) -> Response:
        account = self._find_account(request.match[1])  # type: ignore[index]
        if account.parent_account_id is not None:
            raise _HttpError(json_response({"message": "Terms only belong to root_accounts."}, 400))
        states = set(request.args("workflow_state[]")) or {"active"}
        terms = list(self.institution.terms.values()) if states & {"active", "all"} else []
        # Canvas: start_at DESC, end_at DESC, id ASC (NULLs first, as in PostgreSQL DESC).
        terms.sort(key=lambda t: t.id)
        terms.sort(
            key=lambda t: (t.end_at is None, t.end_at or datetime.min.replace(tzinfo=UTC)),
            reverse=True,
        )
        terms.sort(
            key=lambda t: (t.start_at is None, t.start_at or datetime.min.replace(tzinfo=UTC)),
            reverse=True,
        )
        page, headers = self._paginate(request, terms, "terms")
        overrides = "overrides" in request.args("include[]")
        body = {"enrollment_terms": [self._term_json(t, overrides=overrides) for t in page]}
        return json_response(body, 200, **headers)

    def _term(self, request: Request) -> Response:
        account = self._find_account(request.match[1])  # type: ignore[index]
        if account.parent_account_id is not None:
            raise _HttpError(json_response({"message": "Terms only belong to root_accounts."}, 400))
        return json_response(self._term_json(self._find_term(request.match[2]), overrides=True))  # type: ignore[index]

    def _account(self, request: Request) -> Response:
        return json_response(self._account_json(self._find_account(request.match[1])))  # type: ignore[index]

    def _sub_accounts(self, request: Request) -> Response:
        account = self._find_account(request.match[1])  # type: ignore[index]
        inst = self.institution
        if _truthy(request.arg("recursive")):
            ids = sorted(inst.account_subtree(account.id) - {account.id})
        else:
            ids = sorted(a.id for a in inst.accounts.values() if a.parent_account_id == account.id)
        page, headers = self._paginate(request, ids, f"sub_accounts:{account.id}")
        return json_response([self._account_json(inst.accounts[a]) for a in page], 200, **headers)

    def _account_courses(self, request: Request) -> Response:
        account = self._find_account(request.match[1])  # type: ignore[index]
        term_raw = request.arg("enrollment_term_id")
        term_id = self._find_term(term_raw).id if term_raw else None
        search = request.arg("search_term")
        if search is not None and len(search) < 3:
            body = {"errors": [{"message": "search_term must be at least 3 characters"}]}
            raise _HttpError(json_response(body, 400))
        states = {COURSE_STATE_PARAM[s] for s in request.args("state[]") if s in COURSE_STATE_PARAM}
        if "all" in request.args("state[]"):
            states = set(COURSE_STATE_PARAM.values())
        key = (
            account.id,
            term_id,
            _truthy(request.arg("with_enrollments") or request.arg("hide_enrollmentless_courses")),
            tuple(sorted(request.args("enrollment_type[]"))),
            _truthy(request.arg("published")),
            tuple(sorted(states or {"unpublished", "available", "completed"})),
            (search or "").lower(),
        )
        indexes = self._course_list(key)
        page, headers = self._paginate(
            request, indexes, "courses", self.institution.spec.duplicate_every_pages
        )
        include = set(request.args("include[]"))
        courses = self.institution.courses
        return json_response([self._course_json(courses[i], include) for i in page], 200, **headers)

    def _course_list(self, key: tuple[Any, ...]) -> list[int]:
        """Indexes of the courses an account courses query selects, ordered by id (cached)."""
        with self._lock:
            cached = self._course_lists.get(key)
        if cached is not None:
            return cached
        account_id, term_id, with_enrollments, types, published, states, search = key
        inst = self.institution
        accounts = inst.account_subtree(account_id)
        wanted_types = [ENROLLMENT_TYPE_PARAM[t] for t in types if t in ENROLLMENT_TYPE_PARAM]
        matrix = self._type_matrix() if wanted_types else None
        out = []
        for c in inst.courses:
            if c.account_id not in accounts or c.workflow_state not in states:
                continue
            if term_id is not None and c.term_id != term_id:
                continue
            if with_enrollments is not None and c.has_enrollments != with_enrollments:
                continue
            if matrix is not None and not matrix[c.index, wanted_types].any():
                continue
            if published is not None and (c.workflow_state == "available") != published:
                continue
            if search and search not in c.name.lower() and search not in c.course_code.lower():
                continue
            out.append(c.index)
        with self._lock:
            self._course_lists[key] = out
        return out

    def _type_matrix(self) -> np.ndarray:
        """[course index, enrollment type] -> has a non-deleted enrollment of that type."""
        matrix = getattr(self, "_types", None)
        if matrix is None:
            e = self.institution.enrollments
            live = e.state != DELETED
            matrix = np.zeros((len(self.institution.courses), len(ENROLLMENT_TYPES)), dtype=bool)
            matrix[e.course_index[live], e.type[live]] = True
            self._types = matrix
        return matrix

    def _course(self, request: Request) -> Response:
        course = self._find_course(request.match[1])  # type: ignore[index]
        return json_response(self._course_json(course, set(request.args("include[]"))))

    def _audit(self, request: Request) -> Response:
        course = self._find_course(request.match[1])  # type: ignore[index]
        events = self.institution.audit_events(course.id)
        start, end = _time_param(request.arg("start_time")), _time_param(request.arg("end_time"))
        if start or end:
            events = [
                e
                for e in events
                if (start is None or e.created_at >= start) and (end is None or e.created_at <= end)
            ]
        page, headers = self._paginate(request, events, f"audit:{course.id}")
        host = request.headers.get("host") or self.url.removeprefix("http://")
        body = {
            "links": {
                "events.course": f"http://{host}/api/v1/courses/{{events.course}}",
                "events.user": None,
                "events.sis_batch": None,
            },
            "events": [
                {
                    "id": e.id,
                    "created_at": iso(e.created_at),
                    "event_type": e.event_type,
                    "event_source": e.event_source,
                    "event_data": {},
                    "links": {
                        "course": course.id,
                        "user": e.user_id,
                        "page_view": None,
                        "sis_batch": None,
                    },
                }
                for e in page
            ],
            "linked": {"courses": [], "users": [], "page_views": []},
        }
        return json_response(body, 200, **headers)

    def _analytics(self, request: Request) -> Response:
        course = self._find_course(request.match[1])  # type: ignore[index]
        rows = self.institution.analytics(course.id)
        if rows is None:
            raise _not_found()
        return json_response(rows)

    def _tabs(self, request: Request) -> Response:
        course = self._find_course(request.match[1])  # type: ignore[index]
        tabs = self.institution.tabs(course.id)
        if tabs is None:
            raise _HttpError(json_response(UNAUTHORIZED, 403))
        host = request.headers.get("host") or self.url.removeprefix("http://")
        return json_response([_tab_json(t, course.id, f"http://{host}") for t in tabs])

    def _sections(self, request: Request) -> Response:
        course = self._find_course(request.match[1])  # type: ignore[index]
        inst = self.institution
        sections = [inst.sections[k] for k in course.section_range]
        page, headers = self._paginate(request, sections, f"sections:{course.id}")
        include = set(request.args("include[]"))
        return json_response([self._section_json(s, course, include) for s in page], 200, **headers)

    def _calendar_events(self, request: Request) -> Response:
        inst = self.institution
        codes = request.args("context_codes[]")[:MAX_CONTEXT_CODES]
        events: list[dict[str, Any]] = []
        if request.arg("type", "event") == "event":
            for code in codes:
                raw = code.removeprefix("course_")
                course = inst.course_by_id.get(int(raw)) if raw.isdigit() else None
                if code.startswith("course_") and course and course.workflow_state != "deleted":
                    events += inst.calendar_events(course.id)
        if not _truthy(request.arg("all_events")):
            start = _time_param(request.arg("start_date"))
            end = _time_param(request.arg("end_date"), end_of_day=True)
            if start is None and end is None:  # Canvas default: today's events only
                start = datetime.combine(inst.spec.now.date(), datetime.min.time(), UTC)
                end = start + timedelta(days=1)
            events = [e for e in events if _in_window(str(e["start_at"]), start, end)]
        events.sort(key=lambda e: (str(e["start_at"]), int(e["id"])))
        page, headers = self._paginate(request, events, "calendar_events")
        return json_response(list(page), 200, **headers)

    def _graphql(self, request: Request) -> Response:
        try:
            if request.headers.get("content-type", "").startswith("application/json"):
                payload = request.json() or {}
            else:
                payload = {k: v[-1] for k, v in request.form().items()}
            variables = payload.get("variables")
            if isinstance(variables, str):
                variables = json.loads(variables) if variables.strip() else None
        except (ValueError, UnicodeDecodeError, AttributeError):
            raise _HttpError(json_response({"errors": [{"message": "Invalid request body"}]}, 400))  # noqa: B904
        if not isinstance(payload, dict) or not (variables is None or isinstance(variables, dict)):
            raise _HttpError(json_response({"errors": [{"message": "Invalid request body"}]}, 400))
        result = self.graphql.execute(
            payload.get("query"), variables, payload.get("operationName") or None
        )
        return json_response(result)


def _lenient_query(request: Request) -> None:
    """Canvas treats a scalar ``name=x`` as the one-element list ``name[]=x``."""
    for name in [k for k in request.query if not k.endswith("]") and k in LIST_PARAMS]:
        request.query.setdefault(f"{name}[]", []).extend(request.query.pop(name))


def _answering(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
    def run(request: Request) -> Response:
        try:
            return handler(request)
        except _HttpError as exc:
            return exc.response

    return run


def _encode_page(kind: str, offset: int, page_no: int) -> str:
    raw = json.dumps([kind, offset, page_no], separators=(",", ":")).encode()
    return "bookmark:" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page(value: str | None, kind: str) -> tuple[int, int]:
    """(offset, page number) of a ``page`` parameter; 404 for a bookmark of another list."""
    if value in (None, "", "first", "1"):
        return 0, 0
    assert value is not None
    if value.startswith("bookmark:"):
        token = value.removeprefix("bookmark:")
        try:
            got_kind, offset, page_no = json.loads(
                base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            )
            if got_kind == kind and isinstance(offset, int) and isinstance(page_no, int):
                return max(offset, 0), max(page_no, 0)
        except (binascii.Error, ValueError, TypeError):
            pass
    raise _HttpError(json_response({"errors": [{"message": "invalid page"}]}, 404))


def _time_param(value: str | None, *, end_of_day: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            when = datetime.combine(day, datetime.min.time(), UTC)
            return when + timedelta(days=1) if end_of_day else when
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _HttpError(  # noqa: B904
            json_response({"errors": [{"message": f"invalid date or time: {value}"}]}, 400)
        )
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _in_window(start_at: str, start: datetime | None, end: datetime | None) -> bool:
    when = datetime.fromisoformat(start_at.replace("Z", "+00:00"))
    return (start is None or when >= start) and (end is None or when < end)


def _tab_json(tab: dict[str, Any], course_id: int, base: str) -> dict[str, Any]:
    external = tab["type"] == "external"
    if external:
        html_url = f"/courses/{course_id}/external_tools/{tab['tool_id']}"
    elif tab["id"] == "home":
        html_url = f"/courses/{course_id}"
    else:
        html_url = f"/courses/{course_id}/{tab['id']}"
    hidden = bool(tab["hidden"])
    if external and hidden:
        visibility = "none"
    elif tab["id"] == "settings" or hidden:
        visibility = "admins"
    else:
        visibility = "public"
    body: dict[str, Any] = {
        "id": tab["id"],
        "html_url": html_url,
        "full_url": f"{base}{html_url}",
        "position": tab["position"],
        "visibility": visibility,
        "label": tab["label"],
        "type": tab["type"],
    }
    if hidden:
        body["hidden"] = True
    if external:
        body["url"] = (
            f"{base}/api/v1/courses/{course_id}/external_tools/sessionless_launch"
            f"?id={tab['tool_id']}&launch_type=course_navigation"
        )
    return body


class CanvasProcess:
    """A ``CanvasServer`` in a child process, so that a client under test does not share
    the server's interpreter lock (as with a real Canvas). For benchmarks and throttle
    tests: ``with CanvasProcess(spec, throttle=...) as canvas: canvas.url``.

    The institution is generated in the child from ``spec`` (same spec, same data).
    ``issue_token()``, ``count(status=...)`` (answered requests, like ``log.count``),
    ``reset_log()`` and ``throttled`` are answered by the child over a pipe.
    """

    def __init__(self, spec: Any, **server_kwargs: Any) -> None:
        import multiprocessing

        self._ctx = multiprocessing.get_context("fork")
        self._spec = spec
        self._kwargs = server_kwargs
        self._conn: Any = None
        self._proc: Any = None
        self.url = ""
        self.token = ""
        self.account_id = 0

    def __enter__(self) -> CanvasProcess:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_serve_in_child, args=(child, self._spec, self._kwargs), daemon=True
        )
        self._proc.start()
        self._conn = parent
        self.url, self.token, self.account_id = parent.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self._call("stop")
        self._proc.join(10)

    def _call(self, *request: Any) -> Any:
        self._conn.send(request)
        return self._conn.recv()

    def issue_token(self) -> str:
        return str(self._call("token"))

    def count(self, endpoint: str | None = None, status: int | None = None) -> int:
        return int(self._call("count", endpoint, status))

    def reset_log(self) -> None:
        self._call("reset")

    def set_throttle(self, spec: ThrottleSpec | None) -> None:
        self._call("throttle", spec)


def _serve_in_child(conn: Any, spec: Any, kwargs: dict[str, Any]) -> None:
    server = CanvasServer(Institution.generate(spec), **kwargs)
    with server:
        conn.send((server.url, server.token, server.account_id))
        while True:
            command, *args = conn.recv()
            if command == "stop":
                conn.send(None)
                return
            if command == "token":
                conn.send(server.issue_token())
            elif command == "count":
                conn.send(server.log.count(*args))
            elif command == "reset":
                server.log.reset()
                conn.send(None)
            elif command == "throttle":
                server.throttle = args[0]
                conn.send(None)
