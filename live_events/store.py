"""Storing a batch of read events: ONE transaction per call (see the package docstring).

Idempotence: ``live_event.event_key`` is unique; rows are inserted with "insert or do
nothing" and tagged with this call's ``batch_id``, so the rows this call really inserted
are read back by that tag. Only those rows move the projections and the drift counts:
a duplicate (in the batch, already stored, or being stored by a concurrent caller, whose
insert the database makes us wait for) changes nothing.

State tables keep, per row, the (event_time, event_key) of the event that set it and
only take a newer one, so any arrival order and any number of concurrent callers end
with the same rows. Counts are added, and only from inserted events, so they never
double. Deadlocks and serialization failures between concurrent callers are retried.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from courseinv.db.tables import (
    live_course_activity_hourly,
    live_course_state,
    live_enrollment_state,
    live_event,
    live_event_field_drift,
    live_event_rejected,
    lti_resource_link,
)
from courseinv.live_events.model import (
    Activity,
    CourseState,
    EnrollmentState,
    ParsedEvent,
    Rejected,
    ResourceLink,
)
from courseinv.live_events.normalise import hour_of
from sqlalchemy import Connection, Engine, Table, and_, case, or_, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

ATTEMPTS = 6
CHUNK = 500  # rows per IN (...) list
PATH_MAX = live_event_field_drift.c.field_path.type.length


@dataclass
class BatchResult:
    """What one ``store_batch`` call did."""

    inserted: int = 0  # new live_event rows
    duplicates: int = 0  # events already stored or repeated in the batch
    rejected: int = 0  # rejects in the batch (the table keeps a repeated one once)
    unhandled: int = 0  # inserted events of types the project does not project
    projected: Counter[str] = field(default_factory=Counter)  # table -> rows written
    drift: int = 0  # unknown field occurrences recorded
    truncated: int = 0  # projection values cut to their column's size
    attempts: int = 1  # transactions tried (> 1 after a deadlock)


def store_batch(engine: Engine, items: Sequence[ParsedEvent | Rejected]) -> BatchResult:
    """Store ``items`` in one transaction; retry deadlocks; raise on any other failure."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                result = _store(conn, items)
            result.attempts = attempt
            return result
        except DBAPIError as error:
            if attempt == ATTEMPTS or not _is_conflict(error):
                raise
            log.info("LIVE_EVENTS: transaction conflict (attempt %d), retrying", attempt)
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")


def _is_conflict(error: DBAPIError) -> bool:
    """A deadlock, lock timeout or serialization failure: retrying can succeed."""
    orig = error.orig
    code = getattr(orig, "pgcode", None)
    if code in ("40001", "40P01"):
        return True
    args = getattr(orig, "args", ())
    if args and args[0] in (1205, 1213):  # MySQL lock wait timeout, deadlock
        return True
    return "database is locked" in str(orig)


def _store(conn: Connection, items: Sequence[ParsedEvent | Rejected]) -> BatchResult:
    now = datetime.now(UTC).replace(tzinfo=None)
    result = BatchResult()
    events: dict[str, ParsedEvent] = {}
    rejects: list[Rejected] = []
    for item in items:
        if isinstance(item, Rejected):
            rejects.append(item)
        elif item.event_key in events:
            result.duplicates += 1
        else:
            events[item.event_key] = item
    new = _insert_events(conn, events, now)
    result.duplicates += len(events) - len(new)
    result.inserted = len(new)
    result.unhandled = sum(not e.handled for e in new)
    result.truncated = sum(len(e.truncated) for e in new)
    result.projected = _project(conn, new)
    result.drift = _record_drift(conn, new, now)
    result.rejected = _insert_rejects(conn, rejects, now)
    return result


# --- live_event ------------------------------------------------------------------------


def _insert_events(
    conn: Connection, events: dict[str, ParsedEvent], now: datetime
) -> list[ParsedEvent]:
    """Insert the events whose key is new; return those (this call's batch_id tells)."""
    if not events:
        return []
    batch_id = str(uuid.uuid4())
    text = _text_param(conn)
    rows = [
        {
            "event_key": e.event_key,
            "event_name": e.event_name,
            "event_format": e.event_format,
            "event_time": e.event_time,
            "received_at": now,
            "course_id": e.course_id,
            "user_id": e.user_id,
            "payload": text(e.payload),
            "batch_id": batch_id,
            "source": e.source,
        }
        for _, e in sorted(events.items())
    ]
    conn.execute(_insert_or_ignore(conn, live_event, ["event_key"]), rows)
    keys = list(events)
    inserted: set[str] = set()
    for start in range(0, len(keys), CHUNK):
        query = select(live_event.c.event_key).where(
            live_event.c.event_key.in_(keys[start : start + CHUNK]),
            live_event.c.batch_id == batch_id,
        )
        inserted.update(conn.execute(query).scalars())
    return [events[k] for k in sorted(inserted)]


def _insert_rejects(conn: Connection, rejects: list[Rejected], now: datetime) -> int:
    if not rejects:
        return 0
    text = _text_param(conn)
    rows = {}
    for r in rejects:
        key = hashlib.sha256(f"{r.source}\0{r.reason}\0{r.payload}".encode()).hexdigest()
        rows[key] = {
            "received_at": now,
            "source": r.source,
            "reason": r.reason,
            "payload": text(r.payload),
            "reject_key": key,
        }
    ordered = [rows[k] for k in sorted(rows)]
    conn.execute(_insert_or_ignore(conn, live_event_rejected, ["reject_key"]), ordered)
    return len(rejects)


# --- projections -----------------------------------------------------------------------


def _project(conn: Connection, new: list[ParsedEvent]) -> Counter[str]:
    by_type: dict[type, list[ParsedEvent]] = {}
    for e in new:
        if e.projection is not None:
            by_type.setdefault(type(e.projection), []).append(e)
    written: Counter[str] = Counter()
    for kind, writer in _WRITERS.items():
        if by_type.get(kind):
            table, count = writer(conn, by_type[kind])
            written[table.name] = count
    return written


def _newest(
    events: Iterable[ParsedEvent], key: Callable[[ParsedEvent], Any]
) -> dict[Any, ParsedEvent]:
    """The event with the greatest (event_time, event_key) per projection key."""
    best: dict[Any, ParsedEvent] = {}
    for e in events:
        k = key(e)
        if k not in best or (e.event_time, e.event_key) > (best[k].event_time, best[k].event_key):
            best[k] = e
    return best


@dataclass(frozen=True)
class _State:
    """A state table: one row per ``key`` holding the newest event's ``fields``."""

    table: Table
    key: str
    fields: tuple[str, ...]


_COURSES = _State(live_course_state, "course_id", ("name",))
_ENROLLMENTS = _State(
    live_enrollment_state,
    "enrollment_id",
    ("course_id", "course_section_id", "user_id", "type", "workflow_state"),
)
_LINKS = _State(
    lti_resource_link,
    "lookup_uuid",
    ("course_id", "context_external_tool_id", "url", "title", "workflow_state"),
)


def _newest_rows(state: _State, events: Iterable[ParsedEvent]) -> dict[Any, dict[str, Any]]:
    """Per key, the row the newest event of ``events`` sets (fields, time and key)."""
    newest = _newest(events, lambda e: getattr(e.projection, state.key))
    return {
        k: {
            state.key: k,
            **{f: getattr(e.projection, f) for f in state.fields},
            "event_time": e.event_time,
            "event_key": e.event_key,
        }
        for k, e in sorted(newest.items())
    }


def _write_state(
    conn: Connection, events: list[ParsedEvent], *, state: _State
) -> tuple[Table, int]:
    rows = list(_newest_rows(state, events).values())
    t = state.table
    _upsert_newest(conn, t, [state.key], rows, [(state.fields, t.c.event_time, t.c.event_key)])
    return t, len(rows)


def _write_courses(conn: Connection, events: list[ParsedEvent]) -> tuple[Table, int]:
    """Courses: the name follows the newest event, ``workflow_state`` the newest event
    that carries one (with its own time and key columns)."""
    rows = _newest_rows(_COURSES, events)
    states = _newest(
        (e for e in events if e.projection.workflow_state is not None),
        lambda e: e.projection.course_id,
    )
    for course_id, row in rows.items():
        s = states.get(course_id)
        row["workflow_state"] = s.projection.workflow_state if s else None
        row["workflow_state_time"] = s.event_time if s else None
        row["workflow_state_key"] = s.event_key if s else None
    t = live_course_state
    groups = [
        (_COURSES.fields, t.c.event_time, t.c.event_key),
        (("workflow_state",), t.c.workflow_state_time, t.c.workflow_state_key),
    ]
    _upsert_newest(conn, t, [_COURSES.key], list(rows.values()), groups)
    return t, len(rows)


def _write_activity(conn: Connection, events: list[ParsedEvent]) -> tuple[Table, int]:
    totals: dict[tuple[int, datetime, int], list[int]] = {}
    for e in events:
        a: Activity = e.projection
        counts = totals.setdefault((a.course_id, hour_of(e.event_time), a.user_id), [0, 0])
        counts[0] += a.page_views
        counts[1] += a.participations
    rows = [
        {"course_id": c, "hour_utc": h, "user_id": u, "page_views": v, "participations": p}
        for (c, h, u), (v, p) in sorted(totals.items())
    ]
    _upsert_add(
        conn,
        live_course_activity_hourly,
        ["course_id", "hour_utc", "user_id"],
        rows,
        ["page_views", "participations"],
    )
    return live_course_activity_hourly, len(rows)


_WRITERS: dict[type, Callable[[Connection, list[ParsedEvent]], tuple[Table, int]]] = {
    CourseState: _write_courses,
    EnrollmentState: partial(_write_state, state=_ENROLLMENTS),
    ResourceLink: partial(_write_state, state=_LINKS),
    Activity: _write_activity,
}


# --- drift -----------------------------------------------------------------------------


def _record_drift(conn: Connection, new: list[ParsedEvent], now: datetime) -> int:
    counts: Counter[tuple[str, str, str]] = Counter()
    for e in new:
        for path in e.drift:
            counts[(e.event_name, e.event_format, path[:PATH_MAX])] += 1
    if not counts:
        return 0
    rows = [
        {
            "event_name": n,
            "event_format": f,
            "field_path": p,
            "first_seen_at": now,
            "last_seen_at": now,
            "occurrences": c,
        }
        for (n, f, p), c in sorted(counts.items())
    ]
    t = live_event_field_drift
    stmt, new_value = _upsert_statement(conn, t)
    keys = ["event_name", "event_format", "field_path"]
    sets = {
        "last_seen_at": new_value("last_seen_at"),
        "occurrences": t.c.occurrences + new_value("occurrences"),
    }
    conn.execute(_on_conflict(conn, stmt, keys, sets), rows)
    return sum(counts.values())


# --- dialect-specific statements -------------------------------------------------------


def _upsert_statement(conn: Connection, table: Table) -> tuple[Any, Callable[[str], Any]]:
    """An INSERT of the dialect, and how to name the value a row brought for a column."""
    name = conn.dialect.name
    module = {"mysql": mysql, "postgresql": postgresql, "sqlite": sqlite}.get(name)
    if module is None:
        raise NotImplementedError(f"LIVE_EVENTS does not support the {name} dialect")
    stmt = module.insert(table)
    brought = stmt.inserted if name == "mysql" else stmt.excluded
    return stmt, lambda column: brought[column]


def _on_conflict(conn: Connection, stmt: Any, keys: list[str], sets: dict[str, Any]) -> Any:
    if conn.dialect.name == "mysql":
        # A list of pairs, not a dict: SQLAlchemy then keeps this order of assignments
        # (a dict would be put in table column order), which _upsert_newest relies on.
        return stmt.on_duplicate_key_update(list(sets.items()))
    return stmt.on_conflict_do_update(index_elements=keys, set_=sets)


def _insert_or_ignore(conn: Connection, table: Table, keys: list[str]) -> Any:
    stmt, _ = _upsert_statement(conn, table)
    if conn.dialect.name == "mysql":
        # A no-op update, not INSERT IGNORE (which would also hide real errors).
        return stmt.on_duplicate_key_update({keys[0]: table.c[keys[0]]})
    return stmt.on_conflict_do_nothing(index_elements=keys)


def _text_param(conn: Connection) -> Callable[[str], str | bytes]:
    """How to bind a long text value. MySQL: as its UTF-8 bytes, which PyMySQL sends as a
    hex literal (the column's charset reads them as text) instead of escaping the text
    character by character (~20x the CPU for JSON, the store's largest cost)."""
    if conn.dialect.name == "mysql":
        return str.encode
    return str


def _upsert_add(
    conn: Connection, table: Table, keys: list[str], rows: list[dict[str, Any]], counters: list[str]
) -> None:
    if not rows:
        return
    stmt, new_value = _upsert_statement(conn, table)
    sets = {c: table.c[c] + new_value(c) for c in counters}
    conn.execute(_on_conflict(conn, stmt, keys, sets), rows)


def _upsert_newest(
    conn: Connection,
    table: Table,
    keys: list[str],
    rows: list[dict[str, Any]],
    groups: list[tuple[tuple[str, ...], Any, Any]],
) -> None:
    """Upsert ``rows``; each group (fields, time column, key column) takes the row's
    values only when the row's (time, key) is greater than the stored one (or none is).

    MySQL applies ON DUPLICATE KEY assignments in order, each seeing the columns already
    assigned: the fields go first, then the key column, then the time column (comparing
    against the key just written keeps that last test right).
    """
    if not rows:
        return
    stmt, new_value = _upsert_statement(conn, table)
    sets: dict[str, Any] = {}
    for fields, time_col, key_col in groups:
        new_time, new_key = new_value(time_col.name), new_value(key_col.name)
        newer = and_(
            new_time.is_not(None),
            or_(
                time_col.is_(None),
                new_time > time_col,
                and_(new_time == time_col, new_key > key_col),
            ),
        )
        for column in (*fields, key_col.name, time_col.name):
            sets[column] = case((newer, new_value(column)), else_=table.c[column])
    conn.execute(_on_conflict(conn, stmt, keys, sets), rows)
