"""Load, override, default and validate the HJSON config, once, at start.

``load_config`` returns a read-only ``Config`` or raises ``ConfigError`` listing every
problem with its key path. Nothing here runs at import time.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import hjson
from jsonschema import Draft202012Validator, ValidationError

SCHEMA_PATH = Path(__file__).with_name("env_schema.hjson")
DEFAULT_ENV_DIR = "config/secrets"
DEFAULT_ENV_FILE = "env.hjson"

# Config sections each job needs in addition to the schema's own requirements.
JOB_REQUIRES: dict[str, tuple[str, ...]] = {
    "COURSE_INVENTORY": ("CANVAS",),
    "MIVIDEO": ("MIVIDEO",),
    "ONLINE_MEETINGS": ("CANVAS",),
}


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid. ``problems`` lists each one."""

    def __init__(self, path: Path | None, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        where = f" in {path}" if path else ""
        super().__init__(
            f"{len(problems)} config problem(s){where}:\n  - " + "\n  - ".join(problems)
        )


@dataclass(frozen=True)
class Config(Mapping[str, Any]):
    """The validated config: a read-only mapping plus where it came from."""

    data: Mapping[str, Any]
    path: Path
    secrets: tuple[str, ...]  # every secret value, for redaction

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Config(path={str(self.path)!r}, keys={sorted(self.data)})"

    @property
    def env_dir(self) -> Path:
        return self.path.parent

    @property
    def job_names(self) -> list[str]:
        return [name.upper() for name in self.data["JOB_NAMES"]]

    def data_dir(self) -> Path:
        return Path(self.data["DATA_DIR"])


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("ENV_DIR", DEFAULT_ENV_DIR)) / env.get("ENV_FILE", DEFAULT_ENV_FILE)


@cache
def load_schema() -> dict[str, Any]:
    return hjson.loads(SCHEMA_PATH.read_text(encoding="utf-8"), object_pairs_hook=dict)


def load_config(
    path: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    job_names: list[str] | None = None,
) -> Config:
    """Read the HJSON file, apply environment overrides and defaults, validate.

    ``job_names`` are the registered jobs; JOB_NAMES entries outside it are errors.
    """
    env = os.environ if environ is None else environ
    config_path = Path(path) if path else default_config_path(env)
    raw = _read_file(config_path)
    raw = _apply_env_overrides(raw, env)
    schema = load_schema()
    _apply_defaults(raw, schema, schema)
    _normalise(raw)
    problems = validate(raw, schema, job_names)
    if problems:
        raise ConfigError(config_path, problems)
    secrets = secret_values(raw, schema) + _key_file_secrets(raw, config_path.parent)
    return Config(data=_freeze(raw), path=config_path.resolve(), secrets=tuple(secrets))


def _normalise(raw: dict[str, Any]) -> None:
    """Forgivable spellings: a CANVAS_URL ending in ``/api/v1`` (the API root) loses it."""
    canvas = raw.get("CANVAS")
    url = canvas.get("CANVAS_URL") if isinstance(canvas, dict) else None
    if isinstance(url, str):
        canvas["CANVAS_URL"] = re.sub(r"(/api/v1)?/*$", "", url.strip(), flags=re.I)


def _key_file_secrets(raw: Mapping[str, Any], env_dir: Path) -> list[str]:
    """The private key (and its id) inside the BigQuery service-account key file."""
    name = (raw.get("MIVIDEO") or {}).get("udp_service_account_json_filename")
    if not name:
        return []
    try:
        key = json.loads((env_dir / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []  # the MIVIDEO job reports a missing or broken key file itself
    values = [key.get("private_key"), key.get("private_key_id")] if isinstance(key, dict) else []
    out = [v for v in values if isinstance(v, str) and v]
    # Each line of a PEM key is a secret too, should the key be logged wrapped.
    for v in list(out):
        out.extend(line for line in v.splitlines() if len(line) >= 16 and "-----" not in line)
    return out


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            path, [f"config file not found: {path} (set ENV_DIR/ENV_FILE or --config)"]
        ) from None
    except OSError as exc:
        raise ConfigError(path, [f"cannot read config file {path}: {exc.strerror}"]) from None
    try:
        data = hjson.loads(text, object_pairs_hook=dict)
    except hjson.HjsonDecodeError as exc:
        raise ConfigError(
            path, [f"invalid HJSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(path, ["the config must be an object of keys and values"])
    return data


def _apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """A top-level key can be overridden by an environment variable of the same name."""
    schema_keys = load_schema()["properties"]
    out = dict(raw)
    for key in schema_keys:
        if key in environ:
            value = environ[key]
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
    return out


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        return target
    return node


def _apply_defaults(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> None:
    """Fill schema defaults into objects (recursively) and arrays of objects."""
    schema = _resolve(schema, root)
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            sub = _resolve(sub, root)
            if key not in value and "default" in sub:
                value[key] = json.loads(json.dumps(sub["default"]))
            if key in value:
                _apply_defaults(value[key], sub, root)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _apply_defaults(item, schema["items"], root)


def validate(
    raw: dict[str, Any], schema: dict[str, Any], job_names: list[str] | None = None
) -> list[str]:
    """Every problem as ``key.path: what was expected`` (no secret values)."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    problems = [_describe(err, schema) for err in validator.iter_errors(raw)]
    jobs = raw.get("JOB_NAMES")
    if isinstance(jobs, list):
        known = [n.upper() for n in job_names] if job_names is not None else None
        for i, name in enumerate(jobs):
            if not isinstance(name, str):
                continue
            if known is not None and name.upper() not in known:
                problems.append(
                    f"JOB_NAMES[{i}]: unknown job {name!r}; expected one of {', '.join(known)}"
                )
            for section in JOB_REQUIRES.get(name.upper(), ()):
                if section not in raw:
                    problems.append(f"{section}: required by job {name.upper()} but missing")
    return _first_per_key(problems)


def _first_per_key(problems: list[str]) -> list[str]:
    """Keep one problem per key path: the first is the most specific."""
    seen: set[str] = set()
    out = []
    for problem in problems:
        key = problem.split(":", 1)[0]
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return out


def _path(err: ValidationError) -> str:
    out = ""
    for part in err.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _is_secret(err: ValidationError, schema: dict[str, Any]) -> bool:
    return bool(isinstance(err.schema, dict) and err.schema.get("secret"))


def _describe(err: ValidationError, schema: dict[str, Any]) -> str:
    """One readable line per error; never echoes the value of a secret key."""
    where = _path(err)
    kind = err.validator
    if kind == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        prefix = f"{where}." if where != "(top level)" else ""
        return f"{prefix}{missing}: required key is missing"
    if kind == "additionalProperties":
        return f"{where}: {err.message}"
    if kind == "oneOf" and err.context:
        # A database entry: report against the closest alternative.
        best = min(err.context, key=lambda e: len(list(e.absolute_path)) * -1)
        if best.validator == "additionalProperties" and isinstance(err.instance, dict):
            return (
                f"{where}: expected either {{host, port, dbname, user, password}} or {{url}}, "
                f"got keys {sorted(err.instance)}"
            )
        return _describe(best, schema)
    expected = {
        "type": lambda: f"expected {_type_words(err.validator_value)}",
        "format": lambda: (
            f"expected a valid {err.validator_value}"
            + (
                " (ISO 8601, e.g. 2024-01-01T00:00:00Z)"
                if err.validator_value == "date-time"
                else ""
            )
        ),
        "enum": lambda: f"expected one of {', '.join(map(str, err.validator_value))}",
        "pattern": lambda: f"expected text matching {err.validator_value}",
        "minimum": lambda: f"expected a number >= {err.validator_value}",
        "maximum": lambda: f"expected a number <= {err.validator_value}",
        "minLength": lambda: "expected a non-empty string",
        "maxLength": lambda: f"expected at most {err.validator_value} characters",
        "minItems": lambda: f"expected at least {err.validator_value} item(s)",
    }.get(kind)
    detail = expected() if expected else err.message
    if _is_secret(err, schema) or kind in ("minLength",):
        return f"{where}: {detail}"
    shown = json.dumps(err.instance, default=str)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{where}: {detail}, got {shown}"


def _type_words(value: Any) -> str:
    names = [value] if isinstance(value, str) else list(value)
    words = {
        "integer": "an integer",
        "string": "a string",
        "object": "an object",
        "array": "a list",
        "boolean": "true or false",
        "number": "a number",
        "null": "null",
    }
    return " or ".join(words.get(n, n) for n in names)


def secret_values(
    raw: Any, schema: dict[str, Any], root: dict[str, Any] | None = None
) -> list[str]:
    """Every value in ``raw`` that the schema marks ``secret`` (for redaction)."""
    root = root or schema
    schema = _resolve(schema, root)
    found: list[str] = []
    if schema.get("secret") and isinstance(raw, str) and raw:
        found.append(raw)
        found.extend(_url_password(raw))
    for alt in schema.get("oneOf", []):
        found.extend(secret_values(raw, alt, root))
    if isinstance(raw, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in raw:
                found.extend(secret_values(raw[key], sub, root))
    return sorted(set(found), key=len, reverse=True)


def _url_password(url: str) -> list[str]:
    """The password inside a database URL is a secret of its own."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        return []
    return [str(password)] if password else []


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value
