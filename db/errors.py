"""Short, data-free reasons for database errors (what ``job_run.reason`` may hold).

SQLAlchemy's text of a DBAPIError carries the SQL statement and its parameters, and the
drivers add context lines (PostgreSQL's ``DETAIL``/``CONTEXT``: the key values, the row of a
COPY). None of that may reach ``job_run.reason`` or a log line a dashboard shows: only the
driver's one-line message is kept, with the values MySQL quotes inside it removed.
"""

from __future__ import annotations

import re

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

REASON_MAX = 300

# MySQL/MariaDB messages that quote a row value: the value is dropped, the names kept.
_VALUE_PATTERNS = (
    (re.compile(r"Duplicate entry '.*?' for key"), "Duplicate entry for key"),
    (re.compile(r"(value|string|datetime|date|time): '.*?' for"), r"\1 for"),
    (re.compile(r"value '.*?'"), "value"),
)


DRIVER_MODULES = ("psycopg2", "pymysql", "sqlite3")


def is_db_error(exc: BaseException) -> bool:
    """A SQLAlchemy error or a driver's own (raised by raw cursors: COPY, LOAD DATA)."""
    module = type(exc).__module__ or ""
    return isinstance(exc, SQLAlchemyError) or module.split(".")[0] in DRIVER_MODULES


def short_db_reason(exc: BaseException) -> str:
    """``database error (<driver error class>): <first line of its message>``, no SQL or rows."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        orig: BaseException | None = exc.orig
    elif isinstance(exc, SQLAlchemyError):
        orig = None
    else:
        orig = exc
    kind = type(orig).__name__ if orig is not None else type(exc).__name__
    message = str(orig) if orig is not None else _without_sql(str(exc))
    first = (message.strip().splitlines() or [""])[0]
    if orig is not None and getattr(orig, "args", None) and isinstance(orig.args[-1], str):
        first = orig.args[-1].strip().splitlines()[0] if orig.args[-1].strip() else first
    for pattern, replacement in _VALUE_PATTERNS:
        first = pattern.sub(replacement, first)
    return f"database error ({kind}): {first}"[:REASON_MAX]


def _without_sql(text: str) -> str:
    return text.split("[SQL:", 1)[0].split("(Background on this error", 1)[0]
