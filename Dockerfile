FROM python:3.11-slim

# yoyo-migrations asks getpass for a user name; containers often have none.
ENV USER=course_inventory \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ENV_DIR=/app/config/secrets \
    ENV_FILE=env.hjson

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY db ./db
COPY runner ./runner
COPY http_client ./http_client
COPY sandbox ./sandbox
COPY course_inventory ./course_inventory
COPY mivideo ./mivideo
COPY online_meetings ./online_meetings
COPY run_jobs.py create_db.py ./
RUN pip install . && useradd --create-home course_inventory && mkdir -p /app/data \
    && chown course_inventory /app/data
USER course_inventory

# Validates the config, waits for the database, migrates, runs JOB_NAMES.
# Exit code 0 only when every job succeeded.
CMD ["course-inventory", "run"]
