"""Two MIVIDEO runs of the same day started together never double-count (issue 14, item 1).

The job's incremental write must be correct by itself, whatever lock the runner adds: the
two runs here call the job directly, side by side. The BigQuery fake answers the second
query a few seconds late, so one run reads the event counts after the other has already
committed its rows — the interleaving that double-counted the first new hour.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from courseinv.db.engine import make_engine
from courseinv.mivideo.job import run
from courseinv.sandbox.mivideo import MivideoSandbox, start_mivideo_sandbox
from sqlalchemy import Engine

from tests.mivideo.test_job import (
    COURSES,
    TODAY,
    assert_tables_equal,
    context,
    expected,
    load,
    read_tables,
)

SECOND_QUERY_LATE_S = 3.0


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[MivideoSandbox]:
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    with start_mivideo_sandbox(
        22, COURSES, env_dir, today=TODAY, days=3, events_per_day=150, media_per_day=20
    ) as sb:
        yield sb


@pytest.fixture
def second_engine(any_engine: Engine) -> Iterator[Engine]:
    """Another engine on the same database: what a second process would have."""
    other = make_engine(any_engine.url)
    yield other
    other.dispose()


def run_together(engines: list[Engine], sandbox: MivideoSandbox, tmp_path: Path) -> None:
    """Start one MIVIDEO run per engine at the same moment; re-raise any run's error."""
    sandbox.bigquery.query_delays = [0.0, SECOND_QUERY_LATE_S]
    errors: list[BaseException] = []
    start = threading.Barrier(len(engines))

    config = load(sandbox)  # written and read once: the runs share it

    def one(engine: Engine, i: int) -> None:
        ctx = context(config, engine, tmp_path / f"run{i}")
        start.wait()
        try:
            run(ctx)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(e, i)) for i, e in enumerate(engines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sandbox.bigquery.query_delays == []  # both queries ran


def test_two_runs_started_together_count_every_event_once(
    any_engine: Engine, second_engine: Engine, sandbox: MivideoSandbox, tmp_path: Path
) -> None:
    # The first day: both runs start from default_last_timestamp.
    run_together([any_engine, second_engine], sandbox, tmp_path)
    assert_tables_equal(read_tables(any_engine), expected(sandbox))

    # The next day: both start from the same stored watermark.
    sandbox.advance_day()
    run_together([any_engine, second_engine], sandbox, tmp_path)
    got = read_tables(any_engine)
    want = expected(sandbox)
    hourly, true = got["mivideo_media_started_hourly"], want["mivideo_media_started_hourly"]
    assert hourly["event_count"].sum() == true["event_count"].sum()
    assert_tables_equal(got, want)
