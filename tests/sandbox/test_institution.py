"""The synthetic institution: determinism, deliberate awkwardness, ground truth rules."""

from __future__ import annotations

import numpy as np
import pytest
from courseinv.db import tables
from courseinv.sandbox.institution import (
    ENROLLMENT_STATES,
    ENROLLMENT_TYPES,
    STUDENT,
    TEST_STUDENT,
    Institution,
    InstitutionSpec,
)


@pytest.fixture(scope="module")
def inst() -> Institution:
    return Institution.generate(InstitutionSpec.sized(400, terms=3, seed=7))


@pytest.fixture(scope="module")
def truth(inst: Institution) -> dict:
    return inst.expected_course_inventory(inst.term_ids, udw=True)


def _fingerprint(inst: Institution) -> tuple:
    course = inst.courses[len(inst.courses) // 2]
    return (
        [(c.id, c.name, c.sis_course_id, c.workflow_state, c.created_at) for c in inst.courses],
        [(s.id, s.name, s.sis_section_id, s.udw_sis_source_id) for s in inst.sections],
        [a.tobytes() for a in vars(inst.enrollments).values()],
        inst.audit_events(course.id),
        inst.analytics(course.id),
        inst.tabs(course.id),
        {c: inst.calendar_events(c) for c in list(inst.course_meetings)[:5]},
        inst.zoom_meetings,
    )


def test_same_seed_same_institution() -> None:
    spec = InstitutionSpec.sized(120, seed=3)
    assert _fingerprint(Institution.generate(spec)) == _fingerprint(Institution.generate(spec))
    other = Institution.generate(InstitutionSpec.sized(120, seed=4))
    assert _fingerprint(other) != _fingerprint(Institution.generate(spec))


def test_sizes_follow_the_spec(inst: Institution) -> None:
    assert len(inst.courses) == 400 and len(inst.term_ids) == 3
    assert sorted(c.id for c in inst.courses) == [c.id for c in inst.courses]
    students = np.bincount(
        inst.enrollments.course_index[inst.enrollments.type == STUDENT], minlength=400
    )
    assert students.max() > 10 * np.median(students[students > 0])  # a long tail


def test_names_and_sis_ids_are_awkward(inst: Institution) -> None:
    names = [c.name for c in inst.courses]
    assert max(len(n) for n in names) == 255
    assert any(len(n.encode()) > len(n) + 10 for n in names if len(n) == 255)  # multi-byte
    assert any(any(ord(ch) > 0xFFFF for ch in n) for n in names)  # emoji / astral plane
    assert any('"' in n and "'" in n for n in names)
    course_sis = [c.sis_course_id for c in inst.courses]
    assert None in course_sis and any(s and not s.isdigit() for s in course_sis)
    assert any(s and s.isdigit() for s in course_sis)
    term_sis = [inst.terms[t].sis_term_id for t in inst.term_ids]
    assert None in term_sis and any(s and not s.isdigit() for s in term_sis)
    assert None in [a.sis_account_id for a in inst.accounts.values()]
    assert None in [s.sis_section_id for s in inst.sections]
    assert int(inst.enrollments.user_id.max()) > 2**31


def test_course_shapes_present(inst: Institution) -> None:
    e = inst.enrollments
    states = {c.workflow_state for c in inst.courses}
    assert states == {"unpublished", "available", "completed", "deleted"}
    assert any(not c.has_enrollments for c in inst.courses)  # no enrollment at all
    teachers_only = [
        c
        for c in inst.courses
        if c.has_enrollments and not (e.type[c.enrollment_slice] == STUDENT).any()
    ]
    assert teachers_only
    # Students exist but none counts in total_students.
    assert any(
        c.total_students == 0 and (e.type[c.enrollment_slice] == STUDENT).any()
        for c in inst.courses
    )
    assert set(np.unique(e.type)) == set(range(len(ENROLLMENT_TYPES)))
    assert set(np.unique(e.state)) == set(range(len(ENROLLMENT_STATES)))


def test_audit_log_newest_first_and_publish_variants(inst: Institution) -> None:
    available = [c for c in inst.courses if c.workflow_state == "available"]
    published_counts = []
    for c in available:
        events = inst.audit_events(c.id)
        times = [ev.created_at for ev in events]
        assert times == sorted(times, reverse=True) and len(set(times)) == len(times)
        assert events[-1].event_type == "created"
        published = [ev.created_at for ev in events if ev.event_type == "published"]
        published_counts.append(len(published))
        assert inst.published_at(c.id) == (max(published) if published else None)
    assert 0 in published_counts and max(published_counts) >= 2 and 1 in published_counts


def test_analytics_tabs_and_calendar(inst: Institution) -> None:
    kept = inst.kept_courses(inst.term_ids)
    available = [c for c in kept if c.workflow_state == "available"]
    assert any(inst.analytics(c.id) is None for c in available)
    for c in inst.courses:
        if c.workflow_state in ("unpublished", "deleted"):
            assert inst.analytics(c.id) is None
    rows = next(r for c in available if (r := inst.analytics(c.id)))
    dates = [r["date"] for r in rows]
    assert len(set(dates)) == len(dates)
    tabs = [inst.tabs(c.id) for c in inst.courses]
    assert None in tabs
    zoom = f"context_external_tool_{inst.zoom_tool_id}"
    zoom_tabs = [t for ts in tabs if ts for t in ts if t["id"] == zoom]
    assert {t["hidden"] for t in zoom_tabs} == {True, False}
    assert inst.external_tools[inst.zoom_tool_id] == "Zoom"
    assert {m.status for m in inst.zoom_meetings.values()} == {
        "waiting",
        "started",
        "ended",
        "deleted",
    }
    for course_id, meetings in inst.course_meetings.items():
        text = str(inst.calendar_events(course_id))
        assert all(f"/j/{m}" in text for m in meetings)


def test_ground_truth_columns_match_the_table_contract(truth: dict) -> None:
    assert set(truth) == {
        "term",
        "account",
        "course",
        "course_section",
        "enrollment",
        "canvas_course_usage",
    }
    for name, frame in truth.items():
        table = tables.metadata.tables[name]
        # Every column of the contract, except canvas_course_usage's surrogate id.
        expected = [c.name for c in table.columns if not (c.name == "id" and c.autoincrement)]
        assert list(frame.columns) == expected


def test_ground_truth_rules(inst: Institution, truth: dict) -> None:
    courses = truth["course"]
    kept = {c.id: c for c in inst.kept_courses(inst.term_ids)}
    assert list(courses["canvas_id"]) == sorted(kept)
    assert all(c.total_students > 0 and c.workflow_state != "deleted" for c in kept.values())
    dropped = [c for c in inst.courses if c.id not in kept]
    assert any(c.workflow_state == "deleted" and c.total_students > 0 for c in dropped)
    # published_at only for available courses.
    not_available = courses[courses["workflow_state"] != "available"]
    assert not_available["published_at"].isna().all()
    available = courses[courses["workflow_state"] == "available"]
    assert available["published_at"].isna().any() and available["published_at"].notna().any()
    # Enrollments: kept courses, no test student, no deleted enrollments.
    enrollment = truth["enrollment"]
    assert set(enrollment["course_id"]) <= set(kept)
    assert not (enrollment["role_type"] == ENROLLMENT_TYPES[TEST_STUDENT]).any()
    assert not (enrollment["workflow_state"] == "deleted").any()
    assert enrollment["canvas_id"].is_unique
    expected_count = sum(
        int(
            (
                (inst.enrollments.type[c.enrollment_slice] != TEST_STUDENT)
                & (inst.enrollments.state[c.enrollment_slice] != ENROLLMENT_STATES.index("deleted"))
            ).sum()
        )
        for c in kept.values()
    )
    assert len(enrollment) == expected_count
    # Sections: exactly those referenced.
    sections = truth["course_section"]
    assert set(sections["canvas_id"]) == set(enrollment["course_section_id"])
    # Usage: available kept courses whose analytics answer.
    usage = truth["canvas_course_usage"]
    assert set(usage["course_id"]) <= set(available["canvas_id"])
    assert not usage.duplicated(["course_id", "date"]).any()
    accounts = truth["account"]
    assert set(accounts["canvas_id"]) == set(courses["account_id"])
    assert list(truth["term"]["canvas_id"]) == inst.term_ids


def test_udw_and_canvas_sis_ids_differ_for_some_sections(inst: Institution) -> None:
    udw = inst.expected_course_inventory(inst.term_ids, udw=True)["course_section"]
    canvas = inst.expected_course_inventory(inst.term_ids, udw=False)["course_section"]
    assert list(udw["canvas_id"]) == list(canvas["canvas_id"])
    differ = udw["sis_id"].fillna("<null>") != canvas["sis_id"].fillna("<null>")
    assert 0 < differ.sum() < len(udw) / 2
    assert any(not s.in_udw for s in inst.sections)


def test_unknown_term_is_an_error(inst: Institution) -> None:
    with pytest.raises(KeyError):
        inst.expected_course_inventory([999_999], udw=False)
