"""Checked reads of external API payloads: each field a job uses, checked where it is read.

``Fields(obj, endpoint)`` wraps one object (a Canvas course, a Kaltura entry, a BigQuery
row, ...). Its readers return the field as the type the job needs or raise ``PayloadError``,
a ``JobError`` whose message names the endpoint, the object's id and the field, e.g.::

    /api/v1/accounts/1/courses: course 500002: total_students is null (expected an integer)

Ids are whole numbers given as JSON integers or strings of digits; "500002.0", 500002.5,
true and "" are errors. Nothing is silently dropped or defaulted: a field the job relies on
(``required=True``) that is missing or null is an error too. Messages quote at most a short,
shortened rendering of the offending value (never a whole object or row).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from courseinv.runner.jobs import JobError

_DIGITS = re.compile(r"-?\d+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
VALUE_MAX = 40


class PayloadError(JobError):
    """An external API answered with a missing, null or malformed field the job needs."""

    def __init__(self, endpoint: str, what: str, field: str, problem: str) -> None:
        super().__init__(f"{endpoint}: {what}: {field} {problem}")
        self.endpoint, self.what, self.field = endpoint, what, field


def shown(value: Any) -> str:
    """A short rendering of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= VALUE_MAX else text[: VALUE_MAX - 1] + "…"


def as_int(value: Any) -> int | None:
    """``value`` as a whole number when it is one (int or digit string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value)
    return None


def as_datetime(value: Any) -> datetime | None:
    """An ISO 8601 timestamp (``Z`` or an offset; naive is UTC) as aware UTC, else None."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and len(value) >= 10:
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Fields:
    """Typed, checked access to one object of an external API."""

    def __init__(
        self, obj: Any, endpoint: str, kind: str, *, id_field: str | None = "id",
        object_id: Any = None,
    ) -> None:  # fmt: skip
        self.endpoint, self.kind = endpoint, kind
        raw_id = object_id
        if raw_id is None and id_field and isinstance(obj, Mapping):
            raw_id = obj.get(id_field)
        self.what = f"{kind} {raw_id}" if raw_id is not None else f"a {kind} without an id"
        if not isinstance(obj, Mapping):
            self.fail("(the object)", f"is {shown(obj)} (expected a JSON object)")
        self.obj: Mapping[str, Any] = obj

    def fail(self, name: str, problem: str) -> None:
        raise PayloadError(self.endpoint, self.what, name, problem)

    def _get(self, name: str, required: bool, expected: str) -> Any:
        if name not in self.obj:
            if required:
                self.fail(name, f"is missing (expected {expected})")
            return None
        value = self.obj[name]
        if value is None and required:
            self.fail(name, f"is null (expected {expected})")
        return value

    def int(self, name: str, *, required: bool = True, minimum: int | None = None) -> int | None:
        """A whole number (JSON integer or digit string); ``minimum`` bounds it."""
        value = self._get(name, required, "an integer")
        if value is None:
            return None
        number = as_int(value)
        if number is None:
            self.fail(name, f"is {shown(value)} (expected an integer)")
        if minimum is not None and number < minimum:
            self.fail(name, f"is {number} (expected at least {minimum})")
        return number

    def id(self, name: str = "id") -> int:
        """A required positive id."""
        value = self.int(name, minimum=1)
        assert value is not None
        return value

    def str(self, name: str, *, required: bool = True) -> str | None:
        value = self._get(name, required, "a string")
        if value is not None and not isinstance(value, str):
            self.fail(name, f"is {shown(value)} (expected a string)")
        return value

    def text(self, name: str, *, required: bool = True) -> str | None:
        """A string, or a number given where a string is expected (kept as its text)."""
        value = self._get(name, required, "a string")
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        self.fail(name, f"is {shown(value)} (expected a string)")
        return None

    def bool(self, name: str, *, required: bool = True) -> bool | None:
        value = self._get(name, required, "true or false")
        if value is not None and not isinstance(value, bool):
            self.fail(name, f"is {shown(value)} (expected true or false)")
        return value

    def timestamp(self, name: str, *, required: bool = True) -> str | None:
        """An ISO 8601 timestamp, checked, returned as given (frames parse it)."""
        value = self._get(name, required, "an ISO 8601 timestamp")
        if value is not None and as_datetime(value) is None:
            self.fail(name, f"is {shown(value)} (expected an ISO 8601 timestamp)")
        return value

    def utc(self, name: str, *, required: bool = True) -> datetime | None:
        """An ISO 8601 timestamp as an aware UTC datetime."""
        value = self._get(name, required, "an ISO 8601 timestamp")
        if value is None:
            return None
        moment = as_datetime(value)
        if moment is None:
            self.fail(name, f"is {shown(value)} (expected an ISO 8601 timestamp)")
        return moment

    def date(self, name: str, *, required: bool = True) -> date | None:
        """A calendar date (``YYYY-MM-DD``, optionally followed by a time)."""
        value = self._get(name, required, "a date")
        if value is None:
            return None
        if isinstance(value, str) and _DATE.match(value.strip()):
            try:
                return date.fromisoformat(value.strip()[:10])
            except ValueError:
                pass
        self.fail(name, f"is {shown(value)} (expected a date YYYY-MM-DD)")
        return None

    def object(self, name: str, kind: str, *, required: bool = True) -> Fields | None:
        """A nested object, checked the same way (errors still name this object)."""
        value = self._get(name, required, "an object")
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.fail(name, f"is {shown(value)} (expected an object)")
        nested = Fields(value, self.endpoint, kind)
        nested.what = f"{self.what}, {name}"
        return nested

    def list(self, name: str, *, required: bool = True) -> Sequence[Any] | None:
        value = self._get(name, required, "a list")
        if value is not None and not isinstance(value, list):
            self.fail(name, f"is {shown(value)} (expected a list)")
        return value


def checked_list(value: Any, endpoint: str, what: str) -> list[Any]:
    """A whole answer that must be a JSON list (e.g. analytics rows)."""
    if not isinstance(value, list):
        raise PayloadError(endpoint, what, "(the answer)", f"is {shown(value)} (expected a list)")
    return value
