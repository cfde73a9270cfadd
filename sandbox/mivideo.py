"""The MIVIDEO sources of a sandbox institution: the BigQuery fake and the Kaltura fake.

For development, tests, the demo and benchmarks only.

``start_mivideo_sandbox(seed, course_ids, env_dir)`` starts both servers on 127.0.0.1,
writes a generated service-account key into ``env_dir`` and returns a ``MivideoSandbox``
whose ``config`` is the ``MIVIDEO`` section that points the job at them::

    with start_mivideo_sandbox(7, course_ids, env_dir) as sandbox:
        config["MIVIDEO"] = sandbox.config       # key file name is relative to env_dir
        ...run the MIVIDEO job...
        sandbox.expected_tables()                 # ground truth for the three tables
        sandbox.advance_day()                     # next sandbox day: new events and media

Both fakes share one sandbox "today" (UTC date; default the real one): the event store
holds events of the ``days`` days before it and of today (not countable until the next
day), Kaltura the media created on those days. ``default_last_timestamp`` is midnight
of the first generated day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from courseinv.sandbox.bigquery import BigQueryServer
from courseinv.sandbox.caliper import CaliperEventStore, start_of_day
from courseinv.sandbox.httpserver import Faults, Latency
from courseinv.sandbox.kaltura import DEFAULT_ROOT, KalturaServer

KEY_FILENAME = "udp-service-account.json"
PROJECT_ID = "sandbox-udp"


@dataclass
class MivideoSandbox:
    """The running fakes, their shared data and the MIVIDEO config that points at them."""

    events: CaliperEventStore
    bigquery: BigQueryServer
    kaltura: KalturaServer
    key_path: Path
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def servers(self) -> tuple[BigQueryServer, KalturaServer]:
        return (self.bigquery, self.kaltura)

    @property
    def start(self) -> datetime:
        """``default_last_timestamp`` as a datetime."""
        return start_of_day(self.events.first_day)

    def advance_day(self) -> date:
        """The next sandbox day for both sources; returns the new today."""
        self.kaltura.advance_day()
        return self.events.advance_day()

    def expected_tables(self) -> dict[str, pd.DataFrame]:
        """What the three tables must hold after runs on the current sandbox day."""
        return {
            "mivideo_media_started_hourly": self.events.expected_media_started_hourly(self.start),
            "mivideo_media_created": self.kaltura.expected_media_created(self.start),
            "mivideo_media_courses": self.kaltura.expected_media_courses(self.start),
        }

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> MivideoSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_mivideo_sandbox(
    seed: int,
    course_ids: Sequence[int],
    env_dir: Path | str,
    *,
    today: date | None = None,
    days: int = 7,
    events_per_day: int = 150,
    media_per_day: int = 40,
    events_table: str = "event_store.events",
    categories_root: str = DEFAULT_ROOT,
    latency: Latency | None = None,
    faults: Faults | None = None,
) -> MivideoSandbox:
    """Start the BigQuery and Kaltura fakes for an institution; see the module doc."""
    today = today or datetime.now(UTC).date()
    store = CaliperEventStore(seed, course_ids, today, days=days, events_per_day=events_per_day)
    bigquery = BigQueryServer(store, table=events_table, latency=latency, faults=faults, seed=seed)
    kaltura = KalturaServer(
        seed, course_ids, today, root=categories_root, days=days,
        media_per_day=media_per_day, latency=latency, faults=faults,
    )  # fmt: skip
    bigquery.start()
    try:
        kaltura.start()
        key_path = bigquery.create_service_account_key(env_dir, KEY_FILENAME, PROJECT_ID)
    except BaseException:
        bigquery.stop()
        kaltura.stop()
        raise
    sandbox = MivideoSandbox(store, bigquery, kaltura, key_path)
    sandbox.config = {
        "default_last_timestamp": sandbox.start.isoformat().replace("+00:00", "Z"),
        "udp_service_account_json_filename": KEY_FILENAME,
        "udp_events_table": f"{PROJECT_ID}.{events_table}",
        "bigquery_project": PROJECT_ID,
        "bigquery_api_endpoint": bigquery.url,
        "kaltura_partner_id": kaltura.partner_id,
        "kaltura_user_secret": kaltura.admin_secret,
        "kaltura_categories_full_name_in": categories_root,
        "kaltura_service_url": kaltura.url,
    }
    return sandbox
