"""Atomic replace and idempotent upsert on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
from courseinv.db.publish import PublishError, replace_tables, upsert_rows
from sqlalchemy import Engine, text

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
        [sys.executable, "-c", CHILD, engine.url.render_as_string(hide_password=False), "300000"],
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
    # The next publish cleans up whatever the killed one left, while the reader watches.
    replace_tables(engine, inventory(2000, 2))
    reader.stop.set()
    reader.join(timeout=10)
    assert reader.errors == []
    assert reader.seen <= {1000, 2000} and 1000 in reader.seen
    assert len(read(engine, "enrollment", "canvas_id")) == 2000
