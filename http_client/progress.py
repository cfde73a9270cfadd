"""Progress of a long phase: items done / total and rate.

On a terminal one line is rewritten in place (at most ~10 times a second); otherwise
a plain ``logging`` INFO line is written at most every ``interval`` seconds, plus a
final summary line either way. Thread-safe: fan-out workers may call ``advance``.

    with Progress("analytics", total=len(ids)) as progress:
        for ...:
            progress.advance()
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

log = logging.getLogger(__name__)

ProgressFactory = Callable[[str, int | None], "Progress"]


class Progress:
    """Counts finished (and skipped) items and reports them politely."""

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        interval: float = 10.0,
        tty: bool | None = None,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.desc = desc
        self.total = total
        self.done = 0
        self.skipped = 0
        self._stream = stream or sys.stderr
        self._tty = _isatty(self._stream) if tty is None else tty
        self._interval = 0.1 if self._tty else interval
        self._log = logger or log
        self._clock = clock
        self._start = clock()
        self._last_report = self._start
        self._lock = threading.Lock()
        self._closed = False

    def advance(self, n: int = 1, *, skipped: bool = False) -> None:
        """Count ``n`` more items as done (``skipped=True``: done, but skipped)."""
        with self._lock:
            self.done += n
            if skipped:
                self.skipped += n
            now = self._clock()
            if now - self._last_report >= self._interval:
                self._last_report = now
                self._report(now, final=False)

    def close(self) -> None:
        """Write the final line (once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._report(self._clock(), final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def line(self, now: float | None = None) -> str:
        """The status text, e.g. ``analytics: 120/5000 (2.4%), 35.2/s, ETA 2m18s``."""
        elapsed = max(1e-9, (self._clock() if now is None else now) - self._start)
        rate = self.done / elapsed
        parts = [f"{self.desc}: {self.done}"]
        if self.total is not None:
            pct = 100.0 * self.done / self.total if self.total else 100.0
            parts[0] += f"/{self.total} ({pct:.1f}%)"
        parts.append(f"{rate:.1f}/s")
        if self.total is not None and rate > 0 and self.done < self.total:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        parts.append(f"elapsed {_duration(elapsed)}")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        return ", ".join(parts)

    def _report(self, now: float, *, final: bool) -> None:
        text = self.line(now)
        if self._tty:
            self._stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
            self._stream.flush()
        else:
            self._log.info("%s%s", text, " (done)" if final else "")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
