"""What COURSE_INVENTORY reads from Canvas: terms, courses, accounts, and per course its
publish date (audit log), activity analytics and enrollments (GraphQL).

Every call goes through ``http_client.CanvasClient`` (retries, pagination, throttling and
fan-out live there); this module only says which endpoints to read and keeps the fields
the output tables need. Every field used is checked where it is read (``runner.payload``):
a missing, null or malformed one fails the job with an error naming the endpoint, the
object's id and the field, never a silent filter or a bare TypeError. Kept values are ints
for ids and counts, checked ISO strings for timestamps, strings (or None) for text.
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
from courseinv.runner.jobs import JobError
from courseinv.runner.payload import Fields, checked_list

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
    endpoint = f"/api/v1/accounts/{account_id}"
    account = Fields(canvas.get(endpoint), endpoint, "account")
    root = account.int("root_account_id", required=False)
    return root if root else account.id()


def read_terms(canvas: CanvasClient, root_id: int, term_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Each configured term (a missing term is a permanent error: it fails the job)."""
    terms = []
    for term_id in dict.fromkeys(term_ids):
        endpoint = f"/api/v1/accounts/{root_id}/terms/{term_id}"
        term = Fields(canvas.get(endpoint), endpoint, "term")
        terms.append({
            "id": term.id(),
            "name": term.text("name"),
            "sis_term_id": term.text("sis_term_id", required=False),
            "start_at": term.timestamp("start_at", required=False),
            "end_at": term.timestamp("end_at", required=False),
        })  # fmt: skip
    return terms


def course_fields(course: Any, endpoint: str) -> dict[str, Any]:
    """The kept fields of an account-courses entry, checked (``total_students`` too)."""
    c = Fields(course, endpoint, "course")
    return {
        "id": c.id(),
        "sis_course_id": c.text("sis_course_id", required=False),
        "name": c.text("name"),
        "account_id": c.id("account_id"),
        "enrollment_term_id": c.id("enrollment_term_id"),
        "created_at": c.timestamp("created_at", required=False),
        "workflow_state": c.str("workflow_state"),
        "total_students": c.int("total_students", minimum=0),
    }


def read_courses(
    canvas: CanvasClient, account_id: int, term_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """The account's courses of the terms with at least one student, de-duplicated by id
    (terms are listed concurrently; pages may repeat rows)."""

    endpoint = f"/api/v1/accounts/{account_id}/courses"

    def term_courses(term_id: int) -> tuple[int, list[dict[str, Any]]]:
        params = {**COURSE_LIST_PARAMS, "enrollment_term_id": term_id}
        listed, kept = 0, []
        for raw in canvas.paginate(endpoint, params):
            listed += 1
            course = course_fields(raw, endpoint)
            if course["total_students"] >= 1:
                kept.append({k: course[k] for k in COURSE_FIELDS})
        return listed, kept

    terms = list(dict.fromkeys(term_ids))
    per_term = dict(canvas.map(term_courses, terms, desc="course lists"))
    courses: dict[int, dict[str, Any]] = {}
    for term_id in terms:
        for course in per_term[term_id][1]:
            courses.setdefault(int(course["id"]), course)
    listed = sum(n for n, _ in per_term.values())
    log.info("Courses: %d listed, %d kept (with students, de-duplicated)", listed, len(courses))
    if terms and listed == 0:
        raise JobError(
            f"{endpoint}: no courses at all for term(s) {', '.join(map(str, terms))}; "
            "refusing to publish an empty inventory (check CANVAS_ACCOUNT_ID/CANVAS_TERM_IDS)"
        )
    return list(courses.values())


def read_accounts(canvas: CanvasClient, account_ids: Iterable[int]) -> list[dict[str, Any]]:
    """The account objects of ``account_ids``, fetched concurrently, checked."""

    def account(account_id: int) -> dict[str, Any]:
        endpoint = f"/api/v1/accounts/{account_id}"
        a = Fields(canvas.get(endpoint), endpoint, "account")
        return {
            "id": a.id(),
            "name": a.text("name"),
            "sis_account_id": a.text("sis_account_id", required=False),
        }

    run = canvas.map(account, sorted(set(account_ids)), desc="accounts")
    return [a for _, a in run]


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
    def from_nodes(cls, nodes: Sequence[tuple[int, int, int, str, str]]) -> Enrollments:
        """From checked ``(id, user id, section id, state, type)`` tuples."""

        def ints(i: int) -> np.ndarray:
            return np.fromiter((n[i] for n in nodes), dtype=np.int64, count=len(nodes))

        def words(i: int) -> np.ndarray:
            return np.array([sys.intern(n[i]) for n in nodes], dtype=object)

        return cls(id=ints(0), user_id=ints(1), section_id=ints(2),
                   workflow_state=words(3), role_type=words(4))  # fmt: skip


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
    def from_rows(cls, rows: Any, endpoint: str) -> Activity:
        """From the analytics answer, each row's date, views and participations checked."""
        checked = []
        for row in checked_list(rows, endpoint, "activity"):
            r = Fields(row, endpoint, "activity row", id_field="date")
            checked.append((r.date("date"), r.int("views", minimum=0),
                            r.int("participations", minimum=0)))  # fmt: skip
        return cls(
            date=np.array([r[0] for r in checked], dtype="datetime64[D]"),
            views=np.array([r[1] for r in checked], dtype=np.int64),
            participations=np.array([r[2] for r in checked], dtype=np.int64),
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
    endpoint = f"/api/v1/audit/course/courses/{course_id}"
    for event in canvas.paginate(endpoint, key="events"):
        e = Fields(event, endpoint, "audit event")
        if e.str("event_type", required=False) == "published":
            return e.timestamp("created_at")
    return None


def course_activity(canvas: CanvasClient, course_id: int) -> Activity | None:
    """Daily views and participations; None (with a warning) when Canvas answers 4xx."""
    endpoint = f"/api/v1/courses/{course_id}/analytics/activity"
    try:
        rows = canvas.get(endpoint)
    except PermanentHttpError as exc:
        log.warning("Course %s: activity analytics unavailable, skipped (%s)", course_id, exc)
        return None
    return Activity.from_rows(rows, endpoint)


def course_enrollments(canvas: CanvasClient, course_id: int) -> CourseDetails:
    """The course's enrollments (test student left out) and the sections they are in."""
    endpoint = f"GraphQL course({course_id}).enrollmentsConnection"
    nodes: list[tuple[int, int, int, str, str]] = []
    sections: dict[int, Section] = {}
    dropped = 0  # enrollments without a section cannot be stored (course_section_id)
    for raw in canvas.graphql_connection(
        ENROLLMENTS_QUERY, {"courseId": str(course_id)}, ENROLLMENTS_CONNECTION
    ):
        node = Fields(raw, endpoint, "enrollment", id_field="_id")
        kind = node.str("type")
        if kind == TEST_STUDENT_TYPE:
            continue
        section = node.object("section", "section", required=False)
        if section is None:
            dropped += 1
            continue
        user = node.object("user", "user")
        assert user is not None and kind is not None
        section_id = section.id("_id")
        nodes.append((node.id("_id"), user.id("_id"), section_id, str(node.str("state")), kind))
        if section_id not in sections:
            sections[section_id] = Section(
                section_id, str(section.text("name")), section.text("sisId", required=False),
                course_id,
            )  # fmt: skip
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
        course_id = int(course["id"])  # checked by read_courses
        out = course_enrollments(canvas, course_id) if enrollments else CourseDetails(course_id)
        if course["workflow_state"] == "available":
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
