"""Run a migration's own DDL for the database yoyo hands it.

Each file in ``db/migrations/`` is a frozen record of one schema change: it carries its own
SQL for MySQL/MariaDB, PostgreSQL and SQLite and never reads ``db/tables.py`` (which keeps
moving). This module only picks the right SQL for the connection and executes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yoyo import step

DIALECTS = ("mysql", "postgresql", "sqlite")


def dialect_of(dbapi_conn: Any) -> str:
    """The dialect name (mysql, postgresql, sqlite) of a raw DB-API connection."""
    module = type(dbapi_conn).__module__
    for prefix, name in (("pymysql", "mysql"), ("psycopg2", "postgresql"), ("sqlite3", "sqlite")):
        if module.startswith(prefix):
            return name
    raise RuntimeError(f"unsupported database driver {module}")


def statements(script: str) -> list[str]:
    """Split a ``;``-terminated SQL script (no semicolons inside literals) into statements."""
    return [s.strip() for s in script.split(";") if s.strip()]


def _runner(scripts: Mapping[str, str]):
    missing = set(DIALECTS) - set(scripts)
    if missing:
        raise ValueError(f"migration lacks SQL for {sorted(missing)}")

    def run(dbapi_conn: Any) -> None:
        cursor = dbapi_conn.cursor()
        try:
            for sql in statements(scripts[dialect_of(dbapi_conn)]):
                cursor.execute(sql)
        finally:
            cursor.close()

    return run


def dialect_step(apply: Mapping[str, str], rollback: Mapping[str, str]):
    """A yoyo step running ``apply[dialect]`` forwards and ``rollback[dialect]`` backwards."""
    return step(_runner(apply), _runner(rollback))


def same_for_all(script: str) -> dict[str, str]:
    """The same SQL for every dialect (plain DROP TABLE and the like)."""
    return dict.fromkeys(DIALECTS, script)
