"""Hostile Canvas payloads fail COURSE_INVENTORY with a named error; tables stay as they were.

The Canvas fake serves the malformed field itself (``tamper``: an edit of the JSON it
answers), so the job meets it exactly as it would from Canvas. Each case names the
endpoint, the object's id and the field in the error and in ``job_run.reason``, and the
previous contents of the six tables are untouched. Issue 14, items 2 and 7.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from courseinv.course_inventory.job import run
from courseinv.db.tables import job_run
from courseinv.runner.jobs import JobError, register_job, unregister_job
from courseinv.runner.run import run_job
from courseinv.sandbox.institution import Institution, InstitutionSpec
from sqlalchemy import Engine, select, text

from tests.course_inventory.helpers import (
    Canvas,
    assert_tables_equal,
    context,
    read_tables,
    url_of,
    write_config,
)

SMALL = InstitutionSpec(seed=8, terms=1, courses_per_term=16)


@pytest.fixture(scope="module")
def institution() -> Institution:
    return Institution.generate(SMALL)


@pytest.fixture(scope="module")
def canvas_server(institution: Institution) -> Iterator[Canvas]:
    with Canvas(institution, per_page_max=50) as server:
        yield server


@pytest.fixture
def canvas(canvas_server: Canvas) -> Iterator[Canvas]:
    yield canvas_server
    for endpoint in ("courses", "analytics", "graphql", "audit", "term", "account"):
        canvas_server.tamper(endpoint, None)


def first(edit: Callable[[dict[str, Any]], None]) -> Callable[[Any], Any]:
    """An edit of the first object of a list answer."""

    def apply(body: Any) -> Any:
        if isinstance(body, list) and body:
            edit(body[0])
        return body

    return apply


def set_field(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda obj: obj.__setitem__(name, value)


def drop_field(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda obj: obj.pop(name, None)


def first_enrollment(edit: Callable[[dict[str, Any]], None]) -> Callable[[Any], Any]:
    def apply(body: Any) -> Any:
        nodes = (((body.get("data") or {}).get("course") or {})
                 .get("enrollmentsConnection") or {}).get("nodes") or []  # fmt: skip
        if nodes:
            edit(nodes[0])
        return body

    return apply


def first_published_event(edit: Callable[[dict[str, Any]], None]) -> Callable[[Any], Any]:
    def apply(body: Any) -> Any:
        for event in body.get("events", []):
            if event.get("event_type") == "published":
                edit(event)
                break
        return body

    return apply


# endpoint, edit, the message the failure must contain (endpoint, object, field, problem)
CASES: dict[str, tuple[str, Callable[[Any], Any], list[str]]] = {
    "null total_students": (
        "courses", first(set_field("total_students", None)),
        ["/courses: course ", "total_students is null"],
    ),
    "missing total_students": (
        "courses", first(drop_field("total_students")),
        ["/courses: course ", "total_students is missing"],
    ),
    "empty course list": ("courses", lambda body: [], ["/courses: no courses at all"]),
    "null account_id": (
        "courses", first(set_field("account_id", None)), ["course ", "account_id is null"]
    ),
    "malformed account_id": (
        "courses", first(set_field("account_id", "12abc")), ["account_id is '12abc'"]
    ),
    "float-like course id": (
        "courses", first(set_field("id", "500002.0")),
        ["course 500002.0: id is '500002.0' (expected an integer)"],
    ),
    "malformed created_at": (
        "courses", first(set_field("created_at", "last tuesday")),
        ["created_at is 'last tuesday' (expected an ISO 8601 timestamp)"],
    ),
    "null views": (
        "analytics", first(set_field("views", None)),
        ["/analytics/activity: activity row ", "views is null"],
    ),
    "string views": (
        "analytics", first(set_field("views", "many")), ["views is 'many' (expected an integer)"]
    ),
    "malformed analytics date": (
        "analytics", first(set_field("date", "03/12/2026")), ["date is '03/12/2026'"]
    ),
    "float-like user id": (
        "graphql", first_enrollment(lambda n: n["user"].__setitem__("_id", "500002.0")),
        ["enrollmentsConnection: enrollment ", "user: _id is '500002.0'"],
    ),
    "null enrollment state": (
        "graphql", first_enrollment(set_field("state", None)), ["enrollment ", "state is null"]
    ),
    "malformed audit created_at": (
        "audit", first_published_event(set_field("created_at", "2026-13-45T99:00:00Z")),
        ["/api/v1/audit/course/courses/", "created_at is '2026-13-45T99:00:00Z'"],
    ),
}


@pytest.fixture
def loaded(
    institution: Institution, canvas: Canvas, sqlite_engine: Engine, tmp_path: Path
) -> tuple[Path, Engine, dict]:
    """A database holding a good run's tables, and the config that produced them."""
    config = write_config(tmp_path / "env.hjson", canvas, institution, url_of(sqlite_engine),
                          udw_url=None, CREATE_CSVS=False)  # fmt: skip
    run(context(config, sqlite_engine))
    return config, sqlite_engine, read_tables(sqlite_engine)


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_field_is_a_named_error_and_tables_stay(
    case: str, canvas: Canvas, loaded: tuple[Path, Engine, dict]
) -> None:
    config, engine, before = loaded
    endpoint, edit, expected = CASES[case]
    if endpoint == "audit":  # known publish dates are not read again: forget them
        with engine.begin() as conn:
            conn.execute(text("UPDATE course SET published_at = NULL"))
        before = read_tables(engine)
    canvas.tamper(endpoint, edit)
    with pytest.raises(JobError) as info:
        run(context(config, engine))
    message = str(info.value)
    for part in expected:
        assert part in message, message
    assert_tables_equal(read_tables(engine), before)


def test_term_and_account_fields_are_checked(
    canvas: Canvas, loaded: tuple[Path, Engine, dict]
) -> None:
    config, engine, before = loaded
    canvas.tamper("term", lambda body: {**body, "name": None})
    with pytest.raises(JobError, match=r"/terms/\d+: term \d+: name is null"):
        run(context(config, engine))
    canvas.tamper("term", None)
    canvas.tamper("account", lambda body: {**body, "id": 7.5, "root_account_id": None})
    with pytest.raises(JobError, match=r"/accounts/\d+: account 7.5: id is 7.5"):
        run(context(config, engine))
    assert_tables_equal(read_tables(engine), before)


@pytest.fixture
def course_inventory_job() -> Iterator[str]:
    """COURSE_INVENTORY under a test name, so run_job records it like the runner does."""
    register_job("TEST_PAYLOAD_CI", run)
    yield "TEST_PAYLOAD_CI"
    unregister_job("TEST_PAYLOAD_CI")


@pytest.mark.parametrize("database_url", ["mariadb", "postgres"], indirect=True)
def test_job_run_reason_names_the_field_and_holds_no_sql_or_row_data(
    institution: Institution, canvas: Canvas, database_url: str, tmp_path: Path,
    course_inventory_job: str,
) -> None:  # fmt: skip
    from courseinv.db.engine import make_engine
    from courseinv.db.migrate import migrate

    engine = make_engine(database_url)
    try:
        migrate(engine)
        config = write_config(tmp_path / "env.hjson", canvas, institution, database_url,
                              udw_url=None, CREATE_CSVS=False)  # fmt: skip
        canvas.tamper("courses", first(set_field("total_students", None)))
        outcome = run_job(course_inventory_job, context(config, engine))
        assert not outcome.succeeded
        canvas.tamper("courses", None)
        # A value the database refuses (too long for course.name): a database error, told
        # in one short line without the SQL statement or the row.
        long_name = "N" * 300 + " row-data-marker"
        canvas.tamper("courses", first(set_field("name", long_name)))
        logging.getLogger("test").info("expecting a database error")
        outcome = run_job(course_inventory_job, context(config, engine))
        assert not outcome.succeeded
        with engine.connect() as conn:
            reasons = conn.execute(select(job_run.c.reason).order_by(job_run.c.id)).scalars().all()
        assert "course " in reasons[0] and "total_students is null" in reasons[0]
        assert "/api/v1/accounts/" in reasons[0]
        for reason in reasons:
            assert "row-data-marker" not in reason and "NNNNNNNNNN" not in reason, reason
            for sql_word in ("INSERT", "SELECT", "COPY ", "[SQL", "parameters"):
                assert sql_word not in reason, reason
        assert any(w in reasons[1] for w in ("too long", "truncated")), reasons[1]
        assert len(reasons[1]) <= 300, reasons[1]
    finally:
        engine.dispose()
