"""The ONLINE_MEETINGS output tables as DataFrames (columns as in ``db/tables.py``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
from courseinv.http_client.zoom import MeetingInfo
from courseinv.online_meetings.calendar import CalendarMeeting
from courseinv.online_meetings.placements import Placement

LTI_TYPE_COLUMNS = ["canvas_id", "des", "rpt_group_nm"]
PLACEMENT_COLUMNS = ["id", "course_id", "account_id", "course_name", "placement_type_id"]
MEETING_COLUMNS = ["id", "lti_placement_id", "meeting_id", "host_id", "start_time", "status"]


def lti_type_frame(tools: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """``LTI_TOOLS`` config entries as ``lti_type`` rows (the last entry of an id wins)."""
    rows = {int(t["canvas_id"]): (t["des"], t.get("rpt_group_nm")) for t in tools}
    return pd.DataFrame(
        [(cid, des, group) for cid, (des, group) in sorted(rows.items())],
        columns=LTI_TYPE_COLUMNS,
    ).astype({"canvas_id": "int64"})


def placement_frame(placements: Sequence[Placement]) -> pd.DataFrame:
    """``lti_placement`` rows, ids 1..n in (course id, tool id) order."""
    rows = [(i, *p) for i, p in enumerate(sorted(placements), start=1)]
    frame = pd.DataFrame(rows, columns=PLACEMENT_COLUMNS)
    return frame.astype(
        {"id": "int64", "course_id": "int64", "account_id": "Int64", "placement_type_id": "int64"}
    )


def meeting_frame(
    placements: pd.DataFrame,
    zoom_tool_id: int | None,
    calendars: Mapping[int, Sequence[CalendarMeeting]],
    zoom: Mapping[int, MeetingInfo],
) -> pd.DataFrame:
    """One ``lti_zoom_meeting`` row per (Zoom placement, meeting id, start time)."""
    zoom_placements = placements[placements["placement_type_id"] == zoom_tool_id]
    rows = []
    for placement_id, course_id in zip(
        zoom_placements["id"], zoom_placements["course_id"], strict=True
    ):
        for meeting in calendars.get(int(course_id), ()):
            info = zoom[meeting.meeting_id]
            rows.append(
                (
                    int(placement_id),
                    meeting.meeting_id,
                    info.host_id,
                    meeting.start_time,
                    info.status,
                )
            )
    frame = pd.DataFrame(rows, columns=MEETING_COLUMNS[1:])
    frame.insert(0, "id", range(1, len(frame) + 1))
    return frame.astype(
        {
            "id": "int64",
            "lti_placement_id": "int64",
            "meeting_id": "int64",
            "host_id": "object",
            "start_time": "datetime64[us]",
            "status": "object",
        }
    )
