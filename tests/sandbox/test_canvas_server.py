"""The Canvas fake over real HTTP: shapes, pagination, auth, errors, GraphQL, throttle."""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from courseinv.sandbox.canvas import CanvasServer, ThrottleSpec
from courseinv.sandbox.canvas_graphql import CanvasGraphQL, _Request
from courseinv.sandbox.cli import serve_main
from courseinv.sandbox.httpserver import Faults, Latency
from courseinv.sandbox.institution import (
    DELETED,
    STUDENT,
    TEACHER,
    Course,
    Institution,
    InstitutionSpec,
)
from graphql import execute, parse

ENROLLMENTS = """
query CourseEnrollments($id: ID!, $after: String, $first: Int) {
  course(id: $id) {
    _id
    enrollmentsConnection(first: $first, after: $after) {
      nodes { _id state type user { _id } section { _id name sisId } course { _id } }
      pageInfo { endCursor hasNextPage }
    }
  }
}
"""


@pytest.fixture(scope="module")
def inst() -> Institution:
    return Institution.generate(InstitutionSpec.sized(300, terms=2, seed=5))


@pytest.fixture(scope="module")
def canvas(inst: Institution) -> Iterator[CanvasServer]:
    with CanvasServer(inst, throttle=None) as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="module")
def http(canvas: CanvasServer) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {canvas.token}"
        yield session


def get(
    http: requests.Session, canvas: CanvasServer, path: str, **params: Any
) -> requests.Response:
    return http.get(canvas.url + path, params=params, timeout=10)


def walk(
    http: requests.Session, url: str, **params: Any
) -> tuple[list[Any], list[requests.Response]]:
    """Follow rel=next verbatim; returns every row and every response."""
    rows: list[Any] = []
    responses = []
    response = http.get(url, params=params, timeout=10)
    while True:
        assert response.status_code == 200, response.text
        responses.append(response)
        body = response.json()
        rows += (
            body["enrollment_terms"]
            if isinstance(body, dict) and "enrollment_terms" in body
            else (body["events"] if isinstance(body, dict) else body)
        )
        next_url = response.links.get("next", {}).get("url")
        if not next_url:
            return rows, responses
        response = http.get(next_url, timeout=10)


def listed_ids(inst: Institution, term_id: int) -> set[int]:
    """Courses the job's query selects: term, not deleted, a student or teacher enrollment."""
    e = inst.enrollments
    out = set()
    for c in inst.courses:
        s = c.enrollment_slice
        live = (e.state[s] != DELETED) & ((e.type[s] == STUDENT) | (e.type[s] == TEACHER))
        if c.term_id == term_id and c.workflow_state != "deleted" and live.any():
            out.add(c.id)
    return out


# -- REST shapes and pagination ----------------------------------------------------------


def test_account_courses_pages_with_a_repeated_row(
    http: requests.Session, canvas: CanvasServer, inst: Institution
) -> None:
    term = inst.term_ids[0]
    rows, responses = walk(
        http,
        canvas.url + "/api/v1/accounts/1/courses",
        enrollment_term_id=term,
        with_enrollments="true",
        **{"enrollment_type[]": ["student", "teacher"], "include[]": "total_students"},
        per_page=7,
    )
    ids = [r["id"] for r in rows]
    assert set(ids) == listed_ids(inst, term)
    assert len(ids) > len(set(ids))  # a row repeated ...
    for prev, page in itertools.pairwise(responses):
        first = page.json()[0]["id"]
        if ids.count(first) > 1:  # ... across a page boundary
            assert prev.json()[-1]["id"] == first
    by_id = {c.id: c for c in inst.courses}
    for row in rows:
        assert row["total_students"] == by_id[row["id"]].total_students
        assert row["enrollment_term_id"] == term and row["workflow_state"] != "deleted"
    link = responses[0].headers["Link"]
    assert 'rel="last"' not in link and 'rel="first"' in link and 'rel="current"' in link
    next_url = responses[0].links["next"]["url"]
    query = parse_qs(urlsplit(next_url).query)
    assert next_url.startswith(canvas.url)
    assert query["enrollment_type[]"] == ["student", "teacher"] and query["per_page"] == ["7"]
    assert query["page"][0].startswith("bookmark:")
    assert "next" not in responses[-1].links


def test_account_courses_filters(
    http: requests.Session, canvas: CanvasServer, inst: Institution
) -> None:
    term = inst.term_ids[1]
    path = "/api/v1/accounts/1/courses"
    everything, _ = walk(
        http, canvas.url + path, enrollment_term_id=term, per_page=100, **{"state[]": "all"}
    )
    assert {r["id"] for r in everything} == {c.id for c in inst.courses if c.term_id == term}
    published, _ = walk(
        http, canvas.url + path, enrollment_term_id=term, published="true", per_page=100
    )
    assert {r["workflow_state"] for r in published} == {"available"}
    empty, _ = walk(
        http, canvas.url + path, enrollment_term_id=term, with_enrollments="false", per_page=100
    )
    assert empty and all(not inst.course_by_id[r["id"]].has_enrollments for r in empty)
    sub = next(a for a in inst.accounts.values() if a.parent_account_id == 1)
    under, _ = walk(http, canvas.url + f"/api/v1/accounts/{sub.id}/courses", per_page=100)
    assert {r["account_id"] for r in under} <= inst.account_subtree(sub.id)
    assert get(http, canvas, path, enrollment_term_id=424242).status_code == 404


@pytest.mark.parametrize(
    ("per_page", "expected"), [(None, 10), ("1000", 100), ("0", 1), ("abc", 10), ("33", 33)]
)
def test_per_page_is_clamped(
    http: requests.Session, canvas: CanvasServer, per_page: str | None, expected: int
) -> None:
    params = {"per_page": per_page} if per_page else {}
    response = get(http, canvas, "/api/v1/accounts/1/courses", **{"state[]": "all"}, **params)
    assert len(response.json()) == expected
    assert f"per_page={expected}" in response.links["next"]["url"]


def test_terms(http: requests.Session, canvas: CanvasServer, inst: Institution) -> None:
    response = get(http, canvas, "/api/v1/accounts/self/terms", per_page=2)
    assert set(response.json()) == {"enrollment_terms"}
    terms, _ = walk(http, canvas.url + "/api/v1/accounts/1/terms", per_page=2)
    assert {t["id"] for t in terms} == set(inst.terms)
    term = inst.terms[inst.term_ids[0]]
    one = get(http, canvas, f"/api/v1/accounts/1/terms/{term.id}").json()
    assert one["sis_term_id"] == term.sis_term_id and one["start_at"].endswith("Z")
    with_sis = next(t for t in inst.terms.values() if t.sis_term_id)
    by_sis = get(http, canvas, f"/api/v1/accounts/1/terms/sis_term_id:{with_sis.sis_term_id}")
    assert by_sis.json()["id"] == with_sis.id
    sub = next(a for a in inst.accounts if a != 1)
    assert get(http, canvas, f"/api/v1/accounts/{sub}/terms").status_code == 400


def test_account_and_course(
    http: requests.Session, canvas: CanvasServer, inst: Institution
) -> None:
    sub = next(a for a in inst.accounts.values() if a.sis_account_id)
    body = get(http, canvas, f"/api/v1/accounts/sis_account_id:{sub.sis_account_id}").json()
    assert body["id"] == sub.id and body["name"] == sub.name
    assert get(http, canvas, "/api/v1/accounts/self").json()["parent_account_id"] is None
    course = next(c for c in inst.courses if c.workflow_state == "available")
    body = get(
        http, canvas, f"/api/v1/courses/{course.id}", **{"include[]": "total_students"}
    ).json()
    assert (body["name"], body["total_students"]) == (course.name, course.total_students)
    deleted = next(c for c in inst.courses if c.workflow_state == "deleted")
    for path in (
        f"/api/v1/courses/{deleted.id}",
        "/api/v1/courses/1",
        "/api/v1/accounts/99999",
        "/api/v1/nothing/here",
    ):
        response = get(http, canvas, path)
        assert response.status_code == 404, path
    assert get(http, canvas, "/api/v1/courses/1").json() == {
        "errors": [{"message": "The specified resource does not exist."}]
    }


def test_bad_bookmark_is_404(http: requests.Session, canvas: CanvasServer) -> None:
    assert (
        get(http, canvas, "/api/v1/accounts/1/courses", page="bookmark:garbage").status_code == 404
    )


def test_audit_log(http: requests.Session, canvas: CanvasServer, inst: Institution) -> None:
    course = max(
        (c for c in inst.courses if c.workflow_state == "available"),
        key=lambda c: len(inst.audit_events(c.id)),
    )
    url = canvas.url + f"/api/v1/audit/course/courses/{course.id}"
    events, responses = walk(http, url, per_page=3)
    assert len(responses) > 1
    assert [e["id"] for e in events] == [e.id for e in inst.audit_events(course.id)]
    assert events[0]["created_at"] >= events[-1]["created_at"]
    body = responses[0].json()
    assert set(body) == {"links", "events", "linked"}
    assert body["events"][0]["links"]["course"] == course.id
    middle = inst.audit_events(course.id)[len(events) // 2].created_at
    since = get(
        http,
        canvas,
        f"/api/v1/audit/course/courses/{course.id}",
        per_page=100,
        start_time=middle.isoformat(),
    ).json()["events"]
    assert 0 < len(since) < len(events)


def test_analytics_tabs_sections(
    http: requests.Session, canvas: CanvasServer, inst: Institution
) -> None:
    kept = inst.kept_courses(inst.term_ids)
    ok = next(c for c in kept if inst.analytics(c.id))
    rows = get(http, canvas, f"/api/v1/courses/{ok.id}/analytics/activity").json()
    assert sorted(r["date"] for r in rows) == sorted(r["date"] for r in inst.analytics(ok.id))
    assert "Link" not in get(http, canvas, f"/api/v1/courses/{ok.id}/analytics/activity").headers
    missing = next(c for c in kept if inst.analytics(c.id) is None)
    assert get(http, canvas, f"/api/v1/courses/{missing.id}/analytics/activity").status_code == 404

    forbidden = next(
        c for c in inst.courses if c.id in inst.tabs_forbidden and c.workflow_state != "deleted"
    )
    response = get(http, canvas, f"/api/v1/courses/{forbidden.id}/tabs")
    assert response.status_code == 403 and response.json()["status"] == "unauthorized"
    hidden_zoom = next(
        c
        for c, hidden in inst.zoom_tab.items()
        if hidden
        and c not in inst.tabs_forbidden
        and inst.course_by_id[c].workflow_state != "deleted"
    )
    tabs = get(
        http, canvas, f"/api/v1/courses/{hidden_zoom}/tabs", **{"include[]": "external"}
    ).json()
    zoom = next(t for t in tabs if t["id"] == f"context_external_tool_{inst.zoom_tool_id}")
    assert (
        zoom["hidden"] is True
        and zoom["visibility"] == "none"
        and "sessionless_launch" in zoom["url"]
    )
    assert all("hidden" not in t or t["hidden"] is True for t in tabs)
    assert [t["position"] for t in tabs] == list(range(1, len(tabs) + 1))

    course = max(kept, key=lambda c: len(c.section_range))
    sections, responses = walk(
        http, canvas.url + f"/api/v1/courses/{course.id}/sections", per_page=1
    )
    assert len(responses) == len(course.section_range)
    assert [s["id"] for s in sections] == [inst.sections[k].id for k in course.section_range]
    assert [s["sis_section_id"] for s in sections] == [
        inst.sections[k].sis_section_id for k in course.section_range
    ]


def test_calendar_events(http: requests.Session, canvas: CanvasServer, inst: Institution) -> None:
    live = [c for c in inst.course_meetings if inst.course_by_id[c].workflow_state != "deleted"]
    codes = [f"course_{c}" for c in live[:12]]
    events, _ = walk(
        http,
        canvas.url + "/api/v1/calendar_events",
        per_page=5,
        all_events="true",
        **{"context_codes[]": codes},
    )
    expected = [e for c in live[:10] for e in inst.calendar_events(c)]  # more than 10 ignored
    assert sorted(e["id"] for e in events) == sorted(e["id"] for e in expected)
    assert {e["context_code"] for e in events} == set(codes[:10])
    today = get(http, canvas, "/api/v1/calendar_events", **{"context_codes[]": codes[:1]})
    assert today.status_code == 200 and len(today.json()) <= len(inst.calendar_events(live[0]))


# -- auth --------------------------------------------------------------------------------


def test_auth(canvas: CanvasServer) -> None:
    url = canvas.url + "/api/v1/accounts/1"
    missing = requests.get(url, timeout=10)
    assert missing.status_code == 401 and missing.json()["status"] == "unauthenticated"
    assert "WWW-Authenticate" in missing.headers
    wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and "WWW-Authenticate" in wrong.headers
    assert wrong.json() == {"errors": [{"message": "Invalid access token."}]}
    graphql = requests.post(
        canvas.url + "/api/graphql", json={"query": "{ __typename }"}, timeout=10
    )
    assert graphql.status_code == 401
    assert requests.get(url, params={"access_token": canvas.token}, timeout=10).status_code == 200
    other = canvas.issue_token()
    assert requests.get(url, headers={"Authorization": f"Bearer {other}"}, timeout=10).ok


# -- GraphQL -----------------------------------------------------------------------------


def post_graphql(http: requests.Session, canvas: CanvasServer, query: str, **variables: Any) -> Any:
    response = http.post(
        canvas.url + "/api/graphql", json={"query": query, "variables": variables}, timeout=10
    )
    assert response.status_code == 200
    return response.json()


def all_enrollments(http: requests.Session, canvas: CanvasServer, course: Course) -> list[dict]:
    nodes: list[dict] = []
    after = None
    while True:
        body = post_graphql(http, canvas, ENROLLMENTS, id=str(course.id), after=after, first=100)
        assert "errors" not in body
        conn = body["data"]["course"]["enrollmentsConnection"]
        assert len(conn["nodes"]) <= 100
        nodes += conn["nodes"]
        if not conn["pageInfo"]["hasNextPage"]:
            return nodes
        after = conn["pageInfo"]["endCursor"]


def test_graphql_enrollments_page_through(
    http: requests.Session, canvas: CanvasServer, inst: Institution
) -> None:
    course = max(inst.kept_courses(inst.term_ids), key=lambda c: c.total_students)
    nodes = all_enrollments(http, canvas, course)
    e = inst.course_enrollments(course)
    assert len(nodes) > 100
    assert [int(n["_id"]) for n in nodes] == [int(i) for i in e.id[e.state != DELETED]]
    assert "StudentViewEnrollment" in {n["type"] for n in nodes} or not (e.type == 5).any()
    section_ids = {s.id for s in (inst.sections[k] for k in course.section_range)}
    assert {int(n["section"]["_id"]) for n in nodes} <= section_ids
    assert {n["course"]["_id"] for n in nodes} == {str(course.id)}
    capped = post_graphql(http, canvas, ENROLLMENTS, id=str(course.id), first=500)
    assert len(capped["data"]["course"]["enrollmentsConnection"]["nodes"]) == 100


def test_graphql_filter_and_unknown_course(
    http: requests.Session, canvas: CanvasServer, inst: Institution
) -> None:
    course = max(inst.kept_courses(inst.term_ids), key=lambda c: c.total_students)
    query = """query($id: ID!) { course(id: $id) { enrollmentsConnection(
        filter: {states: [deleted, active], types: [StudentEnrollment]}, first: 100) {
        nodes { state type } } } }"""
    nodes = post_graphql(http, canvas, query, id=str(course.id))["data"]["course"][
        "enrollmentsConnection"
    ]["nodes"]
    assert {n["type"] for n in nodes} == {"StudentEnrollment"}
    assert {n["state"] for n in nodes} <= {"deleted", "active"}
    relay = base64.b64encode(f"Course-{course.id}".encode()).decode()
    assert post_graphql(http, canvas, "query($id: ID!) { course(id: $id) { _id } }", id=relay) == {
        "data": {"course": {"_id": str(course.id)}}
    }
    assert post_graphql(http, canvas, '{ course(id: "1") { _id } }') == {"data": {"course": None}}


@pytest.mark.parametrize(
    "query",
    [
        '{ course(id: "1") { bogusField } }',  # unknown field
        '{ course(id: "1") { enrollmentsConnection(first: "ten") { nodes { _id } } } }',  # arg type
        '{ course(id: "1") { enrollmentsConnection(filter: {states: [nope]}) { nodes { _id } } } }',
        "query($id: ID!) { course(id: $id) { _id } }",  # required variable missing
        '{ course(id: "1") { _id ',  # syntax
        '{ course(id: "1") { enrollmentsConnection { nodes } } }',  # object without selection
    ],
)
def test_graphql_rejects_what_canvas_would(
    http: requests.Session, canvas: CanvasServer, query: str
) -> None:
    body = post_graphql(http, canvas, query)
    assert body.get("data") is None and body["errors"] and "message" in body["errors"][0]


def test_graphql_depth_limit_and_form_body(http: requests.Session, canvas: CanvasServer) -> None:
    deep = (
        '{ course(id: "1") { ' + "sectionsConnection { nodes { " * 8 + "_id" + " } }" * 8 + " } }"
    )
    assert "errors" in post_graphql(http, canvas, deep)
    form = http.post(
        canvas.url + "/api/graphql", data={"query": '{ course(id: "1") { _id } }'}, timeout=10
    )
    assert form.json() == {"data": {"course": None}}
    assert (
        http.post(
            canvas.url + "/api/graphql",
            data=b"{not json",
            headers={"Content-Type": "application/json"},
            timeout=10,
        ).status_code
        == 400
    )


@pytest.mark.parametrize(
    "query",
    [
        ENROLLMENTS,
        "query($id: ID!) { course(id: $id) { __typename a: _id b: name enrollmentsConnection("
        "last: 3) { edges { cursor node { ...F } } pageInfo { startCursor hasPreviousPage } } } }"
        " fragment F on Enrollment { _id id section { userCount } user { id } }",
        "query($id: ID!) { legacyNode(_id: $id, type: Course) { id ... on Course { name } } }",
        "query($id: ID!) { legacyNode(_id: $id, type: Course) { ... on Node { id } } }",
        "query($id: ID!) { course(id: $id) { enrollmentsConnection(first: -1) { nodes { _id } } } }",
        'query($id: ID!) { course(id: $id) { enrollmentsConnection(after: "x") { nodes { _id } } } }',
        "query($id: ID!) { course(id: $id) { sectionsConnection { nodes { _id gradesPosted } } } }",
        "query($id: ID!) { course(id: $id) { term { name sisId } account { name } state } }",
        "query($id: ID!) { course(id: $id) { x: _id @include(if: true) } }",
    ],
)
def test_fast_executor_answers_like_graphql_core(inst: Institution, query: str) -> None:
    course = max(inst.kept_courses(inst.term_ids), key=lambda c: c.total_students)
    variables = {"id": str(course.id)}
    fast = CanvasGraphQL(inst).execute(query, variables)
    slow = execute(
        CanvasGraphQL(inst).schema,
        parse(query),
        root_value=_Request(inst).root(),
        variable_values=variables,
    )
    expected: dict[str, Any] = {"data": slow.data}  # type: ignore[union-attr]
    if slow.errors:  # type: ignore[union-attr]
        expected["errors"] = [e.formatted for e in slow.errors]  # type: ignore[union-attr]
    assert fast == expected


# -- ground truth through the API ----------------------------------------------------------


def test_api_agrees_with_ground_truth(
    http: requests.Session, canvas: CanvasServer, inst: Institution
) -> None:
    """What a job would read through the API equals ``expected_course_inventory``."""
    term = inst.term_ids[0]
    truth = inst.expected_course_inventory([term], udw=False)
    rows, _ = walk(
        http,
        canvas.url + "/api/v1/accounts/1/courses",
        enrollment_term_id=term,
        with_enrollments="true",
        per_page=50,
        **{"enrollment_type[]": ["student", "teacher"], "include[]": "total_students"},
    )
    kept = sorted({r["id"] for r in rows if r["total_students"] > 0})
    assert kept == list(truth["course"]["canvas_id"])
    enrollments = [
        n
        for cid in kept
        for n in all_enrollments(http, canvas, inst.course_by_id[cid])
        if n["type"] != "StudentViewEnrollment"
    ]
    assert sorted(int(n["_id"]) for n in enrollments) == list(truth["enrollment"]["canvas_id"])
    sections = {int(n["section"]["_id"]): n["section"]["sisId"] for n in enrollments}
    expected = truth["course_section"]
    assert sorted(sections) == list(expected["canvas_id"])
    assert [sections[s] for s in expected["canvas_id"]] == [
        None if v != v else v
        for v in expected["sis_id"]  # NaN -> None
    ]


# -- throttle ------------------------------------------------------------------------------


def test_throttle_headers_on_every_authenticated_response(inst: Institution) -> None:
    with CanvasServer(inst, throttle=ThrottleSpec(cost=2.0)) as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        remaining = []
        for path in ("/api/v1/accounts/1", "/api/v1/courses/1"):  # a 200 and a 404
            response = requests.get(server.url + path, headers=headers, timeout=10)
            assert response.headers["X-Request-Cost"] == "2.0"
            remaining.append(float(response.headers["X-Rate-Limit-Remaining"]))
        assert 595 < remaining[0] < 600 and remaining[1] < remaining[0]  # Canvas's hwm 600
        graphql = requests.post(
            server.url + "/api/graphql",
            headers=headers,
            timeout=10,
            json={"query": '{ course(id: "1") { _id } }'},
        )
        assert graphql.headers["X-Request-Cost"] == "0.25"
    with CanvasServer(inst, throttle=None) as server:
        response = requests.get(
            server.url + "/api/v1/accounts/1",
            timeout=10,
            headers={"Authorization": f"Bearer {server.token}"},
        )
        assert "X-Rate-Limit-Remaining" not in response.headers


@pytest.mark.parametrize(("status", "refusal_remaining"), [(403, "zero"), (429, "level")])
def test_concurrent_burst_drains_the_bucket(
    inst: Institution, status: int, refusal_remaining: str
) -> None:
    spec = ThrottleSpec(
        capacity=200, up_front=50, leak_per_s=1, status=status, refusal_remaining=refusal_remaining
    )
    with CanvasServer(inst, throttle=spec, latency=Latency(600)) as server:
        headers = {"Authorization": f"Bearer {server.token}"}

        def call(_: int) -> requests.Response:
            return requests.get(server.url + "/api/v1/accounts/1", headers=headers, timeout=10)

        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(call, range(12)))
        ok = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code == status]
        assert ok and refused and len(ok) + len(refused) == 12
        assert len(ok) <= 4  # 4 x 50 reaches the 200 mark
        for r in refused:
            assert (
                r.text == f"{status} {'Forbidden' if status == 403 else 'Too Many Requests'}"
                " (Rate Limit Exceeded)\n"
            )
            if refusal_remaining == "zero":
                assert r.headers["X-Rate-Limit-Remaining"] == "0.0"
            else:  # current Canvas: what is left, less than one up-front charge
                assert 0 <= float(r.headers["X-Rate-Limit-Remaining"]) < 50
            assert "X-Request-Cost" not in r.headers
        for r in ok:
            assert float(r.headers["X-Rate-Limit-Remaining"]) >= 0
        assert server.throttled == len(refused)
        assert server.log.count("account", status) == len(refused)
        # Reservations are released: only the real costs stay in the bucket.
        assert server.bucket_level() < 1.0
        server.throttle = ThrottleSpec()  # a new spec starts with empty buckets
        assert server.bucket_level() == 0.0


def test_faults_still_carry_throttle_headers(inst: Institution) -> None:
    with CanvasServer(inst, faults=Faults(error_5xx=1.0)) as server:
        response = requests.get(
            server.url + "/api/v1/accounts/1",
            timeout=10,
            headers={"Authorization": f"Bearer {server.token}"},
        )
        assert response.status_code >= 500 and "X-Rate-Limit-Remaining" in response.headers


# -- CLI -----------------------------------------------------------------------------------


def test_sandbox_serve_cli() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "courseinv.sandbox.cli",
            "serve",
            "--courses",
            "20",
            "--seed",
            "2",
            "--faults",
            "5xx=0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Serving until"):
                break
        info = dict(line.split(":", 1) for line in lines if ":" in line and "  " in line)
        assert "DEVELOPMENT SANDBOX" in lines[0]
        url, token = info["Canvas URL"].strip(), info["Token"].strip()
        term = info["Term ids"].split(",")[0].strip()
        response = requests.get(
            f"{url}/api/v1/accounts/{info['Account id'].strip()}/courses",
            params={"enrollment_term_id": term},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 200 and response.json()
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        serve_main(["--faults", "boom=1"])
    assert exit_info.value.code == 2 and "unknown fault" in capsys.readouterr().err


# -- leniency (what real Canvas accepts) ---------------------------------------------------


def test_lenient_like_canvas(inst: Institution) -> None:
    with CanvasServer(inst) as server:
        root = server.account_id
        term = inst.term_ids[0]
        url = f"{server.url}/api/v1/accounts/{root}/courses"
        bare = requests.get(
            url,
            params={"enrollment_term_id": term, "include": "total_students", "per_page": 5},
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=10,
        )
        assert bare.status_code == 200
        assert all("total_students" in c for c in bare.json())
        by_query = requests.get(
            url, params={"access_token": server.token, "enrollment_term_id": term}, timeout=10
        )
        assert by_query.status_code == 200 and by_query.json()
        assert "access_token" not in by_query.headers["Link"]  # not copied into links
        course = next(c for c in inst.courses if c.workflow_state != "deleted")
        query = (
            "query Q($id: ID!, $after: String) { course(id: $id) { "
            "enrollmentsConnection(first: 2, after: $after) { nodes { _id } } } }"
        )
        variables = {"id": str(course.id), "after": ""}
        as_json = requests.post(
            f"{server.url}/api/graphql",
            json={"query": query, "variables": variables, "access_token": server.token},
            timeout=10,
        )
        assert as_json.status_code == 200 and "errors" not in as_json.json()
        nodes = as_json.json()["data"]["course"]["enrollmentsConnection"]["nodes"]
        first_page = requests.post(
            f"{server.url}/api/graphql",
            json={"query": query, "variables": {"id": str(course.id)}},
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=10,
        ).json()["data"]["course"]["enrollmentsConnection"]["nodes"]
        assert nodes == first_page  # after: "" is no cursor
        as_form = requests.post(
            f"{server.url}/api/graphql",
            data={"query": query, "variables": json.dumps(variables), "access_token": server.token},
            timeout=10,
        )
        assert as_form.status_code == 200 and as_form.json()["data"] == as_json.json()["data"]
        wrong = requests.post(
            f"{server.url}/api/graphql", json={"query": query, "access_token": "nope"}, timeout=10
        )
        assert wrong.status_code == 401
