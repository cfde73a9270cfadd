"""Load, override, default and validate the HJSON config, once, at start.

``load_config`` returns a read-only ``Config`` or raises ``ConfigError`` listing every
problem with its key path. Nothing here runs at import time.

Environment overrides: a variable named like a top-level key (``CANVAS``) replaces it,
parsed as JSON when it is valid JSON; ``SECTION__KEY`` (``CANVAS__CANVAS_TOKEN``,
``INVENTORY_DB__password``) replaces one nested key, so a Kubernetes Secret can supply
just the secrets. A key whose schema type is only ``string`` takes the text verbatim.

No problem message quotes a value that came from the environment, that sits in a
section holding secrets (CANVAS, UDW, INVENTORY_DB, MIVIDEO, ZOOM), or that is a secret:
a token typed into the wrong field or a password inside a URL is never printed.
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
from courseinv.db.engine import url_problem
from jsonschema import Draft202012Validator, FormatChecker, ValidationError

SCHEMA_PATH = Path(__file__).with_name("env_schema.hjson")
DEFAULT_ENV_DIR = "config/secrets"
DEFAULT_ENV_FILE = "env.hjson"

ENV_NESTING = "__"  # CANVAS__CANVAS_TOKEN overrides CANVAS.CANVAS_TOKEN

# Config sections each job needs in addition to the schema's own requirements.
JOB_REQUIRES: dict[str, tuple[str, ...]] = {
    "COURSE_INVENTORY": ("CANVAS",),
    "MIVIDEO": ("MIVIDEO",),
    "ONLINE_MEETINGS": ("CANVAS",),
}
# Lists a job cannot do without: empty, the job would publish empty tables.
JOB_NEEDS_ITEMS: dict[str, tuple[str, ...]] = {"ONLINE_MEETINGS": ("LTI_TOOLS",)}

URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^/@\s:]*):(?P<password>[^@\s]*)@")


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
    schema = load_schema()
    raw, from_env, problems = apply_env_overrides(raw, env, schema)
    _apply_defaults(raw, schema, schema)
    _normalise(raw)
    problems += validate(raw, schema, job_names, from_env)
    if problems:
        raise ConfigError(config_path, _scrub(problems, raw, schema))
    secrets = secret_values(raw, schema) + _key_file_secrets(raw, config_path.parent)
    return Config(data=_freeze(raw), path=config_path.resolve(), secrets=tuple(secrets))


def _normalise(raw: dict[str, Any]) -> None:
    """Forgivable spellings: a CANVAS_URL ending in ``/api/v1`` (the API root) loses it."""
    canvas = raw.get("CANVAS")
    url = canvas.get("CANVAS_URL") if isinstance(canvas, dict) else None
    if isinstance(url, str):
        canvas["CANVAS_URL"] = re.sub(r"(/api/v1)?/*$", "", url.strip(), flags=re.I)


def _scrub(problems: list[str], raw: Any, schema: dict[str, Any]) -> list[str]:
    """Last line of defence: mask every secret value and URL password of the config."""
    secrets = [s for s in secret_values(raw, schema) + _all_url_passwords(raw) if len(s) >= 3]
    out = []
    for problem in problems:
        for secret in sorted(set(secrets), key=len, reverse=True):
            problem = problem.replace(secret, "***")
        out.append(problem)
    return out


def _all_url_passwords(raw: Any) -> list[str]:
    """The password of every URL-looking string anywhere in the config."""
    if isinstance(raw, dict):
        return [p for v in raw.values() for p in _all_url_passwords(v)]
    if isinstance(raw, list):
        return [p for v in raw for p in _all_url_passwords(v)]
    if isinstance(raw, str):
        return [m.group("password") for m in URL_PASSWORD.finditer(raw) if m.group("password")]
    return []


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
        data = path.read_bytes()
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            path,
            [
                f"the config file is not UTF-8 text (byte 0x{data[exc.start]:02x} on line "
                f"{line}); save it as UTF-8"
            ],
        ) from None
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
    except (ValueError, RecursionError) as exc:
        raise ConfigError(path, [f"invalid HJSON: {type(exc).__name__}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(path, ["the config must be an object of keys and values"])
    return data


def apply_env_overrides(
    raw: dict[str, Any], environ: Mapping[str, str], schema: dict[str, Any]
) -> tuple[dict[str, Any], dict[tuple[str, ...], str], list[str]]:
    """Apply ``KEY`` and ``SECTION__KEY`` variables to a copy of ``raw``.

    Returns the new config, the key path each variable set (for messages that name the
    variable instead of quoting its value), and problems with the variables themselves.
    """
    out = json.loads(json.dumps(raw))  # a deep copy
    from_env: dict[tuple[str, ...], str] = {}
    problems: list[str] = []
    overrides = []
    for name in environ:
        path = _env_path(name, schema, problems)
        if path:
            overrides.append((len(path), name, path))
    for _, name, path in sorted(overrides):  # whole sections before their keys
        target = _schema_at(schema, path)
        try:
            value = _parse_env(environ[name], target)
        except ValueError as exc:
            problems.append(f"{'.'.join(path)} (environment variable {name}): {exc}")
            continue
        parent = out
        for part in path[:-1]:
            parent = parent.setdefault(part, {})
            if not isinstance(parent, dict):
                problems.append(
                    f"{'.'.join(path)} (environment variable {name}): "
                    f"{part} is not an object in the config file"
                )
                break
        else:
            parent[path[-1]] = value
            from_env[path] = name
    return out, from_env, problems


def _env_path(name: str, schema: dict[str, Any], problems: list[str]) -> tuple[str, ...]:
    """The key path an environment variable overrides, or () when it names no key."""
    top = schema["properties"]
    if name in top:
        return (name,)
    section, sep, rest = name.partition(ENV_NESTING)
    if not sep or section not in top or not rest:
        return ()
    path = [section]
    for part in rest.split(ENV_NESTING):
        keys = _keys_of(_schema_at(schema, tuple(path)), schema)
        match = next((k for k in keys if k == part), None) or next(
            (k for k in keys if k.lower() == part.lower()), None
        )
        if match is None:
            where = ".".join(path)
            problems.append(
                f"environment variable {name}: {where} has no key {part!r}"
                + (f"; expected one of {', '.join(sorted(keys))}" if keys else "")
            )
            return ()
        path.append(match)
    return tuple(path)


def _keys_of(node: dict[str, Any], root: dict[str, Any]) -> list[str]:
    """Property names of an object schema, including those of its ``oneOf`` forms."""
    node = _resolve(node, root)
    keys = list(node.get("properties", {}))
    for alt in node.get("oneOf", []):
        keys += [k for k in _keys_of(alt, root) if k not in keys]
    return keys


def _schema_at(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node = schema
    for part in path:
        node = _resolve(node, schema)
        found = node.get("properties", {}).get(part)
        for alt in node.get("oneOf", []):
            found = found or _resolve(alt, schema).get("properties", {}).get(part)
        node = found or {}
    return _resolve(node, schema)


def _parse_env(value: str, target: dict[str, Any]) -> Any:
    """A string-only key takes the text as is; others parse JSON when it is JSON.

    Text that starts like a JSON object or list but does not parse is an error (whose
    message quotes nothing of the value).
    """
    if target.get("type") == "string":
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        if value.lstrip()[:1] in ("{", "["):
            msg = getattr(exc, "msg", "invalid")
            raise ValueError(
                f"not valid JSON ({msg} at line {getattr(exc, 'lineno', '?')}, "
                f"column {getattr(exc, 'colno', '?')})"
            ) from None
        return value


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
    raw: dict[str, Any],
    schema: dict[str, Any],
    job_names: list[str] | None = None,
    from_env: Mapping[tuple[str, ...], str] | None = None,
) -> list[str]:
    """Every problem as ``key.path: what was expected`` (quoting no secret value)."""
    validator = Draft202012Validator(schema, format_checker=format_checker())
    problems = [_describe(err, schema, from_env or {}) for err in validator.iter_errors(raw)]
    jobs = raw.get("JOB_NAMES")
    if isinstance(jobs, list):
        known = [n.upper() for n in job_names] if job_names is not None else None
        env_jobs = (from_env or {}).get(("JOB_NAMES",))
        for i, name in enumerate(jobs):
            if not isinstance(name, str):
                continue
            if known is not None and name.upper() not in known:
                shown = f" (environment variable {env_jobs})" if env_jobs else f" {name!r}"
                problems.append(
                    f"JOB_NAMES[{i}]: unknown job{shown}; expected one of {', '.join(known)}"
                )
            problems += _job_needs(name.upper(), raw)
    return _first_per_key(problems)


def _job_needs(job: str, raw: Mapping[str, Any]) -> list[str]:
    problems = [
        f"{section}: required by job {job} but missing"
        for section in JOB_REQUIRES.get(job, ())
        if section not in raw
    ]
    problems += [
        f"{key}: job {job} needs at least one entry (an empty list would empty its tables)"
        for key in JOB_NEEDS_ITEMS.get(job, ())
        if isinstance(raw.get(key, []), list) and not raw.get(key)
    ]
    return problems


@cache
def format_checker() -> FormatChecker:
    """The draft's format checks plus ``database-url`` (a URL the project can connect with)."""
    checker = FormatChecker(formats=())
    checker.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
    checker.checks("database-url")(lambda v: not isinstance(v, str) or url_problem(v) is None)
    return checker


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


def _holds_secret(node: Any, root: dict[str, Any]) -> bool:
    """Whether a schema node is, or contains, a key marked ``secret``."""
    if not isinstance(node, dict):
        return False
    node = _resolve(node, root)
    if node.get("secret"):
        return True
    children = [*node.get("properties", {}).values(), *node.get("oneOf", [])]
    if isinstance(node.get("items"), dict):
        children.append(node["items"])
    return any(_holds_secret(child, root) for child in children)


def _env_var_of(path: tuple[Any, ...], from_env: Mapping[tuple[str, ...], str]) -> str | None:
    """The environment variable that set ``path`` or a key above it."""
    for depth in range(len(path), 0, -1):
        name = from_env.get(tuple(str(p) for p in path[:depth]))
        if name:
            return name
    return None


def _may_quote(err: ValidationError, root: dict[str, Any], from_env_var: str | None) -> bool:
    """Quote the offending value only if it cannot be a secret."""
    path = list(err.absolute_path)
    if from_env_var or not path or (isinstance(err.schema, dict) and err.schema.get("secret")):
        return False
    section = root.get("properties", {}).get(path[0])
    return not _holds_secret(section, root)


def _describe(
    err: ValidationError, schema: dict[str, Any], from_env: Mapping[tuple[str, ...], str]
) -> str:
    """One readable line per error; never quotes a value that could be a secret."""
    where = _path(err)
    env_var = _env_var_of(tuple(err.absolute_path), from_env)
    if env_var:
        where += f" (environment variable {env_var})"
    kind = err.validator
    if kind == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        prefix = f"{_path(err)}." if err.absolute_path else ""
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
        return _describe(best, schema, from_env)
    if kind == "format" and err.validator_value == "database-url":
        return f"{where}: {url_problem(err.instance)}"
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
    detail = expected() if expected else f"invalid ({kind})"
    if kind == "minLength" or not _may_quote(err, schema, env_var):
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
