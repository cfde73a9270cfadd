# The nightly job: `docker run IMAGE` validates the config, waits for the database,
# migrates and runs JOB_NAMES; exit code 0 only when every job succeeded.
FROM python:3.11-slim

# USER: yoyo-migrations asks getpass for a user name, which an arbitrary uid lacks.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    USER=course_inventory \
    HOME=/tmp \
    ENV_DIR=/app/config/secrets \
    ENV_FILE=env.hjson

WORKDIR /app

# 1. Dependencies only: this layer is rebuilt when pyproject.toml changes, not the code.
COPY pyproject.toml setup.py README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 2. The code (.dockerignore keeps config/secrets, data, .venv, .git and caches out).
#    setup.py discovers every package, so nothing here lists them.
COPY . .
RUN pip install --no-deps . && rm -rf build ./*.egg-info

# 3. A non-root user. OpenShift runs the image under an arbitrary uid in group 0: the
#    data folder belongs to group 0 and is group-writable (setgid keeps new files there).
RUN useradd --uid 1001 --gid 0 --home-dir /tmp --no-create-home course_inventory \
    && mkdir -p /app/data \
    && chown 1001:0 /app/data \
    && chmod 2775 /app/data
USER 1001

# `course-inventory events serve` (the Live Events receiver) listens here.
EXPOSE 8080

CMD ["course-inventory", "run"]
