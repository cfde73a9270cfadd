"""Logging setup for the entry points, with secret redaction on every handler.

Only entry points call ``setup_logging``; library modules just use ``logging.getLogger``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

REDACTED = "[REDACTED]"
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")


class Redactor:
    """Replaces every known secret value in a text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        merged = {*self._secrets, *(s for s in secrets if s and len(s) >= 4)}
        self._secrets = sorted(merged, key=len, reverse=True)  # longest first

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


class RedactingFormatter(logging.Formatter):
    """Formats the record (message, arguments and traceback), then redacts secrets.

    Times are UTC in ISO 8601 with a ``Z`` (``2026-03-12T02:30:00.123Z``), the zone
    ``job_run`` times are stored in.
    """

    converter = time.gmtime
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self, redactor: Redactor, fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))


# Attributes every LogRecord has; anything else came from ``extra=`` and is a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line for log shippers, redacted like every other line.

    ``{"time": "2026-03-12T02:30:00.123Z", "level": "INFO", "logger": "job.mivideo",
    "job": "MIVIDEO", "event": "the message", "fields": {...}}``: ``job`` is the job
    running when the line was logged (null outside jobs), ``fields`` what the call passed
    with ``extra=`` (absent when none), ``exception`` the traceback text when there is one.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "job": current_job(),
            "event": record.getMessage(),
        }
        fields = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}
        if fields:
            entry["fields"] = fields
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self.redactor(json.dumps(_redacted(entry, self.redactor), default=str))


def _redacted(value: Any, redact: Redactor) -> Any:
    """``value`` with every string redacted (before JSON escaping can hide a secret)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_redacted(v, redact) for v in value]
    return value


_job: str | None = None  # the job running now (jobs run one at a time, workers in threads)


def current_job() -> str | None:
    return _job


@contextmanager
def job_scope(name: str) -> Iterator[None]:
    """Tag every log line written while the block runs with job ``name``."""
    global _job
    previous, _job = _job, name
    try:
        yield
    finally:
        _job = previous


_redactor = Redactor()


def redactor() -> Redactor:
    """The process-wide redactor used by the handlers ``setup_logging`` installs."""
    return _redactor


def setup_logging(
    level: str = "INFO", secrets: Iterable[str] = (), log_format: str = "text"
) -> Redactor:
    """Log to stderr at ``level`` with secrets redacted; idempotent.

    ``log_format``: ``text`` (one line per event for people) or ``json`` (one JSON object
    per line for machines, see ``JsonFormatter``).
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    _redactor.add(secrets)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_course_inventory", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter(_redactor) if log_format == "json" else RedactingFormatter(_redactor)
    handler.setFormatter(formatter)
    handler._course_inventory = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries that log request URLs or connection strings at DEBUG stay at WARNING.
    for noisy in ("urllib3", "google", "yoyo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return _redactor


def in_words(counts: Mapping[str, float]) -> str:
    """HTTP counters for a log line: ``1,204 requests, 3 retries, 0 throttled, ...``."""
    parts = []
    for name, value in counts.items():
        shown = f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"
        label = name.replace("_", " ")
        parts.append(f"{label} {shown}" if name in _LABEL_FIRST else f"{shown} {label}")
    return ", ".join(parts) or "no requests"


_LABEL_FIRST = {"cost", "min_remaining", "elapsed_s"}
