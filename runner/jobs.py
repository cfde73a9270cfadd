"""What a job is: its context, what it returns, and the registry of job names."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas and SQLAlchemy load only when a job runs
    import pandas as pd
    from courseinv.db.publish import PublishPolicy
    from sqlalchemy import Engine


class DataSourceName(StrEnum):
    CANVAS_API = "CANVAS_API"
    UNIZIN_DATA_WAREHOUSE = "UNIZIN_DATA_WAREHOUSE"
    UNIZIN_DATA_PLATFORM_EVENTS = "UNIZIN_DATA_PLATFORM_EVENTS"
    KALTURA_API = "KALTURA_API"
    CANVAS_LTI = "CANVAS_LTI"
    ZOOM_API = "ZOOM_API"
    CANVAS_LIVE_EVENTS = "CANVAS_LIVE_EVENTS"


@dataclass(frozen=True)
class DataSourceStatus:
    """How fresh one data source was: becomes one ``data_source_status`` row."""

    name: DataSourceName
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.updated_at.tzinfo is None:
            raise ValueError("DataSourceStatus.updated_at must be timezone-aware (UTC)")


class JobError(Exception):
    """A job failed for a reason worth reporting as-is (no traceback needed)."""


@dataclass
class JobContext:
    """Everything a job may use. Built once by the runner and passed explicitly."""

    config: Mapping[str, Any]  # validated config, defaults applied, read-only
    engine: Engine  # the output (inventory) database
    data_dir: Path  # CSV output folder (DATA_DIR)
    env_dir: Path  # folder of the config file; key files are resolved under it
    log: logging.Logger
    # How careful replaces are (shrink limit, lock waits); None: from the config.
    publish_policy: PublishPolicy | None = None
    # Rows published per table by this run (the runner stores the total in job_run).
    rows_written: dict[str, int] = field(default_factory=dict)
    # True once a replace has swapped its tables in: the run's data is live.
    published: bool = False
    # Phases timed by ``phase()``: {"name", "start_s" (since the job began), "seconds"}.
    phases: list[dict[str, Any]] = field(default_factory=list)
    _clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _began: float = field(default_factory=time.monotonic, repr=False)
    _open: dict[str, Any] | None = field(default=None, repr=False)

    def phase(self, name: str) -> _PhaseScope:
        """Start timing phase ``name`` now, ending the phase before it (for the run report).

        Either one line, ``ctx.phase("Kaltura media")`` (it lasts until the next phase or
        the end of the job), or a block, ``with ctx.phase("enrollments"): ...``.
        """
        now = self._clock() - self._began
        self.end_phase(now)
        self._open = {"name": name, "start_s": round(now, 3)}
        return _PhaseScope(self, self._open)

    def end_phase(self, now: float | None = None) -> None:
        """Close the open phase, if any (the runner calls it when the job returns)."""
        if self._open is not None:
            now = self._clock() - self._began if now is None else now
            elapsed = now - self._open["start_s"]
            self.phases.append({**self._open, "seconds": round(max(0.0, elapsed), 3)})
            self._open = None

    def replace_tables(self, frames: Mapping[str, pd.DataFrame]) -> dict[str, int]:
        """Publish ``frames`` atomically (``db.publish.replace_tables``) under this run's
        policy; rows are noted the moment the swap commits, before any cleanup."""
        from courseinv.db.publish import PublishPolicy, replace_tables

        def swapped(counts: Mapping[str, int]) -> None:
            self.published = True
            self.record_rows(counts)

        policy = self.publish_policy or PublishPolicy.from_config(self.config)
        return replace_tables(self.engine, frames, policy=policy, on_swapped=swapped)

    def record_rows(self, counts: Mapping[str, int]) -> None:
        """Note rows published per table (what ``replace_tables``/``upsert_rows`` return)."""
        for table, rows in counts.items():
            self.rows_written[table] = self.rows_written.get(table, 0) + int(rows)

    @property
    def create_csvs(self) -> bool:
        return bool(self.config.get("CREATE_CSVS", False))

    def write_csvs(self, frames: Mapping[str, pd.DataFrame]) -> None:
        """Write each frame as ``<data_dir>/<name>.csv`` when CREATE_CSVS is on.

        Called after the tables were published: a failure is a warning with its reason
        (the published tables stand), never a failure of the job.
        """
        if not self.create_csvs:
            return
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            for name, frame in frames.items():
                path = self.data_dir / f"{name}.csv"
                frame.to_csv(path, index=False)
                self.log.info("Wrote %s rows to %s", len(frame), path)
        except Exception as exc:
            self.log.warning("CSV export failed (the tables were published all the same): %s", exc)


class _PhaseScope:
    """What ``JobContext.phase`` returns: a ``with`` block ends the phase on exit."""

    def __init__(self, ctx: JobContext, opened: dict[str, Any]) -> None:
        self._ctx, self._opened = ctx, opened

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        if self._ctx._open is self._opened:
            self._ctx.end_phase()


JobFunc = Callable[[JobContext], list[DataSourceStatus]]

# Job name -> "module:function". Modules are imported only when the job runs, so the
# config validator can list the names without importing every job's dependencies.
JOBS: dict[str, str] = {
    "COURSE_INVENTORY": "courseinv.course_inventory.job:run",
    "MIVIDEO": "courseinv.mivideo.job:run",
    "ONLINE_MEETINGS": "courseinv.online_meetings.job:run",
    "LIVE_EVENTS": "courseinv.live_events.job:run",
}


def register_job(name: str, target: str | JobFunc) -> None:
    """Register a job under ``name`` (upper-cased): a "module:function" path or a callable."""
    _extra[name.upper()] = target


def unregister_job(name: str) -> None:
    """Remove a job added with ``register_job`` (tests register their own jobs)."""
    _extra.pop(name.upper(), None)


_extra: dict[str, str | JobFunc] = {}


def job_names() -> list[str]:
    return [*JOBS, *(n for n in _extra if n not in JOBS)]


def resolve_job(name: str) -> JobFunc:
    target = _extra.get(name.upper()) or JOBS[name.upper()]
    if callable(target):
        return target
    module_name, _, func_name = target.partition(":")
    return getattr(importlib.import_module(module_name), func_name)
