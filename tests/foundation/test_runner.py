"""The runner: job isolation, job_run/data_source_status bookkeeping, exit codes, redaction."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from courseinv.db.engine import make_engine
from courseinv.http_client.session import RetryingSession, RetryPolicy
from courseinv.runner.cli import main
from courseinv.runner.jobs import (
    DataSourceName,
    DataSourceStatus,
    JobContext,
    JobError,
    register_job,
    unregister_job,
)
from sqlalchemy import Engine, text

from tests.conftest import run_cli

TOKEN = "canvas-token-XYZZY-123456"
PASSWORD = "db-password-PLUGH-98765"
KALTURA = "kaltura-secret-FROBOZZ-42"
SECRETS = (TOKEN, PASSWORD, KALTURA)


def ok_job(ctx: JobContext) -> list[DataSourceStatus]:
    ctx.log.info("config token is %s", ctx.config["CANVAS"]["CANVAS_TOKEN"])  # must be redacted
    return [DataSourceStatus(DataSourceName.CANVAS_API, datetime(2024, 5, 1, 12, tzinfo=UTC))]


def failing_job(ctx: JobContext) -> list[DataSourceStatus]:
    raise JobError(f"Canvas said no to {ctx.config['CANVAS']['CANVAS_TOKEN']}")


def crashing_job(ctx: JobContext) -> list[DataSourceStatus]:
    secret = ctx.config["MIVIDEO"]["kaltura_user_secret"]
    raise RuntimeError(f"unexpected crash with {secret}")


def unreachable_job(ctx: JobContext) -> list[DataSourceStatus]:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    session = RetryingSession(policy=RetryPolicy(max_attempts=2, backoff_base=0.01))
    session.request("GET", f"http://127.0.0.1:{port}/api/v1/accounts/1/courses?per_page=100")
    return []


@pytest.fixture(autouse=True)
def test_jobs() -> Iterator[None]:
    """The jobs these tests run, registered only while they run."""
    jobs = {
        "TEST_OK": ok_job,
        "TEST_FAIL": failing_job,
        "TEST_CRASH": crashing_job,
        "TEST_UNREACHABLE": unreachable_job,
    }
    for name, func in jobs.items():
        register_job(name, func)
    yield
    for name in jobs:
        unregister_job(name)


def write_config(tmp_path: Path, db_url: str, jobs: list[str]) -> Path:
    path = tmp_path / "env.hjson"
    path.write_text(
        f"""{{
  JOB_NAMES: {jobs!r}
  LOG_LEVEL: DEBUG
  DATA_DIR: "{tmp_path / "data"}"
  CANVAS: {{CANVAS_URL: "https://canvas.example.edu", CANVAS_TOKEN: "{TOKEN}", CANVAS_ACCOUNT_ID: 1}}
  MIVIDEO: {{default_last_timestamp: "2024-01-01T00:00:00Z", udp_service_account_json_filename: "key.json",
            kaltura_partner_id: 5, kaltura_user_secret: "{KALTURA}"}}
  UDW: {{host: "127.0.0.1", dbname: "udw", user: "u", password: "{PASSWORD}"}}
  INVENTORY_DB: {{url: "{db_url}"}}
}}""".replace("'", '"'),
        encoding="utf-8",
    )
    return path


def job_runs(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT job_name, status, reason, started_at <= finished_at FROM job_run ORDER BY id"
                )
            )
        ]


@pytest.mark.parametrize("database_url", ["sqlite", "mariadb"], indirect=True)
def test_failures_are_isolated_recorded_and_exit_1(
    database_url: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, database_url, ["test_fail", "test_ok", "test_crash"])
    assert main(["run", "--config", str(config)]) == 1
    from courseinv.db.engine import make_engine

    engine = make_engine(database_url)
    try:
        runs = job_runs(engine)
        assert [r[:2] for r in runs] == [
            ("TEST_FAIL", "failed"),
            ("TEST_OK", "succeeded"),
            ("TEST_CRASH", "failed"),
        ]
        assert runs[0][2] == "Canvas said no to [REDACTED]"
        assert runs[2][2] == "RuntimeError: unexpected crash with [REDACTED]"
        assert runs[1][2] is None and all(r[3] for r in runs)
        with engine.connect() as conn:
            statuses = conn.execute(
                text(
                    "SELECT s.data_source_name, s.data_updated_at, r.job_name FROM data_source_status s "
                    "JOIN job_run r ON r.id = s.job_run_id"
                )
            ).fetchall()
        assert [(s[0], str(s[1])[:19], s[2]) for s in statuses] == [
            ("CANVAS_API", "2024-05-01 12:00:00", "TEST_OK")
        ]
    finally:
        engine.dispose()
    out = capfd.readouterr()
    captured = out.out + out.err
    assert "Job TEST_FAIL failed: Canvas said no to [REDACTED]" in captured
    assert "Traceback" in captured  # the unexpected crash is logged with its traceback
    for secret in SECRETS:
        assert secret not in captured


def test_network_failure_reason_in_words(tmp_path: Path) -> None:
    db = tmp_path / "out.sqlite3"
    config = write_config(tmp_path, f"sqlite:///{db}", ["TEST_UNREACHABLE"])
    assert main(["run", "--config", str(config)]) == 1
    engine = make_engine(f"sqlite:///{db}")
    assert job_runs(engine)[0][1:3] == (
        "failed",
        "GET /api/v1/accounts/1/courses: gave up after 2 attempt(s): "
        "connection refused (nothing listens on that port)",
    )
    engine.dispose()


def test_all_jobs_succeeding_exit_0(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "out.sqlite3"
    config = write_config(tmp_path, f"sqlite:///{db}", ["test_ok", "TEST_OK"])
    assert main(["run", "--config", str(config)]) == 0
    from courseinv.db.engine import make_engine

    engine = make_engine(f"sqlite:///{db}")
    assert [r[:2] for r in job_runs(engine)] == [("TEST_OK", "succeeded")] * 2
    engine.dispose()
    assert TOKEN not in "".join(capfd.readouterr())


def test_embedded_sqlite_when_inventory_db_absent(tmp_path: Path) -> None:
    config = write_config(tmp_path, "unused", ["test_ok"])
    config.write_text(config.read_text().replace('INVENTORY_DB: {url: "unused"}', ""))
    assert main(["run", "--config", str(config)]) == 0
    assert (tmp_path / "data" / "course_inventory.sqlite3").exists()


def test_unreachable_database_fails_clearly_without_secrets(tmp_path: Path) -> None:
    url = f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:1/nothing"
    config = write_config(tmp_path, url, ["course_inventory"])  # fails before any job runs
    result = run_cli(["run", "--config", str(config)], env={"DB_WAIT_SECONDS": "0"})
    assert result.returncode == 1
    assert "DatabaseUnavailable: database mysql 127.0.0.1:1/nothing not reachable" in result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr


def test_create_db_asks_first_then_empties_and_remigrates(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "out.sqlite3"
    config = write_config(tmp_path, f"sqlite:///{db}", ["course_inventory"])
    assert run_cli(["migrate", "--config", str(config)]).returncode == 0
    from courseinv.db.engine import make_engine

    engine = make_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO lti_type (canvas_id, des) VALUES (1, 'Zoom')"))
    declined = run_cli(["create-db", "--config", str(config)], stdin="y\n")  # not a terminal
    assert declined.returncode == 2 and "pass --yes" in declined.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM lti_type")).scalar() == 1
    wrapper = subprocess.run(  # the thin wrapper, confirmed with --yes
        [sys.executable, "create_db.py", "--config", str(config), "--yes"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert wrapper.returncode == 0, wrapper.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM lti_type")).scalar() == 0
    engine.dispose()


def counting_job(ctx: JobContext) -> list[DataSourceStatus]:
    """Writes 2 media rows, makes 3 HTTP requests (one retried), logs a warning."""
    import pandas as pd
    from courseinv.db.publish import upsert_rows
    from courseinv.http_client.session import RetryingSession, RetryPolicy
    from courseinv.sandbox.httpserver import json_response

    from tests.http_client.servers import TOKEN as HTTP_TOKEN
    from tests.http_client.servers import ScriptedServer

    with ScriptedServer() as server, RetryingSession(
        headers={"Authorization": f"Bearer {HTTP_TOKEN}"},
        policy=RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.02),
    ) as session:
        server.script("thing", [json_response({"error": "busy"}, 503)])
        for i in (1, 2):
            assert session.get_json(f"{server.url}/api/v1/things/{i}") == {"id": i}
    ctx.log.warning("one thing to look at")
    frame = pd.DataFrame(
        {"id": ["1_a", "1_b"], "created_at": pd.to_datetime(["2026-01-01", "2026-01-02"]),
         "name": ["a", "b"], "duration": [1, 2]}
    )
    ctx.record_rows(upsert_rows(ctx.engine, {"mivideo_media_created": frame}))
    return []


@pytest.mark.parametrize("database_url", ["sqlite", "mariadb", "postgres"], indirect=True)
def test_job_run_counts_rows_warnings_and_requests(database_url: str, tmp_path: Path) -> None:
    register_job("TEST_COUNT", counting_job)
    try:
        config = write_config(tmp_path, database_url, ["test_count", "test_fail"])
        assert main(["run", "--config", str(config)]) == 1
    finally:
        unregister_job("TEST_COUNT")
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT job_name, status, rows_written, warnings, requests, details "
                     "FROM job_run ORDER BY id")
            ).all()
    finally:
        engine.dispose()
    (count_name, count_status, written, warnings, requests, details), failed = rows
    assert (count_name, count_status, written, warnings, requests) == (
        "TEST_COUNT", "succeeded", 2, 2, 3,  # warnings: the retry's and the job's own
    )
    parsed = json.loads(details)
    assert parsed["tables"] == {"mivideo_media_created": 2}
    assert parsed["http"]["retries"] == 1
    assert failed[:5] == ("TEST_FAIL", "failed", 0, 0, 0)
