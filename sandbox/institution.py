"""A deterministic synthetic university: the data every sandbox fake serves.

For development, tests, the demo and benchmarks only: nothing here is real data.

``Institution.generate(InstitutionSpec(seed=..., ...))`` builds terms, an account tree,
courses, sections and enrollments (numpy arrays, so a million enrollments take seconds),
plus per-course data generated lazily and deterministically from ``(seed, course id)``:
course audit events, activity analytics, navigation tabs and calendar events.

The data is awkward on purpose: unicode, emoji and 255-character names, quotes, null and
non-numeric SIS ids, courses without students or with teachers only, courses whose
students all lack an active state, analytics that answer 404, available courses with no
``published`` audit event and others with several, every enrollment state and type
(including the test student's ``StudentViewEnrollment``), ids above 2**31, sections
cross-listed from another course of the term (``Section.nonxlist_course_id``; the API
shows them in the course they sit in, the account report names their original course).
Enrollment states follow Canvas: ``creation_pending`` only in unpublished courses,
``invited`` only in published ones.

Ground truth
------------
``expected_course_inventory(term_ids, udw=...)`` returns what the COURSE_INVENTORY tables
must hold after a first run, following SPEC. The rules, decided here once:

* Courses: those the account courses API lists for the term under Canvas's default
  ``state[]`` (every state but ``deleted``) with ``total_students > 0``.
  ``total_students`` counts student enrollments (``StudentEnrollment``) whose state is
  not rejected, completed, deleted or inactive (test students never count).
* ``course.workflow_state`` is Canvas's API value: ``unpublished``/``available``/
  ``completed``. ``published_at`` is the ``created_at`` of the newest ``published``
  audit event, for ``available`` courses only, else None.
* ``enrollment``: every enrollment of a kept course that the GraphQL enrollments
  connection returns by default (every state except ``deleted``) minus the test student
  (``type == StudentViewEnrollment``). ``role_type`` holds the Canvas enrollment type
  (``StudentEnrollment``, ``TeacherEnrollment``, ``TaEnrollment``, ``ObserverEnrollment``,
  ``DesignerEnrollment``); ``workflow_state`` holds the enrollment state (``active``,
  ``invited``, ``creation_pending``, ``completed``, ``inactive``, ``rejected``).
* ``course_section``: the sections those enrollments reference. ``sis_id`` comes from
  UDW ``course_section_dim.sis_source_id`` when ``udw=True`` (None for a section UDW does
  not have yet), else from Canvas's ``sis_section_id``.
* ``canvas_course_usage``: one row per (course, date) of the activity analytics of kept
  ``available`` courses whose analytics do not answer 404; ``date`` is a ``datetime.date``.
* Timestamps are naive UTC ``datetime`` values (datetime64 columns in the frames).
"""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import cached_property, lru_cache, partial
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# -- vocabularies ---------------------------------------------------------------------

ENROLLMENT_TYPES = (
    "TeacherEnrollment",
    "TaEnrollment",
    "DesignerEnrollment",
    "StudentEnrollment",
    "ObserverEnrollment",
    "StudentViewEnrollment",
)
TEACHER, TA, DESIGNER, STUDENT, OBSERVER, TEST_STUDENT = range(len(ENROLLMENT_TYPES))
ENROLLMENT_STATES = (
    "active",
    "invited",
    "creation_pending",
    "completed",
    "inactive",
    "rejected",
    "deleted",
)
ACTIVE, INVITED, PENDING, COMPLETED, INACTIVE, REJECTED, DELETED = range(len(ENROLLMENT_STATES))
# States that count towards Canvas's total_students.
TOTAL_STUDENTS_STATES = (ACTIVE, INVITED, PENDING)
COURSE_STATES = ("unpublished", "available", "completed", "deleted")
# Canvas's sisRole for each enrollment type (GraphQL Enrollment.sisRole).
SIS_ROLES = ("teacher", "ta", "designer", "student", "observer", "student")

ROOT_ACCOUNT_ID = 1
DEFAULT_TERM_ID = 1
USER_ID_BASE = 170_000_000_000_000  # sharded-looking ids, above 2**31
TEST_STUDENT_ID_BASE = 170_000_900_000_000
ENROLLMENT_ID_BASE = 90_000_000
COURSE_ID_BASE = 500_000
SECTION_ID_BASE = 600_000

SUBJECTS: tuple[tuple[str, str], ...] = (
    ("CHEM", "General Chemistry"),
    ("PSYCH", "Introduction to Psychology"),
    ("MATH", "Calculus I"),
    ("EECS", "Data Structures and Algorithms"),
    ("HISTORY", "World History since 1500"),
    ("ENGLISH", "Academic Writing"),
    ("ECON", "Principles of Economics"),
    ("BIOLOGY", "Molecular Biology"),
    ("PHYSICS", "Mechanics and Heat"),
    ("SPANISH", "Elementary Spanish"),
    ("ASIANLAN", "日本語 I（初級）"),  # noqa: RUF001 (full-width parentheses on purpose)
    ("RUSSIAN", "Введение в русскую литературу"),
    ("ARABIC", "مقدمة في اللغة العربية"),
    ("GERMAN", "Ökonomie & Gesellschaft — Übung"),
    ("ARTDES", "🎨 Studio Art"),
    ("STATS", "Statistics 250"),
    ("NURS", "Nursing Practice"),
    ("MUSIC", "Musique du monde"),
)

LONG_ASCII_NAME = ("Advanced Topics in Very Long Course Names, Part " * 6)[:255]
AWKWARD_COURSE_NAMES: tuple[str, ...] = (
    "🧪 Chemistry Lab 🔬",
    "Intro to \"Quotes\" & 'Apostrophes' <b>not bold</b>",
    "Semicolon; DROP TABLE course; --",
    "Back\\slash and 100% pure",
    "👩‍🔬 Research Methods (ZWJ emoji)",
    "𠜎𠜱 Rare CJK characters",
    "Trailing space ",
    LONG_ASCII_NAME,
    ("Ünïcödé Stress Test " * 13)[:254] + "🎓",  # 255 characters, the last one 4 bytes
)
AWKWARD_SIS_IDS: tuple[str, ...] = ("007", "sis:with:colons", "ÜNI-42", "  padded  ", "1e5")

BUILTIN_TABS: tuple[tuple[str, str], ...] = (
    ("home", "Home"),
    ("announcements", "Announcements"),
    ("assignments", "Assignments"),
    ("discussions", "Discussions"),
    ("grades", "Grades"),
    ("people", "People"),
    ("pages", "Pages"),
    ("files", "Files"),
    ("syllabus", "Syllabus"),
    ("quizzes", "Quizzes"),
    ("modules", "Modules"),
    ("collaborations", "Collaborations"),
    ("settings", "Settings"),
)

# External (LTI) tools installed at the root account: id -> name. The Zoom tool and a
# tool that no configuration would list are among them.
EXTERNAL_TOOLS: dict[int, str] = {
    77: "Zoom",
    312: "Kaltura My Media",
    4101: "Gradescope",
    5120: "Piazza",
    9001: "Panopto Video",
    88812: "Perusall",
    123456: "Legacy Tool (retired) — not configured",
}
ZOOM_TOOL_ID = 77

ZOOM_HOSTS = ("umich.zoom.us", "us02web.zoom.us", "zoom.us", "umich.zoom.us")
MEETING_KINDS = ("Lecture", "Office Hours", "Discussion")
ZOOM_STATUSES = ("waiting", "started", "ended", "deleted")
ZOOM_STATUS_P = (0.40, 0.05, 0.40, 0.15)


def iso(dt: datetime | None) -> str | None:
    """Canvas REST datetime text: UTC, trailing ``Z``, no fractional seconds."""
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def naive_utc(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.astimezone(UTC).replace(tzinfo=None)


def relay_id(type_name: str, legacy_id: int) -> str:
    """GraphQL global id as Canvas makes it: base64 of ``Type-id``."""
    return base64.b64encode(f"{type_name}-{legacy_id}".encode()).decode()


def _rng(seed: int, kind: str, key: int) -> random.Random:
    """An independent deterministic stream per (seed, kind, object id)."""
    return random.Random(f"{seed}/{kind}/{key}")


def _next_prime(n: int) -> int:
    def is_prime(k: int) -> bool:
        if k < 2:
            return False
        i = 2
        while i * i <= k:
            if k % i == 0:
                return False
            i += 1
        return True

    while not is_prime(n):
        n += 1
    return n


# -- the spec -------------------------------------------------------------------------


@dataclass(frozen=True)
class InstitutionSpec:
    """Size and shape knobs. Same spec (same seed) → the same institution, byte for byte."""

    seed: int = 0
    terms: int = 2
    sub_accounts: int = 6
    courses_per_term: int = 50
    courses: int | None = None  # exact total instead of courses_per_term x terms
    sections_per_course: tuple[int, int] = (1, 3)  # inclusive range
    # Students per course: lognormal around ``students_median``, capped (long tail).
    students_median: float = 20.0
    students_sigma: float = 1.3
    students_max: int = 2500
    share_no_students: float = 0.08  # half without any enrollment, half teachers only
    share_students_not_counted: float = 0.02  # students exist, total_students == 0
    course_states: tuple[tuple[str, float], ...] = (
        ("unpublished", 0.15),
        ("available", 0.65),
        ("completed", 0.12),
        ("deleted", 0.08),
    )
    audit_events_per_course: int = 3  # extra ``updated`` events, on average
    share_no_published_event: float = 0.10  # of available courses
    share_several_published_events: float = 0.20  # of available courses
    share_long_audit_log: float = 0.05  # ~40 events newer than the last ``published``
    analytics_days: int = 30
    share_analytics_404: float = 0.05
    share_zoom_tab: float = 0.35
    share_hidden_tool_tab: float = 0.15
    external_tools_per_course: float = 1.5
    share_tabs_403: float = 0.03
    share_zoom_links_without_tab: float = 0.05
    share_udw_sis_differs: float = 0.10
    share_udw_missing: float = 0.02
    # Sections cross-listed into their course from another course of the same term.
    share_xlisted_sections: float = 0.04
    # Account courses list: every n-th page starts with the previous page's last row
    # (0 = never), as Canvas does when rows shift between page requests.
    duplicate_every_pages: int = 3
    now: datetime = datetime(2026, 11, 22, 4, 0, 0, tzinfo=UTC)  # the institution's today

    @classmethod
    def sized(cls, courses: int, **overrides: Any) -> InstitutionSpec:
        """A spec with exactly ``courses`` courses spread evenly over its terms."""
        return cls(courses=courses, **overrides)

    @property
    def total_courses(self) -> int:
        return self.courses if self.courses is not None else self.courses_per_term * self.terms


# -- entities -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    id: int
    name: str
    sis_term_id: str | None
    start_at: datetime | None
    end_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    sis_account_id: str | None
    parent_account_id: int | None


@dataclass(slots=True)
class Course:
    index: int  # position in Institution.courses and in the enrollment arrays
    id: int
    name: str
    course_code: str
    sis_course_id: str | None
    account_id: int
    term_id: int
    created_at: datetime
    workflow_state: str  # unpublished | available | completed | deleted
    uuid: str
    section_range: range  # indexes into Institution.sections
    enrollment_slice: slice
    total_students: int = 0
    has_active_student: bool = False  # active/completed student (analytics precondition)
    has_enrollments: bool = False  # any non-deleted enrollment


@dataclass(frozen=True, slots=True)
class Section:
    id: int
    course_id: int
    name: str
    sis_section_id: str | None  # Canvas's
    udw_sis_source_id: str | None  # UDW's course_section_dim.sis_source_id
    in_udw: bool
    created_at: datetime
    # Cross-listed: the course the section came from (``course_id`` is where it sits now).
    nonxlist_course_id: int | None = None


@dataclass(frozen=True, slots=True)
class ZoomMeeting:
    """What the Zoom fake serves for a meeting number."""

    meeting_id: int
    host_id: str
    status: str  # waiting | started (on /meetings), ended (/past_meetings), deleted (neither)
    topic: str
    uuid: str
    start_time: datetime


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: str
    event_type: str
    created_at: datetime
    event_source: str
    user_id: int | None


@dataclass
class Enrollments:
    """All enrollments as parallel numpy arrays, grouped by course then by id."""

    id: np.ndarray  # int64
    course_index: np.ndarray  # int32, index into Institution.courses
    section_id: np.ndarray  # int64
    user_id: np.ndarray  # int64
    type: np.ndarray  # int8, index into ENROLLMENT_TYPES
    state: np.ndarray  # int8, index into ENROLLMENT_STATES

    def __len__(self) -> int:
        return len(self.id)


# -- the institution ------------------------------------------------------------------


@dataclass(eq=False)
class Institution:
    """The generated institution (read-only once built; safe to share between threads)."""

    spec: InstitutionSpec
    root_account_id: int
    terms: dict[int, Term]
    accounts: dict[int, Account]
    courses: list[Course]
    sections: list[Section]
    enrollments: Enrollments
    zoom_meetings: dict[int, ZoomMeeting]
    course_meetings: dict[int, tuple[int, ...]]  # course id -> Zoom meeting ids in its calendar
    udw_canvasdatadate: datetime
    external_tools: dict[int, str] = field(default_factory=lambda: dict(EXTERNAL_TOOLS))
    zoom_tool_id: int = ZOOM_TOOL_ID
    # Per-course flags decided up front (so lazy data stays consistent with them).
    analytics_404: frozenset[int] = frozenset()
    tabs_forbidden: frozenset[int] = frozenset()
    zoom_tab: dict[int, bool] = field(default_factory=dict)  # course id -> hidden?

    def __repr__(self) -> str:
        return (
            f"Institution(seed={self.spec.seed}, terms={self.term_ids}, "
            f"courses={len(self.courses)}, enrollments={len(self.enrollments)})"
        )

    def __post_init__(self) -> None:
        # Bounded per-instance caches of the lazily generated per-course data.
        self._audit = lru_cache(maxsize=8192)(partial(_audit_events, self))
        self._analytics = lru_cache(maxsize=8192)(partial(_analytics, self))
        self._tabs = lru_cache(maxsize=8192)(partial(_tabs, self))
        self._calendar = lru_cache(maxsize=8192)(partial(_calendar_events, self))

    @classmethod
    def generate(cls, spec: InstitutionSpec | None = None) -> Institution:
        """Build the institution ``spec`` describes (deterministic in ``spec``)."""
        return _Generator(spec or InstitutionSpec()).build()

    # -- lookups ----------------------------------------------------------------------
    @cached_property
    def course_by_id(self) -> dict[int, Course]:
        return {c.id: c for c in self.courses}

    @cached_property
    def section_by_id(self) -> dict[int, Section]:
        return {s.id: s for s in self.sections}

    @cached_property
    def term_ids(self) -> list[int]:
        """The generated terms that hold courses (not the Default Term)."""
        return sorted(t for t in self.terms if t != DEFAULT_TERM_ID)

    @cached_property
    def _children(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {a: [] for a in self.accounts}
        for a in self.accounts.values():
            if a.parent_account_id is not None:
                out[a.parent_account_id].append(a.id)
        return out

    def account_subtree(self, account_id: int) -> frozenset[int]:
        """``account_id`` and every account below it."""
        seen, stack = {account_id}, [account_id]
        while stack:
            for child in self._children.get(stack.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return frozenset(seen)

    def course_enrollments(self, course: Course) -> Enrollments:
        """The course's enrollments (array views, ordered by id)."""
        s, e = course.enrollment_slice, self.enrollments
        return Enrollments(
            e.id[s], e.course_index[s], e.section_id[s], e.user_id[s], e.type[s], e.state[s]
        )

    # -- lazily generated per-course data ----------------------------------------------
    def audit_events(self, course_id: int) -> list[AuditEvent]:
        """The course's audit log, newest first."""
        return self._audit(course_id)

    def published_at(self, course_id: int) -> datetime | None:
        """created_at of the newest ``published`` audit event (None if there is none)."""
        return next(
            (e.created_at for e in self.audit_events(course_id) if e.event_type == "published"),
            None,
        )

    def analytics(self, course_id: int) -> list[dict[str, object]] | None:
        """Course activity analytics rows (unordered), or None when the API answers 404."""
        return self._analytics(course_id)

    def tabs(self, course_id: int) -> list[dict[str, object]] | None:
        """Navigation tabs as ``{id, label, type, hidden, position}`` (None: answers 403)."""
        return self._tabs(course_id)

    def calendar_events(self, course_id: int) -> list[dict[str, object]]:
        """The course's calendar events as Canvas JSON, ordered by start_at then id."""
        return self._calendar(course_id)

    # -- ground truth -----------------------------------------------------------------
    def kept_courses(self, term_ids: Iterable[int], account_id: int | None = None) -> list[Course]:
        """Courses COURSE_INVENTORY keeps: listed (not deleted) and total_students > 0."""
        terms = set(term_ids)
        accounts = self.account_subtree(account_id or self.root_account_id)
        return [
            c
            for c in self.courses
            if c.term_id in terms
            and c.account_id in accounts
            and c.workflow_state != "deleted"
            and c.total_students > 0
        ]

    def expected_course_inventory(
        self, term_ids: Iterable[int], *, udw: bool, account_id: int | None = None
    ) -> dict[str, pd.DataFrame]:
        """The six COURSE_INVENTORY tables after a first run (see the module docstring).

        Frames are sorted by primary key (``canvas_course_usage`` by course_id, date) and
        carry exactly the ``db/tables.py`` columns, without the surrogate ``id``.
        """
        term_ids = list(term_ids)
        missing = [t for t in term_ids if t not in self.terms]
        if missing:
            raise KeyError(f"unknown term ids {missing}")
        kept = self.kept_courses(term_ids, account_id)
        enrollment = self._expected_enrollments(kept)
        return {
            "term": self._expected_terms(term_ids),
            "account": self._expected_accounts(kept),
            "course": self._expected_courses(kept),
            "course_section": self._expected_sections(enrollment, udw=udw),
            "enrollment": enrollment,
            "canvas_course_usage": self._expected_usage(kept),
        }

    def _expected_terms(self, term_ids: Sequence[int]) -> pd.DataFrame:
        rows = [self.terms[t] for t in sorted(set(term_ids))]
        return _frame(
            {
                "canvas_id": [t.id for t in rows],
                "name": [t.name for t in rows],
                "sis_id": [t.sis_term_id for t in rows],
                "start_at": [naive_utc(t.start_at) for t in rows],
                "end_at": [naive_utc(t.end_at) for t in rows],
            },
            datetimes=("start_at", "end_at"),
        )

    def _expected_accounts(self, kept: Sequence[Course]) -> pd.DataFrame:
        rows = [self.accounts[a] for a in sorted({c.account_id for c in kept})]
        return _frame(
            {
                "canvas_id": [a.id for a in rows],
                "sis_id": [a.sis_account_id for a in rows],
                "name": [a.name for a in rows],
            }
        )

    def _expected_courses(self, kept: Sequence[Course]) -> pd.DataFrame:
        return _frame(
            {
                "canvas_id": [c.id for c in kept],
                "sis_id": [c.sis_course_id for c in kept],
                "name": [c.name for c in kept],
                "account_id": [c.account_id for c in kept],
                "term_id": [c.term_id for c in kept],
                "created_at": [naive_utc(c.created_at) for c in kept],
                "published_at": [
                    naive_utc(self.published_at(c.id)) if c.workflow_state == "available" else None
                    for c in kept
                ],
                "workflow_state": [c.workflow_state for c in kept],
            },
            datetimes=("created_at", "published_at"),
        )

    def _expected_enrollments(self, kept: Sequence[Course]) -> pd.DataFrame:
        e = self.enrollments
        keep_course = np.zeros(len(self.courses), dtype=bool)
        keep_course[[c.index for c in kept]] = True
        mask = keep_course[e.course_index] & (e.type != TEST_STUDENT) & (e.state != DELETED)
        course_ids = np.array([c.id for c in self.courses], dtype=np.int64)
        import pandas as pd  # only ground truth needs pandas (keeps the CLI start fast)

        frame = pd.DataFrame(
            {
                "canvas_id": e.id[mask],
                "course_id": course_ids[e.course_index[mask]],
                "course_section_id": e.section_id[mask],
                "user_id": e.user_id[mask],
                "workflow_state": np.array(ENROLLMENT_STATES, dtype=object)[e.state[mask]],
                "role_type": np.array(ENROLLMENT_TYPES, dtype=object)[e.type[mask]],
            }
        )
        return frame.sort_values("canvas_id", ignore_index=True)

    def _expected_sections(self, enrollment: pd.DataFrame, *, udw: bool) -> pd.DataFrame:
        rows = [self.section_by_id[int(s)] for s in np.unique(enrollment["course_section_id"])]
        return _frame(
            {
                "canvas_id": [s.id for s in rows],
                "sis_id": [
                    (s.udw_sis_source_id if s.in_udw else None) if udw else s.sis_section_id
                    for s in rows
                ],
                "name": [s.name for s in rows],
                "course_id": [s.course_id for s in rows],
            }
        )

    def _expected_usage(self, kept: Sequence[Course]) -> pd.DataFrame:
        cols: dict[str, list[object]] = {
            "course_id": [],
            "date": [],
            "views": [],
            "participations": [],
        }
        for c in kept:
            if c.workflow_state != "available":
                continue
            for row in sorted(self.analytics(c.id) or (), key=lambda r: str(r["date"])):
                cols["course_id"].append(c.id)
                cols["date"].append(date.fromisoformat(str(row["date"])))
                cols["views"].append(row["views"])
                cols["participations"].append(row["participations"])
        return _frame(cols)


def _frame(columns: dict[str, list[object]], datetimes: Sequence[str] = ()) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(columns)
    for name in datetimes:
        frame[name] = pd.to_datetime(frame[name]).astype("datetime64[us]")
    return frame


# -- generation -----------------------------------------------------------------------


class _Generator:
    """Builds an Institution; vectorised where sizes grow (courses, enrollments)."""

    def __init__(self, spec: InstitutionSpec) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        self.py = random.Random(spec.seed)

    def build(self) -> Institution:
        terms = self._terms()
        accounts = self._accounts()
        courses = self._courses(terms, accounts)
        sections = self._cross_list(self._sections(courses, terms), courses)
        enrollments = self._enrollments(courses, sections)
        meetings, course_meetings, zoom_tab = self._zoom(courses)
        analytics_404 = self._pick(courses, self.spec.share_analytics_404)
        tabs_forbidden = self._pick(courses, self.spec.share_tabs_403)
        return Institution(
            spec=self.spec,
            root_account_id=ROOT_ACCOUNT_ID,
            terms=terms,
            accounts=accounts,
            courses=courses,
            sections=sections,
            enrollments=enrollments,
            zoom_meetings=meetings,
            course_meetings=course_meetings,
            udw_canvasdatadate=(self.spec.now + timedelta(minutes=30, milliseconds=123)),
            analytics_404=analytics_404,
            tabs_forbidden=tabs_forbidden,
            zoom_tab=zoom_tab,
        )

    # terms: consecutive ~4-month terms, the newest one containing ``now``.
    def _terms(self) -> dict[int, Term]:
        spec, now = self.spec, self.spec.now
        terms = {
            DEFAULT_TERM_ID: Term(
                DEFAULT_TERM_ID, "Default Term", None, None, None, now.replace(year=now.year - 8)
            )
        }
        seasons = ("Winter",) * 4 + ("Spring",) * 2 + ("Summer",) * 2 + ("Fall",) * 4
        for i in range(spec.terms):
            age = spec.terms - 1 - i
            start = datetime(now.year, now.month, 1, 4, 0, tzinfo=UTC) - timedelta(
                days=60 + 120 * age
            )
            end = start + timedelta(days=116, hours=1)
            season = seasons[start.month - 1]
            term_id = 117 + 3 * i
            sis: str | None
            if i % 3 == 0:
                sis = f"{season[:2].upper()}{start.year}-AA"  # non-numeric
            elif i % 3 == 1:
                sis = None
            else:
                sis = f"{start.year % 100:02d}{(start.month + 2) // 3}0"
            name = f"{season} {start.year}" + (" — Ann Arbor ✨" if i % 3 == 2 else "")
            terms[term_id] = Term(term_id, name, sis, start, end, start - timedelta(days=300))
        return terms

    def _accounts(self) -> dict[int, Account]:
        accounts = {
            ROOT_ACCOUNT_ID: Account(
                ROOT_ACCOUNT_ID, "Sandbox University (development sandbox)", None, None
            )
        }
        names = (
            "College of Literature, Science & the Arts",
            "Faculté des Sciences",
            "工学部",
            'School of "Public" Health',
            "Медицинский факультет",
            "🎵 School of Music, Theatre & Dance",
            "Rackham Graduate School",
            "Ross School of Business",
        )
        ids: list[int] = [ROOT_ACCOUNT_ID]
        for i in range(self.spec.sub_accounts):
            account_id = 128 + 7 * i
            parent = (
                ROOT_ACCOUNT_ID
                if i < max(1, self.spec.sub_accounts // 2)
                else (self.py.choice(ids[1:]))
            )
            sis: str | None = (None, f"ACCT-{i}", str(1000 + i), AWKWARD_SIS_IDS[i % 5])[i % 4]
            accounts[account_id] = Account(
                account_id,
                f"{names[i % len(names)]}" + (f" {i}" if i >= len(names) else ""),
                sis,
                parent,
            )
            ids.append(account_id)
        return accounts

    def _courses(self, terms: dict[int, Term], accounts: dict[int, Account]) -> list[Course]:
        spec, rng = self.spec, self.rng
        term_list = [terms[t] for t in sorted(terms) if t != DEFAULT_TERM_ID]
        n = spec.total_courses
        ids = COURSE_ID_BASE + np.cumsum(rng.integers(1, 4, n))
        state_names = [s for s, _ in spec.course_states]
        p = np.array([w for _, w in spec.course_states], dtype=float)
        states = rng.choice(len(state_names), size=n, p=p / p.sum())
        account_ids = list(accounts)
        # Most courses sit in sub-accounts, a few directly in the root account.
        acct = rng.choice(len(account_ids), size=n)
        subj = rng.integers(0, len(SUBJECTS), n)
        numbers = rng.integers(100, 700, n)
        created_offset = rng.integers(20 * 86400, 200 * 86400, n)
        sis_kind = rng.random(n)
        uuids = rng.integers(0, 2**63, size=(n, 3), dtype=np.int64)
        awkward_at = self._spread(n, len(AWKWARD_COURSE_NAMES))
        courses: list[Course] = []
        for i in range(n):
            term = term_list[i * len(term_list) // n]
            dept, title = SUBJECTS[subj[i]]
            code = f"{dept} {numbers[i]}"
            name = AWKWARD_COURSE_NAMES[awkward_at[i]] if i in awkward_at else f"{code}: {title}"
            sis = self._course_sis(sis_kind[i], term, dept, int(numbers[i]), i)
            created = term.start_at - timedelta(seconds=int(created_offset[i]))  # type: ignore[operator]
            courses.append(
                Course(
                    index=i,
                    id=int(ids[i]),
                    name=name,
                    course_code=code,
                    sis_course_id=sis,
                    account_id=account_ids[acct[i]],
                    term_id=term.id,
                    created_at=created,
                    workflow_state=state_names[states[i]],
                    uuid="".join(f"{int(x) & (2**63 - 1):016x}" for x in uuids[i])[:40],
                    section_range=range(0),
                    enrollment_slice=slice(0, 0),
                )
            )
        return courses

    def _pick(self, courses: list[Course], share: float) -> frozenset[int]:
        draws = self.rng.random(len(courses))
        return frozenset(c.id for c, x in zip(courses, draws, strict=True) if x < share)

    def _spread(self, n: int, k: int) -> dict[int, int]:
        """Positions (deterministic, spread out) for ``k`` special values among ``n`` rows."""
        if n == 0:
            return {}
        picks = self.rng.choice(n, size=min(n, k), replace=False)
        return {int(pos): j for j, pos in enumerate(picks)}

    @staticmethod
    def _course_sis(x: float, term: Term, dept: str, number: int, i: int) -> str | None:
        if x < 0.08:
            return None
        if x < 0.12:
            return AWKWARD_SIS_IDS[i % len(AWKWARD_SIS_IDS)]
        if x < 0.20:
            return str(700000 + i)  # numeric-looking
        return f"{term.sis_term_id or 'NOTERM'}-{dept}-{number}-{i:05d}"

    def _sections(self, courses: list[Course], terms: dict[int, Term]) -> list[Section]:
        spec, rng = self.spec, self.rng
        lo, hi = spec.sections_per_course
        counts = rng.integers(lo, hi + 1, len(courses))
        total = int(counts.sum())
        ids = SECTION_ID_BASE + np.cumsum(rng.integers(1, 3, total))
        kind = rng.random(total)
        udw = rng.random(total)
        sections: list[Section] = []
        k = 0
        for course, count in zip(courses, counts, strict=True):
            start = k
            term_sis = terms[course.term_id].sis_term_id or "X"
            for j in range(int(count)):
                sid = int(ids[k])
                canvas_sis = None if kind[k] < 0.1 else f"{term_sis}-{10000 + k}"
                name = f"{course.course_code} {j + 1:03d}"
                if kind[k] > 0.995:
                    name = f"Sección {j + 1} — «Ñandú» 🦤"
                udw_sis, in_udw = canvas_sis, True
                if udw[k] < spec.share_udw_missing:
                    in_udw = False
                elif udw[k] < spec.share_udw_missing + spec.share_udw_sis_differs:
                    udw_sis = f"UDW-{10000 + k}" if canvas_sis is None else f"{10000 + k}"
                sections.append(
                    Section(
                        sid,
                        course.id,
                        name,
                        canvas_sis,
                        udw_sis,
                        in_udw,
                        course.created_at + timedelta(hours=1),
                    )
                )
                k += 1
            course.section_range = range(start, k)
        return sections

    def _cross_list(self, sections: list[Section], courses: list[Course]) -> list[Section]:
        """Mark some sections as cross-listed from another course of the same term.

        The section (and its enrollments) stays where it is, in the course it now sits
        in, as the API shows it; it gains ``nonxlist_course_id`` (the course it came
        from, which may itself be deleted or without students) and that course's code in
        its name. Drawn from a separate stream: the rest of the institution is unchanged.
        """
        rng = random.Random(f"{self.spec.seed}/xlist")
        by_term: dict[int, list[Course]] = {}
        for c in courses:
            by_term.setdefault(c.term_id, []).append(c)
        owner = {k: c for c in courses for k in c.section_range}
        out = list(sections)
        for k, section in enumerate(sections):
            if rng.random() >= self.spec.share_xlisted_sections:
                continue
            here = owner[k]
            others = [c for c in by_term[here.term_id] if c.id != here.id]
            if not others:
                continue
            origin = rng.choice(others)
            name = f"{origin.course_code} {rng.randint(1, 99):03d} (cross-listed)"
            out[k] = replace(section, name=name, nonxlist_course_id=origin.id)
        return out

    def _enrollments(self, courses: list[Course], sections: list[Section]) -> Enrollments:
        spec, rng = self.spec, self.rng
        n = len(courses)
        students = np.minimum(
            np.rint(rng.lognormal(np.log(spec.students_median), spec.students_sigma, n)),
            spec.students_max,
        ).astype(np.int64)
        students = np.maximum(students, 1)
        counts = np.zeros((n, len(ENROLLMENT_TYPES)), dtype=np.int64)
        counts[:, STUDENT] = students
        counts[:, TEACHER] = 1 + rng.binomial(3, 0.12, n)
        counts[:, TA] = np.minimum(students // 60 + rng.binomial(1, 0.2, n), 8)
        counts[:, DESIGNER] = rng.binomial(1, 0.05, n)
        counts[:, OBSERVER] = rng.binomial(2, 0.03, n)
        counts[:, TEST_STUDENT] = rng.binomial(1, 0.4, n)
        # Courses without students: half completely empty, half with teachers only.
        x = rng.random(n)
        no_students = x < spec.share_no_students
        counts[no_students, STUDENT] = 0
        counts[no_students, OBSERVER] = 0
        empty = x < spec.share_no_students / 2
        counts[empty] = 0
        not_counted = (x >= spec.share_no_students) & (
            x < spec.share_no_students + spec.share_students_not_counted
        )

        totals = counts.sum(axis=1)
        starts = np.concatenate(([0], np.cumsum(totals)))
        n_enr = int(starts[-1])
        course_index = np.repeat(np.arange(n, dtype=np.int32), totals)
        types = np.repeat(
            np.tile(np.arange(len(ENROLLMENT_TYPES), dtype=np.int8), n), counts.ravel()
        )
        rank = np.arange(n_enr, dtype=np.int64) - starts[:-1][course_index]

        # Distinct users within a course: pool[(start + rank * stride) % P], P prime.
        pool = _next_prime(max(int(totals.max(initial=0)) * 3 + 1, n_enr // 4, 1009))
        start = rng.integers(0, pool, n)
        stride = rng.integers(1, pool, n)
        user_idx = (start[course_index] + rank * stride[course_index]) % pool
        user_id = USER_ID_BASE + user_idx * 7 + 3
        test = types == TEST_STUDENT
        user_id[test] = TEST_STUDENT_ID_BASE + course_index[test].astype(np.int64)

        state = self._enrollment_states(types, course_index, not_counted)
        # Canvas: enrollments of an unpublished course are creation_pending; publishing
        # the course turns them into invited (so the two never mix within a course).
        unpublished = np.array([c.workflow_state == "unpublished" for c in courses], dtype=bool)
        waiting = np.isin(state, (INVITED, PENDING))
        state[waiting] = np.where(unpublished[course_index[waiting]], PENDING, INVITED)

        sec_count = np.array([len(c.section_range) for c in courses], dtype=np.int64)
        sec_first = np.array([c.section_range.start for c in courses], dtype=np.int64)
        section_ids = np.array([s.id for s in sections], dtype=np.int64)
        pick = sec_first[course_index] + (rng.random(n_enr) * sec_count[course_index]).astype(
            np.int64
        )
        section_id = section_ids[pick]
        ids = ENROLLMENT_ID_BASE + np.arange(n_enr, dtype=np.int64) * 3 + rng.integers(0, 3, n_enr)

        counted = (types == STUDENT) & np.isin(state, TOTAL_STUDENTS_STATES)
        active_student = (types == STUDENT) & np.isin(state, (ACTIVE, COMPLETED))
        total_students = np.bincount(course_index[counted], minlength=n)
        has_active = np.bincount(course_index[active_student], minlength=n) > 0
        has_any = np.bincount(course_index[state != DELETED], minlength=n) > 0
        for c in courses:
            i = c.index
            c.enrollment_slice = slice(int(starts[i]), int(starts[i + 1]))
            c.total_students = int(total_students[i])
            c.has_active_student = bool(has_active[i])
            c.has_enrollments = bool(has_any[i])
        return Enrollments(ids, course_index, section_id, user_id, types, state)

    def _enrollment_states(
        self, types: np.ndarray, course_index: np.ndarray, not_counted: np.ndarray
    ) -> np.ndarray:
        rng = self.rng
        state = np.zeros(len(types), dtype=np.int8)
        dist = {
            STUDENT: (0.86, 0.04, 0.01, 0.03, 0.03, 0.01, 0.02),
            TEACHER: (0.92, 0.03, 0.0, 0.02, 0.01, 0.0, 0.02),
            TA: (0.90, 0.04, 0.0, 0.02, 0.02, 0.0, 0.02),
            DESIGNER: (0.95, 0.0, 0.0, 0.0, 0.0, 0.0, 0.05),
            OBSERVER: (0.80, 0.10, 0.0, 0.0, 0.0, 0.05, 0.05),
            TEST_STUDENT: (0.90, 0.0, 0.0, 0.0, 0.0, 0.0, 0.10),
        }
        for t, p in dist.items():
            mask = types == t
            state[mask] = rng.choice(len(ENROLLMENT_STATES), size=int(mask.sum()), p=p)
        # Courses whose students exist but none counts in total_students.
        mask = (types == STUDENT) & not_counted[course_index]
        state[mask] = rng.choice(
            np.array([COMPLETED, INACTIVE, REJECTED, DELETED], dtype=np.int8), int(mask.sum())
        )
        return state

    def _zoom(
        self, courses: list[Course]
    ) -> tuple[dict[int, ZoomMeeting], dict[int, tuple[int, ...]], dict[int, bool]]:
        spec, py = self.spec, self.py
        rng = random.Random(f"{spec.seed}/zoom")
        hosts = [
            base64.urlsafe_b64encode(rng.randbytes(16)).decode().rstrip("=")
            for _ in range(max(4, len(courses) // 4))
        ]
        meetings: dict[int, ZoomMeeting] = {}
        course_meetings: dict[int, tuple[int, ...]] = {}
        zoom_tab: dict[int, bool] = {}
        for c in courses:
            x = py.random()
            has_tab = x < spec.share_zoom_tab
            if has_tab:
                zoom_tab[c.id] = py.random() < spec.share_hidden_tool_tab
            wants = (has_tab and py.random() < 0.85) or (
                not has_tab and py.random() < spec.share_zoom_links_without_tab
            )
            if not wants:
                continue
            ids: list[int] = []
            for _ in range(rng.randint(1, 3)):
                if meetings and rng.random() < 0.03:  # shared with another course
                    ids.append(rng.choice(list(meetings)))
                    continue
                mid = rng.randint(10**8, 10**11 - 1)
                while mid in meetings:
                    mid = rng.randint(10**8, 10**11 - 1)
                start = spec.now - timedelta(
                    days=rng.randint(-30, 90), minutes=rng.randint(0, 1439)
                )
                meetings[mid] = ZoomMeeting(
                    meeting_id=mid,
                    host_id=rng.choice(hosts),
                    status=rng.choices(ZOOM_STATUSES, ZOOM_STATUS_P)[0],
                    topic=f"{c.course_code} {rng.choice(MEETING_KINDS)}",
                    uuid=base64.b64encode(rng.randbytes(16)).decode(),
                    start_time=start.replace(second=0),
                )
                ids.append(mid)
            course_meetings[c.id] = tuple(dict.fromkeys(ids))
        return meetings, course_meetings, zoom_tab


# -- lazily generated per-course data ---------------------------------------------------


def _course_span(inst: Institution, course: Course) -> tuple[datetime, datetime]:
    term = inst.terms[course.term_id]
    start = term.start_at or course.created_at
    end = min(term.end_at or inst.spec.now, inst.spec.now)
    return start, max(end, start)


def _audit_events(inst: Institution, course_id: int) -> list[AuditEvent]:
    course = inst.course_by_id[course_id]
    spec = inst.spec
    rng = _rng(spec.seed, "audit", course_id)
    horizon = min(spec.now, (inst.terms[course.term_id].end_at or spec.now))
    updates = rng.randint(0, 2 * spec.audit_events_per_course)
    life: list[str] = []  # lifecycle events in chronological order
    state = course.workflow_state
    if state == "available":
        x = rng.random()
        if x < spec.share_no_published_event:
            published = 0
        elif x < spec.share_no_published_event + spec.share_several_published_events:
            published = rng.randint(2, 3)
        else:
            published = 1
        for j in range(published):
            life.append("published")
            if j < published - 1:
                life.append("claimed")  # unpublishing is logged as "claimed"
    elif state == "unpublished":
        if rng.random() < 0.2:
            life += ["published", "claimed"]
    elif state == "completed":
        life += ["published", "concluded"]
    else:
        life += ["published", "deleted"]
    # Interleave ``updated`` events at random, keeping the lifecycle order.
    slots = ["updated"] * updates + ["life"] * len(life)
    rng.shuffle(slots)
    it = iter(life)
    kinds = [k if k == "updated" else next(it) for k in slots]
    if rng.random() < spec.share_long_audit_log:
        kinds += ["updated"] * 40  # the newest published event sits on a later page
    kinds.insert(0, "created")
    span = max(60.0 * len(kinds), (horizon - course.created_at).total_seconds())
    # Strictly increasing times: no ties between events.
    offsets = sorted(rng.sample(range(1, int(span)), len(kinds) - 1))
    times = [course.created_at] + [course.created_at + timedelta(seconds=o) for o in offsets]
    events = [
        AuditEvent(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            event_type=kind,
            created_at=when,
            event_source=rng.choice(("manual", "api", "sis")),
            user_id=None if rng.random() < 0.1 else USER_ID_BASE + rng.randint(0, 5000) * 7 + 3,
        )
        for kind, when in zip(kinds, times, strict=True)
    ]
    events.reverse()  # newest first
    return events


def _analytics(inst: Institution, course_id: int) -> list[dict[str, object]] | None:
    course = inst.course_by_id[course_id]
    if (
        course.workflow_state not in ("available", "completed")
        or not course.has_active_student
        or course_id in inst.analytics_404
    ):
        return None
    rng = _rng(inst.spec.seed, "analytics", course_id)
    start, end = _course_span(inst, course)
    n_days = (end.date() - start.date()).days + 1
    want = max(0, int(inst.spec.analytics_days * rng.uniform(0.5, 1.5)))
    days = sorted(rng.sample(range(n_days), min(want, n_days)))
    scale = max(1, course.total_students)
    rows: list[dict[str, object]] = []
    for d in days:
        views = rng.randint(0, 20 * scale)
        row: dict[str, object] = {
            "date": (start.date() + timedelta(days=d)).isoformat(),
            "views": views,
            "participations": rng.randint(0, max(0, views // 4)),
        }
        if rng.random() < 0.3:
            row["id"] = None  # an artifact Canvas has been seen to send
        rows.append(row)
    rng.shuffle(rows)  # Canvas does not order them
    return rows


def _tabs(inst: Institution, course_id: int) -> list[dict[str, object]] | None:
    if course_id in inst.tabs_forbidden:
        return None
    spec = inst.spec
    rng = _rng(spec.seed, "tabs", course_id)
    tabs: list[dict[str, object]] = []
    for tab_id, label in BUILTIN_TABS:
        hidden = tab_id not in ("home", "settings") and rng.random() < 0.2
        tabs.append({"id": tab_id, "label": label, "type": "internal", "hidden": hidden})
    others = [t for t in inst.external_tools if t != inst.zoom_tool_id]
    p = spec.external_tools_per_course / max(1, len(others))
    tools = [(t, rng.random() < spec.share_hidden_tool_tab) for t in others if rng.random() < p]
    if course_id in inst.zoom_tab:
        tools.append((inst.zoom_tool_id, inst.zoom_tab[course_id]))
    rng.shuffle(tools)
    settings = tabs.pop()  # settings stays last, like Canvas
    for tool_id, hidden in tools:
        tabs.append(
            {
                "id": f"context_external_tool_{tool_id}",
                "label": inst.external_tools[tool_id],
                "type": "external",
                "hidden": hidden,
                "tool_id": tool_id,
            }
        )
    tabs.append(settings)
    for position, tab in enumerate(tabs, start=1):
        tab["position"] = position
    return tabs


def _calendar_events(inst: Institution, course_id: int) -> list[dict[str, object]]:
    course = inst.course_by_id[course_id]
    rng = _rng(inst.spec.seed, "calendar", course_id)
    start, end = _course_span(inst, course)
    span_s = max(3600, int((end - start).total_seconds()))
    drafts: list[tuple[datetime, str, dict[str, str | None]]] = []

    def when() -> datetime:
        return (start + timedelta(seconds=rng.randrange(span_s))).replace(second=0)

    for mid in inst.course_meetings.get(course_id, ()):
        url = f"https://{rng.choice(ZOOM_HOSTS)}/j/{mid}"
        if rng.random() < 0.5:
            url += f"?pwd={base64.urlsafe_b64encode(rng.randbytes(12)).decode()}"
        first = when()
        times = [first]
        shape = rng.random()
        if shape < 0.25:
            times.append(first)  # the same meeting listed twice at the same time
        elif shape < 0.75:
            times += [first + timedelta(weeks=w) for w in range(1, rng.randint(2, 4))]
        for t in times:
            drafts.append((t, inst.zoom_meetings[mid].topic, _zoom_fields(rng, url)))
    for _ in range(rng.randint(0, 2)):
        link = rng.choice(
            (
                "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0",
                "https://umich.zoom.us/rec/share/AbCdEf123456",  # a recording, no meeting
                "https://meet.google.com/abc-defg-hij",
            )
        )
        fields = {
            "location_name": rng.choice(("1800 Chemistry", "Angell Hall Aud. A", "")),
            "location_address": None,
            "description": f'<p>Details: <a href="{link}">{link}</a></p>',
        }
        drafts.append(
            (when(), rng.choice(("Midterm exam", "Study group", "Guest lecture")), fields)
        )
    events = []
    for k, (t, title, fields) in enumerate(sorted(drafts, key=lambda d: d[0])):
        event_id = 3_000_000 + course.index * 64 + k
        duration = timedelta(minutes=rng.choice((50, 80, 90)))
        events.append(
            {
                "id": event_id,
                "title": title,
                "start_at": iso(t),
                "end_at": iso(t + duration),
                "all_day": False,
                "workflow_state": "active",
                "context_code": f"course_{course_id}",
                "effective_context_code": f"course_{course_id}",
                "all_context_codes": f"course_{course_id}",
                "context_name": course.name,
                "type": "event",
                "hidden": False,
                "parent_event_id": None,
                "child_events_count": 0,
                "created_at": iso(t - timedelta(days=14)),
                "updated_at": iso(t - timedelta(days=7)),
                **fields,
            }
        )
    return events


def _zoom_fields(rng: random.Random, url: str) -> dict[str, str | None]:
    """Where a Zoom link sits in a calendar event: location fields or the description."""
    where = rng.random()
    if where < 0.35:
        return {"location_name": url, "location_address": None, "description": None}
    if where < 0.5:
        return {"location_name": "Zoom", "location_address": url, "description": ""}
    return {
        "location_name": rng.choice(("Online", "", "Zoom")),
        "location_address": None,
        "description": f'<p>Join Zoom Meeting<br><a href="{url}">{url}</a></p>'
        f"<p>Meeting ID: {url.split('/j/')[1].split('?')[0]}</p>",
    }
