"""UDW seeding (SQLite and PostgreSQL), consistent with the institution's ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from courseinv.sandbox.institution import Institution, InstitutionSpec
from courseinv.sandbox.udw import canvasdatadate_text, seed_udw
from sqlalchemy import Engine, bindparam, create_engine, text

from tests.conftest import create_database, drop_database


@pytest.fixture(scope="module")
def inst() -> Institution:
    return Institution.generate(InstitutionSpec.sized(200, seed=9))


@pytest.fixture
def sqlite_udw(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'udw.sqlite3'}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_udw() -> Iterator[Engine]:
    url = create_database("postgres")
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        drop_database(url)


def check_udw(engine: Engine, inst: Institution) -> None:
    truth = inst.expected_course_inventory(inst.term_ids, udw=True)["course_section"]
    ids = [int(i) for i in truth["canvas_id"]]
    query = text(
        "SELECT canvas_id, sis_source_id AS sis_id FROM course_section_dim WHERE canvas_id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    with engine.connect() as conn:
        found = dict(conn.execute(query, {"ids": ids}).all())
        raw = conn.execute(
            text("SELECT value FROM unizin_metadata WHERE key = 'canvasdatadate'")
        ).scalar_one()
    # Left join of the referenced sections with UDW gives exactly the ground truth.
    assert [found.get(i) for i in ids] == [None if v != v else v for v in truth["sis_id"]]
    assert len(found) < len(ids) or not any(not s.in_udw for s in inst.sections)
    canvas = {s.id: s.sis_section_id for s in inst.sections}
    assert any(found[i] != canvas[i] for i in found)  # UDW differs from Canvas for some
    parsed = datetime.strptime(raw, "%Y-%m-%d %H:%M:%S.%f%z")
    assert parsed == inst.udw_canvasdatadate and inst.udw_canvasdatadate.tzinfo is UTC


def test_seed_sqlite(sqlite_udw: Engine, inst: Institution) -> None:
    counts = seed_udw(inst, sqlite_udw)
    assert counts["course_dim"] == len(inst.courses)
    in_udw = sum(s.in_udw for s in inst.sections)
    assert counts["course_section_dim"] == in_udw + 3  # plus deleted UDW-only sections
    check_udw(sqlite_udw, inst)
    assert seed_udw(inst, sqlite_udw) == counts  # re-seeding replaces, never duplicates
    with sqlite_udw.connect() as conn:
        total = conn.execute(text("SELECT COUNT(*) FROM course_section_dim")).scalar_one()
    assert total == counts["course_section_dim"]


def test_seed_from_url_with_non_utc_offset(tmp_path: Path, inst: Institution) -> None:
    url = f"sqlite:///{tmp_path / 'udw.sqlite3'}"
    seed_udw(inst, url, utc_offset_hours=-5)
    engine = create_engine(url)
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT value FROM unizin_metadata WHERE key='canvasdatadate'"))
        value = raw.scalar_one()
    engine.dispose()
    assert value.endswith("-05:00") and value == canvasdatadate_text(inst, -5)
    assert datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f%z") == inst.udw_canvasdatadate
    assert canvasdatadate_text(inst) == inst.udw_canvasdatadate.isoformat(" ", "milliseconds")


@pytest.mark.postgres
def test_seed_postgres(postgres_udw: Engine, inst: Institution) -> None:
    seed_udw(inst, postgres_udw)
    check_udw(postgres_udw, inst)
    with postgres_udw.connect() as conn:
        types = dict(
            conn.execute(
                text(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = 'course_section_dim'"
                )
            ).all()
        )
    assert types["canvas_id"] == "bigint" and types["sis_source_id"] == "character varying"
