"""0003: Canvas Live Events: the event store, its rejects and drift, and four projections.

``live_event`` (unique event_key), ``live_event_rejected``, ``live_event_field_drift``,
``live_course_state``, ``live_enrollment_state``, ``live_course_activity_hourly`` and
``lti_resource_link``. Frozen: this file never changes.
"""

from courseinv.db.migration_ddl import dialect_step, same_for_all

__depends__ = {"0002.job_run_counters"}

MYSQL = """
    CREATE TABLE live_event (
        id BIGINT NOT NULL AUTO_INCREMENT,
        event_key VARCHAR(100) NOT NULL,
        event_name VARCHAR(255) NOT NULL,
        event_format VARCHAR(10) NOT NULL,
        event_time DATETIME(6) NOT NULL,
        received_at DATETIME(6) NOT NULL,
        course_id BIGINT,
        user_id BIGINT,
        payload LONGTEXT NOT NULL,
        batch_id VARCHAR(36) NOT NULL,
        source VARCHAR(20) NOT NULL,
        PRIMARY KEY (id),
        UNIQUE (event_key)
    ) ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE INDEX ix_live_event_event_time ON live_event (event_time);
    CREATE TABLE live_event_rejected (
        id BIGINT NOT NULL AUTO_INCREMENT,
        received_at DATETIME(6) NOT NULL,
        source VARCHAR(20) NOT NULL,
        reason TEXT NOT NULL,
        payload LONGTEXT NOT NULL,
        reject_key VARCHAR(64) NOT NULL,
        PRIMARY KEY (id),
        UNIQUE (reject_key)
    ) ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE live_event_field_drift (
        event_name VARCHAR(255) NOT NULL,
        event_format VARCHAR(10) NOT NULL,
        field_path VARCHAR(255) NOT NULL,
        first_seen_at DATETIME(6) NOT NULL,
        last_seen_at DATETIME(6) NOT NULL,
        occurrences BIGINT NOT NULL,
        PRIMARY KEY (event_name, event_format, field_path)
    ) ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE live_course_state (
        course_id BIGINT NOT NULL,
        name VARCHAR(255),
        workflow_state VARCHAR(50),
        event_time DATETIME(6) NOT NULL,
        event_key VARCHAR(100) NOT NULL,
        workflow_state_time DATETIME(6),
        workflow_state_key VARCHAR(100),
        PRIMARY KEY (course_id)
    ) ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE live_enrollment_state (
        enrollment_id BIGINT NOT NULL,
        course_id BIGINT,
        course_section_id BIGINT,
        user_id BIGINT,
        type VARCHAR(50),
        workflow_state VARCHAR(50),
        event_time DATETIME(6) NOT NULL,
        event_key VARCHAR(100) NOT NULL,
        PRIMARY KEY (enrollment_id)
    ) ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE live_course_activity_hourly (
        course_id BIGINT NOT NULL,
        hour_utc DATETIME NOT NULL,
        user_id BIGINT NOT NULL,
        page_views BIGINT NOT NULL,
        participations BIGINT NOT NULL,
        PRIMARY KEY (course_id, hour_utc, user_id)
    ) ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE lti_resource_link (
        lookup_uuid VARCHAR(64) NOT NULL,
        course_id BIGINT,
        context_external_tool_id BIGINT,
        url VARCHAR(2048),
        title VARCHAR(255),
        event_time DATETIME(6) NOT NULL,
        event_key VARCHAR(100) NOT NULL,
        workflow_state VARCHAR(50),
        PRIMARY KEY (lookup_uuid)
    ) ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
"""

POSTGRESQL = """
    CREATE TABLE live_event (
        id BIGSERIAL NOT NULL,
        event_key VARCHAR(100) NOT NULL,
        event_name VARCHAR(255) NOT NULL,
        event_format VARCHAR(10) NOT NULL,
        event_time TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        received_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        course_id BIGINT,
        user_id BIGINT,
        payload TEXT NOT NULL,
        batch_id VARCHAR(36) NOT NULL,
        source VARCHAR(20) NOT NULL,
        PRIMARY KEY (id),
        UNIQUE (event_key)
    );
    CREATE INDEX ix_live_event_event_time ON live_event (event_time);
    CREATE TABLE live_event_rejected (
        id BIGSERIAL NOT NULL,
        received_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        source VARCHAR(20) NOT NULL,
        reason TEXT NOT NULL,
        payload TEXT NOT NULL,
        reject_key VARCHAR(64) NOT NULL,
        PRIMARY KEY (id),
        UNIQUE (reject_key)
    );
    CREATE TABLE live_event_field_drift (
        event_name VARCHAR(255) NOT NULL,
        event_format VARCHAR(10) NOT NULL,
        field_path VARCHAR(255) NOT NULL,
        first_seen_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        last_seen_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        occurrences BIGINT NOT NULL,
        PRIMARY KEY (event_name, event_format, field_path)
    );
    CREATE TABLE live_course_state (
        course_id BIGINT NOT NULL,
        name VARCHAR(255),
        workflow_state VARCHAR(50),
        event_time TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        event_key VARCHAR(100) NOT NULL,
        workflow_state_time TIMESTAMP WITHOUT TIME ZONE,
        workflow_state_key VARCHAR(100),
        PRIMARY KEY (course_id)
    );
    CREATE TABLE live_enrollment_state (
        enrollment_id BIGINT NOT NULL,
        course_id BIGINT,
        course_section_id BIGINT,
        user_id BIGINT,
        type VARCHAR(50),
        workflow_state VARCHAR(50),
        event_time TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        event_key VARCHAR(100) NOT NULL,
        PRIMARY KEY (enrollment_id)
    );
    CREATE TABLE live_course_activity_hourly (
        course_id BIGINT NOT NULL,
        hour_utc TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        user_id BIGINT NOT NULL,
        page_views BIGINT NOT NULL,
        participations BIGINT NOT NULL,
        PRIMARY KEY (course_id, hour_utc, user_id)
    );
    CREATE TABLE lti_resource_link (
        lookup_uuid VARCHAR(64) NOT NULL,
        course_id BIGINT,
        context_external_tool_id BIGINT,
        url VARCHAR(2048),
        title VARCHAR(255),
        event_time TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        event_key VARCHAR(100) NOT NULL,
        workflow_state VARCHAR(50),
        PRIMARY KEY (lookup_uuid)
    );
"""

SQLITE = """
    CREATE TABLE live_event (
        id INTEGER NOT NULL,
        event_key VARCHAR(100) NOT NULL,
        event_name VARCHAR(255) NOT NULL,
        event_format VARCHAR(10) NOT NULL,
        event_time DATETIME NOT NULL,
        received_at DATETIME NOT NULL,
        course_id BIGINT,
        user_id BIGINT,
        payload TEXT NOT NULL,
        batch_id VARCHAR(36) NOT NULL,
        source VARCHAR(20) NOT NULL,
        PRIMARY KEY (id),
        UNIQUE (event_key)
    );
    CREATE INDEX ix_live_event_event_time ON live_event (event_time);
    CREATE TABLE live_event_rejected (
        id INTEGER NOT NULL,
        received_at DATETIME NOT NULL,
        source VARCHAR(20) NOT NULL,
        reason TEXT NOT NULL,
        payload TEXT NOT NULL,
        reject_key VARCHAR(64) NOT NULL,
        PRIMARY KEY (id),
        UNIQUE (reject_key)
    );
    CREATE TABLE live_event_field_drift (
        event_name VARCHAR(255) NOT NULL,
        event_format VARCHAR(10) NOT NULL,
        field_path VARCHAR(255) NOT NULL,
        first_seen_at DATETIME NOT NULL,
        last_seen_at DATETIME NOT NULL,
        occurrences BIGINT NOT NULL,
        PRIMARY KEY (event_name, event_format, field_path)
    );
    CREATE TABLE live_course_state (
        course_id BIGINT NOT NULL,
        name VARCHAR(255),
        workflow_state VARCHAR(50),
        event_time DATETIME NOT NULL,
        event_key VARCHAR(100) NOT NULL,
        workflow_state_time DATETIME,
        workflow_state_key VARCHAR(100),
        PRIMARY KEY (course_id)
    );
    CREATE TABLE live_enrollment_state (
        enrollment_id BIGINT NOT NULL,
        course_id BIGINT,
        course_section_id BIGINT,
        user_id BIGINT,
        type VARCHAR(50),
        workflow_state VARCHAR(50),
        event_time DATETIME NOT NULL,
        event_key VARCHAR(100) NOT NULL,
        PRIMARY KEY (enrollment_id)
    );
    CREATE TABLE live_course_activity_hourly (
        course_id BIGINT NOT NULL,
        hour_utc DATETIME NOT NULL,
        user_id BIGINT NOT NULL,
        page_views BIGINT NOT NULL,
        participations BIGINT NOT NULL,
        PRIMARY KEY (course_id, hour_utc, user_id)
    );
    CREATE TABLE lti_resource_link (
        lookup_uuid VARCHAR(64) NOT NULL,
        course_id BIGINT,
        context_external_tool_id BIGINT,
        url VARCHAR(2048),
        title VARCHAR(255),
        event_time DATETIME NOT NULL,
        event_key VARCHAR(100) NOT NULL,
        workflow_state VARCHAR(50),
        PRIMARY KEY (lookup_uuid)
    );
"""

DROP_TABLES = """
    DROP TABLE lti_resource_link;
    DROP TABLE live_course_activity_hourly;
    DROP TABLE live_enrollment_state;
    DROP TABLE live_course_state;
    DROP TABLE live_event_field_drift;
    DROP TABLE live_event_rejected;
    DROP TABLE live_event;
"""

steps = [
    dialect_step(
        {"mysql": MYSQL, "postgresql": POSTGRESQL, "sqlite": SQLITE},
        same_for_all(DROP_TABLES),
    )
]
