"""Reading deliveries: Canvas's documented examples (both formats), event keys, ids and
times, drift, bad input, over-long values."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import pytest
from courseinv.live_events.model import (
    Activity,
    CourseState,
    EnrollmentState,
    ParsedEvent,
    Rejected,
    ResourceLink,
)
from courseinv.live_events.normalise import local_id, parse_time, urn_id
from courseinv.live_events.parse import read_event, read_events
from courseinv.live_events.schemas import _unknown, schema

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "live-events"
if not REFERENCE.is_dir():  # a fresh clone beside shared/, or the worktree layout
    REFERENCE = Path("/work/shared/reference/live-events")

LINK = ResourceLink(
    "e51c95d8-d609-44bc-9f05-70e0e688d204", 1, 1, "https://example.com/lti/deep_link/12345",
    None, "active",
)  # fmt: skip
ENROLLMENT = EnrollmentState(46825, 565, 4811, 20064, "StudentEnrollment", "invited")

# (format, event type) -> the projection of each documented example, in file order.
EXPECTED = {
    ("canvas", "course_created"): [CourseState(56, "Linear Algebra", "available")],
    # "12340000000056": 14 digits, so shard 1 and local id 2340000000056 by the documented rule.
    ("canvas", "course_updated"): [CourseState(2340000000056, "Linear Algebra", "available")],
    ("canvas", "course_completed"): [CourseState(565, "Computer Science I", None)],
    ("canvas", "enrollment_created"): [ENROLLMENT],
    ("canvas", "enrollment_updated"): [
        EnrollmentState(46825, 565, 598, 20064, "StudentEnrollment", "invited")
    ],
    ("canvas", "lti_resource_link_created"): [LINK],
    ("canvas", "lti_resource_link_updated"): [LINK],
    ("canvas", "submission_created"): [None],  # names no course
    ("canvas", "discussion_entry_created"): [Activity(565, 98765, 0, 1)],
    ("canvas", "discussion_topic_created"): [Activity(1234560, 0, 0, 1)],  # body context
    ("canvas", "quiz_submitted"): [Activity(100123, 987123, 0, 1)],
    ("caliper", "course_created"): [CourseState(56, "Linear Algebra", None)],
    ("caliper", "course_updated"): [CourseState(56, "Linear Algebra", "available")],
    ("caliper", "enrollment_created"): [ENROLLMENT],
    ("caliper", "enrollment_updated"): [
        EnrollmentState(549222, 565, 509348, 93482, "StudentEnrollment", "invited")
    ],
    ("caliper", "submission_created"): [None],  # no group: no course
    ("caliper", "discussion_entry_created"): [Activity(565, 98765, 0, 1)],
    ("caliper", "discussion_topic_created"): [Activity(565, 1, 0, 1)],
    ("caliper", "quiz_submitted"): [Activity(100123, 987123, 0, 1)],
}


def examples(fmt: str) -> list[tuple[str, dict]]:
    out = []
    for path in sorted((REFERENCE / fmt / "event-types").glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        out += [(path.stem, ex["payload"]) for ex in document["examples"]]
    return out


def _one(payload) -> ParsedEvent:
    item = read_event(payload, source="test")
    assert isinstance(item, ParsedEvent), getattr(item, "reason", item)
    return item


@pytest.mark.parametrize("fmt", ["canvas", "caliper"])
def test_every_documented_example_is_read_without_drift(fmt: str) -> None:
    found = examples(fmt)
    assert len(found) == {"canvas": 121, "caliper": 71}[fmt]  # every example of event-types/
    for stem, payload in found:
        event = _one(json.dumps(payload))
        assert event.event_format == fmt
        assert event.drift == (), (stem, event.drift)
        if event.handled:
            assert event.schema == f"{fmt}/{event.event_name}.v1"


@pytest.mark.parametrize("fmt", ["canvas", "caliper"])
def test_documented_examples_of_handled_types_project_as_expected(fmt: str) -> None:
    by_type: dict[str, list] = {}
    for stem, payload in examples(fmt):
        by_type.setdefault(stem, []).append(_one(payload))
    for (f, name), projections in EXPECTED.items():
        if f == fmt:
            events = by_type[name]
            assert all(e.handled and e.event_name == name for e in events), name
            assert [e.projection for e in events] == projections, name


def test_documented_page_views_project_to_their_course_context() -> None:
    for fmt in ("canvas", "caliper"):
        views = [_one(p) for stem, p in examples(fmt) if stem == "asset_accessed"]
        assert len(views) == 40
        in_course = [v for v in views if v.projection is not None]
        assert len(in_course) == {"canvas": 24, "caliper": 26}[fmt]
        for v in in_course:
            assert v.projection.page_views == 1 and v.projection.participations == 0
            assert v.projection.course_id == v.course_id
    canvas = [json.loads(json.dumps(p)) for s, p in examples("canvas") if s == "asset_accessed"]
    first_course = next(p for p in canvas if p["metadata"].get("context_type") == "Course")
    view = _one(first_course)
    assert view.projection == Activity(
        local_id(first_course["metadata"]["context_id"]),
        local_id(first_course["metadata"]["user_id"]), 1, 0,
    )  # fmt: skip


def test_caliper_event_names_match_the_documented_type() -> None:
    for stem, payload in examples("caliper"):
        assert _one(payload).event_name == stem


def test_event_keys() -> None:
    caliper = next(p for s, p in examples("caliper") if s == "course_created")
    event = _one(caliper)
    assert event.event_key == "urn:uuid:79d0955f-d697-4293-b361-6f420c8f254b"
    resent = {**caliper, "sendTime": "2030-01-01T00:00:00.000Z"}
    assert _one(resent).event_key == event.event_key  # a redelivery maps to the same key

    canvas = next(p for s, p in examples("canvas") if s == "course_created")
    canonical = json.dumps(canvas, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = "canvas:" + hashlib.sha256(canonical.encode()).hexdigest()
    reordered = json.dumps({"body": canvas["body"], "metadata": canvas["metadata"]}, indent=2)
    assert _one(canvas).event_key == _one(reordered).event_key == expected
    changed = {**canvas, "body": {**canvas["body"], "name": "Linear Algebra II"}}
    assert _one(changed).event_key != expected


def test_ids_and_times_are_normalised() -> None:
    assert local_id("21070000000000565") == 565
    assert local_id("10000000000001") == 1
    assert local_id(565) == 565 and local_id("565") == 565
    assert local_id("abc") is None and local_id(None) is None and local_id(True) is None
    assert urn_id("urn:instructure:canvas:course:21070000000000565", "course") == 565
    assert urn_id("urn:instructure:canvas:course:565:section:21070000000004811", "section") == 4811
    assert urn_id("urn:instructure:canvas:user:21070000000000001", "course") is None
    assert parse_time("2019-11-05T13:38:00.218Z") == datetime(2019, 11, 5, 13, 38, 0, 218000)
    assert parse_time("2019-11-05 07:38:00 -0800") == datetime(2019, 11, 5, 15, 38)
    assert parse_time("2019-11-05T14:38:00+01:00") == datetime(2019, 11, 5, 13, 38)
    assert parse_time("2019-11-05T13:38:00.123456789Z") == datetime(2019, 11, 5, 13, 38, 0, 123456)
    assert parse_time("yesterday") is None and parse_time(12) is None
    assert parse_time("2019-02-30T00:00:00Z") is None


def test_a_caliper_envelope_of_several_events_gives_one_item_each() -> None:
    one = next(p for s, p in examples("caliper") if s == "course_created")
    two = next(p for s, p in examples("caliper") if s == "course_updated")
    envelope = {**one, "data": [one["data"][0], two["data"][0], {"type": "Event"}]}
    items = read_events(json.dumps(envelope), source="sqs")
    assert [type(i) for i in items] == [ParsedEvent, ParsedEvent, Rejected]
    assert [i.event_name for i in items[:2]] == ["course_created", "course_updated"]
    for item in items:  # each stored with the envelope around it alone
        assert len(json.loads(item.payload)["data"]) == 1
    whole = read_event(json.dumps(envelope), source="sqs")
    assert isinstance(whole, Rejected) and "read_events" in whole.reason


def test_unknown_fields_are_drift_and_kept_in_the_payload() -> None:
    payload = next(p for s, p in examples("canvas") if s == "enrollment_updated")
    payload = json.loads(json.dumps(payload))
    payload["body"]["grade_band"] = "A"
    payload["metadata"]["edge_region"] = "us-east-2"
    event = _one(payload)
    assert event.drift == ("body.grade_band", "metadata.edge_region")
    assert json.loads(event.payload)["body"]["grade_band"] == "A"

    caliper = json.loads(json.dumps(next(p for s, p in examples("caliper") if s == "course_updated")))
    caliper["data"][0]["object"]["extensions"]["com.instructure.canvas"]["blueprint"] = True
    assert _one(caliper).drift == ('object.extensions["com.instructure.canvas"].blueprint',)


def _objects(value, path=()):
    """The path of every JSON object in ``value`` (list indexes included)."""
    if isinstance(value, dict):
        yield path
        for key, item in value.items():
            yield from _objects(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _objects(item, (*path, i))


@pytest.mark.parametrize("fmt", ["canvas", "caliper"])
def test_drift_is_what_the_full_schema_walk_finds(fmt: str) -> None:
    """A new field in any object of any documented example: the drift read (a closed
    schema decides in Rust first) is exactly what walking the schema finds."""
    found_drift = 0
    for _, payload in examples(fmt):
        where = () if fmt == "canvas" else ("data", 0)  # the document a schema checks
        for path in _objects(payload):
            if path[: len(where)] != where:
                continue
            changed = json.loads(json.dumps(payload))
            node = changed
            for part in path:
                node = node[part]
            node["zz_new_field"] = 1
            item = _one(changed)
            kind, _, versioned = item.schema.partition("/")
            document = changed if fmt == "canvas" else changed["data"][0]
            walked: list[str] = []
            _unknown(schema(kind, versioned.rsplit(".v", 1)[0]).document, document, (), walked)
            assert item.drift == tuple(sorted(set(walked))), (item.schema, path)
            found_drift += bool(item.drift)
    assert found_drift > 20  # new fields were found, not only in open maps


def test_unknown_types_are_stored_not_projected() -> None:
    canvas = {"metadata": {"event_name": "widget_frobnicated", "event_time": "2026-01-01T00:00:00Z"},
              "body": {"anything": [1, 2]}}  # fmt: skip
    event = _one(canvas)
    assert (event.handled, event.projection, event.drift) == (False, None, ())
    assert event.schema == "canvas/envelope.v1"
    caliper = next(p for s, p in examples("caliper") if s == "course_created")
    odd = json.loads(json.dumps(caliper))
    odd["data"][0]["action"] = "Archived"
    event = _one(odd)
    assert event.event_name == "caliper:Event/Archived/course" and not event.handled


BAD = [
    (b"\xff\xfe{}", "not UTF-8"),
    ("{", "not JSON"),
    ("42", "unknown envelope"),
    ('{"metadata": {}, "body": {}}', "event_name"),
    ('{"metadata": {"event_name": "course_created", "event_time": "2019-01-01T00:00:00Z"}, "body": "x"}',
     "body"),
    ('{"metadata": {"event_name": "course_created", "event_time": "2019-01-01T00:00:00Z"}, "body": {}}',
     "course_id"),
    ('{"metadata": {"event_name": "lti_resource_link_created", "event_time": "2019-01-01T00:00:00Z"},'
     ' "body": {"lookup_uuid": 7}}', "lookup_uuid"),
    ('{"sensor": 1, "sendTime": "x", "dataVersion": "v", "data": [{}]}', "sensor"),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "why"), BAD)
def test_unreadable_input_is_rejected_with_a_reason_and_kept(payload, why) -> None:
    item = read_event(payload, source="sqs")
    assert isinstance(item, Rejected)
    assert why in item.reason and item.source == "sqs"
    text = payload.decode("utf-8", "backslashreplace") if isinstance(payload, bytes) else payload
    assert item.payload == text


def test_over_long_values_are_cut_in_the_projection_and_whole_in_the_payload() -> None:
    payload = json.loads(json.dumps(next(p for s, p in examples("canvas") if s == "course_created")))
    payload["body"]["name"] = "Ω" * 300
    event = _one(payload)
    assert event.projection.name == "Ω" * 255
    assert event.truncated == ("name",)
    assert json.loads(event.payload)["body"]["name"] == "Ω" * 300
    link = json.loads(json.dumps(next(p for s, p in examples("canvas") if s == "lti_resource_link_created")))
    link["body"]["url"] = "https://example.com/" + "x" * 3000
    event = _one(link)
    assert len(event.projection.url) == 2048 and event.truncated == ("url",)
