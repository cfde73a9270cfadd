"""Migrations are history: frozen per-dialect DDL that must add up to db/tables.py.

An empty database migrated to head has exactly the schema of the metadata; a database made
at an older migration and holding rows upgrades keeping every row; and the comparison
fails, saying what to add, when db/tables.py changes without a migration.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pytest
from courseinv.db.engine import make_engine
from courseinv.db.migrate import migrate, migration_ids, reset
from courseinv.db.tables import metadata
from sqlalchemy import Column, Index, Integer, MetaData, String, text

from tests.foundation.schema_diff import schema_differences

pytestmark = pytest.mark.parametrize(
    "database_url", ["sqlite", "mariadb", "postgres"], indirect=True
)


def assert_schema_is_head(engine) -> None:
    problems = schema_differences(engine, metadata)
    assert problems == [], "\n".join(problems)


def test_fresh_database_migrates_to_exactly_the_metadata(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert migrate(engine) == migration_ids()
        assert len(migration_ids()) >= 2
        assert_schema_is_head(engine)
        assert migrate(engine) == []  # a no-op the second time
        if engine.dialect.name == "mysql":
            with engine.connect() as conn:
                collations = conn.execute(
                    text(
                        "SELECT DISTINCT TABLE_COLLATION FROM information_schema.TABLES "
                        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME NOT LIKE '%yoyo%'"
                    )
                ).scalars().all()
                assert collations == ["utf8mb4_bin"]
                fsp = conn.execute(
                    text(
                        "SELECT DATETIME_PRECISION FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                        "AND TABLE_NAME = 'mivideo_media_started_hourly' AND COLUMN_NAME = 'event_time_utc_latest'"
                    )
                ).scalar()
                assert fsp == 6
    finally:
        engine.dispose()


def _older_rows(conn) -> None:
    conn.execute(text("INSERT INTO term (canvas_id, name) VALUES (1, 'Fall ☃')"))
    conn.execute(text("INSERT INTO account (canvas_id, name) VALUES (2, 'LSA')"))
    conn.execute(
        text(
            "INSERT INTO course (canvas_id, name, account_id, term_id, workflow_state) "
            "VALUES (3, 'Café 101', 2, 1, 'available')"
        )
    )
    conn.execute(
        text(
            "INSERT INTO job_run (job_name, started_at, finished_at, status, reason, host, pid) "
            "VALUES ('COURSE_INVENTORY', :t, :t, 'succeeded', NULL, 'h', 7)"
        ),
        {"t": datetime(2026, 1, 2, 3, 4, 5)},
    )
    conn.execute(
        text(
            "INSERT INTO mivideo_media_created (id, created_at, name, duration) "
            "VALUES ('1_abc', :t, 'lecture', 60)"
        ),
        {"t": datetime(2026, 1, 2)},
    )


def test_database_at_first_migration_upgrades_keeping_every_row(database_url: str) -> None:
    first = migration_ids()[0]
    engine = make_engine(database_url)
    try:
        assert migrate(engine, upto=first) == [first]
        with engine.begin() as conn:
            _older_rows(conn)
        assert migrate(engine) == migration_ids()[1:]
        assert_schema_is_head(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM term")).scalar_one() == "Fall ☃"
            assert conn.execute(text("SELECT name FROM course")).scalar_one() == "Café 101"
            assert conn.execute(text("SELECT duration FROM mivideo_media_created")).scalar_one() == 60
            run = conn.execute(text("SELECT job_name, pid, rows_written FROM job_run")).one()
            assert tuple(run) == ("COURSE_INVENTORY", 7, None)
    finally:
        engine.dispose()


def test_a_change_to_tables_without_a_migration_is_named(database_url: str) -> None:
    """The comparison fails on drift and says which migration to write."""
    engine = make_engine(database_url)
    try:
        migrate(engine)
        changed = MetaData()
        for table in metadata.sorted_tables:
            table.to_metadata(changed)
        changed.tables["course"].append_column(Column("throwaway", Integer))
        changed.tables["term"].c.name.type = String(100)
        Index("ix_enrollment_user_id", changed.tables["enrollment"].c.user_id)
        problems = schema_differences(engine, changed)
        assert len(problems) == 3, problems
        assert any(
            "course.throwaway but no migration creates it" in p
            and "ALTER TABLE course ADD COLUMN throwaway INTEGER" in p
            for p in problems
        )
        assert any("term.name is VARCHAR(255)" in p and "VARCHAR(100)" in p for p in problems)
        assert any("CREATE INDEX ix_enrollment_user_id ON enrollment (user_id)" in p for p in problems)
    finally:
        engine.dispose()


def test_concurrent_migrations_apply_once(database_url: str) -> None:
    code = (
        "import sys; from courseinv.db.engine import make_engine; "
        "from courseinv.db.migrate import migrate; print(len(migrate(make_engine(sys.argv[1]))))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-500:] for o in outputs]
    assert sorted(int(o[0].strip()) for o in outputs) == [0, 0, len(migration_ids())]
    engine = make_engine(database_url)
    try:
        assert_schema_is_head(engine)
    finally:
        engine.dispose()


def test_reset_empties_tables_and_reapplies(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO lti_type (canvas_id, des) VALUES (1, 'Zoom')"))
        assert reset(engine) == migration_ids()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM lti_type")).scalar() == 0
        assert_schema_is_head(engine)
    finally:
        engine.dispose()
