"""Soak: kill COURSE_INVENTORY and MIVIDEO runs at random moments, then look for damage.

Usage: python benchmarks/soak.py [--db mariadb,postgres,sqlite] [--kills 20] [--minutes 8]
           [--seed 1] [--courses 40]

Per database: the Canvas, BigQuery and Kaltura fakes serve a sandbox institution; every
round starts ``course-inventory run --allow-shrink`` children (COURSE_INVENTORY with one
or both terms, so consecutive publishes differ; MIVIDEO, sometimes two at once; sometimes
both jobs side by side) and kills one at a random moment of its calibrated run time
(SIGKILL two times in three, else SIGTERM). After every round:

* mixes     COURSE_INVENTORY tables that are not all from one publish (empty, terms A,
            terms A+B); MIVIDEO tables holding part of a load.
* doubles   MIVIDEO (hour, course) counts above the ground truth.

At the end one clean run of each job (JOB_LOCK_WAIT_SECONDS 30), then:

* stuck locks   a job lock that cannot be taken at once, or a clean run that fails.
* leftovers     staging/old tables, bulk-load files in the children's TMPDIR, ``running``
                job_run rows.
* final         the tables equal the ground truth.

Bounded by ``--kills`` per database and ``--minutes`` per database.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from courseinv.db.engine import make_engine  # noqa: E402
from courseinv.db.locks import job_lock  # noqa: E402
from courseinv.sandbox.canvas import CanvasServer  # noqa: E402
from courseinv.sandbox.institution import Institution, InstitutionSpec  # noqa: E402
from courseinv.sandbox.mivideo import MivideoSandbox, start_mivideo_sandbox  # noqa: E402
from sqlalchemy import inspect, text  # noqa: E402

CI_KEYS = {
    "term": "canvas_id",
    "account": "canvas_id",
    "course": "canvas_id",
    "course_section": "canvas_id",
    "enrollment": "canvas_id",
    "canvas_course_usage": "course_id, date",
}
MV_COURSES = [101, 102, 3456, 77_001, 12_345_678_901]


@dataclass
class Tally:
    db: str
    kills: Counter = field(default_factory=Counter)  # SIGKILL / SIGTERM
    runs: int = 0
    exit_codes: Counter = field(default_factory=Counter)
    mixes: int = 0
    doubles: int = 0
    partial_mivideo: int = 0
    stuck_locks: int = 0
    leftover_tables: list[str] = field(default_factory=list)
    leftover_files: int = 0
    running_rows: int = 0
    final_ok: bool = False
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0


@dataclass
class Run:
    child: subprocess.Popen
    log: Path

    def wait_started(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.child.poll() is None:
            if "Starting job" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.05)


class Soak:
    def __init__(self, kind: str, url: str, work: Path, canvas: CanvasServer,
                 inst: Institution, mv: MivideoSandbox, rng: random.Random) -> None:  # fmt: skip
        self.kind, self.url, self.work, self.rng = kind, url, work, rng
        self.engine = make_engine(url)
        self.tmp = work / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        terms = inst.term_ids
        self.configs = {
            "A": self._config("ci_a", ["COURSE_INVENTORY"], canvas, terms[:1], mv),
            "AB": self._config("ci_ab", ["COURSE_INVENTORY"], canvas, terms, mv),
            "MV": self._config("mv", ["MIVIDEO"], canvas, terms, mv),
        }
        self.ci_truth = {
            "A": _ci_keys_of(inst.expected_course_inventory(terms[:1], udw=False)),
            "AB": _ci_keys_of(inst.expected_course_inventory(terms, udw=False)),
            "empty": {name: set() for name in CI_KEYS},
        }
        hourly = mv.expected_tables()["mivideo_media_started_hourly"]
        self.mv_truth = {
            (str(h)[:13], int(c)): int(n)
            for h, c, n in zip(
                hourly["event_hour_utc"], hourly["course_id"], hourly["event_count"], strict=True
            )
        }
        self.tally = Tally(kind)
        self.durations: dict[str, float] = {}

    def _config(self, name: str, jobs: list[str], canvas: CanvasServer, terms: list[int],
                mv: MivideoSandbox) -> Path:  # fmt: skip
        config = {
            "JOB_NAMES": jobs,
            "LOG_LEVEL": "INFO",
            "DATA_DIR": str(self.work / "data"),
            "CANVAS": {"CANVAS_URL": canvas.url, "CANVAS_TOKEN": canvas.token,
                       "CANVAS_ACCOUNT_ID": canvas.account_id, "CANVAS_TERM_IDS": terms},
            "MIVIDEO": mv.config,
            "INVENTORY_DB": {"url": self.url},
        }  # fmt: skip
        path = mv.key_path.parent / f"{name}.hjson"
        path.write_text(json.dumps(config), encoding="utf-8")
        return path

    # -- children ---------------------------------------------------------------------

    def start(self, config: str, lock_wait: float = 120) -> Run:
        env = {**os.environ, "TMPDIR": str(self.tmp), "JOB_LOCK_WAIT_SECONDS": str(lock_wait)}
        self.tally.runs += 1
        log_path = self.work / f"run{self.tally.runs:03d}.log"
        cmd = [sys.executable, "-m", "courseinv.runner.cli", "run", "--allow-shrink",
               "--config", str(self.configs[config])]  # fmt: skip
        with open(log_path, "w") as log:
            child = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, cwd=ROOT)
        return Run(child, log_path)

    def finish(self, run: Run, timeout: float = 600) -> int:
        code = run.child.wait(timeout=timeout)
        self.tally.exit_codes[code] += 1
        return code

    def calibrate(self) -> None:
        """How long each job runs once started (imports and migrations excluded)."""
        for config in ("AB", "MV", "A"):
            run = self.start(config)
            run.wait_started()
            started = time.monotonic()
            code = self.finish(run)
            self.durations[config] = time.monotonic() - started
            if code != 0:
                raise SystemExit(f"{self.kind}: calibration run {config} exited {code}")

    def kill_at_random(self, run: Run, config: str) -> None:
        """Kill at a random moment of the job's run (or while it waits for its lock)."""
        run.wait_started()
        time.sleep(self.rng.uniform(0, 1.1 * self.durations[config]))
        if run.child.poll() is not None:
            self.finish(run)
            return
        sig = signal.SIGKILL if self.rng.random() < 2 / 3 else signal.SIGTERM
        run.child.send_signal(sig)
        self.tally.kills[sig.name] += 1
        self.finish(run, timeout=120)

    def round(self) -> None:
        scenario = self.rng.choice(["ci", "ci", "mv", "mv_double", "side_by_side"])
        if scenario == "ci":
            config = self.rng.choice(["A", "AB"])
            self.kill_at_random(self.start(config), config)
        elif scenario == "mv":
            self.kill_at_random(self.start("MV"), "MV")
        elif scenario == "mv_double":
            survivor = self.start("MV")
            self.kill_at_random(self.start("MV"), "MV")
            self.finish(survivor)
        else:
            config = self.rng.choice(["A", "AB"])
            mv = self.start("MV")
            self.kill_at_random(self.start(config), config)
            self.finish(mv)
        self.check()

    # -- checks ---------------------------------------------------------------------------

    def check(self) -> None:
        stored = self._ci_keys()
        if not any(stored == truth for truth in self.ci_truth.values()):
            self.tally.mixes += 1
        hourly = self._mv_counts()
        self.tally.doubles += sum(1 for key, n in hourly.items() if n > self.mv_truth.get(key, 0))
        if hourly and hourly != self.mv_truth:
            self.tally.partial_mivideo += 1

    def _ci_keys(self) -> dict[str, set]:
        out = {}
        with self.engine.connect() as conn:
            for name, key in CI_KEYS.items():
                rows = conn.execute(text(f"SELECT {key} FROM {name}")).all()
                out[name] = {tuple(str(v)[:10] if name == "canvas_course_usage" else v
                                   for v in row) for row in rows}  # fmt: skip
        return out

    def _mv_counts(self) -> dict[tuple[str, int], int]:
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT event_hour_utc, course_id, event_count FROM mivideo_media_started_hourly"
            )).all()  # fmt: skip
        counts: Counter = Counter()
        for hour, course, n in rows:
            counts[(str(hour)[:13], int(course))] += int(n)
        return dict(counts)

    def final(self) -> None:
        """Clean runs, then stuck locks, leftovers and ground truth."""
        for job in ("COURSE_INVENTORY", "MIVIDEO"):
            try:
                with job_lock(self.engine, job, 0, lambda: "?"):
                    pass
            except Exception:
                self.tally.stuck_locks += 1
        codes = [self.finish(self.start(c, lock_wait=30)) for c in ("AB", "MV")]
        self.tally.stuck_locks += sum(code != 0 for code in codes)
        names = inspect(self.engine).get_table_names()
        self.tally.leftover_tables = sorted(n for n in names if n.endswith(("__new", "__old")))
        self.tally.leftover_files = sum(1 for p in self.tmp.rglob("*") if p.is_file())
        with self.engine.connect() as conn:
            self.tally.running_rows = conn.execute(
                text("SELECT COUNT(*) FROM job_run WHERE status = 'running'")
            ).scalar()
            for status, n in conn.execute(
                text("SELECT status, COUNT(*) FROM job_run GROUP BY status")
            ).all():
                self.tally.statuses[status] = n
        self.tally.final_ok = (
            self._ci_keys() == self.ci_truth["AB"] and self._mv_counts() == self.mv_truth
        )


def _ci_keys_of(frames: dict[str, Any]) -> dict[str, set]:
    out = {}
    for name, key in CI_KEYS.items():
        columns = [c.strip() for c in key.split(",")]
        values = frames[name][columns].itertuples(index=False, name=None)
        out[name] = {tuple(str(v)[:10] if name == "canvas_course_usage" else v for v in row)
                     for row in values}  # fmt: skip
    return out


def output_database(kind: str, work: Path) -> tuple[str, Callable[[], None]]:
    if kind == "sqlite":
        return f"sqlite:///{work / 'soak.sqlite3'}", lambda: None
    from tests.conftest import create_database, drop_database

    url = create_database(kind)
    return url, lambda: drop_database(url)


def soak_one(kind: str, args: argparse.Namespace, canvas: CanvasServer, inst: Institution,
             root: Path) -> Tally:  # fmt: skip
    work = root / kind
    env_dir = work / "env"
    env_dir.mkdir(parents=True)
    url, drop = output_database(kind, work)
    started = time.monotonic()
    try:
        with start_mivideo_sandbox(args.seed, MV_COURSES, env_dir, today=date(2026, 3, 12),
                                   days=3, events_per_day=200, media_per_day=40) as mv:  # fmt: skip
            soak = Soak(kind, url, work, canvas, inst, mv, random.Random(args.seed))
            soak.calibrate()
            print(f"{kind}: calibrated " + ", ".join(f"{k} {v:.1f} s" for k, v in soak.durations.items()),
                  flush=True)  # fmt: skip
            deadline = started + args.minutes * 60
            while sum(soak.tally.kills.values()) < args.kills and time.monotonic() < deadline:
                soak.round()
            soak.final()
            soak.engine.dispose()
    finally:
        drop()
    soak.tally.seconds = time.monotonic() - started
    return soak.tally


def report(tallies: list[Tally]) -> None:
    header = ("db", "kills (KILL/TERM)", "runs", "mixes", "doubles", "partial MV", "stuck locks",
              "leftover tables", "leftover files", "running rows", "final = truth", "seconds")  # fmt: skip
    print("\n" + " | ".join(header))
    print(" | ".join("---" for _ in header))
    for t in tallies:
        kills = f"{sum(t.kills.values())} ({t.kills['SIGKILL']}/{t.kills['SIGTERM']})"
        print(" | ".join(map(str, (
            t.db, kills, t.runs, t.mixes, t.doubles, t.partial_mivideo, t.stuck_locks,
            len(t.leftover_tables), t.leftover_files, t.running_rows, t.final_ok, f"{t.seconds:.0f}",
        ))))  # fmt: skip
    for t in tallies:
        print(
            f"{t.db}: exit codes {dict(t.exit_codes)}; job_run statuses {dict(t.statuses)}"
            + (f"; leftover tables {t.leftover_tables}" if t.leftover_tables else "")
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="mariadb,postgres,sqlite")
    parser.add_argument("--kills", type=int, default=20, help="kills per database")
    parser.add_argument("--minutes", type=float, default=8, help="time bound per database")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--courses", type=int, default=40, help="courses per term (2 terms)")
    args = parser.parse_args()
    inst = Institution.generate(InstitutionSpec(seed=args.seed, terms=2,
                                                courses_per_term=args.courses))  # fmt: skip
    tallies = []
    with tempfile.TemporaryDirectory(prefix="soak-") as root, CanvasServer(inst) as canvas:
        for kind in args.db.split(","):
            tallies.append(soak_one(kind, args, canvas, inst, Path(root)))
    report(tallies)
    bad = sum(t.mixes + t.doubles + t.stuck_locks + len(t.leftover_tables) + t.leftover_files
              + t.running_rows + (not t.final_ok) for t in tallies)  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
