"""Bookkeeping tells the truth: once the swap committed, the run is recorded succeeded with
its freshness rows, whatever happens to its connections or to the cleanup afterwards."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from courseinv.db.engine import make_engine
from courseinv.db.publish import upsert_rows
from courseinv.runner.cli import main
from courseinv.runner.jobs import (
    DataSourceName,
    DataSourceStatus,
    JobContext,
    register_job,
    unregister_job,
)
from sqlalchemy import Engine, text

from tests.foundation.reliability import job_runs, scalar, staging_tables, write_config
from tests.foundation.test_publish import placements

FRESH = datetime(2024, 5, 1, 12, tzinfo=UTC)


def kill_other_connections(url: str) -> int:
    """From a new session, kill every other session on this database (the job's pool and
    its job-lock connection): MariaDB ``KILL``, PostgreSQL ``pg_terminate_backend``."""
    killer = make_engine(url)
    try:
        with killer.connect() as conn:
            if killer.dialect.name == "postgresql":
                pids = conn.execute(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )).scalars().all()  # fmt: skip
                for pid in pids:
                    conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            else:
                ids = conn.execute(text(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
                    "AND ID <> CONNECTION_ID()"
                )).scalars().all()  # fmt: skip
                for thread_id in ids:
                    conn.exec_driver_sql(f"KILL {int(thread_id)}")
            return len(pids if killer.dialect.name == "postgresql" else ids)
    finally:
        killer.dispose()


def publish_then_lose_connections(ctx: JobContext) -> list[DataSourceStatus]:
    ctx.replace_tables(placements(4))
    ctx.log.info("killed %d connection(s)", kill_other_connections(_url(ctx.engine)))
    return [DataSourceStatus(DataSourceName.CANVAS_LTI, FRESH)]


def publish_then_crash(ctx: JobContext) -> list[DataSourceStatus]:
    ctx.replace_tables(placements(4))
    raise RuntimeError("something after the publish broke")


def publish_and_export(ctx: JobContext) -> list[DataSourceStatus]:
    frames = placements(4)
    ctx.replace_tables(frames)
    ctx.write_csvs(frames)
    return [DataSourceStatus(DataSourceName.CANVAS_LTI, FRESH)]


JOBS = {
    "LOSE_CONNECTIONS": publish_then_lose_connections,
    "CRASH_AFTER": publish_then_crash,
    "EXPORT": publish_and_export,
}


@pytest.fixture(autouse=True)
def jobs() -> Iterator[None]:
    for name, func in JOBS.items():
        register_job(name, func)
    yield
    for name in JOBS:
        unregister_job(name)


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def seed(engine: Engine) -> None:
    upsert_rows(engine, {"lti_type": pd.DataFrame({"canvas_id": [77], "des": ["Zoom"]})})
    from courseinv.db.publish import replace_tables

    replace_tables(engine, placements(3))


def freshness(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT s.data_source_name, r.status FROM data_source_status s "
            "JOIN job_run r ON r.id = s.job_run_id"
        )).all()  # fmt: skip
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("kind", ["mariadb", "postgres"])
def test_every_connection_killed_after_the_swap_still_records_success(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    engine: Engine = request.getfixturevalue(f"{kind}_engine")
    seed(engine)
    config = write_config(tmp_path / "env.hjson", _url(engine), ["LOSE_CONNECTIONS"])
    assert main(["run", "--config", str(config)]) == 0
    runs = job_runs(engine)
    assert [(r["status"], r["reason"], r["rows_written"]) for r in runs] == [("succeeded", None, 5)]
    assert freshness(engine) == [("CANVAS_LTI", "succeeded")]
    assert scalar(engine, "SELECT COUNT(*) FROM lti_placement") == 4


def test_connection_killed_while_dropping_the_old_tables_records_success(
    postgres_engine: Engine, tmp_path: Path
) -> None:
    """The hook: a reader of ``lti_type`` (the placements' parent) lets the swap through
    but blocks dropping the old placements; the watcher kills the job's session then."""
    engine = postgres_engine
    seed(engine)
    config = write_config(
        tmp_path / "env.hjson", _url(engine), ["EXPORT"], SWAP_LOCK_WAIT_SECONDS=5
    )
    killed: list[int] = []
    with engine.connect() as reader:
        reader.execute(text("SELECT COUNT(*) FROM lti_type")).scalar()

        def watch() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                with engine.connect() as conn:
                    pid = conn.execute(text(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE 'DROP TABLE%__old%'"
                    )).scalar()  # fmt: skip
                    if pid is not None:
                        conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                        killed.append(pid)
                time.sleep(0.02)
            time.sleep(0.3)
            reader.rollback()  # the retry on a fresh connection can drop them now

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        code = main(["run", "--config", str(config)])
        watcher.join(70)
    assert killed, "the cleanup never waited for the reader's lock"
    assert code == 0
    runs = job_runs(engine)
    assert [(r["status"], r["reason"], r["rows_written"]) for r in runs] == [("succeeded", None, 5)]
    assert freshness(engine) == [("CANVAS_LTI", "succeeded")]
    assert scalar(engine, "SELECT COUNT(*) FROM lti_placement") == 4
    assert staging_tables(engine) == []


def test_failure_after_the_swap_is_recorded_as_published(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    seed(sqlite_engine)
    config = write_config(tmp_path / "env.hjson", _url(sqlite_engine), ["CRASH_AFTER"])
    assert main(["run", "--config", str(config)]) == 0
    runs = job_runs(sqlite_engine)
    assert [r["status"] for r in runs] == ["succeeded"]
    assert runs[0]["reason"] == (
        "tables published; afterwards: RuntimeError: something after the publish broke"
    )
    assert freshness(sqlite_engine) == []  # the job never reported its sources
    assert scalar(sqlite_engine, "SELECT COUNT(*) FROM lti_placement") == 4


def test_csv_export_failing_after_the_publish_is_a_warning_with_its_reason(
    sqlite_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seed(sqlite_engine)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where DATA_DIR should be")
    config = write_config(tmp_path / "env.hjson", _url(sqlite_engine), ["EXPORT"],
                          CREATE_CSVS=True, DATA_DIR=str(blocker))  # fmt: skip
    assert main(["run", "--config", str(config)]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("CSV export failed" in w and "not-a-folder" in w for w in warnings), warnings
    runs = job_runs(sqlite_engine)
    assert [(r["status"], r["reason"]) for r in runs] == [("succeeded", None)]
    assert runs[0]["warnings"] >= 1
    assert freshness(sqlite_engine) == [("CANVAS_LTI", "succeeded")]
    assert staging_tables(sqlite_engine) == []
