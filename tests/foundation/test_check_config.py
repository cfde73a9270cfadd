"""check-config checks everything ``run`` needs: one line per check, ok/failed, host, cause.

Every source is real: the sandbox's Canvas, BigQuery, Kaltura and Zoom over HTTP, UDW in
SQLite, the output database in SQLite or MariaDB (a user without CREATE privilege).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from courseinv.db.engine import make_engine
from courseinv.http_client.errors import NotFound, RetriesExhausted, Unauthorized
from courseinv.runner.checks import CheckFailed, cause
from courseinv.sandbox.demo import running_sandbox
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.conftest import run_cli

LINE = re.compile(r"^(ok|failed)\s+(.+?) \[(.+?)\]: (.+)$")
ZOOM_SECRET = "zoom-secret-WRONG-5150"
KALTURA_SECRET = "kaltura-secret-WRONG-8080"
DB_PASSWORD = "ro-pass-" + secrets.token_hex(4)
WRONG_TOKEN = "canvas-token-WRONG-2112"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    env_dir = tmp_path_factory.mktemp("sandbox")
    args = argparse.Namespace(courses=12, seed=5, latency_ms=0.0, data_dir=env_dir / "data")
    with running_sandbox(args, env_dir) as running:
        running["env_dir"] = env_dir
        yield running


def check(
    sandbox: dict[str, Any], config: dict[str, Any], name: str
) -> tuple[int, dict[str, tuple], str]:
    """Run check-config on ``config``; the checklist by check name, and all output."""
    path = sandbox["env_dir"] / f"{name}.hjson"
    path.write_text(json.dumps(config), encoding="utf-8")
    result = run_cli(["check-config", "--config", str(path)], timeout=180)
    lines = result.stdout.splitlines()
    assert lines[0] == f"config {path}: ok", result.stdout + result.stderr
    parsed = {}
    for line in lines[1:]:
        match = LINE.match(line)
        assert match, f"not a checklist line: {line!r}"  # nothing interleaves with it
        parsed[match.group(2)] = (match.group(1), match.group(3), match.group(4))
    assert "attempt 2/" not in result.stderr  # one attempt per check: no retry warnings
    return result.returncode, parsed, result.stdout + result.stderr


def base_config(sandbox: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    config = copy.deepcopy(sandbox["config"])
    config["INVENTORY_DB"] = {"url": f"sqlite:///{tmp_path / 'out.sqlite3'}"}
    return config


ALL_CHECKS = [
    "output database (INVENTORY_DB)",
    "Canvas token reads the account",
    "Canvas terms (CANVAS_TERM_IDS)",
    "Unizin Data Warehouse (UDW)",
    "BigQuery key file",
    "BigQuery events table (dry run)",
    "Kaltura session",
    "Zoom token",
    "Live Events queue (LIVE_EVENTS)",
]


def test_a_good_config_passes_every_check(sandbox: dict[str, Any], tmp_path: Path) -> None:
    config = base_config(sandbox, tmp_path)
    config["CANVAS"]["CANVAS_URL"] += "/api/v1/"  # the API root is forgiven: normalised
    code, lines, output = check(sandbox, config, "good")
    assert code == 0, output
    assert list(lines) == ALL_CHECKS
    assert all(state == "ok" for state, _, _ in lines.values()), output
    canvas_host = sandbox["servers"]["Canvas"].url.removeprefix("http://")
    assert lines["Canvas token reads the account"][1] == canvas_host
    assert "account" in lines["Canvas token reads the account"][2]
    assert lines["Canvas terms (CANVAS_TERM_IDS)"][2].startswith("2 term(s) exist")
    assert "canvasdatadate" in lines["Unizin Data Warehouse (UDW)"][2]
    assert "may create tables" in lines["output database (INVENTORY_DB)"][2]
    assert "dry run" in lines["BigQuery events table (dry run)"][2]
    assert sandbox["servers"]["BigQuery"].queries == []  # a dry run runs nothing
    assert "queue reachable" in lines["Live Events queue (LIVE_EVENTS)"][2]


def test_broken_canvas_token_udw_host_and_database_port(
    sandbox: dict[str, Any], tmp_path: Path
) -> None:
    config = base_config(sandbox, tmp_path)
    config["CANVAS"]["CANVAS_TOKEN"] = WRONG_TOKEN
    config["UDW"] = {
        "url": f"postgresql+psycopg2://udw:{DB_PASSWORD}@udw.no-such-host.invalid:5432/udw"
    }
    config["INVENTORY_DB"] = {"url": f"mysql+pymysql://root:{DB_PASSWORD}@127.0.0.1:1/inventory"}
    code, lines, output = check(sandbox, config, "broken1")
    assert code == 1
    assert lines["output database (INVENTORY_DB)"] == (
        "failed",
        "mysql 127.0.0.1:1/inventory",
        "connection refused (nothing listens on that port)",
    )
    state, _, why = lines["Canvas token reads the account"]
    assert (state, why) == ("failed", "401 Unauthorized: the token or key was rejected")
    assert lines["Unizin Data Warehouse (UDW)"] == (
        "failed",
        "postgresql udw.no-such-host.invalid:5432/udw",
        "DNS: the host name does not resolve",
    )
    assert lines["Zoom token"][0] == "ok" and lines["Kaltura session"][0] == "ok"
    for secret in (WRONG_TOKEN, DB_PASSWORD):
        assert secret not in output


def test_broken_term_key_file_kaltura_and_zoom(sandbox: dict[str, Any], tmp_path: Path) -> None:
    config = base_config(sandbox, tmp_path)
    config["CANVAS"]["CANVAS_TERM_IDS"] = [*config["CANVAS"]["CANVAS_TERM_IDS"], 999999]
    config["MIVIDEO"]["udp_service_account_json_filename"] = "missing-key.json"
    config["MIVIDEO"]["kaltura_user_secret"] = KALTURA_SECRET
    config["ZOOM"]["CLIENT_SECRET"] = ZOOM_SECRET
    code, lines, output = check(sandbox, config, "broken2")
    assert code == 1
    assert lines["Canvas token reads the account"][0] == "ok"
    state, _, why = lines["Canvas terms (CANVAS_TERM_IDS)"]
    assert state == "failed" and "term(s) 999999 of CANVAS.CANVAS_TERM_IDS do not exist" in why
    state, host, why = lines["BigQuery key file"]
    assert (
        state == "failed" and host.endswith("missing-key.json") and why.endswith("file not found")
    )
    assert lines["BigQuery events table (dry run)"][0] == "failed"
    state, _, why = lines["Kaltura session"]
    assert state == "failed" and "START_SESSION_ERROR" in why
    state, host, why = lines["Zoom token"]
    assert state == "failed" and "HTTP 401" in why
    assert host == sandbox["servers"]["Zoom"].url.removeprefix("http://")
    for secret in (KALTURA_SECRET, ZOOM_SECRET):
        assert secret not in output


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_broken_tls_events_table_udw_metadata_and_create_permission(
    sandbox: dict[str, Any], tmp_path: Path, database_url: str
) -> None:
    config = base_config(sandbox, tmp_path)
    config["CANVAS"]["CANVAS_URL"] = sandbox["servers"]["Canvas"].url.replace("http://", "https://")
    config["MIVIDEO"]["udp_events_table"] = "event_store.no_such_table"
    bare_udw = tmp_path / "udw-without-metadata.sqlite3"
    sqlite3.connect(bare_udw).close()
    config["UDW"] = {"url": f"sqlite:///{bare_udw}"}
    user = f"ci_ro_{secrets.token_hex(4)}"
    database = make_url(database_url).database
    admin = make_engine(database_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{DB_PASSWORD}'"))
        conn.execute(text(f"GRANT SELECT ON `{database}`.* TO '{user}'@'%'"))
    try:
        config["INVENTORY_DB"] = {
            "url": f"mysql+pymysql://{user}:{DB_PASSWORD}@127.0.0.1:3306/{database}"
        }
        code, lines, output = check(sandbox, config, "broken3")
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP USER '{user}'@'%'"))
        admin.dispose()
    assert code == 1
    state, _, why = lines["output database (INVENTORY_DB)"]
    assert (state, why) == ("failed", "connected, but may not create tables: permission denied")
    state, _, why = lines["Canvas token reads the account"]
    assert (state, why) == ("failed", "TLS handshake or certificate verification failed")
    state, _, why = lines["BigQuery events table (dry run)"]
    assert state == "failed" and why.startswith("404 Not Found: ") and "no_such_table" in why
    assert lines["Unizin Data Warehouse (UDW)"][1:] == (
        f"sqlite {bare_udw}",
        "connected, but there is no unizin_metadata table",
    )
    assert DB_PASSWORD not in output


def test_causes_in_words() -> None:
    assert (
        cause(
            RetriesExhausted("GET", "/x", 1, "ConnectTimeout / MaxRetryError / ConnectTimeoutError")
        )
        == "timed out"
    )
    assert cause(
        RetriesExhausted("GET", "/x", 1, "ConnectionError / ProtocolError / ConnectionResetError")
    ) == ("the connection was reset")
    assert (
        cause(NotFound("GET", "/api/v1/accounts/9", 404)) == "404 Not Found: GET /api/v1/accounts/9"
    )
    assert (
        cause(Unauthorized("GET", "/api/v1/accounts/9", 401))
        == "401 Unauthorized: the token or key was rejected"
    )
    assert cause(CheckFailed("in words already")) == "in words already"
    assert cause(OSError("something else entirely")) == "something else entirely"
