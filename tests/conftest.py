"""Fixtures: real databases (SQLite always; MariaDB and PostgreSQL on 127.0.0.1).

Each database test gets its own uniquely named database, dropped afterwards. The
servers are reached at TEST_MARIADB_URL / TEST_POSTGRES_URL (defaults below). Without
CI an unreachable server skips its tests; with CI=true it fails them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from courseinv.db.engine import make_engine
from courseinv.db.migrate import migrate
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
MARIADB_URL = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(what: str, exc: Exception) -> None:
    message = f"{what} not reachable: {str(exc).splitlines()[0]}"
    if IN_CI:
        pytest.fail(message + " (CI=true: database tests must run)")
    pytest.skip(message)


def _server_engine(url: str) -> Engine:
    return make_engine(url).execution_options(isolation_level="AUTOCOMMIT")


def create_database(kind: str) -> str:
    """Create a fresh, uniquely named database; return its SQLAlchemy URL."""
    name = f"ci_test_{uuid.uuid4().hex[:12]}"
    base = MARIADB_URL if kind == "mariadb" else POSTGRES_URL
    server = _server_engine(base)
    try:
        with server.connect() as conn:
            if kind == "mariadb":
                conn.execute(
                    text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
                )
            else:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        server.dispose()
        _unavailable(kind, exc)
    server.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    parsed = make_url(url)
    name = parsed.database
    if parsed.get_backend_name() == "mysql":
        server = _server_engine(MARIADB_URL)
        with server.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    else:
        server = _server_engine(POSTGRES_URL)
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    server.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database; parametrize indirectly with sqlite/mariadb/postgres."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'inventory.sqlite3'}"
        return
    url = create_database(kind)
    try:
        yield url
    finally:
        drop_database(url)


def _migrated(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    yield from _migrated(f"sqlite:///{tmp_path / 'inventory.sqlite3'}")


@pytest.fixture
def mariadb_engine() -> Iterator[Engine]:
    url = create_database("mariadb")
    try:
        yield from _migrated(url)
    finally:
        drop_database(url)


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    url = create_database("postgres")
    try:
        yield from _migrated(url)
    finally:
        drop_database(url)


@pytest.fixture(params=["sqlite", "mariadb", "postgres"])
def any_engine(request: pytest.FixtureRequest) -> Engine:
    """A migrated engine on each of the three databases in turn."""
    return request.getfixturevalue(f"{request.param}_engine")


def run_cli(
    args: list[str],
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
    stdin: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run ``course-inventory ARGS`` in a subprocess, capturing all output."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("ENV_DIR", "ENV_FILE")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "courseinv.runner.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd or ROOT,
    )
