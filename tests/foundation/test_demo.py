"""The demo and the sandbox through the main command."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_demo_runs_every_job_into_sqlite(tmp_path: Path) -> None:
    result = run_cli(["demo", "--courses", "40", "--latency-ms", "0", "--data-dir", str(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for job in ("COURSE_INVENTORY", "MIVIDEO", "ONLINE_MEETINGS", "LIVE_EVENTS"):
        line = next(line for line in out.splitlines() if line.strip().startswith(job))
        assert " ok " in line and "rows" in line and "warning(s)" in line, line
    assert "FAILED" not in out
    for table in (
        "enrollment",
        "mivideo_media_created",
        "lti_placement",
        "live_event",
        "live_course_activity_hourly",
        "live_event_rejected",
    ):
        line = next(line for line in out.splitlines() if line.strip().startswith(table + " "))
        assert int(line.split()[-1].replace(",", "")) > 0, line
    database = tmp_path / "course_inventory.sqlite3"
    assert database.exists()
    assert "DEVELOPMENT SANDBOX" in out
    assert f"database:    {database}" in out and "<database>" not in out
    tables = [
        line.split()[0]
        for line in out.split("rows per table:")[1].split("requests made:")[0].splitlines()
        if line.strip()
    ]
    assert tables == sorted(tables) and "enrollment" in tables  # a stable order
    report = next(line for line in out.splitlines() if line.strip().startswith("run report:"))
    assert Path(report.split(":", 1)[1].strip()).parent == tmp_path / "reports"
    expected = next(line for line in out.splitlines() if "expected warnings" in line)
    assert "course(s) without analytics in Canvas" in expected
    assert "ADD_COURSE_IDS" not in result.stderr  # the demo's own config causes no warning
    assert "analytics unavailable, skipped" not in result.stderr  # summarised in that one line instead
    assert "WARNING" not in result.stderr, [
        line for line in result.stderr.splitlines() if "WARNING" in line
    ]
    # The config the demo leaves behind is enough for `status` on its database.
    status = run_cli(["--config", str(tmp_path / "demo-env.hjson"), "status", "--json"])
    assert status.returncode == 0, status.stdout + status.stderr
    assert "LIVE_EVENTS" in status.stdout and "ONLINE_MEETINGS" in status.stdout


def test_sandbox_help_through_main_command() -> None:
    result = run_cli(["sandbox", "--help"])
    assert result.returncode == 0 and "serve" in result.stdout and "DEVELOPMENT" in result.stdout


def test_sandbox_serve_help_through_main_command() -> None:
    result = run_cli(["sandbox", "serve", "--help"])
    assert result.returncode == 0
    assert "--latency-ms" in result.stdout and "--faults" in result.stdout
