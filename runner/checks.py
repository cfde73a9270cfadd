"""``check-config``: check everything ``run`` will need, one line per check.

Each line says ``ok`` or ``failed``, the host it talked to and, on failure, a one-line
human cause (connection refused, timed out, DNS, TLS, 401 bad token, 403, 404 with the
path, login rejected, ...). Every HTTP check makes a single attempt (no retries, so no
retry warnings); log lines written while the checks run are held back and written after
the checklist, so they never interleave with it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from courseinv.config import Config
from courseinv.db.engine import describe, output_engine, udw_engine
from courseinv.runner.logs import redactor
from sqlalchemy import text

CHECK_TIMEOUT = (5.0, 30.0)  # connect, read: a check should not hang on a dead host


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    name: str
    host: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'failed':<6}  {self.name} [{self.host}]: {self.detail}"


class CheckFailed(Exception):
    """A check's own verdict (the cause is already in words)."""


# -- causes in words ----------------------------------------------------------------------

# Class names (requests/urllib3/ssl/socket) and driver messages -> a human cause.
_CAUSE_WORDS = {
    r"NameResolution|gaierror|could not translate host|Name or service not known"
    r"|Unknown (MySQL )?server host|nodename nor servname|getaddrinfo": (
        "DNS: the host name does not resolve"
    ),
    r"Refused": "connection refused (nothing listens on that port)",
    r"SSL|TLS|certificate": "TLS handshake or certificate verification failed",
    r"Timeout|timed out": "timed out",
    r"ConnectionReset|reset by peer|RemoteDisconnected|Connection aborted": (
        "the connection was reset"
    ),
    r"password authentication failed|Access denied for user": (
        "login rejected: wrong user or password"
    ),
    r"Unknown database|database \S+ does not exist": "the database does not exist",
    r"permission denied|command denied|read-only|readonly": "permission denied",
    r"unable to open database file": "cannot open the SQLite file",
}
_CAUSES = [(re.compile(pattern, re.I), words) for pattern, words in _CAUSE_WORDS.items()]


def cause(exc: BaseException) -> str:
    """One line saying why ``exc`` happened, in words (never a secret)."""
    from courseinv.http_client.errors import PermanentHttpError, RetriesExhausted

    if isinstance(exc, CheckFailed):
        return str(exc)
    if isinstance(exc, PermanentHttpError):
        return _status_cause(exc.status, exc.method, exc.path)
    if isinstance(exc, RetriesExhausted):
        return cause_in_words(exc.last_reason) or f"{exc.method} {exc.path}: {exc.last_reason}"
    status = getattr(exc, "code", None)  # google.api_core exceptions carry the HTTP status
    if isinstance(status, int) and 400 <= status < 600:
        errors = getattr(exc, "errors", None) or [{}]
        said = errors[0].get("message") if isinstance(errors[0], dict) else None
        return _status_cause(status, "", _first_line(said or getattr(exc, "message", "")))
    text_ = _chain_text(exc)
    return cause_in_words(text_) or _first_line(str(exc)) or type(exc).__name__


def _status_cause(status: int, method: str, path: str) -> str:
    where = f"{method} {path}".strip()
    words = {
        401: "401 Unauthorized: the token or key was rejected",
        403: "403 Forbidden: the credentials lack a permission" + (f" ({where})" if where else ""),
        404: f"404 Not Found: {where}",
    }
    return words.get(status, f"HTTP {status}: {where}")


def _chain_text(exc: BaseException) -> str:
    """Class names and messages of ``exc`` and everything it wraps (for matching only)."""
    parts, seen, queue = [], set(), [exc]
    while queue and len(seen) < 10:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        inner = [
            *current.args,
            getattr(current, "orig", None),
            getattr(current, "reason", None),
            current.__cause__,
            current.__context__,
        ]
        queue.extend(e for e in inner if isinstance(e, BaseException))
    return " | ".join(parts)


def cause_in_words(text_: str) -> str | None:
    """A known network or database failure named in ``text_`` (class names, driver
    messages), in words; None when nothing known matches."""
    return next((words for pattern, words in _CAUSES if pattern.search(text_)), None)


def _first_line(text_: str) -> str:
    lines = [line for line in str(text_).strip().splitlines() if line.strip()]
    return lines[0][:200] if lines else ""


def _host_of(url: str) -> str:
    return urlsplit(str(url)).netloc or str(url)


# -- the checks ---------------------------------------------------------------------------


def check_output_db(config: Config) -> tuple[str, str]:
    """Connect, then create and drop a scratch table (``run`` creates staging tables)."""
    engine = output_engine(config, config.data_dir())
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        scratch = f"ci_check_{secrets.token_hex(4)}"
        try:
            with engine.begin() as conn:
                conn.execute(text(f"CREATE TABLE {scratch} (id INTEGER)"))
        except Exception as exc:
            raise CheckFailed(f"connected, but may not create tables: {cause(exc)}") from exc
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {scratch}"))
        return describe(engine), "connected; may create tables"
    finally:
        engine.dispose()


def _canvas(config: Config) -> Any:
    from courseinv.http_client.canvas import CanvasClient

    return CanvasClient.from_config(config, max_attempts=1, timeout=CHECK_TIMEOUT)


def check_canvas_account(config: Config) -> tuple[str, str]:
    host = _host_of(config["CANVAS"]["CANVAS_URL"])
    account_id = config["CANVAS"]["CANVAS_ACCOUNT_ID"]
    with _canvas(config) as canvas:
        account = canvas.get(f"/api/v1/accounts/{account_id}")
    return host, f"the token reads account {account_id} ({account.get('name')!r})"


def check_canvas_terms(config: Config) -> tuple[str, str]:
    from courseinv.course_inventory.canvas_pull import root_account_id
    from courseinv.http_client.errors import NotFound

    host = _host_of(config["CANVAS"]["CANVAS_URL"])
    term_ids = list(dict.fromkeys(config["CANVAS"].get("CANVAS_TERM_IDS") or []))
    with _canvas(config) as canvas:
        root = root_account_id(canvas, int(config["CANVAS"]["CANVAS_ACCOUNT_ID"]))
        missing, names = [], []
        for term_id in term_ids:
            try:
                term = canvas.get(f"/api/v1/accounts/{root}/terms/{term_id}")
                names.append(f"{term_id} {term.get('name')!r}")
            except NotFound:
                missing.append(str(term_id))
    if missing:
        raise CheckFailed(
            f"term(s) {', '.join(missing)} of CANVAS.CANVAS_TERM_IDS do not exist in root "
            f"account {root} (404 on /api/v1/accounts/{root}/terms/<id>)"
        )
    return host, f"{len(names)} term(s) exist: {', '.join(names)}" if names else "no terms listed"


def check_udw(config: Config) -> tuple[str, str]:
    engine = udw_engine(config)
    assert engine is not None
    try:
        with engine.connect() as conn:
            try:
                value = conn.execute(
                    text("SELECT value FROM unizin_metadata WHERE key = 'canvasdatadate'")
                ).scalar()
            except Exception as exc:
                if re.search(r"unizin_metadata", str(exc), re.I) and re.search(
                    r"no such table|does not exist|doesn't exist", str(exc), re.I
                ):
                    raise CheckFailed("connected, but there is no unizin_metadata table") from exc
                raise
        if value is None:
            raise CheckFailed("connected, but unizin_metadata has no canvasdatadate row")
        return describe(engine), f"unizin_metadata canvasdatadate {value}"
    finally:
        engine.dispose()


def _mivideo(config: Config) -> dict[str, Any]:
    from courseinv.mivideo.job import _mivideo_config

    return _mivideo_config(config)


def check_bigquery_key(config: Config) -> tuple[str, str]:
    from courseinv.mivideo.events import read_key_file

    path = Path(config.env_dir) / config["MIVIDEO"]["udp_service_account_json_filename"]
    try:
        info = read_key_file(path)
    except Exception as exc:
        raise CheckFailed(str(exc)) from exc
    return str(path), f"a service-account key for {info.get('client_email', '?')}"


def check_bigquery_table(config: Config) -> tuple[str, str]:
    """A dry run of the job's own query: table, columns and permissions, nothing billed."""
    from datetime import UTC, datetime

    from courseinv.mivideo.events import make_client, query_text
    from google.cloud import bigquery

    mivideo = _mivideo(config)
    client = make_client(mivideo, config.env_dir)
    host = _host_of(mivideo.get("bigquery_api_endpoint") or "https://bigquery.googleapis.com")
    try:
        now = datetime.now(UTC)
        params = [bigquery.ScalarQueryParameter(name, "TIMESTAMP", now)
                  for name in ("after_time", "hour_from")]  # fmt: skip
        job_config = bigquery.QueryJobConfig(
            dry_run=True, use_query_cache=False, query_parameters=params, use_legacy_sql=False
        )
        job = client.query(
            query_text(mivideo["udp_events_table"]), job_config=job_config, retry=None, timeout=30
        )
        scanned = int(job.total_bytes_processed or 0)
    finally:
        client.close()
    return host, f"dry run of the query on {mivideo['udp_events_table']}: would scan {scanned:,} B"


def check_kaltura(config: Config) -> tuple[str, str]:
    from courseinv.http_client.kaltura import KalturaClient

    mivideo = _mivideo(config)
    url = mivideo["kaltura_service_url"]
    client = KalturaClient(
        url,
        int(mivideo["kaltura_partner_id"]),
        mivideo["kaltura_user_secret"],
        max_attempts=1,
        timeout=CHECK_TIMEOUT,
    )
    with client:
        client.start_session()
    return _host_of(url), f"session started for partner {mivideo['kaltura_partner_id']}"


def check_zoom(config: Config) -> tuple[str, str]:
    from courseinv.http_client.zoom import ZoomClient

    zoom = config["ZOOM"]
    client = ZoomClient(zoom, max_attempts=1, workers=1)
    client.session.timeout = CHECK_TIMEOUT
    try:
        client.fetch_token()
    finally:
        client.close()
    return _host_of(zoom["OAUTH_URL"]), "Server-to-Server OAuth issued a token"


def check_live_events_queue(config: Config) -> tuple[str, str]:
    from courseinv.live_events.sqs import Queue

    section = config["LIVE_EVENTS"]
    queue = Queue(section, max_attempts=1)
    try:
        visible, in_flight = queue.depth()
    finally:
        queue.close()
    host = _host_of(section.get("SQS_ENDPOINT_URL") or section["SQS_QUEUE_URL"])
    return host, f"queue reachable: {visible} messages waiting, {in_flight} in flight"


# -- running them -------------------------------------------------------------------------

Probe = Callable[[Config], tuple[str, str]]


def planned_checks(config: Config) -> list[tuple[str, str, Probe]]:
    """(name, host shown on failure, probe) for everything configured."""
    checks: list[tuple[str, str, Probe]] = [
        ("output database (INVENTORY_DB)", _db_host(config), check_output_db)
    ]
    canvas = config.get("CANVAS")
    if canvas is not None:
        host = _host_of(canvas["CANVAS_URL"])
        checks.append(("Canvas token reads the account", host, check_canvas_account))
        checks.append(("Canvas terms (CANVAS_TERM_IDS)", host, check_canvas_terms))
    if config.get("UDW") is not None:
        checks.append(("Unizin Data Warehouse (UDW)", _udw_host(config), check_udw))
    mivideo = config.get("MIVIDEO")
    if mivideo is not None:
        key = str(Path(config.env_dir) / mivideo["udp_service_account_json_filename"])
        bq = _host_of(mivideo.get("bigquery_api_endpoint") or "https://bigquery.googleapis.com")
        kaltura = _host_of(mivideo.get("kaltura_service_url") or "https://www.kaltura.com")
        checks.append(("BigQuery key file", key, check_bigquery_key))
        checks.append(("BigQuery events table (dry run)", bq, check_bigquery_table))
        checks.append(("Kaltura session", kaltura, check_kaltura))
    if config.get("ZOOM") is not None:
        checks.append(("Zoom token", _host_of(config["ZOOM"]["OAUTH_URL"]), check_zoom))
    live = config.get("LIVE_EVENTS") or {}
    if live.get("SQS_QUEUE_URL"):
        host = _host_of(live.get("SQS_ENDPOINT_URL") or live["SQS_QUEUE_URL"])
        checks.append(("Live Events queue (LIVE_EVENTS)", host, check_live_events_queue))
    return checks


def _db_host(config: Config) -> str:
    try:
        engine = output_engine(config, config.data_dir())
    except Exception:
        return "INVENTORY_DB"
    try:
        return describe(engine)
    finally:
        engine.dispose()


def _udw_host(config: Config) -> str:
    try:
        engine = udw_engine(config)
    except Exception:
        return "UDW"
    if engine is None:
        return "UDW"
    try:
        return describe(engine)
    finally:
        engine.dispose()


def _single_attempt(config: Config) -> Config:
    return dataclasses.replace(
        config, data=MappingProxyType({**config.data, "MAX_REQ_ATTEMPTS": 1})
    )


def attempt(name: str, host: str, probe: Probe, config: Config) -> Check:
    try:
        shown_host, detail = probe(config)
        return Check(name, shown_host, True, detail)
    except Exception as exc:
        logging.getLogger(__name__).debug("check %s failed", name, exc_info=True)
        return Check(name, host, False, redactor()(cause(exc)))


def run_checks(config: Config, report: Callable[[str], None] = print) -> list[Check]:
    """Run every check, ``report`` each line as it completes; log lines wait until the end."""
    config = _single_attempt(config)
    results = []
    with _held_logs():
        for name, host, probe in planned_checks(config):
            result = attempt(name, host, probe, config)
            results.append(result)
            report(result.line())
    return results


@contextmanager
def _held_logs() -> Iterator[None]:
    """Hold log records back while the checklist prints; hand them on afterwards."""
    root = logging.getLogger()
    held: dict[int, logging.LogRecord] = {}  # each record once, whatever the handlers

    class Hold(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            held.setdefault(id(record), record)
            return False

    hold = Hold()
    handlers = list(root.handlers)
    for handler in handlers:
        handler.addFilter(hold)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(hold)
        for record in held.values():
            if record.levelno >= root.level:
                for handler in handlers:
                    if record.levelno >= handler.level:
                        handler.handle(record)
