"""``status``, ``run --jobs/--retry-failed``, the end-of-run summary, ``--version``, create-db."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from courseinv.db.engine import make_engine
from courseinv.db.migrate import migrate
from courseinv.db.tables import data_source_status, job_run
from courseinv.runner.cli import main
from courseinv.runner.jobs import (
    DataSourceName,
    DataSourceStatus,
    JobContext,
    JobError,
    register_job,
    unregister_job,
)
from sqlalchemy import insert, text

from tests.conftest import ROOT, run_cli

TOKEN = "canvas-token-STATUS-424242"


def ok_job(ctx: JobContext) -> list[DataSourceStatus]:
    with ctx.phase("only phase"):
        ctx.record_rows({"term": 3})
    return [DataSourceStatus(DataSourceName.CANVAS_API, datetime(2024, 5, 1, 12, tzinfo=UTC))]


def flaky_job(ctx: JobContext) -> list[DataSourceStatus]:
    """Fails while ``<DATA_DIR>/broken`` exists."""
    if (ctx.data_dir / "broken").exists():
        raise JobError(f"Canvas refused token {ctx.config['CANVAS']['CANVAS_TOKEN']}")
    ctx.record_rows({"account": 1})
    return []


@pytest.fixture(autouse=True)
def status_jobs() -> Iterator[None]:
    register_job("ST_OK", ok_job)
    register_job("ST_FLAKY", flaky_job)
    yield
    unregister_job("ST_OK")
    unregister_job("ST_FLAKY")


def write_config(tmp_path: Path, db_url: str, jobs: list[str]) -> Path:
    path = tmp_path / "env.hjson"
    config = {
        "JOB_NAMES": jobs,
        "DATA_DIR": str(tmp_path / "data"),
        "CANVAS": {"CANVAS_URL": "https://canvas.example.edu", "CANVAS_TOKEN": TOKEN,
                   "CANVAS_ACCOUNT_ID": 1},
        "INVENTORY_DB": {"url": db_url},
    }  # fmt: skip
    path.write_text(json.dumps(config), encoding="utf-8")
    (tmp_path / "data").mkdir(exist_ok=True)
    return path


def job_names_run(db_url: str) -> list[tuple[str, str]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(text("SELECT job_name, status FROM job_run ORDER BY id"))
            ]
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite", "mariadb", "postgres"], indirect=True)
def test_status_after_success_and_after_a_failed_run(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path, database_url, ["st_ok", "st_flaky"]))
    assert main(["--config", config, "run"]) == 0
    out = capsys.readouterr().out
    summary = [line for line in out.splitlines() if line.startswith(("ST_OK", "ST_FLAKY"))]
    assert len(summary) == 2 and all(" ok " in line for line in summary), out
    assert "3 rows" in summary[0] and "warning(s)" in summary[0]
    report_line = out.splitlines()[-1]
    assert report_line.startswith("report: ") and report_line.endswith(".html")
    assert Path(report_line.removeprefix("report: ")).exists()

    assert main(["--config", config, "status"]) == 0
    healthy = capsys.readouterr().out
    assert "OK: every configured job's latest run succeeded" in healthy
    assert "CANVAS_API" in healthy and "2024-05-01 12:00:00" in healthy
    assert str(tmp_path / "data" / "reports" / "latest.html") in healthy

    (tmp_path / "data" / "broken").touch()
    assert main(["--config", config, "run"]) == 1
    out = capsys.readouterr().out
    failed_line = next(line for line in out.splitlines() if line.startswith("ST_FLAKY"))
    assert "FAILED" in failed_line and "Canvas refused token [REDACTED]" in failed_line

    assert main(["--config", config, "status"]) == 1
    text_out = capsys.readouterr().out
    assert "PROBLEMS:" in text_out and "ST_FLAKY: the latest run (#4) failed" in text_out
    latest = text_out.split("Latest run per job:")[1].split("Recent runs")[0]
    assert "ST_OK" in latest and "succeeded" in latest and "failed" in latest
    assert TOKEN not in text_out

    assert main(["--config", config, "status", "--json", "--limit", "3"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["healthy"] is False and len(data["runs"]) == 3
    assert [r["id"] for r in data["runs"]] == [4, 3, 2]  # newest first
    by_job = {r["job"]: r for r in data["latest"]}
    assert by_job["ST_FLAKY"]["status"] == "failed" and by_job["ST_OK"]["status"] == "succeeded"
    assert by_job["ST_OK"]["rows_written"] == 3 and by_job["ST_OK"]["tables"] == {"term": 3}
    assert by_job["ST_OK"]["started_at"].endswith("Z") and by_job["ST_OK"]["seconds"] >= 0
    assert by_job["ST_FLAKY"]["reason"] == "Canvas refused token [REDACTED]"
    assert [s["source"] for s in data["sources"]] == ["CANVAS_API"]
    assert data["report"].endswith("latest.html")
    assert (
        by_job["ST_FLAKY"]["report"].endswith(".html")
        and Path(by_job["ST_FLAKY"]["report"]).exists()
    )
    assert by_job["ST_FLAKY"]["report"] == by_job["ST_OK"]["report"]  # one report per run

    # --retry-failed reruns only the failed job; when nothing failed it does nothing
    (tmp_path / "data" / "broken").unlink()
    assert main(["--config", config, "run", "--retry-failed"]) == 0
    assert job_names_run(database_url)[-1] == ("ST_FLAKY", "succeeded")
    assert len(job_names_run(database_url)) == 5
    capsys.readouterr()
    assert main(["--config", config, "run", "--retry-failed"]) == 0
    assert "Nothing to retry" in capsys.readouterr().out
    assert len(job_names_run(database_url)) == 5
    assert main(["--config", config, "status"]) == 0


def test_max_age_since_and_never_ran(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db_url = f"sqlite:///{tmp_path / 'out.sqlite3'}"
    config = str(write_config(tmp_path, db_url, ["st_ok", "st_flaky"]))
    engine = make_engine(db_url)
    migrate(engine)
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        for job, age in (("ST_OK", timedelta(days=3)), ("ST_OK", timedelta(hours=2))):
            run_id = conn.execute(insert(job_run).values(
                job_name=job, started_at=now - age, finished_at=now - age + timedelta(seconds=90),
                status="succeeded", rows_written=10, warnings=0, requests=5,
            )).inserted_primary_key[0]  # fmt: skip
        conn.execute(insert(data_source_status).values(
            data_source_name="CANVAS_API", data_updated_at=now - timedelta(hours=2),
            job_run_id=run_id))  # fmt: skip
    engine.dispose()

    # ST_FLAKY never ran: only a problem when the probe gives --max-age
    assert main(["--config", config, "status"]) == 0
    assert "never ran" in capsys.readouterr().out
    assert main(["--config", config, "status", "--max-age", "26h"]) == 1
    assert "ST_FLAKY: never ran" in capsys.readouterr().out

    config = str(write_config(tmp_path, db_url, ["st_ok"]))
    assert main(["--config", config, "status", "--max-age", "26h"]) == 0
    capsys.readouterr()
    assert main(["--config", config, "status", "--max-age", "90m"]) == 1
    assert (
        "ST_OK: the latest run started 2h 00m ago, longer than --max-age 1h 30m"
        in capsys.readouterr().out
    )
    assert main(["--config", config, "status", "--since", "1d", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)["runs"]] == [2]
    since = (now - timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert main(["--config", config, "status", "--since", since, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["runs"]) == 2
    assert main(["--config", config, "status", "--max-age", "soon"]) == 2
    assert "expected a duration like 90m" in capsys.readouterr().err


def test_status_of_an_empty_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path, f"sqlite:///{tmp_path / 'new.sqlite3'}", ["st_ok"]))
    assert main(["--config", config, "status"]) == 0
    out = capsys.readouterr().out
    assert "no runs recorded yet" in out and "never ran" in out
    assert main(["--config", config, "status", "--max-age", "1d"]) == 1
    assert not (tmp_path / "new.sqlite3").exists()  # status only reads: it creates nothing


def test_phase_timer() -> None:
    import logging

    clock = iter([1.0, 3.0, 3.5, 10.0, 12.0]).__next__
    ctx = JobContext(config={}, engine=None, data_dir=Path("."), env_dir=Path("."),  # type: ignore[arg-type]
                     log=logging.getLogger("t"), _clock=clock, _began=0.0)  # fmt: skip
    ctx.phase("first")  # 1.0 .. 3.0 (ended by the next phase)
    with ctx.phase("second"):  # 3.0 .. 3.5
        pass
    ctx.phase("third")  # 10.0 .. 12.0 (ended by the runner)
    ctx.end_phase()
    assert ctx.phases == [
        {"name": "first", "start_s": 1.0, "seconds": 2.0},
        {"name": "second", "start_s": 3.0, "seconds": 0.5},
        {"name": "third", "start_s": 10.0, "seconds": 2.0},
    ]


def test_run_jobs_option_overrides_job_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db_url = f"sqlite:///{tmp_path / 'out.sqlite3'}"
    config = str(write_config(tmp_path, db_url, ["st_ok", "st_flaky"]))
    assert main(["--config", config, "run", "--jobs", "st_flaky, ST_OK"]) == 0
    assert job_names_run(db_url) == [("ST_FLAKY", "succeeded"), ("ST_OK", "succeeded")]
    assert main(["--config", config, "run", "--jobs", "st_ok,nope"]) == 2
    err = capsys.readouterr().err
    assert "--jobs: unknown job 'NOPE'; expected one of COURSE_INVENTORY" in err
    assert main(["--config", config, "run", "--jobs", "mivideo"]) == 2
    assert "MIVIDEO: required by job MIVIDEO (--jobs) but missing" in capsys.readouterr().err
    assert len(job_names_run(db_url)) == 2  # nothing ran


def test_version_and_run_help() -> None:
    version = run_cli(["--version"])
    assert version.returncode == 0 and version.stdout.startswith("course-inventory ")
    assert version.stdout.split()[1][0].isdigit()
    helped = run_cli(["run", "--help"])
    assert helped.returncode == 0
    for option in ("--jobs", "--retry-failed", "--log-format", "--config", "Exit codes"):
        assert option in helped.stdout


def test_create_db_without_a_terminal_exits_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'out.sqlite3'}", ["course_inventory"])
    result = run_cli(["create-db", "--config", str(config)], stdin="")
    assert result.returncode == 2
    assert "there is no terminal to ask for confirmation: pass --yes" in result.stderr
    assert "Traceback" not in result.stderr and "EOFError" not in result.stderr


def test_create_db_asks_on_a_terminal(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'out.sqlite3'}", ["course_inventory"])
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "courseinv.runner.cli", "create-db", "--config", str(config)],
        stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True,
    )  # fmt: skip
    os.close(follower)
    os.write(leader, b"n\n")
    out, err = proc.communicate(timeout=60)
    os.close(leader)
    assert proc.returncode == 1, err
    assert "Nothing changed." in out
