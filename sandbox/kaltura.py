"""A Kaltura API v3 fake: ``session.start`` and ``media.list`` over plain HTTP.

For development, tests, the demo and benchmarks only.

Request forms (reference/sources.md §1): ``{url}/api_v3/service/{service}/action/{action}``
(or the old ``/api_v3/?service=..&action=..``), with parameters in the query string or
a form body using bracket names (``filter[createdAtGreaterThanOrEqual]=...``), or in a
JSON body whose nested objects are JSON objects. Responses are JSON (``format=1``);
errors are HTTP 200 with ``objectType: KalturaAPIException``.

``media.list`` supports ``filter[categoriesFullNameIn]`` (an entry matches when one of
its categories is a listed name or lies under it), ``createdAtGreaterThanOrEqual``,
``createdAtLessThanOrEqual``, ``idIn``, ``idNotIn``, ``orderBy`` (``+createdAt`` or
``-createdAt``, the default), ``pager[pageSize]`` (default 30, at most 500) and
``pager[pageIndex]`` (1-based). Like Kaltura it refuses to page deeper than 10,000
matches (``QUERY_EXCEEDED_MAX_MATCHES_ALLOWED`` when pageSize x pageIndex > 10,000).
Entries sharing one ``createdAt`` second come back in a fixed order that is not the id
order.

Media are generated per sandbox day from ``(seed, day)`` with courses' categories
``<root>>site>channels><course id>`` and ``...>InContext`` and junk categories (other
roots, galleries, non-numeric channel names). ``advance_day()`` adds the next day's
media; ``add_bulk()`` adds many entries at once with a large createdAt tie (for the
paging-cap tests). Knobs besides latency/faults/down: ``expire_sessions(after=n)``
invalidates every KS once after n more media.list calls (INVALID_KS),
``reject_sessions = True`` answers INVALID_KS to every media.list, and
``fail_media_list(after=n)`` makes every media.list after n more answer HTTP 500 for good.
"""

from __future__ import annotations

import base64
import bisect
import json
import random
import secrets
import string
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
from courseinv.sandbox.httpserver import (
    Faults,
    Latency,
    Request,
    Response,
    SandboxServer,
    json_response,
)

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 30
MAX_MATCHES = 10_000
ADMIN, USER = 2, 0
DEFAULT_ROOT = "Canvas_Sandbox"

_NAMES = [
    "Week {n} lecture", "Lecture {n} — Thermodynamics", "Séance {n} : introducción",
    "講義 {n}", "🎬 Lab demo {n}", "Office hours {n} 🙂", "Лекция {n}",
    "محاضرة {n}", "Review session {n} \"finals\"", "Guest talk {n}: O'Neil & co",
]  # fmt: skip


@dataclass(frozen=True)
class MediaEntry:
    """One Kaltura media entry, with the course links its categories encode."""

    id: str
    name: str
    created_at: int  # unix seconds, UTC
    duration: int  # seconds
    categories: tuple[str, ...]
    courses: frozenset[tuple[int, bool]]  # ground truth: (course id, in_context)
    tie_key: float  # order among entries of the same second (not the id order)

    def as_api(self, partner_id: int) -> dict[str, Any]:
        return {
            "objectType": "KalturaMediaEntry",
            "id": self.id,
            "name": self.name,
            "partnerId": partner_id,
            "userId": "sandbox-user",
            "createdAt": self.created_at,
            "updatedAt": self.created_at + 60,
            "duration": self.duration,
            "msDuration": self.duration * 1000,
            "categories": ",".join(self.categories),
            "categoriesIds": ",".join(str(_category_id(c)) for c in self.categories),
            "status": 2,
            "mediaType": 1,
        }


class KalturaError(Exception):
    """Answered as a KalturaAPIException (HTTP 200)."""

    def __init__(self, code: str, message: str, **args: str) -> None:
        super().__init__(message)
        self.code, self.message, self.args_ = code, message, args

    def body(self) -> dict[str, Any]:
        return {"objectType": "KalturaAPIException", "code": self.code,
                "message": self.message, "args": self.args_}  # fmt: skip


class KalturaServer(SandboxServer):
    """Kaltura fake for one partner whose KAF categories sit under ``root``."""

    name = "kaltura"

    def __init__(
        self,
        seed: int,
        course_ids: Sequence[int],
        today: date | None = None,
        *,
        partner_id: int = 1_234_567,
        admin_secret: str | None = None,
        root: str = DEFAULT_ROOT,
        days: int = 7,
        media_per_day: int = 40,
        latency: Latency | None = None,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(latency=latency, faults=faults, seed=seed)
        self.seed, self.course_ids, self.root = seed, list(course_ids), root
        self.partner_id = partner_id
        self.admin_secret = admin_secret or secrets.token_hex(16)
        self.media_per_day = media_per_day
        self.today = today or datetime.now(UTC).date()
        self.first_day = self.today - timedelta(days=days)
        self._lock = threading.Lock()
        self._entries: list[MediaEntry] = []  # sorted by (created_at, tie_key)
        self._by_id: dict[str, MediaEntry] = {}
        self._match_cache: dict[str, _Matches] = {}
        self._sessions: dict[str, int] = {}  # KS -> session type
        self.issued_ks: list[str] = []  # every KS handed out (tests check none is logged)
        self._expire_after: int | None = None
        self._fail_after: int | None = None
        self.media_list_calls = 0
        self.reject_sessions = False  # every media.list answers INVALID_KS (revoked partner)
        day = self.first_day
        while day <= self.today:
            self._add(self.day_entries(day))
            day += timedelta(days=1)
        for service, action in (("session", "start"), ("media", "list")):
            for method in ("GET", "POST"):
                self.add_route(method, f"/api_v3/service/{service}/action/{action}",
                               f"{service}.{action}", self._dispatch_api)  # fmt: skip
        for method in ("GET", "POST"):
            self.add_route(method, "/api_v3/service/([^/]+)/action/([^/]+)", "other",
                           self._dispatch_api)  # fmt: skip
            self.add_route(method, "/api_v3/?", "legacy", self._dispatch_api)

    # -- data ------------------------------------------------------------------------------
    def day_entries(self, day: date) -> list[MediaEntry]:
        """The media created on one UTC day; a function of ``(seed, day)`` only."""
        rng = random.Random(f"kaltura:{self.seed}:{day.isoformat()}")
        count = rng.randint(self.media_per_day * 3 // 4, self.media_per_day * 5 // 4)
        start = int(datetime.combine(day, time(0), tzinfo=UTC).timestamp())
        out: list[MediaEntry] = []
        second = start + rng.randrange(3600)
        for _ in range(count):
            if not out or rng.random() > 0.15:  # 15%: same second as the previous (bulk upload)
                second = min(start + 86_399, second + rng.randrange(1, 86_400 // max(count, 1)))
            out.append(self._entry(rng, second))
        return out

    def advance_day(self) -> date:
        """Move to the next sandbox day; its media appear. Returns the new today."""
        self.today += timedelta(days=1)
        self._add(self.day_entries(self.today))
        return self.today

    def add_bulk(
        self, count: int, start: datetime, *, tie_size: int = 0, tie_rank: int = MAX_MATCHES
    ) -> list[MediaEntry]:
        """Add ``count`` entries from ``start`` on, a second or so apart, all under the root.

        ``tie_size`` of them share ONE createdAt second, taking ranks
        ``tie_rank - tie_size // 2 ..`` of the batch: a tie straddling Kaltura's cap.
        """
        rng = random.Random(f"kaltura-bulk:{self.seed}:{count}:{start.isoformat()}")
        tie_from = tie_rank - tie_size // 2
        second = int(start.timestamp())
        out = []
        for i in range(count):
            if i and tie_size and i in (tie_from, tie_from + tie_size):
                second += 1  # the tie starts or ends here: a second of its own
            elif i and not (tie_size and tie_from < i < tie_from + tie_size):
                second += rng.choice((0, 1, 1, 1, 2, 3))
            out.append(self._entry(rng, second, in_root=True))
        self._add(out)
        return out

    def _entry(self, rng: random.Random, created_at: int, *, in_root: bool = False) -> MediaEntry:
        while True:
            entry_id = "1_" + "".join(rng.choices(string.ascii_lowercase + string.digits, k=8))
            if entry_id not in self._by_id:
                break
        categories, courses = _categories(rng, self.root, self.course_ids, in_root)
        name = rng.choice(_NAMES).format(n=rng.randrange(1, 40))
        duration = 0 if rng.random() < 0.03 else rng.randrange(5, 7200)
        return MediaEntry(entry_id, name, created_at, duration, tuple(categories),
                          frozenset(courses), rng.random())  # fmt: skip

    def _add(self, entries: list[MediaEntry]) -> None:
        with self._lock:
            for entry in entries:
                if entry.id in self._by_id:
                    raise ValueError(f"duplicate entry id {entry.id}")
                self._by_id[entry.id] = entry
            self._entries.extend(entries)
            self._entries.sort(key=lambda e: (e.created_at, e.tie_key))
            self._match_cache.clear()

    @property
    def entries(self) -> list[MediaEntry]:
        with self._lock:
            return list(self._entries)

    # -- ground truth ------------------------------------------------------------------------
    def expected_media_created(self, since: datetime | None = None) -> pd.DataFrame:
        """Rows of ``mivideo_media_created`` for root entries created at/after ``since``."""
        rows = [
            (e.id, datetime.fromtimestamp(e.created_at, UTC).replace(tzinfo=None), e.name,
             e.duration)
            for e in self._expected(since)
        ]  # fmt: skip
        frame = pd.DataFrame(rows, columns=["id", "created_at", "name", "duration"])
        return frame.sort_values("id", ignore_index=True).astype({"duration": "int64"})

    def expected_media_courses(self, since: datetime | None = None) -> pd.DataFrame:
        """Rows of ``mivideo_media_courses`` for the same entries."""
        rows = sorted((e.id, c, ctx) for e in self._expected(since) for c, ctx in e.courses)
        frame = pd.DataFrame(rows, columns=["media_id", "course_id", "in_context"])
        return frame.astype({"course_id": "int64", "in_context": "bool"})

    def _expected(self, since: datetime | None) -> list[MediaEntry]:
        low = int(since.timestamp()) if since else 0
        entries, _, _ = self._matching(self.root)
        return [e for e in entries if e.created_at >= low]

    # -- knobs ---------------------------------------------------------------------------------
    def expire_sessions(self, after: int = 0) -> None:
        """Invalidate every KS issued so far, once, after ``after`` more media.list calls."""
        with self._lock:
            self._expire_after = self.media_list_calls + after

    def fail_media_list(self, after: int | None = 0) -> None:
        """Every media.list after ``after`` more calls answers HTTP 500, for good.

        ``None`` heals the server.
        """
        with self._lock:
            self._fail_after = None if after is None else self.media_list_calls + after

    # -- API --------------------------------------------------------------------------------------
    def _dispatch_api(self, request: Request) -> Response:
        params = _params(request)
        service, action = _service_action(request, params)
        try:
            if (service, action) == ("session", "start"):
                # A bare JSON string (json_response would send a str as plain text).
                body = json.dumps(self._session_start(params)).encode("ascii")
                return Response(200, body, {"Content-Type": "application/json"})
            if (service, action) in (("media", "list"), ("baseentry", "list")):
                fail = self._count_media_list()
                if fail:
                    return Response(500, "Internal Server Error\n")
                return json_response(self._media_list(params))
            raise KalturaError("SERVICE_DOES_NOT_EXISTS",
                               f"Service [{service}] does not exists", SERVICE=service)  # fmt: skip
        except KalturaError as err:
            return json_response(err.body())

    def _count_media_list(self) -> bool:
        """Count a media.list call; apply the expiry knob; True when it must fail."""
        with self._lock:
            self.media_list_calls += 1
            if self._expire_after is not None and self.media_list_calls > self._expire_after:
                self._sessions.clear()
                self._expire_after = None
            return self._fail_after is not None and self.media_list_calls > self._fail_after

    def _session_start(self, params: dict[str, str]) -> str:
        partner = params.get("partnerId", "")
        if partner != str(self.partner_id) or not secrets.compare_digest(
            params.get("secret", ""), self.admin_secret
        ):
            raise KalturaError("START_SESSION_ERROR",
                               f"Error while starting session for partner [{partner}]",
                               PARTNER_ID=partner)  # fmt: skip
        kind = _int(params, "type", USER)
        raw = f"v2|{self.partner_id}|{secrets.token_hex(24)}".encode()
        ks = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        with self._lock:
            self._sessions[ks] = kind
            self.issued_ks.append(ks)
        return ks

    def _check_ks(self, params: dict[str, str]) -> None:
        ks = params.get("ks")
        if not ks:
            raise KalturaError("MISSING_KS", "Missing KS, session not established")
        with self._lock:
            kind = None if self.reject_sessions else self._sessions.get(ks)
        if kind is None:
            raise KalturaError("INVALID_KS", f'Invalid KS "{ks}" Error "-1,INVALID_STR"',
                               KSID=ks, ERR_CODE="-1", ERR_DESC="INVALID_STR")  # fmt: skip
        if kind != ADMIN:
            raise KalturaError("SERVICE_FORBIDDEN", "The access to service [media->list] "
                               "is forbidden")  # fmt: skip

    def _media_list(self, params: dict[str, str]) -> dict[str, Any]:
        self._check_ks(params)
        size = min(max(_int(params, "pager[pageSize]", DEFAULT_PAGE_SIZE), 1), MAX_PAGE_SIZE)
        index = max(_int(params, "pager[pageIndex]", 1), 1)
        if size * index > MAX_MATCHES:
            message = "Unable to generate list. max matches value was reached"
            raise KalturaError("QUERY_EXCEEDED_MAX_MATCHES_ALLOWED", message)
        query = self._query(params)
        skip, page = (index - 1) * size, []
        for seen, entry in enumerate(query.walk()):
            if seen >= skip:
                page.append(entry.as_api(self.partner_id))
                if len(page) == size:
                    break
        return {
            "objectType": "KalturaMediaListResponse",
            "totalCount": query.count(),
            "objects": page,
        }

    def _query(self, params: dict[str, str]) -> _Query:
        names = params.get("filter[categoriesFullNameIn]")
        entries, created, positions = self._matching(names)
        low = _int(params, "filter[createdAtGreaterThanOrEqual]", None)
        high = _int(params, "filter[createdAtLessThanOrEqual]", None)
        order = params.get("filter[orderBy]", "-createdAt")
        if order not in ("+createdAt", "-createdAt"):
            raise KalturaError("INVALID_ORDER_BY", f"Unsupported orderBy [{order}]")
        return _Query(
            entries,
            positions,
            lo=bisect.bisect_left(created, low) if low is not None else 0,
            hi=bisect.bisect_right(created, high) if high is not None else len(created),
            ascending=order == "+createdAt",
            excluded=set(filter(None, params.get("filter[idNotIn]", "").split(","))),
            only=set(filter(None, params.get("filter[idIn]", "").split(","))) or None,
        )

    def _matching(self, names: str | None) -> _Matches:
        """Entries in (or under) any of the comma-separated category names, cached:
        the entries in order, their createdAt values and each id's position."""
        key = names or ""
        with self._lock:
            cached = self._match_cache.get(key)
            if cached is None:
                wanted = [n for n in key.split(",") if n]
                entries = [e for e in self._entries if not wanted or _in_categories(e, wanted)]
                positions = {e.id: i for i, e in enumerate(entries)}
                cached = (entries, [e.created_at for e in entries], positions)
                self._match_cache[key] = cached
            return cached


_Matches = tuple[list[MediaEntry], list[int], dict[str, int]]


@dataclass(frozen=True)
class _Query:
    """One media.list filter over the cached matches: positions ``lo..hi`` by createdAt."""

    entries: list[MediaEntry]
    positions: dict[str, int]
    lo: int
    hi: int
    ascending: bool
    excluded: set[str]
    only: set[str] | None

    def walk(self) -> Iterator[MediaEntry]:
        span = range(self.lo, self.hi) if self.ascending else range(self.hi - 1, self.lo - 1, -1)
        for i in span:
            entry = self.entries[i]
            if entry.id not in self.excluded and (self.only is None or entry.id in self.only):
                yield entry

    def count(self) -> int:
        """totalCount without walking every match."""

        def inside(entry_id: str) -> bool:
            pos = self.positions.get(entry_id)
            return pos is not None and self.lo <= pos < self.hi

        if self.only is None:
            return self.hi - self.lo - sum(1 for x in self.excluded if inside(x))
        return sum(1 for x in self.only if inside(x) and x not in self.excluded)


# -- helpers ------------------------------------------------------------------------------


def _categories(
    rng: random.Random, root: str, course_ids: Sequence[int], in_root: bool = False
) -> tuple[list[str], set[tuple[int, bool]]]:
    """Categories of a new entry and the (course, in_context) links they encode."""
    cats: list[str] = []
    courses: set[tuple[int, bool]] = set()
    channels = f"{root}>site>channels>"
    if course_ids:
        for course in rng.sample(list(course_ids), k=min(len(course_ids), rng.choice((1, 1, 2)))):
            if rng.random() < 0.8:
                cats.append(f"{channels}{course}")
                courses.add((course, False))
            if rng.random() < 0.6:
                cats.append(f"{channels}{course}>InContext")
                courses.add((course, True))
    junk = [
        f"{channels}Shared Repository", f"{channels}{rng.getrandbits(24):06x}a",
        f"{root}>site>galleries>{rng.choice(course_ids) if course_ids else 7}",
        f"Other_Root>site>channels>{rng.randrange(1, 99999)}",
        f"{root}2>site>channels>{rng.randrange(1, 99999)}",
        f"{channels}{rng.randrange(1, 99999)}>Sub",
    ]  # fmt: skip
    if rng.random() < 0.25 or not cats:
        cats.append(rng.choice(junk))
    if not in_root and rng.random() < 0.03:  # outside the root only: not listed at all
        return [f"Other_Root>site>channels>{rng.randrange(1, 99999)}"], set()
    if not any(c == root or c.startswith(root + ">") for c in cats):
        cats.append(f"{channels}Shared Repository")  # keep it listed under the root
    rng.shuffle(cats)
    return cats, courses


def _in_categories(entry: MediaEntry, names: list[str]) -> bool:
    return any(c == n or c.startswith(n + ">") for c in entry.categories for n in names)


def _category_id(name: str) -> int:
    return 10_000 + zlib.crc32(name.encode("utf-8")) % 9_000_000


def _params(request: Request) -> dict[str, str]:
    """Query, form-body and JSON-body parameters, flattened to bracket names."""
    params = {k: v[-1] for k, v in request.query.items() if v}
    ctype = request.headers.get("content-type", "")
    if request.body and "json" in ctype:
        try:
            body = request.json()
        except ValueError:
            raise KalturaError("INVALID_JSON", "Invalid JSON body") from None
        if isinstance(body, dict):
            params.update(_flatten(body))
    elif request.body:
        params.update({k: v[-1] for k, v in request.form().items() if v})
    return params


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in obj.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, dict):
            out.update(_flatten(value, name))
        elif value is not None:
            out[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _service_action(request: Request, params: dict[str, str]) -> tuple[str, str]:
    if request.match and request.match.re.groups == 2:
        return request.match.group(1).lower(), request.match.group(2).lower()
    parts = request.path.strip("/").split("/")
    if len(parts) >= 5 and parts[1] == "service":
        return parts[2].lower(), parts[4].lower()
    return params.get("service", "").lower(), params.get("action", "").lower()


def _int(params: dict[str, str], name: str, default: int | None) -> Any:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise KalturaError("PROPERTY_VALIDATION_WRONG_FORMAT",
                           f"Wrong format for {name}", PROP_NAME=name) from None  # fmt: skip
