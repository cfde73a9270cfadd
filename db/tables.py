"""Every output table, defined once (SQLAlchemy Core). This is the dashboard contract.

Migrations in ``db/migrations/`` create these tables, each a frozen record of one change with
its own SQL; ``tests/foundation/test_migrations.py`` fails (and prints the DDL to add) when an
empty database migrated to head differs from this metadata. Timestamps are stored as naive UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

metadata = MetaData()

# DATETIME(6) on MySQL/MariaDB: Caliper event times carry microseconds.
DateTimeMicro = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Name = String(255)
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
Code = String(50)


# SQLite only autoincrements an INTEGER PRIMARY KEY (which is 64-bit there).
SurrogateId = BigInteger().with_variant(Integer, "sqlite")


def _id(name: str = "id") -> Column:
    return Column(name, SurrogateId, primary_key=True, autoincrement=True)


def _canvas_id() -> Column:
    return Column("canvas_id", BigInteger, primary_key=True, autoincrement=False)


term = Table(
    "term",
    metadata,
    _canvas_id(),
    Column("name", Name, nullable=False),
    Column("sis_id", Name),
    Column("start_at", DateTime),
    Column("end_at", DateTime),
)

account = Table(
    "account",
    metadata,
    _canvas_id(),
    Column("sis_id", Name),
    Column("name", Name, nullable=False),
)

course = Table(
    "course",
    metadata,
    _canvas_id(),
    Column("sis_id", Name),
    Column("name", Name, nullable=False),
    Column("account_id", BigInteger, ForeignKey("account.canvas_id"), nullable=False),
    Column("term_id", BigInteger, ForeignKey("term.canvas_id"), nullable=False),
    Column("created_at", DateTime),
    Column("published_at", DateTime),
    Column("workflow_state", Code, nullable=False),
)

course_section = Table(
    "course_section",
    metadata,
    _canvas_id(),
    Column("sis_id", Name),
    Column("name", Name, nullable=False),
    Column("course_id", BigInteger, nullable=False, index=True),
)

enrollment = Table(
    "enrollment",
    metadata,
    _canvas_id(),
    Column("course_id", BigInteger, ForeignKey("course.canvas_id"), nullable=False),
    Column("course_section_id", BigInteger, ForeignKey("course_section.canvas_id"), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("workflow_state", Code, nullable=False),
    Column("role_type", Code, nullable=False),
)

canvas_course_usage = Table(
    "canvas_course_usage",
    metadata,
    _id(),
    Column("course_id", BigInteger, ForeignKey("course.canvas_id"), nullable=False),
    Column("date", Date, nullable=False),
    Column("views", Integer, nullable=False),
    Column("participations", Integer, nullable=False),
    UniqueConstraint("course_id", "date", name="uq_canvas_course_usage_course_date"),
)

job_run = Table(
    "job_run",
    metadata,
    _id(),
    Column("job_name", Code, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    # running | succeeded | failed
    Column("status", String(20), nullable=False),
    Column("reason", Text),
    Column("host", Name),
    Column("pid", Integer),
    # Added by migration 0002: what the run did.
    Column("rows_written", BigInteger),  # rows published, all tables
    Column("warnings", Integer),  # warnings logged by the job
    Column("requests", Integer),  # HTTP requests made
    Column("details", LongText),  # JSON: rows per table, HTTP statistics, phase timings
    # Added by migration 0004: the run (one `course-inventory run`) it belonged to.
    Column("run_id", String(40)),
)

data_source_status = Table(
    "data_source_status",
    metadata,
    _id(),
    Column("data_source_name", Code, nullable=False),
    Column("data_updated_at", DateTime, nullable=False),
    Column("job_run_id", BigInteger, ForeignKey("job_run.id"), nullable=False),
)

mivideo_media_started_hourly = Table(
    "mivideo_media_started_hourly",
    metadata,
    _id(),
    Column("event_hour_utc", DateTime, nullable=False),
    Column("course_id", BigInteger, nullable=False),
    Column("event_time_utc_latest", DateTimeMicro, nullable=False),
    Column("event_count", Integer, nullable=False),
    UniqueConstraint("event_hour_utc", "course_id", name="uq_mivideo_started_hour_course"),
)

mivideo_media_created = Table(
    "mivideo_media_created",
    metadata,
    Column("id", String(32), primary_key=True, autoincrement=False),
    Column("created_at", DateTime, nullable=False),
    Column("name", String(512)),
    Column("duration", Integer),
    Index("ix_mivideo_media_created_created_at", "created_at"),
)

mivideo_media_courses = Table(
    "mivideo_media_courses",
    metadata,
    Column(
        "media_id",
        String(32),
        ForeignKey("mivideo_media_created.id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("course_id", BigInteger, primary_key=True, autoincrement=False),
    Column("in_context", Boolean, primary_key=True, autoincrement=False),
)

lti_type = Table(
    "lti_type",
    metadata,
    _canvas_id(),
    Column("des", Name, nullable=False),
    Column("rpt_group_nm", Name),
)

lti_placement = Table(
    "lti_placement",
    metadata,
    _id(),
    Column("course_id", BigInteger, nullable=False, index=True),
    Column("account_id", BigInteger),
    Column("course_name", Name),
    Column("placement_type_id", BigInteger, ForeignKey("lti_type.canvas_id"), nullable=False),
)

lti_zoom_meeting = Table(
    "lti_zoom_meeting",
    metadata,
    _id(),
    Column("lti_placement_id", BigInteger, ForeignKey("lti_placement.id"), nullable=False),
    Column("meeting_id", BigInteger, nullable=False),
    Column("host_id", String(64)),
    Column("start_time", DateTime),
    # waiting | started | ended | deleted
    Column("status", String(20), nullable=False),
)

# --- LIVE_EVENTS (Canvas Live Events; migration 0003.live_events) -------------------------
# The JSON text of an event can exceed 64 KB (TEXT on MySQL): LONGTEXT there.
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
EventKey = String(100)
Url = String(2048)

live_event = Table(
    "live_event",
    metadata,
    _id(),
    # Caliper: the event's own ``id``; Canvas raw: "canvas:" + SHA-256 of its canonical JSON.
    Column("event_key", EventKey, nullable=False, unique=True),
    Column("event_name", Name, nullable=False),
    # canvas | caliper
    Column("event_format", String(10), nullable=False),
    Column("event_time", DateTimeMicro, nullable=False),
    Column("received_at", DateTimeMicro, nullable=False),
    Column("course_id", BigInteger),
    Column("user_id", BigInteger),
    Column("payload", LongText, nullable=False),
    # Which store_batch call inserted the row (a UUID): tells inserted rows from duplicates.
    Column("batch_id", String(36), nullable=False),
    # sqs | https | ...: how the event arrived.
    Column("source", String(20), nullable=False),
    Index("ix_live_event_event_time", "event_time"),
)

live_event_rejected = Table(
    "live_event_rejected",
    metadata,
    _id(),
    Column("received_at", DateTimeMicro, nullable=False),
    Column("source", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", LongText, nullable=False),
    # SHA-256 of source, reason and payload: a redelivered bad message is kept once.
    Column("reject_key", String(64), nullable=False, unique=True),
)

live_event_field_drift = Table(
    "live_event_field_drift",
    metadata,
    Column("event_name", Name, primary_key=True, autoincrement=False),
    Column("event_format", String(10), primary_key=True, autoincrement=False),
    Column("field_path", String(255), primary_key=True, autoincrement=False),
    Column("first_seen_at", DateTimeMicro, nullable=False),
    Column("last_seen_at", DateTimeMicro, nullable=False),
    Column("occurrences", BigInteger, nullable=False),
)

# State tables: the event with the greatest (event_time, event_key) wins, whatever the
# arrival order. A field some event types do not carry (a course's workflow_state in
# Caliper course_created, in course_completed) keeps its own (time, key) so that it too
# ends the same whatever the order.
live_course_state = Table(
    "live_course_state",
    metadata,
    Column("course_id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", Name),
    Column("workflow_state", Code),
    Column("event_time", DateTimeMicro, nullable=False),
    Column("event_key", EventKey, nullable=False),
    Column("workflow_state_time", DateTimeMicro),
    Column("workflow_state_key", EventKey),
)

live_enrollment_state = Table(
    "live_enrollment_state",
    metadata,
    Column("enrollment_id", BigInteger, primary_key=True, autoincrement=False),
    Column("course_id", BigInteger),
    Column("course_section_id", BigInteger),
    Column("user_id", BigInteger),
    Column("type", Code),
    Column("workflow_state", Code),
    Column("event_time", DateTimeMicro, nullable=False),
    Column("event_key", EventKey, nullable=False),
)

live_course_activity_hourly = Table(
    "live_course_activity_hourly",
    metadata,
    Column("course_id", BigInteger, primary_key=True, autoincrement=False),
    Column("hour_utc", DateTime, primary_key=True, autoincrement=False),
    # 0 when the event has no user (e.g. an anonymous page view): part of the key.
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("page_views", BigInteger, nullable=False),
    Column("participations", BigInteger, nullable=False),
)

lti_resource_link = Table(
    "lti_resource_link",
    metadata,
    Column("lookup_uuid", String(64), primary_key=True, autoincrement=False),
    Column("course_id", BigInteger),
    Column("context_external_tool_id", BigInteger),
    Column("url", Url),
    Column("title", Name),
    Column("event_time", DateTimeMicro, nullable=False),
    Column("event_key", EventKey, nullable=False),
    Column("workflow_state", Code),
)

APP_TABLES: tuple[Table, ...] = tuple(metadata.sorted_tables)

# MySQL/MariaDB: InnoDB, utf8mb4 with binary collation (exact ids and names round-trip).
for _table in APP_TABLES:
    _table.dialect_options["mysql"].update(
        {"engine": "InnoDB", "charset": "utf8mb4", "collate": "utf8mb4_bin"}
    )
