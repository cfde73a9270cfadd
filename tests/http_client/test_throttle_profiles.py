"""The learning limiter over real HTTP against the four sandbox throttle profiles, with
faults: exact data and at most 1 refused request per 1,000; impossible buckets fail fast."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from courseinv.course_inventory.job import run
from courseinv.http_client import CanvasClient, RetryPolicy, ThrottleStalled
from courseinv.http_client.throttle import AdaptiveLimiter
from courseinv.runner.jobs import JobError
from courseinv.sandbox.canvas import THROTTLE_PROFILES, CanvasProcess, CanvasServer, ThrottleSpec
from courseinv.sandbox.httpserver import Faults, Latency
from courseinv.sandbox.institution import Institution, InstitutionSpec
from sqlalchemy import Engine

from tests.course_inventory.helpers import context, url_of, write_config

SPEC = InstitutionSpec.sized(300, terms=1, seed=21)
REQUESTS = 1000
POLICY = RetryPolicy(max_attempts=8, backoff_base=0.01, backoff_max=0.2, throttle_backoff_base=0.05)
FAULTS = Faults(error_5xx=0.03, truncated=0.02, reset=0.02)


@pytest.fixture(scope="module")
def institution() -> Institution:
    return Institution.generate(SPEC)


@pytest.mark.parametrize("profile", list(THROTTLE_PROFILES))
def test_every_profile_exact_data_and_rare_refusals(institution: Institution, profile: str) -> None:
    spec = THROTTLE_PROFILES[profile]
    live = [c for c in institution.courses if c.workflow_state != "deleted"]
    courses = [live[i % len(live)] for i in range(REQUESTS)]
    with CanvasProcess(SPEC, throttle=spec, latency=Latency(25), faults=FAULTS) as canvas:
        client = CanvasClient(canvas.url, canvas.issue_token(), workers=8, policy=POLICY)
        got = list(client.map(lambda c: client.get(f"/api/v1/courses/{c.id}"), courses))
        assert len(got) == REQUESTS
        for course, body in got:
            assert (body["id"], body["name"]) == (course.id, course.name)
        refused = canvas.count(status=spec.status)
        retried = client.stats()["retries"]
        logging.getLogger(__name__).info(
            "%s: %d refused, %d retried, %s", profile, refused, retried, client.limiter.estimate()
        )
        assert refused <= REQUESTS // 1000, f"{profile}: {refused} refused"
        assert retried > 0  # the faults were there
        estimate = client.limiter.estimate()
        assert estimate.up_front == pytest.approx(spec.up_front, rel=0.35)  # learned


@pytest.mark.parametrize("remaining", ["level", "zero"])
def test_a_bucket_too_small_for_one_request_fails_fast(
    institution: Institution, remaining: str
) -> None:
    spec = ThrottleSpec(capacity=40, maximum=60, up_front=50, refusal_remaining=remaining)
    with CanvasServer(institution, throttle=spec) as canvas:
        # Current Canvas reports what is left (an unchanging 40): detected from that.
        # Older releases say 0.0: only the time bound can tell, set short here.
        limiter = AdaptiveLimiter(8, stall_timeout=4.0)
        client = CanvasClient(canvas.url, canvas.issue_token(), policy=POLICY, limiter=limiter)
        started = time.monotonic()
        with pytest.raises(ThrottleStalled) as failure:
            list(client.map(lambda i: client.get(f"/api/v1/courses/{i}"), range(20)))
        assert time.monotonic() - started < 30
        message = str(failure.value)
        assert message.startswith("GET /api/v1/courses/")
        if remaining == "level":
            assert "refuses even a single request" in message and "40" in message
        else:
            assert "no request accepted for" in message
        assert canvas.log.count(status=200) == 0


@pytest.fixture
def canvas_server(institution: Institution) -> Iterator[CanvasServer]:
    spec = ThrottleSpec(capacity=30, maximum=40, up_front=50)
    with CanvasServer(institution, throttle=spec) as server:
        yield server


def test_course_inventory_fails_with_a_clear_message(
    institution: Institution, canvas_server: CanvasServer, sqlite_engine: Engine, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "env.hjson", canvas_server, institution, url_of(sqlite_engine), udw_url=None
    )
    started = time.monotonic()
    with pytest.raises((JobError, ThrottleStalled), match="refuses even a single request"):
        run(context(config, sqlite_engine))
    assert time.monotonic() - started < 60
