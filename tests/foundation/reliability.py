"""Shared pieces of the reliability tests: runs of registered test jobs in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from tests.conftest import ROOT

# Registers test jobs ("NAME=module:function,...") in the child, then runs the CLI.
LAUNCHER = """
import sys
from courseinv.runner.jobs import register_job
for spec in filter(None, sys.argv[1].split(",")):
    name, _, target = spec.partition("=")
    register_job(name, target)
from courseinv.runner.cli import main
sys.exit(main(sys.argv[2:]))
"""


def write_config(path: Path, db_url: str, jobs: list[str], **top: Any) -> Path:
    config = {
        "JOB_NAMES": jobs,
        "LOG_LEVEL": "DEBUG",
        "DATA_DIR": str(path.parent / "data"),
        "CANVAS": {"CANVAS_URL": "https://canvas.example.edu", "CANVAS_TOKEN": "t0k3n-abc",
                   "CANVAS_ACCOUNT_ID": 1},
        "INVENTORY_DB": {"url": db_url},
        **top,
    }  # fmt: skip
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


class Child:
    """``course-inventory ARGS`` in a subprocess with test jobs registered; output to files."""

    def __init__(
        self,
        jobs: dict[str, str],
        args: list[str],
        folder: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.tmp = folder / "tmp"  # the child's TMPDIR: what it leaves there is visible
        self.tmp.mkdir(exist_ok=True)
        self.err_path = folder / "stderr.txt"
        full_env = {k: v for k, v in os.environ.items() if k not in ("ENV_DIR", "ENV_FILE")}
        full_env.update({"TMPDIR": str(self.tmp), **(env or {})})
        specs = ",".join(f"{name}={target}" for name, target in jobs.items())
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, specs, *args],
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=ROOT,
                env=full_env,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, fragment: str, timeout: float = 60) -> None:
        wait_until(lambda: fragment in self.stderr or self.proc.poll() is not None, timeout)
        assert fragment in self.stderr, f"never logged {fragment!r}:\n{self.stderr[-3000:]}"

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)

    def leftovers(self) -> list[Path]:
        """Files and folders left in the child's TMPDIR (the empty private parent aside)."""
        return [p for p in self.tmp.rglob("*") if not (p.is_dir() and not any(p.iterdir()))]


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def scalar(engine: Engine, query: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(query), params).scalar()


def job_runs(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM job_run ORDER BY id")).mappings().all()
    return [dict(r) for r in rows]


def staging_tables(engine: Engine) -> list[str]:
    from sqlalchemy import inspect

    return sorted(n for n in inspect(engine).get_table_names() if n.endswith(("__new", "__old")))
