"""The ONLINE_MEETINGS job: LTI tool placements per course and their Zoom meetings.

1. ``lti_type``: the stored tools with ``LTI_TOOLS`` merged in (a configured tool
   replaces the stored row of its id; tools already there stay).
2. Courses in scope (available courses of the terms plus ``ADD_COURSE_IDS``) → their
   navigation tabs → ``lti_placement`` for every visible tab of a tool in ``lti_type``.
3. With ``ZOOM`` configured: the calendar events of every course showing the Zoom tool
   → Zoom meeting numbers in join URLs → host and status from Zoom's REST API
   → ``lti_zoom_meeting``.
4. ``lti_type``, ``lti_placement`` and ``lti_zoom_meeting`` are replaced together in
   one atomic publish, after every source was read: a run that fails anywhere (e.g.
   Zoom's daily limit) leaves all three as they were.

An empty ``LTI_TOOLS`` is a config error for this job (it would empty the placements).

Only documented APIs are used: no LTI launch pages are scraped.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from courseinv.db.tables import lti_type
from courseinv.http_client.canvas import CanvasClient
from courseinv.http_client.errors import HttpError
from courseinv.http_client.zoom import MeetingInfo, ZoomDailyLimit, ZoomError, meeting_statuses
from courseinv.online_meetings.calendar import CalendarMeeting, read_course_meetings
from courseinv.online_meetings.frames import (
    LTI_TYPE_COLUMNS,
    lti_type_frame,
    meeting_frame,
    placement_frame,
)
from courseinv.online_meetings.placements import Placement, find_placements, scope_courses
from courseinv.runner.jobs import DataSourceName, DataSourceStatus, JobContext, JobError
from courseinv.runner.logs import in_words
from sqlalchemy import Engine, select


def run(ctx: JobContext) -> list[DataSourceStatus]:
    config, log = ctx.config, ctx.log
    zoom_config: Mapping[str, Any] | None = config.get("ZOOM")
    zoom_tool_id = int(zoom_config["LTI_TOOL_ID"]) if zoom_config else None
    if not config.get("LTI_TOOLS"):
        raise JobError("LTI_TOOLS is empty: no tool to report on; the tables were kept")
    tools = merged_lti_types(ctx.engine, config["LTI_TOOLS"])
    tool_ids = {int(t) for t in tools["canvas_id"]}
    if zoom_tool_id is not None and zoom_tool_id not in tool_ids:
        log.warning("ZOOM.LTI_TOOL_ID %s is not in lti_type: no Zoom placements", zoom_tool_id)
    try:
        ctx.phase("Canvas placements and calendars")
        placements, calendars = read_canvas(config, tool_ids, zoom_tool_id, log)
        statuses = [DataSourceStatus(DataSourceName.CANVAS_LTI)]
        zoom: dict[int, MeetingInfo] = {}
        if zoom_config:
            ctx.phase("Zoom meetings")
            zoom = lookup_zoom(config, zoom_config, calendars)
            statuses.append(DataSourceStatus(DataSourceName.ZOOM_API))
    except ZoomDailyLimit as exc:
        raise JobError(f"{exc} The ONLINE_MEETINGS tables were left unchanged.") from exc
    except (HttpError, ZoomError) as exc:
        raise JobError(str(exc)) from exc

    ctx.phase("publish")
    frames = {"lti_type": tools, **output_frames(placements, zoom_tool_id, calendars, zoom)}
    ctx.replace_tables(frames)
    log.info(
        "ONLINE_MEETINGS: %d placement(s), %d Zoom meeting row(s) by status %s",
        len(frames["lti_placement"]),
        len(frames["lti_zoom_meeting"]),
        dict(Counter(frames["lti_zoom_meeting"]["status"])),
    )
    ctx.write_csvs(frames)
    return statuses


def merged_lti_types(engine: Engine, tools: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The stored ``lti_type`` rows with the configured tools merged in (config wins).

    Nothing is written here: the result is published with the placements.
    """
    configured = lti_type_frame(tools)
    with engine.connect() as conn:
        rows = conn.execute(select(lti_type).order_by(lti_type.c.canvas_id)).all()
    stored = pd.DataFrame(rows, columns=LTI_TYPE_COLUMNS).astype({"canvas_id": "int64"})
    kept = stored[~stored["canvas_id"].isin(configured["canvas_id"])]
    merged = pd.concat([kept, configured], ignore_index=True) if len(kept) else configured
    return merged.sort_values("canvas_id", ignore_index=True)


def output_frames(
    placements: list[Placement],
    zoom_tool_id: int | None,
    calendars: Mapping[int, list[CalendarMeeting]],
    zoom: Mapping[int, MeetingInfo],
) -> dict[str, pd.DataFrame]:
    """``lti_placement`` (ids numbered here) and ``lti_zoom_meeting`` referencing them."""
    placement = placement_frame(placements)
    return {
        "lti_placement": placement,
        "lti_zoom_meeting": meeting_frame(placement, zoom_tool_id, calendars, zoom),
    }


def read_canvas(
    config: Mapping[str, Any], tool_ids: set[int], zoom_tool_id: int | None, log: logging.Logger
) -> tuple[list[Placement], dict[int, list[CalendarMeeting]]]:
    """Placements of the tools, and the calendar meetings of courses showing Zoom."""
    canvas_config = config["CANVAS"]
    if not canvas_config.get("CANVAS_TERM_IDS") and not canvas_config.get("ADD_COURSE_IDS"):
        log.warning("CANVAS.CANVAS_TERM_IDS and CANVAS.ADD_COURSE_IDS are empty: no courses")
    with CanvasClient.from_config(config) as canvas:
        courses = scope_courses(
            canvas,
            canvas_config["CANVAS_ACCOUNT_ID"],
            canvas_config.get("CANVAS_TERM_IDS") or [],
            canvas_config.get("ADD_COURSE_IDS") or [],
        )
        placements = find_placements(canvas, courses, tool_ids)
        zoom_courses = [p.course_id for p in placements if p.placement_type_id == zoom_tool_id]
        calendars = read_course_meetings(canvas, zoom_courses) if zoom_tool_id else {}
        log.info(
            "Canvas: %d course(s) in scope, %d placement(s), %d course(s) showing Zoom; %s",
            len(courses),
            len(placements),
            len(zoom_courses),
            in_words(canvas.stats()),
        )
    return placements, calendars


def lookup_zoom(
    config: Mapping[str, Any],
    zoom_config: Mapping[str, Any],
    calendars: Mapping[int, list[CalendarMeeting]],
) -> dict[int, MeetingInfo]:
    """Zoom's host and status for every distinct meeting found in the calendars."""
    ids = {m.meeting_id for meetings in calendars.values() for m in meetings}
    return meeting_statuses(
        zoom_config,
        ids,
        max_attempts=int(config.get("MAX_REQ_ATTEMPTS", 3)),
        workers=int(config.get("NUM_ASYNC_WORKERS", 8)),
    )
