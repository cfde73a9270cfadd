"""Logs for machines: ``--log-format json`` / ``LOG_FORMAT``, one redacted object per line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from courseinv.runner.cli import main
from courseinv.runner.jobs import (
    DataSourceStatus,
    JobContext,
    JobError,
    register_job,
    unregister_job,
)
from courseinv.runner.logs import JsonFormatter, Redactor, in_words, job_scope

TOKEN = 'tok"en\\with-QUOTES-31337'  # JSON escaping must not hide it from redaction


def chatty_job(ctx: JobContext) -> list[DataSourceStatus]:
    ctx.phase("talking")
    ctx.log.info("using token %s", ctx.config["CANVAS"]["CANVAS_TOKEN"], extra={"course_id": 7})
    logging.getLogger("courseinv.http_client.session").warning("a retry, from another module")
    ctx.record_rows({"term": 1})
    return []


def failing_job(ctx: JobContext) -> list[DataSourceStatus]:
    raise JobError(f"Canvas said no to {ctx.config['CANVAS']['CANVAS_TOKEN']}")


@pytest.fixture(autouse=True)
def jobs() -> Iterator[None]:
    register_job("LOG_CHATTY", chatty_job)
    register_job("LOG_FAIL", failing_job)
    yield
    unregister_job("LOG_CHATTY")
    unregister_job("LOG_FAIL")


def write_config(tmp_path: Path, extra: dict | None = None) -> Path:
    config = {
        "JOB_NAMES": ["log_chatty", "log_fail"],
        "DATA_DIR": str(tmp_path / "data"),
        "CANVAS": {"CANVAS_URL": "https://canvas.example.edu", "CANVAS_TOKEN": TOKEN,
                   "CANVAS_ACCOUNT_ID": 1},
        "INVENTORY_DB": {"url": f"sqlite:///{tmp_path / 'out.sqlite3'}"},
        **(extra or {}),
    }  # fmt: skip
    path = tmp_path / "env.hjson"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def json_lines(err: str) -> list[dict]:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "no log lines"
    return [json.loads(line) for line in lines]  # every line is one JSON object


@pytest.mark.parametrize("how", ["option", "config", "environment"])
def test_json_log_lines(
    how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, {"LOG_FORMAT": "json"} if how == "config" else None)
    if how == "environment":
        monkeypatch.setenv("LOG_FORMAT", "json")
    args = ["--config", str(config), "run"] + (["--log-format", "json"] if how == "option" else [])
    assert main(args) == 1
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    assert "QUOTES-31337" not in captured.out + captured.err
    entries = json_lines(captured.err)
    for entry in entries:
        assert set(entry) >= {"time", "level", "logger", "job", "event"}
        assert entry["time"].endswith("Z")
        assert (
            datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).utcoffset().total_seconds()
            == 0
        )
    token_line = next(e for e in entries if e["event"].startswith("using token"))
    assert token_line["event"] == "using token [REDACTED]"
    assert token_line["job"] == "LOG_CHATTY" and token_line["logger"] == "job.log_chatty"
    assert token_line["fields"] == {"course_id": 7}
    retry = next(e for e in entries if e["event"] == "a retry, from another module")
    assert retry["level"] == "WARNING" and retry["job"] == "LOG_CHATTY"
    done = next(e for e in entries if e["event"].startswith("Job LOG_CHATTY succeeded"))
    assert done["fields"]["rows_written"] == 1 and done["fields"]["warnings"] == 1
    assert done["fields"]["job_run_id"] == 1
    failures = [e for e in entries if "Canvas said no" in e["event"]]
    assert len(failures) == 1, failures  # logged once, not twice
    assert failures[0]["level"] == "ERROR" and failures[0]["job"] == "LOG_FAIL"
    assert "Canvas said no to [REDACTED]" in failures[0]["event"]
    report = next(e for e in entries if e["event"].startswith("Run report: "))
    assert report["job"] is None and Path(report["fields"]["report"]).exists()
    # the end-of-run summary is for people: stdout, not the log
    assert any(
        line.startswith("LOG_FAIL") and "FAILED" in line for line in captured.out.splitlines()
    )


def test_text_format_failure_logged_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(write_config(tmp_path)), "run"]) == 1
    err = capsys.readouterr().err
    assert err.count("Canvas said no to [REDACTED]") == 1, err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err.splitlines()[0])


def test_json_formatter_redacts_fields_and_tracebacks() -> None:
    formatter = JsonFormatter(Redactor([TOKEN]))
    try:
        raise ValueError(f"boom {TOKEN}")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed %s", (TOKEN,), sys.exc_info()
        )
    record.url = f"https://host/?access_token={TOKEN}"
    with job_scope("SOME_JOB"):
        line = formatter.format(record)
    assert TOKEN not in line and "QUOTES-31337" not in line
    entry = json.loads(line)
    assert entry["event"] == "failed [REDACTED]" and entry["job"] == "SOME_JOB"
    assert entry["fields"] == {"url": "https://host/?access_token=[REDACTED]"}
    assert "ValueError: boom [REDACTED]" in entry["exception"]
    assert (
        json.loads(formatter.format(logging.LogRecord("x", 20, "", 1, "m", (), None)))["job"]
        is None
    )


def test_statistics_in_words() -> None:
    text = in_words(
        {"requests": 1204, "retries": 3, "throttled": 0, "cost": 1530.25, "min_remaining": 41.5}
    )
    assert text == "1,204 requests, 3 retries, 0 throttled, cost 1,530.2, min remaining 41.5"
    assert "{" not in text
