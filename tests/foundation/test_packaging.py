"""The installed package: one ``courseinv`` namespace, every job package in the wheel, and a
production command that works without the development sandbox extra."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

SANDBOX_EXTRA = ("graphql", "sqlglot", "duckdb")  # modules only the sandbox extra installs

# Runs the CLI with some modules made unimportable, as in an install without the extra.
BLOCKING_CLI = """
import importlib.abc, sys
blocked = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in blocked or name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
from courseinv.runner.cli import main
sys.exit(main(sys.argv[2:]))
"""


def repository_packages() -> list[str]:
    """Top-level folders that are Python packages, as setup.py discovers them."""
    local = {"tests", "benchmarks", "build"}
    return sorted(
        p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in local
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (path,) = out.glob("course_inventory-*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


def test_wheel_holds_every_package_under_one_namespace(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"courseinv"}, f"bare top-level names would collide: {sorted(top)}"
    packages = repository_packages()
    assert {"course_inventory", "mivideo", "online_meetings", "db", "config", "runner"} <= set(packages)
    for package in packages:
        assert f"courseinv/{package}/__init__.py" in names, f"{package} left out of the wheel"
    migrations = sorted(p.name for p in (ROOT / "db" / "migrations").glob("*.py"))
    for name in migrations:
        assert f"courseinv/db/migrations/{name}" in names, f"migration {name} left out"
    for data in ("config/env_schema.hjson", "config/env_blank.hjson",
                 "course_inventory/enrollments.graphql", "mivideo/media_started_hourly.sql",
                 "runner/templates/report.html"):
        assert f"courseinv/{data}" in names, data
    entry_points = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "course-inventory = courseinv.runner.cli:main" in entry_points


def blocked_cli(blocked: tuple[str, ...], *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKING_CLI, ",".join(blocked), *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )


def test_production_commands_never_import_the_sandbox(tmp_path: Path) -> None:
    config = tmp_path / "env.hjson"
    config.write_text(
        f"""{{
  JOB_NAMES: ["COURSE_INVENTORY"]
  DATA_DIR: "{tmp_path / "data"}"
  DB_WAIT_SECONDS: 0
  MAX_REQ_ATTEMPTS: 1
  CANVAS: {{CANVAS_URL: "http://127.0.0.1:9", CANVAS_TOKEN: "t", CANVAS_ACCOUNT_ID: 1, CANVAS_TERM_IDS: [1]}}
}}""",
        encoding="utf-8",
    )
    blocked = (*SANDBOX_EXTRA, "courseinv.sandbox")
    helped = blocked_cli(blocked, "--help", tmp_path=tmp_path)
    assert helped.returncode == 0 and "check-config" in helped.stdout, helped.stderr
    for command in ("check-config", "run"):
        result = blocked_cli(blocked, command, "--config", str(config), tmp_path=tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output  # Canvas at port 9 is unreachable
        assert "ModuleNotFoundError" not in output and "Traceback" not in output, output


@pytest.mark.parametrize("command", ["demo", "sandbox"])
def test_demo_without_the_extra_says_how_to_install_it(command: str, tmp_path: Path) -> None:
    result = blocked_cli(SANDBOX_EXTRA, command, tmp_path=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'course-inventory[sandbox]'" in lines[0], lines
