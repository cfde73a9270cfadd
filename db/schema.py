"""DDL for migrations: render ``db/tables.py`` for the database behind a DB-API connection.

yoyo hands Python migrations a raw DB-API connection; these helpers find its dialect
and execute the CREATE/DROP statements SQLAlchemy compiles for it.
"""

from __future__ import annotations

from typing import Any

from courseinv.db.tables import metadata
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable, DropTable


def dialect_of(dbapi_conn: Any) -> Dialect:
    module = type(dbapi_conn).__module__
    if module.startswith("pymysql"):
        return mysql.dialect()
    if module.startswith("psycopg2"):
        return postgresql.dialect()
    if module.startswith("sqlite3"):
        return sqlite.dialect()
    raise RuntimeError(f"unsupported database driver {module}")


def create_tables(dbapi_conn: Any, names: list[str]) -> None:
    dialect = dialect_of(dbapi_conn)
    cursor = dbapi_conn.cursor()
    for name in names:
        table = metadata.tables[name]
        cursor.execute(str(CreateTable(table).compile(dialect=dialect)))
        for index in sorted(table.indexes, key=lambda i: i.name or ""):
            cursor.execute(str(CreateIndex(index).compile(dialect=dialect)))
    cursor.close()


def drop_tables(dbapi_conn: Any, names: list[str]) -> None:
    dialect = dialect_of(dbapi_conn)
    cursor = dbapi_conn.cursor()
    for name in reversed(names):
        cursor.execute(
            str(DropTable(metadata.tables[name], if_exists=True).compile(dialect=dialect))
        )
    cursor.close()
