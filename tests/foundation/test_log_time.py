"""Log lines carry UTC times with a ``Z``, agreeing with the UTC times of ``job_run``."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from pathlib import Path

from courseinv.db.engine import make_engine
from courseinv.db.tables import job_run
from courseinv.runner.logs import RedactingFormatter, Redactor
from sqlalchemy import select

from tests.conftest import run_cli

STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z ")


def test_formatter_writes_utc_with_z() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("tok-1234",), None)
    record.created, record.msecs = 86_400 * 365 + 3_600.25, 250.0  # 1971-01-01 01:00:00.250
    line = RedactingFormatter(Redactor(["tok-1234"])).format(record)
    assert line.startswith("1971-01-01T01:00:00.250Z INFO    x: hello [REDACTED]")


def test_log_times_agree_with_job_run_times(tmp_path: Path) -> None:
    db = tmp_path / "out.sqlite3"
    config = {
        "JOB_NAMES": ["COURSE_INVENTORY"],
        "MAX_REQ_ATTEMPTS": 1,
        "CANVAS": {"CANVAS_URL": "http://127.0.0.1:9", "CANVAS_TOKEN": "t", "CANVAS_ACCOUNT_ID": 1},
        "INVENTORY_DB": {"url": f"sqlite:///{db}"},
    }
    path = tmp_path / "env.hjson"
    path.write_text(json.dumps(config), encoding="utf-8")
    result = run_cli(["run", "--config", str(path)], env={"TZ": "America/Detroit"})
    assert result.returncode == 1  # Canvas is not there: the job fails, and says when
    logged = {}
    for line in result.stderr.splitlines():
        match = STAMP.match(line)
        if match and "Starting job COURSE_INVENTORY" in line:
            logged["start"] = datetime.fromisoformat(match.group(1))
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        started = conn.execute(select(job_run.c.started_at)).scalar_one()
    engine.dispose()
    assert "start" in logged, result.stderr
    # Both UTC: seconds apart at most (the TZ of the process is 5 h off UTC).
    assert abs((logged["start"] - started).total_seconds()) < 300
