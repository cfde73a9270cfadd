"""The COURSE_INVENTORY job: Canvas course inventory (and UDW section SIS ids).

Pipeline (SPEC "Job semantics → COURSE_INVENTORY")::

    configured terms ─► courses per term (with students, de-duplicated) ─► their accounts
        ─► one fan-out over the kept courses: enrollments + sections (GraphQL),
           and for available courses activity analytics and, unless the database already
           holds it, published_at from the audit log
        ─► section SIS ids from UDW (bounded chunks), or Canvas's when UDW is absent
        ─► term, account, course, course_section, enrollment, canvas_course_usage
           replaced together in one atomic publish; CSVs when CREATE_CSVS.

With ``CANVAS.INVENTORY_SOURCE: reports`` (``reports.py``) the enrollments and sections
come from one ``provisioning_csv`` account report per term instead of per-course GraphQL:
the runs start first, Canvas generates them while the REST reads (terms, courses,
accounts, audit logs and analytics of available courses) go on, and the job then waits
for them, downloads and reads them. The six tables are the same.

Any failure (a permanent HTTP error, retries exhausted, UDW unreachable, a report that
fails, stalls or is malformed) raises before the publish, so the previous tables stay as
they were.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import pandas as pd
from courseinv.course_inventory import canvas_pull, frames, udw
from courseinv.course_inventory.canvas_pull import CourseDetails, Section
from courseinv.course_inventory.report_files import AttachmentDownloader, ReportFormatError
from courseinv.course_inventory.report_runs import ReportFailed, ReportRunner, ReportSettings
from courseinv.course_inventory.reports import ReportData, ReportPull
from courseinv.db.engine import udw_engine
from courseinv.db.tables import course
from courseinv.http_client.canvas import CanvasClient
from courseinv.http_client.errors import HttpError
from courseinv.runner.jobs import DataSourceName, DataSourceStatus, JobContext, JobError
from courseinv.runner.logs import in_words
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError


def run(ctx: JobContext) -> list[DataSourceStatus]:
    log = ctx.log
    warehouse = udw_engine(ctx.config)
    try:
        udw_date = read_udw_date(warehouse) if warehouse is not None else None
        known = published_dates(ctx.engine)
        log.info(
            "%d course(s) already hold published_at: their audit logs are not read", len(known)
        )
        ctx.phase("Canvas pull")
        pulled = pull_canvas(ctx.config, known, log)
        canvas_done = datetime.now(UTC)
        ctx.phase("UDW section SIS ids")
        sis_ids = read_udw_sis_ids(warehouse, pulled.sections) if warehouse is not None else None
    finally:
        if warehouse is not None:
            warehouse.dispose()

    ctx.phase("build and publish")
    tables = build_tables(pulled, known, sis_ids)
    ctx.replace_tables(tables)
    log.info("COURSE_INVENTORY: %s", ", ".join(f"{name} {len(f):,}" for name, f in tables.items()))
    ctx.write_csvs(tables)
    statuses = [DataSourceStatus(DataSourceName.CANVAS_API, canvas_done)]
    if udw_date is not None:
        statuses.append(DataSourceStatus(DataSourceName.UNIZIN_DATA_WAREHOUSE, udw_date))
    return statuses


@dataclass(frozen=True)
class Pulled:
    """Everything read from Canvas."""

    terms: list[dict[str, Any]]
    courses: list[dict[str, Any]]
    accounts: list[dict[str, Any]]
    details: list[CourseDetails]
    bulk: ReportData | None = None  # the reports path's enrollments and sections

    @cached_property
    def sections(self) -> list[Section]:
        """The sections the enrollments reference, each once."""
        if self.bulk is not None:
            return self.bulk.sections
        unique: dict[int, Section] = {}
        for d in self.details:
            for s in d.sections:
                unique.setdefault(s.canvas_id, s)
        return list(unique.values())


def pull_canvas(
    config: Mapping[str, Any], published_known: Mapping[int, datetime], log: logging.Logger
) -> Pulled:
    """Terms, courses, accounts and per-course details (and, with the reports source,
    the report data); HTTP and report failures become JobError."""
    settings = config["CANVAS"]
    account_id = int(settings["CANVAS_ACCOUNT_ID"])
    term_ids = [int(t) for t in settings.get("CANVAS_TERM_IDS") or []]
    use_reports = settings.get("INVENTORY_SOURCE", "api") == "reports"
    if not term_ids:
        log.warning("CANVAS.CANVAS_TERM_IDS is empty: no terms and no courses")
    bulk: ReportData | None = None
    try:
        with CanvasClient.from_config(config) as canvas:
            reports = (
                start_reports(canvas, config, account_id, term_ids, log) if use_reports else None
            )
            try:
                root = canvas_pull.root_account_id(canvas, account_id)
                terms = canvas_pull.read_terms(canvas, root, term_ids)
                courses = canvas_pull.read_courses(canvas, account_id, term_ids)
                accounts = canvas_pull.read_accounts(canvas, (c["account_id"] for c in courses))
                details = list(
                    canvas_pull.read_course_details(
                        canvas, courses, published_known, enrollments=reports is None
                    )
                )
            except BaseException:
                if reports is not None:
                    reports.abandon()
                raise
            if reports is not None:
                log.info("Canvas REST reads done; waiting for the account reports")
                bulk = reports.result({int(c["id"]): c["workflow_state"] for c in courses})
            log.info("Canvas: %s", in_words(canvas.stats()))
    except HttpError as exc:
        raise JobError(f"Canvas: {exc}") from exc
    except (ReportFailed, ReportFormatError) as exc:
        raise JobError(f"Canvas report: {exc}") from exc
    available = {int(c["id"]) for c in courses if c["workflow_state"] == "available"}
    audited = sum(d.audit_read for d in details)
    no_analytics = sum(d.activity is None for d in details if d.course_id in available)
    log.info(
        "Canvas: %d course(s); audit log read for %d; analytics unavailable for %d",
        len(courses),
        audited,
        no_analytics,
    )
    return Pulled(terms, courses, accounts, details, bulk)


def start_reports(
    canvas: CanvasClient,
    config: Mapping[str, Any],
    account_id: int,
    term_ids: Sequence[int],
    log: logging.Logger,
) -> ReportPull:
    """Begin the report runs in the background (they generate while REST reads go on)."""
    settings = config["CANVAS"]
    runner = ReportRunner(canvas, account_id, ReportSettings.from_config(config), log)
    downloader = AttachmentDownloader(
        settings["CANVAS_URL"],
        settings["CANVAS_TOKEN"],
        max_attempts=int(config.get("MAX_REQ_ATTEMPTS", 3)),
        stats=canvas.http_stats,
    )
    log.info(
        "COURSE_INVENTORY source: account reports (provisioning_csv) for term(s) %s",
        list(term_ids),
    )
    return ReportPull(runner, downloader, term_ids, log).start()


def published_dates(engine: Engine) -> dict[int, datetime]:
    """``course.published_at`` already stored: the cache that spares audit-log reads."""
    query = select(course.c.canvas_id, course.c.published_at).where(
        course.c.published_at.is_not(None)
    )
    with engine.connect() as conn:
        return {int(cid): when for cid, when in conn.execute(query)}


def read_udw_date(warehouse: Engine) -> datetime:
    """UDW freshness, read first so an unreachable UDW fails before the long Canvas pull."""
    try:
        return udw.canvasdatadate(warehouse)
    except (SQLAlchemyError, udw.UdwDataError) as exc:
        raise JobError(f"UDW: {_short(exc)}") from exc


def read_udw_sis_ids(warehouse: Engine, sections: Sequence[Section]) -> dict[int, str | None]:
    try:
        return udw.section_sis_ids(warehouse, (s.canvas_id for s in sections))
    except SQLAlchemyError as exc:
        raise JobError(f"UDW: {_short(exc)}") from exc


def build_tables(
    pulled: Pulled,
    known: Mapping[int, datetime],
    udw_sis_ids: Mapping[int, str | None] | None,
) -> dict[str, pd.DataFrame]:
    """The six frames, in publish order."""
    published: dict[int, str | datetime | None] = dict(known)
    published.update({d.course_id: d.published_at for d in pulled.details if d.audit_read})
    return {
        "term": frames.term_frame(pulled.terms),
        "account": frames.account_frame(pulled.accounts),
        "course": frames.course_frame(pulled.courses, published),
        "course_section": frames.section_frame(pulled.sections, udw_sis_ids),
        "enrollment": (
            pulled.bulk.enrollment
            if pulled.bulk is not None
            else frames.enrollment_frame(pulled.details)
        ),
        "canvas_course_usage": frames.usage_frame(pulled.details),
    }


def _short(exc: BaseException) -> str:
    """First line of a database error (the driver's own message when there is one)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
