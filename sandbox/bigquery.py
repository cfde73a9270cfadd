"""A BigQuery REST fake that the unmodified ``google-cloud-bigquery`` client talks to.

For development, tests, the demo and benchmarks only.

It serves the calls the client makes for ``client.query(sql, job_config).result()``
(reference/sources.md §4): ``jobs.insert``, ``jobs.getQueryResults`` (paged with
``maxResults``/``pageToken``) and ``jobs.get``. Queries are real GoogleSQL: each is
transpiled with sqlglot to DuckDB and run over a seeded Caliper event table
(``sandbox.caliper``), with named query parameters bound by name. Only SELECT
statements are accepted.

Authentication uses a service-account key this server generated (it keeps the public
half). The key names a non-Google ``universe_domain``, so google-auth signs a
self-signed JWT with it and sends that as the bearer token; the server verifies the
RS256 signature on every call. (With Google's universe google-auth would also start a
background lookup at iamcredentials.googleapis.com, which a sandbox must not reach.)
The OAuth token endpoint (``grant_type=jwt-bearer``) is served too, for keys in
Google's universe; it verifies the assertion the same way and issues access tokens.

Evaluation notes (sources.md §5): the DuckDB session runs in UTC (the ``'UTC'`` argument
of timestamp functions is dropped by the transpiler), a ``project.`` qualifier is
stripped, and ``CURRENT_DATE()`` is the event store's sandbox today, as BigQuery
evaluates it on its own (UTC) clock; that is how a test moves to the next sandbox day.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
from courseinv.sandbox.caliper import CaliperEventStore
from courseinv.sandbox.httpserver import (
    Faults,
    Latency,
    Request,
    Response,
    SandboxServer,
    json_response,
)
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlglot import exp
from sqlglot.errors import ParseError

API = "/bigquery/v2/projects/([^/]+)"
TOKEN_PATH = "/token"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOCK_SKEW_S = 300
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# DuckDB result type -> BigQuery field type.
_TYPES = {
    "BIGINT": "INTEGER", "INTEGER": "INTEGER", "HUGEINT": "INTEGER", "SMALLINT": "INTEGER",
    "TINYINT": "INTEGER", "UBIGINT": "INTEGER", "UINTEGER": "INTEGER",
    "VARCHAR": "STRING", "TIMESTAMP WITH TIME ZONE": "TIMESTAMP", "TIMESTAMP": "DATETIME",
    "DATE": "DATE", "DOUBLE": "FLOAT", "FLOAT": "FLOAT", "BOOLEAN": "BOOLEAN",
}  # fmt: skip


@dataclass
class QueryJob:
    """A finished query job: its rows (already encoded as BigQuery cells) or its error."""

    project: str
    job_id: str
    location: str
    configuration: dict[str, Any]
    created_ms: int
    fields: list[dict[str, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, str] | None = None
    polls_until_done: int = 0  # answers "RUNNING" this many more times

    def reference(self) -> dict[str, str]:
        return {"projectId": self.project, "jobId": self.job_id, "location": self.location}


@dataclass(frozen=True)
class QueryRecord:
    """What a client asked for (for tests): the SQL text and its named parameters."""

    project: str
    sql: str
    parameters: dict[str, Any]


class BigQueryError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


class BigQueryServer(SandboxServer):
    """BigQuery REST fake over a ``CaliperEventStore`` loaded as ``table`` in DuckDB.

    Knobs (besides latency/faults/down/tamper): ``page_rows`` (most rows per results
    page), ``polls_until_done`` (a new job answers "RUNNING" that many times first),
    ``query_delays`` (the n-th query job waits that many seconds before it reads the
    events and answers: two concurrent clients then see the store at different moments).
    """

    name = "bigquery"

    def __init__(
        self,
        store: CaliperEventStore,
        *,
        table: str = "event_store.events",
        location: str = "US",
        page_rows: int = 1000,
        latency: Latency | None = None,
        faults: Faults | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(latency=latency, faults=faults, seed=seed)
        dataset, _, table_name = table.rpartition(".")
        if not dataset or "." in dataset:
            raise ValueError("table must be 'dataset.table'")
        self.store, self.table, self.location = store, table, location
        self.page_rows = page_rows
        self.polls_until_done = 0
        self.query_delays: list[float] = []
        self.queries: list[QueryRecord] = []
        self._jobs: dict[tuple[str, str], QueryJob] = {}
        self._public_keys: dict[str, rsa.RSAPublicKey] = {}  # client_email -> key
        self._tokens: set[str] = set()
        self.auth_modes: Counter[str] = Counter()  # accepted calls by credential kind
        self._lock = threading.Lock()
        self._dataset, self._table_name = dataset, table_name
        self._db: duckdb.DuckDBPyConnection | None = None
        self._loaded = 0
        self.add_route("POST", TOKEN_PATH, "oauth.token", self._token, faultable=False)
        self.add_route("POST", f"{API}/jobs", "jobs.insert", self._insert)
        self.add_route("GET", f"{API}/queries/([^/]+)", "jobs.getQueryResults", self._results)
        self.add_route("GET", f"{API}/jobs/([^/]+)", "jobs.get", self._get)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> BigQueryServer:
        """Open the DuckDB database (events are loaded at the first query), then serve."""
        db = duckdb.connect()
        db.execute("SET TimeZone = 'UTC'")
        db.execute(f'CREATE SCHEMA "{self._dataset}"')
        db.execute(
            f'CREATE TABLE "{self._dataset}"."{self._table_name}" (id VARCHAR, type VARCHAR, '
            "action VARCHAR, event_time TIMESTAMPTZ, ed_app VARCHAR, actor_id VARCHAR, "
            "course_offering_id VARCHAR, event VARCHAR, store_time TIMESTAMPTZ)"
        )
        self._db, self._loaded = db, 0
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- credentials --------------------------------------------------------------------
    def create_service_account_key(
        self,
        directory: Path | str,
        filename: str = "udp-service-account.json",
        project_id: str = "sandbox-udp",
    ) -> Path:
        """Write a service-account key file whose ``token_uri`` is this server; returns it.

        The server must be running. The private key is generated here and only its
        public half is kept, to verify the client's JWT assertions.
        """
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        email = f"udp-reader-{secrets.token_hex(3)}@{project_id}.iam.gserviceaccount.com"
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        info = {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": secrets.token_hex(20),
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": f"{self.url}/auth",
            "token_uri": f"{self.url}{TOKEN_PATH}",
            # Not Google's universe: google-auth then skips its background "regional
            # access boundary" lookup, which would go to iamcredentials.googleapis.com.
            "universe_domain": "sandbox.invalid",
        }
        with self._lock:
            self._public_keys[email] = key.public_key()
        path = Path(directory) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=2), encoding="utf-8")
        path.chmod(0o600)
        return path

    def _token(self, request: Request) -> Response:
        form = request.form()
        grant = (form.get("grant_type") or [""])[-1]
        assertion = (form.get("assertion") or [""])[-1]
        if grant != JWT_BEARER:
            return json_response({"error": "unsupported_grant_type"}, 400)
        problem = self._verify_assertion(assertion)
        if problem:
            return json_response({"error": "invalid_grant", "error_description": problem}, 400)
        token = f"ya29.sandbox-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._tokens.add(token)
        return json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _verify_assertion(self, assertion: str, audience: bool = True) -> str | None:
        """Check the RS256 signature, audience and lifetime; returns the problem or None.

        google-auth addresses the grant to Google's token URI whatever the key's
        ``token_uri`` says, so both are accepted. ``audience=False`` skips the check
        (a self-signed JWT sent directly as the bearer token names the API instead).
        """
        try:
            head, body, sig = assertion.split(".")
            header, claims = json.loads(_b64(head)), json.loads(_b64(body))
            signature = _b64(sig)
        except (ValueError, TypeError):
            return "Invalid JWT."
        with self._lock:
            key = self._public_keys.get(str(claims.get("iss")))
        if header.get("alg") != "RS256" or key is None:
            return "Invalid JWT: unknown issuer."
        try:
            key.verify(
                signature, f"{head}.{body}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return "Invalid JWT Signature."
        now = time.time()
        if audience and claims.get("aud") not in (GOOGLE_TOKEN_URI, f"{self.url}{TOKEN_PATH}"):
            return "Invalid JWT: audience."
        if not (claims.get("iat", 0) - CLOCK_SKEW_S <= now <= claims.get("exp", 0) + CLOCK_SKEW_S):
            return "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
        return None

    def before(self, request: Request, route: Any) -> Response | None:
        if route.endpoint == "oauth.token":
            return None
        token = request.bearer_token() or ""
        with self._lock:
            known = token in self._tokens
        mode = "access_token"
        if not known and token.count(".") == 2:  # a self-signed JWT
            known, mode = self._verify_assertion(token, audience=False) is None, "self_signed_jwt"
        if not known:
            return _error(401, "UNAUTHENTICATED", "authError",
                          "Request had invalid authentication credentials.")  # fmt: skip
        with self._lock:
            self.auth_modes[mode] += 1
        return None

    # -- jobs -----------------------------------------------------------------------------
    def _insert(self, request: Request) -> Response:
        project = request.match.group(1) if request.match else ""
        body = request.json() or {}
        ref = body.get("jobReference") or {}
        job_id = ref.get("jobId") or str(uuid.uuid4())
        config = body.get("configuration") or {}
        with self._lock:
            if (project, job_id) in self._jobs:
                message = f"Already Exists: Job {project}:{self.location}.{job_id}"
                return _error(409, "ALREADY_EXISTS", "duplicate", message)
        query = config.get("query") or {}
        if not query.get("query"):
            return _error(400, "INVALID_ARGUMENT", "invalid", "Only query jobs are supported.")
        if query.get("useLegacySql", True) is not False:
            message = "The sandbox runs GoogleSQL only: set useLegacySql to false."
            return _error(400, "INVALID_ARGUMENT", "invalidQuery", message)
        if config.get("dryRun"):
            return self._dry_run(project, ref.get("location") or self.location, config, query)
        with self._lock:
            delay = self.query_delays.pop(0) if self.query_delays else 0.0
        if delay > 0:
            time.sleep(delay)
        job = QueryJob(project, job_id, ref.get("location") or self.location, config,
                       int(time.time() * 1000), polls_until_done=self.polls_until_done)  # fmt: skip
        try:
            params = _parameters(query)
            self.queries.append(QueryRecord(project, query["query"], params))
            job.fields, job.rows = self._run(query["query"], params)
        except BigQueryError as err:
            job.error = {"reason": err.reason, "message": err.message, "location": "query"}
        with self._lock:
            self._jobs[(project, job_id)] = job
        return json_response(self._job_resource(job))

    def _dry_run(
        self, project: str, location: str, config: dict[str, Any], query: dict[str, Any]
    ) -> Response:
        """``dryRun``: check the query (tables, columns, parameters); no job is kept.

        As BigQuery does, a query that cannot run is an HTTP error of ``jobs.insert``
        itself (404 notFound for a missing table, 400 invalidQuery otherwise).
        """
        try:
            self._run(query["query"], _parameters(query))
        except BigQueryError as err:
            status = 404 if err.reason == "notFound" else 400
            return _error(status, "NOT_FOUND" if status == 404 else "INVALID_ARGUMENT",
                          err.reason, err.message)  # fmt: skip
        scanned = str(64 * max(1, len(self.store.events)))  # a plausible estimate
        return json_response({
            "kind": "bigquery#job",
            "jobReference": {"projectId": project, "location": location},
            "configuration": config,
            "status": {"state": "DONE"},
            "statistics": {"creationTime": str(int(time.time() * 1000)),
                           "totalBytesProcessed": scanned,
                           "query": {"totalBytesProcessed": scanned, "statementType": "SELECT",
                                     "totalBytesProcessedAccuracy": "PRECISE"}},
        })  # fmt: skip

    def _job_resource(self, job: QueryJob) -> dict[str, Any]:
        running = job.polls_until_done > 0
        status: dict[str, Any] = {"state": "RUNNING" if running else "DONE"}
        if job.error and not running:
            status["errorResult"] = job.error
            status["errors"] = [job.error]
        return {
            "kind": "bigquery#job",
            "id": f"{job.project}:{job.location}.{job.job_id}",
            "jobReference": job.reference(),
            "configuration": job.configuration,
            "status": status,
            "statistics": {"creationTime": str(job.created_ms), "startTime": str(job.created_ms),
                           "query": {"statementType": "SELECT", "totalBytesProcessed": "0"}},
        }  # fmt: skip

    def _job(self, request: Request) -> QueryJob | None:
        key = (request.match.group(1), request.match.group(2)) if request.match else ("", "")
        with self._lock:
            return self._jobs.get(key)

    def _get(self, request: Request) -> Response:
        job = self._job(request)
        if job is None:
            return _error(404, "NOT_FOUND", "notFound", "Not found: Job")
        resource = self._job_resource(job)
        job.polls_until_done = max(0, job.polls_until_done - 1)
        return json_response(resource)

    def _results(self, request: Request) -> Response:
        job = self._job(request)
        if job is None:
            return _error(404, "NOT_FOUND", "notFound", "Not found: Job")
        if job.polls_until_done > 0:
            job.polls_until_done -= 1
            pending = {"jobReference": job.reference(), "jobComplete": False}
            return json_response({"kind": "bigquery#getQueryResultsResponse", **pending})
        if job.error:
            return _error(400, "INVALID_ARGUMENT", job.error["reason"], job.error["message"])
        start = int(request.arg("pageToken") or request.arg("startIndex") or 0)
        wanted = request.arg("maxResults")
        size = self.page_rows if wanted is None else min(int(wanted), self.page_rows)
        rows = job.rows[start : start + size]
        int64_ts = (request.arg("formatOptions.useInt64Timestamp") or "").lower() == "true"
        body: dict[str, Any] = {
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": job.reference(),
            "schema": {"fields": job.fields},
            "totalRows": str(len(job.rows)),
            "jobComplete": True,
            "cacheHit": False,
        }
        if size > 0:
            body["rows"] = [_encode_row(r, job.fields, int64_ts) for r in rows]
            if start + size < len(job.rows):
                body["pageToken"] = str(start + size)
        return json_response(body)

    # -- query evaluation --------------------------------------------------------------
    def _run(self, sql: str, params: dict[str, Any]) -> tuple[list[dict[str, str]], list]:
        duck_sql = transpile(sql, self.store.today)
        with self._lock:
            db = self._sync_events()
            try:
                cursor = db.execute(duck_sql, params)
            except duckdb.CatalogException as exc:
                raise BigQueryError("notFound", f"Not found: {_first_line(exc)}") from None
            except duckdb.Error as exc:
                raise BigQueryError("invalidQuery", _first_line(exc)) from None
            rows = cursor.fetchall()
            description = cursor.description or []
        fields = [
            {"name": col[0], "type": _TYPES.get(str(col[1]).upper(), "STRING"),
             "mode": "NULLABLE"}
            for col in description
        ]  # fmt: skip
        return fields, rows

    def _sync_events(self) -> duckdb.DuckDBPyConnection:
        """Insert events the store generated since the last query (it only appends)."""
        db = self._db
        if db is None:
            raise BigQueryError("backendError", "The sandbox server is stopped.")
        if self._loaded < len(self.store.events):
            frame = self.store.frame(self._loaded)
            db.register("new_events", frame)
            try:
                db.execute(
                    f'INSERT INTO "{self._dataset}"."{self._table_name}" SELECT * FROM new_events'
                )
            finally:
                db.unregister("new_events")
            self._loaded += len(frame)
        return db


# -- helpers ----------------------------------------------------------------------------


def transpile(sql: str, today: date) -> str:
    """GoogleSQL -> DuckDB: drop project qualifiers, CURRENT_DATE() = the sandbox today."""
    try:
        statements = sqlglot.parse(sql, read="bigquery")
    except ParseError as exc:
        raise BigQueryError("invalidQuery", f"Syntax error: {_first_line(exc)}") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise BigQueryError("invalidQuery", "The sandbox accepts exactly one SELECT statement.")
    tree = statements[0]
    for table in tree.find_all(exp.Table):
        table.set("catalog", None)

    def today_literal(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.CurrentDate):
            return exp.cast(exp.Literal.string(today.isoformat()), exp.DataType.build("DATE"))
        return node

    return tree.transform(today_literal).sql(dialect="duckdb")


def _parameters(query: dict[str, Any]) -> dict[str, Any]:
    """Named query parameters as Python values; positional ones are refused."""
    if query.get("parameterMode", "NAMED") != "NAMED" and query.get("queryParameters"):
        raise BigQueryError("invalidQuery", "The sandbox supports named parameters only.")
    out: dict[str, Any] = {}
    for param in query.get("queryParameters") or []:
        name = param.get("name")
        if not name:
            raise BigQueryError("invalidQuery", "Positional parameters are not supported.")
        kind = (param.get("parameterType") or {}).get("type", "STRING")
        value = (param.get("parameterValue") or {}).get("value")
        out[name] = _parameter_value(kind, value)
    return out


def _parameter_value(kind: str, value: str | None) -> Any:
    if value is None:
        return None
    try:
        if kind == "TIMESTAMP":
            stamp = datetime.fromisoformat(value.replace(" UTC", "+00:00"))
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        if kind == "DATETIME":
            return datetime.fromisoformat(value)
        if kind == "DATE":
            return date.fromisoformat(value)
        if kind == "INT64":
            return int(value)
        if kind in ("FLOAT64", "NUMERIC"):
            return float(value)
        if kind == "BOOL":
            return value.lower() == "true"
    except ValueError:
        raise BigQueryError("invalidQuery", f"Invalid {kind} parameter value") from None
    return value


def _encode_row(row: tuple, fields: list[dict[str, str]], int64_ts: bool) -> dict[str, Any]:
    cells = zip(row, fields, strict=True)
    return {"f": [{"v": _encode_cell(v, f["type"], int64_ts)} for v, f in cells]}


def _encode_cell(value: Any, kind: str, int64_ts: bool) -> str | None:
    if value is None:
        return None
    if kind == "TIMESTAMP":
        micros = (value - _EPOCH) // _MICRO
        return str(micros) if int64_ts else f"{micros / 1e6:.6f}"
    if kind in ("DATETIME", "DATE"):
        return value.isoformat()
    if kind == "BOOLEAN":
        return "true" if value else "false"
    return str(value)


def _error(status: int, code: str, reason: str, message: str) -> Response:
    return json_response(
        {"error": {"code": status, "message": message, "status": code,
                   "errors": [{"message": message, "domain": "global", "reason": reason}]}},
        status,
    )  # fmt: skip


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


_MICRO = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH
