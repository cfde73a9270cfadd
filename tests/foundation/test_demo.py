"""The demo and the sandbox through the main command."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_demo_runs_every_job_into_sqlite(tmp_path: Path) -> None:
    result = run_cli(["demo", "--courses", "40", "--latency-ms", "0", "--data-dir", str(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for job in ("COURSE_INVENTORY", "MIVIDEO", "ONLINE_MEETINGS"):
        assert f"job {job}" in out and "FAILED" not in out
    for table in ("enrollment", "mivideo_media_created", "lti_placement"):
        line = next(line for line in out.splitlines() if line.strip().startswith(table + " "))
        assert int(line.split()[-1].replace(",", "")) > 0, line
    assert (tmp_path / "course_inventory.sqlite3").exists()
    assert "DEVELOPMENT SANDBOX" in out


def test_sandbox_serve_help_through_main_command() -> None:
    result = run_cli(["sandbox", "serve", "--help"])
    assert result.returncode == 0
    assert "--latency-ms" in result.stdout and "--faults" in result.stdout
