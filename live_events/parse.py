"""Reading one delivery: format, schema check, event key, normalised ids and times, drift.

See the package docstring for the contract of ``read_events`` / ``read_event``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from courseinv.db.tables import (
    live_course_state,
    live_enrollment_state,
    live_event,
    lti_resource_link,
)
from courseinv.live_events.caliper_names import caliper_event_name
from courseinv.live_events.model import ParsedEvent, Projection, Rejected
from courseinv.live_events.normalise import local_id, parse_time
from courseinv.live_events.project import (
    caliper_course_id,
    caliper_projection,
    caliper_user_id,
    canvas_course_id,
    canvas_projection,
)
from courseinv.live_events.schemas import Schema, schema

__all__ = ["ParsedEvent", "Rejected", "read_event", "read_events"]

NAME_MAX = live_event.c.event_name.type.length
SOURCE_MAX = live_event.c.source.type.length
# Projection text fields -> their column's size (longer values are cut and counted).
FIELD_MAX = {
    "name": live_course_state.c.name.type.length,
    "title": lti_resource_link.c.title.type.length,
    "url": lti_resource_link.c.url.type.length,
    "workflow_state": live_course_state.c.workflow_state.type.length,
    "type": live_enrollment_state.c.type.type.length,
}


class _Unreadable(Exception):
    """Why a delivery or event cannot be read (becomes a ``Rejected``)."""


def read_events(
    payload: str | bytes | dict[str, Any], *, source: str
) -> list[ParsedEvent | Rejected]:
    """Every event of one delivery (see the package docstring). Never raises on bad input."""
    source = source[:SOURCE_MAX]
    try:
        text, document = _decode(payload)
    except _Unreadable as problem:
        return [Rejected(source, str(problem), _as_text(payload))]
    try:
        if isinstance(document, dict) and "metadata" in document and "body" in document:
            return [_canvas(document, text, source)]
        if isinstance(document, dict) and "data" in document:
            return _caliper(document, text, source)
        raise _Unreadable(
            "unknown envelope: expected Canvas raw {metadata, body} or a Caliper envelope "
            "{sensor, sendTime, dataVersion, data}"
        )
    except _Unreadable as problem:
        return [Rejected(source, str(problem), text)]


def read_event(payload: str | bytes | dict[str, Any], *, source: str) -> ParsedEvent | Rejected:
    """The one event of a delivery; a ``Rejected`` when it holds several (use read_events)."""
    items = read_events(payload, source=source)
    if len(items) == 1:
        return items[0]
    return Rejected(
        source[:SOURCE_MAX],
        f"payload holds {len(items)} events; read_events() reads each",
        _as_text(payload),
    )


# --- decoding --------------------------------------------------------------------------


def _as_text(payload: Any) -> str:
    if isinstance(payload, bytes):
        return payload.decode("utf-8", errors="backslashreplace")
    if isinstance(payload, str):
        return payload
    try:
        return json.dumps(payload, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(payload)


def _decode(payload: Any) -> tuple[str, Any]:
    if isinstance(payload, dict):
        return _as_text(payload), payload
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _Unreadable(f"not UTF-8 text: {error.reason} at byte {error.start}") from None
    if not isinstance(payload, str):
        raise _Unreadable(f"unsupported payload type {type(payload).__name__}")
    try:
        return payload, json.loads(payload)
    except (ValueError, RecursionError) as error:
        raise _Unreadable(f"not JSON: {str(error)[:200]}") from None


def _check(checker: Schema, value: Any, what: str) -> None:
    problems = checker.problems(value)
    if problems:
        raise _Unreadable(f"{what} fails schema {checker.name}: " + "; ".join(problems))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- Canvas raw ------------------------------------------------------------------------


def _canvas(document: dict[str, Any], text: str, source: str) -> ParsedEvent:
    name = _dict(document.get("metadata")).get("event_name")
    typed = schema("canvas", name) if isinstance(name, str) and name else None
    checker = typed or schema("canvas", "envelope")
    _check(checker, document, f"Canvas raw {name}" if typed else "Canvas raw event")
    metadata, body = document["metadata"], document["body"]
    event_time = parse_time(metadata["event_time"])
    if event_time is None:
        raise _Unreadable(f"metadata.event_time: unreadable time {metadata['event_time']!r:.80}")
    projection = canvas_projection(name, metadata, body) if typed else None
    key = "canvas:" + hashlib.sha256(_canonical(document).encode()).hexdigest()
    course_id = _course_of(projection) or canvas_course_id(metadata, body)
    return _event(
        key=key,
        name=name,
        fmt="canvas",
        event_time=event_time,
        course_id=course_id,
        user_id=local_id(metadata.get("user_id")),
        payload=text,
        source=source,
        checker=checker,
        handled=typed is not None,
        document=document,
        projection=projection,
    )


# --- Caliper ---------------------------------------------------------------------------


def _caliper(document: dict[str, Any], text: str, source: str) -> list[ParsedEvent | Rejected]:
    _check(schema("caliper", "envelope"), document, "Caliper envelope")
    events = document["data"]
    items: list[ParsedEvent | Rejected] = []
    for event in events:
        alone = text if len(events) == 1 else _as_text({**document, "data": [event]})
        try:
            items.append(_caliper_event(event, alone, source))
        except _Unreadable as problem:
            items.append(Rejected(source, str(problem), alone))
    return items


def _caliper_event(event: Any, text: str, source: str) -> ParsedEvent:
    name = caliper_event_name(event) if isinstance(event, dict) else None
    typed = schema("caliper", name) if name else None
    checker = typed or schema("caliper", "event")
    _check(checker, event, f"Caliper {name}" if typed else "Caliper event")
    event_time = parse_time(event["eventTime"])
    if event_time is None:
        raise _Unreadable(f"eventTime: unreadable time {event['eventTime']!r:.80}")
    projection = caliper_projection(name, event) if typed else None
    return _event(
        key=event["id"],
        name=name,
        fmt="caliper",
        event_time=event_time,
        course_id=_course_of(projection) or caliper_course_id(event),
        user_id=caliper_user_id(event),
        payload=text,
        source=source,
        checker=checker,
        handled=typed is not None,
        document=event,
        projection=projection,
    )


# --- common ----------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _course_of(projection: Projection | None) -> int | None:
    return getattr(projection, "course_id", None)


def _event(
    *,
    key: str,
    name: str,
    fmt: str,
    checker: Schema,
    document: Any,
    projection: Projection | None,
    **fields: Any,
) -> ParsedEvent:
    projection, truncated = _fit(projection)
    return ParsedEvent(
        event_key=key,
        event_name=name[:NAME_MAX],
        event_format=fmt,  # type: ignore[arg-type]
        schema=checker.name,
        drift=tuple(checker.unknown_fields(document)),
        projection=projection,
        truncated=truncated,
        **fields,
    )


def _fit(projection: Projection | None) -> tuple[Projection | None, tuple[str, ...]]:
    """Cut over-long text fields to their column's size; name what was cut."""
    if projection is None:
        return None, ()
    cuts = {
        name: value[:limit]
        for name, limit in FIELD_MAX.items()
        if isinstance(value := getattr(projection, name, None), str) and len(value) > limit
    }
    if not cuts:
        return projection, ()
    return dataclasses.replace(projection, **cuts), tuple(sorted(cuts))
