"""Replace 1,000,000 enrollment rows: the project vs pandas to_sql vs the physical floor.

Usage: python benchmarks/bench_publish.py [--rows 1000000] [--db mariadb,postgres]

For each database a fresh database is created with the project's schema, 20,000 courses
and sections, and ``enrollment`` already holding ``rows`` rows. Each method then runs in
its own process (so peak memory is its own), one after the other, in the same run:

* project  ``db.publish.replace_tables`` into ``enrollment`` (staging + bulk load +
           atomic swap, foreign keys checked).
* to_sql   pandas ``DataFrame.to_sql(index=False)`` with default settings into an empty
           pre-created copy of the table (the naive baseline; not even atomic).
* floor    the reference floor (shared/reference/db-load-floors.md): MariaDB, pandas
           ``to_csv`` + ``LOAD DATA LOCAL INFILE`` into a staging copy without foreign keys +
           ``RENAME``/``DROP``; PostgreSQL, an in-memory CSV + ``COPY`` into a staging copy +
           rename/drop in one transaction.

Peak RSS is measured after the DataFrame is built (``clear_refs`` resets the peak), so it
shows what the load itself adds. Ratios are per run: this machine is noisy.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from courseinv.db.engine import make_engine  # noqa: E402
from courseinv.db.migrate import migrate  # noqa: E402
from courseinv.db.publish import replace_tables  # noqa: E402

from tests.conftest import create_database, drop_database  # noqa: E402

COURSES = 20_000
METHODS = ("floor", "project", "to_sql")


def enrollments(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    course = rng.integers(0, COURSES, rows) + 17_000_000_000
    return pd.DataFrame(
        {
            "canvas_id": 17_000_000_000 + np.cumsum(rng.integers(1, 4, rows)),
            "course_id": course,
            "course_section_id": course + 1_000_000,
            "user_id": rng.integers(1, 10**9, rows) + 17_000_000_000,
            "workflow_state": rng.choice(["active", "invited", "completed", "inactive"], rows),
            "role_type": rng.choice(
                ["StudentEnrollment", "TeacherEnrollment", "TaEnrollment"], rows
            ),
        }
    )


def parents() -> dict[str, pd.DataFrame]:
    ids = np.arange(COURSES, dtype="int64") + 17_000_000_000
    return {
        "term": pd.DataFrame({"canvas_id": [1], "name": ["Fall"]}),
        "account": pd.DataFrame({"canvas_id": [1], "name": ["Root"]}),
        "course": pd.DataFrame(
            {
                "canvas_id": ids,
                "name": "Course",
                "account_id": 1,
                "term_id": 1,
                "workflow_state": "available",
            }
        ),
        "course_section": pd.DataFrame(
            {"canvas_id": ids + 1_000_000, "name": "Section", "course_id": ids}
        ),
        "canvas_course_usage": pd.DataFrame(
            columns=["course_id", "date", "views", "participations"]
        ),
    }


def setup(kind: str, rows: int) -> str:
    url = create_database(kind)
    engine = make_engine(url)
    migrate(engine)
    replace_tables(engine, {**parents(), "enrollment": enrollments(rows, 1)})
    with engine.begin() as conn:
        if kind == "mariadb":
            conn.execute(text("CREATE TABLE enrollment_copy LIKE enrollment"))  # no FKs
        else:
            conn.execute(text("CREATE TABLE enrollment_copy (LIKE enrollment INCLUDING ALL)"))
    engine.dispose()
    return url


# -- workers (each in its own process) -------------------------------------------


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def floor_mariadb(engine, df: pd.DataFrame) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        df.to_csv(f, index=False, header=False)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS enrollment_stage")
            conn.exec_driver_sql("CREATE TABLE enrollment_stage LIKE enrollment_copy")
            conn.exec_driver_sql(
                "LOAD DATA LOCAL INFILE %s INTO TABLE enrollment_stage FIELDS TERMINATED BY ',' "
                "OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n'",
                (f.name,),
            )
            conn.commit()
            conn.exec_driver_sql(
                "RENAME TABLE enrollment_copy TO enrollment_old, enrollment_stage TO enrollment_copy"
            )
            conn.exec_driver_sql("DROP TABLE enrollment_old")
            conn.commit()
    finally:
        os.unlink(f.name)


def floor_postgres(engine, df: pd.DataFrame) -> None:
    buffer = io.StringIO()
    df.to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS enrollment_stage")
        conn.exec_driver_sql("CREATE TABLE enrollment_stage (LIKE enrollment_copy INCLUDING ALL)")
        cursor = conn.connection.dbapi_connection.cursor()
        cursor.copy_expert("COPY enrollment_stage FROM STDIN WITH (FORMAT csv)", buffer)
        conn.exec_driver_sql("ALTER TABLE enrollment_copy RENAME TO enrollment_old")
        conn.exec_driver_sql("ALTER TABLE enrollment_stage RENAME TO enrollment_copy")
        conn.exec_driver_sql("DROP TABLE enrollment_old")


def worker(method: str, url: str, rows: int) -> None:
    engine = make_engine(url)
    df = enrollments(rows, 2)
    base = rss_mb("VmRSS")
    reset_peak()
    started = time.perf_counter()
    if method == "project":
        replace_tables(engine, {"enrollment": df})
    elif method == "to_sql":
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM enrollment_copy")
        df.to_sql("enrollment_copy", engine, if_exists="append", index=False)
    elif engine.dialect.name == "mysql":
        floor_mariadb(engine, df)
    else:
        floor_postgres(engine, df)
    seconds = time.perf_counter() - started
    table = "enrollment" if method == "project" else "enrollment_copy"
    with engine.connect() as conn:
        count = conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()
    assert count == rows, (method, count)
    print(json.dumps({"seconds": seconds, "df_mb": base, "peak_mb": rss_mb("VmHWM")}))


def run_method(method: str, url: str, rows: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", method, url, str(rows)],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"{method} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", default="mariadb,postgres")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return
    print(f"Replacing {args.rows:,} enrollment rows over {args.rows:,} (one process per method)\n")
    print(
        f"{'database':<10} {'method':<8} {'seconds':>8} {'rows/s':>9} {'vs floor':>9} {'vs to_sql':>10} {'peak MB':>8} {'+MB':>6}"
    )
    for kind in args.db.split(","):
        url = setup(kind, args.rows)
        try:
            results = {m: run_method(m, url, args.rows) for m in METHODS}
        finally:
            drop_database(url)
        for method, r in results.items():
            print(
                f"{kind:<10} {method:<8} {r['seconds']:>8.2f} {args.rows / r['seconds']:>9,.0f} "
                f"{r['seconds'] / results['floor']['seconds']:>8.2f}x "
                f"{results['to_sql']['seconds'] / r['seconds']:>9.2f}x "
                f"{r['peak_mb']:>8.0f} {r['peak_mb'] - r['df_mb']:>6.0f}"
            )


if __name__ == "__main__":
    main()
