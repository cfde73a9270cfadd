"""Migrations create exactly the schema of db/tables.py on every database."""

from __future__ import annotations

import subprocess
import sys

import pytest
from courseinv.db.engine import make_engine
from courseinv.db.migrate import migrate, reset
from courseinv.db.tables import APP_TABLES
from sqlalchemy import Engine, inspect, text

pytestmark = pytest.mark.parametrize(
    "database_url", ["sqlite", "mariadb", "postgres"], indirect=True
)


def assert_schema_matches_metadata(engine: Engine) -> None:
    insp = inspect(engine)
    present = set(insp.get_table_names())
    for table in APP_TABLES:
        assert table.name in present, table.name
        columns = {c["name"]: c for c in insp.get_columns(table.name)}
        assert list(columns) == [c.name for c in table.columns], table.name
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, (table.name, column.name)
        pk = insp.get_pk_constraint(table.name)["constrained_columns"]
        assert pk == [c.name for c in table.primary_key.columns], table.name
        fks = {
            (tuple(fk["constrained_columns"]), fk["referred_table"])
            for fk in insp.get_foreign_keys(table.name)
        }
        expected = {
            (tuple(c.name for c in fk.columns), fk.referred_table.name)
            for fk in table.foreign_key_constraints
        }
        assert fks == expected, table.name


def test_fresh_then_repeated_migration(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert migrate(engine) == ["0001.initial_schema"]
        assert_schema_matches_metadata(engine)
        assert migrate(engine) == []  # a no-op the second time
        if engine.dialect.name == "mysql":
            with engine.connect() as conn:
                collation = conn.execute(
                    text(
                        "SELECT TABLE_COLLATION FROM information_schema.TABLES "
                        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'course'"
                    )
                ).scalar()
                assert collation.startswith("utf8mb4")
                fsp = conn.execute(
                    text(
                        "SELECT DATETIME_PRECISION FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                        "AND TABLE_NAME = 'mivideo_media_started_hourly' AND COLUMN_NAME = 'event_time_utc_latest'"
                    )
                ).scalar()
                assert fsp == 6
    finally:
        engine.dispose()


def test_concurrent_migrations_apply_once(database_url: str) -> None:
    code = (
        "import sys; from db.engine import make_engine; from db.migrate import migrate; "
        "print(len(migrate(make_engine(sys.argv[1]))))"
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
    assert sorted(int(o[0].strip()) for o in outputs) == [0, 0, 1]
    engine = make_engine(database_url)
    try:
        assert_schema_matches_metadata(engine)
    finally:
        engine.dispose()


def test_reset_empties_tables_and_reapplies(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO lti_type (canvas_id, des) VALUES (1, 'Zoom')"))
        assert reset(engine) == ["0001.initial_schema"]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM lti_type")).scalar() == 0
        assert_schema_matches_metadata(engine)
    finally:
        engine.dispose()
