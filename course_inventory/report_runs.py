"""Canvas account report runs: start (or reuse) one per term, poll to completion.

``ReportRunner.run(term_ids)`` starts the runs of every term at once (each term's
``provisioning_csv`` with the CSVs the bulk path reads), then polls them together with
a growing interval (but closer near a run's expected end, judged from its progress),
logging each run's status, progress and current line; ``each_complete`` hands each run
over as soon as it is complete, so its file is read while the others still run. Rules:

* Reuse: a ``complete`` run of the same parameters that ended less than
  ``reuse_max_age_s`` ago is taken as is; a run of the same parameters still in
  progress and younger than that is adopted instead of starting another. 0: never.
* ``error`` and ``deleted`` are failures (``ReportFailed``, with Canvas's message).
* Stalls: a run whose status, progress and current line have not moved for
  ``stall_s`` is given up (deleted, best effort) and started afresh, at most
  ``max_restarts`` times per term; then ``ReportFailed``.
* ``max_wait_s`` bounds the whole wait.

Every call goes through ``CanvasClient`` (retries, throttling). Times come from an
injectable clock so the logic is the same in tests (short limits) and at night.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from courseinv.http_client.canvas import CanvasClient
from courseinv.http_client.errors import PermanentHttpError

REPORT_TYPE = "provisioning_csv"
CSVS = ("courses", "sections", "enrollments", "xlist")
IN_PROGRESS = ("created", "running", "compiling")
FAILED = ("error", "deleted")


class ReportFailed(Exception):
    """A report run failed, stalled too often or took too long (message is log-safe)."""


@dataclass(frozen=True)
class ReportSettings:
    """``CANVAS.REPORTS`` (durations in seconds)."""

    reuse_max_age_s: float = 6 * 3600.0
    poll_initial_s: float = 2.0
    poll_max_s: float = 15.0
    stall_s: float = 1800.0
    max_restarts: int = 2
    max_wait_s: float = 24 * 3600.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ReportSettings:
        raw = config["CANVAS"].get("REPORTS") or {}
        defaults = cls()
        return cls(
            reuse_max_age_s=float(raw.get("REUSE_MAX_AGE_SECONDS", defaults.reuse_max_age_s)),
            poll_initial_s=float(raw.get("POLL_INITIAL_SECONDS", defaults.poll_initial_s)),
            poll_max_s=float(raw.get("POLL_MAX_SECONDS", defaults.poll_max_s)),
            stall_s=float(raw.get("STALL_SECONDS", defaults.stall_s)),
            max_restarts=int(raw.get("MAX_RESTARTS", defaults.max_restarts)),
            max_wait_s=float(raw.get("MAX_WAIT_SECONDS", defaults.max_wait_s)),
        )


def report_parameters(term_id: int) -> dict[str, str]:
    """The run's parameters: the four CSVs, concluded rows included (``include_deleted``)."""
    return {
        "enrollment_term_id": str(term_id),
        **dict.fromkeys(CSVS, "true"),
        "include_deleted": "true",
    }


@dataclass
class _Watch:
    """One term's current run and when it last moved."""

    term_id: int
    report: dict[str, Any]
    moved_at: float
    started_at: float = 0.0  # when this runner first saw the run (progress rate)
    restarts: int = 0
    mark: tuple[Any, ...] = field(default=())


class ReportRunner:
    """Runs ``provisioning_csv`` per term for one account (see the module docstring)."""

    def __init__(
        self,
        canvas: CanvasClient,
        account_id: int,
        settings: ReportSettings,
        log: logging.Logger,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.canvas = canvas
        self.settings = settings
        self.log = log
        self.base = f"/api/v1/accounts/{account_id}/reports/{REPORT_TYPE}"
        self._clock, self._sleep, self._should_stop = clock, sleep, should_stop
        self.started = 0  # runs this runner started
        self.reused = 0  # complete runs taken as they were

    # -- the whole wait -----------------------------------------------------------------
    def run(self, term_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The complete Report object of every term (raises ``ReportFailed``)."""
        return dict(self.each_complete(term_ids))

    def each_complete(self, term_ids: Sequence[int]) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(term id, complete Report)`` as each run completes (raises ``ReportFailed``).
        The caller's work between items pauses the polling of the others."""
        terms = list(dict.fromkeys(term_ids))
        history = self._history()
        now = self._clock()
        watches = {t: _Watch(t, self._reuse_or_start(t, history), now, now) for t in terms}
        begun, interval = now, self.settings.poll_initial_s
        pending = list(watches.values())
        while True:
            for w in pending:
                self._check(w)
            for w in [w for w in pending if w.report.get("status") == "complete"]:
                pending.remove(w)
                yield w.term_id, w.report
            if not pending:
                return
            waited = self._clock() - begun
            if waited > self.settings.max_wait_s:
                raise ReportFailed(
                    f"{REPORT_TYPE}: not complete after {waited:.0f} s "
                    f"(CANVAS.REPORTS.MAX_WAIT_SECONDS); waiting for terms "
                    f"{[w.term_id for w in pending]}"
                )
            if self._should_stop():
                raise ReportFailed(f"{REPORT_TYPE}: wait abandoned (the job is failing)")
            self._sleep(min(interval, self._soonest(pending)))
            interval = min(self.settings.poll_max_s, interval * 1.5)
            for w in pending:
                w.report = self._status(w.report)

    def _soonest(self, pending: Sequence[_Watch]) -> float:
        """Half the shortest time a pending run is expected to need still (from its
        progress so far), at least ``poll_initial_s``: polls come closer near the end
        instead of missing it by up to ``poll_max_s``."""
        now, soonest = self._clock(), self.settings.poll_max_s
        for w in pending:
            progress = float(w.report.get("progress") or 0)
            elapsed = now - w.started_at
            if 0 < progress < 100 and elapsed > 0:
                soonest = min(soonest, elapsed * (100 - progress) / progress / 2)
        return max(self.settings.poll_initial_s, soonest)

    # -- one term -----------------------------------------------------------------------
    def _check(self, w: _Watch) -> None:
        """Log progress, fail on error/deleted, restart a stalled run."""
        report, now = w.report, self._clock()
        status = str(report.get("status"))
        if status in FAILED:
            message = _message(report) or "no message"
            raise ReportFailed(
                f"{REPORT_TYPE} for term {w.term_id} (report {report.get('id')}) {status}: "
                f"{message}"
            )
        mark = (status, report.get("progress"), report.get("current_line"))
        if mark != w.mark:
            w.mark, w.moved_at = mark, now
            self.log.info(
                "Report %s term %s (id %s): %s, %s%% done, line %s",
                REPORT_TYPE,
                w.term_id,
                report.get("id"),
                status,
                report.get("progress", 0),
                f"{int(report.get('current_line') or 0):,}",
            )
            return
        if status == "complete" or now - w.moved_at < self.settings.stall_s:
            return
        if w.restarts >= self.settings.max_restarts:
            raise ReportFailed(
                f"{REPORT_TYPE} for term {w.term_id} (report {report.get('id')}) made no "
                f"progress for {now - w.moved_at:.0f} s, stuck at {report.get('progress')}% "
                f"({status}); gave up after {w.restarts} fresh start(s) "
                "(CANVAS.REPORTS.STALL_SECONDS, MAX_RESTARTS)"
            )
        w.restarts += 1
        self.log.warning(
            "Report %s term %s (id %s) made no progress for %.0f s (%s, %s%%): "
            "deleting it and starting afresh (%d of at most %d)",
            REPORT_TYPE,
            w.term_id,
            report.get("id"),
            now - w.moved_at,
            status,
            report.get("progress"),
            w.restarts,
            self.settings.max_restarts,
        )
        self._delete(report)
        w.report, w.mark = self._start(w.term_id), ()
        w.moved_at = w.started_at = self._clock()

    def _reuse_or_start(self, term_id: int, history: Sequence[dict[str, Any]]) -> dict[str, Any]:
        wanted = report_parameters(term_id)
        for report in history:  # newest first
            if not _same_parameters(report.get("parameters"), wanted):
                continue
            status = report.get("status")
            if status == "complete" and report.get("attachment"):
                self.reused += 1
                self.log.info(
                    "Report %s term %s: reusing complete run %s of %s",
                    REPORT_TYPE,
                    term_id,
                    report.get("id"),
                    report.get("ended_at") or report.get("created_at"),
                )
                return report
            if status in IN_PROGRESS:
                self.log.info(
                    "Report %s term %s: adopting run %s already %s",
                    REPORT_TYPE,
                    term_id,
                    report.get("id"),
                    status,
                )
                return report
        return self._start(term_id)

    # -- REST -----------------------------------------------------------------------------
    def _history(self) -> list[dict[str, Any]]:
        """Recent runs (newest first) young enough to reuse; older pages are not read.
        ``reuse_max_age_s`` 0 turns reuse (and adoption) off: nothing is read."""
        if self.settings.reuse_max_age_s <= 0:
            return []
        young: list[dict[str, Any]] = []
        for report in self.canvas.paginate(self.base):
            age = _age_s(report)
            if age is not None and age > self.settings.reuse_max_age_s:
                break
            young.append(report)
        return young

    def _start(self, term_id: int) -> dict[str, Any]:
        form = {f"parameters[{k}]": v for k, v in report_parameters(term_id).items()}
        report = self.canvas.post(self.base, data=form)
        self.started += 1
        self.log.info("Report %s term %s: started run %s", REPORT_TYPE, term_id, report.get("id"))
        return report

    def _status(self, report: dict[str, Any]) -> dict[str, Any]:
        return self.canvas.get(f"{self.base}/{report['id']}")

    def _delete(self, report: dict[str, Any]) -> None:
        """Best effort: a run Canvas will not delete is simply left behind."""
        try:
            self.canvas.delete(f"{self.base}/{report['id']}")
        except PermanentHttpError as exc:
            self.log.warning("Report %s: could not delete it (%s)", report.get("id"), exc)


def _same_parameters(got: Any, wanted: Mapping[str, str]) -> bool:
    if not isinstance(got, Mapping):
        return False
    return all(str(got.get(k, "")).lower() == v.lower() for k, v in wanted.items())


def _age_s(report: Mapping[str, Any]) -> float | None:
    """Seconds since the run ended (or was created); None when Canvas gave no time."""
    raw = report.get("ended_at") or report.get("created_at")
    if not raw:
        return None
    when = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (datetime.now(UTC) - when).total_seconds()


def _message(report: Mapping[str, Any]) -> str:
    params = report.get("parameters")
    extra = params.get("extra_text") if isinstance(params, Mapping) else None
    return str(report.get("message") or extra or "").strip()[:300]
