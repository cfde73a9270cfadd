"""Shared helpers of the LIVE_EVENTS tests: the config of a run, tables vs ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from courseinv.db.tables import (
    live_course_activity_hourly,
    live_course_state,
    live_enrollment_state,
    live_event,
    live_event_field_drift,
    live_event_rejected,
    lti_resource_link,
)
from courseinv.sandbox.live_events import StreamTruth
from sqlalchemy import Engine, func, select


def write_config(
    tmp_path: Path, database_url: str, live_events: dict[str, Any], **extra: Any
) -> Path:
    """A config file running LIVE_EVENTS alone into ``database_url``."""
    config = {
        "JOB_NAMES": ["LIVE_EVENTS"],
        "DATA_DIR": str(tmp_path / "data"),
        "INVENTORY_DB": {"url": database_url},
        "LIVE_EVENTS": live_events,
        **extra,
    }
    path = tmp_path / "env.hjson"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def count(engine: Engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def projections(engine: Engine) -> dict[str, Any]:
    """The four projection tables and the drift table, as comparable dicts."""
    with engine.connect() as conn:
        cs = live_course_state.c
        ah = live_course_activity_hourly.c
        dr = live_event_field_drift.c
        return {
            "course_state": {
                r.course_id: {"name": r.name, "workflow_state": r.workflow_state}
                for r in conn.execute(select(cs.course_id, cs.name, cs.workflow_state))
            },
            "enrollment_state": {
                r.enrollment_id: {
                    "course_id": r.course_id,
                    "course_section_id": r.course_section_id,
                    "user_id": r.user_id,
                    "type": r.type,
                    "workflow_state": r.workflow_state,
                }
                for r in conn.execute(select(live_enrollment_state))
            },
            "activity": {
                (r.course_id, r.hour_utc, r.user_id): [r.page_views, r.participations]
                for r in conn.execute(
                    select(ah.course_id, ah.hour_utc, ah.user_id, ah.page_views, ah.participations)
                )
            },
            "links": {
                r.lookup_uuid: {
                    "course_id": r.course_id,
                    "context_external_tool_id": r.context_external_tool_id,
                    "url": r.url,
                    "title": r.title,
                    "workflow_state": r.workflow_state,
                }
                for r in conn.execute(select(lti_resource_link))
            },
            "drift": {
                (r.event_name, r.event_format, r.field_path): r.occurrences
                for r in conn.execute(
                    select(dr.event_name, dr.event_format, dr.field_path, dr.occurrences)
                )
            },
            "events": conn.execute(select(func.count()).select_from(live_event)).scalar_one(),
            "rejected": conn.execute(
                select(func.count()).select_from(live_event_rejected)
            ).scalar_one(),
        }


def expected(truth: StreamTruth) -> dict[str, Any]:
    return {
        "course_state": truth.course_state,
        "enrollment_state": truth.enrollment_state,
        "activity": truth.activity,
        "links": truth.links,
        "drift": dict(truth.drift),
        "events": truth.events,
        "rejected": truth.rejected,
    }


def assert_matches_truth(engine: Engine, truth: StreamTruth) -> None:
    got, want = projections(engine), expected(truth)
    for name in want:
        assert got[name] == want[name], f"{name} differs from the ground truth"
