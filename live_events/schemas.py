"""The package's versioned JSON Schemas (``schemas/<format>/<name>.v<N>.json``).

Each handled event type has one schema per format; ``canvas/envelope`` and
``caliper/event`` check every other event. A schema lists the fields Canvas documents;
a field it does not list is drift (kept in the payload, counted), unless the schema
marks that object ``"additionalProperties": true`` explicitly (an open map).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs

_IDENT = re.compile(r"^[A-Za-z_@$][A-Za-z0-9_@$]*$")


@dataclass(frozen=True)
class Schema:
    name: str  # e.g. "canvas/course_created.v1"
    document: dict[str, Any]
    validator: Any  # a compiled jsonschema_rs validator (microseconds per event)
    closed: Any  # the same, refusing every field ``unknown_fields`` would name

    @classmethod
    def compile(cls, name: str, document: dict[str, Any]) -> Schema:
        """Compile ``document`` (a broken schema file fails loudly)."""
        closed = jsonschema_rs.validator_for(_closed(document))
        return cls(name, document, jsonschema_rs.validator_for(document), closed)

    def problems(self, value: Any) -> list[str]:
        """Readable validation errors, at most three, with the failing field path."""
        if self.validator.is_valid(value):
            return []
        errors = sorted(self.validator.iter_errors(value), key=lambda e: list(e.instance_path))
        return [f"{field_path(e.instance_path) or '(top)'}: {e.message[:200]}" for e in errors[:3]]

    def unknown_fields(self, value: Any) -> list[str]:
        """Paths of the fields the schema does not list (drift), sorted."""
        if self.closed.is_valid(value):  # the common case, decided in Rust
            return []
        found: list[str] = []
        _unknown(self.document, value, (), found)
        return sorted(set(found))


@cache
def schema(fmt: str, name: str) -> Schema | None:
    """The latest version of the schema ``fmt/name``, or None when there is none."""
    folder = resources.files(__package__).joinpath("schemas", fmt)
    versions = sorted(
        (int(m.group(1)), entry.name)
        for entry in folder.iterdir()
        if (m := re.fullmatch(re.escape(name) + r"\.v(\d+)\.json", entry.name))
    )
    if not versions:
        return None
    version, file_name = versions[-1]
    document = json.loads(folder.joinpath(file_name).read_text(encoding="utf-8"))
    return Schema.compile(f"{fmt}/{name}.v{version}", document)


def field_path(parts: Any) -> str:
    """``["object", "extensions", "com.instructure.canvas", "x"]`` ->
    ``object.extensions["com.instructure.canvas"].x`` (list indexes as ``[]``)."""
    out = ""
    for part in parts:
        if isinstance(part, int) or part == "[]":
            out += "[]"
        elif _IDENT.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _closed(node: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``node`` with ``additionalProperties: false`` wherever ``_unknown`` would
    name an unlisted field (the same walk: ``properties`` and ``items``)."""
    out = dict(node)
    if isinstance(node.get("properties"), dict):
        out["properties"] = {
            k: _closed(v) if isinstance(v, dict) else v for k, v in node["properties"].items()
        }
        if node.get("additionalProperties") is not True:
            out["additionalProperties"] = False
    if isinstance(node.get("items"), dict):
        out["items"] = _closed(node["items"])
    return out


def _unknown(node: dict[str, Any], value: Any, path: tuple[Any, ...], out: list[str]) -> None:
    """Append to ``out`` the paths of ``value``'s fields that ``node`` does not list.

    Only containers are walked (a scalar has no fields); a path is spelled out only for
    a field found unknown.
    """
    if isinstance(value, dict):
        props = node.get("properties")
        if props is None:
            return
        open_map = node.get("additionalProperties") is True
        for key, item in value.items():
            if key in props:
                if isinstance(item, (dict, list)):
                    _unknown(props[key], item, (*path, key), out)
            elif not open_map:
                out.append(field_path((*path, key)))
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            if isinstance(item, (dict, list)):
                _unknown(node["items"], item, (*path, "[]"), out)
