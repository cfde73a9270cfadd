"""Atomic replace and idempotent upsert on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import threading
import time
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
from courseinv.db.publish import (
    PublishError,
    PublishPolicy,
    ShrinkRefused,
    _private_parent,
    replace_tables,
    upsert_rows,
)
from sqlalchemy import Engine, text
from sqlalchemy import inspect as sqlalchemy_inspect

AWKWARD = ["Fall 😀 2024", 'Quote " and \\ backslash', "tab\there\nnewline", "ñ" * 255, "NULL", ""]


def inventory(n: int, seed: int) -> dict[str, pd.DataFrame]:
    """A consistent set of the six COURSE_INVENTORY tables with n courses."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1, dtype="int64") + 17_000_000_000
    return {
        "term": pd.DataFrame(
            {
                "canvas_id": [7, 8],
                "name": AWKWARD[:2],
                "sis_id": [None, "2410"],
                "start_at": [datetime(2024, 8, 26, 4), None],
                "end_at": [None, None],
            }
        ),
        "account": pd.DataFrame(
            {"canvas_id": [1, 2], "sis_id": [None, "CHEM"], "name": AWKWARD[2:4]}
        ),
        "course": pd.DataFrame(
            {
                "canvas_id": ids,
                "sis_id": [AWKWARD[i % 6] if i % 3 else None for i in range(n)],
                "name": [AWKWARD[(i + seed) % 6] for i in range(n)],
                "account_id": 1 + ids % 2,
                "term_id": 7 + ids % 2,
                "created_at": pd.Timestamp("2024-02-28T11:02:17Z")
                + pd.to_timedelta(rng.integers(0, 10**6, n), "s"),
                "published_at": [
                    pd.NaT if i % 4 == 0 else datetime(2024, 8, 20, 13, 45, 10) for i in range(n)
                ],
                "workflow_state": "available",
            }
        ),
        "course_section": pd.DataFrame(
            {"canvas_id": ids + 5, "sis_id": None, "name": "Sección 001", "course_id": ids}
        ),
        "enrollment": pd.DataFrame(
            {
                "canvas_id": ids * 10,
                "course_id": ids,
                "course_section_id": ids + 5,
                "user_id": rng.integers(1, 10**9, n),
                "workflow_state": "active",
                "role_type": "StudentEnrollment",
            }
        ),
        "canvas_course_usage": pd.DataFrame(
            {
                "course_id": ids[:3],
                "date": [date(2024, 9, d) for d in (1, 2, 3)],
                "views": [seed, 2, 3],
                "participations": [0, 1, 2],
            }
        ),
    }


def read(engine: Engine, table: str, order: str) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(text(f"SELECT * FROM {table} ORDER BY {order}"), conn)


def test_replace_round_trips_exactly(any_engine: Engine) -> None:
    replace_tables(any_engine, inventory(50, 1))
    frames = inventory(40, 2)
    replace_tables(any_engine, frames)
    course = read(any_engine, "course", "canvas_id")
    expected = frames["course"]
    assert course["canvas_id"].tolist() == expected["canvas_id"].tolist()
    assert course["name"].tolist() == expected["name"].tolist()
    assert [None if pd.isna(v) else v for v in course["sis_id"]] == [
        None if pd.isna(v) else v for v in expected["sis_id"]
    ]
    created = pd.to_datetime(course["created_at"]).tolist()
    assert created == expected["created_at"].dt.tz_localize(None).tolist()
    assert pd.to_datetime(course["published_at"]).isna().sum() == 10
    usage = read(any_engine, "canvas_course_usage", "id")
    assert usage["id"].tolist() == [1, 2, 3] and usage["views"].tolist() == [2, 2, 3]
    assert [str(d)[:10] for d in usage["date"]] == ["2024-09-01", "2024-09-02", "2024-09-03"]
    assert len(read(any_engine, "enrollment", "canvas_id")) == 40
    term = read(any_engine, "term", "canvas_id")
    assert term["name"].tolist() == AWKWARD[:2]


def test_failure_part_way_leaves_previous_contents(any_engine: Engine) -> None:
    replace_tables(any_engine, inventory(30, 1))
    before = {t: read(any_engine, t, "1") for t in ("course", "enrollment")}
    broken = inventory(20, 2)
    # An enrollment pointing at a section that does not exist: rejected by the FK / load.
    broken["enrollment"].loc[5, "course_section_id"] = 999
    with pytest.raises(Exception):  # noqa: B017 - the driver's own integrity error
        replace_tables(any_engine, broken)
    for table, frame in before.items():
        pd.testing.assert_frame_equal(read(any_engine, table, "1"), frame)
    replace_tables(any_engine, inventory(20, 3))  # and the next publish works
    assert len(read(any_engine, "course", "canvas_id")) == 20


def test_parents_cannot_be_replaced_without_their_children(any_engine: Engine) -> None:
    frames = inventory(5, 1)
    with pytest.raises(PublishError, match="requires replacing"):
        replace_tables(any_engine, {"course": frames["course"]})
    with pytest.raises(PublishError, match="unknown column"):
        replace_tables(
            any_engine,
            {
                "term": pd.DataFrame({"canvas_id": [1], "name": ["x"], "bogus": [1]}),
                **{k: v for k, v in frames.items() if k != "term"},
            },
        )


def test_children_replaced_under_a_live_parent(any_engine: Engine) -> None:
    upsert_rows(any_engine, {"lti_type": pd.DataFrame({"canvas_id": [77], "des": ["Zoom"], "rpt_group_nm": ["Meetings"]})})
    for n in (3, 2):
        placements = pd.DataFrame({"id": range(1, n + 1), "course_id": range(10, 10 + n), "account_id": 1,
                                   "course_name": "C", "placement_type_id": 77})
        meetings = pd.DataFrame({"lti_placement_id": [1], "meeting_id": [98765432101], "host_id": ["h1"],
                                 "start_time": [datetime(2024, 1, 1, 15)], "status": ["ended"]})
        replace_tables(any_engine, {"lti_placement": placements, "lti_zoom_meeting": meetings})
    assert read(any_engine, "lti_placement", "id")["course_id"].tolist() == [10, 11]
    assert read(any_engine, "lti_zoom_meeting", "id")["meeting_id"].tolist() == [98765432101]
    bad = placements.assign(placement_type_id=78)  # not in lti_type
    with pytest.raises(Exception):  # noqa: B017 - FK violation from the driver
        replace_tables(any_engine, {"lti_placement": bad, "lti_zoom_meeting": meetings})
    assert read(any_engine, "lti_placement", "id")["placement_type_id"].tolist() == [77, 77]


def test_upsert_is_idempotent(any_engine: Engine) -> None:
    hourly = pd.DataFrame(
        {
            "event_hour_utc": [datetime(2024, 1, 1, 3), datetime(2024, 1, 1, 4)],
            "course_id": [5, 5],
            "event_time_utc_latest": [
                datetime(2024, 1, 1, 3, 59, 1, 123456),
                datetime(2024, 1, 1, 4, 0, 0, 1),
            ],
            "event_count": [4, 1],
        }
    )
    media = pd.DataFrame(
        {
            "id": ["1_abcd1234"],
            "created_at": [datetime(2024, 1, 1)],
            "name": ["Lecture 😀"],
            "duration": [3125],
        }
    )
    links = pd.DataFrame(
        {"media_id": ["1_abcd1234"] * 2, "course_id": [123456] * 2, "in_context": [True, False]}
    )
    for _ in range(2):
        upsert_rows(any_engine, {"mivideo_media_started_hourly": hourly})
        upsert_rows(any_engine, {"mivideo_media_created": media, "mivideo_media_courses": links})
    got = read(any_engine, "mivideo_media_started_hourly", "event_hour_utc")
    assert got["event_count"].tolist() == [4, 1]
    assert (
        pd.to_datetime(got["event_time_utc_latest"]).tolist()
        == hourly["event_time_utc_latest"].tolist()
    )
    assert len(read(any_engine, "mivideo_media_courses", "in_context")) == 2
    media.loc[0, "name"] = "Renamed"
    upsert_rows(any_engine, {"mivideo_media_created": media})
    assert read(any_engine, "mivideo_media_created", "id")["name"].tolist() == ["Renamed"]


def test_upsert_rolls_back_every_table_on_failure(any_engine: Engine) -> None:
    media = pd.DataFrame(
        {"id": ["1_a"], "created_at": [datetime(2024, 1, 1)], "name": ["a"], "duration": [1]}
    )
    orphan = pd.DataFrame({"media_id": ["1_missing"], "course_id": [1], "in_context": [False]})
    with pytest.raises(Exception):  # noqa: B017 - FK violation from the driver
        upsert_rows(any_engine, {"mivideo_media_created": media, "mivideo_media_courses": orphan})
    assert len(read(any_engine, "mivideo_media_created", "id")) == 0


# -- a large replace killed part-way, with a concurrent reader ----------------------

CHILD = """
import sys, time
from courseinv.db.engine import make_engine
from tests.foundation.test_publish import inventory
from courseinv.db.publish import replace_tables
frames = inventory(int(sys.argv[2]), 9)
print("loading", flush=True)
replace_tables(make_engine(sys.argv[1]), frames)
print("done", flush=True)
"""


class Reader(threading.Thread):
    """Counts enrollment rows in a loop, remembering every count it saw."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(daemon=True)
        self.engine, self.seen, self.errors = engine, set(), []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with self.engine.connect() as conn:
                    self.seen.add(conn.execute(text("SELECT COUNT(*) FROM enrollment")).scalar())
            except Exception as exc:  # a reader must never fail either
                self.errors.append(str(exc))
            time.sleep(0.01)


BULK_LOAD_QUERY = {
    "mysql": "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'LOAD DATA%'",
    "postgresql": "SELECT COUNT(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'COPY%'",
}


def wait_until_bulk_load_runs(engine: Engine) -> None:
    """Return once the server is executing the child's bulk load (SQLite: after a while)."""
    query = BULK_LOAD_QUERY.get(engine.dialect.name)
    if query is None:
        time.sleep(2.5)
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(text(query)).scalar():
                time.sleep(0.2)  # some rows are in
                return
        time.sleep(0.05)
    raise AssertionError("the child never started its bulk load")


@pytest.mark.parametrize("kind", ["sqlite", "mariadb", "postgres"])
def test_sigkill_mid_write_keeps_old_contents_and_readers_never_see_partial(
    kind: str, request: pytest.FixtureRequest
) -> None:
    engine: Engine = request.getfixturevalue(f"{kind}_engine")
    replace_tables(engine, inventory(1000, 1))
    reader = Reader(engine)
    reader.start()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, engine.url.render_as_string(hide_password=False), "200000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "loading"
    wait_until_bulk_load_runs(engine)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    time.sleep(0.3)
    assert len(read(engine, "enrollment", "canvas_id")) == 1000
    left = list(_private_parent().glob(f"publish-{child.pid}-*"))
    if kind != "sqlite":  # the killed publish's bulk-load files (0700) are still there
        assert len(left) == 1 and stat.S_IMODE(left[0].stat().st_mode) == 0o700
        assert stat.S_IMODE(left[0].parent.stat().st_mode) == 0o700
    # The next publish cleans up whatever the killed one left, while the reader watches.
    replace_tables(engine, inventory(2000, 2))
    assert not any(p.exists() for p in left)  # nothing accumulates from run to run
    reader.stop.set()
    reader.join(timeout=10)
    assert reader.errors == []
    assert reader.seen <= {1000, 2000} and 1000 in reader.seen
    assert len(read(engine, "enrollment", "canvas_id")) == 2000


# -- no silent wipes ------------------------------------------------------------------


def test_shrink_guard_refuses_wipes_and_big_losses_unless_allowed(any_engine: Engine) -> None:
    replace_tables(any_engine, inventory(10, 1))  # a first run on empty tables works
    before = {t: read(any_engine, t, "1") for t in ("course", "enrollment", "term")}
    no_enrollments = {**inventory(10, 2), "enrollment": inventory(10, 2)["enrollment"][:0]}
    for frames in (inventory(4, 2), no_enrollments):
        with pytest.raises(ShrinkRefused) as refused:
            replace_tables(any_engine, frames)
        assert "--allow-shrink" in str(refused.value)
        for table, frame in before.items():
            pd.testing.assert_frame_equal(read(any_engine, table, "1"), frame)
    assert "course would go from 10 to 4 rows" in _message(any_engine, inventory(4, 2))
    assert "enrollment would go from 10 to 0 rows" in _message(any_engine, no_enrollments)
    assert _staging(any_engine) == []

    replace_tables(any_engine, inventory(6, 3))  # 40 % fewer: within the default 50 %
    with pytest.raises(ShrinkRefused):  # a stricter limit
        replace_tables(any_engine, inventory(5, 3), policy=PublishPolicy(max_shrink=0.1))
    empty = {name: frame[:0] for name, frame in inventory(10, 4).items()}
    replace_tables(any_engine, empty, policy=PublishPolicy(allow_shrink=True))
    assert len(read(any_engine, "course", "1")) == 0
    replace_tables(any_engine, empty)  # empty stays empty: nothing is lost


def _message(engine: Engine, frames: dict[str, pd.DataFrame]) -> str:
    with pytest.raises(ShrinkRefused) as refused:
        replace_tables(engine, frames)
    return str(refused.value)


def _staging(engine: Engine) -> list[str]:
    from sqlalchemy import inspect

    return [n for n in inspect(engine).get_table_names() if n.endswith(("__new", "__old"))]


# -- the live table must have the code's columns ------------------------------------------


@pytest.mark.parametrize(
    ("ddl", "says"),
    [
        ("ALTER TABLE term DROP COLUMN end_at", "lacks end_at"),
        ("ALTER TABLE account ADD COLUMN region VARCHAR(20)", "has unknown region"),
    ],
)
def test_column_mismatch_with_the_live_table_is_an_error_before_writing(
    any_engine: Engine, ddl: str, says: str
) -> None:
    replace_tables(any_engine, inventory(10, 1))
    before = {t: read(any_engine, t, "1") for t in ("term", "account", "course")}
    with any_engine.begin() as conn:
        conn.execute(text(ddl))
    with pytest.raises(PublishError, match=says) as mismatch:
        replace_tables(any_engine, inventory(10, 2))
    assert "nothing was written" in str(mismatch.value)
    assert _staging(any_engine) == []
    for table in ("course",):
        pd.testing.assert_frame_equal(read(any_engine, table, "1"), before[table])
    with any_engine.connect() as conn:  # the live table keeps exactly its own columns
        names = [c["name"] for c in sqlalchemy_inspect(conn).get_columns("term")]
    assert ("end_at" in names) is ("DROP" not in ddl)


# -- bounded waits for dashboards ---------------------------------------------------------

SWAP_WAITING = {
    "mysql": "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
    "WHERE INFO LIKE 'RENAME TABLE%' AND STATE LIKE '%metadata lock%'",
    "postgresql": "SELECT COUNT(*) FROM pg_stat_activity "
    "WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE%RENAME%'",
}


class Publisher(threading.Thread):
    """``replace_tables`` in a thread, keeping its outcome."""

    def __init__(self, engine: Engine, frames: dict[str, pd.DataFrame], policy: PublishPolicy):
        super().__init__(daemon=True)
        self.engine, self.frames, self.policy = engine, frames, policy
        self.error: BaseException | None = None
        self.seconds = 0.0

    def run(self) -> None:
        started = time.monotonic()
        try:
            replace_tables(self.engine, self.frames, policy=self.policy)
        except BaseException as exc:
            self.error = exc
        self.seconds = time.monotonic() - started


def wait_for(engine: Engine, query: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(text(query)).scalar():
                return
        time.sleep(0.02)
    raise AssertionError(f"never true: {query}")


def timed_count(engine: Engine) -> float:
    """A dashboard query arriving while the swap waits: how long it took."""
    started = time.monotonic()
    with engine.connect() as conn:
        conn.execute(text("SELECT COUNT(*) FROM course")).scalar()
    return time.monotonic() - started


@pytest.mark.parametrize("kind", ["mariadb", "postgres"])
def test_open_reader_transaction_bounds_the_swap_and_dashboard_waits(
    kind: str, request: pytest.FixtureRequest
) -> None:
    engine: Engine = request.getfixturevalue(f"{kind}_engine")
    replace_tables(engine, inventory(20, 1))
    before = read(engine, "course", "canvas_id")
    policy = PublishPolicy(lock_wait_seconds=1, swap_attempts=2)
    with engine.connect() as reader:  # a dashboard holding a transaction open
        reader.execute(text("SELECT COUNT(*) FROM course")).scalar()
        publisher = Publisher(engine, inventory(20, 2), policy)
        publisher.start()
        wait_for(engine, SWAP_WAITING[engine.dialect.name])
        dashboard = timed_count(engine)  # queued behind the swap's lock request
        publisher.join(timeout=60)
        reader.rollback()
    assert dashboard < 1 + 0.8, dashboard  # never longer than SWAP_LOCK_WAIT_SECONDS
    assert isinstance(publisher.error, PublishError), publisher.error
    assert "gave up" in str(publisher.error) and "previous tables were kept" in str(
        publisher.error
    )
    assert publisher.seconds < 2 * 1 + 1 + 10  # two waits and one backoff, plus loading
    pd.testing.assert_frame_equal(read(engine, "course", "canvas_id"), before)
    assert _staging(engine) == []

    # A reader that finishes during the backoff: the next attempt swaps.
    with engine.connect() as reader:
        reader.execute(text("SELECT COUNT(*) FROM course")).scalar()
        publisher = Publisher(engine, inventory(20, 3), PublishPolicy(lock_wait_seconds=1))
        publisher.start()
        wait_for(engine, SWAP_WAITING[engine.dialect.name])
        time.sleep(1.2)
        reader.rollback()
        publisher.join(timeout=60)
    assert publisher.error is None, publisher.error
    assert read(engine, "course", "canvas_id")["name"].tolist() == inventory(20, 3)["course"][
        "name"
    ].tolist()
    assert _staging(engine) == []


# -- after the swap, nothing undoes the publish ---------------------------------------------


def test_old_tables_that_cannot_be_dropped_are_left_for_the_next_publish(
    postgres_engine: Engine,
) -> None:
    """PostgreSQL: dropping a table with a foreign key locks its parent (``lti_type``),
    so a reader of the parent lets the swap through and blocks the cleanup."""
    engine = postgres_engine
    upsert_rows(engine, {"lti_type": pd.DataFrame({"canvas_id": [77], "des": ["Zoom"]})})
    replace_tables(engine, placements(3))
    swapped: list[dict[str, int]] = []
    policy = PublishPolicy(lock_wait_seconds=1)
    with engine.connect() as reader:
        reader.execute(text("SELECT COUNT(*) FROM lti_type")).scalar()
        counts = replace_tables(engine, placements(4), policy=policy, on_swapped=swapped.append)
        reader.rollback()
    assert counts == swapped[0] == {"lti_placement": 4, "lti_zoom_meeting": 1}
    assert read(engine, "lti_placement", "id")["course_id"].tolist() == [10, 11, 12, 13]
    assert _staging(engine) == ["lti_placement__old", "lti_zoom_meeting__old"]
    replace_tables(engine, placements(5))
    assert _staging(engine) == []
    assert len(read(engine, "lti_placement", "id")) == 5


def placements(n: int) -> dict[str, pd.DataFrame]:
    return {
        "lti_placement": pd.DataFrame({"id": range(1, n + 1), "course_id": range(10, 10 + n),
                                       "account_id": 1, "course_name": "C",
                                       "placement_type_id": 77}),
        "lti_zoom_meeting": pd.DataFrame({"lti_placement_id": [1], "meeting_id": [98765432101],
                                          "host_id": ["h1"], "start_time": [datetime(2024, 1, 1)],
                                          "status": ["ended"]}),
    }  # fmt: skip
