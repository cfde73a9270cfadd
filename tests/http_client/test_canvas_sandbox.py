"""The Canvas client against the project's Canvas sandbox (``sandbox.canvas``), over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import courseinv.sandbox
import pytest
from courseinv.course_inventory.canvas_pull import ENROLLMENTS_QUERY
from courseinv.http_client import (
    AdaptiveLimiter,
    CanvasClient,
    GraphQLError,
    NotFound,
    RetryPolicy,
    Unauthorized,
)
from courseinv.sandbox.canvas import CanvasServer, ThrottleSpec
from courseinv.sandbox.httpserver import Faults, Latency
from courseinv.sandbox.institution import DELETED, Course, Institution, InstitutionSpec
from graphql import build_schema, parse, validate

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, throttle_backoff_base=0.01)
ENROLLMENTS = ("course", "enrollmentsConnection")


@pytest.fixture(scope="module")
def institution() -> Institution:
    return Institution.generate(InstitutionSpec.sized(300, terms=1, seed=11))


@pytest.fixture(scope="module")
def shared_canvas(institution: Institution) -> Iterator[CanvasServer]:
    with CanvasServer(institution, seed=3) as server:
        yield server


@pytest.fixture
def canvas(shared_canvas: CanvasServer) -> Iterator[CanvasServer]:
    """The module's server with default knobs and a clean log; knobs restored after."""
    shared_canvas.log.reset()
    yield shared_canvas
    shared_canvas.faults = Faults()
    shared_canvas.latency = Latency()
    shared_canvas.throttle = ThrottleSpec()


def client(server: CanvasServer, **kw: object) -> CanvasClient:
    """A client on a fresh token, so each test starts with an empty throttle bucket."""
    kw.setdefault("policy", FAST)
    return CanvasClient(server.url, server.issue_token(), **kw)  # type: ignore[arg-type]


def expected_enrollments(inst: Institution, course: Course) -> list[str]:
    e = inst.course_enrollments(course)
    return sorted(str(i) for i, st in zip(e.id, e.state, strict=True) if st != DELETED)


def fetch_enrollments(c: CanvasClient, course_id: int) -> list[dict]:
    return list(c.graphql_connection(ENROLLMENTS_QUERY, {"courseId": str(course_id)}, ENROLLMENTS))


def listed_course_ids(inst: Institution, term_id: int) -> set[int]:
    """What the account courses API lists for a term by default (every state but deleted)."""
    return {c.id for c in inst.courses if c.term_id == term_id and c.workflow_state != "deleted"}


# -- pagination ----------------------------------------------------------------------
def test_courses_across_many_pages_with_the_repeated_row(
    canvas: CanvasServer, institution: Institution
) -> None:
    term = institution.term_ids[0]
    rows = list(
        client(canvas).paginate(
            f"/api/v1/accounts/{canvas.account_id}/courses",
            {"enrollment_term_id": term, "include[]": ["total_students"]},
            per_page=10,
        )
    )
    ids = [r["id"] for r in rows]
    pages = canvas.log.count("courses", 200)
    assert pages >= 25
    assert len(ids) > len(set(ids))  # the sandbox repeats a row across page boundaries
    assert set(ids) == listed_course_ids(institution, term)
    kept = {r["id"] for r in rows if r["total_students"] > 0}
    assert kept == {c.id for c in institution.kept_courses([term])}


def test_terms_object_pages(canvas: CanvasServer, institution: Institution) -> None:
    terms = client(canvas).paginate(
        f"/api/v1/accounts/{canvas.account_id}/terms", key="enrollment_terms", per_page=1
    )
    assert {t["id"] for t in terms} == set(institution.terms)


# -- faults --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "faults",
    [Faults(error_5xx=0.3), Faults(truncated=0.3), Faults(reset=0.3)],
    ids=["5xx", "truncated", "reset"],
)
def test_every_fault_class(canvas: CanvasServer, institution: Institution, faults: Faults) -> None:
    canvas.faults = faults
    c = client(canvas, policy=RetryPolicy(max_attempts=10, backoff_base=0.005))
    term = institution.term_ids[0]
    ids = {
        r["id"]
        for r in c.paginate(
            f"/api/v1/accounts/{canvas.account_id}/courses",
            {"enrollment_term_id": term},
            per_page=10,
        )
    }
    assert ids == listed_course_ids(institution, term)
    course = max(institution.kept_courses([term]), key=lambda k: k.total_students)
    assert sorted(n["_id"] for n in fetch_enrollments(c, course.id)) == expected_enrollments(
        institution, course
    )
    retries = c.stats()["retries"]
    statuses = canvas.log.by_status()
    assert retries >= 1
    if faults.error_5xx:
        assert sum(n for status, n in statuses.items() if status >= 500) == retries
    elif faults.reset:
        assert statuses.get(0, 0) == retries  # the log records a reset as status 0
    else:
        assert set(statuses) == {200}  # a truncated body is a 200 with broken JSON


# -- permanent errors ----------------------------------------------------------------
def test_401_and_404(canvas: CanvasServer) -> None:
    bad = CanvasClient(canvas.url, "not-the-token-abc123", policy=FAST)
    with pytest.raises(Unauthorized) as failure:
        bad.get(f"/api/v1/accounts/{canvas.account_id}")
    assert str(failure.value) == f"GET /api/v1/accounts/{canvas.account_id}: HTTP 401 Unauthorized"
    assert "abc123" not in str(failure.value) and canvas.log.count() == 1

    good = client(canvas)
    with pytest.raises(NotFound, match=r"^GET /api/v1/courses/999999999: HTTP 404"):
        good.get("/api/v1/courses/999999999")
    assert good.get("/api/v1/courses/999999999/analytics/activity", allow_404=True) is None
    assert canvas.token not in repr(good)


def test_graphql_null_course_is_an_error(canvas: CanvasServer) -> None:
    with pytest.raises(GraphQLError, match=r"course\.enrollmentsConnection is null"):
        fetch_enrollments(client(canvas), 999999999)


def test_shipped_query_is_valid_for_canvas_schema() -> None:
    schema = build_schema(
        (Path(courseinv.sandbox.__file__).parent / "canvas-schema.graphql").read_text()
    )
    assert validate(schema, parse(ENROLLMENTS_QUERY)) == []


# -- throttling and concurrency ------------------------------------------------------
def test_small_bucket_exact_results_few_throttles(
    canvas: CanvasServer, institution: Institution
) -> None:
    costs = {"graphql": 0.25, "account": 90.0}  # one expensive call to fill the bucket
    canvas.throttle = ThrottleSpec(capacity=130, leak_per_s=20, endpoint_costs=costs)
    canvas.latency = Latency(15)
    token, workers = canvas.issue_token(), 8
    # Another process on the same token leaves the bucket at 90/130: no room for a
    # 50-unit reservation until it drains below 80.
    CanvasClient(canvas.url, token).get(f"/api/v1/accounts/{canvas.account_id}")
    c = CanvasClient(canvas.url, token, workers=workers, policy=FAST)
    courses = institution.kept_courses(institution.term_ids)[:50]
    got = dict(c.map(lambda i: fetch_enrollments(c, i), [k.id for k in courses]))
    for course in courses:
        assert sorted(n["_id"] for n in got[course.id]) == expected_enrollments(institution, course)
    throttled = canvas.log.count(status=403)
    # The first request (a lone probe) is refused until the bucket drains; after
    # that the limiter keeps in-flight reservations under the reported headroom.
    assert 1 <= throttled <= 3
    assert c.stats()["throttled"] == throttled
    assert c.stats()["requests"] == canvas.log.count() - 1


def test_throttled_with_429_is_retried_not_lost(canvas: CanvasServer) -> None:
    costs = {"account": 130.0}
    canvas.throttle = ThrottleSpec(capacity=150, leak_per_s=50, endpoint_costs=costs, status=429)
    canvas.latency = Latency(10)
    token = canvas.issue_token()
    CanvasClient(canvas.url, token).get(f"/api/v1/accounts/{canvas.account_id}")  # fills it
    limiter = AdaptiveLimiter(6, leak_rate=50)
    policy = RetryPolicy(max_attempts=1, throttle_backoff_base=0.01)
    c = CanvasClient(canvas.url, token, workers=6, policy=policy, limiter=limiter)
    course_ids = [k.id for k in canvas.institution.courses if k.workflow_state != "deleted"][:30]
    got = sorted(r["id"] for _, r in c.map(lambda i: c.get(f"/api/v1/courses/{i}"), course_ids))
    assert got == sorted(course_ids)
    assert canvas.log.count(status=429) >= 1 and canvas.log.count(status=403) == 0


def test_fan_out_overlaps_latency(canvas: CanvasServer, institution: Institution) -> None:
    n, latency, workers = 24, 0.1, 8
    canvas.latency = Latency(latency * 1000)
    c = client(canvas, workers=workers)
    ids = [k.id for k in institution.courses if k.workflow_state != "deleted"][:n]
    started = time.monotonic()
    got = dict(c.map(lambda i: c.get(f"/api/v1/courses/{i}")["id"], ids))
    elapsed = time.monotonic() - started
    assert got == {i: i for i in ids}
    assert elapsed < 0.6 * n * latency  # ideal: n * latency / workers = 0.3 s
    assert canvas.log.count(status=403) == 0  # 8 x 50 reserved stays under 700
