"""Advisory locks of the output database: one run of a job at a time, held for the run.

* MySQL/MariaDB: ``GET_LOCK`` (server-wide names, qualified with the database name).
* PostgreSQL: a session-level ``pg_advisory_lock`` (per database), polled with
  ``pg_try_advisory_lock`` so the wait is bounded.
* SQLite: ``flock`` on a lock file beside the database file.

Each lock lives as long as its connection (or open file): a killed process loses it at
once, so a dead holder never blocks the next run. The wait is bounded; on timeout
:class:`LockBusy` says who holds the lock, as far as the caller can tell.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
MYSQL_NAME_MAX = 64
# First half of PostgreSQL's two-int advisory lock key: the lock's purpose.
PG_JOB_CLASS = zlib.crc32(b"course_inventory_job") & 0x7FFFFFFF


class LockBusy(Exception):
    """The lock was still held by another run when the wait ended."""


def lock_key(*parts: str) -> int:
    """A signed 32-bit key derived from ``parts`` (PostgreSQL advisory lock keys)."""
    value = zlib.crc32("\x1f".join(parts).encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def mysql_lock_name(prefix: str, database: str, name: str) -> str:
    """A GET_LOCK name unique per database, at most 64 characters."""
    full = f"{prefix}.{database}.{name}"
    if len(full) <= MYSQL_NAME_MAX:
        return full
    digest = hashlib.sha1(full.encode()).hexdigest()[:16]
    return f"{full[: MYSQL_NAME_MAX - 17]}~{digest}"


@contextmanager
def job_lock(
    engine: Engine, job_name: str, wait_seconds: float, holder: Callable[[], str]
) -> Iterator[None]:
    """Hold the lock of ``job_name`` in this database for the ``with`` block.

    Waits at most ``wait_seconds``; then raises :class:`LockBusy` with ``holder()``
    (a description of who holds it) in the message.
    """
    backend = engine.dialect.name
    if backend in ("mysql", "mariadb"):
        lock = _mysql_job_lock(engine, job_name, wait_seconds)
    elif backend == "postgresql":
        lock = _postgres_job_lock(engine, job_name, wait_seconds)
    elif backend == "sqlite":
        lock = _sqlite_job_lock(engine, job_name, wait_seconds)
    else:
        raise LockBusy(f"no job lock for database {backend}")
    with lock as acquired:
        if not acquired:
            raise LockBusy(
                f"another run of {job_name} is still running ({holder()}); waited "
                f"{wait_seconds:g} s (JOB_LOCK_WAIT_SECONDS)"
            )
        yield


@contextmanager
def _mysql_job_lock(engine: Engine, job_name: str, wait_seconds: float) -> Iterator[bool]:
    with engine.connect() as conn:
        database = conn.exec_driver_sql("SELECT DATABASE()").scalar() or ""
        name = mysql_lock_name("ci_job", database, job_name)
        got = conn.execute(
            text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": wait_seconds}
        ).scalar()
        conn.commit()
        try:
            yield got == 1
        finally:
            if got == 1:
                _release_quietly(conn, "SELECT RELEASE_LOCK(:name)", {"name": name})


@contextmanager
def _postgres_job_lock(engine: Engine, job_name: str, wait_seconds: float) -> Iterator[bool]:
    key = {"cls": PG_JOB_CLASS, "obj": lock_key(job_name)}
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # no open transaction
        got = poll(
            lambda: bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:cls, :obj)"), key).scalar()
            ),
            wait_seconds,
        )
        try:
            yield got
        finally:
            if got:
                _release_quietly(conn, "SELECT pg_advisory_unlock(:cls, :obj)", key)


@contextmanager
def _sqlite_job_lock(engine: Engine, job_name: str, wait_seconds: float) -> Iterator[bool]:
    database = engine.url.database
    if not database or database == ":memory:":  # a private database: nothing to share
        yield True
        return
    path = Path(f"{database}.{job_name.lower()}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        got = poll(lambda: _try_flock(fd), wait_seconds)
        yield got
    finally:
        os.close(fd)  # releases the flock


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def poll(attempt: Callable[[], bool], wait_seconds: float) -> bool:
    """Call ``attempt`` until it returns True or ``wait_seconds`` have passed."""
    deadline = time.monotonic() + max(0.0, wait_seconds)
    while True:
        if attempt():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(POLL_SECONDS, remaining))


def _release_quietly(conn: Connection, statement: str, params: dict) -> None:
    """Release a lock; a lost connection has released it already."""
    try:
        conn.execute(text(statement), params)
        conn.commit()
    except Exception as exc:
        log.debug("releasing a lock failed (its connection is gone): %s", exc)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (a lock holder, a temp dir's owner)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
