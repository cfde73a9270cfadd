"""Writing DataFrames to the output database: atomic replace and idempotent upsert.

``replace_tables`` swaps in complete new contents for a set of tables so that a reader
sees either all of the old rows or all of the new ones, and any failure (an exception,
a lost connection, a killed process) leaves the old rows in place:

* MySQL/MariaDB: each table is bulk-loaded into ``<table>__new`` with ``LOAD DATA LOCAL
  INFILE``, then every table of the set is swapped by ONE ``RENAME TABLE`` statement
  (atomic; foreign keys of the new children follow their new parents) and the old
  tables are dropped.
* PostgreSQL: the same staging tables filled with ``COPY``, renamed and the old ones
  dropped inside one transaction (DDL is transactional there).
* SQLite: DELETE and INSERT in one transaction (WAL readers keep the old snapshot).

Both bulk paths read the same text format (tab-separated, ``\\N`` for NULL, backslash
escapes), written to a temporary file in chunks so memory stays near the DataFrame's.

``upsert_rows`` appends rows to incremental tables, updating rows whose key already
exists, so re-appending the same rows changes nothing. All tables given to one call are
written in one transaction.
"""

from __future__ import annotations

import csv
import logging
import os
import secrets
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from courseinv.db.tables import metadata
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.schema import AddConstraint, CreateIndex, CreateTable

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
UPSERT_CHUNK_ROWS = 5_000
LOCK_NAME = "course_inventory_publish"
LOCK_TIMEOUT_S = 600
NEW, OLD = "__new", "__old"


class PublishError(Exception):
    """A publish could not be done; the previous contents are untouched."""


# -- public API -------------------------------------------------------------------


def replace_tables(engine: Engine, frames: Mapping[str, pd.DataFrame]) -> dict[str, int]:
    """Atomically replace the whole contents of each named table with its DataFrame.

    Frames carry the table's columns (extra columns are an error, missing nullable
    columns become NULL); a surrogate ``id`` column absent from a frame is numbered
    1..n. Every table whose foreign key references a table of the set must be in the
    set too, since the old rows it references are going away. Returns rows per table.
    """
    tables = _tables_in_order(frames)
    _check_children_included(tables)
    prepared = {t.name: _conform(t, frames[t.name]) for t in tables}
    started = time.monotonic()
    backend = engine.dialect.name
    if backend in ("mysql", "mariadb"):
        _replace_mysql(engine, tables, prepared)
    elif backend == "postgresql":
        _replace_postgresql(engine, tables, prepared)
    elif backend == "sqlite":
        _replace_sqlite(engine, tables, prepared)
    else:
        raise PublishError(f"unsupported database {backend}")
    log.info(
        "Published %s in %.1f s",
        ", ".join(f"{t.name} ({len(prepared[t.name]):,} rows)" for t in tables),
        time.monotonic() - started,
    )
    return {t.name: len(prepared[t.name]) for t in tables}


def upsert_rows(engine: Engine, frames: Mapping[str, pd.DataFrame]) -> dict[str, int]:
    """Insert rows, updating those whose key (primary or unique) exists; one transaction.

    Returns the number of rows sent per table.
    """
    tables = _tables_in_order(frames)
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        for table in tables:
            frame = frames[table.name]
            for start in range(0, len(frame), UPSERT_CHUNK_ROWS):
                rows = _records(table, frame.iloc[start : start + UPSERT_CHUNK_ROWS])
                conn.execute(_upsert_statement(conn, table), rows)
            counts[table.name] = len(frame)
    return counts


# -- shared preparation -----------------------------------------------------------


def _tables_in_order(frames: Mapping[str, pd.DataFrame]) -> list[Table]:
    unknown = sorted(set(frames) - set(metadata.tables))
    if unknown:
        raise PublishError(f"unknown table(s): {', '.join(unknown)}")
    return [t for t in metadata.sorted_tables if t.name in frames]  # parents first


def _check_children_included(tables: list[Table]) -> None:
    names = {t.name for t in tables}
    for other in metadata.sorted_tables:
        if other.name in names:
            continue
        for fk in other.foreign_keys:
            if fk.column.table.name in names:
                raise PublishError(
                    f"replacing {fk.column.table.name} requires replacing {other.name} too "
                    "(it references the rows being replaced)"
                )


def _surrogate_id(table: Table) -> Column | None:
    pk = list(table.primary_key.columns)
    if len(pk) == 1 and pk[0].name == "id" and isinstance(pk[0].type, Integer):
        return pk[0]
    return None


def _conform(table: Table, frame: pd.DataFrame) -> pd.DataFrame:
    """Check columns against the table and order them as the table does."""
    extra = [c for c in frame.columns if c not in table.columns]
    if extra:
        raise PublishError(f"{table.name}: unknown column(s) {', '.join(map(str, extra))}")
    frame = frame.reset_index(drop=True)
    surrogate = _surrogate_id(table)
    if surrogate is not None and surrogate.name not in frame.columns:
        frame = frame.assign(**{surrogate.name: np.arange(1, len(frame) + 1, dtype="int64")})
    missing = [c.name for c in table.columns if c.name not in frame.columns]
    required = [name for name in missing if not table.columns[name].nullable]
    if required:
        raise PublishError(f"{table.name}: missing required column(s) {', '.join(required)}")
    for name in missing:
        frame[name] = None
    return frame[[c.name for c in table.columns]]


def _bulk_column(series: pd.Series, column: Column) -> pd.Series:
    """One column in a form ``to_csv`` writes in the bulk-load text format."""
    kind = column.type
    if isinstance(kind, Boolean):
        return series.astype("boolean").astype("Int8")
    if isinstance(kind, DateTime | Date):
        values = pd.to_datetime(series)
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        if type(kind) is Date:
            return values.dt.normalize()
        return values if _has_microseconds(column) else values.dt.floor("s")
    if isinstance(kind, Integer):
        return series.astype("Int64")
    if isinstance(kind, Float):
        return series.astype("float64")
    text = series.astype("string")
    if text.str.contains(r"[\\\t\n\r]", regex=True).any():
        text = (
            text.str.replace("\\", "\\\\", regex=False)
            .str.replace("\t", "\\t", regex=False)
            .str.replace("\n", "\\n", regex=False)
            .str.replace("\r", "\\r", regex=False)
        )
    return text


def _has_microseconds(column: Column) -> bool:
    variant = getattr(column.type, "_variant_mapping", {}).get("mysql")
    return bool(getattr(variant, "fsp", None))


def _write_text_file(table: Table, frame: pd.DataFrame, path: str) -> None:
    """Write ``frame`` as tab-separated text, ``\\N`` for NULL, CHUNK_ROWS at a time."""
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for start in range(0, len(frame), CHUNK_ROWS):
            chunk = frame.iloc[start : start + CHUNK_ROWS]
            converted = pd.DataFrame(
                {c.name: _bulk_column(chunk[c.name], c) for c in table.columns}
            )
            converted.to_csv(
                out,
                sep="\t",
                header=False,
                index=False,
                na_rep="\\N",
                quoting=csv.QUOTE_NONE,
                escapechar=None,
                lineterminator="\n",
                date_format="%Y-%m-%d %H:%M:%S.%f",
            )


@contextmanager
def _text_files(
    tables: list[Table], frames: Mapping[str, pd.DataFrame]
) -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="course-inventory-") as folder:
        paths = {}
        for table in tables:
            paths[table.name] = os.path.join(folder, f"{table.name}.tsv")
            _write_text_file(table, frames[table.name], paths[table.name])
        yield paths


def _stage_table(table: Table, staged: set[str], token: str, target: MetaData) -> Table:
    """A copy of ``table`` named ``<name>__new`` with constraint names unique to this run.

    Foreign keys to tables of the same publish point at their staging copies.
    """
    name = table.name + NEW
    columns = [c._copy() for c in table.columns]
    for c in columns:
        c.index = None
        c.unique = None
    pieces: list[Any] = [
        PrimaryKeyConstraint(
            *[c.name for c in table.primary_key.columns], name=f"pk_{name}_{token}"
        )
    ]
    for fk in table.foreign_key_constraints:
        parent = fk.referred_table.name
        ref_table = parent + NEW if parent in staged else parent
        if ref_table not in target.tables:  # a live parent: known to the new metadata too
            fk.referred_table.to_metadata(target)
        pieces.append(
            ForeignKeyConstraint(
                [c.name for c in fk.columns],
                [f"{ref_table}.{e.column.name}" for e in fk.elements],
                name=f"fk_{table.name}_{parent}_{token}"[:64],
            )
        )
    for uc in table.constraints:
        if isinstance(uc, UniqueConstraint):
            pieces.append(
                UniqueConstraint(*[c.name for c in uc.columns], name=f"uq_{name}_{token}"[:64])
            )
    staged_table = Table(name, target, *columns, *pieces, **table.kwargs)
    for i, index in enumerate(sorted(table.indexes, key=lambda x: x.name or "")):
        Index(f"ix_{name}_{i}_{token}"[:63], *[staged_table.c[c.name] for c in index.columns])
    return staged_table


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


# -- MySQL / MariaDB --------------------------------------------------------------


@contextmanager
def _mysql_lock(conn: Connection) -> Iterator[None]:
    # GET_LOCK names are server-wide: qualify with the database so unrelated
    # databases on one server do not wait for each other.
    name = f"{LOCK_NAME}.{conn.exec_driver_sql('SELECT DATABASE()').scalar()}"[:64]
    got = conn.execute(
        text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": LOCK_TIMEOUT_S}
    ).scalar()
    if got != 1:
        raise PublishError("another process is publishing to this database (lock timeout)")
    try:
        yield
    finally:
        conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})


def _drop_leftovers(conn: Connection, tables: list[Table], existing: set[str]) -> None:
    """Drop staging/old copies a killed run may have left (children first)."""
    for table in reversed(tables):
        for suffix in (NEW, OLD):
            if table.name + suffix in existing:
                conn.exec_driver_sql(f"DROP TABLE {_quote(conn, table.name + suffix)}")


def _existing(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _replace_mysql(engine: Engine, tables: list[Table], frames: Mapping[str, pd.DataFrame]) -> None:
    staged = {t.name for t in tables}
    token = secrets.token_hex(4)
    target = MetaData()
    stage = {t.name: _stage_table(t, staged, token, target) for t in tables}
    with _text_files(tables, frames) as paths, engine.connect() as conn, _mysql_lock(conn):
        conn.commit()
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        _drop_leftovers(conn, tables, _existing(conn))
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")
        try:
            for table in tables:
                conn.execute(CreateTable(stage[table.name]))
                for index in stage[table.name].indexes:
                    conn.execute(CreateIndex(index))
                # Row-by-row FK checks are the slow part of a load; one set-based check
                # per foreign key afterwards proves the same thing.
                conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
                _load_data_mysql(conn, stage[table.name], paths[table.name])
                conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")
                conn.commit()
            for table in tables:
                _check_foreign_keys(conn, stage[table.name])
            renames = [f"{_quote(conn, t.name)} TO {_quote(conn, t.name + OLD)}" for t in tables]
            renames += [f"{_quote(conn, t.name + NEW)} TO {_quote(conn, t.name)}" for t in tables]
            conn.exec_driver_sql("RENAME TABLE " + ", ".join(renames))
        except BaseException:
            _cleanup_quietly(conn, tables)
            raise
        for table in reversed(tables):
            conn.exec_driver_sql(f"DROP TABLE {_quote(conn, table.name + OLD)}")
        conn.commit()


def _load_data_mysql(conn: Connection, table: Table, path: str) -> None:
    columns = ", ".join(_quote(conn, c.name) for c in table.columns)
    # Session time zone UTC so DATETIME text is stored as given.
    conn.exec_driver_sql("SET time_zone = '+00:00'")
    conn.exec_driver_sql(
        f"LOAD DATA LOCAL INFILE %s INTO TABLE {_quote(conn, table.name)} "
        "CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' "
        f"LINES TERMINATED BY '\\n' ({columns})",
        (path,),
    )
    # LOCAL implies IGNORE: bad rows only warn. Treat any warning as a failed load.
    warnings = conn.exec_driver_sql("SHOW COUNT(*) WARNINGS").scalar()
    if warnings:
        first = conn.exec_driver_sql("SHOW WARNINGS LIMIT 3").fetchall()
        raise PublishError(
            f"loading {table.name.removesuffix(NEW)} gave {warnings} warning(s), e.g. "
            + "; ".join(str(w[2]) for w in first)
        )


def _check_foreign_keys(conn: Connection, table: Table) -> None:
    """Raise if any row of ``table`` references a parent row that does not exist."""
    for fk in table.foreign_key_constraints:
        parent = fk.referred_table
        on = " AND ".join(
            f"p.{_quote(conn, e.column.name)} = c.{_quote(conn, e.parent.name)}"
            for e in fk.elements
        )
        not_null = " AND ".join(f"c.{_quote(conn, c.name)} IS NOT NULL" for c in fk.columns)
        orphan = conn.exec_driver_sql(
            f"SELECT {', '.join('c.' + _quote(conn, c.name) for c in fk.columns)} "
            f"FROM {_quote(conn, table.name)} c WHERE {not_null} AND NOT EXISTS "
            f"(SELECT 1 FROM {_quote(conn, parent.name)} p WHERE {on}) LIMIT 1"
        ).first()
        if orphan is not None:
            raise PublishError(
                f"{table.name.removesuffix(NEW)}: {', '.join(c.name for c in fk.columns)} "
                f"{tuple(orphan)} references a missing {parent.name.removesuffix(NEW)} row"
            )


def _cleanup_quietly(conn: Connection, tables: list[Table]) -> None:
    try:
        conn.rollback()
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        for table in reversed(tables):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_quote(conn, table.name + NEW)}")
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")
        conn.commit()
    except Exception:  # the connection may be gone; the next publish cleans up
        log.debug("Could not drop staging tables after a failed publish", exc_info=True)


# -- PostgreSQL -------------------------------------------------------------------


def _replace_postgresql(
    engine: Engine, tables: list[Table], frames: Mapping[str, pd.DataFrame]
) -> None:
    staged = {t.name for t in tables}
    token = secrets.token_hex(4)
    target = MetaData()
    stage = {t.name: _stage_table(t, staged, token, target) for t in tables}
    lock_key = zlib.crc32(LOCK_NAME.encode())
    with _text_files(tables, frames) as paths, engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key})
        _drop_leftovers(conn, tables, _existing(conn))
        for table in tables:
            conn.execute(CreateTable(stage[table.name], include_foreign_key_constraints=[]))
            _copy_postgresql(conn, stage[table.name], paths[table.name])
            for index in stage[table.name].indexes:
                conn.execute(CreateIndex(index))
        for table in tables:  # validated in one pass each, not by a trigger per row
            for fk in stage[table.name].foreign_key_constraints:
                conn.execute(AddConstraint(fk))
        for table in tables:
            conn.exec_driver_sql(
                f"ALTER TABLE {_quote(conn, table.name)} RENAME TO {_quote(conn, table.name + OLD)}"
            )
            conn.exec_driver_sql(
                f"ALTER TABLE {_quote(conn, table.name + NEW)} RENAME TO {_quote(conn, table.name)}"
            )
        for table in reversed(tables):
            conn.exec_driver_sql(f"DROP TABLE {_quote(conn, table.name + OLD)}")
        _reset_sequences(conn, tables)


def _copy_postgresql(conn: Connection, table: Table, path: str) -> None:
    columns = ", ".join(_quote(conn, c.name) for c in table.columns)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        with open(path, encoding="utf-8") as data:
            cursor.copy_expert(
                f"COPY {_quote(conn, table.name)} ({columns}) FROM STDIN WITH (FORMAT text)", data
            )
    finally:
        cursor.close()


def _reset_sequences(conn: Connection, tables: list[Table]) -> None:
    """Point serial sequences past the ids just loaded."""
    for table in tables:
        if _surrogate_id(table) is None:
            continue
        name = _quote(conn, table.name)
        conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
            f"COALESCE((SELECT MAX(id) FROM {name}), 0) + 1, false)"
        )


# -- SQLite -----------------------------------------------------------------------


def _replace_sqlite(
    engine: Engine, tables: list[Table], frames: Mapping[str, pd.DataFrame]
) -> None:
    with engine.begin() as conn:
        for table in reversed(tables):
            conn.execute(table.delete())
        for table in tables:
            frame = frames[table.name]
            for start in range(0, len(frame), CHUNK_ROWS):
                conn.execute(
                    table.insert(), _records(table, frame.iloc[start : start + CHUNK_ROWS])
                )


# -- upsert -----------------------------------------------------------------------


def _column_values(series: pd.Series) -> np.ndarray:
    """A column as Python objects (datetimes naive UTC), with None for every null."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(series.dtype):
        values = np.array(series.dt.to_pydatetime(), dtype=object)
    else:
        values = series.astype(object).to_numpy(copy=True)
    values[series.isna().to_numpy()] = None
    return values


def _records(table: Table, frame: pd.DataFrame) -> list[dict[str, Any]]:
    names = [str(c) for c in frame.columns]
    columns = [_column_values(frame[name]) for name in frame.columns]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _conflict_columns(table: Table) -> list[str]:
    """The key rows are matched on: the table's unique constraint for surrogate-id tables."""
    if _surrogate_id(table) is not None:
        for uc in table.constraints:
            if isinstance(uc, UniqueConstraint):
                return [c.name for c in uc.columns]
    return [c.name for c in table.primary_key.columns]


def _upsert_statement(conn: Connection, table: Table) -> Any:
    key = _conflict_columns(table)
    surrogate = _surrogate_id(table)
    update = [
        c.name
        for c in table.columns
        if c.name not in key and (surrogate is None or c is not surrogate)
    ]
    name = conn.dialect.name
    if name in ("mysql", "mariadb"):
        stmt = mysql.insert(table)
        # Nothing to update (every column is key): a no-op assignment keeps the row.
        assignments = {c: stmt.inserted[c] for c in update} or {key[0]: table.c[key[0]]}
        return stmt.on_duplicate_key_update(assignments)
    dialect_insert = postgresql.insert if name == "postgresql" else sqlite.insert
    stmt = dialect_insert(table)
    if not update:
        return stmt.on_conflict_do_nothing(index_elements=key)
    return stmt.on_conflict_do_update(
        index_elements=key, set_={c: stmt.excluded[c] for c in update}
    )
