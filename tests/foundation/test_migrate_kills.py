"""Migrations survive a kill: whatever a killed ``migrate`` left, the next one reaches head.

* kill -9 at random moments of real ``migrate`` processes (>= 20 kills per database, each
  after a random delay within the duration of one migrate, from an empty database or one at
  the first migration), each followed by a ``migrate`` that must reach head with exactly the
  schema of ``db/tables.py`` (the three databases' soaks run side by side, in forked
  processes, to bound the wall time);
* the states a kill can leave, built deterministically: a half-applied first migration, a
  migration applied but not recorded, yoyo's half-created bookkeeping tables, its probe
  table, a yoyo lock row of a dead process;
* a live migrating process makes another wait a bounded time, then fail naming the holder;
* ``migrate --break-lock`` clears a lock row on every database.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from courseinv.db.engine import make_engine
from courseinv.db.migrate import (
    YOYO_LOCK_TABLE,
    MigrationLocked,
    migrate,
    migration_ids,
)
from courseinv.db.migration_ddl import statements
from courseinv.db.migration_lock import migration_lock
from courseinv.db.tables import metadata
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url

from tests.conftest import create_database, drop_database, run_cli
from tests.foundation.schema_diff import schema_differences

pytestmark = pytest.mark.parametrize(
    "database_url", ["sqlite", "mariadb", "postgres"], indirect=True
)

KILLS = 20
MAX_ATTEMPTS = 150  # kills are aimed earlier whenever a migrate beats its kill
APP_TABLES = set(metadata.tables)


def assert_at_head(engine: Engine) -> None:
    problems = schema_differences(engine, metadata)
    assert problems == [], "\n".join(problems)
    with engine.connect() as conn:
        recorded = conn.execute(text("SELECT migration_id FROM _yoyo_migration")).scalars().all()
    assert sorted(recorded) == sorted(migration_ids())


def drop_everything(engine: Engine) -> None:
    """An empty database again (application and yoyo tables alike)."""
    names = inspect(engine).get_table_names()
    with engine.begin() as conn:
        if engine.dialect.name == "mysql":
            conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        for name in names:
            if name.startswith("sqlite_"):
                continue
            quoted = conn.dialect.identifier_preparer.quote(name)
            cascade = " CASCADE" if engine.dialect.name == "postgresql" else ""
            conn.execute(text(f"DROP TABLE IF EXISTS {quoted}{cascade}"))
        if engine.dialect.name == "mysql":
            conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))


def state_of(engine: Engine) -> str:
    """empty / partial / applied-unrecorded / head: what a kill left."""
    present = set(inspect(engine).get_table_names())
    app = present & APP_TABLES
    recorded: list[str] = []
    if "_yoyo_migration" in present and "_yoyo_version" in present:
        with engine.connect() as conn:  # yoyo's bookkeeping complete (version row) or not
            if conn.execute(text("SELECT MAX(version) FROM _yoyo_version")).scalar() == 2:
                recorded = conn.execute(
                    text("SELECT migration_id FROM _yoyo_migration")
                ).scalars().all()
    if not app and not recorded:
        return "empty" if not present else "yoyo-only"
    if len(recorded) == len(migration_ids()):
        return "head"
    if not schema_differences(engine, metadata):
        return "applied-unrecorded"
    return "partial"


def fork_migrate(url: str) -> int:
    """A child process that runs ``migrate`` on a fresh engine and exits."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            child = make_engine(url)
            migrate(child)
            code = 0
        finally:
            os._exit(code)
    return pid


def reaped(pid: int) -> bool:
    return os.waitpid(pid, os.WNOHANG)[0] != 0


def one_migrate_seconds(url: str, engine: Engine) -> float:
    drop_everything(engine)
    started = time.monotonic()
    pid = fork_migrate(url)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return time.monotonic() - started


class _CountWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def kill_soak(url: str) -> dict[str, Any]:
    """Kill ``migrate`` at random moments until KILLS kills; after each, migrate to head."""
    counter = _CountWarnings()
    logging.getLogger("courseinv.db.migrate").addHandler(counter)
    engine = make_engine(url)
    rng = random.Random(int.from_bytes(os.urandom(4)))
    try:
        duration = one_migrate_seconds(url, engine)
        kills, finished_first, states, slowest = 0, 0, Counter(), 0.0
        for _ in range(MAX_ATTEMPTS):
            drop_everything(engine)
            if rng.random() < 0.3:
                migrate(engine, upto=migration_ids()[0])  # the kill hits a later migration
            engine.dispose()
            pid = fork_migrate(url)
            time.sleep(rng.uniform(0, 0.8 * duration))
            if reaped(pid):
                finished_first += 1
                duration *= 0.8  # the machine got less busy than when measured: aim earlier
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                kills += 1
                states[state_of(engine)] += 1
            started = time.monotonic()
            migrate(engine, lock_timeout_s=10)  # what the next `run` does first
            slowest = max(slowest, time.monotonic() - started)
            assert_at_head(engine)
            if kills >= KILLS:
                break
        return {"database": engine.dialect.name, "one_migrate_s": round(duration, 2),
                "kills": kills, "finished_before_kill": finished_first, "states": dict(states),
                "slowest_recovery_s": round(slowest, 2),
                "recovery_warnings": counter.count}  # fmt: skip
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def soaks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], dict]]:
    """The kill soak of each database, the three run side by side in forked processes."""
    folder = tmp_path_factory.mktemp("kill-soak")
    urls = {"sqlite": f"sqlite:///{folder / 'inventory.sqlite3'}"}
    for kind in ("mariadb", "postgres"):
        urls[kind] = create_database(kind)
    pids = {}
    for kind, url in urls.items():
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the driver process
            try:
                result = {"ok": True, **kill_soak(url)}
            except BaseException as exc:
                result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:3000]}
            (folder / f"{kind}.json").write_text(json.dumps(result), encoding="utf-8")
            os._exit(0)
        pids[kind] = pid

    def result(kind: str) -> dict:
        if kind in pids:
            os.waitpid(pids.pop(kind), 0)
        return json.loads((folder / f"{kind}.json").read_text(encoding="utf-8"))

    try:
        yield result
    finally:
        for kind in list(pids):
            result(kind)
        for kind in ("mariadb", "postgres"):
            drop_database(urls[kind])


def test_kill_at_random_moments_then_migrate_reaches_head(
    database_url: str, soaks: Callable[[str], dict]
) -> None:
    kind = {"mysql": "mariadb", "postgresql": "postgres"}.get(
        make_url(database_url).get_backend_name(), "sqlite"
    )
    outcome = soaks(kind)
    print(f"\nkill soak {kind}: {outcome}")
    assert outcome["ok"], outcome["error"]
    assert outcome["kills"] >= KILLS
    states = outcome["states"]
    assert sum(n for s, n in states.items() if s != "head") >= KILLS // 2, states


# -- deterministic kill states ----------------------------------------------------------------


def _first_migration_sql(engine: Engine) -> list[str]:
    """The frozen SQL of migration 0001 for this database (read, not imported: yoyo's)."""
    import ast

    from courseinv.db import migrate as migrate_module

    path = next(Path(migrate_module.MIGRATIONS_DIR).glob("0001.*.py"))
    tree = ast.parse(path.read_text(encoding="utf-8"))
    wanted = engine.dialect.name.upper()
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == wanted:
            return statements(ast.literal_eval(node.value))
    raise AssertionError(f"0001 has no {wanted} script")


def test_half_applied_first_migration_and_unrecorded_later_one(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        # As MySQL leaves it when killed mid-0001: some tables and an index, no record.
        with engine.begin() as conn:
            for sql in _first_migration_sql(engine)[:5]:
                conn.execute(text(sql))
        assert migrate(engine) == migration_ids()
        assert_at_head(engine)
        # Every migration applied but the last not recorded (killed before yoyo's mark).
        with engine.begin() as conn:
            conn.execute(
                text("DELETE FROM _yoyo_migration WHERE migration_id = :m"),
                {"m": migration_ids()[-1]},
            )
        assert migrate(engine) == migration_ids()[-1:]
        assert_at_head(engine)
    finally:
        engine.dispose()


def test_half_created_yoyo_tables_and_probe_table_are_rebuilt(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:  # yoyo killed inside its own schema set-up
            conn.execute(text("CREATE TABLE _yoyo_log (id VARCHAR(36) PRIMARY KEY)"))
            conn.execute(text("CREATE TABLE _yoyo_version (version INT PRIMARY KEY)"))
            conn.execute(text("CREATE TABLE yoyo_tmp_abcdefghij (id INT PRIMARY KEY)"))
        with caplog.at_level(logging.WARNING, logger="courseinv.db.migrate"):
            assert migrate(engine) == migration_ids()
        assert_at_head(engine)
        logged = caplog.text
        assert "yoyo_tmp_abcdefghij" in logged and "half-created table _yoyo_log" in logged
    finally:
        engine.dispose()


def _insert_lock_row(engine: Engine, pid: int, ctime: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(f"INSERT INTO {YOYO_LOCK_TABLE} (locked, ctime, pid) VALUES (1, :t, :pid)"),
            {"t": ctime, "pid": pid},
        )


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_lock_rows_of_gone_holders_are_cleared_with_a_log_line(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine, upto=migration_ids()[0])
        now = datetime.now(UTC).replace(tzinfo=None)
        _insert_lock_row(engine, _dead_pid(), now)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="courseinv.db.migrate"):
            assert migrate(engine) == migration_ids()[1:]
        assert time.monotonic() - started < 10
        assert "no such process on this host" in caplog.text
        # A live pid whose row is older than the bound is cleared too.
        _insert_lock_row(engine, os.getpid(), now - timedelta(hours=2))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="courseinv.db.migrate"):
            assert migrate(engine) == []
        assert "older than" in caplog.text
        # A recent row of a live process is waited for (bounded), then named.
        _insert_lock_row(engine, os.getpid(), now)
        with pytest.raises(MigrationLocked, match=f"pid {os.getpid()}"):
            migrate(engine, lock_timeout_s=1)
    finally:
        engine.dispose()


def test_break_lock_from_the_command_line(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine, upto=migration_ids()[0])
        _insert_lock_row(engine, os.getpid(), datetime.now(UTC).replace(tzinfo=None))
        config = tmp_path / "env.hjson"
        config.write_text(
            f'{{JOB_NAMES: ["MIVIDEO"], DATA_DIR: "{tmp_path}", INVENTORY_DB: {{url: "{database_url}"}}\n'
            'MIVIDEO: {default_last_timestamp: "2024-01-01T00:00:00Z", kaltura_partner_id: 5, '
            'udp_service_account_json_filename: "key.json", kaltura_user_secret: "s"}}',
            encoding="utf-8",
        )
        result = run_cli(["migrate", "--config", str(config), "--break-lock"])
        assert result.returncode == 0, result.stderr[-2000:]
        assert "--break-lock" in result.stderr + result.stdout
        assert_at_head(engine)
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT COUNT(*) FROM {YOYO_LOCK_TABLE}")).scalar() == 0
    finally:
        engine.dispose()


def test_a_live_migration_holds_others_off_for_a_bounded_time(database_url: str) -> None:
    engine = make_engine(database_url)
    other = make_engine(database_url)
    try:
        with migration_lock(other, 5):
            started = time.monotonic()
            with pytest.raises(MigrationLocked, match="another process is migrating") as info:
                migrate(engine, lock_timeout_s=1)
            assert 0.9 < time.monotonic() - started < 8
            if engine.dialect.name == "sqlite":
                assert f"pid {os.getpid()}" in str(info.value)
            else:
                assert "session" in str(info.value) or "process" in str(info.value)
        assert migrate(engine, lock_timeout_s=5) == migration_ids()  # released: proceeds
    finally:
        engine.dispose()
        other.dispose()
