"""Canvas through the sandbox API gateway: OAuth client credentials, routing, Link pages."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from courseinv.course_inventory.job import run
from courseinv.http_client import CanvasClient, Forbidden, RetryPolicy
from courseinv.http_client.auth import AuthError
from courseinv.http_client.canvas import Gateway
from courseinv.sandbox.gateway import GatewayServer
from courseinv.sandbox.institution import Institution
from sqlalchemy import Engine

from tests.conftest import _migrated
from tests.course_inventory.helpers import (
    PER_PAGE_MAX,
    SPEC,
    Canvas,
    assert_tables_equal,
    context,
    read_tables,
    url_of,
    write_config,
)

FAST = RetryPolicy(max_attempts=4, backoff_base=0.01, throttle_backoff_base=0.01)


@pytest.fixture(scope="module")
def institution() -> Institution:
    return Institution.generate(SPEC)


@pytest.fixture(scope="module")
def canvas(institution: Institution) -> Iterator[Canvas]:
    with Canvas(institution, per_page_max=PER_PAGE_MAX) as server:
        yield server


@pytest.fixture
def gateway(canvas: Canvas) -> Iterator[GatewayServer]:
    with GatewayServer(canvas) as server:
        yield server


def gateway_keys(gw: GatewayServer) -> dict[str, str]:
    return {
        "API_BASE_URL": gw.url,
        "API_SCOPE_PREFIX": gw.scope_prefix,
        "API_SUBSCRIPTION_NAME": gw.subscription,
        "API_CLIENT_ID": gw.client_id,
        "API_CLIENT_SECRET": gw.client_secret,
    }


def client(canvas: Canvas, gw: GatewayServer, **keys: str) -> CanvasClient:
    section = {"CANVAS_URL": canvas.url, "CANVAS_TOKEN": canvas.token, **gateway_keys(gw), **keys}
    return CanvasClient(canvas.url, canvas.token, policy=FAST, gateway=Gateway.from_config(section))


def test_course_inventory_through_the_gateway_equals_the_direct_run(
    institution: Institution,
    canvas: Canvas,
    gateway: GatewayServer,
    sqlite_engine: Engine,
    tmp_path: Path,
) -> None:
    direct = write_config(
        tmp_path / "direct.hjson", canvas, institution, url_of(sqlite_engine), udw_url=None
    )
    run(context(direct, sqlite_engine))
    want = read_tables(sqlite_engine)
    canvas.log.reset()
    with contextmanager(_migrated)(f"sqlite:///{tmp_path / 'gateway.db'}") as engine:
        config = write_config(
            tmp_path / "gateway.hjson",
            canvas,
            institution,
            url_of(engine),
            udw_url=None,
            CANVAS={
                "CANVAS_URL": canvas.url,
                "CANVAS_TOKEN": canvas.token,
                "CANVAS_ACCOUNT_ID": canvas.account_id,
                "CANVAS_TERM_IDS": institution.term_ids,
                **gateway_keys(gateway),
            },
        )
        run(context(config, engine))
        assert_tables_equal(read_tables(engine), want)
    forwarded = gateway.log.count("forward", 200)
    assert forwarded > 0 and gateway.tokens_issued == 1
    # REST went through the gateway (pages followed there), GraphQL straight to Canvas.
    # The gateway answers its own 429 (its rate limit) without asking Canvas.
    reached_canvas = gateway.log.count("forward") - gateway.rate_limited
    assert reached_canvas == canvas.log.count() - canvas.log.count("graphql")
    assert canvas.log.count("graphql") > 0


def test_link_pages_are_followed_on_the_gateway(
    canvas: Canvas, gateway: GatewayServer, institution: Institution
) -> None:
    canvas.log.reset()
    c = client(canvas, gateway)
    term = institution.term_ids[0]
    path = f"/api/v1/accounts/{canvas.account_id}/courses"
    got = {row["id"] for row in c.paginate(path, {"enrollment_term_id": term}, per_page=7)}
    want = {
        k.id for k in institution.courses if k.term_id == term and k.workflow_state != "deleted"
    }
    assert got == want
    pages = gateway.log.count("forward", 200)
    assert pages >= len(want) // PER_PAGE_MAX  # per_page is clamped to 10: many pages
    # every page came through the gateway: the gateway token never went to Canvas's host
    assert canvas.log.count("courses") == pages


def test_token_renewed_after_expiry_and_on_401(canvas: Canvas, gateway: GatewayServer) -> None:
    c = client(canvas, gateway)
    account = f"/api/v1/accounts/{canvas.account_id}"
    assert c.get(account)["id"] == canvas.account_id
    gateway.expire_tokens()  # the gateway says 401: renewed once, then answered
    assert c.get(account)["id"] == canvas.account_id
    assert gateway.tokens_issued == 2 and gateway.expired == 1
    assert c.stats()["auth_renewals"] == 1


def test_short_lived_tokens_are_renewed_ahead_of_expiry(canvas: Canvas) -> None:
    with GatewayServer(canvas, token_ttl=0.3) as gw:
        c = client(canvas, gw)
        for _ in range(3):
            c.get(f"/api/v1/accounts/{canvas.account_id}")
            time.sleep(0.35)
        assert gw.expired == 0 and gw.tokens_issued >= 3


def test_gateway_rate_limit_429_is_retried(canvas: Canvas) -> None:
    with GatewayServer(canvas, rate_per_s=20, burst=2) as gw:
        c = client(canvas, gw)
        ids = [k.id for k in canvas.institution.courses if k.workflow_state != "deleted"][:12]
        got = sorted(r["id"] for _, r in c.map(lambda i: c.get(f"/api/v1/courses/{i}"), ids))
        assert got == sorted(ids)
        assert gw.rate_limited > 0 and gw.log.count("forward", 429) == gw.rate_limited


def test_bad_client_secret_and_wrong_scope(
    canvas: Canvas, gateway: GatewayServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = client(canvas, gateway, API_CLIENT_SECRET="wrong-secret-value")
    with pytest.raises(AuthError) as info:
        bad.get(f"/api/v1/accounts/{canvas.account_id}")
    assert "invalid_client" in str(info.value) and "API_CLIENT_SECRET" in str(info.value)
    assert "wrong-secret-value" not in str(info.value) + caplog.text
    assert gateway.client_secret not in caplog.text
    scoped = client(canvas, gateway, API_SUBSCRIPTION_NAME="otherapi")
    with pytest.raises(Forbidden, match="403"):
        scoped.get(f"/api/v1/accounts/{canvas.account_id}")


def test_partial_gateway_config_is_refused() -> None:
    with pytest.raises(ValueError, match="API_CLIENT_SECRET"):
        Gateway.from_config(
            {
                "API_BASE_URL": "https://gw",
                "API_SCOPE_PREFIX": "aa/X",
                "API_SUBSCRIPTION_NAME": "x",
                "API_CLIENT_ID": "id",
            }
        )
