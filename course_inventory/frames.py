"""The six COURSE_INVENTORY output frames, built from what was read.

Each frame carries exactly its ``db/tables.py`` columns (``canvas_course_usage`` without
its surrogate ``id``, which the publish numbers), sorted by primary key so output is
deterministic. Timestamps are converted to naive UTC, the form every table stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from courseinv.course_inventory.canvas_pull import CourseDetails, Section

TERM_COLUMNS = ["canvas_id", "name", "sis_id", "start_at", "end_at"]
ACCOUNT_COLUMNS = ["canvas_id", "sis_id", "name"]
COURSE_COLUMNS = [
    "canvas_id",
    "sis_id",
    "name",
    "account_id",
    "term_id",
    "created_at",
    "published_at",
    "workflow_state",
]
SECTION_COLUMNS = ["canvas_id", "sis_id", "name", "course_id"]
USAGE_COLUMNS = ["course_id", "date", "views", "participations"]


def utc_naive(values: Iterable[Any]) -> pd.Series:
    """ISO datetime strings (any offset) or datetimes → naive UTC ``datetime64``; None → NaT."""
    parsed = pd.to_datetime(pd.Series(list(values), dtype=object), utc=True, format="ISO8601")
    return parsed.dt.tz_convert(None).astype("datetime64[us]")


def term_frame(terms: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "canvas_id": pd.array([int(t["id"]) for t in terms], dtype="int64"),
            "name": _text(t["name"] for t in terms),
            "sis_id": _text(t.get("sis_term_id") for t in terms),
            "start_at": utc_naive(t.get("start_at") for t in terms),
            "end_at": utc_naive(t.get("end_at") for t in terms),
        },
        columns=TERM_COLUMNS,
    )
    return _sorted(frame, ["canvas_id"])


def account_frame(accounts: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "canvas_id": pd.array([int(a["id"]) for a in accounts], dtype="int64"),
            "sis_id": _text(a.get("sis_account_id") for a in accounts),
            "name": _text(a["name"] for a in accounts),
        },
        columns=ACCOUNT_COLUMNS,
    )
    return _sorted(frame, ["canvas_id"])


def course_frame(
    courses: Sequence[Mapping[str, Any]], published_at: Mapping[int, str | datetime | None]
) -> pd.DataFrame:
    """Courses with their publish dates (``published_at`` by course id; absent → NULL)."""
    ids = [int(c["id"]) for c in courses]
    frame = pd.DataFrame(
        {
            "canvas_id": pd.array(ids, dtype="int64"),
            "sis_id": _text(c.get("sis_course_id") for c in courses),
            "name": _text(c["name"] for c in courses),
            "account_id": pd.array([int(c["account_id"]) for c in courses], dtype="int64"),
            "term_id": pd.array([int(c["enrollment_term_id"]) for c in courses], dtype="int64"),
            "created_at": utc_naive(c.get("created_at") for c in courses),
            "published_at": utc_naive(published_at.get(i) for i in ids),
            "workflow_state": _text(c["workflow_state"] for c in courses),
        },
        columns=COURSE_COLUMNS,
    )
    return _sorted(frame, ["canvas_id"])


def section_frame(
    sections: Iterable[Section], udw_sis_ids: Mapping[int, str | None] | None
) -> pd.DataFrame:
    """Sections; ``sis_id`` from UDW when given (None for sections UDW lacks), else Canvas's."""
    rows = list(sections)
    if udw_sis_ids is None:
        sis = [s.sis_id for s in rows]
    else:
        sis = [udw_sis_ids.get(s.canvas_id) for s in rows]
    frame = pd.DataFrame(
        {
            "canvas_id": pd.array([s.canvas_id for s in rows], dtype="int64"),
            "sis_id": _text(sis),
            "name": _text(s.name for s in rows),
            "course_id": pd.array([s.course_id for s in rows], dtype="int64"),
        },
        columns=SECTION_COLUMNS,
    )
    return _sorted(frame, ["canvas_id"])


def enrollment_frame(details: Sequence[CourseDetails]) -> pd.DataFrame:
    """Every course's enrollments in one frame, built from concatenated arrays."""
    parts = [(d.course_id, d.enrollments) for d in details if d.enrollments is not None]
    enrollments = [e for _, e in parts]
    ids = _concat([e.id for e in enrollments], np.int64)
    order = np.argsort(ids, kind="stable")
    columns = {
        "canvas_id": ids,
        "course_id": _concat([np.full(len(e.id), cid, np.int64) for cid, e in parts], np.int64),
        "course_section_id": _concat([e.section_id for e in enrollments], np.int64),
        "user_id": _concat([e.user_id for e in enrollments], np.int64),
        "workflow_state": _concat([e.workflow_state for e in enrollments], object),
        "role_type": _concat([e.role_type for e in enrollments], object),
    }
    return pd.DataFrame({name: values[order] for name, values in columns.items()})


def usage_frame(details: Sequence[CourseDetails]) -> pd.DataFrame:
    """Daily activity rows of the courses whose analytics were read."""
    parts = [(d.course_id, d.activity) for d in details if d.activity is not None]
    frame = pd.DataFrame(
        {
            "course_id": _concat(
                [np.full(len(a.date), cid, np.int64) for cid, a in parts], np.int64
            ),
            "date": _concat([a.date for _, a in parts], "datetime64[D]").astype("datetime64[s]"),
            "views": _concat([a.views for _, a in parts], np.int64),
            "participations": _concat([a.participations for _, a in parts], np.int64),
        },
        columns=USAGE_COLUMNS,
    )
    return _sorted(frame, ["course_id", "date"])


def _text(values: Iterable[Any]) -> pd.Series:
    """A text column (None stays None), with a string dtype even when empty."""
    return pd.Series(list(values), dtype=object)


def _concat(arrays: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.array([], dtype=dtype)


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys, kind="stable", ignore_index=True)
