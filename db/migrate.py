"""Schema migrations with yoyo (``db/migrations/``): one process at a time, safe to kill.

A kill at any moment leaves a database the next ``migrate`` (or ``run``) brings to head with
no manual step:

* Exclusion is ``db.migration_lock`` (held by the database session or an open file, so a
  killed holder releases it at once); yoyo's lock row, which outlives its holder, is not
  taken. Rows other tools left in ``yoyo_lock`` are cleared, with a warning, once their
  process is gone (a dead pid here) or they are older than ``STALE_LOCK_S``.
* Every migration step skips what already exists (``db.migration_ddl``), so a migration
  whose DDL was committed (MySQL commits each statement) but not yet recorded runs again
  harmlessly.
* What yoyo itself leaves half-done is repaired first: a half-created bookkeeping schema
  (``_yoyo_migration``/``_yoyo_log``/``_yoyo_version`` without its version row) is dropped
  and recreated, and the probe tables of its transactional-DDL check (``yoyo_tmp_*``) are
  dropped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from courseinv.db.locks import pid_alive
from courseinv.db.migration_lock import MigrationLocked, migration_lock
from courseinv.db.tables import APP_TABLES
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import URL
from yoyo import read_migrations
from yoyo.backends import DatabaseBackend, get_backend_class
from yoyo.connections import parse_uri

log = logging.getLogger(__name__)

__all__ = ["MigrationLocked", "migrate", "migration_ids", "reset"]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATION_TABLE = "_yoyo_migration"
YOYO_INTERNAL = (MIGRATION_TABLE, "_yoyo_log", "_yoyo_version")
YOYO_LOCK_TABLE = "yoyo_lock"
YOYO_SCHEMA_VERSION = 2
LOCK_TIMEOUT_S = 120
STALE_LOCK_S = 600  # a yoyo_lock row older than this is cleared whoever wrote it

# SQLAlchemy driver names -> the URL schemes yoyo's backends register.
_YOYO_SCHEMES = {"mysql": "mysql", "postgresql": "postgresql", "sqlite": "sqlite"}
_BACKEND_CLASSES: dict[type, type] = {}


def yoyo_url(url: URL) -> str:
    """Translate a SQLAlchemy URL (``mysql+pymysql://``...) into yoyo's form (``mysql://``)."""
    backend = url.get_backend_name()
    if backend not in _YOYO_SCHEMES:
        raise ValueError(f"unsupported database for migrations: {backend}")
    if backend == "sqlite":
        return f"sqlite:///{url.database}"
    return url.set(drivername=_YOYO_SCHEMES[backend]).render_as_string(hide_password=False)


def _backend(engine: Engine) -> DatabaseBackend:
    """yoyo's backend for the engine, minus yoyo's lock row (the caller holds our lock)."""
    parsed = parse_uri(yoyo_url(engine.url))
    base = get_backend_class(parsed.scheme)
    cls = _BACKEND_CLASSES.get(base)
    if cls is None:

        class _Unlocked(base):  # type: ignore[misc, valid-type]
            @contextlib.contextmanager
            def lock(self, timeout: int = 10) -> Any:
                yield  # exclusion is migration_lock(), which dies with its holder

        cls = _BACKEND_CLASSES[base] = _Unlocked
    backend = cls(parsed, MIGRATION_TABLE)
    backend.init_database()
    return backend


def migration_ids() -> list[str]:
    """Every migration in ``db/migrations/``, in the order yoyo applies them."""
    return [m.id for m in read_migrations(str(MIGRATIONS_DIR))]


def migrate(
    engine: Engine,
    *,
    break_lock: bool = False,
    upto: str | None = None,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> list[str]:
    """Apply pending migrations under the migration lock; returns the ids applied.

    ``upto`` stops after that migration id (tests build databases at older schema versions).
    ``break_lock`` clears every ``yoyo_lock`` row, stale or not.
    """
    with migration_lock(engine, lock_timeout_s):
        recover(engine, break_lock=break_lock, timeout_s=lock_timeout_s)
        backend = _backend(engine)
        try:
            migrations = read_migrations(str(MIGRATIONS_DIR))
            if upto is not None:
                ids = [m.id for m in migrations]
                migrations = migrations[: ids.index(upto) + 1]
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
            applied = [m.id for m in pending]
        finally:
            backend.connection.close()
    if applied:
        log.info("Applied migrations: %s", ", ".join(applied))
    else:
        log.info("Database schema is up to date")
    return applied


def reset(engine: Engine) -> list[str]:
    """Drop every application table and yoyo's records of them, then migrate afresh."""
    with migration_lock(engine, LOCK_TIMEOUT_S):
        present = set(inspect(engine).get_table_names())
        with engine.begin() as conn:
            for table in reversed(APP_TABLES):
                for name in (table.name, f"{table.name}__new", f"{table.name}__old"):
                    if name in present:
                        conn.execute(text(f"DROP TABLE {_quote(conn, name)}"))
            if MIGRATION_TABLE in present:
                conn.execute(text(f"DELETE FROM {MIGRATION_TABLE}"))
    return migrate(engine)


# -- recovery from a killed migrate ---------------------------------------------------------


def recover(engine: Engine, *, break_lock: bool = False, timeout_s: float = LOCK_TIMEOUT_S) -> None:
    """Undo what a killed migrate (or yoyo) left half-done; call with the lock held."""
    present = set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        for name in sorted(n for n in present if n.startswith("yoyo_tmp_")):
            log.warning("Dropping %s, left by a killed migration run", name)
            conn.execute(text(f"DROP TABLE {_quote(conn, name)}"))
    _repair_yoyo_schema(engine, present)
    if YOYO_LOCK_TABLE in present:
        _clear_yoyo_lock(engine, break_lock=break_lock, timeout_s=timeout_s)


def _repair_yoyo_schema(engine: Engine, present: set[str]) -> None:
    """Drop yoyo's bookkeeping tables when a kill left them half-created.

    yoyo creates them one statement at a time (each committed on MySQL) and writes its
    schema version row last; without that row they cannot hold a migration record yet.
    """
    internal = [name for name in YOYO_INTERNAL if name in present]
    if not internal:
        return
    with engine.begin() as conn:
        if "_yoyo_version" in present:
            version = conn.execute(text("SELECT MAX(version) FROM _yoyo_version")).scalar()
            if version == YOYO_SCHEMA_VERSION:
                return
        only_v1 = internal == [MIGRATION_TABLE] and "migration_hash" not in _columns(
            conn, MIGRATION_TABLE
        )
        if only_v1:
            return  # yoyo's version-1 layout: yoyo upgrades it itself
        for name in internal:
            if conn.execute(text(f"SELECT COUNT(*) FROM {_quote(conn, name)}")).scalar():
                raise RuntimeError(
                    f"yoyo's table {name} holds rows but its schema version is unknown: "
                    "inspect the database before migrating"
                )
        for name in internal:
            log.warning("Dropping yoyo's half-created table %s (a killed migration run)", name)
            conn.execute(text(f"DROP TABLE {_quote(conn, name)}"))


def _columns(conn: Connection, table: str) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns(table)}


def _clear_yoyo_lock(engine: Engine, *, break_lock: bool, timeout_s: float) -> None:
    """Clear yoyo_lock rows whose holder is gone; wait (bounded) for a live one."""
    deadline = time.monotonic() + timeout_s
    while True:
        with engine.begin() as conn:
            rows = conn.execute(text(f"SELECT pid, ctime FROM {YOYO_LOCK_TABLE}")).all()
            live = []
            for pid, ctime in rows:
                why = "--break-lock" if break_lock else _stale_reason(pid, ctime)
                if why is None:
                    live.append((pid, ctime))
                    continue
                log.warning("Clearing the yoyo migration lock of pid %s since %s: %s",
                            pid, ctime, why)  # fmt: skip
                conn.execute(text(f"DELETE FROM {YOYO_LOCK_TABLE} WHERE pid = :pid"), {"pid": pid})
        if not live:
            return
        if time.monotonic() >= deadline:
            pid, ctime = live[0]
            raise MigrationLocked(
                f"yoyo's lock is held by pid {pid} since {ctime} UTC (another migration tool?); "
                "if that process is gone, run `course-inventory migrate --break-lock`"
            )
        time.sleep(0.5)


def _stale_reason(pid: Any, ctime: Any) -> str | None:
    """Why a yoyo_lock row is stale (its process is gone, or it is too old), else None."""
    if isinstance(ctime, str):
        ctime = datetime.fromisoformat(ctime)
    if isinstance(ctime, datetime):
        age = (datetime.now(UTC).replace(tzinfo=None) - ctime.replace(tzinfo=None)).total_seconds()
        if age > STALE_LOCK_S:
            return f"older than {STALE_LOCK_S} s"
    if pid is not None and not pid_alive(int(pid)):
        return "no such process on this host"
    return None


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)
