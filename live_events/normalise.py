"""Canvas ids, Caliper URNs and event times into local integer ids and naive UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

SHARD_FACTOR = 10**13
URN_PREFIX = "urn:instructure:canvas:"

_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(Z|UTC|[+-]\d{2}(?::?\d{2})?)?$",
    re.IGNORECASE,
)


def local_id(value: Any) -> int | None:
    """A Canvas id (global ``shard * 10**13 + id`` or local; string or number) -> local id.

    None for absent or unreadable values (the caller decides whether that matters).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        return None
    return number % SHARD_FACTOR if number >= SHARD_FACTOR else number


def urn_id(urn: Any, kind: str) -> int | None:
    """The local id of entity ``kind`` named in a Caliper URN, else None.

    ``urn:instructure:canvas:course:21070000000000565`` -> 565 for kind ``course``;
    compound URNs (``...:course:<id>:section:<id>``) are searched for ``kind``.
    """
    if not isinstance(urn, str) or not urn.startswith(URN_PREFIX):
        return None
    parts = urn[len(URN_PREFIX) :].split(":")
    for i in range(len(parts) - 1):
        if parts[i] == kind:
            return local_id(parts[i + 1])
    return None


def urn_kind(urn: Any) -> str | None:
    """The entity type segment of a Caliper URN (``course``, ``wikiPage``, ...)."""
    if not isinstance(urn, str) or not urn.startswith(URN_PREFIX):
        return None
    rest = urn[len(URN_PREFIX) :]
    # "quizzes:quiz:<id>", "lti/tool_proxy:<id>": everything before the last id segment.
    head, _, _ = rest.rpartition(":")
    return head or None


def parse_time(value: Any) -> datetime | None:
    """An event time (ISO 8601 or Canvas's "2019-11-05 07:38:00 -0800") -> naive UTC.

    A time without an offset is taken as UTC. None when unreadable.
    """
    if not isinstance(value, str):
        return None
    match = _TIME.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            micro,
            tzinfo=_zone(offset),
        )
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None)


def _zone(offset: str | None) -> timezone:
    if not offset or offset.upper() in ("Z", "UTC"):
        return UTC
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:4] or 0)
    return timezone(sign * timedelta(minutes=minutes))


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)
