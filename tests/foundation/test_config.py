"""Config loading: overrides, defaults, one clear message per problem, no leaked secret."""

from __future__ import annotations

import json
import re
from pathlib import Path

import hjson
import pytest
from courseinv.config import ConfigError, load_config
from courseinv.config.loader import load_schema
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
DB_ENTRY = (
    'INVENTORY_DB: {host: "db", port: "3306", dbname: "ci", user: "u", password: "pw-secret-1"}'
)
BLANK = ROOT / "config/env_blank.hjson"


def write(tmp_path: Path, text: str | bytes, name: str = "env.hjson") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=env or {}, job_names=job_names())
    return info.value.problems


# -- loading, defaults, overrides ----------------------------------------------------------


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
    env["JOB_NAMES"] = '["course_inventory"]'
    env["LTI_TOOLS"] = '[{"canvas_id": 5, "des": "Zoom"}]'
    config = load_config(path, environ=env, job_names=job_names())
    assert config["NUM_ASYNC_WORKERS"] == 4 and config["LOG_LEVEL"] == "DEBUG"
    assert config.job_names == ["COURSE_INVENTORY"]
    assert config["LTI_TOOLS"][0]["des"] == "Zoom"


def test_nested_override_replaces_one_key_only(tmp_path: Path) -> None:
    env = {
        "CANVAS__CANVAS_TOKEN": "12345678",  # a text key: stays text, not the number
        "INVENTORY_DB__PASSWORD": "pw-from-secret",  # key names match case-insensitively
        "CANVAS__CANVAS_TERM_IDS": "[7]",  # other keys parse as JSON
    }
    config = load_config(write(tmp_path, VALID), environ=env, job_names=job_names())
    assert config["CANVAS"]["CANVAS_TOKEN"] == "12345678"
    assert config["CANVAS"]["CANVAS_URL"] == "https://canvas.example.edu"
    assert config["CANVAS"]["CANVAS_TERM_IDS"] == (7,)
    assert config["INVENTORY_DB"]["password"] == "pw-from-secret"
    assert config["INVENTORY_DB"]["host"] == "db"
    assert "pw-from-secret" in config.secrets and "pw-secret-1" not in config.secrets


def test_nested_override_builds_a_section_absent_from_the_file(tmp_path: Path) -> None:
    text = VALID.replace(DB_ENTRY, "")
    env = {"INVENTORY_DB__url": "postgresql+psycopg2://u:pg-env-pw@h/db"}
    config = load_config(write(tmp_path, text), environ=env, job_names=job_names())
    assert dict(config["INVENTORY_DB"]) == {"url": env["INVENTORY_DB__url"]}
    assert "pg-env-pw" in config.secrets


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"CANVAS__NOPE": "1"},
            "environment variable CANVAS__NOPE: CANVAS has no key 'NOPE'; expected one of "
            "ADD_COURSE_IDS, API_BASE_URL, API_CLIENT_ID, API_CLIENT_SECRET, API_DIRECT_PATHS, "
            "API_SCOPE_PREFIX, API_SUBSCRIPTION_NAME, CANVAS_ACCOUNT_ID, CANVAS_TERM_IDS, "
            "CANVAS_TOKEN, CANVAS_URL, INVENTORY_SOURCE, REPORTS",
        ),
        (
            {"CANVAS__CANVAS_ACCOUNT_ID": "acct-canary"},
            "CANVAS.CANVAS_ACCOUNT_ID (environment variable CANVAS__CANVAS_ACCOUNT_ID): "
            "expected an integer",
        ),
        (
            {"MAX_REQ_ATTEMPTS": "many-canary"},
            "MAX_REQ_ATTEMPTS (environment variable MAX_REQ_ATTEMPTS): expected an integer",
        ),
        (
            {"CANVAS": '{"CANVAS_TOKEN": "tok-canary"'},
            "CANVAS (environment variable CANVAS): not valid JSON "
            "(Expecting ',' delimiter at line 1, column 30)",
        ),
    ],
)
def test_bad_environment_value_names_the_variable_not_the_value(
    tmp_path: Path, env: dict[str, str], problem: str
) -> None:
    problems = problems_of(tmp_path, VALID, env)
    assert problems == [problem]
    assert not any("canary" in p for p in problems)


def test_env_dir_and_env_file_choose_the_file(tmp_path: Path) -> None:
    write(tmp_path, VALID, "other.hjson")
    config = load_config(None, environ={"ENV_DIR": str(tmp_path), "ENV_FILE": "other.hjson"})
    assert config.path == (tmp_path / "other.hjson").resolve()


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://u:pw@db.example.edu:3306/ci",
        "postgresql+psycopg2://u:pw@db.example.edu/ci",
        "postgresql://u:pw@db.example.edu/ci",
        "sqlite:////var/lib/course-inventory/ci.sqlite3",
    ],
)
def test_supported_database_urls_are_accepted(tmp_path: Path, url: str) -> None:
    text = VALID.replace(DB_ENTRY, f"INVENTORY_DB: {{url: {json.dumps(url)}}}")
    config = load_config(write(tmp_path, text), environ={}, job_names=job_names())
    assert config["INVENTORY_DB"]["url"] == url


# -- one clear message per problem ------------------------------------------------------------

MIVIDEO_BAD_DATE = (
    'MIVIDEO: {default_last_timestamp: "last tuesday", '
    'udp_service_account_json_filename: "k.json", kaltura_partner_id: 5, '
    'kaltura_user_secret: "ks-secret-9"}\n'
)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("CANVAS_ACCOUNT_ID: 1", "", ["CANVAS.CANVAS_ACCOUNT_ID: required key is missing"]),
        (
            'JOB_NAMES: ["course_inventory"]',
            'JOB_NAMES: ["course_inventory", "mivideo"]\nMAX_REQ_ATTEMPTS: "three"\n'
            + MIVIDEO_BAD_DATE,
            [
                'MAX_REQ_ATTEMPTS: expected an integer, got "three"',
                "MIVIDEO.default_last_timestamp: expected a valid date-time "
                "(ISO 8601, e.g. 2024-01-01T00:00:00Z)",
            ],
        ),
        (
            '"course_inventory"',
            '"course_inventory", "payroll"',
            [
                "JOB_NAMES[1]: unknown job 'payroll'; expected one of "
                "COURSE_INVENTORY, MIVIDEO, ONLINE_MEETINGS, LIVE_EVENTS"
            ],
        ),
        (
            '"course_inventory"',
            '"course_inventory", "mivideo"',
            ["MIVIDEO: required by job MIVIDEO but missing"],
        ),
        (
            '"course_inventory"',
            '"online_meetings"',
            [
                "LTI_TOOLS: job ONLINE_MEETINGS needs at least one entry "
                "(an empty list would empty its tables)"
            ],
        ),
        ('password: "pw-secret-1"', "password: 12345678", ["INVENTORY_DB.password: expected a string"]),
        (
            "CANVAS_ACCOUNT_ID: 1",
            'CANVAS_ACCOUNT_ID: "tok-typed-into-the-wrong-field"',
            ["CANVAS.CANVAS_ACCOUNT_ID: expected an integer"],
        ),
        (DB_ENTRY, 'INVENTORY_DB: "mysql+pymysql://u:url-pw-canary@h/db"', ["INVENTORY_DB: expected an object"]),
    ],
)
def test_problems_name_the_key_and_quote_only_harmless_values(
    tmp_path: Path, old: str, new: str, expected: list[str]
) -> None:
    assert old in VALID
    assert problems_of(tmp_path, VALID.replace(old, new)) == expected


def test_bad_hjson_syntax_names_the_line(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "{\n  JOB_NAMES: [\n")
    assert len(problems) == 1 and problems[0].startswith("invalid HJSON at line 3")


# -- through the real CLI: exit code 2, canaries never printed ------------------------------

CANARY = "x-canary-1"
URL_DB = "INVENTORY_DB: {{url: {}}}"


def _db_url(url: str) -> tuple[str, str]:
    return DB_ENTRY, URL_DB.format(json.dumps(url))


CLI_CASES = {
    # name: (file edit (old, new) or raw bytes, environment, expected fragment)
    "env-section-bad-json": (
        None,
        {"CANVAS": '{"CANVAS_TOKEN":"x-canary-1"'},
        "CANVAS (environment variable CANVAS): not valid JSON",
    ),
    "env-nested-wrong-type": (
        None,
        {"CANVAS__CANVAS_ACCOUNT_ID": CANARY},
        "CANVAS.CANVAS_ACCOUNT_ID (environment variable CANVAS__CANVAS_ACCOUNT_ID): expected an integer",
    ),
    "token-in-account-id": (
        ("CANVAS_ACCOUNT_ID: 1", f'CANVAS_ACCOUNT_ID: "{CANARY}"'),
        {},
        "CANVAS.CANVAS_ACCOUNT_ID: expected an integer",
    ),
    "token-in-canvas-url": (
        ("CANVAS_URL: https://canvas.example.edu", f'CANVAS_URL: "{CANARY}"'),
        {},
        "CANVAS.CANVAS_URL: expected a valid uri",
    ),
    "db-as-url-string": (
        (DB_ENTRY, f'INVENTORY_DB: "mysql+pymysql://u:{CANARY}@h/db"'),
        {},
        "INVENTORY_DB: expected an object",
    ),
    "not-a-url": (_db_url("not a url"), {}, "INVENTORY_DB.url: expected a database URL"),
    "url-with-bad-port": (
        _db_url(f"mysql+pymysql://u:{CANARY}@h:port/db"),
        {},
        "INVENTORY_DB.url: expected a database URL",
    ),
    "oracle-url": (
        _db_url(f"oracle://u:{CANARY}@h/db"),
        {},
        "INVENTORY_DB.url: unsupported database driver 'oracle'; supported URL forms: "
        "mysql+pymysql://",
    ),
    "mysqldb-url": (
        _db_url(f"mysql://u:{CANARY}@h/db"),
        {},
        "INVENTORY_DB.url: unsupported database driver 'mysql' (mysql:// means the MySQLdb driver",
    ),
    "udw-url-in-env": (
        None,
        {"UDW__url": f"oracle://u:{CANARY}@h/udw"},
        "UDW.url (environment variable UDW__url): unsupported database driver 'oracle'",
    ),
    "secret-of-wrong-type": (
        ('password: "pw-secret-1"', 'password: ["x-canary-1"]'),
        {},
        "INVENTORY_DB.password: expected a string",
    ),
    "not-utf8": (
        VALID.replace("tok-123456789", CANARY).encode("utf-8").replace(b"a comment", b"\xff\xfe"),
        {},
        "the config file is not UTF-8 text (byte 0xff on line 3)",
    ),
    "hjson-syntax": (
        ("CANVAS_TERM_IDS: [10, 11]", "CANVAS_TERM_IDS: [10, 11"),
        {"CANVAS__CANVAS_TOKEN": CANARY},
        "invalid HJSON at line",
    ),
}


@pytest.mark.parametrize(
    ("case", "command"),
    [(case, ("check-config", "run")[i % 2]) for i, case in enumerate(sorted(CLI_CASES))],
)
def test_cli_config_problem_exits_2_without_printing_a_secret(
    tmp_path: Path, case: str, command: str
) -> None:
    """Each case once, through one of the two commands that load the config."""
    edit, env, fragment = CLI_CASES[case]
    if isinstance(edit, bytes):
        text: str | bytes = edit
    elif edit is None:
        text = VALID
    else:
        assert edit[0] in VALID
        text = VALID.replace(edit[0], edit[1])
    path = write(tmp_path, text)
    result = run_cli([command, "--config", str(path)], env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert fragment in result.stderr
    assert "Traceback" not in output
    for secret in (CANARY, "pw-secret-1", "tok-123456789"):
        assert secret not in output


def test_cli_override_of_just_the_token_reaches_the_canvas_check(tmp_path: Path) -> None:
    # check-config tries the Canvas token; the URL is unreachable, so it fails (exit 1),
    # but validation passed with the token from the environment, never printed.
    text = VALID.replace("https://canvas.example.edu", "http://127.0.0.1:9").replace(
        DB_ENTRY, f"INVENTORY_DB: {{url: {json.dumps(f'sqlite:///{tmp_path}/out.sqlite3')}}}"
    )
    result = run_cli(
        ["check-config", "--config", str(write(tmp_path, text))],
        env={"CANVAS__CANVAS_TOKEN": CANARY},
    )
    assert result.returncode == 1, result.stderr
    assert re.search(r"(?m)^ok +output database \(INVENTORY_DB\)", result.stdout)
    assert re.search(r"(?m)^failed +Canvas .*connection refused", result.stdout)
    assert CANARY not in result.stdout + result.stderr


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    result = run_cli(["run"], env={"ENV_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "config file not found" in result.stderr


# -- the blank template -----------------------------------------------------------------------


def fill_required(blank: str, db_path: Path) -> str:
    """The template with CANVAS and INVENTORY_DB filled in, as a new user would."""
    filled = (
        blank.replace('CANVAS_URL: ""', "CANVAS_URL: https://canvas.example.edu")
        .replace('CANVAS_TOKEN: ""', "CANVAS_TOKEN: tok-123456789")
        .replace("CANVAS_ACCOUNT_ID: 0", "CANVAS_ACCOUNT_ID: 1")
    )
    db = re.compile(r"  INVENTORY_DB: \{.*?\n  \}\n", re.S)
    assert db.search(filled), "the template's INVENTORY_DB section moved"
    return db.sub(f"  INVENTORY_DB: {{url: {json.dumps(f'sqlite:///{db_path}')}}}\n", filled)


def test_blank_with_canvas_and_inventory_db_filled_in_is_valid(tmp_path: Path) -> None:
    text = fill_required(BLANK.read_text(encoding="utf-8"), tmp_path / "out.sqlite3")
    config = load_config(write(tmp_path, text), environ={}, job_names=job_names())
    assert config.job_names == ["COURSE_INVENTORY"]
    assert "UDW" not in config and "MIVIDEO" not in config and "ZOOM" not in config


def test_blank_optional_sections_uncommented_parse_and_list_only_value_problems(
    tmp_path: Path,
) -> None:
    text = fill_required(BLANK.read_text(encoding="utf-8"), tmp_path / "out.sqlite3")
    uncommented = re.sub(r"(?m)^(\s*)# ?", r"\1", text)
    parsed = hjson.loads(uncommented)
    assert {"UDW", "MIVIDEO", "ZOOM", "LTI_TOOLS"} <= set(parsed)
    problems = problems_of(tmp_path, uncommented)
    # Empty values only: no syntax error, no unknown key, no missing required key.
    assert problems and all(
        "expected" in p and "required" not in p and "Additional" not in p for p in problems
    ), problems


def test_check_config_on_the_blank_template_reports_key_paths() -> None:
    result = run_cli(["check-config", "--config", str(BLANK)])
    assert result.returncode == 2
    for key in ("CANVAS.CANVAS_URL", "CANVAS.CANVAS_TOKEN", "INVENTORY_DB.host"):
        assert f"  - {key}: " in result.stderr
    assert "MIVIDEO" not in result.stderr and "ZOOM" not in result.stderr
    assert "Traceback" not in result.stderr


def test_blank_template_documents_every_schema_key_and_the_env_convention() -> None:
    blank = BLANK.read_text(encoding="utf-8")
    for key, sub in load_schema()["properties"].items():
        assert key in blank, key
        for nested in sub.get("properties", {}):
            assert nested in blank, f"{key}.{nested}"
    assert "CANVAS__CANVAS_TOKEN" in blank
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "CANVAS__CANVAS_TOKEN" in readme
