"""Waiting for the output database: retry what can get better, fail at once on the rest.

Real servers answer every case: the machine's MariaDB and PostgreSQL (logins, unknown
databases, missing grants), and a private PostgreSQL cluster with password logins
(the shared one trusts every local login) that is also started late, to be waited for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from courseinv.db.engine import DatabaseRefused, DatabaseUnavailable, make_engine, wait_for_db
from sqlalchemy import text

from tests.conftest import IN_CI, MARIADB_URL, POSTGRES_URL, _server_engine, run_cli

PG_PASSWORD = "pg-right-pw-4821"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster with scram-sha-256 logins on its own port."""

    root: Path
    port: int
    bindir: Path

    def _pg(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bindir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PG_PASSWORD + "\n")
        shutil.chown(self.root, "postgres")
        shutil.chown(pwfile, "postgres")
        self._pg("initdb", "-D", str(self.root / "data"), "-U", "postgres",
                 "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8")  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg("pg_ctl", "-D", str(self.root / "data"), "-o", options, "-w", "start",
                 "-l", str(self.root / "log"))  # fmt: skip

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "stop")

    def url(self, password: str) -> str:
        return f"postgresql+psycopg2://postgres:{password}@127.0.0.1:{self.port}/postgres"


def _bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if candidates and shutil.which("runuser") and os.geteuid() == 0:
        return candidates[-1].parent
    return None


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """Initialised but not started: each test starts it when it wants."""
    bindir = _bindir()
    if bindir is None:
        message = "initdb (PostgreSQL server binaries) and root are needed"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="ci-pg-"))
    cluster = PrivatePostgres(root, free_port(), bindir)
    try:
        cluster.init()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # never started
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "env.hjson"
    config = {
        "JOB_NAMES": ["COURSE_INVENTORY"],
        "CANVAS": {"CANVAS_URL": "http://127.0.0.1:9", "CANVAS_TOKEN": "t", "CANVAS_ACCOUNT_ID": 1},
        "INVENTORY_DB": {"url": url},
        "DB_WAIT_SECONDS": 60,
    }
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def assert_fails_at_once(
    tmp_path: Path, url: str, password: str | None, *needles: str
) -> None:
    """``course-inventory run`` gives up after one attempt (DB_WAIT_SECONDS is 60), saying why.

    Every retry would log "Waiting for database" first; there is none.
    """
    result = run_cli(["run", "--config", str(write_config(tmp_path, url))])
    assert result.returncode == 1, result.stderr
    assert "refused the connection" in result.stderr and "not retried" in result.stderr
    for needle in needles:
        assert needle in result.stderr
    assert "Waiting for database" not in result.stderr
    assert "not reachable after" not in result.stderr
    if password:
        assert password not in result.stdout + result.stderr


# -- fail at once ------------------------------------------------------------------------


@pytest.mark.mariadb
def test_mariadb_wrong_password_fails_at_once(tmp_path: Path) -> None:
    url = MARIADB_URL.replace("root@", "root:wrong-pw-7731@") + "mysql"
    assert_fails_at_once(tmp_path, url, "wrong-pw-7731", "Access denied", "1045")


@pytest.mark.mariadb
def test_mariadb_unknown_database_and_missing_grant_fail_at_once(tmp_path: Path) -> None:
    assert_fails_at_once(
        tmp_path, MARIADB_URL + "no_such_db_4471", None, "Unknown database", "1049"
    )
    user, password = f"ci_nogrant_{uuid.uuid4().hex[:8]}", "grant-pw-5512"
    server = _server_engine(MARIADB_URL)
    with server.connect() as conn:
        conn.execute(text(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'"))
    try:
        url = MARIADB_URL.replace("root@", f"{user}:{password}@") + "mysql"
        assert_fails_at_once(tmp_path, url, password, "Access denied", "1044")
    finally:
        with server.connect() as conn:
            conn.execute(text(f"DROP USER '{user}'@'127.0.0.1'"))
        server.dispose()


@pytest.mark.postgres
def test_postgres_wrong_password_fails_at_once(
    tmp_path: Path, private_pg: PrivatePostgres
) -> None:
    private_pg.start()
    good = make_engine(private_pg.url(PG_PASSWORD))
    wait_for_db(good, 5)  # the right password gets in
    good.dispose()
    assert_fails_at_once(
        tmp_path, private_pg.url("wrong-pw-9042"), "wrong-pw-9042", "password authentication failed"
    )


@pytest.mark.postgres
def test_postgres_unknown_database_role_and_missing_grant_fail_at_once(tmp_path: Path) -> None:
    base = POSTGRES_URL.rsplit("/", 1)[0]
    assert_fails_at_once(tmp_path, base + "/no_such_db_4471", None, "does not exist")
    assert_fails_at_once(
        tmp_path, base.replace("postgres@", "no_such_role_4471@") + "/postgres", None,
        'role "no_such_role_4471" does not exist',
    )  # fmt: skip
    role, db = f"ci_nogrant_{uuid.uuid4().hex[:8]}", f"ci_test_{uuid.uuid4().hex[:12]}"
    server = _server_engine(POSTGRES_URL)
    with server.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text(f'CREATE DATABASE "{db}"'))
        conn.execute(text(f'REVOKE CONNECT ON DATABASE "{db}" FROM PUBLIC'))
    try:
        url = base.replace("postgres@", f"{role}@") + f"/{db}"
        assert_fails_at_once(tmp_path, url, None, "permission denied for database")
    finally:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        server.dispose()


# -- wait for what can get better ------------------------------------------------------------


@pytest.mark.postgres
def test_a_server_that_starts_late_is_waited_for(
    private_pg: PrivatePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="courseinv.db.engine")
    engine = make_engine(private_pg.url(PG_PASSWORD))
    starter = threading.Timer(1.0, private_pg.start)
    starter.start()
    try:
        wait_for_db(engine, 30, interval_s=0.2)
    finally:
        starter.join()
        engine.dispose()
    waits = [r.getMessage() for r in caplog.records if "Waiting for database" in r.getMessage()]
    assert waits and "Connection refused" in waits[0]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql+pymysql://u:p@127.0.0.1:1/db", "Connection refused"),
        ("postgresql+psycopg2://u:p@127.0.0.1:1/db", "Connection refused"),
        ("mysql+pymysql://u:p@no-such-host.invalid/db", "Name or service not known"),
        ("postgresql+psycopg2://u:p@no-such-host.invalid/db", "could not translate host name"),
    ],
)
def test_refused_and_unknown_host_are_retried_until_the_limit(url: str, reason: str) -> None:
    engine = make_engine(url)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as info:
        wait_for_db(engine, 2.0, interval_s=0.2)
    engine.dispose()
    assert not isinstance(info.value, DatabaseRefused)
    assert time.monotonic() - started >= 1.8  # it waited
    assert "not reachable after 2 s" in str(info.value) and reason in str(info.value)
    attempts = int(str(info.value).split("(", 1)[1].split(" attempts")[0])
    assert attempts >= 2
