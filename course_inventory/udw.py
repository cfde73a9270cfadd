"""What COURSE_INVENTORY reads from the Unizin Data Warehouse (Canvas Data 1 layout).

* ``section_sis_ids``: ``course_section_dim.sis_source_id`` of given Canvas section ids,
  queried in bounded chunks with bound parameters (never one unbounded ``IN`` list).
* ``canvasdatadate``: when UDW's Canvas data was taken (``unizin_metadata``), in UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from courseinv.runner.payload import Fields
from sqlalchemy import Engine, bindparam, column, select, table

CHUNK = 5_000

_sections = table("course_section_dim", column("canvas_id"), column("sis_source_id"))
_metadata = table("unizin_metadata", column("key"), column("value"))
_SIS_BY_ID = select(_sections.c.canvas_id, _sections.c.sis_source_id).where(
    _sections.c.canvas_id.in_(bindparam("ids", expanding=True))
)


class UdwDataError(Exception):
    """UDW answered, but not with what the job needs."""


def section_sis_ids(
    engine: Engine, section_ids: Iterable[int], *, chunk: int = CHUNK
) -> dict[int, str | None]:
    """``{canvas section id: sis_source_id}`` for the ids UDW has (absent ids are left out)."""
    ids = sorted({int(i) for i in section_ids})
    found: dict[int, str | None] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), chunk):
            rows = conn.execute(_SIS_BY_ID, {"ids": ids[start : start + chunk]})
            for canvas_id, sis in rows:
                row = Fields({"canvas_id": canvas_id, "sis_source_id": sis},
                             "UDW course_section_dim", "section", id_field="canvas_id")  # fmt: skip
                found[row.id("canvas_id")] = row.text("sis_source_id", required=False)
    return found


def canvasdatadate(engine: Engine) -> datetime:
    """The ``canvasdatadate`` of ``unizin_metadata``, parsed with its offset, as aware UTC."""
    query = select(_metadata.c.value).where(_metadata.c.key == "canvasdatadate")
    with engine.connect() as conn:
        value = conn.execute(query).scalar()
    if value is None:
        raise UdwDataError("UDW unizin_metadata has no canvasdatadate row")
    return parse_canvasdatadate(str(value))


def parse_canvasdatadate(value: str) -> datetime:
    """``2020-05-12 04:30:00.123+00:00`` (any offset) → aware UTC datetime.

    A value without an offset is taken as UTC.
    """
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UdwDataError(f"UDW canvasdatadate {value!r} is not an ISO datetime") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
