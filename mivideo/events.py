"""Media started per course-hour: the UDP Caliper event store in BigQuery.

Runs the one canonical GoogleSQL query (``media_started_hourly.sql``) through
``google-cloud-bigquery`` with a service-account key file. The watermark is a named
TIMESTAMP parameter; only the table name is put into the text, after validation.

Retries: google-api-core's retry wraps every REST call the client makes. Its default
is time-bounded; here each call gets at most ``max_attempts`` attempts (the config's
MAX_REQ_ATTEMPTS) with exponential backoff and jitter, and besides the client's own
retryable errors also 504 and truncated/invalid JSON bodies are retried.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import requests
from courseinv.runner.jobs import JobError
from courseinv.runner.payload import Fields
from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.auth import exceptions as auth_exceptions
from google.cloud import bigquery
from google.oauth2 import service_account

log = logging.getLogger(__name__)

SQL_FILE = "media_started_hourly.sql"
TABLE_PLACEHOLDER = "{events_table}"
# `[project.]dataset.table`; project ids may contain dashes.
TABLE_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){1,2}$")
SCOPES = ("https://www.googleapis.com/auth/bigquery",)
COLUMNS = ["event_hour_utc", "course_id", "event_time_utc_latest", "event_count"]
QUERY_TIMEOUT_S = 600.0
PAGE_ROWS = 10_000


def query_text(events_table: str) -> str:
    """The canonical query with the (validated, backtick-quoted) event table name."""
    if not TABLE_NAME.fullmatch(events_table):
        raise JobError(
            "MIVIDEO.udp_events_table: expected [project.]dataset.table of letters, digits, "
            f"'_' and '-', got {events_table!r}"
        )
    sql = resources.files("courseinv.mivideo").joinpath(SQL_FILE).read_text(encoding="utf-8")
    return sql.replace(TABLE_PLACEHOLDER, f"`{events_table}`")


def fetch_media_started_hourly(
    config: Mapping[str, Any],
    env_dir: Path,
    after: datetime,
    hour_from: datetime,
    *,
    max_attempts: int,
) -> pd.DataFrame:
    """Counts per (UTC hour, course) of events after ``after``, at or after ``hour_from``
    (an hour's start: that hour is counted whole) and before today (UTC).

    Columns as in ``mivideo_media_started_hourly`` (no id); times naive UTC.
    """
    client = make_client(config, env_dir)
    retry = AttemptRetry(max_attempts)
    params = [
        bigquery.ScalarQueryParameter("after_time", "TIMESTAMP", after),
        bigquery.ScalarQueryParameter("hour_from", "TIMESTAMP", hour_from),
    ]
    job_config = bigquery.QueryJobConfig(query_parameters=params, use_legacy_sql=False)
    try:
        job = client.query(
            query_text(config["udp_events_table"]),
            job_config=job_config,
            retry=retry,
            timeout=QUERY_TIMEOUT_S,
        )
        rows = job.result(retry=retry, timeout=QUERY_TIMEOUT_S, page_size=PAGE_ROWS)
        frame = _frame([checked_row(tuple(row.values())) for row in rows])
    except (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError, ValueError) as exc:
        raise JobError(f"BigQuery query of the UDP event store failed: {_describe(exc)}") from None
    finally:
        client.close()
    log.info("BigQuery: %d course-hour rows of media started from %s", len(frame),
             max(after, hour_from))  # fmt: skip
    return frame


def make_client(config: Mapping[str, Any], env_dir: Path) -> bigquery.Client:
    """A client authenticated with the key file named in the config (under ENV_DIR)."""
    key_path = Path(env_dir) / config["udp_service_account_json_filename"]
    info = read_key_file(key_path)
    try:
        credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    except (ValueError, KeyError) as exc:
        raise JobError(
            f"MIVIDEO.udp_service_account_json_filename: {key_path} is not a usable "
            f"service-account key ({type(exc).__name__})"
        ) from None
    project = config.get("bigquery_project") or info.get("project_id")
    if not project:
        raise JobError("MIVIDEO.bigquery_project is not set and the key file has no project_id")
    options = (
        {"api_endpoint": config["bigquery_api_endpoint"]}
        if config.get("bigquery_api_endpoint")
        else None
    )
    return bigquery.Client(project=project, credentials=credentials, client_options=options)


def read_key_file(path: Path) -> dict[str, Any]:
    """The key file's JSON; errors name the file, never its contents."""
    where = f"MIVIDEO.udp_service_account_json_filename: {path}"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobError(f"{where}: file not found") from None
    except OSError as exc:
        raise JobError(f"{where}: cannot read it ({exc.strerror})") from None
    except ValueError:
        raise JobError(f"{where}: not valid JSON") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise JobError(f"{where}: not a service-account key (type must be service_account)")
    return info


def checked_row(values: tuple) -> tuple:
    """One result row with every column present and of its type (errors name the row)."""
    row = Fields(dict(zip(COLUMNS, values, strict=False)), "BigQuery media_started_hourly",
                 "row", object_id=f"(hour {values[0] if values else None}, course "
                 f"{values[1] if len(values) > 1 else None})")  # fmt: skip
    if len(values) != len(COLUMNS):
        row.fail("(columns)", f"are {len(values)} (expected {', '.join(COLUMNS)})")
    return (row.utc("event_hour_utc"), row.int("course_id"), row.utc("event_time_utc_latest"),
            row.int("event_count", minimum=1))  # fmt: skip


def _frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("event_hour_utc", "event_time_utc_latest"):
        frame[column] = pd.to_datetime(frame[column], utc=True).dt.tz_localize(None)
    return frame.astype({"course_id": "int64", "event_count": "int64"})


def _describe(exc: BaseException) -> str:
    """A one-line reason from a Google client error (no credentials are in these)."""
    if isinstance(exc, api_exceptions.RetryError) and exc.cause is not None:
        exc = exc.cause
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message.splitlines()[0] if message else ''}".strip()


# -- retries ------------------------------------------------------------------------------


RETRYABLE_REASONS = frozenset({"rateLimitExceeded", "backendError", "internalError", "badGateway"})
RETRYABLE_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    auth_exceptions.TransportError,
    api_exceptions.TooManyRequests,
    api_exceptions.InternalServerError,
    api_exceptions.BadGateway,
    api_exceptions.ServiceUnavailable,
    api_exceptions.GatewayTimeout,
    ValueError,  # a truncated or otherwise invalid JSON body
)


def retryable(exc: BaseException) -> bool:
    """The client's own rule (google.cloud.bigquery.retry), plus 504 and invalid JSON."""
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    errors = getattr(exc, "errors", None)
    if errors and isinstance(errors[0], dict) and "reason" in errors[0]:
        return errors[0]["reason"] in RETRYABLE_REASONS or isinstance(exc, RETRYABLE_TYPES)
    return isinstance(exc, RETRYABLE_TYPES)


class AttemptRetry(api_retry.Retry):
    """google-api-core ``Retry`` that gives up after ``max_attempts`` attempts of a call.

    The stock ``Retry`` only bounds the total time; the project's contract is a number of
    attempts per request (MAX_REQ_ATTEMPTS). Backoff is exponential with full jitter.
    """

    def __init__(self, max_attempts: int, *, initial: float = 0.25, maximum: float = 8.0,
                 **kwargs: Any) -> None:  # fmt: skip
        kwargs.setdefault("predicate", retryable)
        super().__init__(initial=initial, maximum=maximum, timeout=QUERY_TIMEOUT_S, **kwargs)
        self.max_attempts = max(1, max_attempts)

    def __call__(
        self, func: Callable[..., Any], on_error: Callable[[Exception], Any] | None = None
    ) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            failures = 0

            def predicate(exc: Exception) -> bool:
                nonlocal failures
                failures += 1
                if not self._predicate(exc) or failures >= self.max_attempts:
                    return False
                log.warning("BigQuery call failed (%s); attempt %d/%d",
                            _describe(exc), failures + 1, self.max_attempts)  # fmt: skip
                return True

            return api_retry.retry_target(
                functools.partial(func, *args, **kwargs),
                predicate,
                api_retry.exponential_sleep_generator(self._initial, self._maximum,
                                                      multiplier=self._multiplier),
                timeout=self._timeout,
                on_error=self._on_error or on_error,
            )  # fmt: skip

        return wrapped


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive values are taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
