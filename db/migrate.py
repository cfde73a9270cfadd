"""Schema migrations with yoyo (``db/migrations/``), safe to run from two processes at once."""

from __future__ import annotations

import logging
from pathlib import Path

from courseinv.db.tables import APP_TABLES
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import URL
from yoyo import get_backend, read_migrations
from yoyo.backends import DatabaseBackend
from yoyo.exceptions import LockTimeout

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LOCK_TIMEOUT_S = 120

# SQLAlchemy driver names -> the URL schemes yoyo's backends register.
_YOYO_SCHEMES = {"mysql": "mysql", "postgresql": "postgresql", "sqlite": "sqlite"}


class MigrationLocked(Exception):
    """Another process holds yoyo's lock (or a killed process left it behind)."""


def yoyo_url(url: URL) -> str:
    """Translate a SQLAlchemy URL (``mysql+pymysql://``...) into yoyo's form (``mysql://``)."""
    backend = url.get_backend_name()
    if backend not in _YOYO_SCHEMES:
        raise ValueError(f"unsupported database for migrations: {backend}")
    if backend == "sqlite":
        return f"sqlite:///{url.database}"
    return url.set(drivername=_YOYO_SCHEMES[backend]).render_as_string(hide_password=False)


def _backend(engine: Engine) -> DatabaseBackend:
    return get_backend(yoyo_url(engine.url), migration_table="_yoyo_migration")


def migration_ids() -> list[str]:
    """Every migration in ``db/migrations/``, in the order yoyo applies them."""
    return [m.id for m in read_migrations(str(MIGRATIONS_DIR))]


def migrate(engine: Engine, *, break_lock: bool = False, upto: str | None = None) -> list[str]:
    """Apply pending migrations under yoyo's lock; returns the ids applied (none when current).

    ``upto`` stops after that migration id (tests build databases at older schema versions).
    """
    backend = _backend(engine)
    try:
        if break_lock:
            backend.break_lock()
        migrations = read_migrations(str(MIGRATIONS_DIR))
        if upto is not None:
            ids = [m.id for m in migrations]
            migrations = migrations[: ids.index(upto) + 1]
        with backend.lock(timeout=LOCK_TIMEOUT_S):
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        applied = [m.id for m in pending]
    except LockTimeout as exc:
        raise MigrationLocked(
            f"{exc}. If no other course-inventory process is running, a killed run left the "
            "lock behind: run `course-inventory migrate --break-lock`."
        ) from None
    finally:
        backend.connection.close()
    if applied:
        log.info("Applied migrations: %s", ", ".join(applied))
    else:
        log.info("Database schema is up to date")
    return applied


def reset(engine: Engine) -> list[str]:
    """Drop every application table and yoyo's records of them, then migrate afresh."""
    present = set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        for table in reversed(APP_TABLES):
            for name in (table.name, f"{table.name}__new", f"{table.name}__old"):
                if name in present:
                    conn.execute(text(f"DROP TABLE {conn.dialect.identifier_preparer.quote(name)}"))
        if "_yoyo_migration" in present:
            conn.execute(text("DELETE FROM _yoyo_migration"))
    return migrate(engine)
