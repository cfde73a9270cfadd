"""Run a migration's own DDL for the database yoyo hands it, skipping what already exists.

Each file in ``db/migrations/`` is a frozen record of one schema change: it carries its own
SQL for MySQL/MariaDB, PostgreSQL and SQLite and never reads ``db/tables.py`` (which keeps
moving). This module picks the right SQL for the connection and executes it.

Re-running a step is harmless: MySQL commits every DDL statement on its own and yoyo records
a migration only after its steps, so a killed migrate can leave part (or all) of a migration
applied but unrecorded. Before each statement the live schema is asked whether its effect is
already there; if so the statement is skipped:

* ``CREATE TABLE t``            skipped when table ``t`` exists
* ``CREATE [UNIQUE] INDEX i ON t`` skipped when index ``i`` exists on ``t``
* ``ALTER TABLE t ADD COLUMN c ...[, ADD COLUMN d ...]`` skipped when every column exists
* ``ALTER TABLE t DROP COLUMN c``  skipped when ``c`` is gone
* ``DROP INDEX i [ON t]``        skipped when index ``i`` is gone
* ``... IF [NOT] EXISTS`` statements are idempotent already.

Each of those statements is atomic on every supported database, so "exists" means "done".
Any other statement (an ``UPDATE`` backfill, say) runs again and must be written to be
idempotent (``... WHERE new_column IS NULL``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from yoyo import step

DIALECTS = ("mysql", "postgresql", "sqlite")

_NAME = r'[`"]?(\w+)[`"]?'
_CREATE_TABLE = re.compile(rf"^CREATE\s+TABLE\s+(?!IF\s+NOT\s+EXISTS){_NAME}", re.I)
_CREATE_INDEX = re.compile(
    rf"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?!IF\s+NOT\s+EXISTS){_NAME}\s+ON\s+{_NAME}", re.I
)
_ALTER_TABLE = re.compile(rf"^ALTER\s+TABLE\s+{_NAME}\s+(.*)$", re.I | re.S)
_ADD_COLUMN = re.compile(rf"^ADD\s+(?:COLUMN\s+)?{_NAME}\b", re.I)
_DROP_COLUMN = re.compile(rf"^DROP\s+(?:COLUMN\s+)?{_NAME}\s*$", re.I)
_DROP_INDEX = re.compile(rf"^DROP\s+INDEX\s+(?!IF\s+EXISTS){_NAME}(?:\s+ON\s+{_NAME})?\s*$", re.I)


class UnsafeRerun(Exception):
    """A statement was found half-applied, which its atomicity should make impossible."""


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


def _split_clauses(body: str) -> list[str]:
    """The comma-separated clauses of an ALTER TABLE body (commas inside parentheses kept)."""
    clauses, depth, current = [], 0, []
    for char in body:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            clauses.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    clauses.append("".join(current).strip())
    return [c for c in clauses if c]


class Schema:
    """What exists in the database a raw DB-API connection points at."""

    def __init__(self, dbapi_conn: Any) -> None:
        self.conn = dbapi_conn
        self.dialect = dialect_of(dbapi_conn)

    def _rows(self, sql: str, *params: Any) -> list[tuple]:
        if self.dialect != "sqlite":
            sql = sql.replace("?", "%s")
        cursor = self.conn.cursor()
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def has_table(self, table: str) -> bool:
        if self.dialect == "sqlite":
            sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        elif self.dialect == "mysql":
            sql = ("SELECT 1 FROM information_schema.tables "
                   "WHERE table_schema = DATABASE() AND table_name = ?")  # fmt: skip
        else:
            sql = ("SELECT 1 FROM information_schema.tables "
                   "WHERE table_schema = current_schema() AND table_name = ?")  # fmt: skip
        return bool(self._rows(sql, table))

    def has_index(self, index: str, table: str | None) -> bool:
        if self.dialect == "sqlite":
            return bool(self._rows("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                                   index))  # fmt: skip
        if self.dialect == "mysql":
            sql = ("SELECT 1 FROM information_schema.statistics WHERE table_schema = DATABASE() "
                   "AND index_name = ?")  # fmt: skip
            params: tuple = (index,)
            if table:
                sql, params = sql + " AND table_name = ?", (index, table)
            return bool(self._rows(sql, *params))
        return bool(self._rows(
            "SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = ?", index
        ))  # fmt: skip

    def columns(self, table: str) -> set[str]:
        if self.dialect == "sqlite":
            return {row[1] for row in self._rows(f'PRAGMA table_info("{table}")')}
        schema = "DATABASE()" if self.dialect == "mysql" else "current_schema()"
        sql = (f"SELECT column_name FROM information_schema.columns "
               f"WHERE table_schema = {schema} AND table_name = ?")  # fmt: skip
        return {row[0] for row in self._rows(sql, table)}


def already_done(schema: Schema, sql: str) -> bool:
    """Whether the effect of this DDL statement is already in the database."""
    flat = " ".join(sql.split())
    if m := _CREATE_TABLE.match(flat):
        return schema.has_table(m.group(1))
    if m := _CREATE_INDEX.match(flat):
        return schema.has_index(m.group(1), m.group(2))
    if m := _DROP_INDEX.match(flat):
        return not schema.has_index(m.group(1), m.group(2))
    if m := _ALTER_TABLE.match(flat):
        return _alter_done(schema, m.group(1), _split_clauses(m.group(2)), sql)
    return False


def _alter_done(schema: Schema, table: str, clauses: list[str], sql: str) -> bool:
    adds = [_ADD_COLUMN.match(c) for c in clauses]
    drops = [_DROP_COLUMN.match(c) for c in clauses]
    if all(adds):
        wanted = {m.group(1) for m in adds if m}
        done = wanted & schema.columns(table)
    elif all(drops):
        wanted = {m.group(1) for m in drops if m}
        done = wanted - schema.columns(table)
    else:
        return False  # another kind of ALTER: runs as written
    if done and done != wanted:
        raise UnsafeRerun(
            f"half-applied statement (done: {sorted(done)} of {sorted(wanted)}): {sql[:200]}"
        )
    return bool(done)


def _runner(scripts: Mapping[str, str]):
    missing = set(DIALECTS) - set(scripts)
    if missing:
        raise ValueError(f"migration lacks SQL for {sorted(missing)}")

    def run(dbapi_conn: Any) -> None:
        schema = Schema(dbapi_conn)
        cursor = dbapi_conn.cursor()
        try:
            for sql in statements(scripts[schema.dialect]):
                if not already_done(schema, sql):
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
