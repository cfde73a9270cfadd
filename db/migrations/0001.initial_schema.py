"""0001: the first schema: every output table of the SPEC as of the first release.

Frozen: this file never changes. Later schema changes are new migrations.
"""

from courseinv.db.migration_ddl import dialect_step, same_for_all

__depends__: set[str] = set()

MYSQL = """
    CREATE TABLE account (
        canvas_id BIGINT NOT NULL,
        sis_id VARCHAR(255),
        name VARCHAR(255) NOT NULL,
        PRIMARY KEY (canvas_id)
    )ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE course_section (
        canvas_id BIGINT NOT NULL,
        sis_id VARCHAR(255),
        name VARCHAR(255) NOT NULL,
        course_id BIGINT NOT NULL,
        PRIMARY KEY (canvas_id)
    )ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE INDEX ix_course_section_course_id ON course_section (course_id);
    CREATE TABLE job_run (
        id BIGINT NOT NULL AUTO_INCREMENT,
        job_name VARCHAR(50) NOT NULL,
        started_at DATETIME NOT NULL,
        finished_at DATETIME,
        status VARCHAR(20) NOT NULL,
        reason TEXT,
        host VARCHAR(255),
        pid INTEGER,
        PRIMARY KEY (id)
    )ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE lti_type (
        canvas_id BIGINT NOT NULL,
        des VARCHAR(255) NOT NULL,
        rpt_group_nm VARCHAR(255),
        PRIMARY KEY (canvas_id)
    )ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE mivideo_media_created (
        id VARCHAR(32) NOT NULL,
        created_at DATETIME NOT NULL,
        name VARCHAR(512),
        duration INTEGER,
        PRIMARY KEY (id)
    )ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE INDEX ix_mivideo_media_created_created_at ON mivideo_media_created (created_at);
    CREATE TABLE mivideo_media_started_hourly (
        id BIGINT NOT NULL AUTO_INCREMENT,
        event_hour_utc DATETIME NOT NULL,
        course_id BIGINT NOT NULL,
        event_time_utc_latest DATETIME(6) NOT NULL,
        event_count INTEGER NOT NULL,
        PRIMARY KEY (id),
        CONSTRAINT uq_mivideo_started_hour_course UNIQUE (event_hour_utc, course_id)
    )ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE term (
        canvas_id BIGINT NOT NULL,
        name VARCHAR(255) NOT NULL,
        sis_id VARCHAR(255),
        start_at DATETIME,
        end_at DATETIME,
        PRIMARY KEY (canvas_id)
    )ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE course (
        canvas_id BIGINT NOT NULL,
        sis_id VARCHAR(255),
        name VARCHAR(255) NOT NULL,
        account_id BIGINT NOT NULL,
        term_id BIGINT NOT NULL,
        created_at DATETIME,
        published_at DATETIME,
        workflow_state VARCHAR(50) NOT NULL,
        PRIMARY KEY (canvas_id),
        FOREIGN KEY(account_id) REFERENCES account (canvas_id),
        FOREIGN KEY(term_id) REFERENCES term (canvas_id)
    )ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE data_source_status (
        id BIGINT NOT NULL AUTO_INCREMENT,
        data_source_name VARCHAR(50) NOT NULL,
        data_updated_at DATETIME NOT NULL,
        job_run_id BIGINT NOT NULL,
        PRIMARY KEY (id),
        FOREIGN KEY(job_run_id) REFERENCES job_run (id)
    )ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE lti_placement (
        id BIGINT NOT NULL AUTO_INCREMENT,
        course_id BIGINT NOT NULL,
        account_id BIGINT,
        course_name VARCHAR(255),
        placement_type_id BIGINT NOT NULL,
        PRIMARY KEY (id),
        FOREIGN KEY(placement_type_id) REFERENCES lti_type (canvas_id)
    )ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE INDEX ix_lti_placement_course_id ON lti_placement (course_id);
    CREATE TABLE mivideo_media_courses (
        media_id VARCHAR(32) NOT NULL,
        course_id BIGINT NOT NULL,
        in_context BOOL NOT NULL,
        PRIMARY KEY (media_id, course_id, in_context),
        FOREIGN KEY(media_id) REFERENCES mivideo_media_created (id)
    )ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE canvas_course_usage (
        id BIGINT NOT NULL AUTO_INCREMENT,
        course_id BIGINT NOT NULL,
        date DATE NOT NULL,
        views INTEGER NOT NULL,
        participations INTEGER NOT NULL,
        PRIMARY KEY (id),
        CONSTRAINT uq_canvas_course_usage_course_date UNIQUE (course_id, date),
        FOREIGN KEY(course_id) REFERENCES course (canvas_id)
    )ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE enrollment (
        canvas_id BIGINT NOT NULL,
        course_id BIGINT NOT NULL,
        course_section_id BIGINT NOT NULL,
        user_id BIGINT NOT NULL,
        workflow_state VARCHAR(50) NOT NULL,
        role_type VARCHAR(50) NOT NULL,
        PRIMARY KEY (canvas_id),
        FOREIGN KEY(course_id) REFERENCES course (canvas_id),
        FOREIGN KEY(course_section_id) REFERENCES course_section (canvas_id)
    )ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
    CREATE TABLE lti_zoom_meeting (
        id BIGINT NOT NULL AUTO_INCREMENT,
        lti_placement_id BIGINT NOT NULL,
        meeting_id BIGINT NOT NULL,
        host_id VARCHAR(64),
        start_time DATETIME,
        status VARCHAR(20) NOT NULL,
        PRIMARY KEY (id),
        FOREIGN KEY(lti_placement_id) REFERENCES lti_placement (id)
    )ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin;
"""

POSTGRESQL = """
    CREATE TABLE account (
        canvas_id BIGINT NOT NULL,
        sis_id VARCHAR(255),
        name VARCHAR(255) NOT NULL,
        PRIMARY KEY (canvas_id)
    );
    CREATE TABLE course_section (
        canvas_id BIGINT NOT NULL,
        sis_id VARCHAR(255),
        name VARCHAR(255) NOT NULL,
        course_id BIGINT NOT NULL,
        PRIMARY KEY (canvas_id)
    );
    CREATE INDEX ix_course_section_course_id ON course_section (course_id);
    CREATE TABLE job_run (
        id BIGSERIAL NOT NULL,
        job_name VARCHAR(50) NOT NULL,
        started_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        finished_at TIMESTAMP WITHOUT TIME ZONE,
        status VARCHAR(20) NOT NULL,
        reason TEXT,
        host VARCHAR(255),
        pid INTEGER,
        PRIMARY KEY (id)
    );
    CREATE TABLE lti_type (
        canvas_id BIGINT NOT NULL,
        des VARCHAR(255) NOT NULL,
        rpt_group_nm VARCHAR(255),
        PRIMARY KEY (canvas_id)
    );
    CREATE TABLE mivideo_media_created (
        id VARCHAR(32) NOT NULL,
        created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        name VARCHAR(512),
        duration INTEGER,
        PRIMARY KEY (id)
    );
    CREATE INDEX ix_mivideo_media_created_created_at ON mivideo_media_created (created_at);
    CREATE TABLE mivideo_media_started_hourly (
        id BIGSERIAL NOT NULL,
        event_hour_utc TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        course_id BIGINT NOT NULL,
        event_time_utc_latest TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        event_count INTEGER NOT NULL,
        PRIMARY KEY (id),
        CONSTRAINT uq_mivideo_started_hour_course UNIQUE (event_hour_utc, course_id)
    );
    CREATE TABLE term (
        canvas_id BIGINT NOT NULL,
        name VARCHAR(255) NOT NULL,
        sis_id VARCHAR(255),
        start_at TIMESTAMP WITHOUT TIME ZONE,
        end_at TIMESTAMP WITHOUT TIME ZONE,
        PRIMARY KEY (canvas_id)
    );
    CREATE TABLE course (
        canvas_id BIGINT NOT NULL,
        sis_id VARCHAR(255),
        name VARCHAR(255) NOT NULL,
        account_id BIGINT NOT NULL,
        term_id BIGINT NOT NULL,
        created_at TIMESTAMP WITHOUT TIME ZONE,
        published_at TIMESTAMP WITHOUT TIME ZONE,
        workflow_state VARCHAR(50) NOT NULL,
        PRIMARY KEY (canvas_id),
        FOREIGN KEY(account_id) REFERENCES account (canvas_id),
        FOREIGN KEY(term_id) REFERENCES term (canvas_id)
    );
    CREATE TABLE data_source_status (
        id BIGSERIAL NOT NULL,
        data_source_name VARCHAR(50) NOT NULL,
        data_updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
        job_run_id BIGINT NOT NULL,
        PRIMARY KEY (id),
        FOREIGN KEY(job_run_id) REFERENCES job_run (id)
    );
    CREATE TABLE lti_placement (
        id BIGSERIAL NOT NULL,
        course_id BIGINT NOT NULL,
        account_id BIGINT,
        course_name VARCHAR(255),
        placement_type_id BIGINT NOT NULL,
        PRIMARY KEY (id),
        FOREIGN KEY(placement_type_id) REFERENCES lti_type (canvas_id)
    );
    CREATE INDEX ix_lti_placement_course_id ON lti_placement (course_id);
    CREATE TABLE mivideo_media_courses (
        media_id VARCHAR(32) NOT NULL,
        course_id BIGINT NOT NULL,
        in_context BOOLEAN NOT NULL,
        PRIMARY KEY (media_id, course_id, in_context),
        FOREIGN KEY(media_id) REFERENCES mivideo_media_created (id)
    );
    CREATE TABLE canvas_course_usage (
        id BIGSERIAL NOT NULL,
        course_id BIGINT NOT NULL,
        date DATE NOT NULL,
        views INTEGER NOT NULL,
        participations INTEGER NOT NULL,
        PRIMARY KEY (id),
        CONSTRAINT uq_canvas_course_usage_course_date UNIQUE (course_id, date),
        FOREIGN KEY(course_id) REFERENCES course (canvas_id)
    );
    CREATE TABLE enrollment (
        canvas_id BIGINT NOT NULL,
        course_id BIGINT NOT NULL,
        course_section_id BIGINT NOT NULL,
        user_id BIGINT NOT NULL,
        workflow_state VARCHAR(50) NOT NULL,
        role_type VARCHAR(50) NOT NULL,
        PRIMARY KEY (canvas_id),
        FOREIGN KEY(course_id) REFERENCES course (canvas_id),
        FOREIGN KEY(course_section_id) REFERENCES course_section (canvas_id)
    );
    CREATE TABLE lti_zoom_meeting (
        id BIGSERIAL NOT NULL,
        lti_placement_id BIGINT NOT NULL,
        meeting_id BIGINT NOT NULL,
        host_id VARCHAR(64),
        start_time TIMESTAMP WITHOUT TIME ZONE,
        status VARCHAR(20) NOT NULL,
        PRIMARY KEY (id),
        FOREIGN KEY(lti_placement_id) REFERENCES lti_placement (id)
    );
"""

SQLITE = """
    CREATE TABLE account (
        canvas_id BIGINT NOT NULL,
        sis_id VARCHAR(255),
        name VARCHAR(255) NOT NULL,
        PRIMARY KEY (canvas_id)
    );
    CREATE TABLE course_section (
        canvas_id BIGINT NOT NULL,
        sis_id VARCHAR(255),
        name VARCHAR(255) NOT NULL,
        course_id BIGINT NOT NULL,
        PRIMARY KEY (canvas_id)
    );
    CREATE INDEX ix_course_section_course_id ON course_section (course_id);
    CREATE TABLE job_run (
        id INTEGER NOT NULL,
        job_name VARCHAR(50) NOT NULL,
        started_at DATETIME NOT NULL,
        finished_at DATETIME,
        status VARCHAR(20) NOT NULL,
        reason TEXT,
        host VARCHAR(255),
        pid INTEGER,
        PRIMARY KEY (id)
    );
    CREATE TABLE lti_type (
        canvas_id BIGINT NOT NULL,
        des VARCHAR(255) NOT NULL,
        rpt_group_nm VARCHAR(255),
        PRIMARY KEY (canvas_id)
    );
    CREATE TABLE mivideo_media_created (
        id VARCHAR(32) NOT NULL,
        created_at DATETIME NOT NULL,
        name VARCHAR(512),
        duration INTEGER,
        PRIMARY KEY (id)
    );
    CREATE INDEX ix_mivideo_media_created_created_at ON mivideo_media_created (created_at);
    CREATE TABLE mivideo_media_started_hourly (
        id INTEGER NOT NULL,
        event_hour_utc DATETIME NOT NULL,
        course_id BIGINT NOT NULL,
        event_time_utc_latest DATETIME NOT NULL,
        event_count INTEGER NOT NULL,
        PRIMARY KEY (id),
        CONSTRAINT uq_mivideo_started_hour_course UNIQUE (event_hour_utc, course_id)
    );
    CREATE TABLE term (
        canvas_id BIGINT NOT NULL,
        name VARCHAR(255) NOT NULL,
        sis_id VARCHAR(255),
        start_at DATETIME,
        end_at DATETIME,
        PRIMARY KEY (canvas_id)
    );
    CREATE TABLE course (
        canvas_id BIGINT NOT NULL,
        sis_id VARCHAR(255),
        name VARCHAR(255) NOT NULL,
        account_id BIGINT NOT NULL,
        term_id BIGINT NOT NULL,
        created_at DATETIME,
        published_at DATETIME,
        workflow_state VARCHAR(50) NOT NULL,
        PRIMARY KEY (canvas_id),
        FOREIGN KEY(account_id) REFERENCES account (canvas_id),
        FOREIGN KEY(term_id) REFERENCES term (canvas_id)
    );
    CREATE TABLE data_source_status (
        id INTEGER NOT NULL,
        data_source_name VARCHAR(50) NOT NULL,
        data_updated_at DATETIME NOT NULL,
        job_run_id BIGINT NOT NULL,
        PRIMARY KEY (id),
        FOREIGN KEY(job_run_id) REFERENCES job_run (id)
    );
    CREATE TABLE lti_placement (
        id INTEGER NOT NULL,
        course_id BIGINT NOT NULL,
        account_id BIGINT,
        course_name VARCHAR(255),
        placement_type_id BIGINT NOT NULL,
        PRIMARY KEY (id),
        FOREIGN KEY(placement_type_id) REFERENCES lti_type (canvas_id)
    );
    CREATE INDEX ix_lti_placement_course_id ON lti_placement (course_id);
    CREATE TABLE mivideo_media_courses (
        media_id VARCHAR(32) NOT NULL,
        course_id BIGINT NOT NULL,
        in_context BOOLEAN NOT NULL,
        PRIMARY KEY (media_id, course_id, in_context),
        FOREIGN KEY(media_id) REFERENCES mivideo_media_created (id)
    );
    CREATE TABLE canvas_course_usage (
        id INTEGER NOT NULL,
        course_id BIGINT NOT NULL,
        date DATE NOT NULL,
        views INTEGER NOT NULL,
        participations INTEGER NOT NULL,
        PRIMARY KEY (id),
        CONSTRAINT uq_canvas_course_usage_course_date UNIQUE (course_id, date),
        FOREIGN KEY(course_id) REFERENCES course (canvas_id)
    );
    CREATE TABLE enrollment (
        canvas_id BIGINT NOT NULL,
        course_id BIGINT NOT NULL,
        course_section_id BIGINT NOT NULL,
        user_id BIGINT NOT NULL,
        workflow_state VARCHAR(50) NOT NULL,
        role_type VARCHAR(50) NOT NULL,
        PRIMARY KEY (canvas_id),
        FOREIGN KEY(course_id) REFERENCES course (canvas_id),
        FOREIGN KEY(course_section_id) REFERENCES course_section (canvas_id)
    );
    CREATE TABLE lti_zoom_meeting (
        id INTEGER NOT NULL,
        lti_placement_id BIGINT NOT NULL,
        meeting_id BIGINT NOT NULL,
        host_id VARCHAR(64),
        start_time DATETIME,
        status VARCHAR(20) NOT NULL,
        PRIMARY KEY (id),
        FOREIGN KEY(lti_placement_id) REFERENCES lti_placement (id)
    );
"""

DROP = """
    DROP TABLE IF EXISTS lti_zoom_meeting;
    DROP TABLE IF EXISTS lti_placement;
    DROP TABLE IF EXISTS lti_type;
    DROP TABLE IF EXISTS mivideo_media_courses;
    DROP TABLE IF EXISTS mivideo_media_created;
    DROP TABLE IF EXISTS mivideo_media_started_hourly;
    DROP TABLE IF EXISTS data_source_status;
    DROP TABLE IF EXISTS job_run;
    DROP TABLE IF EXISTS canvas_course_usage;
    DROP TABLE IF EXISTS enrollment;
    DROP TABLE IF EXISTS course_section;
    DROP TABLE IF EXISTS course;
    DROP TABLE IF EXISTS account;
    DROP TABLE IF EXISTS term;
"""

steps = [
    dialect_step(
        {"mysql": MYSQL, "postgresql": POSTGRESQL, "sqlite": SQLITE},
        same_for_all(DROP),
    )
]
