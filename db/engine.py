"""Engines for the output database (INVENTORY_DB) and the Unizin Data Warehouse (UDW)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

SQLITE_FILE = "course_inventory.sqlite3"


class DatabaseUnavailable(Exception):
    """The database did not accept connections within the wait limit."""


def database_url(
    db_config: Mapping[str, Any] | None, *, default_driver: str, data_dir: Path
) -> URL:
    """The SQLAlchemy URL of a ``{host, port, dbname, user, password}`` or ``{url}`` entry.

    ``None`` (key absent) means an embedded SQLite file in ``data_dir``.
    """
    if db_config is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        return URL.create("sqlite", database=str((data_dir / SQLITE_FILE).resolve()))
    if "url" in db_config:
        return make_url(db_config["url"])
    query = {"charset": "utf8mb4"} if default_driver.startswith("mysql") else {}
    port = db_config.get("port")
    return URL.create(
        default_driver,
        username=db_config["user"],
        password=db_config.get("password") or None,
        host=db_config["host"],
        port=int(port) if port not in (None, "") else None,
        database=db_config["dbname"],
        query=query,
    )


def make_engine(url: URL | str, *, pool_size: int = 5) -> Engine:
    """An engine with the per-dialect settings the project relies on.

    MySQL/MariaDB: utf8mb4, ``local_infile`` for bulk loads. SQLite: foreign keys on,
    WAL journal so readers keep seeing the old data while a replace is being written.
    """
    url = make_url(url)
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "mysql":
        if "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
        kwargs["connect_args"] = {"local_infile": True}
        kwargs["pool_recycle"] = 3600
    if backend == "sqlite":
        kwargs = {"poolclass": NullPool, "connect_args": {"timeout": 60}}
    else:
        kwargs["pool_size"] = pool_size
    engine = create_engine(url, **kwargs)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy manage transactions explicitly (BEGIN is emitted by us), so DDL
    # and DML of one publish share one transaction.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn: Any) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")


def output_engine(config: Mapping[str, Any], data_dir: Path) -> Engine:
    """The engine of INVENTORY_DB (MySQL/MariaDB by default), logging where it points."""
    url = database_url(
        config.get("INVENTORY_DB"), default_driver="mysql+pymysql", data_dir=data_dir
    )
    if config.get("INVENTORY_DB") is None:
        log.info("INVENTORY_DB not configured: using embedded SQLite database %s", url.database)
    return make_engine(url, pool_size=max(5, int(config.get("NUM_ASYNC_WORKERS", 8))))


def udw_engine(config: Mapping[str, Any]) -> Engine | None:
    """The engine of UDW (PostgreSQL via psycopg2 by default), or None when not configured."""
    udw = config.get("UDW")
    if udw is None:
        return None
    url = database_url(udw, default_driver="postgresql+psycopg2", data_dir=Path("."))
    return make_engine(url)


def describe(engine: Engine) -> str:
    """A loggable description of where an engine points (no password)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"sqlite {url.database}"
    return f"{url.get_backend_name()} {url.host}:{url.port or ''}/{url.database}"


def wait_for_db(engine: Engine, timeout_s: float, *, interval_s: float = 2.0) -> None:
    """Return once ``SELECT 1`` succeeds; raise ``DatabaseUnavailable`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        attempt += 1
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except OperationalError as exc:
            reason = _short_reason(exc)
            if time.monotonic() + interval_s > deadline:
                raise DatabaseUnavailable(
                    f"database {describe(engine)} not reachable after {timeout_s:.0f} s "
                    f"({attempt} attempts): {reason}"
                ) from None
            log.warning("Waiting for database %s: %s", describe(engine), reason)
            time.sleep(interval_s)


def _short_reason(exc: OperationalError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0][:200]
