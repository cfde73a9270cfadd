"""COURSE_INVENTORY end to end: real HTTP against the Canvas sandbox, UDW in PostgreSQL
(or SQLite), output into MariaDB, PostgreSQL and SQLite, compared with the ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from courseinv.course_inventory.job import run
from courseinv.db.tables import data_source_status, job_run
from courseinv.runner.jobs import DataSourceName, JobError
from courseinv.sandbox.canvas import ThrottleSpec
from courseinv.sandbox.httpserver import Faults
from courseinv.sandbox.institution import AWKWARD_COURSE_NAMES, Institution
from courseinv.sandbox.udw import seed_udw
from sqlalchemy import Engine, select

from tests.conftest import create_database, drop_database, run_cli
from tests.course_inventory.helpers import (
    PER_PAGE_MAX,
    SPEC,
    TABLES,
    Canvas,
    assert_tables_equal,
    audit_pages,
    checksums,
    context,
    read_tables,
    url_of,
    write_config,
)


@pytest.fixture(scope="module")
def institution() -> Institution:
    return Institution.generate(SPEC)


@pytest.fixture(scope="module")
def canvas_server(institution: Institution) -> Iterator[Canvas]:
    with Canvas(institution, per_page_max=PER_PAGE_MAX) as server:
        yield server


@pytest.fixture
def canvas(canvas_server: Canvas) -> Iterator[Canvas]:
    """The module's Canvas fake with a clean log and default knobs for each test."""
    canvas_server.log.reset()
    yield canvas_server
    canvas_server.heal()
    canvas_server.faults = Faults()
    canvas_server.throttle = ThrottleSpec()


@pytest.fixture(scope="module")
def udw_url(institution: Institution) -> Iterator[str]:
    """A fresh PostgreSQL database seeded as the institution's UDW."""
    url = create_database("postgres")
    try:
        seed_udw(institution, url)
        yield url
    finally:
        drop_database(url)


def truth(institution: Institution, *, udw: bool) -> dict[str, pd.DataFrame]:
    return institution.expected_course_inventory(institution.term_ids, udw=udw)


# -- full runs ------------------------------------------------------------------------


def test_first_and_second_run_on_mariadb(
    institution: Institution, canvas: Canvas, udw_url: str, mariadb_engine: Engine, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "env.hjson", canvas, institution, url_of(mariadb_engine), udw_url=udw_url
    )
    want = truth(institution, udw=True)
    # The ground truth exercises what the job must get right, so equality means something.
    assert set(AWKWARD_COURSE_NAMES) <= set(want["course"]["name"])
    assert want["course"]["published_at"].isna().any()  # available, never published
    assert (want["course"]["workflow_state"] != "available").any()
    assert truth(institution, udw=False)["course_section"]["sis_id"].tolist() != (
        want["course_section"]["sis_id"].tolist()
    )

    before = datetime.now(UTC)
    statuses = run(context(config, mariadb_engine))

    assert [s.name for s in statuses] == [
        DataSourceName.CANVAS_API,
        DataSourceName.UNIZIN_DATA_WAREHOUSE,
    ]
    assert before <= statuses[0].updated_at <= datetime.now(UTC)
    assert statuses[1].updated_at == institution.udw_canvasdatadate
    first = read_tables(mariadb_engine, keep_usage_id=True)
    assert_tables_equal(read_tables(mariadb_engine), want)
    assert_unicode_round_trip(read_tables(mariadb_engine))
    # Pages were walked exactly as far as the newest published event (10 events a page).
    assert canvas.log.count("audit") == audit_pages(
        institution, PER_PAGE_MAX, only_unpublished=False
    )
    assert canvas.log.count("analytics", 404) > 0  # skipped with a warning, not fatal
    # CSVs (CREATE_CSVS) hold the same rows.
    for name in TABLES:
        csv = pd.read_csv(tmp_path / "data" / f"{name}.csv")
        assert len(csv) == len(want[name]), name

    # Second run: published_at comes from the database; only never-published courses
    # have their audit log read again, and the tables are identical.
    sums = checksums(mariadb_engine)
    canvas.log.reset()
    run(context(config, mariadb_engine))
    assert canvas.log.count("audit") == audit_pages(
        institution, PER_PAGE_MAX, only_unpublished=True
    )
    assert canvas.log.count("audit") < audit_pages(
        institution, PER_PAGE_MAX, only_unpublished=False
    )
    second = read_tables(mariadb_engine, keep_usage_id=True)
    assert_tables_equal(second, first)
    assert checksums(mariadb_engine) == sums


def test_postgres_output_and_udw_offset_in_sqlite(
    institution: Institution, canvas: Canvas, postgres_engine: Engine, tmp_path: Path
) -> None:
    """UDW given as a SQLite URL whose canvasdatadate carries a -04:00 offset."""
    udw_sqlite = f"sqlite:///{tmp_path / 'udw.sqlite3'}"
    seed_udw(institution, udw_sqlite, utc_offset_hours=-4)
    config = write_config(
        tmp_path / "env.hjson", canvas, institution, url_of(postgres_engine), udw_url=udw_sqlite
    )
    statuses = run(context(config, postgres_engine))
    assert statuses[1].updated_at == institution.udw_canvasdatadate
    assert statuses[1].updated_at.utcoffset() == timedelta(0)
    assert_tables_equal(read_tables(postgres_engine), truth(institution, udw=True))


def test_faults_and_small_throttle_bucket_give_the_same_tables(
    institution: Institution, canvas: Canvas, udw_url: str, sqlite_engine: Engine, tmp_path: Path
) -> None:
    canvas.faults = Faults(error_5xx=0.10, truncated=0.10, reset=0.10)
    canvas.throttle = ThrottleSpec(capacity=200.0)  # at most three requests in flight
    config = write_config(
        tmp_path / "env.hjson",
        canvas,
        institution,
        url_of(sqlite_engine),
        udw_url=udw_url,
        MAX_REQ_ATTEMPTS=12,
    )
    run(context(config, sqlite_engine))
    assert_tables_equal(read_tables(sqlite_engine), truth(institution, udw=True))
    statuses = canvas.log.by_status()
    assert sum(n for s, n in statuses.items() if s >= 500) > 0  # faults were injected
    assert statuses.get(0, 0) > 0  # resets


def test_without_udw_sis_ids_come_from_canvas(
    institution: Institution, canvas: Canvas, sqlite_engine: Engine, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "env.hjson", canvas, institution, url_of(sqlite_engine), udw_url=None
    )
    statuses = run(context(config, sqlite_engine))
    assert [s.name for s in statuses] == [DataSourceName.CANVAS_API]
    assert_tables_equal(read_tables(sqlite_engine), truth(institution, udw=False))


def assert_unicode_round_trip(stored: dict[str, pd.DataFrame]) -> None:
    """Emoji, non-Latin and 255-character names came back exactly (utf8mb4 on MariaDB)."""
    names = set(stored["course"]["name"])
    assert set(AWKWARD_COURSE_NAMES) <= names
    longest = [n for n in names if len(n) == 255]
    assert len(longest) == 2 and any(n.endswith("🎓") for n in longest)  # 4-byte last char
    assert any(n.endswith("🦤") for n in stored["course_section"]["name"])


# -- failures -------------------------------------------------------------------------


def test_cli_run_then_a_run_that_dies_part_way_leaves_the_tables(
    institution: Institution, canvas: Canvas, udw_url: str, mariadb_engine: Engine, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "env.hjson",
        canvas,
        institution,
        url_of(mariadb_engine),
        udw_url=udw_url,
        MAX_REQ_ATTEMPTS=2,
    )
    ok = run_cli(["run", "--config", str(config)])
    assert ok.returncode == 0, ok.stderr
    assert_tables_equal(read_tables(mariadb_engine), truth(institution, udw=True))
    before, sums = read_tables(mariadb_engine, keep_usage_id=True), checksums(mariadb_engine)

    canvas.fail_after = 20  # Canvas stops answering in the middle of the enrollments
    failed = run_cli(["run", "--config", str(config)])

    assert failed.returncode == 1
    assert "COURSE_INVENTORY" in failed.stderr and "gave up" in failed.stderr
    assert canvas.token not in failed.stderr + failed.stdout
    with mariadb_engine.connect() as conn:
        runs = conn.execute(select(job_run).order_by(job_run.c.id)).mappings().all()
        sources = conn.execute(select(data_source_status)).mappings().all()
    assert [r["status"] for r in runs] == ["succeeded", "failed"]
    # The reason names the Canvas path that failed (whichever request met the outage).
    assert runs[1]["finished_at"] is not None
    assert runs[1]["reason"].startswith("Canvas: ") and "/api/" in runs[1]["reason"]
    assert sorted(s["data_source_name"] for s in sources) == [
        "CANVAS_API",
        "UNIZIN_DATA_WAREHOUSE",
    ]
    assert {s["job_run_id"] for s in sources} == {runs[0]["id"]}
    assert_tables_equal(read_tables(mariadb_engine, keep_usage_id=True), before)
    assert checksums(mariadb_engine) == sums


def test_unknown_term_fails_naming_the_path_and_leaves_the_tables(
    institution: Institution, canvas: Canvas, sqlite_engine: Engine, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "ok.hjson", canvas, institution, url_of(sqlite_engine), udw_url=None
    )
    run(context(config, sqlite_engine))
    before = read_tables(sqlite_engine, keep_usage_id=True)
    bad = write_config(
        tmp_path / "bad.hjson",
        canvas,
        institution,
        url_of(sqlite_engine),
        udw_url=None,
        CANVAS={
            "CANVAS_URL": canvas.url,
            "CANVAS_TOKEN": canvas.token,
            "CANVAS_ACCOUNT_ID": canvas.account_id,
            "CANVAS_TERM_IDS": [*institution.term_ids, 987654],
        },
    )
    with pytest.raises(JobError) as failure:
        run(context(bad, sqlite_engine))
    assert "/terms/987654" in str(failure.value) and "404" in str(failure.value)
    assert canvas.token not in str(failure.value)
    assert_tables_equal(read_tables(sqlite_engine, keep_usage_id=True), before)


def test_udw_unreachable_fails_before_reading_canvas(
    institution: Institution, canvas: Canvas, sqlite_engine: Engine, tmp_path: Path
) -> None:
    dead = "postgresql+psycopg2://postgres:s3cret-pw@127.0.0.1:1/udw"
    config = write_config(
        tmp_path / "env.hjson", canvas, institution, url_of(sqlite_engine), udw_url=dead
    )
    with pytest.raises(JobError) as failure:
        run(context(config, sqlite_engine))
    assert str(failure.value).startswith("UDW:")
    assert "s3cret-pw" not in str(failure.value)
    assert canvas.log.count() == 0
