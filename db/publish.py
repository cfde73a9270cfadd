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
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from courseinv.db import interrupts
from courseinv.db.locks import lock_key, mysql_lock_name, pid_alive, poll
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
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import NoSuchTableError, OperationalError
from sqlalchemy.schema import AddConstraint, CreateIndex, CreateTable

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
UPSERT_CHUNK_ROWS = 5_000
LOCK_NAME = "course_inventory_publish"
NEW, OLD = "__new", "__old"
TEMP_PARENT = "course-inventory-{uid}"  # under the system temp folder, 0700
BACKOFF_SECONDS = 1.0  # first pause between swap attempts; doubles each time
STALE_TEMP_S = 86_400  # a bulk-load folder this old belongs to no running publish


class PublishError(Exception):
    """A publish could not be done; the previous contents are untouched."""


class ShrinkRefused(PublishError):
    """A table would become empty or lose more rows than the policy allows."""


@dataclass(frozen=True)
class PublishPolicy:
    """How careful a replace is. The defaults are what an unconfigured caller gets."""

    max_shrink: float = 0.5  # refuse losing more than this fraction of a table's rows
    allow_shrink: bool = False  # ... unless allowed (``run --allow-shrink``, ALLOW_SHRINK)
    lock_wait_seconds: int = 10  # per attempt: the swap/cleanup waiting for readers' locks
    swap_attempts: int = 3  # attempts of the swap, with backoff in between
    publish_lock_wait_seconds: float = 600  # another publish of the same tables

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, allow_shrink: bool = False) -> PublishPolicy:
        defaults = cls()
        return cls(
            max_shrink=float(config.get("MAX_SHRINK_FRACTION", defaults.max_shrink)),
            allow_shrink=allow_shrink or bool(config.get("ALLOW_SHRINK", False)),
            lock_wait_seconds=int(config.get("SWAP_LOCK_WAIT_SECONDS", defaults.lock_wait_seconds)),
            swap_attempts=int(config.get("SWAP_ATTEMPTS", defaults.swap_attempts)),
        )


# -- public API -------------------------------------------------------------------


def replace_tables(
    engine: Engine,
    frames: Mapping[str, pd.DataFrame],
    *,
    policy: PublishPolicy | None = None,
    on_swapped: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, int]:
    """Atomically replace the whole contents of each named table with its DataFrame.

    Frames carry the table's columns (extra columns are an error, missing nullable
    columns become NULL); a surrogate ``id`` column absent from a frame is numbered
    1..n. Every table whose foreign key references a table of the set must be in the
    set too, since the old rows it references are going away. Before anything is
    written, the live tables must have exactly the columns of ``db/tables.py`` and none
    may shrink past ``policy``. ``on_swapped(rows per table)`` is called the moment the
    new contents are committed, before the old tables are dropped; nothing after that
    point raises except a signal. Returns rows per table.
    """
    policy = policy or PublishPolicy()
    tables = _tables_in_order(frames)
    _check_children_included(tables)
    prepared = {t.name: _conform(t, frames[t.name]) for t in tables}
    counts = {t.name: len(prepared[t.name]) for t in tables}
    replace = {
        "mysql": _replace_mysql,
        "mariadb": _replace_mysql,
        "postgresql": _replace_postgresql,
        "sqlite": _replace_sqlite,
    }.get(engine.dialect.name)
    if replace is None:
        raise PublishError(f"unsupported database {engine.dialect.name}")
    started = time.monotonic()

    def swapped() -> None:
        log.info(
            "Published %s in %.1f s",
            ", ".join(f"{name} ({rows:,} rows)" for name, rows in counts.items()),
            time.monotonic() - started,
        )
        if on_swapped is not None:
            on_swapped(dict(counts))

    replace(engine, tables, prepared, policy, swapped)
    return counts


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


def _text_files(
    tables: list[Table], frames: Mapping[str, pd.DataFrame], folder: Path
) -> dict[str, str]:
    paths = {}
    for table in tables:
        paths[table.name] = str(folder / f"{table.name}.tsv")
        _write_text_file(table, frames[table.name], paths[table.name])
    return paths


@contextmanager
def private_temp_dir() -> Iterator[Path]:
    """A fresh 0700 folder for bulk-load files, removed on exit.

    It lives in ``<tmp>/course-inventory-<uid>/`` (0700 too); folders there of processes
    that are gone (killed) are removed first, so leftovers never accumulate.
    """
    parent = _private_parent()
    _sweep_dead(parent)
    folder = Path(tempfile.mkdtemp(prefix=f"publish-{os.getpid()}-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _private_parent() -> Path:
    uid = os.geteuid()
    parent = Path(tempfile.gettempdir()) / TEMP_PARENT.format(uid=uid)
    with suppress(FileExistsError):
        parent.mkdir(mode=0o700)
    info = parent.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o077:
        raise PublishError(f"{parent} is not a private folder of this user: remove it")
    return parent


def _sweep_dead(parent: Path) -> None:
    for child in parent.iterdir():
        match = re.fullmatch(r"publish-(\d+)-\w+", child.name)
        if match is None:
            continue
        try:
            stale = time.time() - child.lstat().st_mtime > STALE_TEMP_S
        except FileNotFoundError:
            continue
        if stale or not pid_alive(int(match[1])):
            log.info("Removing %s, left by a publish that did not finish", child)
            shutil.rmtree(child, ignore_errors=True)


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


# -- checks before anything is written --------------------------------------------


def _check_live_tables(
    conn: Connection, tables: list[Table], frames: Mapping[str, pd.DataFrame], policy: PublishPolicy
) -> None:
    """The live tables have exactly the code's columns, and none shrinks past the policy.

    A staging table is built from ``db/tables.py``: were the live table different (a
    migration not applied), the swap would silently change the schema.
    """
    inspector = inspect(conn)
    for table in tables:
        try:
            live = [c["name"] for c in inspector.get_columns(table.name)]
        except NoSuchTableError:
            raise PublishError(
                f"{table.name}: no such table in the database; apply the migrations "
                "(course-inventory migrate)"
            ) from None
        expected = [c.name for c in table.columns]
        if set(live) != set(expected):
            lacking = sorted(set(expected) - set(live))
            unknown = sorted(set(live) - set(expected))
            raise PublishError(
                f"{table.name}: the database table does not match db/tables.py "
                f"(lacks {', '.join(lacking) or 'nothing'}; has unknown "
                f"{', '.join(unknown) or 'nothing'}); nothing was written. Apply the "
                "migrations (course-inventory migrate) or fix db/tables.py"
            )
    _check_shrink(conn, tables, frames, policy)


def _check_shrink(
    conn: Connection, tables: list[Table], frames: Mapping[str, pd.DataFrame], policy: PublishPolicy
) -> None:
    if policy.allow_shrink:
        return
    refused = []
    for table in tables:
        old = int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)
        new = len(frames[table.name])
        if old and (new == 0 or new < old * (1 - policy.max_shrink)):
            refused.append(f"{table.name} would go from {old:,} to {new:,} rows")
    if refused:
        raise ShrinkRefused(
            f"refusing to publish: {'; '.join(refused)} (more than "
            f"{policy.max_shrink:.0%} fewer rows, or empty; MAX_SHRINK_FRACTION). The previous "
            "tables were kept. If this is expected, run again with --allow-shrink "
            "(or set ALLOW_SHRINK: true)"
        )


def _stage_names(tables: list[Table]) -> set[str]:
    return {t.name + suffix for t in tables for suffix in (NEW, OLD)}


def _existing(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _drop_leftovers(conn: Connection, tables: list[Table], existing: set[str]) -> None:
    """Drop staging/old copies a killed run may have left (children first)."""
    for table in reversed(tables):
        for suffix in (NEW, OLD):
            if table.name + suffix in existing:
                log.info("Dropping %s, left by an earlier publish", table.name + suffix)
                conn.exec_driver_sql(f"DROP TABLE {_quote(conn, table.name + suffix)}")


def _swapped_after_all(engine: Engine, tables: list[Table]) -> bool:
    """Whether a swap whose outcome is unknown (lost connection) committed.

    Leftovers were dropped before the swap, so ``<table>__old`` exists only if it did.
    """
    try:
        with engine.connect() as conn:
            existing = _existing(conn)
    except Exception:
        log.debug("Could not check the outcome of the swap", exc_info=True)
        return False
    return all(t.name + OLD in existing for t in tables) and not any(
        t.name + NEW in existing for t in tables
    )


def _drop_old(engine: Engine, conn: Connection, tables: list[Table], policy: PublishPolicy) -> None:
    """Drop the replaced tables: on ``conn``, else on a fresh connection, else later."""
    try:
        _drop_old_on(conn, tables, policy)
        return
    except Exception as exc:
        log.info("Dropping the old tables failed (%s); trying a new connection", _first_line(exc))
        with suppress(Exception):
            conn.invalidate()
    try:
        with engine.connect() as fresh:
            _drop_old_on(fresh, tables, policy)
    except Exception as exc:
        log.warning(
            "The new tables are live, but the old copies (%s) could not be dropped: %s. "
            "The next publish drops them.",
            ", ".join(t.name + OLD for t in tables),
            _first_line(exc),
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _drop_old_on(conn: Connection, tables: list[Table], policy: PublishPolicy) -> None:
    with _lock_waits_bounded(conn, policy):
        existing = _existing(conn)
        for table in reversed(tables):
            if table.name + OLD in existing:
                conn.exec_driver_sql(f"DROP TABLE {_quote(conn, table.name + OLD)}")
        conn.commit()


@contextmanager
def _lock_waits_bounded(conn: Connection, policy: PublishPolicy) -> Iterator[None]:
    """This session gives up waiting for other sessions' table locks after the bound.

    The setting is undone afterwards (pooled connections serve others next); a
    connection where that fails is discarded.
    """
    seconds = max(1, int(policy.lock_wait_seconds))
    mysql_like = conn.dialect.name in ("mysql", "mariadb")
    if mysql_like:
        conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {seconds}")
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET lock_timeout = '{seconds * 1000}ms'")
        conn.commit()
    try:
        yield
    finally:
        try:
            if mysql_like:
                conn.exec_driver_sql("SET SESSION lock_wait_timeout = DEFAULT")
            elif conn.dialect.name == "postgresql":
                conn.rollback()
                conn.exec_driver_sql("RESET lock_timeout")
                conn.commit()
        except Exception:
            with suppress(Exception):
                conn.invalidate()


def _is_lock_timeout(exc: BaseException) -> bool:
    """MySQL/MariaDB error 1205 or PostgreSQL SQLSTATE 55P03: a lock wait ran out."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    if getattr(orig, "pgcode", None) == "55P03":
        return True
    args = getattr(orig, "args", ())
    return bool(args) and args[0] == 1205


def _swap_with_retries(
    conn: Connection, tables: list[Table], policy: PublishPolicy, swap: Callable[[], None]
) -> None:
    """Run ``swap``; when it times out waiting for readers' locks, retry with backoff."""
    attempts = max(1, policy.swap_attempts)
    for attempt in range(1, attempts + 1):
        try:
            swap()
            return
        except OperationalError as exc:
            if not _is_lock_timeout(exc):
                raise
            if attempt == attempts:
                names = ", ".join(t.name for t in tables)
                raise PublishError(
                    f"the swap of {names} waited {attempts} times {policy.lock_wait_seconds} s "
                    "for readers' locks (SWAP_LOCK_WAIT_SECONDS, SWAP_ATTEMPTS) and gave up; "
                    "the previous tables were kept"
                ) from None
            pause = BACKOFF_SECONDS * 2 ** (attempt - 1)
            log.warning(
                "The swap waited %s s for readers' locks (attempt %d of %d); retrying in %.0f s",
                policy.lock_wait_seconds, attempt, attempts, pause,
            )  # fmt: skip
            time.sleep(pause)


# -- MySQL / MariaDB --------------------------------------------------------------


@contextmanager
def _mysql_lock(conn: Connection, tables: list[Table], wait_seconds: float) -> Iterator[None]:
    """One publish of these tables at a time (GET_LOCK is server-wide: name the database)."""
    database = conn.exec_driver_sql("SELECT DATABASE()").scalar() or ""
    name = mysql_lock_name(LOCK_NAME, database, ",".join(t.name for t in tables))
    got = conn.execute(
        text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": wait_seconds}
    ).scalar()
    if got != 1:
        raise PublishError(
            f"another process is publishing {', '.join(t.name for t in tables)} "
            f"(waited {wait_seconds:g} s for it)"
        )
    try:
        yield
    finally:
        with suppress(Exception):  # a lost connection released it already
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})


def _replace_mysql(
    engine: Engine,
    tables: list[Table],
    frames: Mapping[str, pd.DataFrame],
    policy: PublishPolicy,
    swapped: Callable[[], None],
) -> None:
    stage = _stage_tables(tables)
    with (
        engine.connect() as conn,
        _lock_waits_bounded(conn, policy),
        _mysql_lock(conn, tables, policy.publish_lock_wait_seconds),
    ):
        _check_live_tables(conn, tables, frames, policy)
        conn.commit()
        swapping = False
        try:
            with private_temp_dir() as folder:
                paths = _text_files(tables, frames, folder)
                _with_fk_checks_off(conn, lambda: _drop_leftovers(conn, tables, _existing(conn)))
                _load_mysql_stages(conn, tables, stage, paths)
            swapping = True
            _swap_with_retries(conn, tables, policy, lambda: _rename_mysql(conn, tables))
        except BaseException:
            if not (swapping and _swapped_after_all(engine, tables)):
                _drop_staging_mysql(engine, conn, tables, policy)
                raise
            log.warning("The connection failed during the swap, which had committed")
        swapped()
        _drop_old(engine, conn, tables, policy)


def _with_fk_checks_off(conn: Connection, action: Callable[[], None]) -> None:
    """Run ``action`` without row-by-row FK checks (a failure discards the connection)."""
    conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
    action()
    conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")


def _load_mysql_stages(
    conn: Connection, tables: list[Table], stage: Mapping[str, Table], paths: Mapping[str, str]
) -> None:
    for table in tables:
        conn.execute(CreateTable(stage[table.name]))
        for index in stage[table.name].indexes:
            conn.execute(CreateIndex(index))
        # Row-by-row FK checks are the slow part of a load; one set-based check
        # per foreign key afterwards proves the same thing.
        _with_fk_checks_off(
            conn, lambda t=table: _load_data_mysql(conn, stage[t.name], paths[t.name])
        )
        conn.commit()
    for table in tables:
        _check_foreign_keys(conn, stage[table.name])


def _rename_mysql(conn: Connection, tables: list[Table]) -> None:
    """ONE statement: every table of the set swaps at once (foreign keys follow)."""
    renames = [f"{_quote(conn, t.name)} TO {_quote(conn, t.name + OLD)}" for t in tables]
    renames += [f"{_quote(conn, t.name + NEW)} TO {_quote(conn, t.name)}" for t in tables]
    conn.exec_driver_sql("RENAME TABLE " + ", ".join(renames))


def _drop_staging_mysql(
    engine: Engine, conn: Connection, tables: list[Table], policy: PublishPolicy
) -> None:
    """Drop this publish's staging tables after a failure, on a fresh connection.

    The failed connection may be mid-protocol (a signal during LOAD DATA): it is closed,
    which also ends its statement. The publish lock guards against dropping the staging
    tables of a publish that started since; when it cannot be had, the next publish
    cleans up.
    """
    with suppress(Exception):
        conn.invalidate()
    try:
        with (
            engine.connect() as fresh,
            _lock_waits_bounded(fresh, policy),
            _mysql_lock(fresh, tables, policy.lock_wait_seconds),
        ):
            fresh.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
            for table in reversed(tables):
                fresh.exec_driver_sql(f"DROP TABLE IF EXISTS {_quote(fresh, table.name + NEW)}")
            fresh.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")
            fresh.commit()
    except Exception as exc:
        log.warning("Could not drop the staging tables (the next publish will): %s", exc)


def _load_data_mysql(conn: Connection, table: Table, path: str) -> None:
    columns = ", ".join(_quote(conn, c.name) for c in table.columns)
    # Session time zone UTC so DATETIME text is stored as given.
    conn.exec_driver_sql("SET time_zone = '+00:00'")
    with interrupts.critical():  # PyMySQL must finish the upload it started
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


def _stage_tables(tables: list[Table]) -> dict[str, Table]:
    staged = {t.name for t in tables}
    token = secrets.token_hex(4)
    target = MetaData()
    return {t.name: _stage_table(t, staged, token, target) for t in tables}


# -- PostgreSQL -------------------------------------------------------------------


def _replace_postgresql(
    engine: Engine,
    tables: list[Table],
    frames: Mapping[str, pd.DataFrame],
    policy: PublishPolicy,
    swapped: Callable[[], None],
) -> None:
    """Staging, swap and sequences in ONE transaction (DDL is transactional): any
    failure, a lost connection included, rolls all of it back."""
    stage = _stage_tables(tables)
    with engine.connect() as conn, _lock_waits_bounded(conn, policy):
        swapping = False
        try:
            with conn.begin():
                _postgres_lock(conn, tables, policy.publish_lock_wait_seconds)
                _check_live_tables(conn, tables, frames, policy)
                with private_temp_dir() as folder:
                    paths = _text_files(tables, frames, folder)
                    _drop_leftovers(conn, tables, _existing(conn))
                    _load_postgres_stages(conn, tables, stage, paths)
                swapping = True
                _swap_with_retries(conn, tables, policy, lambda: _rename_postgres(conn, tables))
                _reset_sequences(conn, tables)
        except BaseException:
            if not (swapping and _swapped_after_all(engine, tables)):
                raise
            log.warning("The connection failed while committing the swap, which had committed")
        swapped()
        _drop_old(engine, conn, tables, policy)


def _postgres_lock(conn: Connection, tables: list[Table], wait_seconds: float) -> None:
    """One publish of these tables at a time; held until the transaction ends."""
    key = lock_key(LOCK_NAME, *(t.name for t in tables))
    statement = text("SELECT pg_try_advisory_xact_lock(:k)")
    if not poll(lambda: bool(conn.execute(statement, {"k": key}).scalar()), wait_seconds):
        raise PublishError(
            f"another process is publishing {', '.join(t.name for t in tables)} "
            f"(waited {wait_seconds:g} s for it)"
        )


def _load_postgres_stages(
    conn: Connection, tables: list[Table], stage: Mapping[str, Table], paths: Mapping[str, str]
) -> None:
    for table in tables:
        conn.execute(CreateTable(stage[table.name], include_foreign_key_constraints=[]))
        _copy_postgresql(conn, stage[table.name], paths[table.name])
        for index in stage[table.name].indexes:
            conn.execute(CreateIndex(index))
    for table in tables:  # validated in one pass each, not by a trigger per row
        for fk in stage[table.name].foreign_key_constraints:
            conn.execute(AddConstraint(fk))


def _rename_postgres(conn: Connection, tables: list[Table]) -> None:
    """The renames, under a savepoint so a lock timeout keeps the loaded staging tables."""
    with conn.begin_nested():
        for table in tables:
            conn.exec_driver_sql(
                f"ALTER TABLE {_quote(conn, table.name)} RENAME TO {_quote(conn, table.name + OLD)}"
            )
            conn.exec_driver_sql(
                f"ALTER TABLE {_quote(conn, table.name + NEW)} RENAME TO {_quote(conn, table.name)}"
            )


def _copy_postgresql(conn: Connection, table: Table, path: str) -> None:
    columns = ", ".join(_quote(conn, c.name) for c in table.columns)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        # A signal during the upload is acted on once it is done: psycopg2 would turn
        # the exception into a QueryCanceled of its own.
        with open(path, encoding="utf-8") as data, interrupts.critical():
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
    engine: Engine,
    tables: list[Table],
    frames: Mapping[str, pd.DataFrame],
    policy: PublishPolicy,
    swapped: Callable[[], None],
) -> None:
    """DELETE and INSERT in one transaction: WAL readers keep the old snapshot and never
    block it, so there is no lock wait to bound."""
    with engine.begin() as conn:
        _check_live_tables(conn, tables, frames, policy)
        for table in reversed(tables):
            conn.execute(table.delete())
        for table in tables:
            frame = frames[table.name]
            for start in range(0, len(frame), CHUNK_ROWS):
                _insert_tuples(conn, table, frame.iloc[start : start + CHUNK_ROWS])
    swapped()


def _insert_tuples(conn: Connection, table: Table, frame: pd.DataFrame) -> None:
    """The driver's executemany of plain tuples, values through the columns' own bind
    processors (as ``conn.execute(insert, dicts)`` would): about 3x faster at 1M rows."""
    names = [str(c) for c in frame.columns]
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=names)
    order = list(compiled.positiontup or ())
    values = {}
    for name in order:
        column = _column_values(frame[name])
        process = table.c[name].type._cached_bind_processor(conn.dialect)
        values[name] = column if process is None else [process(v) for v in column]
    conn.exec_driver_sql(str(compiled), list(zip(*(values[n] for n in order), strict=True)))


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
