"""Logging setup for the entry points, with secret redaction on every handler.

Only entry points call ``setup_logging``; library modules just use ``logging.getLogger``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

REDACTED = "[REDACTED]"
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


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
    """Formats the record (message, arguments and traceback), then redacts secrets."""

    def __init__(self, redactor: Redactor, fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))


_redactor = Redactor()


def redactor() -> Redactor:
    """The process-wide redactor used by the handlers ``setup_logging`` installs."""
    return _redactor


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> Redactor:
    """Log to stderr at ``level`` with secrets redacted; idempotent."""
    _redactor.add(secrets)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_course_inventory", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(_redactor))
    handler._course_inventory = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries that log request URLs or connection strings at DEBUG stay at WARNING.
    for noisy in ("urllib3", "google", "yoyo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return _redactor
