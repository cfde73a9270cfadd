"""Create every output table of the SPEC (from db/tables.py, rendered for this database)."""

from courseinv.db.schema import create_tables, drop_tables
from yoyo import step

__depends__: set[str] = set()

TABLES = [
    "term",
    "account",
    "course",
    "course_section",
    "enrollment",
    "canvas_course_usage",
    "job_run",
    "data_source_status",
    "mivideo_media_started_hourly",
    "mivideo_media_created",
    "mivideo_media_courses",
    "lti_type",
    "lti_placement",
    "lti_zoom_meeting",
]

steps = [step(lambda conn: create_tables(conn, TABLES), lambda conn: drop_tables(conn, TABLES))]
