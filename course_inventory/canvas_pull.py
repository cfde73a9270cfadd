"""What COURSE_INVENTORY reads from Canvas: terms, courses, accounts, and per course its
publish date (audit log), activity analytics and enrollments (GraphQL).

Every call goes through ``http_client.CanvasClient`` (retries, pagination, throttling and
fan-out live there); this module only says which endpoints to read and keeps the fields
the output tables need, as raw Canvas values (ISO datetime strings, string ids).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from courseinv.http_client.canvas import CanvasClient
from courseinv.http_client.errors import PermanentHttpError

log = logging.getLogger(__name__)

ENROLLMENTS_QUERY = (Path(__file__).with_name("enrollments.graphql")).read_text(encoding="utf-8")
ENROLLMENTS_CONNECTION = ("course", "enrollmentsConnection")
TEST_STUDENT_TYPE = "StudentViewEnrollment"
# Account courses: courses having a student or teacher enrollment, with their student count.
COURSE_LIST_PARAMS: Mapping[str, Any] = {
    "with_enrollments": "true",
    "enrollment_type[]": ["student", "teacher"],
    "include[]": ["total_students"],
}
# The course fields the job keeps (Canvas sends about thirty).
COURSE_FIELDS = (
    "id",
    "sis_course_id",
    "name",
    "account_id",
    "enrollment_term_id",
    "created_at",
    "workflow_state",
)


# -- terms, courses, accounts --------------------------------------------------------


def root_account_id(canvas: CanvasClient, account_id: int) -> int:
    """The root of ``account_id``'s tree (terms belong to root accounts only)."""
    account = canvas.get(f"/api/v1/accounts/{account_id}")
    return int(account.get("root_account_id") or account["id"])


def read_terms(canvas: CanvasClient, root_id: int, term_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Each configured term (a missing term is a permanent error: it fails the job)."""
    return [canvas.get(f"/api/v1/accounts/{root_id}/terms/{t}") for t in dict.fromkeys(term_ids)]


def read_courses(
    canvas: CanvasClient, account_id: int, term_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """The account's courses of the terms with at least one student, de-duplicated by id
    (terms are listed concurrently; pages may repeat rows)."""

    def term_courses(term_id: int) -> tuple[int, list[dict[str, Any]]]:
        params = {**COURSE_LIST_PARAMS, "enrollment_term_id": term_id}
        listed, kept = 0, []
        for course in canvas.paginate(f"/api/v1/accounts/{account_id}/courses", params):
            listed += 1
            if int(course.get("total_students") or 0) >= 1:
                kept.append({k: course.get(k) for k in COURSE_FIELDS})
        return listed, kept

    terms = list(dict.fromkeys(term_ids))
    per_term = dict(canvas.map(term_courses, terms, desc="course lists"))
    courses: dict[int, dict[str, Any]] = {}
    for term_id in terms:
        for course in per_term[term_id][1]:
            courses.setdefault(int(course["id"]), course)
    listed = sum(n for n, _ in per_term.values())
    log.info("Courses: %d listed, %d kept (with students, de-duplicated)", listed, len(courses))
    return list(courses.values())


def read_accounts(canvas: CanvasClient, account_ids: Iterable[int]) -> list[dict[str, Any]]:
    """The account objects of ``account_ids``, fetched concurrently."""
    run = canvas.map(
        lambda a: canvas.get(f"/api/v1/accounts/{a}"), sorted(set(account_ids)), desc="accounts"
    )
    return [account for _, account in run]


# -- per course ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enrollments:
    """One course's enrollments as parallel arrays (compact at a million rows)."""

    id: np.ndarray
    user_id: np.ndarray
    section_id: np.ndarray
    workflow_state: np.ndarray  # object array of interned strings
    role_type: np.ndarray

    @classmethod
    def from_nodes(cls, nodes: Sequence[Mapping[str, Any]]) -> Enrollments:
        def ints(key: Any) -> np.ndarray:
            return np.fromiter((key(n) for n in nodes), dtype=np.int64, count=len(nodes))

        def words(name: str) -> np.ndarray:
            return np.array([sys.intern(str(n[name])) for n in nodes], dtype=object)

        return cls(
            id=ints(lambda n: int(n["_id"])),
            user_id=ints(lambda n: int(n["user"]["_id"])),
            section_id=ints(lambda n: int(n["section"]["_id"])),
            workflow_state=words("state"),
            role_type=words("type"),
        )


@dataclass(frozen=True, slots=True)
class Section:
    canvas_id: int
    name: str
    sis_id: str | None  # Canvas's sis_section_id
    course_id: int


@dataclass(frozen=True, slots=True)
class Activity:
    """One course's daily activity analytics as parallel arrays."""

    date: np.ndarray  # datetime64[D]
    views: np.ndarray  # int64
    participations: np.ndarray  # int64

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]]) -> Activity:
        return cls(
            date=np.array([r["date"] for r in rows], dtype="datetime64[D]"),
            views=np.array([int(r["views"]) for r in rows], dtype=np.int64),
            participations=np.array([int(r["participations"]) for r in rows], dtype=np.int64),
        )


@dataclass
class CourseDetails:
    """Everything read for one kept course."""

    course_id: int
    published_at: str | None = None  # newly read from the audit log (None: not read/none)
    audit_read: bool = False
    activity: Activity | None = None  # None: not available or not read
    enrollments: Enrollments | None = None
    sections: list[Section] = field(default_factory=list)


def newest_published_at(canvas: CanvasClient, course_id: int) -> str | None:
    """created_at of the newest ``published`` audit event; pages are walked newest first
    and no further than needed."""
    events = canvas.paginate(f"/api/v1/audit/course/courses/{course_id}", key="events")
    for event in events:
        if event.get("event_type") == "published":
            return str(event["created_at"])
    return None


def course_activity(canvas: CanvasClient, course_id: int) -> Activity | None:
    """Daily views and participations; None (with a warning) when Canvas answers 4xx."""
    try:
        rows = canvas.get(f"/api/v1/courses/{course_id}/analytics/activity")
    except PermanentHttpError as exc:
        log.warning("Course %s: activity analytics unavailable, skipped (%s)", course_id, exc)
        return None
    return Activity.from_rows(rows)


def course_enrollments(canvas: CanvasClient, course_id: int) -> CourseDetails:
    """The course's enrollments (test student left out) and the sections they are in."""
    nodes: list[Mapping[str, Any]] = []
    sections: dict[int, Section] = {}
    dropped = 0  # enrollments without a section cannot be stored (course_section_id)
    for node in canvas.graphql_connection(
        ENROLLMENTS_QUERY, {"courseId": str(course_id)}, ENROLLMENTS_CONNECTION
    ):
        if node.get("type") == TEST_STUDENT_TYPE:
            continue
        section = node.get("section")
        if not section:
            dropped += 1
            continue
        nodes.append(node)
        section_id = int(section["_id"])
        if section_id not in sections:
            sections[section_id] = Section(
                section_id, str(section["name"]), section.get("sisId"), course_id
            )
    if dropped:
        log.warning("Course %s: %d enrollment(s) without a section left out", course_id, dropped)
    return CourseDetails(
        course_id,
        enrollments=Enrollments.from_nodes(nodes),
        sections=list(sections.values()),
    )


def read_course_details(
    canvas: CanvasClient,
    courses: Sequence[Mapping[str, Any]],
    published_known: Collection[int],
    *,
    enrollments: bool = True,
) -> Iterable[CourseDetails]:
    """One fan-out over the kept courses: per course its enrollments (unless
    ``enrollments`` is False: the reports path has them), and for available courses the
    activity analytics and (unless ``published_known``) the publish date.

    The three reads of a course share the client's concurrency budget with every other
    course in flight. Results stream in completion order.
    """

    def details(course: Mapping[str, Any]) -> CourseDetails:
        course_id = int(course["id"])
        out = course_enrollments(canvas, course_id) if enrollments else CourseDetails(course_id)
        if course.get("workflow_state") == "available":
            out.activity = course_activity(canvas, course_id)
            if course_id not in published_known:
                out.published_at = newest_published_at(canvas, course_id)
                out.audit_read = True
        return out

    kept = list(courses)
    if not enrollments:  # only available courses have anything left to read
        kept = [c for c in kept if c.get("workflow_state") == "available"]
    for _, result in canvas.map(details, kept, desc="courses"):
        yield result
