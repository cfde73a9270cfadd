"""store_batch on SQLite, MariaDB and PostgreSQL: every documented example stored, once;
newest event wins whatever the order; counts and drift never double."""

from __future__ import annotations

import itertools
import json
from datetime import datetime

import pytest
from courseinv.db.tables import (
    live_course_activity_hourly,
    live_course_state,
    live_event,
    live_event_field_drift,
    live_event_rejected,
    lti_resource_link,
)
from courseinv.live_events.parse import read_events
from courseinv.live_events.store import store_batch
from sqlalchemy import select

from tests.live_events.helpers import count, projections
from tests.live_events.test_parse import examples


def _all_examples() -> list:
    return [
        item
        for fmt in ("canvas", "caliper")
        for _, payload in examples(fmt)
        for item in read_events(json.dumps(payload), source="test")
    ]


def test_every_documented_example_is_stored_once_and_projected(any_engine) -> None:
    items = _all_examples()
    keys = {i.event_key for i in items}
    first = store_batch(any_engine, items)
    assert first.rejected == 0
    assert first.inserted == len(keys) == count(any_engine, live_event)
    assert first.duplicates == len(items) - len(keys)  # examples Canvas documents twice
    assert first.unhandled == sum(1 for k in keys if not _handled(items, k))
    tables = projections(any_engine)
    assert tables["course_state"] == {
        56: {"name": "Linear Algebra", "workflow_state": "available"},
        565: {"name": "Computer Science I", "workflow_state": None},
        2340000000056: {"name": "Linear Algebra", "workflow_state": "available"},
    }
    assert tables["enrollment_state"][46825]["course_section_id"] == 598  # the newer example
    assert set(tables["enrollment_state"]) == {46825, 549222}
    assert tables["links"]["e51c95d8-d609-44bc-9f05-70e0e688d204"]["course_id"] == 1
    views = sum(v for v, _ in tables["activity"].values())
    assert views == 24 + 26  # documented page views in a course, both formats
    assert tables["drift"] == {}

    again = store_batch(any_engine, items)  # a full redelivery changes nothing
    assert (again.inserted, again.duplicates) == (0, len(items))
    assert projections(any_engine) == tables


def _handled(items, key) -> bool:
    return next(i for i in items if i.event_key == key).handled


def _course_event(name: str, when: str, *, state: str | None, fmt: str = "canvas") -> str:
    if fmt == "caliper":
        ext = {"entity_id": "21070000000000056"}
        if state:
            ext["workflow_state"] = state
        action = "Created" if name == "course_created" else "Modified"
        return json.dumps(
            {
                "sensor": "s",
                "sendTime": when,
                "dataVersion": "v",
                "data": [
                    {
                        "id": f"urn:uuid:{name}-{when}",
                        "type": "Event",
                        "action": action,
                        "eventTime": when,
                        "actor": {"id": "urn:instructure:canvas:user:1"},
                        "object": {
                            "id": "urn:instructure:canvas:course:21070000000000056",
                            "type": "CourseOffering",
                            "name": f"Course at {when}",
                            "extensions": {"com.instructure.canvas": ext},
                        },
                    }
                ],
            }
        )
    return json.dumps(
        {
            "metadata": {"event_name": name, "event_time": when},
            "body": {
                "course_id": "21070000000000056",
                "name": f"Course at {when}",
                "workflow_state": state,
            },
        }
    )


EVENTS = [
    _course_event("course_created", "2026-01-01T10:00:00.000Z", state="unpublished"),
    _course_event("course_updated", "2026-01-02T10:00:00.000Z", state="available"),
    # Newest of all, but Caliper course_created carries no state: the name changes only.
    _course_event("course_created", "2026-01-03T10:00:00.000Z", state=None, fmt="caliper"),
    # Same time as the previous one: the greater event key wins, on every database.
    _course_event("course_updated", "2026-01-02T10:00:00.000Z", state="completed", fmt="caliper"),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4)))[::5])
def test_newest_event_wins_in_any_arrival_order(sqlite_engine, order) -> None:
    _store_in_order(sqlite_engine, order)


def test_newest_event_wins_on_every_database(any_engine) -> None:
    _store_in_order(any_engine, (3, 1, 2, 0))


def _store_in_order(engine, order) -> None:
    for i in order:  # one batch each: arrival order across transactions
        store_batch(engine, read_events(EVENTS[i], source="test"))
    with engine.connect() as conn:
        row = conn.execute(select(live_course_state)).one()
    assert row.name == "Course at 2026-01-03T10:00:00.000Z"
    # Two states at 2026-01-02T10:00: "canvas:<sha256>" < "urn:uuid:..." so Caliper's wins.
    assert row.workflow_state == "completed"
    assert row.event_time == datetime(2026, 1, 3, 10)


def test_counts_and_drift_never_double(any_engine) -> None:
    view = json.dumps(
        {
            "metadata": {
                "event_name": "asset_accessed",
                "event_time": "2026-03-01T09:59:59.999Z",
                "context_type": "Course",
                "context_id": "21070000000000077",
                "user_id": "21070000000000005",
                "brand_new": 1,
            },
            "body": {"asset_type": "course"},
        }
    )
    other = view.replace("09:59:59.999Z", "09:10:00.000Z")
    batch = read_events(view, source="test") * 3 + read_events(other, source="test")
    first = store_batch(any_engine, batch)
    assert (first.inserted, first.duplicates, first.drift) == (2, 2, 2)
    store_batch(any_engine, read_events(view, source="test"))
    with any_engine.connect() as conn:
        row = conn.execute(select(live_course_activity_hourly)).one()
        drift = conn.execute(select(live_event_field_drift)).one()
    assert (row.course_id, row.hour_utc, row.user_id) == (77, datetime(2026, 3, 1, 9), 5)
    assert (row.page_views, row.participations) == (2, 0)
    assert (drift.field_path, drift.occurrences) == ("metadata.brand_new", 2)


def test_a_repeated_bad_message_is_one_reject_row(any_engine) -> None:
    store_batch(any_engine, read_events("nope", source="sqs") * 2)
    store_batch(any_engine, read_events("nope", source="sqs"))
    assert count(any_engine, live_event_rejected) == 1


def test_payloads_are_stored_exactly_as_received(any_engine) -> None:
    """Quotes, backslashes, escapes and non-ASCII text (4-byte UTF-8 too) come back
    unchanged, in live_event and in live_event_rejected."""
    name = "Ünïcødé 'quoted' \\back\\slash \"double\" 日本語 😀 \\u00e9 %s %(x)s"
    good = json.dumps(
        {
            "metadata": {"event_name": "course_updated", "event_time": "2026-09-01T00:00:00Z"},
            "body": {"course_id": "5", "name": name},
        },
        ensure_ascii=False,
    )
    bad = "not JSON: 'ü' \\ \" 😀"
    store_batch(any_engine, [*read_events(good, source="sqs"), *read_events(bad, source="sqs")])
    with any_engine.connect() as conn:
        assert conn.execute(select(live_event.c.payload)).scalar_one() == good
        assert conn.execute(select(live_event_rejected.c.payload)).scalar_one() == bad
        assert conn.execute(select(live_course_state.c.name)).scalar_one() == name


def _link(when: str, state: str, url: str) -> str:
    return json.dumps(
        {
            "metadata": {"event_name": "lti_resource_link_updated", "event_time": when},
            "body": {
                "lookup_uuid": "4f1c",
                "context_type": "Course",
                "context_id": "9",
                "context_external_tool_id": "3",
                "url": url,
                "workflow_state": state,
            },
        }
    )


def test_every_field_of_the_newest_event_wins_on_every_database(any_engine) -> None:
    # MySQL applies ON DUPLICATE KEY UPDATE assignments in order: each column must be
    # assigned before the (time, key) it is compared with.
    newest = _link("2026-05-02T00:00:00Z", "deleted", "https://b.example/")
    older = _link("2026-05-01T00:00:00Z", "active", "https://a.example/")
    for order in ([older, newest], [newest, older]):
        for item in order:
            store_batch(any_engine, read_events(item, source="test"))
        link = projections(any_engine)["links"]["4f1c"]
        assert (link["workflow_state"], link["url"]) == ("deleted", "https://b.example/")
        with any_engine.begin() as conn:
            conn.execute(live_event.delete())
            conn.execute(lti_resource_link.delete())
    # A newer event with a smaller key than the stored one still takes the row and its key.
    store_batch(any_engine, read_events(EVENTS[3], source="test"))  # urn:uuid:..., Jan 2
    store_batch(any_engine, read_events(EVENTS[1], source="test"))  # canvas:..., Jan 2 (tie)
    late = _course_event("course_updated", "2026-01-05T00:00:00.000Z", state="deleted")
    store_batch(any_engine, read_events(late, source="test"))
    with any_engine.connect() as conn:
        row = conn.execute(select(live_course_state)).one()
    assert (row.workflow_state, row.event_time) == ("deleted", datetime(2026, 1, 5))
    assert row.event_key.startswith("canvas:") and row.workflow_state_key == row.event_key
