"""COURSE_INVENTORY from account reports (``CANVAS.INVENTORY_SOURCE: reports``), end to
end over real HTTP: the Canvas sandbox with its report service, the file store on
another port, output into SQLite, MariaDB and PostgreSQL, compared with the API path and
the ground truth; report failures (error, deleted, stuck), formats (zip, single CSV,
missing and extra columns) and the token's confinement to the Canvas host."""

from __future__ import annotations

import logging
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from courseinv.config import ConfigError, load_config
from courseinv.course_inventory.job import run
from courseinv.course_inventory.report_files import (
    AttachmentDownloader,
    ReportFile,
    ReportFormatError,
)
from courseinv.course_inventory.report_runs import REPORT_TYPE
from courseinv.http_client.canvas import CanvasClient
from courseinv.http_client.stats import HttpStats
from courseinv.runner.jobs import JobError
from courseinv.sandbox.canvas import Competitor, ThrottleSpec
from courseinv.sandbox.canvas_reports import CanvasReports, FileStoreServer, ReportSpec
from courseinv.sandbox.httpserver import Faults
from courseinv.sandbox.institution import (
    AWKWARD_COURSE_NAMES,
    DELETED,
    TEST_STUDENT,
    Institution,
)
from courseinv.sandbox.udw import seed_udw
from sqlalchemy import Engine

from tests.course_inventory.helpers import (
    PER_PAGE_MAX,
    SPEC,
    Canvas,
    assert_tables_equal,
    checksums,
    context,
    read_tables,
    url_of,
    write_config,
)

FAST = {  # CANVAS.REPORTS for tests: short polls; fresh runs unless a test reuses
    "REUSE_MAX_AGE_SECONDS": 0,
    "POLL_INITIAL_SECONDS": 0.05,
    "POLL_MAX_SECONDS": 0.2,
    "STALL_SECONDS": 30,
    "MAX_RESTARTS": 2,
    "MAX_WAIT_SECONDS": 60,
}


@pytest.fixture(scope="module")
def institution() -> Institution:
    return Institution.generate(SPEC)


@pytest.fixture(scope="module")
def servers(institution: Institution) -> Iterator[tuple[Canvas, FileStoreServer, CanvasReports]]:
    with Canvas(institution, per_page_max=PER_PAGE_MAX) as canvas, FileStoreServer() as store:
        yield canvas, store, CanvasReports(canvas, store)


@pytest.fixture
def canvas(servers: tuple[Canvas, FileStoreServer, CanvasReports]) -> Iterator[Canvas]:
    canvas, store, reports = servers
    canvas.log.reset()
    store.log.reset()
    reports.spec = ReportSpec(generation_seconds=0.3)
    yield canvas
    canvas.heal()
    canvas.faults = Faults()
    canvas.throttle = ThrottleSpec()
    store.down = False
    store.faults = Faults()


@pytest.fixture
def store(servers: tuple[Canvas, FileStoreServer, CanvasReports]) -> FileStoreServer:
    return servers[1]


@pytest.fixture
def reports(servers: tuple[Canvas, FileStoreServer, CanvasReports]) -> CanvasReports:
    return servers[2]


def config_for(
    path: Path,
    canvas: Canvas,
    institution: Institution,
    engine: Engine,
    *,
    source: str = "reports",
    udw_url: str | None = None,
    top: dict[str, Any] | None = None,
    **reports: Any,
) -> Path:
    settings = {
        "CANVAS_URL": canvas.url,
        "CANVAS_TOKEN": canvas.token,
        "CANVAS_ACCOUNT_ID": canvas.account_id,
        "CANVAS_TERM_IDS": institution.term_ids,
        "INVENTORY_SOURCE": source,
        "REPORTS": {**FAST, **reports},
    }
    return write_config(
        path, canvas, institution, url_of(engine), udw_url=udw_url, CANVAS=settings, **(top or {})
    )


def truth(institution: Institution, *, udw: bool = False) -> dict[str, pd.DataFrame]:
    return institution.expected_course_inventory(institution.term_ids, udw=udw)


# -- the reports path equals the API path and the ground truth --------------------------


def test_ground_truth_exercises_what_the_reports_path_must_get_right(
    institution: Institution,
) -> None:
    want = truth(institution)
    kept = set(want["course"]["canvas_id"])
    sections = want["course_section"].set_index("canvas_id")
    xlisted = [
        s
        for s in institution.sections
        if s.nonxlist_course_id is not None and s.id in sections.index
    ]
    assert xlisted, "no cross-listed section among the kept ones"
    assert all(sections.loc[s.id, "course_id"] == s.course_id for s in xlisted)
    assert any(s.nonxlist_course_id not in kept for s in xlisted)  # origin not kept
    states = set(want["enrollment"]["workflow_state"])
    assert {"completed", "rejected", "inactive", "invited", "creation_pending"} <= states
    e = institution.enrollments
    assert (e.type == TEST_STUDENT).any() and (e.state == DELETED).any()
    assert set(AWKWARD_COURSE_NAMES) <= set(want["course"]["name"])
    assert any(n.endswith("🦤") for n in want["course_section"]["name"])


@pytest.mark.parametrize("backend", ["sqlite", "mariadb", "postgres"])
def test_reports_path_equals_api_path_and_truth(
    backend: str,
    institution: Institution,
    canvas: Canvas,
    store: FileStoreServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    engine: Engine = request.getfixturevalue(f"{backend}_engine")
    api = config_for(tmp_path / "api.hjson", canvas, institution, engine, source="api")
    run(context(api, engine))
    from_api = read_tables(engine)
    assert canvas.log.count("graphql") > 0

    canvas.log.reset()
    config = config_for(tmp_path / "reports.hjson", canvas, institution, engine)
    run(context(config, engine))
    from_reports = read_tables(engine)

    assert_tables_equal(from_reports, from_api)
    assert_tables_equal(from_reports, truth(institution))
    requests_made = canvas.log.by_endpoint()
    assert "graphql" not in requests_made and "sections" not in requests_made
    assert "reports.list" not in requests_made  # REUSE_MAX_AGE_SECONDS 0: no reuse at all
    assert requests_made["reports.start"] == len(institution.term_ids)
    assert requests_made["files.download"] == len(institution.term_ids)
    assert store.log.count("store.get", 200) == len(institution.term_ids)
    assert store.tokens_seen == 0


def test_udw_section_sis_ids_and_a_complete_run_reused(
    institution: Institution,
    canvas: Canvas,
    reports: CanvasReports,
    sqlite_engine: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    udw_url = f"sqlite:///{tmp_path / 'udw.sqlite3'}"
    seed_udw(institution, udw_url)
    fresh = config_for(tmp_path / "a.hjson", canvas, institution, sqlite_engine, udw_url=udw_url)
    run(context(fresh, sqlite_engine))
    assert_tables_equal(read_tables(sqlite_engine), truth(institution, udw=True))
    assert canvas.log.count("reports.start") == len(institution.term_ids)

    canvas.log.reset()
    reports.spec.drop_columns = {"enrollments": ("canvas_enrollment_id",)}  # new runs break
    config = config_for(
        tmp_path / "b.hjson",
        canvas,
        institution,
        sqlite_engine,
        udw_url=udw_url,
        REUSE_MAX_AGE_SECONDS=3600,
    )
    with caplog.at_level(logging.INFO, logger="test.course_inventory"):
        run(context(config, sqlite_engine))
    assert canvas.log.count("reports.start") == 0
    assert "reusing complete run" in caplog.text
    assert_tables_equal(read_tables(sqlite_engine), truth(institution, udw=True))


def test_base_role_type_missing_roles_come_from_role_names(
    institution: Institution,
    canvas: Canvas,
    reports: CanvasReports,
    sqlite_engine: Engine,
    tmp_path: Path,
) -> None:
    reports.spec.drop_columns = {"enrollments": ("base_role_type",)}
    reports.spec.extra_columns = False
    config = config_for(tmp_path / "env.hjson", canvas, institution, sqlite_engine)
    run(context(config, sqlite_engine))
    assert_tables_equal(read_tables(sqlite_engine), truth(institution))


def test_progress_shows_in_the_log(
    institution: Institution,
    canvas: Canvas,
    reports: CanvasReports,
    sqlite_engine: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reports.spec.generation_seconds = 1.5
    config = config_for(tmp_path / "env.hjson", canvas, institution, sqlite_engine)
    with caplog.at_level(logging.INFO, logger="test.course_inventory"):
        run(context(config, sqlite_engine))
    lines = [r.getMessage() for r in caplog.records]
    assert any("started run" in m for m in lines)
    assert any("running" in m and "% done" in m for m in lines)
    assert any("complete, 100% done" in m for m in lines)
    assert any("waiting for the account reports" in m for m in lines)


# -- failures leave the previous tables ---------------------------------------------------


@pytest.fixture
def published(
    institution: Institution, canvas: Canvas, mariadb_engine: Engine, tmp_path: Path
) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """A successful reports run into MariaDB: the tables and checksums a failure must keep."""
    config = config_for(tmp_path / "ok.hjson", canvas, institution, mariadb_engine)
    run(context(config, mariadb_engine))
    return read_tables(mariadb_engine, keep_usage_id=True), checksums(mariadb_engine)


def assert_unchanged(
    engine: Engine, before: tuple[dict[str, pd.DataFrame], dict[str, int]]
) -> None:
    assert_tables_equal(read_tables(engine, keep_usage_id=True), before[0])
    assert checksums(engine) == before[1]


@pytest.mark.parametrize("mode", ["error", "deleted"])
def test_error_or_deleted_report_fails_with_its_message(
    mode: str,
    institution: Institution,
    canvas: Canvas,
    reports: CanvasReports,
    mariadb_engine: Engine,
    published: tuple[dict[str, pd.DataFrame], dict[str, int]],
    tmp_path: Path,
) -> None:
    reports.spec.failures = [mode]
    config = config_for(tmp_path / "env.hjson", canvas, institution, mariadb_engine)
    with pytest.raises(JobError) as failure:
        run(context(config, mariadb_engine))
    text = str(failure.value)
    assert text.startswith("Canvas report: ") and f") {mode}" in text
    if mode == "error":
        assert "failed" in text  # Canvas's own message
    assert canvas.token not in text
    assert_unchanged(mariadb_engine, published)


def test_stuck_report_is_started_afresh(
    institution: Institution,
    canvas: Canvas,
    reports: CanvasReports,
    sqlite_engine: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reports.spec.failures = ["stuck"]
    config = config_for(
        tmp_path / "env.hjson", canvas, institution, sqlite_engine, STALL_SECONDS=0.6
    )
    with caplog.at_level(logging.INFO, logger="test.course_inventory"):
        run(context(config, sqlite_engine))
    assert_tables_equal(read_tables(sqlite_engine), truth(institution))
    assert canvas.log.count("reports.start") == len(institution.term_ids) + 1
    assert canvas.log.count("reports.delete") == 1
    assert "made no progress" in caplog.text and "starting afresh (1 of at most 2)" in caplog.text


def test_stuck_report_beyond_the_restarts_fails_the_job(
    institution: Institution,
    canvas: Canvas,
    reports: CanvasReports,
    mariadb_engine: Engine,
    published: tuple[dict[str, pd.DataFrame], dict[str, int]],
    tmp_path: Path,
) -> None:
    # Runs are started term by term: the first term's runs all stick.
    reports.spec.failures = ["stuck", "ok", "stuck"]
    config = config_for(
        tmp_path / "env.hjson",
        canvas,
        institution,
        mariadb_engine,
        STALL_SECONDS=0.5,
        MAX_RESTARTS=1,
    )
    with pytest.raises(JobError) as failure:
        run(context(config, mariadb_engine))
    assert "made no progress" in str(failure.value)
    assert "gave up after 1 fresh start(s)" in str(failure.value)
    assert_unchanged(mariadb_engine, published)


def test_missing_column_fails_clearly(
    institution: Institution,
    canvas: Canvas,
    reports: CanvasReports,
    mariadb_engine: Engine,
    published: tuple[dict[str, pd.DataFrame], dict[str, int]],
    tmp_path: Path,
) -> None:
    reports.spec.drop_columns = {"enrollments": ("canvas_enrollment_id",)}
    config = config_for(tmp_path / "env.hjson", canvas, institution, mariadb_engine)
    with pytest.raises(JobError) as failure:
        run(context(config, mariadb_engine))
    assert "enrollments.csv lacks column(s) canvas_enrollment_id" in str(failure.value)
    assert_unchanged(mariadb_engine, published)


@pytest.mark.parametrize(
    ("value", "message"),
    [("12x", "column canvas_user_id: .*12x"), ("", "canvas_user_id has an empty value")],
)
def test_a_non_integer_id_fails_clearly(tmp_path: Path, value: str, message: str) -> None:
    header = "canvas_enrollment_id,canvas_course_id,canvas_user_id,canvas_section_id,status,role"
    rows = ["1,2,3,4,active,student", f"5,2,{value},4,active,student"]
    dest = tmp_path / "enrollments.csv"
    dest.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    file = ReportFile(dest, single="enrollments", label="term 7")
    with pytest.raises(ReportFormatError, match=f"term 7: enrollments.csv.*{message}"):
        list(file.batches("enrollments", ["canvas_user_id"], ints=["canvas_user_id"]))


def test_quoted_newlines_and_padded_header_are_read(tmp_path: Path) -> None:
    dest = tmp_path / "report.zip"
    text = '\ufeff canvas_section_id ,name,extra\n9,"two\nlines, and ""quotes""",x\n10,É,y\n'
    with zipfile.ZipFile(dest, "w") as zf:
        zf.writestr("sections.csv", text.encode("utf-8"))
    file = ReportFile(dest)
    (batch,) = file.batches("sections", ["canvas_section_id", "name"], ints=["canvas_section_id"])
    assert batch.column("canvas_section_id").to_pylist() == [9, 10]
    assert batch.column("name").to_pylist() == ['two\nlines, and "quotes"', "É"]
    assert batch.schema.names == ["canvas_section_id", "name"]


def test_file_store_down_fails_after_retries(
    institution: Institution,
    canvas: Canvas,
    store: FileStoreServer,
    mariadb_engine: Engine,
    published: tuple[dict[str, pd.DataFrame], dict[str, int]],
    tmp_path: Path,
) -> None:
    store.down = True
    config = config_for(tmp_path / "env.hjson", canvas, institution, mariadb_engine)
    with pytest.raises(JobError) as failure:
        run(context(config, mariadb_engine))
    text = str(failure.value)
    assert "gave up after 3 attempt(s)" in text and "/store/" in text
    assert "sig=" not in text and canvas.token not in text  # no signature, no token
    assert_unchanged(mariadb_engine, published)


def test_canvas_outage_during_rest_reads_abandons_the_reports(
    institution: Institution,
    canvas: Canvas,
    mariadb_engine: Engine,
    published: tuple[dict[str, pd.DataFrame], dict[str, int]],
    tmp_path: Path,
) -> None:
    canvas.faults = Faults(error_5xx=1.0)
    config = config_for(tmp_path / "env.hjson", canvas, institution, mariadb_engine)
    started = time.monotonic()
    with pytest.raises(JobError) as failure:
        run(context(config, mariadb_engine))
    assert str(failure.value).startswith("Canvas: ") and "gave up" in str(failure.value)
    assert time.monotonic() - started < 30
    assert_unchanged(mariadb_engine, published)


def test_faults_on_every_endpoint_give_the_same_tables(
    institution: Institution,
    canvas: Canvas,
    store: FileStoreServer,
    sqlite_engine: Engine,
    tmp_path: Path,
) -> None:
    canvas.faults = Faults(error_5xx=0.1, truncated=0.1, reset=0.05)
    store.faults = Faults(error_5xx=0.3, reset=0.2)
    try:
        config = config_for(
            tmp_path / "env.hjson",
            canvas,
            institution,
            sqlite_engine,
            top={"MAX_REQ_ATTEMPTS": 12},
        )
        run(context(config, sqlite_engine))
    finally:
        store.faults = Faults()
    assert_tables_equal(read_tables(sqlite_engine), truth(institution))
    assert sum(n for s, n in canvas.log.by_status().items() if s >= 500) > 0


# -- files and the token ------------------------------------------------------------------


def start_single_csv_run(canvas: Canvas, term_id: int) -> dict[str, Any]:
    """Run a report with just enrollments.csv over the Canvas client; the complete run."""
    base = f"/api/v1/accounts/{canvas.account_id}/reports/{REPORT_TYPE}"
    with CanvasClient(canvas.url, canvas.token) as client:
        report = client.post(
            base,
            data={
                "parameters[enrollment_term_id]": str(term_id),
                "parameters[enrollments]": "true",
            },
        )
        deadline = time.monotonic() + 20
        while report["status"] != "complete" and time.monotonic() < deadline:
            time.sleep(0.05)
            report = client.get(f"{base}/{report['id']}")
    assert report["status"] == "complete"
    return report


def test_single_csv_attachment_is_read_as_that_csv(
    institution: Institution, canvas: Canvas, store: FileStoreServer, tmp_path: Path
) -> None:
    term = institution.term_ids[0]
    report = start_single_csv_run(canvas, term)
    assert report["attachment"]["content-type"] == "text/csv"
    stats = HttpStats()
    downloader = AttachmentDownloader(canvas.url, canvas.token, stats=stats)
    dest = tmp_path / "single.csv"
    size = downloader.download(report["attachment"]["url"], dest)
    assert size == report["attachment"]["size"] and dest.read_bytes()[:2] != b"PK"
    hops = {(r["api"], r["status"]): r["count"] for r in stats.as_dict()["requests"]}
    assert hops == {("canvas", 302): 1, ("report-files", 200): 1}  # in the run's HTTP stats
    file = ReportFile(dest, single="enrollments")
    assert not file.is_zip
    rows = sum(len(c) for c in file.chunks("enrollments", ["canvas_enrollment_id"], chunk_rows=500))
    e = institution.enrollments
    terms = pd.Series([institution.courses[i].term_id for i in e.course_index])
    in_term = (terms == term).to_numpy() & (e.type != TEST_STUDENT)
    # Without include_deleted: concluded and deleted enrollments and concluded courses are out.
    assert 0 < rows < int(in_term.sum())
    with pytest.raises(Exception, match="single CSV"):
        next(file.chunks("sections", ["canvas_section_id"]))
    assert store.tokens_seen == 0


def test_a_throttled_download_waits_and_succeeds(
    institution: Institution, canvas: Canvas, store: FileStoreServer, tmp_path: Path
) -> None:
    report = start_single_csv_run(canvas, institution.term_ids[0])
    # Another client on the token fills the bucket for 1.5 s of every 2 s, starting now:
    # the Canvas hop is refused (403 Rate Limit Exceeded) at first, not failed for good.
    busy = Competitor(rate=0.0, in_flight=2, period_s=2.0, duty=0.75)
    canvas.throttle = ThrottleSpec(capacity=80, competitor=busy)
    canvas.log.reset()
    stats = HttpStats()
    downloader = AttachmentDownloader(canvas.url, canvas.token, stats=stats)
    size = downloader.download(report["attachment"]["url"], tmp_path / "file.csv")
    assert size == report["attachment"]["size"]
    assert canvas.log.by_status().get(403, 0) >= 1
    assert stats.count("throttled") >= 1 and stats.count("gave_up") == 0


def test_token_goes_to_canvas_only_and_the_store_rejects_it(
    canvas: Canvas, store: FileStoreServer, institution: Institution, tmp_path: Path
) -> None:
    report = start_single_csv_run(canvas, institution.term_ids[0])
    url = report["attachment"]["url"]
    # The attachment URL needs the token on the Canvas host ...
    assert requests.get(url, allow_redirects=False, timeout=10).status_code == 401
    hop = requests.get(
        url,
        headers={"Authorization": f"Bearer {canvas.token}"},
        allow_redirects=False,
        timeout=10,
    )
    assert hop.status_code == 302
    location = hop.headers["Location"]
    assert location.startswith(store.url) and not location.startswith(canvas.url)
    # ... and the store refuses a request that carries it (so a leak would fail loudly).
    seen = store.tokens_seen
    leaked = requests.get(location, headers={"Authorization": f"Bearer {canvas.token}"}, timeout=10)
    assert leaked.status_code == 400 and store.tokens_seen == seen + 1
    # The downloader sends it to Canvas only: the store sees no Authorization at all.
    AttachmentDownloader(canvas.url, canvas.token).download(url, tmp_path / "f.csv")
    assert store.tokens_seen == seen + 1
    assert requests.get(location.split("?")[0], timeout=10).status_code == 403  # unsigned


def test_inventory_source_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "env.hjson"
    path.write_text(
        '{"JOB_NAMES": ["COURSE_INVENTORY"], "CANVAS": {"CANVAS_URL": "https://c.example.edu",'
        ' "CANVAS_TOKEN": "tok-123", "CANVAS_ACCOUNT_ID": 1, "INVENTORY_SOURCE": "bulk",'
        ' "REPORTS": {"STALL_SECONDS": 0}}}',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as failure:
        load_config(path, environ={})
    text = str(failure.value)
    assert "CANVAS.INVENTORY_SOURCE" in text and "CANVAS.REPORTS.STALL_SECONDS" in text
    assert "tok-123" not in text
    path.write_text(path.read_text().replace('"bulk"', '"reports"').replace("0}", "60}"))
    config = load_config(path, environ={})
    assert config["CANVAS"]["REPORTS"]["MAX_RESTARTS"] == 2  # defaults filled in


def test_cross_listed_sections_agree_between_api_graphql_and_report(
    institution: Institution, canvas: Canvas, tmp_path: Path
) -> None:
    section = next(
        s
        for s in institution.sections
        if s.nonxlist_course_id is not None
        and institution.course_by_id[s.nonxlist_course_id].workflow_state == "deleted"
    )
    with CanvasClient(canvas.url, canvas.token) as client:
        listed = list(client.paginate(f"/api/v1/courses/{section.course_id}/sections"))
        query = "query($id: ID!) { legacyNode(_id: $id, type: Section) { ... on Section { _id } } }"
        assert client.graphql(query, {"id": str(section.id)})["legacyNode"]["_id"] == str(
            section.id
        )
    rest = next(s for s in listed if s["id"] == section.id)
    assert rest["course_id"] == section.course_id
    assert rest["nonxlist_course_id"] == section.nonxlist_course_id

    term = institution.course_by_id[section.course_id].term_id
    base = f"/api/v1/accounts/{canvas.account_id}/reports/{REPORT_TYPE}"
    with CanvasClient(canvas.url, canvas.token) as client:
        form = {f"parameters[{n}]": "true" for n in ("sections", "xlist", "include_deleted")}
        report = client.post(base, data={**form, "parameters[enrollment_term_id]": str(term)})
        while report["status"] != "complete":
            time.sleep(0.05)
            report = client.get(f"{base}/{report['id']}")
    dest = tmp_path / "report.zip"
    AttachmentDownloader(canvas.url, canvas.token).download(report["attachment"]["url"], dest)
    file = ReportFile(dest)
    sections = pd.concat(file.chunks("sections", ["canvas_section_id", "canvas_course_id"]))
    xlist = pd.concat(
        file.chunks(
            "xlist", ["canvas_section_id", "canvas_xlist_course_id", "canvas_nonxlist_course_id"]
        )
    )
    row = sections[sections["canvas_section_id"] == str(section.id)].iloc[0]
    assert int(row["canvas_course_id"]) == section.nonxlist_course_id  # the original course
    moved = xlist[xlist["canvas_section_id"] == str(section.id)].iloc[0]
    assert int(moved["canvas_xlist_course_id"]) == section.course_id
    assert int(moved["canvas_nonxlist_course_id"]) == section.nonxlist_course_id


def test_wait_is_bounded_and_a_run_in_progress_is_adopted_next_time(
    institution: Institution,
    canvas: Canvas,
    reports: CanvasReports,
    sqlite_engine: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reports.spec.generation_seconds = 4.0
    config = config_for(
        tmp_path / "a.hjson", canvas, institution, sqlite_engine, MAX_WAIT_SECONDS=0.5
    )
    with pytest.raises(JobError) as failure:
        run(context(config, sqlite_engine))
    assert "not complete after" in str(failure.value)
    assert "MAX_WAIT_SECONDS" in str(failure.value)
    assert canvas.log.count("reports.start") == len(institution.term_ids)

    # The next run finds the same runs still going and follows them instead of starting more.
    canvas.log.reset()
    again = config_for(
        tmp_path / "b.hjson", canvas, institution, sqlite_engine, REUSE_MAX_AGE_SECONDS=600
    )
    with caplog.at_level(logging.INFO, logger="test.course_inventory"):
        run(context(again, sqlite_engine))
    assert canvas.log.count("reports.start") == 0
    assert caplog.text.count("adopting run") == len(institution.term_ids)
    assert_tables_equal(read_tables(sqlite_engine), truth(institution))
