"""Config loading: overrides, defaults, and one clear message per problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from courseinv.config import ConfigError, load_config
from courseinv.runner.jobs import job_names

from tests.conftest import ROOT, run_cli

VALID = """
{
  // a comment, as HJSON allows
  JOB_NAMES: ["course_inventory"]
  CANVAS: {
    CANVAS_URL: https://canvas.example.edu
    CANVAS_TOKEN: tok-123456789
    CANVAS_ACCOUNT_ID: 1
    CANVAS_TERM_IDS: [10, 11]
  }
  INVENTORY_DB: {host: "db", port: "3306", dbname: "ci", user: "u", password: "pw-secret-1"}
}
"""


def write(tmp_path: Path, text: str, name: str = "env.hjson") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={}, job_names=job_names())
    return info.value.problems


def test_valid_config_gets_defaults_and_is_read_only(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), environ={}, job_names=job_names())
    assert config.job_names == ["COURSE_INVENTORY"]
    assert config["MAX_REQ_ATTEMPTS"] == 3 and config["NUM_ASYNC_WORKERS"] == 8
    assert config["LOG_LEVEL"] == "INFO" and config["CREATE_CSVS"] is False
    assert config["CANVAS"]["ADD_COURSE_IDS"] == ()
    assert config.env_dir == tmp_path.resolve()
    with pytest.raises(TypeError):
        config["CANVAS"]["CANVAS_TOKEN"] = "x"  # type: ignore[index]
    assert "tok-123456789" in config.secrets and "pw-secret-1" in config.secrets
    assert "tok-123456789" not in repr(config)


def test_environment_overrides_top_level_keys_parsed_as_json(tmp_path: Path) -> None:
    env = {"NUM_ASYNC_WORKERS": "4", "LOG_LEVEL": "DEBUG", "JOB_NAMES": '["mivideo"]'}
    path = write(tmp_path, VALID)
    with pytest.raises(ConfigError) as info:  # MIVIDEO now runs but has no section
        load_config(path, environ=env, job_names=job_names())
    assert info.value.problems == ["MIVIDEO: required by job MIVIDEO but missing"]
    env["JOB_NAMES"] = '["online_meetings"]'
    config = load_config(path, environ=env, job_names=job_names())
    assert config["NUM_ASYNC_WORKERS"] == 4 and config["LOG_LEVEL"] == "DEBUG"
    assert config.job_names == ["ONLINE_MEETINGS"]


def test_env_dir_and_env_file_choose_the_file(tmp_path: Path) -> None:
    write(tmp_path, VALID, "other.hjson")
    config = load_config(None, environ={"ENV_DIR": str(tmp_path), "ENV_FILE": "other.hjson"})
    assert config.path == (tmp_path / "other.hjson").resolve()


def test_missing_key(tmp_path: Path) -> None:
    text = VALID.replace("CANVAS_ACCOUNT_ID: 1", "")
    assert problems_of(tmp_path, text) == ["CANVAS.CANVAS_ACCOUNT_ID: required key is missing"]


def test_wrong_type_and_bad_date_time_are_all_reported(tmp_path: Path) -> None:
    text = VALID.replace(
        'JOB_NAMES: ["course_inventory"]',
        'JOB_NAMES: ["course_inventory", "mivideo"]\nMAX_REQ_ATTEMPTS: "three"',
    ).replace(
        "INVENTORY_DB",
        'MIVIDEO: {default_last_timestamp: "last tuesday", '
        'udp_service_account_json_filename: "k.json", kaltura_partner_id: 5, '
        'kaltura_user_secret: "ks-secret-9"}\nINVENTORY_DB',
    )
    problems = problems_of(tmp_path, text)
    assert 'MAX_REQ_ATTEMPTS: expected an integer, got "three"' in problems
    assert any(
        p.startswith("MIVIDEO.default_last_timestamp: expected a valid date-time") for p in problems
    )
    assert len(problems) == 2


def test_unknown_job_names_the_registered_ones(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path, VALID.replace('"course_inventory"', '"course_inventory", "payroll"')
    )
    assert problems == [
        "JOB_NAMES[1]: unknown job 'payroll'; expected one of COURSE_INVENTORY, MIVIDEO, ONLINE_MEETINGS"
    ]


def test_bad_hjson_syntax_names_the_line(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "{\n  JOB_NAMES: [\n")
    assert len(problems) == 1 and problems[0].startswith("invalid HJSON at line")


def test_secret_values_never_echoed_in_problems(tmp_path: Path) -> None:
    text = VALID.replace('password: "pw-secret-1"', "password: 12345678")
    problems = problems_of(tmp_path, text)
    assert problems == ["INVENTORY_DB.password: expected a string"]


def test_database_entry_accepts_url_form(tmp_path: Path) -> None:
    text = VALID.replace(
        'INVENTORY_DB: {host: "db", port: "3306", dbname: "ci", user: "u", password: "pw-secret-1"}',
        'INVENTORY_DB: {url: "postgresql+psycopg2://u:pg-pass-77@h/db"}',
    )
    config = load_config(write(tmp_path, text), environ={}, job_names=job_names())
    assert "pg-pass-77" in config.secrets


def test_cli_invalid_config_exit_code_2_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("CANVAS_ACCOUNT_ID: 1", 'CANVAS_ACCOUNT_ID: "one"'))
    result = run_cli(["run", "--config", str(path)])
    assert result.returncode == 2
    assert "CANVAS.CANVAS_ACCOUNT_ID: expected an integer" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "tok-123456789" not in result.stderr + result.stdout


def test_check_config_on_blank_template_reports_key_paths() -> None:
    result = run_cli(["check-config", "--config", str(ROOT / "config/env_blank.hjson")])
    assert result.returncode == 2
    for key in (
        "CANVAS.CANVAS_URL",
        "CANVAS.CANVAS_TOKEN",
        "INVENTORY_DB.host",
        "MIVIDEO.kaltura_partner_id",
        "ZOOM.CLIENT_SECRET",
    ):
        assert f"  - {key}: " in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    result = run_cli(["run"], env={"ENV_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "config file not found" in result.stderr


def test_blank_template_documents_every_schema_key() -> None:
    from courseinv.config.loader import load_schema

    blank = (ROOT / "config/env_blank.hjson").read_text(encoding="utf-8")
    schema = load_schema()
    for key, sub in schema["properties"].items():
        assert key in blank, key
        for nested in sub.get("properties", {}):
            assert nested in blank, f"{key}.{nested}"
