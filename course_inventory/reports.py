"""COURSE_INVENTORY's bulk source: sections and enrollments from account reports.

With ``CANVAS.INVENTORY_SOURCE: reports`` the job starts one ``provisioning_csv`` run
per configured term (``report_runs.py``) *before* its REST reads, so Canvas generates
them while the course list, audit logs and analytics are read. ``ReportPull`` waits for
the runs in a background thread, downloads each attachment (``report_files.py``) and
reads it into compact arrays as soon as that run is complete (the other terms' runs may
still be generating, the REST reads still going on); ``ReportPull.result(courses)``
then turns them into exactly what the API path produces:

* enrollments: every row whose section now sits in a kept course (``xlist.csv`` moves a
  cross-listed section from the course ``sections.csv``/``enrollments.csv`` name to the
  course it sits in, where the API shows it); ``deleted`` rows dropped (the run has
  ``include_deleted`` for the concluded ones the API path keeps); test students are
  never in the report. States in the API's words: ``concluded`` → ``completed``;
  ``invited`` → ``creation_pending`` in an unpublished course (Canvas keeps enrollments
  of unpublished courses ``creation_pending`` and turns them ``invited`` on publish;
  the report writes ``invited`` for both). ``role_type`` from ``base_role_type``, or
  from a built-in ``role`` name on Canvas versions without that column.
* sections: those the kept enrollments reference, with their name, Canvas SIS id and
  the course they sit in.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from courseinv.course_inventory.canvas_pull import Section
from courseinv.course_inventory.report_files import (
    AttachmentDownloader,
    ReportFile,
    ReportFormatError,
)
from courseinv.course_inventory.report_runs import CSVS, ReportFailed, ReportRunner

# Report status words -> the API's enrollment states (``invited`` refined later).
STATES = ("active", "invited", "completed", "inactive", "rejected", "creation_pending")
STATE_CODE = {"active": 0, "invited": 1, "concluded": 2, "completed": 2, "inactive": 3}
STATE_CODE |= {"rejected": 4}
INVITED, PENDING = 1, 5
DELETED_WORDS = {"deleted"}
BUILTIN_ROLES = {
    "student": "StudentEnrollment",
    "teacher": "TeacherEnrollment",
    "ta": "TaEnrollment",
    "designer": "DesignerEnrollment",
    "observer": "ObserverEnrollment",
}
TEST_STUDENT_TYPE = "StudentViewEnrollment"
ENROLLMENT_COLUMNS = ("canvas_enrollment_id", "canvas_course_id", "canvas_user_id")
ENROLLMENT_COLUMNS += ("canvas_section_id", "status", "role")
SECTION_COLUMNS = ("canvas_section_id", "section_id", "canvas_course_id", "name")
XLIST_COLUMNS = ("canvas_xlist_course_id", "canvas_section_id", "status")


@dataclass
class TermRows:
    """One term's report, read: enrollments as arrays, sections and cross-listings."""

    id: np.ndarray = field(default_factory=lambda: np.array([], np.int64))
    course: np.ndarray = field(default_factory=lambda: np.array([], np.int64))
    user: np.ndarray = field(default_factory=lambda: np.array([], np.int64))
    section: np.ndarray = field(default_factory=lambda: np.array([], np.int64))
    state: np.ndarray = field(default_factory=lambda: np.array([], np.int8))
    role_type: np.ndarray = field(default_factory=lambda: np.array([], object))
    sections: dict[int, tuple[str | None, str, int]] = field(default_factory=dict)
    xlist: dict[int, int] = field(default_factory=dict)  # section -> course it sits in
    rows_read: int = 0


@dataclass(frozen=True)
class ReportData:
    """What the reports give COURSE_INVENTORY: the enrollment frame and its sections."""

    enrollment: pd.DataFrame
    sections: list[Section]


def read_term(report: ReportFile, label: str) -> TermRows:
    """Read the sections, xlist and enrollments CSVs of one report file."""
    out = TermRows()
    section_ints = ("canvas_section_id", "canvas_course_id")
    columns = ("canvas_section_id", "section_id", "name", "canvas_course_id")
    for batch in report.batches("sections", SECTION_COLUMNS, ints=section_ints):
        for sid, sis, name, cid in zip(
            *(batch.column(c).to_pylist() for c in columns), strict=True
        ):
            out.sections[sid] = (sis or None, name, cid)
    xlist_ints = ("canvas_xlist_course_id", "canvas_section_id")
    for batch in report.batches("xlist", XLIST_COLUMNS, ints=xlist_ints):
        live = batch.filter(pc.not_equal(_words(batch.column("status")), "deleted"))
        out.xlist.update(
            zip(
                live.column("canvas_section_id").to_pylist(),
                live.column("canvas_xlist_course_id").to_pylist(),
                strict=True,
            )
        )
    parts: list[TermRows] = []
    ints = ("canvas_enrollment_id", "canvas_course_id", "canvas_user_id", "canvas_section_id")
    for batch in report.batches(
        "enrollments", ENROLLMENT_COLUMNS, ("base_role_type",), ints=ints, chunk_rows=1 << 30
    ):
        out.rows_read += batch.num_rows
        parts.append(_enrollment_batch(batch, label))
    if parts:
        for name in ("id", "course", "user", "section", "state", "role_type"):
            setattr(out, name, np.concatenate([getattr(p, name) for p in parts]))
    return out


def _words(column: pa.Array) -> pa.Array:
    """Trimmed, lower-case text (report status and role words)."""
    return pc.utf8_lower(pc.utf8_trim_whitespace(column))


def _enrollment_batch(batch: pa.RecordBatch, label: str) -> TermRows:
    status = _words(batch.column("status"))
    live = pc.invert(pc.is_in(status, value_set=pa.array(sorted(DELETED_WORDS))))
    batch, status = batch.filter(live), status.filter(live)
    index = pc.index_in(status, value_set=pa.array(list(STATE_CODE)))
    if index.null_count:
        bad = sorted(set(status.filter(pc.is_null(index)).to_pylist()))[:5]
        raise ReportFormatError(f"{label}: enrollments.csv has unknown status {bad}")
    codes = np.array(list(STATE_CODE.values()), dtype=np.int8)[index.to_numpy()]
    types = _role_types(batch, label)
    keep = pc.not_equal(types, TEST_STUDENT_TYPE).to_numpy(zero_copy_only=False)
    encoded = types.dictionary_encode()
    names = np.array([sys.intern(t) for t in encoded.dictionary.to_pylist()], dtype=object)
    return TermRows(
        id=batch.column("canvas_enrollment_id").to_numpy()[keep],
        course=batch.column("canvas_course_id").to_numpy()[keep],
        user=batch.column("canvas_user_id").to_numpy()[keep],
        section=batch.column("canvas_section_id").to_numpy()[keep],
        state=codes[keep],
        role_type=names[encoded.indices.to_numpy()[keep]],
    )


def _role_types(batch: pa.RecordBatch, label: str) -> pa.Array:
    """``base_role_type`` when present and filled, else the built-in role's type."""
    roles = _words(batch.column("role"))
    builtin = pc.index_in(roles, value_set=pa.array(list(BUILTIN_ROLES)))
    fallback = pc.take(pa.array(list(BUILTIN_ROLES.values())), builtin)
    if "base_role_type" in batch.schema.names:
        base = pc.utf8_trim_whitespace(batch.column("base_role_type"))
        types = pc.if_else(pc.equal(base, ""), fallback, base)
    else:
        types = fallback
    if types.null_count:
        roles = sorted(set(batch.column("role").filter(pc.is_null(types)).to_pylist()))[:5]
        raise ReportFormatError(
            f"{label}: enrollments.csv has no base_role_type for custom role(s) {roles}"
        )
    return types


def combine(terms: Sequence[TermRows], courses: Mapping[int, str]) -> ReportData:
    """The kept enrollments and their sections; ``courses``: kept course id → state."""
    terms = list(terms) or [TermRows()]
    xlist: dict[int, int] = {}
    sections: dict[int, tuple[str | None, str, int]] = {}
    for t in terms:
        xlist.update(t.xlist)
        sections.update(t.sections)
    cat = {n: np.concatenate([getattr(t, n) for t in terms]) for n in ("id", "course", "user")}
    section = np.concatenate([t.section for t in terms])
    state = np.concatenate([t.state for t in terms])
    role = np.concatenate([t.role_type for t in terms])
    moved = pd.Series(section, dtype="int64").map(xlist)
    course = moved.fillna(pd.Series(cat["course"], dtype="int64")).to_numpy(np.int64)
    kept_ids = np.fromiter(courses, dtype=np.int64, count=len(courses))
    keep = np.isin(course, kept_ids)
    ids = cat["id"][keep]
    _, first = np.unique(ids, return_index=True)  # a row twice (two terms): once
    pick = np.flatnonzero(keep)[np.sort(first)]
    unpublished_ids = [c for c, state in courses.items() if state == "unpublished"]
    unpublished = np.isin(course[pick], np.array(unpublished_ids, dtype=np.int64))
    codes = state[pick].copy()
    codes[(codes == INVITED) & unpublished] = PENDING
    frame = pd.DataFrame(
        {
            "canvas_id": cat["id"][pick],
            "course_id": course[pick],
            "course_section_id": section[pick],
            "user_id": cat["user"][pick],
            "workflow_state": np.array(STATES, dtype=object)[codes],
            "role_type": role[pick],
        }
    ).sort_values("canvas_id", kind="stable", ignore_index=True)
    used = np.unique(frame["course_section_id"].to_numpy())
    missing = [int(s) for s in used if int(s) not in sections]
    if missing:
        raise ReportFormatError(
            f"enrollments reference {len(missing)} section(s) missing from sections.csv, "
            f"e.g. {missing[:5]}"
        )
    rows = [(int(s), sections[int(s)]) for s in used]
    return ReportData(
        frame,
        [Section(sid, name, sis, xlist.get(sid, cid)) for sid, (sis, name, cid) in rows],
    )


class ReportPull:
    """Report runs, downloads and reads in a background thread, next to the REST reads.

    ``start()`` returns at once; ``result(courses)`` waits and combines; ``abandon()``
    stops the wait when the job fails elsewhere. Failures surface from ``result`` as
    ``ReportFailed``/``ReportFormatError``/``HttpError``.
    """

    def __init__(
        self,
        runner: ReportRunner,
        downloader: AttachmentDownloader,
        term_ids: Sequence[int],
        log: logging.Logger,
    ) -> None:
        self.runner = runner
        self.downloader = downloader
        self.term_ids = list(dict.fromkeys(term_ids))
        self.log = log
        self._stop = threading.Event()
        runner._should_stop = self._stop.is_set
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="reports")
        self._future: Future[list[TermRows]] | None = None
        self.bytes_downloaded = 0

    def start(self) -> ReportPull:
        self._future = self._pool.submit(self._work)
        return self

    def abandon(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.downloader.close()

    def result(self, courses: Mapping[int, str]) -> ReportData:
        assert self._future is not None, "start() first"
        try:
            terms = self._future.result()
        finally:
            self._pool.shutdown(wait=True)
            self.downloader.close()
        self._future = None  # it holds the per-term arrays
        data = combine(terms, courses)
        rows_read = sum(t.rows_read for t in terms)
        del terms
        release_memory()
        self.log.info(
            "Reports: %s row(s) read, %s enrollment(s) and %s section(s) kept; "
            "%d run(s) started, %d reused, %s MB downloaded",
            f"{rows_read:,}",
            f"{len(data.enrollment):,}",
            f"{len(data.sections):,}",
            self.runner.started,
            self.runner.reused,
            f"{self.bytes_downloaded / 1e6:.2f}",
        )
        return data

    def _work(self) -> list[TermRows]:
        out = []
        with tempfile.TemporaryDirectory(prefix="courseinv-report-") as tmp:
            for term_id, report in self.runner.each_complete(self.term_ids):
                if self._stop.is_set():
                    raise ReportFailed("report download abandoned (the job is failing)")
                out.append(self._read(term_id, report, Path(tmp)))
        return out

    def _read(self, term_id: int, report: Mapping[str, Any], tmp: Path) -> TermRows:
        label = f"provisioning_csv term {term_id} (report {report.get('id')})"
        attachment = report.get("attachment") or {}
        url = attachment.get("url") or report.get("file_url")
        if not url:
            raise ReportFailed(f"{label}: complete but without an attachment")
        dest = tmp / f"term-{term_id}.bin"
        size = self.downloader.download(str(url), dest)
        self.bytes_downloaded += size
        self.log.info("Report %s: downloaded %.2f MB", label, size / 1e6)
        try:
            return read_term(ReportFile(dest, single=_single(report), label=label), label)
        finally:
            dest.unlink(missing_ok=True)


def release_memory() -> None:
    """Hand the parsing's freed memory back to the OS before the publish needs its own.

    The CSVs are parsed in a background thread, whose malloc arena keeps freed pages;
    glibc's ``malloc_trim`` returns them (elsewhere this is a no-op)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _single(report: Mapping[str, Any]) -> str | None:
    """The CSV a one-CSV run holds (Canvas sends that CSV itself, not a zip)."""
    params = report.get("parameters") or {}
    chosen = [n for n in CSVS if str(params.get(n, "")).lower() in ("true", "1")]
    return chosen[0] if len(chosen) == 1 else None
