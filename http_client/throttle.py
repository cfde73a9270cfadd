"""Adaptive concurrency limiter for an API metered by a leaky bucket (Canvas).

Canvas's throttle (reference canvas-api.md §3): one bucket per token that leaks about
``leak_rate`` = 10 units/s; every request in flight first reserves ``up_front_cost``
= 50 units, and a request is refused (403 "Rate Limit Exceeded", or 429) when the
bucket would pass its high-water mark. Each response says how much room is left
(``X-Rate-Limit-Remaining``) and what it cost (``X-Request-Cost``). So parallelism,
not request count, is what gets a client throttled, and the client can see the wall
coming.

``AdaptiveLimiter`` is a ``Pacer`` for ``RetryingSession``: every attempt calls
``acquire()`` before sending and ``release(response, throttled)`` after. It keeps an
estimate ``H`` of the bucket's headroom *without* any reservation, and admits a new
request only while it covers the reservations of every request in flight plus the
new one and a safety ``margin``::

    admit  <=>  in_flight < ceiling  and  H(now) >= (in_flight + 1) * up_front_cost + margin
    H(now)  =   min(capacity, H_obs + leak_rate * (now - t_obs))

So as the bucket fills the permitted concurrency falls, down to one request at a
time and then to a pause of ``(need - H) / leak_rate`` seconds; it rises again as the
bucket drains. The very first request goes alone (a probe): the bucket may already be
full from another client on the same token.

Estimating ``H`` from a response: ``remaining`` was measured while some of the
requests that overlapped this one held reservations, so ``remaining <= H <= remaining
+ overlapped * up_front_cost``. (Which ones is unknowable: a request the client still
sees in flight may already be settled on the server.) The estimate carried forward
from the previous one, minus this response's cost, is clamped into that interval; so
a dip caused by short-lived reservations is not mistaken for a full bucket, while a
drop nobody here explains (another client on the token) is believed. ``capacity`` is
the largest ``remaining`` seen.

A refused request's ``remaining: 0.0`` is not taken as the level either (it counts
every reservation of that instant): new requests pause for ``throttle_pause`` seconds,
the session's own throttle backoff grows while refusals repeat, and the next answered
request reports the real level. On top of the model, an AIMD ``ceiling`` guards
against wrong parameters: a refusal halves it, every other response adds
``1/ceiling`` back, up to ``max_concurrency``. Without any remaining header (other
APIs) only the ceiling applies, i.e. a plain semaphore of ``max_concurrency``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable

import requests

log = logging.getLogger(__name__)


class AdaptiveLimiter:
    """Shared gate limiting in-flight requests from the server's rate-limit headers."""

    def __init__(
        self,
        max_concurrency: int,
        *,
        up_front_cost: float = 50.0,
        leak_rate: float = 10.0,
        margin: float = 20.0,
        throttle_pause: float = 1.0,
        remaining_header: str = "X-Rate-Limit-Remaining",
        cost_header: str = "X-Request-Cost",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self.up_front_cost = up_front_cost
        self.leak_rate = leak_rate
        self.margin = margin
        self.throttle_pause = throttle_pause
        self.remaining_header = remaining_header
        self.cost_header = cost_header
        self._clock = clock
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._local = threading.local()
        self._in_flight: set[int] = set()
        self._ceiling = float(max_concurrency)
        self._base: float | None = None  # headroom without reservations, at _t_obs
        self._t_obs = 0.0
        self._capacity = 0.0  # largest headroom seen
        self._releases = 0
        self._probed = False  # until the first answer, send one request at a time
        # statistics for logs and benchmarks
        self.throttled = 0
        self.total_cost = 0.0
        self.min_remaining: float | None = None
        self.waits = 0

    # -- Pacer protocol ---------------------------------------------------------
    def acquire(self) -> None:
        """Block until one more request may be sent."""
        with self._cond:
            waited = False
            while True:
                delay = self._delay(self._clock())
                if delay == 0.0:
                    break
                waited = True
                self._cond.wait(timeout=delay)
            if waited:
                self.waits += 1
            seq = next(self._seq)
            self._in_flight.add(seq)
            self._local.ticket = (seq, self._releases)

    def release(self, response: requests.Response | None, throttled: bool) -> None:
        """Record one finished attempt and what its headers said about the bucket."""
        with self._cond:
            seq, releases_before = self._local.ticket
            self._in_flight.discard(seq)
            if response is not None:
                # requests whose reservations may have been counted in ``remaining``
                overlapped = len(self._in_flight) + self._releases - releases_before
                self._observe(response, overlapped=overlapped, throttled=throttled)
            self._releases += 1
            self._probed = True
            if throttled:
                self.throttled += 1
                self._ceiling = max(1.0, min(self._ceiling, len(self._in_flight) + 1.0) / 2)
                log.info("throttled: concurrency ceiling now %d", int(self._ceiling))
            else:
                self._ceiling = min(float(self.max_concurrency), self._ceiling + 1 / self._ceiling)
            self._cond.notify_all()

    # -- state ------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        with self._cond:
            return len(self._in_flight)

    def permitted(self) -> int:
        """How many requests the limiter would allow in flight right now (for logs)."""
        with self._cond:
            n = 0
            headroom = self._headroom(self._clock())
            while n < int(self._ceiling) and headroom >= (n + 1) * self.up_front_cost + self.margin:
                n += 1
            return n

    def _observe(self, response: requests.Response, *, overlapped: int, throttled: bool) -> None:
        now = self._clock()
        cost = _float(response.headers.get(self.cost_header)) or 0.0
        self.total_cost += cost
        remaining = _float(response.headers.get(self.remaining_header))
        if remaining is None:  # not metered this way: the ceiling alone applies
            return
        carried = None if self._base is None else self._headroom(now) - cost
        if throttled:
            pause = self.up_front_cost + self.margin - self.leak_rate * self.throttle_pause
            self._set(now, min(pause, carried if carried is not None else pause))
            return
        if self.min_remaining is None or remaining < self.min_remaining:
            self.min_remaining = remaining
        lo, hi = remaining, remaining + overlapped * self.up_front_cost
        self._capacity = max(self._capacity, lo)
        self._set(now, hi if carried is None else min(hi, max(lo, carried)))

    def _set(self, now: float, headroom: float) -> None:
        self._base, self._t_obs = headroom, now

    def _cap(self) -> float:
        return max(self._capacity, self.up_front_cost + self.margin)

    def _headroom(self, now: float) -> float:
        if self._base is None:
            return float("inf")
        return min(self._cap(), self._base + self.leak_rate * (now - self._t_obs))

    def _delay(self, now: float) -> float | None:
        """0.0 to admit now, else seconds to wait (``None``: until a release)."""
        n = len(self._in_flight)
        if n >= int(self._ceiling) or (n > 0 and not self._probed):
            return None
        need = (n + 1) * self.up_front_cost + self.margin
        headroom = self._headroom(now)
        if headroom >= need:
            return 0.0
        if need > self._cap():  # only a release can make room
            return None
        return max(0.01, (need - headroom) / self.leak_rate)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
