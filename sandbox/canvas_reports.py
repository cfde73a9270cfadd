"""Canvas account reports (``provisioning_csv``) for the Canvas sandbox, and the file store.

For development, tests and benchmarks only. Facts imitated: ``../shared/reference/
canvas-reports.md``. Mount on a running ``CanvasServer``::

    with CanvasServer(inst) as canvas, FileStoreServer() as store:
        reports = CanvasReports(canvas, store, ReportSpec(generation_seconds=2.0))

Endpoints added to the Canvas server (request-log endpoint name in brackets)::

    GET    /api/v1/accounts/:id/reports                   [reports.index]
    POST   /api/v1/accounts/:id/reports/:report           [reports.start]
    GET    /api/v1/accounts/:id/reports/:report           [reports.list]   paged, newest first
    GET    /api/v1/accounts/:id/reports/:report/:rid      [reports.status]
    DELETE /api/v1/accounts/:id/reports/:report/:rid      [reports.delete]
    GET    /files/:fid/download                           [files.download] 302 to the store

A run goes ``created`` → ``running`` (``progress`` and ``current_line`` grow with time)
→ ``complete`` after ``generation_seconds``; then its ``attachment.url`` (on the Canvas
host, token required) answers 302 to the file store on another port with a signed
query string. The store refuses any request that carries an ``Authorization`` header
(403, and counts it in ``tokens_seen``) or a bad signature. Several CSVs selected: a zip
of ``<name>.csv``; one: that CSV. Failure modes, consumed one per new run from
``ReportSpec.failures`` (``"ok"`` for a normal run): ``"error"`` (status
``error`` with a message), ``"deleted"`` and ``"stuck"`` (stays ``running``, progress
frozen).

Report contents follow the institution: course/enrollment states in the report's words,
test students never present, concluded and deleted rows only with ``include_deleted``
(deleted courses and enrollments then only when SIS-linked), cross-listed sections under
their original course in ``sections.csv``/``enrollments.csv`` and mapped in
``xlist.csv``. ``ReportSpec.columns`` picks the column set (``"newer"``, ``"older"``
without ``base_role_type``/``canvas_enrollment_id``) and ``extra_columns`` adds unknown
ones; ``drop_columns`` removes named columns (to test a missing one).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import secrets
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from courseinv.sandbox.canvas import CanvasServer
from courseinv.sandbox.httpserver import Request, Response, SandboxServer, json_response
from courseinv.sandbox.institution import (
    COMPLETED,
    DELETED,
    ENROLLMENT_STATES,
    ENROLLMENT_TYPES,
    SIS_ROLES,
    TEST_STUDENT,
    Course,
    Institution,
)

REPORT_TYPE = "provisioning_csv"
CSV_NAMES = ("users", "accounts", "terms", "courses", "sections", "enrollments", "xlist")
COURSE_STATUS = {
    "unpublished": "unpublished",
    "available": "active",
    "completed": "concluded",
    "deleted": "deleted",
}
ENROLLMENT_STATUS = {
    "active": "active",
    "invited": "invited",
    "creation_pending": "invited",
    "completed": "concluded",
    "inactive": "inactive",
    "rejected": "rejected",
    "deleted": "deleted",
}
ROLE_IDS = {"teacher": 4, "ta": 5, "designer": 6, "student": 3, "observer": 7}
NEWER_ONLY = {"enrollments": ("base_role_type", "canvas_enrollment_id")}
COLUMNS: dict[str, tuple[str, ...]] = {
    "courses": (
        "canvas_course_id",
        "course_id",
        "integration_id",
        "short_name",
        "long_name",
        "canvas_account_id",
        "account_id",
        "canvas_term_id",
        "term_id",
        "status",
        "start_date",
        "end_date",
        "course_format",
        "canvas_blueprint_course_id",
        "blueprint_course_id",
        "created_by_sis",
    ),
    "sections": (
        "canvas_section_id",
        "section_id",
        "canvas_course_id",
        "course_id",
        "integration_id",
        "name",
        "status",
        "start_date",
        "end_date",
        "canvas_account_id",
        "account_id",
        "created_by_sis",
    ),
    "enrollments": (
        "canvas_course_id",
        "course_id",
        "canvas_user_id",
        "user_id",
        "role",
        "role_id",
        "canvas_section_id",
        "section_id",
        "status",
        "canvas_associated_user_id",
        "associated_user_id",
        "created_by_sis",
        "base_role_type",
        "limit_section_privileges",
        "canvas_enrollment_id",
    ),
    "xlist": (
        "canvas_xlist_course_id",
        "xlist_course_id",
        "canvas_section_id",
        "section_id",
        "status",
        "canvas_nonxlist_course_id",
        "nonxlist_course_id",
    ),
}


@dataclass
class ReportSpec:
    """Knobs of the report service (may be changed while it runs)."""

    generation_seconds: float = 1.0  # created → complete
    failures: list[str] = field(default_factory=list)  # per new run: error|deleted|stuck
    stuck_at_progress: int = 37
    columns: str = "newer"  # or "older"
    extra_columns: bool = True  # unknown columns a newer Canvas might add
    drop_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class _Run:
    id: int
    account_id: int
    parameters: dict[str, str]
    created: datetime  # institution-independent wall clock (UTC)
    started_mono: float
    failure: str | None
    status: str = "created"
    ended: datetime | None = None  # when it reached complete/error
    file_id: int | None = None
    deleted: bool = False
    built: threading.Event = field(default_factory=threading.Event)


class FileStoreServer(SandboxServer):
    """A second host holding report files behind signed URLs; rejects any Authorization."""

    name = "file-store"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._key = secrets.token_bytes(16)
        self._files: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.tokens_seen = 0  # requests that carried an Authorization header
        self.add_route("GET", r"/store/([0-9a-f]+)/([^/]+)", "store.get", self._get)

    def put(self, content: bytes, filename: str) -> str:
        """Store ``content``; return its signed URL (valid for an hour)."""
        key = secrets.token_hex(8)
        with self._lock:
            self._files[key] = content
        expires = str(int(time.time()) + 3600)
        return f"{self.url}/store/{key}/{filename}?expires={expires}&sig={self._sign(key, expires)}"

    def _sign(self, key: str, expires: str) -> str:
        return hmac.new(self._key, f"{key}:{expires}".encode(), hashlib.sha256).hexdigest()

    def _get(self, request: Request) -> Response:
        if request.headers.get("authorization"):
            with self._lock:
                self.tokens_seen += 1
            body = "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed"
            return Response(400, body + "</Message></Error>", {"Content-Type": "application/xml"})
        key = request.match[1]  # type: ignore[index]
        expires, sig = request.arg("expires") or "", request.arg("sig") or ""
        good = hmac.compare_digest(sig, self._sign(key, expires))
        if not good or not expires.isdigit() or int(expires) < time.time():
            return Response(403, "<Error><Code>AccessDenied</Code></Error>", {})
        with self._lock:
            content = self._files.get(key)
        if content is None:
            return Response(404, "<Error><Code>NoSuchKey</Code></Error>", {})
        kind = "application/zip" if content[:2] == b"PK" else "text/csv"
        return Response(200, content, {"Content-Type": kind})


class CanvasReports:
    """The account report service of one ``CanvasServer`` (routes mounted on it)."""

    def __init__(
        self, canvas: CanvasServer, store: FileStoreServer, spec: ReportSpec | None = None
    ) -> None:
        self.canvas = canvas
        self.store = store
        self.spec = spec or ReportSpec()
        self.institution: Institution = canvas.institution
        self._runs: dict[int, _Run] = {}
        self._files: dict[int, tuple[str, str, int]] = {}  # file id -> (url, name, size)
        self._ids = itertools.count(4001)
        self._cache: dict[tuple[Any, ...], dict[str, bytes]] = {}
        self._lock = threading.Lock()
        seg, base = r"([^/]+)", r"/api/v1/accounts/([^/]+)/reports"
        canvas.mount(
            [
                ("GET", base, "reports.index", self._index),
                ("POST", f"{base}/{seg}", "reports.start", self._start),
                ("GET", f"{base}/{seg}", "reports.list", self._list),
                ("GET", rf"{base}/{seg}/(\d+)", "reports.status", self._status),
                ("DELETE", rf"{base}/{seg}/(\d+)", "reports.delete", self._delete),
                ("GET", r"/files/(\d+)/download", "files.download", self._download),
            ]
        )

    @property
    def failures(self) -> list[str]:
        return self.spec.failures

    def runs_started(self) -> int:
        with self._lock:
            return len(self._runs)

    # -- handlers ---------------------------------------------------------------------
    def _account(self, request: Request) -> int | Response:
        raw = request.match[1]  # type: ignore[index]
        account = (
            self.institution.root_account_id if raw == "self" else int(raw) if raw.isdigit() else -1
        )
        if account not in self.institution.accounts:
            return json_response(
                {"errors": [{"message": "The specified resource does not exist."}]}, 404
            )
        return account

    def _index(self, request: Request) -> Response:
        account = self._account(request)
        if isinstance(account, Response):
            return account
        with self._lock:
            runs = [r for r in self._runs.values() if r.account_id == account]
        last = max(runs, key=lambda r: r.id, default=None)
        body = [
            {
                "title": "Provisioning",
                "report": REPORT_TYPE,
                "parameters": {
                    n: {"required": False}
                    for n in (*CSV_NAMES, "enrollment_term_id", "include_deleted")
                },
                "last_run": self._json(last) if last else None,
            }
        ]
        return json_response(body)

    def _start(self, request: Request) -> Response:
        account = self._account(request)
        if isinstance(account, Response):
            return account
        if request.match[2] != REPORT_TYPE:  # type: ignore[index]
            return json_response({"errors": [{"message": "invalid report type"}]}, 400)
        params = _parameters(request)
        if not any(_true(params.get(n)) for n in CSV_NAMES):
            params["users"] = "true"  # Canvas's provisioning report defaults to users
        term = params.get("enrollment_term_id")
        if term and self._term(term) is None:
            return json_response({"errors": [{"message": "invalid enrollment_term_id"}]}, 400)
        with self._lock:
            failure = self.spec.failures.pop(0) if self.spec.failures else None
            failure = None if failure in ("ok", "") else failure
            run = _Run(
                next(self._ids), account, params, datetime.now(UTC), time.monotonic(), failure
            )
            self._runs[run.id] = run
        if failure is None:  # Canvas writes the file while the run is in progress
            threading.Thread(target=self._write_file, args=(run,), daemon=True).start()
        return json_response(self._json(run))

    def _write_file(self, run: _Run) -> None:
        content, name = self._build(run)
        url = self.store.put(content, name)
        with self._lock:
            file_id = 900_000 + run.id
            self._files[file_id] = (url, name, len(content))
            run.file_id = file_id
        run.built.set()

    def _list(self, request: Request) -> Response:
        account = self._account(request)
        if isinstance(account, Response):
            return account
        with self._lock:
            runs = [
                r
                for r in self._runs.values()
                if r.account_id == account and not r.deleted and request.match[2] == REPORT_TYPE  # type: ignore[index]
            ]
        runs.sort(key=lambda r: r.id, reverse=True)
        page, headers = self.canvas.paginate(request, runs, f"reports:{account}")
        return json_response([self._json(r) for r in page], 200, **headers)

    def _status(self, request: Request) -> Response:
        run = self._find(request)
        if isinstance(run, Response):
            return run
        return json_response(self._json(run))

    def _delete(self, request: Request) -> Response:
        run = self._find(request)
        if isinstance(run, Response):
            return run
        with self._lock:
            run.deleted = True
        return json_response(self._json(run))

    def _download(self, request: Request) -> Response:
        fid = int(request.match[1])  # type: ignore[index]
        with self._lock:
            entry = self._files.get(fid)
        if entry is None or request.arg("verifier") != _verifier(fid):
            return json_response(
                {"errors": [{"message": "The specified resource does not exist."}]}, 404
            )
        return Response(302, b"", {"Location": entry[0], "Content-Type": "text/html"})

    def _find(self, request: Request) -> _Run | Response:
        account = self._account(request)
        if isinstance(account, Response):
            return account
        with self._lock:
            run = self._runs.get(int(request.match[3]))  # type: ignore[index]
        if run is None or run.account_id != account or request.match[2] != REPORT_TYPE:  # type: ignore[index]
            return json_response(
                {"errors": [{"message": "The specified resource does not exist."}]}, 404
            )
        return run

    # -- the Report object ------------------------------------------------------------
    def _json(self, run: _Run) -> dict[str, Any]:
        self._advance(run)
        elapsed = time.monotonic() - run.started_mono
        total = max(1.0, self.spec.generation_seconds)
        status, progress = run.status, 0
        if run.deleted:
            status = "deleted"
        if status == "running":
            progress = min(99, int(100 * elapsed / total))
            if run.failure == "stuck":
                progress = min(progress, self.spec.stuck_at_progress)
        elif status == "compiling":
            progress = 99
        elif status in ("complete", "error"):
            progress = 100
        base = self.canvas.url
        body: dict[str, Any] = {
            "id": run.id,
            "report": REPORT_TYPE,
            "status": status,
            "progress": progress,
            "current_line": progress * 1000,
            "created_at": _iso(run.created),
            "started_at": _iso(run.created + timedelta(seconds=0.1))
            if status != "created"
            else None,
            "ended_at": None,
            "run_time": round(elapsed, 1),
            "parameters": dict(run.parameters),
            "file_url": None,
        }
        if status == "error":
            body["parameters"]["extra_text"] = "Generating the report, provisioning_csv, failed."
            body["message"] = "Generating the report, provisioning_csv, failed."
        if status == "complete" and run.file_id is not None:
            _, name, size = self._files[run.file_id]
            verifier = _verifier(run.file_id)
            url = f"{base}/files/{run.file_id}/download?download_frd=1&verifier={verifier}"
            body["ended_at"] = _iso(run.ended) if run.ended else None
            body["file_url"] = f"{base}/accounts/{run.account_id}/files/{run.file_id}/download"
            kind = "application/zip" if name.endswith(".zip") else "text/csv"
            body["attachment"] = {
                "id": run.file_id,
                "display_name": name,
                "filename": name,
                "content-type": kind,
                "size": size,
                "url": url,
            }
        return body

    def _advance(self, run: _Run) -> None:
        """Move ``run`` along its life; builds the file when it completes."""
        elapsed = time.monotonic() - run.started_mono
        with self._lock:
            if run.status in ("complete", "error", "deleted") or run.deleted:
                return
            if run.status == "created" and elapsed >= min(0.2, self.spec.generation_seconds / 10):
                run.status = "running"
            if elapsed < self.spec.generation_seconds or run.status == "created":
                return
            if run.failure == "stuck":
                return
            if run.failure in ("error", "deleted"):
                run.status = run.failure
                run.deleted = run.failure == "deleted"
                run.ended = datetime.now(UTC)
                return
            # Generation time is up; the file may still be being written ("compiling").
            run.status = "complete" if run.built.is_set() else "compiling"
            if run.status == "complete":
                run.ended = datetime.now(UTC)

    # -- report contents --------------------------------------------------------------
    def _term(self, raw: str) -> int | None:
        inst = self.institution
        if raw.startswith("sis_term_id:"):
            sis = raw.removeprefix("sis_term_id:")
            return next((t.id for t in inst.terms.values() if t.sis_term_id == sis), None)
        return int(raw) if raw.isdigit() and int(raw) in inst.terms else None

    def prebuild(self, account_id: int, parameters: dict[str, str]) -> None:
        """Write (and cache) the files of runs with these parameters ahead of time, so a
        benchmark's timed runs do not pay the sandbox's own CSV writing."""
        self._content(account_id, parameters)

    def _build(self, run: _Run) -> tuple[bytes, str]:
        files = self._content(run.account_id, run.parameters)
        stamp = run.created.strftime("%d_%b_%Y")
        if len(files) == 1:
            ((name, content),) = files.items()
            return content, f"{name}_{stamp}_{run.id}.csv"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, content in files.items():
                zf.writestr(f"{name}.csv", content)
        return buffer.getvalue(), f"provisioning_csv_{stamp}_{run.id}.zip"

    def _content(self, account_id: int, params: dict[str, str]) -> dict[str, bytes]:
        """``{name: CSV bytes}`` of a run, cached by what determines it."""
        spec = self.spec
        key = (
            account_id,
            tuple(sorted(params.items())),
            spec.columns,
            spec.extra_columns,
            tuple(sorted((k, tuple(v)) for k, v in spec.drop_columns.items())),
        )
        with self._lock:
            cached = self._cache.get(key)
        if cached is None:
            cached = self._write(account_id, params)
            with self._lock:
                self._cache[key] = cached
        return cached

    def _write(self, account_id: int, params: dict[str, str]) -> dict[str, bytes]:
        wanted = [n for n in CSV_NAMES if _true(params.get(n))]
        term = (
            self._term(params["enrollment_term_id"]) if params.get("enrollment_term_id") else None
        )
        scope = ReportScope(
            self.institution, account_id, term, _true(params.get("include_deleted"))
        )
        return {n: self._csv(n, scope) for n in wanted}

    def _csv(self, name: str, scope: ReportScope) -> bytes:
        import pandas as pd  # sandbox only; vectorised writing keeps a 1M-row CSV quick

        columns = list(COLUMNS.get(name, ("canvas_id", "id", "status")))
        if self.spec.columns == "older":
            columns = [c for c in columns if c not in NEWER_ONLY.get(name, ())]
        if self.spec.extra_columns:
            columns.insert(1, "sandbox_note")
            columns.append("integration_extra")
        drop = set(self.spec.drop_columns.get(name, ()))
        columns = [c for c in columns if c not in drop]
        build = getattr(scope, name, None)
        data = build() if build is not None else {}
        rows = len(next(iter(data.values()))) if data else 0
        frame = pd.DataFrame({c: data.get(c, [""] * rows) for c in columns}, columns=columns)
        return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


class ReportScope:
    """The rows of one report run: an account subtree, a term, ``include_deleted``."""

    def __init__(
        self, inst: Institution, account_id: int, term_id: int | None, include_deleted: bool
    ) -> None:
        self.inst = inst
        self.include_deleted = include_deleted
        accounts = inst.account_subtree(account_id)
        self.courses_in = [
            c
            for c in inst.courses
            if c.account_id in accounts
            and (term_id is None or c.term_id == term_id)
            and self._course_listed(c)
        ]

    def _course_listed(self, course: Course) -> bool:
        if course.workflow_state == "deleted":
            return self.include_deleted and course.sis_course_id is not None
        if course.workflow_state == "completed":
            return self.include_deleted
        return True

    def _section_rows(self) -> Iterator[tuple[Any, Course]]:
        for course in self.courses_in:
            for k in course.section_range:
                yield self.inst.sections[k], course

    def _origin(self, section: Any, course: Course) -> Course:
        """The course the report names for a section: its original one when cross-listed."""
        if section.nonxlist_course_id is None:
            return course
        return self.inst.course_by_id[section.nonxlist_course_id]

    def courses(self) -> dict[str, list[Any]]:
        inst, rows = self.inst, self.courses_in
        return {
            "canvas_course_id": [c.id for c in rows],
            "course_id": [c.sis_course_id or "" for c in rows],
            "short_name": [c.course_code for c in rows],
            "long_name": [c.name for c in rows],
            "canvas_account_id": [c.account_id for c in rows],
            "account_id": [inst.accounts[c.account_id].sis_account_id or "" for c in rows],
            "canvas_term_id": [c.term_id for c in rows],
            "term_id": [inst.terms[c.term_id].sis_term_id or "" for c in rows],
            "status": [COURSE_STATUS[c.workflow_state] for c in rows],
            "created_by_sis": [str(c.sis_course_id is not None).lower() for c in rows],
            "sandbox_note": ["ignored, ✓"] * len(rows),
        }

    def sections(self) -> dict[str, list[Any]]:
        rows = [(s, self._origin(s, c)) for s, c in self._section_rows()]
        return {
            "canvas_section_id": [s.id for s, _ in rows],
            "section_id": [s.sis_section_id or "" for s, _ in rows],
            "canvas_course_id": [o.id for _, o in rows],
            "course_id": [o.sis_course_id or "" for _, o in rows],
            "name": [s.name for s, _ in rows],
            "status": ["active"] * len(rows),
            "canvas_account_id": [o.account_id for _, o in rows],
            "created_by_sis": [str(s.sis_section_id is not None).lower() for s, _ in rows],
        }

    def xlist(self) -> dict[str, list[Any]]:
        rows = [
            (s, c, self._origin(s, c))
            for s, c in self._section_rows()
            if s.nonxlist_course_id is not None
        ]
        return {
            "canvas_xlist_course_id": [c.id for _, c, _ in rows],
            "xlist_course_id": [c.sis_course_id or "" for _, c, _ in rows],
            "canvas_section_id": [s.id for s, _, _ in rows],
            "section_id": [s.sis_section_id or "" for s, _, _ in rows],
            "status": ["active"] * len(rows),
            "canvas_nonxlist_course_id": [o.id for _, _, o in rows],
            "nonxlist_course_id": [o.sis_course_id or "" for _, _, o in rows],
        }

    def enrollments(self) -> dict[str, Any]:
        """Vectorised over every enrollment of the scope's courses."""
        import pandas as pd

        e = self.inst.enrollments
        slices = [
            np.arange(c.enrollment_slice.start, c.enrollment_slice.stop) for c in self.courses_in
        ]
        idx = np.concatenate(slices) if slices else np.array([], np.int64)
        concluded = np.array([c.workflow_state == "completed" for c in self.inst.courses])
        state, kind, ids = e.state[idx], e.type[idx], e.id[idx]
        sis_linked = ids % 3 == 0
        keep = kind != TEST_STUDENT  # the test student is never in the report
        if self.include_deleted:
            keep &= (state != DELETED) | sis_linked
        else:
            keep &= ~np.isin(state, (DELETED, COMPLETED)) & ~concluded[e.course_index[idx]]
        idx, state, kind, ids, sis_linked = (a[keep] for a in (idx, state, kind, ids, sis_linked))
        rows = list(self._section_rows())
        origin = pd.Series({s.id: self._origin(s, c).id for s, c in rows}, dtype="int64")
        origin_sis = {c.id: c.sis_course_id or "" for c in self.inst.courses}
        section_sis = pd.Series({s.id: s.sis_section_id or "" for s, _ in rows}, dtype=object)
        sections = pd.Series(e.section_id[idx])
        courses = sections.map(origin).to_numpy(np.int64)
        users = e.user_id[idx]
        roles = np.array(SIS_ROLES, dtype=object)[kind]
        sis_user = pd.Series(users % 10_000_000).map("U{:07d}".format).to_numpy(object)
        sis_user[users % 5 == 0] = ""
        report_status = np.array([ENROLLMENT_STATUS[s] for s in ENROLLMENT_STATES], dtype=object)
        return {
            "canvas_course_id": courses,
            "course_id": pd.Series(courses).map(origin_sis).to_numpy(object),
            "canvas_user_id": users,
            "user_id": sis_user,
            "role": roles,
            "role_id": pd.Series(roles).map(ROLE_IDS).to_numpy(np.int64),
            "canvas_section_id": sections.to_numpy(np.int64),
            "section_id": sections.map(section_sis).to_numpy(object),
            "status": report_status[state],
            "created_by_sis": np.where(sis_linked, "true", "false"),
            "base_role_type": np.array(ENROLLMENT_TYPES, dtype=object)[kind],
            "limit_section_privileges": np.full(len(idx), "false", dtype=object),
            "canvas_enrollment_id": ids,
        }


def _parameters(request: Request) -> dict[str, str]:
    """``parameters[x]=v`` form fields (or a JSON ``{"parameters": {...}}`` body)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        body = request.json() or {}
        return {str(k): str(v) for k, v in (body.get("parameters") or {}).items()}
    out: dict[str, str] = {}
    for key, values in request.form().items():
        if key.startswith("parameters[") and key.endswith("]"):
            out[key[len("parameters[") : -1]] = values[-1]
    return out


def _true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("true", "1", "yes", "on")


def _verifier(file_id: int) -> str:
    return hashlib.sha256(f"verifier/{file_id}".encode()).hexdigest()[:20]


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
