"""Deployment files: what the build context holds, how the image is built, the compose file.

``.dockerignore`` is checked with Docker's documented matching rules (moby's
patternmatcher): paths relative to the context root, ``*`` and ``?`` within one path
segment, ``**`` across any number of folders, ``!`` re-includes, the last matching
pattern wins, and a path is excluded when it or a parent folder matches.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

from tests.conftest import ROOT

# -- .dockerignore -------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*" and pattern[i + 1 : i + 2] == "*":
            i += 2
            if pattern[i : i + 1] == "/":
                i += 1
            out += ".*" if i >= len(pattern) else "(.*/)?"
            continue
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(f"^{out}$")


def load_dockerignore(path: Path = ROOT / ".dockerignore") -> list[tuple[bool, re.Pattern[str]]]:
    return parse_dockerignore(path.read_text(encoding="utf-8"))


def parse_dockerignore(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes?, regex) per pattern line, in file order."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = str(Path(pattern.lstrip("/")))  # filepath.Clean, no leading slash
        rules.append((not negated, _pattern_regex(pattern)))
    return rules


def excluded(rules: list[tuple[bool, re.Pattern[str]]], path: str) -> bool:
    """Docker's MatchesOrParentMatches: the last pattern matching the path or a parent wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for excludes, regex in rules:
        if any(regex.match(c) for c in candidates):
            result = excludes
    return result


def test_matcher_follows_docker_rules() -> None:
    rules = parse_dockerignore("# comment\n*.pyc\n**/*.log\n/docs\n!docs/keep.md\na?c\n")
    assert excluded(rules, "x.pyc") and not excluded(rules, "pkg/x.pyc")  # * is one level
    assert excluded(rules, "x.log") and excluded(rules, "a/b/x.log")  # **/ is any depth
    assert excluded(rules, "docs/other.md") and not excluded(rules, "docs/keep.md")
    assert excluded(rules, "abc") and not excluded(rules, "abbc")


NEVER_IN_CONTEXT = [
    "config/secrets/env.hjson",
    "config/secrets/udp-service-account.json",
    ".venv/bin/python",
    ".venv/lib/python3.11/site-packages/pandas/__init__.py",
    "data/course_inventory.sqlite3",
    "data/reports/2026-03-12.html",
    "data/course.csv",
    ".data/mysql/ibdata1",
    ".git/HEAD",
    ".git/objects/ab/cdef",
    "db/__pycache__/engine.cpython-311.pyc",
    "course_inventory/__pycache__/job.cpython-311.pyc",
    ".pytest_cache/v/cache/lastfailed",
    ".ruff_cache/0.6.0/123",
    "course_inventory.egg-info/PKG-INFO",
    "build/lib/courseinv/db/engine.py",
]


@pytest.mark.parametrize("path", NEVER_IN_CONTEXT)
def test_dockerignore_keeps_secrets_state_and_caches_out(path: str) -> None:
    assert excluded(load_dockerignore(), path)


def test_dockerignore_keeps_everything_the_image_installs() -> None:
    rules = load_dockerignore()
    needed = ["pyproject.toml", "setup.py", "README.md", "run_jobs.py", "create_db.py"]
    packages = find_packages(str(ROOT), exclude=["tests", "tests.*", "benchmarks", "benchmarks.*"])
    assert {"config", "db", "runner", "course_inventory", "mivideo", "online_meetings"} <= set(
        packages
    )
    for top in sorted({package.split(".")[0] for package in packages}):
        needed += [
            str(p.relative_to(ROOT))
            for p in (ROOT / top).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and "secrets" not in p.parts
        ]
    assert "config/env_schema.hjson" in needed and "db/migrations/0001.initial_schema.py" in needed
    dropped = [p for p in needed if excluded(rules, p)]
    assert dropped == []


# -- Dockerfile ------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", re.sub(r"(?m)^\s*#.*\n", "", text))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    steps = dockerfile()
    copies = [(i, args) for i, (word, args) in enumerate(steps) if word == "COPY"]
    deps = next(i for i, (w, a) in enumerate(steps) if w == "RUN" and "-r /tmp/requirements" in a)
    code = next(i for i, args in copies if args == ". .")
    install = next(i for i, (w, a) in enumerate(steps) if w == "RUN" and "--no-deps ." in a)
    assert copies[0][1].split()[:-1] == ["pyproject.toml", "setup.py", "README.md"]
    assert copies[0][0] < deps < code < install
    assert [args for _, args in copies] == [copies[0][1], ". ."]  # no package listed by hand


def test_dependency_layer_installs_exactly_the_declared_dependencies() -> None:
    run = next(a for w, a in dockerfile() if w == "RUN" and "tomllib" in a)
    script = re.search(r'python -c "(.*?)" >', run)
    assert script is not None
    # The shell passes '\n' inside the double quotes to Python as the two characters.
    printed = subprocess.run(
        [sys.executable, "-c", script.group(1)], cwd=ROOT, capture_output=True, text=True
    )
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.split("\n")[:-1] == declared


def test_image_runs_as_non_root_with_a_group_0_writable_data_folder() -> None:
    steps = dockerfile()
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1].isdigit() and int(users[-1]) != 0
    setup = " ".join(args for word, args in steps if word == "RUN")
    assert re.search(r"useradd --uid (\d+) --gid 0 ", setup).group(1) == users[-1]
    assert f"chown {users[-1]}:0 /app/data" in setup
    mode = re.search(r"chmod (\d{3,4}) /app/data", setup)
    assert mode is not None and int(mode.group(1)[-3], 8) & 0o6 == 0o6  # group rw
    assert steps[-1] == ("CMD", '["course-inventory", "run"]')
    env = " ".join(args for word, args in steps if word == "ENV")
    assert "USER=" in env and "ENV_DIR=/app/config/secrets" in env


# -- docker-compose.yaml and the README ---------------------------------------------------


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    result = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin:/usr/local/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_readme_docker_steps_match_the_compose_file_and_the_image() -> None:
    compose = (ROOT / "docker-compose.yaml").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    deployment = readme.split("## Deployment", 1)[1].split("\n## ", 1)[0]
    # Every host folder the compose file mounts is created in the README's steps.
    for host in re.findall(r"- \$\{HOME\}/([\w./-]+):", compose):
        assert f"~/{host}" in deployment, host
    for service in re.findall(r"(?m)^  (\w+):$", compose):
        assert re.search(rf"docker compose (--profile \w+ )?up (-d )?{service}\b", deployment), service
    # The job's INVENTORY_DB is the mysql service's database and user.
    db = json.loads(re.search(r"INVENTORY_DB: '(.*)'", compose).group(1))
    assert db["host"] == "mysql"
    for key, env in (
        ("dbname", "MYSQL_DATABASE"),
        ("user", "MYSQL_USER"),
        ("password", "MYSQL_PASSWORD"),
    ):
        assert re.search(rf"{env}: {db[key]}\n", compose), key
    assert "HOST_UID=$(id -u) docker compose up job" in deployment
    assert "cp config/env_blank.hjson ~/secrets/course-inventory/env.hjson" in deployment
    assert "docker build" in deployment and ".dockerignore" in deployment
