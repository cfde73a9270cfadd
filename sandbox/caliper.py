"""A seeded, simulated UDP Caliper event store (for the BigQuery fake).

For development, tests, the demo and benchmarks only.

``CaliperEventStore`` generates, day by day, the Caliper events a UDP ``event_store``
table would hold for an institution: Kaltura KAF ``MediaEvent``/``Started`` events for
Canvas courses spread over hours with microsecond times, plus noise the MIVIDEO job
must not count (other actions and event types, other tools, non-numeric or missing
``kaf:course_id``). Every day's events depend only on ``(seed, day)``.

The store has a notion of "today" (UTC), the sandbox day. It holds the events of the
``days`` days before today and of today itself; today's events are not countable yet
(the job counts only events before the start of today). ``advance_day()`` moves to the
next sandbox day: yesterday's events become countable and a new day's events appear.
The BigQuery fake evaluates ``CURRENT_DATE()`` as the store's today, the way BigQuery
evaluates it on its own clock.

``expected_media_started_hourly(after)`` is the ground truth of the job's table
``mivideo_media_started_hourly`` (without the surrogate id).
"""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd

KAF_EDAPP = "https://kaf.sandbox.example.edu/caliper/info/app/KafEdApp"
OTHER_KAF_EDAPP = "https://kaf2.sandbox.example.edu/caliper/info/app/KafEdApp"
CANVAS_EDAPP = "https://canvas.sandbox.example.edu/"
OTHER_TOOL_EDAPP = "https://lecture.sandbox.example.edu/caliper/info/app/LectureCapture"
CALIPER_CONTEXT = "http://purl.imsglobal.org/ctx/caliper/v1p1"

HOURLY_COLUMNS = ["event_hour_utc", "course_id", "event_time_utc_latest", "event_count"]
EVENT_COLUMNS = [
    "id", "type", "action", "event_time", "ed_app", "actor_id", "course_offering_id",
    "event", "store_time",
]  # fmt: skip

# Relative weight of each kind of generated event. Only "started" events are counted.
_KINDS: dict[str, int] = {
    "started": 70,
    "started_numeric_json": 4,  # kaf:course_id as a JSON number: counted too
    "other_action": 8,  # Paused / Ended / Resumed / Seeked
    "other_type": 4,  # NavigationEvent / ViewEvent / SessionEvent from KAF
    "other_tool": 4,  # MediaEvent Started from another tool
    "non_numeric_course": 4,  # "abc", "12abc", "", "Shared Repository"
    "missing_course": 4,  # no kaf:course_id / no extensions / JSON null
    "canvas_course_offering": 2,  # Canvas edApp, course only as course_offering_id
}
# Hour-of-day weights (UTC): busier in the (North American) afternoon and evening.
_HOUR_WEIGHTS = [3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 8, 7, 6, 6, 5, 4, 4]


@dataclass(frozen=True)
class CaliperEvent:
    """One row of the simulated ``event_store`` table."""

    id: str
    type: str
    action: str
    event_time: datetime  # aware UTC, microsecond precision
    ed_app: str
    actor_id: str
    course_offering_id: str | None
    event: str  # the full Caliper event as JSON text
    store_time: datetime
    counted_course_id: int | None  # the course it counts for, None when it is noise

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in EVENT_COLUMNS}


def start_of_day(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


class CaliperEventStore:
    """Deterministic Caliper events for ``course_ids``, ``days`` days before ``today``.

    ``events`` only grows (``advance_day`` appends), so a consumer can load it
    incrementally by remembering how many it has seen.
    """

    def __init__(
        self,
        seed: int,
        course_ids: Sequence[int],
        today: date | None = None,
        *,
        days: int = 7,
        events_per_day: int = 150,
    ) -> None:
        self.seed = seed
        self.course_ids = list(course_ids)
        self.today = today or datetime.now(UTC).date()
        self.events_per_day = events_per_day
        self.first_day = self.today - timedelta(days=days)
        self.events: list[CaliperEvent] = []
        day = self.first_day
        while day <= self.today:
            self.events.extend(self.day_events(day))
            day += timedelta(days=1)

    # -- time ----------------------------------------------------------------------
    def advance_day(self) -> date:
        """Move to the next sandbox day and generate its events; returns the new today."""
        self.today += timedelta(days=1)
        self.events.extend(self.day_events(self.today))
        return self.today

    @property
    def start_of_today(self) -> datetime:
        return start_of_day(self.today)

    # -- generation ----------------------------------------------------------------
    def day_events(self, day: date) -> list[CaliperEvent]:
        """The events of one UTC day; a function of ``(seed, day)`` only."""
        rng = random.Random(f"caliper:{self.seed}:{day.isoformat()}")
        count = rng.randint(self.events_per_day * 3 // 4, self.events_per_day * 5 // 4)
        # A few popular courses get most of the plays.
        weights = [1.0 / (rank + 1) for rank in range(len(self.course_ids))]
        kinds, kind_weights = list(_KINDS), list(_KINDS.values())
        out = []
        for _ in range(count):
            when = datetime.combine(
                day,
                time(
                    rng.choices(range(24), _HOUR_WEIGHTS)[0],
                    rng.randrange(60),
                    rng.randrange(60),
                    rng.randrange(1_000_000),
                ),
                tzinfo=UTC,
            )
            course = rng.choices(self.course_ids, weights)[0] if self.course_ids else None
            kind = rng.choices(kinds, kind_weights)[0]
            out.append(_make_event(rng, kind, when, course))
        out.sort(key=lambda e: e.event_time)
        return out

    # -- ground truth ----------------------------------------------------------------
    def expected_media_started_hourly(
        self, after: datetime, today: date | None = None
    ) -> pd.DataFrame:
        """Rows of ``mivideo_media_started_hourly`` for events in ``(after, start of today)``.

        Times are naive UTC (as stored); sorted by hour and course.
        """
        before = start_of_day(today or self.today)
        buckets: dict[tuple[datetime, int], list[datetime]] = defaultdict(list)
        for ev in self.events:
            if ev.counted_course_id is None or not after < ev.event_time < before:
                continue
            hour = ev.event_time.replace(minute=0, second=0, microsecond=0, tzinfo=None)
            buckets[(hour, ev.counted_course_id)].append(ev.event_time)
        rows = [
            (hour, course, max(times).replace(tzinfo=None), len(times))
            for (hour, course), times in sorted(buckets.items())
        ]
        frame = pd.DataFrame(rows, columns=HOURLY_COLUMNS)
        return frame.astype({"course_id": "int64", "event_count": "int64"})

    def frame(self, start: int = 0) -> pd.DataFrame:
        """Events ``start..`` as a DataFrame with the table's columns."""
        return pd.DataFrame([e.row() for e in self.events[start:]], columns=EVENT_COLUMNS)


# -- one event ------------------------------------------------------------------------


def _make_event(rng: random.Random, kind: str, when: datetime, course: int | None) -> CaliperEvent:
    """An event of ``kind``; ``counted_course_id`` says whether and where it counts."""
    ed_app, etype, action = KAF_EDAPP, "MediaEvent", "Started"
    extensions: dict[str, Any] | None = {}
    course_value: Any = str(course) if course is not None else None
    counted = course
    if kind == "started":
        ed_app = rng.choice([KAF_EDAPP, KAF_EDAPP, OTHER_KAF_EDAPP])
    elif kind == "started_numeric_json":
        course_value = course
    elif kind == "other_action":
        action, counted = rng.choice(["Paused", "Ended", "Resumed", "JumpedTo"]), None
    elif kind == "other_type":
        etype, counted = rng.choice(["NavigationEvent", "ViewEvent", "SessionEvent"]), None
        action = {"NavigationEvent": "NavigatedTo", "ViewEvent": "Viewed"}.get(etype, "Started")
    elif kind == "other_tool":
        ed_app, counted = rng.choice([CANVAS_EDAPP, OTHER_TOOL_EDAPP]), None
    elif kind == "non_numeric_course":
        course_value = rng.choice(["abc", "12abc", "", "Shared Repository", f"{course}x"])
        counted = None
    elif kind == "missing_course":
        counted, course_value = None, None
        variant = rng.randrange(3)
        if variant == 1:
            extensions = None  # no extensions at all
        elif variant == 2:
            extensions = {"kaf:course_id": None}  # JSON null
        # variant 0: extensions without the key
    elif kind == "canvas_course_offering":
        ed_app, counted = CANVAS_EDAPP, None
    if extensions is not None and course_value is not None:
        extensions["kaf:course_id"] = course_value
    event_id = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
    actor = f"https://kaf.sandbox.example.edu/caliper/info/user/u{rng.randrange(10_000):05d}"
    media = f"1_{rng.getrandbits(32):08x}"
    obj: dict[str, Any] = {
        "id": f"https://kaf.sandbox.example.edu/caliper/info/media/{media}",
        "type": "VideoObject",
        "name": f"Lecture {rng.randrange(1, 40)}",
        "duration": f"PT{rng.randrange(1, 90)}M{rng.randrange(60)}S",
    }
    if extensions is not None:
        obj["extensions"] = extensions
    payload = {
        "@context": CALIPER_CONTEXT,
        "id": event_id,
        "type": etype,
        "action": action,
        "actor": {"id": actor, "type": "Person"},
        "object": obj,
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "edApp": {"id": ed_app, "type": "SoftwareApplication"},
    }
    offering = str(course) if course is not None and kind == "canvas_course_offering" else None
    return CaliperEvent(
        id=event_id,
        type=etype,
        action=action,
        event_time=when,
        ed_app=ed_app,
        actor_id=actor,
        course_offering_id=offering,
        event=json.dumps(payload, separators=(",", ":")),
        store_time=when + timedelta(seconds=rng.randrange(1, 600)),
        counted_course_id=counted,
    )
