"""Shared pieces of the COURSE_INVENTORY tests: sandbox, config files, table snapshots."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd
from courseinv.config import Config, load_config
from courseinv.db import tables as t
from courseinv.runner.jobs import JobContext
from courseinv.sandbox.canvas import CanvasServer
from courseinv.sandbox.httpserver import Request, Response, Route
from courseinv.sandbox.institution import Institution, InstitutionSpec
from sqlalchemy import Engine, select, text

from tests.tables import normalise

# 100 courses; seed 8 keeps every awkward course name (unicode, emoji, both 255-character
# names) among the kept courses, and a unicode section name.
SPEC = InstitutionSpec(seed=8, terms=2, courses_per_term=50)
PER_PAGE_MAX = 10  # small REST pages: audit logs span pages, course pages repeat rows
TABLES = ("term", "account", "course", "course_section", "enrollment", "canvas_course_usage")
ORDER = {name: ["canvas_id"] for name in TABLES} | {"canvas_course_usage": ["course_id", "date"]}


class Canvas(CanvasServer):
    """The Canvas fake, plus a switch that takes it down after ``fail_after`` GraphQL calls."""

    def __init__(self, institution: Institution, **kwargs: Any) -> None:
        super().__init__(institution, **kwargs)
        self.fail_after: int | None = None
        self._graphql_seen = 0

    def before(self, request: Request, route: Route) -> Response | None:
        if self.fail_after is not None and route.endpoint == "graphql":
            with self._lock:
                self._graphql_seen += 1
                if self._graphql_seen >= self.fail_after:
                    self.down = True  # every later request: connection reset
        return super().before(request, route)

    def heal(self) -> None:
        self.fail_after, self._graphql_seen, self.down = None, 0, False


def write_config(
    path: Path,
    canvas: CanvasServer,
    institution: Institution,
    output_url: str,
    *,
    udw_url: str | None,
    **overrides: Any,
) -> Path:
    config: dict[str, Any] = {
        "JOB_NAMES": ["COURSE_INVENTORY"],
        "CREATE_CSVS": True,
        "DATA_DIR": str(path.parent / "data"),
        "NUM_ASYNC_WORKERS": 8,
        "CANVAS": {
            "CANVAS_URL": canvas.url,
            "CANVAS_TOKEN": canvas.token,
            "CANVAS_ACCOUNT_ID": canvas.account_id,
            "CANVAS_TERM_IDS": institution.term_ids,
        },
        "INVENTORY_DB": {"url": output_url},
        **overrides,
    }
    if udw_url is not None:
        config["UDW"] = {"url": udw_url}
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def context(config_path: Path, engine: Engine) -> JobContext:
    config: Config = load_config(config_path, environ={})
    log = logging.getLogger("test.course_inventory")
    return JobContext(config, engine, config.data_dir(), config.env_dir, log)


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def read_tables(engine: Engine, *, keep_usage_id: bool = False) -> dict[str, pd.DataFrame]:
    """The six tables as stored, in primary-key order."""
    out = {}
    with engine.connect() as conn:
        for name in TABLES:
            table = t.metadata.tables[name]
            query = select(table).order_by(*(table.c[k] for k in ORDER[name]))
            frame = pd.read_sql(query, conn)
            if name == "canvas_course_usage" and not keep_usage_id:
                frame = frame.drop(columns="id")
            out[name] = frame
    return out


def assert_tables_equal(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    for name in TABLES:
        assert list(got[name].columns) == list(want[name].columns), name
        assert len(got[name]) == len(want[name]), name
        g, w = normalise(got[name]), normalise(want[name])
        if name == "canvas_course_usage":  # DATE comes back as datetime on some backends
            k = list(want[name].columns).index("date")
            g = [(*r[:k], _day(r[k]), *r[k + 1 :]) for r in g]
            w = [(*r[:k], _day(r[k]), *r[k + 1 :]) for r in w]
        mismatch = next((i for i, (a, b) in enumerate(zip(g, w, strict=True)) if a != b), None)
        assert mismatch is None, f"{name} row {mismatch}: got {g[mismatch]}, want {w[mismatch]}"


def _day(value: Any) -> Any:
    return value.date() if hasattr(value, "date") and callable(value.date) else value


def audit_pages(institution: Institution, per_page: int, *, only_unpublished: bool) -> int:
    """Audit-log requests the job should make: pages walked until the newest ``published``
    event (or the whole log), for kept available courses (with ``only_unpublished``: only
    those that have no published event, i.e. are not cached after a first run)."""
    pages = 0
    for course in institution.kept_courses(institution.term_ids):
        if course.workflow_state != "available":
            continue
        events = institution.audit_events(course.id)
        first = next((i for i, e in enumerate(events) if e.event_type == "published"), None)
        if first is None:
            pages += max(1, math.ceil(len(events) / per_page))
        elif not only_unpublished:
            pages += first // per_page + 1
    return pages


def checksums(engine: Engine) -> dict[str, int]:
    """MariaDB's CHECKSUM TABLE of the six tables (changes with any byte of any row)."""
    with engine.connect() as conn:
        return {
            name: int(conn.execute(text(f"CHECKSUM TABLE `{name}`")).one()[1]) for name in TABLES
        }


__all__ = [
    "PER_PAGE_MAX",
    "SPEC",
    "TABLES",
    "Canvas",
    "assert_tables_equal",
    "audit_pages",
    "checksums",
    "context",
    "normalise",
    "read_tables",
    "url_of",
    "write_config",
]
