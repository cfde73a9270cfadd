"""Job MIVIDEO: media plays per course-hour (UDP Caliper events in BigQuery) and media
created in Kaltura, loaded incrementally and idempotently.

1. ``mivideo_media_started_hourly``: KAF ``MediaEvent``/``Started`` events counted per
   (UTC hour, course) after ``default_last_timestamp`` and before the start of today
   (UTC), from the start of the hour of the watermark (the latest stored
   ``event_time_utc_latest``) on. That hour and every later one are recounted WHOLE and
   their stored rows replaced, never added to: a re-run, an event arriving late inside
   the watermark's hour, and two runs at once (whichever commits last writes the same
   complete counts) all leave every event counted once. Nothing is read from the table
   and then added to, so no lock or shared transaction is needed for correctness.
2. ``mivideo_media_created`` / ``mivideo_media_courses``: Kaltura entries created at or
   after the latest stored ``created_at`` (else ``default_last_timestamp``), upserted on
   their keys (entries of that boundary second come again and change nothing).
3. All new rows of the three tables are written in ONE transaction, after both sources
   were read completely: a run failing anywhere leaves every table as it was, and the
   next run starts again from the same watermarks.

Freshness: UNIZIN_DATA_PLATFORM_EVENTS = the newest event time loaded (the watermark
when nothing new); KALTURA_API = when the Kaltura pull finished.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from courseinv.db.publish import upsert_rows
from courseinv.db.tables import mivideo_media_created, mivideo_media_started_hourly
from courseinv.http_client.kaltura import KalturaClient, KalturaError
from courseinv.mivideo.categories import course_links
from courseinv.mivideo.events import fetch_media_started_hourly, utc
from courseinv.runner.jobs import DataSourceName, DataSourceStatus, JobContext, JobError
from courseinv.runner.payload import Fields
from sqlalchemy import Engine, func, select

DEFAULT_SERVICE_URL = "https://www.kaltura.com"
DEFAULT_CATEGORIES = "Canvas_UMich"
DEFAULT_EVENTS_TABLE = "event_store.events"
NAME_MAX = mivideo_media_created.c.name.type.length or 512


def run(ctx: JobContext) -> list[DataSourceStatus]:
    config = _mivideo_config(ctx.config)
    attempts = int(ctx.config.get("MAX_REQ_ATTEMPTS", 3))
    start = parse_timestamp(config["default_last_timestamp"])

    watermark = latest(ctx.engine, mivideo_media_started_hourly.c.event_time_utc_latest)
    watermark = max(watermark or start, start)
    hour_from = watermark.replace(minute=0, second=0, microsecond=0)
    ctx.log.info(
        "MIVIDEO: counting media started from the hour %s (whole hours, after %s, before "
        "today, UTC)", hour_from, start,
    )  # fmt: skip
    ctx.phase("BigQuery events")
    hourly = fetch_media_started_hourly(
        config, ctx.env_dir, start, hour_from, max_attempts=attempts
    )

    ctx.phase("Kaltura media")
    media_since = latest(ctx.engine, mivideo_media_created.c.created_at) or start
    ctx.log.info("MIVIDEO: listing Kaltura media created since %s", media_since)
    media, courses, requests = fetch_media(config, media_since, attempts)
    kaltura_done = datetime.now(UTC)
    ctx.log.info(
        "MIVIDEO: Kaltura returned %d media (%d course links) in %d media.list requests",
        len(media), len(courses), requests,
    )  # fmt: skip

    frames = {
        "mivideo_media_started_hourly": hourly,
        "mivideo_media_created": media,
        "mivideo_media_courses": courses,
    }
    ctx.phase("publish")
    counts = upsert_rows(ctx.engine, frames)
    ctx.record_rows(counts)
    ctx.log.info("MIVIDEO: upserted %s", ", ".join(f"{n} {t}" for t, n in counts.items()))
    ctx.write_csvs(frames)

    newest_event = (
        utc(hourly["event_time_utc_latest"].max().to_pydatetime()) if len(hourly) else watermark
    )
    return [
        DataSourceStatus(DataSourceName.UNIZIN_DATA_PLATFORM_EVENTS, newest_event),
        DataSourceStatus(DataSourceName.KALTURA_API, kaltura_done),
    ]


def _mivideo_config(config: Mapping[str, Any]) -> dict[str, Any]:
    section = config.get("MIVIDEO")
    if not section:
        raise JobError("MIVIDEO: the config has no MIVIDEO section")
    out = dict(section)
    out.setdefault("kaltura_service_url", DEFAULT_SERVICE_URL)
    out.setdefault("kaltura_categories_full_name_in", DEFAULT_CATEGORIES)
    out.setdefault("udp_events_table", DEFAULT_EVENTS_TABLE)
    return out


def parse_timestamp(value: str) -> datetime:
    """An ISO 8601 config timestamp as aware UTC (naive values are UTC)."""
    try:
        return utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        raise JobError(
            f"MIVIDEO.default_last_timestamp: expected ISO 8601, got {value!r}"
        ) from None


def latest(engine: Engine, column: Any) -> datetime | None:
    """The largest stored value of a (naive UTC) datetime column, as aware UTC."""
    with engine.connect() as conn:
        value = conn.execute(select(func.max(column))).scalar()
    return utc(value) if value is not None else None


# -- media created ----------------------------------------------------------------------------


def fetch_media(
    config: Mapping[str, Any], since: datetime, attempts: int
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """New media and their course links, plus the number of media.list requests."""
    categories = str(config["kaltura_categories_full_name_in"])
    prefixes = [p.strip() for p in categories.split(",") if p.strip()]
    entries: dict[str, dict[str, Any]] = {}
    client = KalturaClient(
        config["kaltura_service_url"],
        int(config["kaltura_partner_id"]),
        config["kaltura_user_secret"],
        max_attempts=attempts,
    )
    try:
        with client:
            for entry in client.iter_media(categories, int(since.timestamp())):
                entries[str(entry["id"])] = entry
    except KalturaError as exc:
        raise JobError(str(exc)) from None
    return media_frame(entries.values()), courses_frame(entries.values(), prefixes), client.requests


MEDIA_LIST = "Kaltura media.list"


def media_entry(entry: Any) -> tuple[str, datetime, str | None, int | None, str | None]:
    """An entry's id, createdAt (naive UTC), name, duration and categories, checked."""
    e = Fields(entry, MEDIA_LIST, "media entry")
    entry_id = e.text("id")
    if not entry_id:
        e.fail("id", "is empty (expected an entry id)")
    created = e.int("createdAt", minimum=0)
    assert entry_id is not None and created is not None
    return (
        entry_id,
        datetime.fromtimestamp(created, UTC).replace(tzinfo=None),
        _name(e.text("name", required=False)),
        e.int("duration", required=False, minimum=0),
        e.str("categories", required=False),
    )


def media_frame(entries: Any) -> pd.DataFrame:
    rows = [media_entry(e)[:4] for e in entries]
    frame = pd.DataFrame(rows, columns=["id", "created_at", "name", "duration"])
    frame["created_at"] = pd.to_datetime(frame["created_at"])
    return frame.astype({"duration": "Int64"})


def courses_frame(entries: Any, prefixes: list[str]) -> pd.DataFrame:
    rows = sorted(
        {
            (entry_id, link.course_id, link.in_context)
            for entry_id, _, _, _, categories in map(media_entry, entries)
            for link in course_links(categories, prefixes)
        }
    )
    frame = pd.DataFrame(rows, columns=["media_id", "course_id", "in_context"])
    return frame.astype({"course_id": "int64", "in_context": "bool"})


def _name(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= NAME_MAX else text[: NAME_MAX - 1] + "…"
