"""Engines for the output database (INVENTORY_DB) and the Unizin Data Warehouse (UDW)."""

from __future__ import annotations

import importlib.util
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

SQLITE_FILE = "course_inventory.sqlite3"

# URL driver name -> the DBAPI module it imports. Only drivers the bulk paths support.
SUPPORTED_DRIVERS = {
    "mysql+pymysql": "pymysql",
    "postgresql": "psycopg2",
    "postgresql+psycopg2": "psycopg2",
    "sqlite": "sqlite3",
    "sqlite+pysqlite": "sqlite3",
}
SUPPORTED_URL_FORMS = (
    "mysql+pymysql://USER:PASSWORD@HOST:3306/DBNAME",
    "postgresql+psycopg2://USER:PASSWORD@HOST:5432/DBNAME",
    "sqlite:////ABSOLUTE/PATH/FILE.sqlite3",
)

# Connection failures that can get better by waiting: the server is not listening yet,
# its name does not resolve yet, it is starting or shutting down, or it is full.
# PyMySQL error codes: 2003 cannot connect (refused, DNS), 2002 socket, 2005 unknown host,
# 2006/2013 gone away / lost, 1040 too many connections, 1053 server shutdown.
TRANSIENT_MYSQL_CODES = frozenset({1040, 1053, 2002, 2003, 2005, 2006, 2013})
TRANSIENT_TEXT = (
    "connection refused",
    "could not translate host name",
    "name or service not known",
    "temporary failure in name resolution",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "not yet accepting connections",
    "too many clients already",
    "server closed the connection unexpectedly",
    "timeout expired",
    "database is locked",
)


class DatabaseUnavailable(Exception):
    """The database did not accept connections within the wait limit."""


class DatabaseRefused(DatabaseUnavailable):
    """The database answered with a failure that waiting cannot fix (login, name, grants)."""


def url_problem(value: str) -> str | None:
    """Why ``value`` is not a database URL the project can use, or None.

    The message never quotes the URL (it may hold a password); it lists the URL forms
    that work.
    """
    forms = "; supported URL forms: " + ", ".join(SUPPORTED_URL_FORMS)
    try:
        url = make_url(value)
        url.port  # noqa: B018 - parses the port, raising ValueError when not a number
    except (ArgumentError, ValueError):
        return "expected a database URL" + forms
    driver = url.drivername
    if driver not in SUPPORTED_DRIVERS:
        named = re.fullmatch(r"[a-z0-9_]{1,20}(\+[a-z0-9_]{1,20})?", driver)
        what = f"unsupported database driver {driver!r}" if named else "unsupported driver"
        if driver == "mysql":
            what += " (mysql:// means the MySQLdb driver, which is not supported)"
        return what + forms
    module = SUPPORTED_DRIVERS[driver]
    if importlib.util.find_spec(module) is None:
        return f"the database driver {module} is not installed" + forms
    return None


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
        event.listen(engine, "handle_error", _sqlite_release_on_exit)
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


def _sqlite_release_on_exit(ctx: Any) -> None:
    """Roll back at once when a signal (SIGTERM, Ctrl-C) cuts a statement.

    SQLAlchemy then closes the connection without a rollback, and SQLite keeps a closed
    connection alive (with its write lock) while the interrupted statement lives on in
    the exception's traceback: recording the run as failed would wait on that lock.
    """
    if isinstance(ctx.original_exception, Exception) or ctx.connection is None:
        return
    dbapi_conn = ctx.connection.connection.dbapi_connection
    if dbapi_conn is None:
        return
    try:
        dbapi_conn.rollback()
    except Exception as exc:  # the connection is being discarded anyway
        log.debug("SQLite rollback after an interrupted statement failed: %s", exc)


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
    """Return once ``SELECT 1`` succeeds.

    Waits (up to ``timeout_s``) only while the failure can get better: connection
    refused, host name not resolving yet, server starting. A failure waiting cannot fix
    (wrong password, unknown database or user, missing grant) raises ``DatabaseRefused``
    at once; running out of time raises ``DatabaseUnavailable``.
    """
    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        attempt += 1
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except DBAPIError as exc:
            reason = _short_reason(exc)
            if not is_transient(exc):
                raise DatabaseRefused(
                    f"database {describe(engine)} refused the connection: {reason} "
                    "(not retried: check the user, password, database name and grants "
                    "in INVENTORY_DB)"
                ) from None
            if time.monotonic() + interval_s > deadline:
                raise DatabaseUnavailable(
                    f"database {describe(engine)} not reachable after {timeout_s:.0f} s "
                    f"({attempt} attempts): {reason}"
                ) from None
            log.warning("Waiting for database %s: %s", describe(engine), reason)
            time.sleep(interval_s)


def is_transient(exc: DBAPIError) -> bool:
    """Whether a connection failure may go away by waiting (see ``TRANSIENT_TEXT``)."""
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and orig.__class__.__module__.startswith("pymysql"):
        return args[0] in TRANSIENT_MYSQL_CODES
    message = str(orig if orig is not None else exc).lower()
    return any(marker in message for marker in TRANSIENT_TEXT)


def _short_reason(exc: DBAPIError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0][:200]
