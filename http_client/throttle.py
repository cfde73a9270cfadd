"""Adaptive concurrency limiter that learns a leaky-bucket throttle (Canvas) as it goes.

Canvas meters each token with a leaky bucket (reference canvas-api.md §3;
``request_throttle.rb``): the level leaks ``r`` units/s; every request adds an up-front
charge ``u`` when it arrives and is refused (403 "Rate Limit Exceeded", or 429) when
the level then reaches the high-water mark; when it ends ``u`` is taken off again and
its real cost (``X-Request-Cost``) added. Every response reports
``X-Rate-Limit-Remaining`` = high-water mark - level, reservations of requests still in
flight included. Canvas's defaults are ``u`` = 50, ``r`` = 10/s, high-water mark 600
(maximum 800), but an administrator can change each of them, so this limiter only
*starts* from them and learns the bucket from the responses.

The model: ``remaining = room - L - u * n - others``, where ``L`` is the bucket's level
(leaking ``r`` per second down to 0, plus each answer's cost), ``n`` our requests in
flight (each counted from the moment it is admitted) and ``others`` the reservations
other clients on the token hold. One more request is admitted while ``remaining - u >=
margin`` (``margin`` = a tenth of ``u``, at least 1, plus four times the cost, plus three
times the typical error of ``L``, plus a quarter of ``u`` per request in flight until ``u`` has
been measured from the readings). So requests are sent while the bucket can take their
reservation; as it fills, fewer are in flight, down to one at a time and then a pause of
``(u + margin - remaining) / r`` (at most ``MAX_PAUSE``: then one request measures the
bucket again); as it drains, more again (up to ``max_concurrency``).

Every answer's ``X-Rate-Limit-Remaining`` corrects the model. A reading is taken when the
server finished that request, a few milliseconds before we read it: requests of ours sent
since then are not in it, requests that finished since then still are. Those differences
are whole reservations, so ``gap = reading - remaining`` is split into whole ``u``s and a
rest (``|rest| <= u / 2``): the rest is the error of ``L``, followed half way when the
level is higher than thought and a quarter way when lower. Whole reservations more than
ours (beyond answers released since the reading) are another client's: ``others`` rises
at once, and falls as readings show them gone. A reading taken with nothing of ours in
flight is exact (a level it puts below empty means the room is larger than first
measured: another client had partly filled the bucket). Whole reservations fewer than
ours are never credited: under load a reading commonly misses one of ours, and taking
that for a lower level cost refusals on a small bucket; the model errs towards a fuller
bucket until a reading with nothing of ours in flight.

How each parameter is learned (all from the responses themselves):

- ``room`` (the high-water mark seen from an empty bucket): the largest reading taken
  while nothing else of ours was in flight (the first request is sent alone), raised as
  above when the bucket proves larger.
- ``u`` (up-front charge): first from calibration batches at the start. After the lone
  first request, a batch of 2 (then two of up to 4) requests is sent together and nothing
  more until all have answered: the first answer is measured while the other ``m - 1``
  still hold their reservations, the last one while none does, so ``u ~ (R_last -
  R_first) / (m - 1)`` (plus the leak during the first answer's time in flight); the
  largest sample is kept, as a batch can only under-count. Then, for good, from the
  readings themselves: two consecutive readings differ by the level's change (known to
  the model) plus whole reservations, so a difference within 40% of ``u`` measures one
  reservation; ``u`` is the median of the last 15. A request refused while alone proves
  ``u >= R`` of its response and raises ``u``.
- ``r`` (leak rate): over at least ``leak_window`` seconds while the bucket is not nearly
  empty, ``r - (corrections the readings made to L) / elapsed``; also between answers
  received with nothing else of ours in flight, ``(R_now - R_then + costs charged in
  between) / elapsed``; the median of recent samples. Another client draining the same
  token makes it smaller, so the limiter waits longer instead of hammering the bucket.
  A refusal the model did not predict lowers ``r`` by a fifth.
- ``cost``: a moving average of ``X-Request-Cost``.

Refusals: the refused response's ``X-Rate-Limit-Remaining`` (current Canvas reports the
real value) corrects the model like any reading; ``0.0`` (older releases) only says that
one reservation did not fit, so ``L`` is raised until it does not. An AIMD ``ceiling``
halves (and regrows by ``1/ceiling`` per answer) against a wrong model; the session's
own throttle backoff applies. Without any remaining header (other APIs) only the ceiling
applies, i.e. a plain semaphore of ``max_concurrency``.

Impossible throttles (issue 14): if requests sent one at a time keep being refused while
the reported remaining does not change over at least two seconds (the bucket is empty
and still cannot fit one reservation), or if no request at all is accepted for
``stall_timeout`` seconds while sending one at a time, every caller gets
``ThrottleStalled`` with a clear message.
"""

from __future__ import annotations

import itertools
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import requests
from courseinv.http_client.errors import ThrottleStalled

log = logging.getLogger(__name__)

CANVAS_UP_FRONT = 50.0
CANVAS_LEAK = 10.0
CANVAS_HIGH_WATER = 600.0
MAX_PAUSE = 5.0  # alone, never wait longer than this for the model: ask the bucket


@dataclass(frozen=True)
class BucketEstimate:
    """What the limiter currently believes about the bucket (for logs and stats)."""

    up_front: float
    leak: float
    room: float | None
    remaining: float | None  # estimated room left right now
    cost: float
    up_front_samples: int
    leak_samples: int


@dataclass
class _Ticket:
    seq: int
    sent: float
    releases_before: int
    alone: bool


@dataclass
class _Batch:
    """A calibration batch: ``size`` requests sent together (see the module docstring)."""

    size: int
    sent: int = 0
    answered: int = 0
    first: float | None = None  # R of the first answer
    first_age: float = 0.0  # its time in flight
    last: float | None = None
    broken: bool = False  # answered before all were sent, or refused


class AdaptiveLimiter:
    """Shared gate limiting in-flight requests from the server's rate-limit headers."""

    def __init__(
        self,
        max_concurrency: int,
        *,
        up_front_cost: float = CANVAS_UP_FRONT,
        leak_rate: float = CANVAS_LEAK,
        margin: float | None = None,
        learn: bool = True,
        leak_window: float = 1.0,
        stall_timeout: float = 120.0,
        remaining_header: str = "X-Rate-Limit-Remaining",
        cost_header: str = "X-Request-Cost",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self.learn = learn
        self.margin = margin
        self.leak_window = leak_window
        self.stall_timeout = stall_timeout
        self.remaining_header = remaining_header
        self.cost_header = cost_header
        self._clock = clock
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._local = threading.local()
        self._in_flight: dict[int, float] = {}  # seq -> send time
        self._releases = 0
        # the model
        self._u = up_front_cost
        self._u_floor = 0.0
        self._u_samples: list[float] = []
        self._r = leak_rate
        self._r_min = leak_rate / 10
        self._r_samples: deque[float] = deque(maxlen=9)
        self._room: float | None = None
        self._level: float | None = None  # the bucket's level at _t_obs (None: unknown)
        self._others = 0.0  # reservations held by other clients on the token
        self._t_obs = 0.0
        self._release_times: deque[float] = deque(maxlen=16)
        self._prev: tuple[float, float] | None = None  # (reading, level) of the last answer
        self._u_steps: deque[float] = deque(maxlen=15)  # one-reservation reading steps
        self._drift: tuple[float, float] | None = None  # (since, level corrections) for r
        self._spread = 0.0  # typical size of the level's error (moving average)
        self._cost = 0.0
        self._cum_cost = 0.0
        self._lone: tuple[float, float, float] | None = None  # (t, R, cum cost) alone
        self._durations: deque[float] = deque(maxlen=32)  # recent response times
        self._calibrations = 3 if learn else 0  # calibration samples still wanted
        self._attempts = 8  # calibration batches that may still be tried
        self._batch: _Batch | None = None
        self._ceiling = 1.0 if learn else float(max_concurrency)
        self._slow_start = learn
        self._probed = False
        self._refused_last = False
        # stalls
        self._lone_refusals: list[tuple[float, float | None]] = []
        self._failed: ThrottleStalled | None = None
        # statistics for logs and benchmarks
        self.throttled = 0
        self.total_cost = 0.0
        self.min_remaining: float | None = None
        self.waits = 0

    # -- Pacer protocol ---------------------------------------------------------
    def acquire(self) -> None:
        """Block until one more request may be sent (``ThrottleStalled`` if hopeless)."""
        with self._cond:
            waited = False
            while True:
                if self._failed is not None:
                    raise self._failed
                now = self._clock()
                delay = self._delay(now)
                if delay == 0.0:
                    break
                waited = True
                self._cond.wait(timeout=delay)
            if waited:
                self.waits += 1
            seq = next(self._seq)
            self._local.ticket = _Ticket(seq, now, self._releases, alone=not self._in_flight)
            self._in_flight[seq] = now
            if self._batch is not None:
                self._batch.sent += 1

    def release(self, response: requests.Response | None, throttled: bool) -> None:
        """Record one finished attempt and what its headers say about the bucket."""
        with self._cond:
            ticket: _Ticket = self._local.ticket
            self._in_flight.pop(ticket.seq, None)
            lone = ticket.alone and not self._in_flight and self._releases == ticket.releases_before
            try:
                if response is not None:
                    if throttled:
                        self._refused(response, lone)
                    else:
                        self._answered(response, ticket, lone)
                self._batch_answer(response, throttled, ticket)
            finally:
                self._releases += 1
                self._release_times.append(self._clock())
                self._probed = True
                self._cond.notify_all()
            if self._failed is not None:
                raise self._failed

    # -- state ------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        with self._cond:
            return len(self._in_flight)

    def permitted(self) -> int:
        """How many requests the model would allow in flight right now (for logs)."""
        with self._cond:
            n = len(self._in_flight)
            rem = self._remaining(self._clock())
            more = 0
            while n + more < int(self._ceiling) and rem - more * self._u >= self._need():
                more += 1
            return n + more

    def estimate(self) -> BucketEstimate:
        """The current estimates of the bucket's parameters."""
        with self._cond:
            rem = self._remaining(self._clock())
            return BucketEstimate(
                up_front=round(self._u, 3),
                leak=round(self._r, 3),
                room=self._room,
                remaining=None if rem == float("inf") else round(rem, 3),
                cost=round(self._cost, 4),
                up_front_samples=len(self._u_samples),
                leak_samples=len(self._r_samples),
            )

    # -- observations -----------------------------------------------------------
    def _answered(self, response: requests.Response, ticket: _Ticket, lone: bool) -> None:
        now = self._clock()
        self._lone_refusals.clear()
        self._refused_last = False
        self._durations.append(now - ticket.sent)
        cost = _float(response.headers.get(self.cost_header)) or 0.0
        self.total_cost += cost
        self._cum_cost += cost
        self._cost = cost if self._cost == 0.0 else 0.9 * self._cost + 0.1 * cost
        self._grow_ceiling()
        remaining = _float(response.headers.get(self.remaining_header))
        if remaining is None:  # not metered this way: the ceiling alone applies
            return
        if self._level is not None:  # its cost charged (its reservation left with it)
            self._advance(now)
            self._level += cost
        if self.min_remaining is None or remaining < self.min_remaining:
            self.min_remaining = remaining
        if lone:
            self._room = remaining if self._room is None else max(self._room, remaining)
            if self.learn:
                self._learn_leak(now, remaining)
        elif self._room is None:
            self._room = remaining + self._u * len(self._in_flight)
        self._observe(now, remaining)

    def _observe(self, now: float, remaining: float) -> None:
        """Correct the model with a reading (see the module docstring)."""
        self._t_obs = now
        n = len(self._in_flight)
        if self._level is None:
            self._level = max(0.0, self._cap() - remaining - self._u * n)
            self._prev = (remaining, self._level)
            return
        self._learn_up_front(remaining)
        before = self._level
        gap = remaining - self._remaining(now)
        u = max(self._u, 1e-9)
        steps = round(gap / u)  # whole reservations the reading saw fewer of than we hold
        if steps < 0:
            # More reservations than ours in flight: answers processed out of order
            # (requests of ours released after this reading), else another client's.
            self._others += -min(0, steps + self._released_since(now)) * u
        elif n == 0 and gap > 0:  # none of ours unseen: the others' or the level's
            freed = min(self._others, gap)
            self._others -= freed
            self._lower_level(gap - freed)
            self._after_observe(now, remaining, before)
            return
        elif steps > 0:  # ours not yet (or no longer) seen, or others' gone
            self._others = max(0.0, self._others - steps * u)
        # What is left after whole reservations is the level's error: followed part of
        # the way (a reading is a little stale), faster up than down.
        error = round(gap / u) * u - gap
        self._spread = 0.9 * self._spread + 0.1 * abs(error)
        self._level = max(0.0, self._level + error * (0.5 if error > 0 else 0.25))
        self._after_observe(now, remaining, before)

    def _lower_level(self, amount: float) -> None:
        """Lower the level by a sure amount; below empty, the bucket is larger than thought
        (first measured while another client had partly filled it)."""
        assert self._level is not None
        self._level -= amount
        if self._level < 0.0 and self._room is not None:
            self._room -= self._level
        self._level = max(0.0, self._level)

    def _after_observe(self, now: float, remaining: float, before: float) -> None:
        """Remember the reading; the level's corrections measure the leak's error."""
        assert self._level is not None
        self._prev = (remaining, self._level)
        if not self.learn or self._level < 2 * self._u:  # nearly empty: leak not seen
            self._drift = None
            return
        if self._drift is None:
            self._drift = (now, 0.0)
            return
        since, corrections = self._drift
        corrections += self._level - before
        if now - since < self.leak_window:
            self._drift = (since, corrections)
            return
        sample = self._r - corrections / (now - since)
        log.debug("leak sample %.2f from the level's drift over %.2fs", sample, now - since)
        self._add_leak_sample(sample)
        self._drift = (now, 0.0)

    def _learn_up_front(self, remaining: float) -> None:
        """``u`` from readings one reservation apart (see the module docstring)."""
        if not self.learn or self._prev is None or not self._u_samples or self._batch:
            return
        assert self._level is not None
        reading, level = self._prev
        step = abs(remaining - reading + self._level - level)
        if 0.6 * self._u <= step <= 1.4 * self._u:
            self._u_steps.append(step)
            if len(self._u_steps) >= 5:
                self._u = max(self._u_floor, statistics.median(self._u_steps))

    def _released_since(self, now: float) -> int:
        """Releases recent enough to postdate the reading being processed."""
        window = 0.2 * (statistics.median(self._durations) if self._durations else 0.0)
        return sum(1 for t in self._release_times if t >= now - window) - 1  # minus this one

    def _refused(self, response: requests.Response, lone: bool) -> None:
        now = self._clock()
        self.throttled += 1
        self._refused_last = True
        n = len(self._in_flight)
        self._ceiling = max(1.0, min(self._ceiling, n + 1.0) / 2)
        self._slow_start = False
        remaining = _float(response.headers.get(self.remaining_header))
        if remaining is None:  # e.g. a gateway's own 429: the session's backoff waits
            log.info("throttled: concurrency ceiling now %d", int(self._ceiling))
            return
        if self._level is not None:
            self._advance(now)
        predicted = self._remaining(now)
        surprised = predicted != float("inf") and predicted >= self._need()
        if remaining > 0:
            if lone and self.learn:  # refused alone: its reservation did not fit
                self._u_floor = max(self._u_floor, remaining)
                self._u = max(self._u, remaining)
            self._observe(now, remaining)
        else:  # older Canvas: 0.0 only says that this reservation did not fit
            fits = self._level_fitting(min(predicted, self._u) - self._margin())
            self._level = max(self._level or 0.0, fits)
            self._t_obs = now
        if self.learn and surprised and not lone:
            self._r = max(self._r_min, self._r * 0.8)
        self._lone = None
        log.info(
            "throttled (remaining %s): ceiling %d, up-front %.1f, leak %.2f/s",
            remaining,
            int(self._ceiling),
            self._u,
            self._r,
        )
        if lone:
            self._check_stall(now, remaining)

    # -- learning -----------------------------------------------------------------
    def _batch_answer(
        self, response: requests.Response | None, throttled: bool, ticket: _Ticket
    ) -> None:
        """Calibration: ``u`` from the first and last answers of a batch."""
        batch = self._batch
        if batch is None:
            return
        batch.answered += 1
        headers = response.headers if response is not None else {}
        remaining = _float(headers.get(self.remaining_header))
        if throttled or remaining is None or batch.sent < batch.size:
            batch.broken = True
        elif batch.answered == 1:
            batch.first = remaining
            batch.first_age = self._clock() - ticket.sent
        batch.last = remaining
        if batch.answered < batch.sent or (batch.sent < batch.size and not batch.broken):
            return
        self._batch = None
        if batch.broken or batch.first is None or batch.last is None:
            return
        # While in flight the others' reservations leaked along with the level.
        sample = (batch.last - batch.first) / (batch.size - 1) + self._r * batch.first_age
        log.debug("up-front sample %.2f from a batch of %d", sample, batch.size)
        if sample > 0:
            # A batch can only under-count reservations (an answer may be measured
            # before the others arrive), never over-count them: keep the largest.
            self._u_samples.append(sample)
            self._u = max(self._u_floor, *self._u_samples)
            self._calibrations -= 1

    def _start_batch(self, n: int, rem: float) -> bool:
        """Open a calibration batch when nothing is in flight and it fits."""
        if min(self._calibrations, self._attempts) <= 0 or n > 0 or not self._probed:
            return False
        if self._refused_last:  # first let an answer show that the bucket has room
            return False
        if self._level is None:
            return False
        margin = self._margin()
        if not self._u_samples:
            # Nothing known: try a pair unless a refusal proved it cannot fit.
            size = 2 if rem >= 2 * self._u_floor + margin else 0
        else:
            size = min(4, self.max_concurrency, int((rem - margin) // self._u))
        if size < 2 or self.max_concurrency < 2:
            self._calibrations = 0
            return False
        self._attempts -= 1
        self._batch = _Batch(size)
        return True

    def _learn_leak(self, now: float, remaining: float) -> None:
        """Leak samples between answers received with nothing else in flight."""
        if remaining >= self._cap() - max(1.0, 0.5 * self._u):
            self._lone = None  # the bucket may be empty: the leak is not observable
            return
        if self._lone is None:
            self._lone = (now, remaining, self._cum_cost)
            return
        t0, r0, c0 = self._lone
        if now - t0 < self.leak_window:
            return
        sample = (remaining - r0 + self._cum_cost - c0) / (now - t0)
        log.debug("leak sample %.2f over %.2fs", sample, now - t0)
        self._add_leak_sample(sample)
        self._lone = (now, remaining, self._cum_cost)

    def _add_leak_sample(self, sample: float) -> None:
        self._r_samples.append(max(self._r_min, sample))
        self._r = max(self._r_min, statistics.median(self._r_samples))

    def _grow_ceiling(self) -> None:
        if self._slow_start:
            self._ceiling = min(float(self.max_concurrency), self._ceiling + 1.0)
        else:
            self._ceiling = min(float(self.max_concurrency), self._ceiling + 1 / self._ceiling)

    def _check_stall(self, now: float, remaining: float | None) -> None:
        """Fail when lone requests keep being refused by a bucket that no longer leaks."""
        self._lone_refusals.append((now, remaining))
        first = self._lone_refusals[0][0]
        same: list[float] = []
        if remaining is not None and remaining > 0:
            same = [
                t for t, r in self._lone_refusals if r is not None and abs(r - remaining) < 0.01
            ]
        if len(same) >= 3 and now - same[0] >= 2.0:
            self._failed = ThrottleStalled(
                f"the API refuses even a single request: its rate-limit bucket is empty "
                f"(X-Rate-Limit-Remaining {remaining:g} unchanged over {now - same[0]:.0f}s) "
                "yet too small for one request's up-front charge; ask the API's "
                "administrators to raise the throttle's high-water mark above it"
            )
        elif now - first >= self.stall_timeout:
            self._failed = ThrottleStalled(
                f"no request accepted for {now - first:.0f}s while sending one "
                "at a time: the rate-limit bucket never has room for a request (too small "
                "for its up-front charge, or another client on this token keeps it full)"
            )

    # -- the model ----------------------------------------------------------------
    def _cap(self) -> float:
        return self._room if self._room is not None else CANVAS_HIGH_WATER

    def _advance(self, now: float) -> None:
        """Apply the leak since the last update to the level."""
        assert self._level is not None
        self._level = self._level_at(now)
        self._t_obs = now

    def _level_at(self, now: float) -> float:
        assert self._level is not None
        return max(0.0, self._level - self._r * max(0.0, now - self._t_obs))

    def _level_fitting(self, remaining: float) -> float:
        """The level at which ``_remaining`` would be ``remaining`` now."""
        return self._cap() - remaining - self._u * len(self._in_flight) - self._others

    def _remaining(self, now: float) -> float:
        """Estimated room now: room - level - our reservations - others' (see above)."""
        if self._level is None:
            return float("inf")
        held = self._u * len(self._in_flight) + self._others
        return self._cap() - self._level_at(now) - held

    def _margin(self) -> float:
        if self.margin is not None:
            return self.margin
        margin = max(1.0, 0.1 * self._u) + 4 * self._cost + 3 * self._spread
        if self.learn and len(self._u_steps) < 5:  # u from calibration only: +-25%
            margin += 0.25 * self._u * len(self._in_flight)
        return margin

    def _need(self) -> float:
        """Room needed to admit one more request."""
        return self._u + self._margin()

    def _delay(self, now: float) -> float | None:
        """0.0 to admit now, else seconds to wait (``None``: until a release)."""
        n = len(self._in_flight)
        batch = self._batch
        if batch is not None:
            return 0.0 if batch.sent < batch.size and not batch.broken else None
        if n > 0 and not self._probed:
            return None
        rem = self._remaining(now)
        if self._start_batch(n, rem):
            return 0.0
        if n >= int(self._ceiling):
            return None
        need = self._need()
        if rem >= need:
            return 0.0
        if n == 0 and self._level is not None and self._level_at(now) <= 0.0:
            return 0.0  # alone on a bucket thought empty: ask it (it may be larger)
        # A release may come first; alone, re-measure with one request after MAX_PAUSE.
        wait = (need - rem) / self._r
        if n == 0 and self._level is not None and now - self._t_obs + wait > MAX_PAUSE:
            wait = max(0.0, self._t_obs + MAX_PAUSE - now)
            if wait == 0.0:
                return 0.0
        return max(0.005, wait)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
