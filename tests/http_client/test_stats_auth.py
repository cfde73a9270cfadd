"""Per-run HTTP statistics (``HttpStats.as_dict``) and the authenticators, over HTTP."""

from __future__ import annotations

import json
import logging

import pytest
from courseinv.http_client import (
    BearerToken,
    HttpStats,
    RetryingSession,
    RetryPolicy,
    Unauthorized,
)
from courseinv.http_client.canvas import CanvasClient
from courseinv.http_client.stats import collect_stats, endpoint_name
from courseinv.sandbox.httpserver import Response

from tests.http_client.servers import TOKEN, ScriptedServer

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, throttle_backoff_base=0.01)


def test_endpoint_names_hide_ids() -> None:
    assert endpoint_name("GET", "/api/v1/courses/500123/tabs") == "GET /api/v1/courses/:id/tabs"
    assert endpoint_name("GET", "/api/v1/courses/sis_course_id:ABC-1") == "GET /api/v1/courses/:id"
    assert endpoint_name("POST", "/api/graphql") == "POST /api/graphql"


def test_stats_shape_counts_statuses_retries_throttles_and_the_bucket(
    server: ScriptedServer,
) -> None:
    server.script(
        "thing",
        [
            Response(503, "down\n"),
            Response(429, "slow down\n", {"X-Rate-Limit-Remaining": "0.0"}),
        ],
    )
    stats = HttpStats()
    with collect_stats() as run:
        client = CanvasClient(server.url, TOKEN, policy=FAST, stats=stats)
        assert client.get("/api/v1/things/7") == {"id": 7}
        assert list(client.paginate("/api/v1/terms", key="enrollment_terms")) == [
            {"id": 1},
            {"id": 2},
        ]
    data = stats.as_dict()
    json.dumps(data)  # plain data
    assert data["totals"]["requests"] == 5 and data["totals"]["retries"] == 1
    assert data["totals"]["throttled"] == 1 and data["totals"]["pages"] == 2
    assert data["by_api"]["canvas"]["requests"] == 5
    rows = {(r["endpoint"], r["status"]): r["count"] for r in data["requests"]}
    assert rows[("GET /api/v1/things/:id", 503)] == 1
    assert rows[("GET /api/v1/things/:id", 429)] == 1
    assert rows[("GET /api/v1/things/:id", 200)] == 1
    assert rows[("GET /api/v1/terms", 200)] == 2
    series = data["rate_limit"]["canvas"]
    assert series and set(series[0]) == {"t", "remaining", "estimated_remaining"}
    assert run.snapshot()["requests"] == 5  # the runner's collector saw the same


def test_series_is_thinned_not_unbounded() -> None:
    stats = HttpStats(max_points=10)
    for i in range(1000):
        stats.record_bucket("canvas", float(i), None)
    points = stats.as_dict()["rate_limit"]["canvas"]
    assert len(points) < 10 and points[0]["remaining"] == 0.0


def test_bearer_token_401_fails_at_once_and_never_shows_the_token(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    session = RetryingSession(auth=BearerToken("wrong-" + TOKEN), policy=FAST)
    with pytest.raises(Unauthorized) as failure:
        session.get_json(f"{server.url}/api/v1/things/1")
    assert server.log.count("thing", 401) == 1  # a fixed token is not renewed
    assert TOKEN not in str(failure.value) + caplog.text + repr(session.auth)
    assert session.stats.count("auth_renewals") == 0
