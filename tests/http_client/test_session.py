"""The retrying session and the Canvas client's REST/GraphQL rules, over real HTTP.

Servers are small fakes on the project's ``SandboxServer`` base (``servers.py``);
retries use tiny backoff settings instead of patched sleeps.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from courseinv.http_client import (
    Action,
    CanvasClient,
    Forbidden,
    GraphQLError,
    NotFound,
    PermanentHttpError,
    RetriesExhausted,
    RetryingSession,
    RetryPolicy,
    Unauthorized,
    UnexpectedPayload,
    Verdict,
)
from courseinv.http_client.session import parse_retry_after
from courseinv.sandbox.httpserver import Faults, Latency, Response, json_response

from tests.http_client.servers import TOKEN, ScriptedServer

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, throttle_backoff_base=0.01)


def canvas(server: ScriptedServer, *, policy: RetryPolicy = FAST, **kw: object) -> CanvasClient:
    return CanvasClient(server.url, TOKEN, policy=policy, **kw)  # type: ignore[arg-type]


# -- pagination ----------------------------------------------------------------------
def test_paginate_follows_next_verbatim_and_keeps_repeated_rows(server: ScriptedServer) -> None:
    server.pages = 12
    rows = list(canvas(server).paginate("/api/v1/items", {"include[]": ["a", "b"]}))
    ids = [r["id"] for r in rows]
    assert len(rows) == 12 * 100  # the repeated boundary rows are passed through
    assert sorted(set(ids)) == list(range(12 * 99 + 1))
    assert len(ids) - len(set(ids)) == 11  # one repeat per page boundary
    assert server.log.count("items", 200) == 12
    assert server.per_page_seen == ["100"] * 12  # per_page sent once, then kept by links


def test_paginate_object_pages_with_key(server: ScriptedServer) -> None:
    client = canvas(server)
    assert list(client.paginate("/api/v1/terms", key="enrollment_terms")) == [{"id": 1}, {"id": 2}]
    with pytest.raises(UnexpectedPayload, match="/api/v1/terms: expected a JSON list"):
        list(client.paginate("/api/v1/terms"))


def test_paginate_detects_loops_and_foreign_hosts(server: ScriptedServer) -> None:
    here = f'<{server.url}/api/v1/items?page=1>; rel="next"'
    server.script("items", [json_response([1], link=here)] * 2)
    with pytest.raises(UnexpectedPayload, match="pagination loops"):
        list(canvas(server).paginate("/api/v1/items"))
    away = '<https://elsewhere.example/api/v1/items?page=2>; rel="next"'
    server.script("items", [json_response([1], link=away)])
    with pytest.raises(UnexpectedPayload, match="outside the Canvas host"):
        list(canvas(server).paginate("/api/v1/items"))


# -- retries -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("faults", "marker"),
    [
        (Faults(error_5xx=0.4), "5xx"),
        (Faults(truncated=0.4), "truncated"),
        (Faults(reset=0.4), "reset"),
    ],
)
def test_every_fault_class_is_retried(faults: Faults, marker: str) -> None:
    with ScriptedServer(faults=faults, seed=7) as server:
        server.pages = 15
        client = canvas(server, policy=RetryPolicy(max_attempts=10, backoff_base=0.005))
        ids = {r["id"] for r in client.paginate("/api/v1/items", per_page=20)}
        assert ids == set(range(15 * 19 + 1))
        stats = client.stats()
        assert stats["retries"] > 0 and stats["pages"] == 15
        by_status = server.log.by_status()
        if marker == "5xx":
            assert sum(n for st, n in by_status.items() if st >= 500) == stats["retries"]
        elif marker == "reset":
            assert by_status.get(0, 0) == stats["retries"]
        else:
            assert by_status == {200: 15 + stats["retries"]}  # truncated bodies are 200s


def test_retries_exhausted_names_path_not_query_or_token(server: ScriptedServer) -> None:
    server.script("thing", [Response(503, "down\n")] * 3)
    with pytest.raises(RetriesExhausted) as failure:
        canvas(server).get("/api/v1/things/5", {"access_token": "QUERY-SECRET"})
    message = str(failure.value)
    assert message == "GET /api/v1/things/5: gave up after 3 attempt(s); last: HTTP 503"
    assert server.log.count("thing") == 3
    assert failure.value.__cause__ is None


def test_connection_refused_is_retried_then_reported() -> None:
    with ScriptedServer() as gone:
        url = gone.url
    client = CanvasClient(url, TOKEN, policy=FAST)
    with pytest.raises(RetriesExhausted, match=r"GET /api/v1/things/1: .*ConnectionRefusedError"):
        client.get("/api/v1/things/1")


def test_read_timeout_is_retried() -> None:
    with ScriptedServer(latency=Latency(300)) as server:
        client = CanvasClient(server.url, TOKEN, policy=FAST, timeout=(1.0, 0.05))
        started = time.monotonic()
        with pytest.raises(RetriesExhausted, match="ReadTimeout"):
            client.get("/api/v1/things/1")
        assert time.monotonic() - started < 1.0


def test_invalid_json_is_retried(server: ScriptedServer) -> None:
    server.script("thing", [Response(200, '{"id": 1', {"Content-Type": "application/json"})])
    assert canvas(server).get("/api/v1/things/1") == {"id": 1}
    assert server.log.count("thing", 200) == 2


# -- permanent errors ----------------------------------------------------------------
def test_bad_token_is_unauthorized_at_once(server: ScriptedServer) -> None:
    client = CanvasClient(server.url, "wrong-" + TOKEN, policy=FAST)
    with pytest.raises(Unauthorized) as failure:
        client.get("/api/v1/things/1")
    assert str(failure.value) == "GET /api/v1/things/1: HTTP 401 Unauthorized"
    assert TOKEN not in str(failure.value) and TOKEN not in repr(client)
    assert server.log.count() == 1


@pytest.mark.parametrize(
    ("status", "error"), [(403, Forbidden), (404, NotFound), (400, PermanentHttpError)]
)
def test_permanent_statuses_raise_at_once(
    server: ScriptedServer, status: int, error: type[Exception]
) -> None:
    body = {"errors": [{"message": "user not authorized to perform that action"}]}
    server.script("thing", [json_response(body, status)])
    with pytest.raises(error, match=rf"^GET /api/v1/things/3: HTTP {status}"):
        canvas(server).get("/api/v1/things/3")
    assert server.log.count("thing") == 1


def test_allowed_404_returns_none(server: ScriptedServer) -> None:
    server.script("thing", [json_response({"errors": []}, 404)])
    assert canvas(server).get("/api/v1/things/3", allow_404=True) is None
    assert canvas(server).get("/api/v1/things/3", allow_404=True) == {"id": 3}


# -- throttling and Retry-After -----------------------------------------------------------
def test_throttling_does_not_spend_the_attempt_budget(server: ScriptedServer) -> None:
    throttled = Response(403, "403 Forbidden (Rate Limit Exceeded)\n")
    server.script("thing", [throttled, Response(429, "slow down\n", {"Retry-After": "0"})] * 3)
    client = canvas(
        server, policy=RetryPolicy(max_attempts=1, throttle_backoff_base=0.01), limiter=None
    )
    assert client.get("/api/v1/things/8") == {"id": 8}
    assert client.stats()["throttled"] == 6
    assert server.log.count("thing", 200) == 1


def test_retry_after_seconds_is_honoured(server: ScriptedServer) -> None:
    server.script("thing", [Response(503, "busy\n", {"Retry-After": "1"})])
    started = time.monotonic()
    assert canvas(server).get("/api/v1/things/2") == {"id": 2}
    assert 0.9 <= time.monotonic() - started < 3


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = now + timedelta(seconds=30)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(later, usegmt=True), now=now) == 30.0
    assert parse_retry_after("2026-01-01T12:00:45Z", now=now) == 45.0
    assert parse_retry_after("2025-01-01T00:00:00Z", now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_capped_retry_after(server: ScriptedServer) -> None:
    server.script("thing", [Response(429, "x\n", {"Retry-After": "3600"})])
    policy = RetryPolicy(retry_after_max=0.05)
    started = time.monotonic()
    assert canvas(server, policy=policy).get("/api/v1/things/2") == {"id": 2}
    assert time.monotonic() - started < 1


# -- the generic session's hooks ----------------------------------------------------------
def kaltura_like(response: requests.Response) -> Verdict | None:
    """An API that reports errors inside HTTP 200 bodies."""
    body = response.json() if response.headers.get("Content-Type", "").startswith("app") else {}
    if isinstance(body, dict) and body.get("objectType") == "KalturaAPIException":
        if body.get("code") == "INTERNAL_SERVER_ERROR":
            return Verdict(Action.RETRY, body["code"])
        return Verdict(Action.FAIL, body["code"])
    return None


def test_classifier_hook_can_retry_and_fail_on_200(server: ScriptedServer) -> None:
    exc = {"objectType": "KalturaAPIException", "code": "INTERNAL_SERVER_ERROR"}
    server.script("thing", [json_response(exc)])
    session = RetryingSession(
        name="kaltura-like",
        headers={"Authorization": f"Bearer {TOKEN}"},
        policy=FAST,
        classify=kaltura_like,
    )
    assert session.get_json(f"{server.url}/api/v1/things/4") == {"id": 4}
    server.script("thing", [json_response({**exc, "code": "INVALID_KS"})])
    with pytest.raises(PermanentHttpError, match="/api/v1/things/4: HTTP 200 INVALID_KS"):
        session.get_json(f"{server.url}/api/v1/things/4")
    assert "Authorization" not in repr(session) and TOKEN not in repr(session)


def test_token_never_logged(server: ScriptedServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server.script("thing", [Response(500, "x\n"), Response(403, "Rate Limit Exceeded\n")])
    client = canvas(server)
    assert client.get("/api/v1/things/1") == {"id": 1}
    assert "/api/v1/things/1" in caplog.text
    assert TOKEN not in caplog.text


# -- GraphQL -------------------------------------------------------------------------
QUERY = "query Q($courseId: ID!, $after: String) { course(id: $courseId) { _id } }"


def test_graphql_connection_pages_by_cursor(server: ScriptedServer) -> None:
    nodes = canvas(server).graphql_connection(
        QUERY, {"courseId": "9"}, ("course", "enrollmentsConnection")
    )
    assert [n["_id"] for n in nodes] == ["1", "2", "3"]
    assert server.log.count("graphql") == 2


def test_graphql_errors_and_nulls(server: ScriptedServer) -> None:
    client = canvas(server)
    with pytest.raises(GraphQLError, match=r"POST /api/graphql: GraphQL error: bad cursor zz"):
        client.graphql(QUERY, {"after": "zz"})
    server.script("graphql", [json_response({"data": {"course": None}})] * 2)
    with pytest.raises(GraphQLError, match=r"course\.enrollmentsConnection is null"):
        list(client.graphql_connection(QUERY, {}, ("course", "enrollmentsConnection")))
    assert (
        list(
            client.graphql_connection(
                QUERY, {}, ("course", "enrollmentsConnection"), allow_null=True
            )
        )
        == []
    )


def test_from_config_reads_the_spec_keys(server: ScriptedServer) -> None:
    config = {
        "CANVAS": {"CANVAS_URL": server.url + "/", "CANVAS_TOKEN": TOKEN},
        "MAX_REQ_ATTEMPTS": 2,
        "NUM_ASYNC_WORKERS": 3,
    }
    client = CanvasClient.from_config(config)
    assert client.workers == 3 and client.limiter.max_concurrency == 3
    assert client.get("/api/v1/things/6") == {"id": 6}
    assert "<redacted>" in repr(client) and TOKEN not in repr(client)
