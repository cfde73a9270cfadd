"""A sandbox Unizin Data Warehouse (Canvas Data 1 layout) consistent with an institution.

For development, tests, the demo and benchmarks only.

``seed_udw(institution, url_or_engine)`` (re)creates and fills, in SQLite or in a
PostgreSQL database it is given:

* ``course_dim``: one row per Canvas course (surrogate ``id``, ``canvas_id``, ...),
* ``course_section_dim``: one row per Canvas section, with CD1's surrogate ``id`` and
  ``course_id``, plus a few deleted UDW-only sections. ``sis_source_id`` equals Canvas's
  ``sis_section_id`` except for ``InstitutionSpec.share_udw_sis_differs`` of the sections
  (UDW wins when configured), and ``share_udw_missing`` of the sections are absent (UDW
  lags Canvas),
* ``unizin_metadata(key, value)`` with the row ``canvasdatadate``, e.g.
  ``2026-11-22 04:30:00.123+00:00`` (``utc_offset_hours`` writes the same instant with
  another offset); ``institution.udw_canvasdatadate`` is that instant, aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta, timezone
from typing import Any

from courseinv.sandbox.institution import Institution, naive_utc
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
)

CD1_ID_BASE = 17_340_000_000_000_000  # CD1 surrogate ids are shard-prefixed
BATCH = 5_000

metadata = MetaData()

course_dim = Table(
    "course_dim",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("canvas_id", BigInteger, nullable=False, index=True),
    Column("root_account_id", BigInteger),
    Column("account_id", BigInteger),
    Column("enrollment_term_id", BigInteger),
    Column("name", String(256)),
    Column("code", String(256)),
    Column("type", String(256)),
    Column("created_at", DateTime),
    Column("workflow_state", String(256)),
    Column("sis_source_id", String(256)),
)

course_section_dim = Table(
    "course_section_dim",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("canvas_id", BigInteger, nullable=False, index=True),
    Column("name", String(256)),
    Column("course_id", BigInteger),
    Column("enrollment_term_id", BigInteger),
    Column("default_section", Boolean),
    Column("accepting_enrollments", Boolean),
    Column("can_manually_enroll", Boolean),
    Column("start_at", DateTime),
    Column("end_at", DateTime),
    Column("created_at", DateTime),
    Column("updated_at", DateTime),
    Column("workflow_state", String(256)),
    Column("restrict_enrollments_to_section_dates", Boolean),
    Column("nonxlist_course_id", BigInteger),
    Column("sis_source_id", String(256)),
)

unizin_metadata = Table(
    "unizin_metadata",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text),
)


def canvasdatadate_text(institution: Institution, utc_offset_hours: float = 0.0) -> str:
    """The ``canvasdatadate`` value as UDW stores it, e.g. ``2026-11-22 04:30:00.123+00:00``."""
    zone = timezone(timedelta(hours=utc_offset_hours))
    return institution.udw_canvasdatadate.astimezone(zone).isoformat(
        sep=" ", timespec="milliseconds"
    )


def seed_udw(
    institution: Institution, url_or_engine: str | Engine, *, utc_offset_hours: float = 0.0
) -> dict[str, int]:
    """(Re)create the UDW tables and fill them; returns the row count per table."""
    engine = create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
        rows = {
            course_dim.name: list(_course_rows(institution)),
            course_section_dim.name: list(_section_rows(institution)),
            unizin_metadata.name: [
                {
                    "key": "canvasdatadate",
                    "value": canvasdatadate_text(institution, utc_offset_hours),
                },
                {"key": "schemaversion", "value": "4.2.4"},
            ],
        }
        with engine.begin() as conn:
            for table in (course_dim, course_section_dim, unizin_metadata):
                for batch in _batches(rows[table.name]):
                    conn.execute(table.insert(), batch)
        return {name: len(r) for name, r in rows.items()}
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def _course_rows(inst: Institution) -> Iterator[dict[str, Any]]:
    for c in inst.courses:
        yield {
            "id": CD1_ID_BASE + c.id,
            "canvas_id": c.id,
            "root_account_id": CD1_ID_BASE + inst.root_account_id,
            "account_id": CD1_ID_BASE + c.account_id,
            "enrollment_term_id": CD1_ID_BASE + c.term_id,
            "name": c.name,
            "code": c.course_code,
            "type": "Course",
            "created_at": naive_utc(c.created_at),
            "workflow_state": "claimed" if c.workflow_state == "unpublished" else c.workflow_state,
            "sis_source_id": c.sis_course_id,
        }


def _section_rows(inst: Institution) -> Iterator[dict[str, Any]]:
    by_course = inst.course_by_id
    last = 0
    for s in inst.sections:
        last = max(last, s.id)
        if not s.in_udw:
            continue
        course = by_course[s.course_id]
        yield _section_row(s.id, s.name, course.id, course.term_id, s.udw_sis_source_id, s)
    # A few sections UDW still has but Canvas no longer serves.
    first = inst.courses[0] if inst.courses else None
    for k in range(3 if first else 0):
        assert first is not None
        yield _section_row(
            last + 1 + k,
            f"Deleted section {k}",
            first.id,
            first.term_id,
            None,
            None,
            state="deleted",
        )


def _section_row(
    canvas_id: int,
    name: str,
    course_id: int,
    term_id: int,
    sis: str | None,
    section: Any,
    *,
    state: str = "active",
) -> dict[str, Any]:
    created = naive_utc(section.created_at) if section is not None else None
    return {
        "id": CD1_ID_BASE + canvas_id,
        "canvas_id": canvas_id,
        "name": name,
        "course_id": CD1_ID_BASE + course_id,
        "enrollment_term_id": CD1_ID_BASE + term_id,
        "default_section": False,
        "accepting_enrollments": True,
        "can_manually_enroll": True,
        "start_at": None,
        "end_at": None,
        "created_at": created,
        "updated_at": created,
        "workflow_state": state,
        "restrict_enrollments_to_section_dates": False,
        "nonxlist_course_id": None,
        "sis_source_id": sis,
    }


def _batches(rows: Sequence[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    for i in range(0, len(rows), BATCH):
        yield rows[i : i + BATCH]


__all__ = ["canvasdatadate_text", "metadata", "seed_udw"]
