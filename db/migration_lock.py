"""The lock that lets one process at a time migrate a database, gone when its holder dies.

A lock row (yoyo's own ``yoyo_lock``) outlives a killed process and blocks every later run.
This lock is held by the database session (or, for SQLite, the open file) instead, so the
server (or the kernel) releases it the moment the holder's connection or process ends:

* MySQL/MariaDB: ``GET_LOCK`` on a name qualified with the database (server-wide names).
* PostgreSQL: a session advisory lock (scoped to the database by the server).
* SQLite: ``flock`` on ``<database file>.migrate-lock`` beside the database.

Waiting is bounded; on timeout the error names the holder as far as the server knows it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, text

LOCK_NAME = "course_inventory_migrate"
POLL_S = 0.2


class MigrationLocked(Exception):
    """Another live process is migrating this database (or held the lock too long)."""


@contextlib.contextmanager
def migration_lock(engine: Engine, timeout_s: float) -> Iterator[None]:
    """Hold the database's migration lock for the block; wait at most ``timeout_s``."""
    backend = engine.dialect.name
    if backend in ("mysql", "mariadb"):
        with engine.connect() as conn, _mysql_lock(conn, timeout_s):
            yield
    elif backend == "postgresql":
        with engine.connect() as conn, _postgresql_lock(conn, timeout_s):
            yield
    elif backend == "sqlite":
        with _file_lock(engine.url.database, timeout_s):
            yield
    else:
        raise MigrationLocked(f"no migration lock for database {backend}")


# -- MySQL / MariaDB ----------------------------------------------------------------------


def _mysql_name(conn: Connection) -> str:
    return f"{LOCK_NAME}.{conn.exec_driver_sql('SELECT DATABASE()').scalar()}"[:64]


@contextlib.contextmanager
def _mysql_lock(conn: Connection, timeout_s: float) -> Iterator[None]:
    name = _mysql_name(conn)
    got = conn.execute(
        text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": max(0, timeout_s)}
    ).scalar()
    conn.commit()
    if got != 1:
        raise MigrationLocked(
            f"another process is migrating this database (waited {timeout_s:.0f} s): "
            f"{mysql_holder(conn, name)}"
        )
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a lost connection released it already
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
            conn.commit()


def mysql_holder(conn: Connection, name: str) -> str:
    """Who holds the named lock: the session id, its client address and for how long."""
    holder = conn.execute(text("SELECT IS_USED_LOCK(:name)"), {"name": name}).scalar()
    if holder is None:
        return "the holder has just released it"
    row = conn.execute(
        text("SELECT HOST, TIME FROM information_schema.PROCESSLIST WHERE ID = :id"),
        {"id": holder},
    ).first()
    if row is None:
        return f"database session {holder}"
    return f"database session {holder} from {row[0]}, connected for {row[1]} s"


# -- PostgreSQL -------------------------------------------------------------------------


PG_KEYS = (zlib.crc32(b"course_inventory") >> 1, zlib.crc32(LOCK_NAME.encode()) >> 1)


@contextlib.contextmanager
def _postgresql_lock(conn: Connection, timeout_s: float) -> Iterator[None]:
    keys = {"a": PG_KEYS[0], "b": PG_KEYS[1]}
    deadline = time.monotonic() + timeout_s
    while True:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:a, :b)"), keys).scalar()
        conn.commit()
        if got:
            break
        if time.monotonic() >= deadline:
            raise MigrationLocked(
                f"another process is migrating this database (waited {timeout_s:.0f} s): "
                f"{postgresql_holder(conn)}"
            )
        time.sleep(POLL_S)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"), keys)
            conn.commit()


def postgresql_holder(conn: Connection) -> str:
    row = conn.execute(
        text(
            "SELECT a.pid, a.client_addr, a.application_name, a.backend_start "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :a AND l.objid = :b "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"a": PG_KEYS[0], "b": PG_KEYS[1]},
    ).first()
    conn.commit()
    if row is None:
        return "the holder has just released it"
    since = row[3].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if row[3] else "?"
    return f"server process {row[0]} for client {row[1] or 'local'} {row[2] or ''}, since {since}"


# -- SQLite ---------------------------------------------------------------------------------


def lock_file_of(database: str | None) -> Path | None:
    """The lock file beside an SQLite database file (None for an in-memory database)."""
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).with_name(Path(database).name + ".migrate-lock")


@contextlib.contextmanager
def _file_lock(database: str | None, timeout_s: float) -> Iterator[None]:
    path = lock_file_of(database)
    if path is None:  # private to this process: nobody to exclude
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = path.read_text(encoding="utf-8", errors="replace").strip()
                    raise MigrationLocked(
                        f"another process is migrating this database (waited "
                        f"{timeout_s:.0f} s): {holder or 'unknown holder'}"
                    ) from None
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder_text().encode("utf-8"), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def holder_text() -> str:
    """``host <name>, pid <n>, since <UTC time>``: who this process is, for lock messages."""
    since = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"host {socket.gethostname()}, pid {os.getpid()}, since {since}"
