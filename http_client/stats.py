"""Per-run HTTP statistics: what the run report charts about the external APIs.

``collect_stats()`` (used by the runner around each job) gathers what every session
records while it is open. One ``HttpStats`` may also be shared by sessions (pass ``stats=`` to
``RetryingSession``, ``CanvasClient``, ``KalturaClient``, ``ZoomClient``); each session
records under its own ``api`` name (``canvas``, ``canvas-gateway``, ``kaltura``, ``zoom``,
``oauth``...). Thread-safe.

``as_dict()`` (plain JSON-ready data)::

    {
      "elapsed_s": 12.3,                       # since the object was created
      "totals": {"requests": 1500, "retries": 3, "throttled": 1, "gave_up": 0,
                 "auth_renewals": 0, "pages": 40, ...},        # every counter, all APIs
      "by_api": {"canvas": {"requests": 1400, "retries": 3, ...}, "zoom": {...}},
      "requests": [                            # attempts by API, endpoint and status
        {"api": "canvas", "endpoint": "GET /api/v1/courses/:id", "status": 200, "count": 812},
        {"api": "canvas", "endpoint": "GET /api/v1/courses/:id", "status": 403, "count": 1},
        {"api": "canvas", "endpoint": "GET /api/v1/courses/:id", "status": "error", "count": 2},
      ],
      "rate_limit": {                          # time series per metered API
        "canvas": [{"t": 0.21, "remaining": 599.95, "estimated_remaining": 599.95}, ...]
      }
    }

``status`` is the HTTP status, or ``"error"`` when no response came back (reset,
timeout). Endpoints are the method and the URL path with ids (numeric segments, SIS
ids, Kaltura/Zoom ids) replaced by ``:id``; never a query string. ``rate_limit`` keeps at
most ``max_points`` points per API (older points are thinned evenly when it fills):
``remaining`` is ``X-Rate-Limit-Remaining`` as reported, ``estimated_remaining`` the
limiter's estimate of the room left right after that answer (``null`` before it knows).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

COUNTERS = ("requests", "retries", "throttled", "gave_up", "auth_renewals")
_ID_SEGMENT = re.compile(
    r"^(?:\d+|[a-z_]+_id:.+|\d+_[0-9a-z]{6,}|[0-9a-f-]{20,}|(?=.*\d)[A-Za-z0-9+/=_-]{22,})$"
)


def endpoint_name(method: str, path: str) -> str:
    """``GET /api/v1/courses/:id``: the path with id-like segments replaced."""
    parts = [":id" if _ID_SEGMENT.match(p) else p for p in path.split("/")]
    return f"{method} {'/'.join(parts) or '/'}"


class HttpStats:
    """Counters, requests by endpoint/status and the rate-limit time series."""

    def __init__(self, *, max_points: int = 2000, clock: Any = time.monotonic) -> None:
        self.max_points = max_points
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._requests: Counter[tuple[str, str, int | str]] = Counter()
        self._series: dict[str, list[tuple[float, float, float | None]]] = {}
        self._stride: dict[str, int] = {}
        self._seen: Counter[str] = Counter()

    # -- recording (each also goes to the open ``collect_stats()`` collectors) --------
    def add(self, name: str, n: int = 1, *, api: str = "http") -> None:
        """Add ``n`` to counter ``name`` of ``api``."""
        for target in self._targets():
            with target._lock:
                target._counts[(api, name)] += n

    def record_request(self, api: str, method: str, path: str, status: int | None) -> None:
        """One attempt sent (``status`` None: no response came back)."""
        key = (api, endpoint_name(method, path), "error" if status is None else status)
        for target in self._targets():
            with target._lock:
                target._counts[(api, "requests")] += 1
                target._requests[key] += 1

    def record_bucket(self, api: str, remaining: float, estimated: float | None) -> None:
        """One ``X-Rate-Limit-Remaining`` reading and the limiter's estimate."""
        for target in self._targets():
            target._record_bucket(api, remaining, estimated)

    def _targets(self) -> list[HttpStats]:
        return [self, *(c for c in _collectors if c is not self)]

    def _record_bucket(self, api: str, remaining: float, estimated: float | None) -> None:
        t = round(self._clock() - self._start, 3)
        with self._lock:
            self._seen[api] += 1
            stride = self._stride.setdefault(api, 1)
            if (self._seen[api] - 1) % stride:
                return
            series = self._series.setdefault(api, [])
            series.append((t, remaining, estimated))
            if len(series) >= self.max_points:  # keep every other point, sample half as often
                del series[1::2]
                self._stride[api] = stride * 2

    # -- reading ----------------------------------------------------------------
    def snapshot(self) -> dict[str, int]:
        """Every counter summed over the APIs (``requests``, ``retries``, ``pages``...)."""
        with self._lock:
            out: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
            for (_, name), n in self._counts.items():
                out[name] += n
            return dict(out)

    def count(self, name: str, api: str | None = None) -> int:
        with self._lock:
            return sum(n for (a, k), n in self._counts.items() if k == name and api in (None, a))

    def as_dict(self) -> dict[str, Any]:
        """The whole record as plain data (see the module docstring for the shape)."""
        totals = self.snapshot()
        with self._lock:
            by_api: dict[str, dict[str, int]] = {}
            for (api, name), n in sorted(self._counts.items()):
                by_api.setdefault(api, dict.fromkeys(COUNTERS, 0))[name] = n
            requests = [
                {"api": api, "endpoint": ep, "status": st, "count": n}
                for (api, ep, st), n in sorted(self._requests.items(), key=lambda kv: str(kv[0]))
            ]
            series = {
                api: [{"t": t, "remaining": r, "estimated_remaining": e} for t, r, e in points]
                for api, points in sorted(self._series.items())
            }
            elapsed = round(self._clock() - self._start, 3)
        return {
            "elapsed_s": elapsed,
            "totals": totals,
            "by_api": by_api,
            "requests": requests,
            "rate_limit": series,
        }


_collectors: list[HttpStats] = []  # open collect_stats() scopes (rarely more than one)


@contextmanager
def collect_stats() -> Iterator[HttpStats]:
    """Everything every session records while the block runs (one job's run): the runner
    learns what a job's HTTP clients did without the job reporting it."""
    collector = HttpStats()
    _collectors.append(collector)
    try:
        yield collector
    finally:
        _collectors.remove(collector)
