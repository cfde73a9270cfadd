"""A Canvas Live Events stream of the sandbox institution, with its ground truth.

DEVELOPMENT ONLY. Generated deterministically from a seed: course creations and updates,
enrollment changes, page views and participations per course, LTI resource links, in
Canvas raw and Caliper 1.1 format (shaped like Canvas's documented examples), plus, at
configurable rates, duplicates (redeliveries), out-of-order deliveries, malformed
messages, event types the project does not project, unknown event types and new fields.

``StreamTruth`` is what the tables must hold after every message was delivered at
least once: computed here from the generated facts, independently of the project's
parser (ids normalised by the documented rule, times strictly increasing so that
"newest event wins" has one answer).
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from courseinv.sandbox.institution import (
    COURSE_STATES,
    ENROLLMENT_STATES,
    ENROLLMENT_TYPES,
    Institution,
)

SHARD = 2107
FACTOR = 10**13
HOST = "sandbox.instructure.example"
CALIPER_CONTEXT = "http://purl.imsglobal.org/ctx/caliper/v1p1"
EXT = "com.instructure.canvas"
PARTICIPATIONS = (
    "submission_created",
    "discussion_entry_created",
    "quiz_submitted",
    "discussion_topic_created",
)
NAME_MAX, URL_MAX = 255, 2048


@dataclass(frozen=True)
class StreamSpec:
    events: int = 1000  # distinct events (before duplicates and malformed messages)
    seed: int = 0
    caliper_share: float = 0.5
    duplicate_rate: float = 0.05  # extra deliveries of an earlier message
    out_of_order_rate: float = 0.2  # messages swapped with one up to 20 places later
    malformed_rate: float = 0.0  # extra unreadable messages
    unknown_type_rate: float = 0.0  # events of types Canvas does not document
    unprojected_rate: float = 0.05  # documented types the project does not project
    new_field_rate: float = 0.0  # handled events carrying a field the schemas do not know
    long_value_rate: float = 0.0  # names/URLs longer than their columns (cut, counted)
    start: datetime = datetime(2026, 9, 8, 13, 0, tzinfo=UTC)


@dataclass
class StreamTruth:
    """What the tables hold once every message was delivered (at least once)."""

    events: int = 0  # live_event rows
    rejected: int = 0  # live_event_rejected rows (distinct malformed messages)
    unhandled: int = 0  # stored events of types not projected
    truncated: int = 0  # projection values longer than their column
    course_state: dict[int, dict[str, Any]] = field(default_factory=dict)
    enrollment_state: dict[int, dict[str, Any]] = field(default_factory=dict)
    activity: dict[tuple[int, datetime, int], list[int]] = field(default_factory=dict)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    drift: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    newest_event_time: datetime | None = None


@dataclass
class LiveEventStream:
    messages: list[str]  # SQS message bodies in delivery order
    truth: StreamTruth


def glob_id(local: int) -> str:
    """Canvas's global id string of a local id (ids already >= 10**13 are global)."""
    return str(local if local >= FACTOR else SHARD * FACTOR + local)


def local(value: int) -> int:
    return value % FACTOR if value >= FACTOR else value


def urn(kind: str, local_id: int) -> str:
    return f"urn:instructure:canvas:{kind}:{glob_id(local_id)}"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def generate_stream(inst: Institution, spec: StreamSpec) -> LiveEventStream:
    return _Generator(inst, spec).run()


class _Generator:
    def __init__(self, inst: Institution, spec: StreamSpec) -> None:
        self.inst, self.spec = inst, spec
        self.rng = random.Random(spec.seed)
        self.truth = StreamTruth()
        self.courses = [c for c in inst.courses if c.workflow_state != "deleted"] or inst.courses
        self.enrollment_count = len(inst.enrollments)
        self.links: dict[int, list[str]] = {}
        self.malformed: set[str] = set()

    # -- the run ---------------------------------------------------------------------
    def run(self) -> LiveEventStream:
        messages: list[str] = []
        when = self.spec.start
        for _ in range(self.spec.events):
            # Strictly increasing times (ms precision, as Canvas sends them).
            when += timedelta(milliseconds=self.rng.randint(1, 4000))
            messages.append(self._event(when))
            self.truth.newest_event_time = when.replace(tzinfo=None)
            if self.rng.random() < self.spec.duplicate_rate:
                messages.append(self._redelivery(messages))
            if self.rng.random() < self.spec.malformed_rate:
                messages.append(self._malformed(len(messages)))
        self._shuffle(messages)
        return LiveEventStream(messages, self.truth)

    def _shuffle(self, messages: list[str]) -> None:
        for i in range(len(messages)):
            if self.rng.random() < self.spec.out_of_order_rate:
                j = min(len(messages) - 1, i + self.rng.randint(1, 20))
                messages[i], messages[j] = messages[j], messages[i]

    def _redelivery(self, messages: list[str]) -> str:
        """An earlier message again: Canvas raw byte for byte; Caliper re-sent later."""
        body = messages[max(0, len(messages) - 1 - self.rng.randint(0, 50))]
        if body in self.malformed:  # the same bad message again: one reject row
            return body
        document = json.loads(body)
        if isinstance(document, dict) and "sendTime" in document:
            document["sendTime"] = iso(self.spec.start + timedelta(days=30))
            return json.dumps(document)
        return body

    # -- one event -------------------------------------------------------------------
    def _event(self, when: datetime) -> str:
        r = self.rng.random()
        if r < self.spec.unknown_type_rate:
            return self._unknown(when)
        r -= self.spec.unknown_type_rate
        if r < self.spec.unprojected_rate:
            return self._unprojected(when)
        make = self.rng.choices(
            [self._view, self._participation, self._enrollment, self._course_any, self._link],
            [55, 15, 12, 10, 8],
        )[0]
        return make(when)

    def _caliper(self) -> bool:
        return self.rng.random() < self.spec.caliper_share

    def _new_field(self) -> str | None:
        if self.rng.random() < self.spec.new_field_rate:
            return f"new_field_{self.rng.randint(0, 2)}"
        return None

    def _long(self) -> bool:
        return self.rng.random() < self.spec.long_value_rate

    def _course(self):
        return self.rng.choice(self.courses)

    def _user_of(self, course) -> int:
        s = course.enrollment_slice
        if s.stop > s.start:
            return int(self.inst.enrollments.user_id[self.rng.randrange(s.start, s.stop)])
        return int(self.inst.enrollments.user_id[self.rng.randrange(self.enrollment_count)])

    def _stored(self, name: str, fmt: str, new_field: str | None, *, handled: bool = True) -> None:
        self.truth.events += 1
        if not handled:
            self.truth.unhandled += 1
        if new_field and handled:
            path = (
                f"body.{new_field}"
                if fmt == "canvas"
                else f'object.extensions["{EXT}"].{new_field}'
            )
            self.truth.drift[(name, fmt, path)] += 1

    # -- page views and participations ----------------------------------------------------
    def _view(self, when: datetime) -> str:
        return self._activity(when, "asset_accessed")

    def _participation(self, when: datetime) -> str:
        return self._activity(when, self.rng.choice(PARTICIPATIONS))

    def _activity(self, when: datetime, name: str) -> str:
        course, new_field = self._course(), self._new_field()
        user = self._user_of(course)
        caliper = self._caliper()
        key = (course.id, when.replace(minute=0, second=0, microsecond=0, tzinfo=None), local(user))
        counts = self.truth.activity.setdefault(key, [0, 0])
        counts[0 if name == "asset_accessed" else 1] += 1
        self._stored(name, "caliper" if caliper else "canvas", new_field)
        if caliper:
            return self._caliper_activity(when, name, course, user, new_field)
        body: dict[str, Any] = {
            "asset_accessed": lambda: {
                "asset_id": glob_id(course.id),
                "asset_name": course.name,
                "asset_type": "course",
                "asset_subtype": "modules",
                "category": "modules",
                "role": "StudentEnrollment",
                "level": None,
            },
            "submission_created": lambda: {
                "assignment_id": glob_id(self.rng.randint(1, 10**6)),
                "attempt": 1,
                "submission_id": glob_id(self.rng.randint(1, 10**9)),
                "user_id": glob_id(user),
                "submission_type": "online_text_entry",
                "submitted_at": iso(when),
                "workflow_state": "submitted",
            },
            "discussion_entry_created": lambda: {
                "discussion_entry_id": str(self.rng.randint(1, 10**6)),
                "discussion_topic_id": str(self.rng.randint(1, 10**5)),
                "text": "<p>I agree</p>",
                "user_id": glob_id(user),
                "created_at": iso(when),
            },
            "quiz_submitted": lambda: {
                "submission_id": glob_id(self.rng.randint(1, 10**9)),
                "quiz_id": glob_id(self.rng.randint(1, 10**5)),
            },
            "discussion_topic_created": lambda: {
                "discussion_topic_id": glob_id(self.rng.randint(1, 10**6)),
                "is_announcement": False,
                "title": "Week 3 questions",
                "body": "<p>Ask here</p>",
                "workflow_state": "active",
                "context_id": glob_id(course.id),
                "context_type": "Course",
            },
        }[name]()
        if new_field:
            body[new_field] = "surprise"
        return self._canvas_raw(name, when, body, user=user, course=course.id)

    def _caliper_activity(self, when, name, course, user, new_field) -> str:
        ext: dict[str, Any] = {"entity_id": glob_id(course.id)}
        if new_field:
            ext[new_field] = "surprise"
        kind, action, obj = {
            "asset_accessed": (
                "NavigationEvent",
                "NavigatedTo",
                {
                    "id": urn("course", course.id),
                    "type": "Entity",
                    "name": course.name,
                    "extensions": {
                        EXT: {**ext, "asset_type": "course", "asset_subtype": "modules"}
                    },
                },
            ),
            "submission_created": (
                "AssignableEvent",
                "Submitted",
                {
                    "id": urn("submission", self.rng.randint(1, 10**9)),
                    "type": "Attempt",
                    "extensions": {EXT: {**ext, "submission_type": "online_text_entry"}},
                    "assignee": {"id": urn("user", user), "type": "Person"},
                    "assignable": {
                        "id": urn("assignment", self.rng.randint(1, 10**6)),
                        "type": "AssignableDigitalResource",
                    },
                    "count": 1,
                },
            ),
            "discussion_entry_created": (
                "MessageEvent",
                "Posted",
                {
                    "id": urn("discussionEntry", self.rng.randint(1, 10**6)),
                    "type": "Message",
                    "extensions": {EXT: ext},
                    "body": "<p>I agree</p>",
                    "isPartOf": {
                        "id": urn("discussion", self.rng.randint(1, 10**5)),
                        "type": "Thread",
                    },
                },
            ),
            "quiz_submitted": (
                "AssessmentEvent",
                "Submitted",
                {
                    "id": urn("submission", self.rng.randint(1, 10**9)),
                    "type": "Attempt",
                    "extensions": {EXT: ext},
                    "assignee": {"id": urn("user", user), "type": "Person"},
                    "assignable": {
                        "id": urn("quiz", self.rng.randint(1, 10**5)),
                        "type": "Assessment",
                    },
                },
            ),
            "discussion_topic_created": (
                "ThreadEvent",
                "Created",
                {
                    "id": urn("discussion", self.rng.randint(1, 10**6)),
                    "type": "Thread",
                    "name": "Week 3 questions",
                    "extensions": {EXT: {**ext, "is_announcement": False}},
                },
            ),
        }[name]
        return self._caliper_envelope(when, kind, action, obj, user=user, course=course.id)

    # -- enrollments -----------------------------------------------------------------------
    def _enrollment(self, when: datetime) -> str:
        e = self.inst.enrollments
        i = self.rng.randrange(self.enrollment_count)
        enrollment_id, user = int(e.id[i]), int(e.user_id[i])
        course = self.inst.courses[int(e.course_index[i])]
        section, etype = int(e.section_id[i]), ENROLLMENT_TYPES[int(e.type[i])]
        state = self.rng.choice(ENROLLMENT_STATES)
        name = (
            "enrollment_created"
            if enrollment_id not in self.truth.enrollment_state
            else "enrollment_updated"
        )
        caliper, new_field = self._caliper(), self._new_field()
        self.truth.enrollment_state[enrollment_id] = {
            "course_id": course.id,
            "course_section_id": section,
            "user_id": local(user),
            "type": etype,
            "workflow_state": state,
        }
        self._stored(name, "caliper" if caliper else "canvas", new_field)
        if caliper:
            ext: dict[str, Any] = {
                "course_id": urn("course", course.id),
                "course_section_id": f"{urn('course', course.id)}:section:{glob_id(section)}",
                "limit_privileges_to_course_section": False,
                "type": etype,
                "user_id": urn("user", user),
                "user_name": "Sandbox Person",
                "workflow_state": state,
                "entity_id": glob_id(enrollment_id),
            }
            if new_field:
                ext[new_field] = "surprise"
            obj = {
                "id": urn("enrollment", enrollment_id),
                "type": "Entity",
                "dateCreated": iso(when),
                "extensions": {EXT: ext},
            }
            action = "Created" if name == "enrollment_created" else "Modified"
            return self._caliper_envelope(when, "Event", action, obj, user=1, course=course.id)
        body: dict[str, Any] = {
            "associated_user_id": None,
            "course_id": glob_id(course.id),
            "course_section_id": glob_id(section),
            "created_at": iso(when),
            "enrollment_id": glob_id(enrollment_id),
            "limit_privileges_to_course_section": False,
            "type": etype,
            "updated_at": iso(when),
            "user_id": glob_id(user),
            "user_name": "Sandbox Person",
            "workflow_state": state,
        }
        if new_field:
            body[new_field] = "surprise"
        return self._canvas_raw(name, when, body, user=1, course=course.id, system=True)

    # -- courses ---------------------------------------------------------------------------
    def _course_name(self, course) -> str:
        names = [course.name, f"{course.name} (updated)", f"{course.name} ✨", f"课程 {course.id}"]
        if self._long():
            self.truth.truncated += 1
            return "Long " * 60 + course.name  # > 255 characters
        return self.rng.choice(names)

    def _course_event(
        self, when: datetime, course, name: str, caliper: bool, new_field: str | None
    ) -> str:
        title = self._course_name(course)
        state = self.rng.choice(COURSE_STATES[:3])
        carries_state = not (caliper and name == "course_created")
        truth = self.truth.course_state.setdefault(
            course.id, {"name": None, "workflow_state": None}
        )
        truth["name"] = title[:NAME_MAX]
        if carries_state:
            truth["workflow_state"] = state
        self._stored(name, "caliper" if caliper else "canvas", new_field)
        if caliper:
            ext: dict[str, Any] = {"entity_id": glob_id(course.id)}
            if carries_state:
                ext["workflow_state"] = state
            if new_field:
                ext[new_field] = "surprise"
            obj = {
                "id": urn("course", course.id),
                "type": "CourseOffering",
                "name": title,
                "extensions": {EXT: ext},
            }
            action = "Created" if name == "course_created" else "Modified"
            return self._caliper_envelope(when, "Event", action, obj, user=1, course=None)
        body: dict[str, Any] = {
            "account_id": glob_id(course.account_id),
            "course_id": glob_id(course.id),
            "created_at": iso(course.created_at),
            "name": title,
            "updated_at": iso(when),
            "uuid": course.uuid,
            "workflow_state": state,
        }
        if new_field:
            body[new_field] = "surprise"
        return self._canvas_raw(name, when, body, user=1, course=None)

    def _course_completion(self, when: datetime, course) -> str:
        """Canvas raw course_completed (a user finished the course): name only, no state."""
        title = self._course_name(course)
        truth = self.truth.course_state.setdefault(
            course.id, {"name": None, "workflow_state": None}
        )
        truth["name"] = title[:NAME_MAX]
        self._stored("course_completed", "canvas", None)
        user = self._user_of(course)
        body = {
            "course": {
                "account_id": str(course.account_id),
                "id": str(course.id),
                "name": title,
                "sis_source_id": course.sis_course_id,
            },
            "progress": {
                "completed_at": iso(when),
                "requirement_completed_count": 6,
                "requirement_count": 6,
                "next_requirement_url": None,
            },
            "user": {"id": str(local(user)), "name": "Sandbox Person", "email": None},
        }
        return self._canvas_raw("course_completed", when, body, user=user, course=course.id)

    def _course_any(self, when: datetime) -> str:
        course = self._course()
        if self.rng.random() < 0.1:
            return self._course_completion(when, course)
        name = "course_created" if course.id not in self.truth.course_state else "course_updated"
        return self._course_event(when, course, name, self._caliper(), self._new_field())

    # -- LTI resource links (Canvas raw only: Caliper has no such event) -------------------
    def _link(self, when: datetime) -> str:
        course = self._course()
        pool = self.links.setdefault(course.id, [])
        if not pool or (len(pool) < 3 and self.rng.random() < 0.5):
            pool.append(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))
            name = "lti_resource_link_created"
        else:
            name = "lti_resource_link_updated"
        lookup = self.rng.choice(pool) if name.endswith("updated") else pool[-1]
        tool = self.rng.choice(sorted(self.inst.external_tools))
        url = f"https://tool.example.edu/launch/{course.id}/{lookup}?v={self.rng.randint(1, 9)}"
        if self._long():
            self.truth.truncated += 1
            url += "&pad=" + "x" * URL_MAX
        title = self.rng.choice([None, "Week 1 reading", "Lecture capture 🎥"])
        state = self.rng.choice(["active", "active", "deleted"])
        new_field = self._new_field()
        self.truth.links[lookup] = {
            "course_id": course.id,
            "context_external_tool_id": tool,
            "url": url[:URL_MAX],
            "title": title,
            "workflow_state": state,
        }
        self._stored(name, "canvas", new_field)
        body: dict[str, Any] = {
            "resource_link_id": glob_id(self.rng.randint(1, 10**6)),
            "resource_link_uuid": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "lookup_uuid": lookup,
            "context_id": glob_id(course.id),
            "context_type": "Course",
            "context_external_tool_id": glob_id(tool),
            "url": url,
            "workflow_state": state,
        }
        if title is not None:
            body["title"] = title
        if new_field:
            body[new_field] = "surprise"
        return self._canvas_raw(name, when, body, user=1, course=course.id)

    # -- types not projected, unknown types, malformed messages ----------------------------
    def _unprojected(self, when: datetime) -> str:
        course = self._course()
        user = self._user_of(course)
        if self._caliper():
            self._stored("logged_in", "caliper", None, handled=False)
            obj = {"id": f"http://{HOST}/", "type": "SoftwareApplication"}
            return self._caliper_envelope(
                when, "SessionEvent", "LoggedIn", obj, user=user, course=None
            )
        self._stored("wiki_page_updated", "canvas", None, handled=False)
        body = {
            "body": "<p>new text</p>",
            "title": "Syllabus notes",
            "wiki_page_id": glob_id(self.rng.randint(1, 10**6)),
        }
        return self._canvas_raw("wiki_page_updated", when, body, user=user, course=course.id)

    def _unknown(self, when: datetime) -> str:
        course = self._course()
        if self._caliper():
            self._stored("caliper:Event/Frobnicated/widget", "caliper", None, handled=False)
            obj = {"id": urn("widget", self.rng.randint(1, 10**6)), "type": "Entity"}
            return self._caliper_envelope(
                when, "Event", "Frobnicated", obj, user=1, course=course.id
            )
        self._stored("widget_frobnicated", "canvas", None, handled=False)
        body = {"widget_id": glob_id(self.rng.randint(1, 10**6)), "colour": "teal"}
        return self._canvas_raw("widget_frobnicated", when, body, user=1, course=course.id)

    MALFORMED = (
        lambda n: f"not json at all #{n}",
        lambda n: json.dumps([1, 2, n]),
        lambda n: json.dumps({"hello": "world", "n": n}),
        lambda n: json.dumps(
            {"metadata": {"event_time": "2026-09-01T00:00:00Z", "n": n}, "body": {}}
        ),
        lambda n: json.dumps(
            {
                "metadata": {"event_name": "course_updated", "event_time": f"yesterday {n}"},
                "body": {"course_id": "1"},
            }
        ),
        lambda n: json.dumps(
            {
                "metadata": {"event_name": "course_updated", "event_time": "2026-09-01T00:00:00Z"},
                "body": {"course_id": {"id": n}},
            }
        ),
        lambda n: json.dumps(
            {
                "sensor": "x",
                "sendTime": "2026-09-01T00:00:00Z",
                "dataVersion": CALIPER_CONTEXT,
                "data": [{"type": "Event", "action": "Created", "n": n}],
            }
        ),
        lambda n: json.dumps(
            {
                "sensor": "x",
                "sendTime": "2026-09-01T00:00:00Z",
                "dataVersion": CALIPER_CONTEXT,
                "data": [],
                "n": n,
            }
        ),
        lambda n: json.dumps(
            {
                "metadata": {
                    "event_name": "enrollment_updated",
                    "event_time": "2026-09-01T00:00:00Z",
                },
                "body": {"n": n},
            }
        ),
        lambda n: '{"metadata": {"event_name": "course_created", "truncated' + str(n),
    )

    def _malformed(self, n: int) -> str:
        self.truth.rejected += 1
        body = self.MALFORMED[self.truth.rejected % len(self.MALFORMED)](n)
        self.malformed.add(body)
        return body

    # -- envelopes ---------------------------------------------------------------------
    def _canvas_raw(
        self,
        name: str,
        when: datetime,
        body: dict[str, Any],
        *,
        user: int,
        course: int | None,
        system: bool = False,
    ) -> str:
        metadata: dict[str, Any] = {
            "event_name": name,
            "event_time": iso(when),
            "producer": "canvas",
            "root_account_id": glob_id(1),
            "root_account_uuid": "SandboxRootAccountUuid0001",
            "root_account_lti_guid": f"SandboxRootAccountUuid0001.{HOST}",
        }
        if system:
            metadata.update(job_id=str(self.rng.randint(1, 10**9)), job_tag="Enrollment#save")
        else:
            metadata.update(
                user_id=glob_id(user),
                user_login=f"user{local(user)}@example.edu",
                hostname=HOST,
                request_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                session_id=f"{self.rng.getrandbits(128):032x}",
                user_agent="Mozilla/5.0 (sandbox)",
                client_ip="192.0.2.10",
                http_method="GET",
                time_zone="America/Detroit",
                url=f"https://{HOST}/courses/{course or 0}",
            )
            if course is not None:
                metadata.update(
                    context_type="Course",
                    context_id=glob_id(course),
                    context_role="StudentEnrollment",
                )
        return json.dumps({"metadata": metadata, "body": body}, ensure_ascii=False)

    def _caliper_envelope(
        self,
        when: datetime,
        kind: str,
        action: str,
        obj: dict[str, Any],
        *,
        user: int,
        course: int | None,
    ) -> str:
        event: dict[str, Any] = {
            "@context": CALIPER_CONTEXT,
            "id": f"urn:uuid:{uuid.UUID(int=self.rng.getrandbits(128), version=4)}",
            "type": kind,
            "actor": {
                "id": urn("user", user),
                "type": "Person",
                "extensions": {
                    EXT: {
                        "user_login": f"user{local(user)}@example.edu",
                        "root_account_id": glob_id(1),
                        "root_account_uuid": "SandboxRootAccountUuid0001",
                        "entity_id": glob_id(user),
                    }
                },
            },
            "action": action,
            "object": obj,
            "eventTime": iso(when),
            "edApp": {"id": f"http://{HOST}/", "type": "SoftwareApplication"},
            "extensions": {
                EXT: {
                    "hostname": HOST,
                    "user_agent": "Mozilla/5.0 (sandbox)",
                    "client_ip": "192.0.2.10",
                    "version": "1.0.0",
                    "request_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                }
            },
        }
        if course is not None:
            event["group"] = {
                "id": urn("course", course),
                "type": "CourseOffering",
                "extensions": {EXT: {"context_type": "Course", "entity_id": glob_id(course)}},
            }
        envelope = {
            "sensor": f"http://{HOST}/",
            "sendTime": iso(when + timedelta(seconds=1)),
            "dataVersion": CALIPER_CONTEXT,
            "data": [event],
        }
        return json.dumps(envelope, ensure_ascii=False)
