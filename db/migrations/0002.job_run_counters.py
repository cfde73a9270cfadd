"""0002: job_run records what a run did: rows published, warnings, HTTP requests, details.

``details`` is JSON text (rows per table, HTTP statistics, phase timings) for the run report.
Frozen: this file never changes.
"""

from courseinv.db.migration_ddl import dialect_step, same_for_all

__depends__ = {"0001.initial_schema"}

MYSQL = """
    ALTER TABLE job_run
        ADD COLUMN rows_written BIGINT,
        ADD COLUMN warnings INTEGER,
        ADD COLUMN requests INTEGER,
        ADD COLUMN details MEDIUMTEXT;
"""

POSTGRESQL = """
    ALTER TABLE job_run
        ADD COLUMN rows_written BIGINT,
        ADD COLUMN warnings INTEGER,
        ADD COLUMN requests INTEGER,
        ADD COLUMN details TEXT;
"""

SQLITE = """
    ALTER TABLE job_run ADD COLUMN rows_written BIGINT;
    ALTER TABLE job_run ADD COLUMN warnings INTEGER;
    ALTER TABLE job_run ADD COLUMN requests INTEGER;
    ALTER TABLE job_run ADD COLUMN details TEXT;
"""

DROP_COLUMNS = """
    ALTER TABLE job_run DROP COLUMN details;
    ALTER TABLE job_run DROP COLUMN requests;
    ALTER TABLE job_run DROP COLUMN warnings;
    ALTER TABLE job_run DROP COLUMN rows_written;
"""

steps = [
    dialect_step(
        {"mysql": MYSQL, "postgresql": POSTGRESQL, "sqlite": SQLITE},
        same_for_all(DROP_COLUMNS),
    )
]
