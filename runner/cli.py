"""The ``course-inventory`` command: run, status, migrate, create-db, check-config, sandbox, demo.

Exit codes: 0 success, 1 a job (or check) failed, 2 invalid config or usage.

Adding a command: write ``cmd_NAME(args) -> int`` (and, when it has options, a function
adding them to its parser) and list it in ``COMMANDS``; a command that parses its own
arguments goes into ``PASSTHROUGH`` instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from courseinv.config import Config, ConfigError, load_config
from courseinv.live_events.receiver_cli import add_events_parser
from courseinv.runner.jobs import job_names
from courseinv.runner.logs import LOG_FORMATS, redactor, setup_logging

if TYPE_CHECKING:  # SQLAlchemy loads only for the commands that use a database
    from sqlalchemy import Engine

log = logging.getLogger("course_inventory")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config, job_names=job_names())
    log_format = getattr(args, "log_format", None) or config.get("LOG_FORMAT", "text")
    setup_logging(config["LOG_LEVEL"], config.secrets, log_format)
    return config


def package_version() -> str:
    try:
        return version("course-inventory")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


# -- run ----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from courseinv.runner.run import (
        Terminated,
        prepare_database,
        run_and_report,
        summary_lines,
        terminate_on_signals,
    )

    config = _load(args)
    if args.jobs is not None:
        config = select_jobs(config, args.jobs)
    try:
        with terminate_on_signals():
            engine = prepare_database(config)
            try:
                if args.retry_failed:
                    failed = failed_jobs(engine, config.job_names)
                    if not failed:
                        print("Nothing to retry: the latest run of every selected job succeeded.")
                        return EXIT_OK
                    log.info("Retrying the jobs whose latest run failed: %s", ", ".join(failed))
                    config = dataclasses.replace(config, data=_with_jobs(config, failed))
                outcomes, report = run_and_report(config, engine, allow_shrink=args.allow_shrink)
            finally:
                engine.dispose()
    except Terminated as exc:
        print(f"course-inventory: {exc}", file=sys.stderr)
        return exc.exit_code
    print("\n".join(summary_lines(outcomes, report)), flush=True)
    return EXIT_OK if all(o.succeeded for o in outcomes) else EXIT_FAILED


def _with_jobs(config: Config, names: list[str]) -> MappingProxyType:
    return MappingProxyType({**config.data, "JOB_NAMES": tuple(names)})


def select_jobs(config: Config, text: str) -> Config:
    """``--jobs A,B`` instead of JOB_NAMES, validated like JOB_NAMES (names, sections)."""
    from courseinv.config.loader import JOB_REQUIRES

    names = [n.strip().upper() for n in text.split(",") if n.strip()]
    known = job_names()
    problems = [
        f"--jobs: unknown job {n!r}; expected one of {', '.join(known)}"
        for n in names
        if n not in known
    ]
    if not names:
        problems.append(f"--jobs: expected job names separated by commas, e.g. {known[0]}")
    for name in dict.fromkeys(names):
        problems += [
            f"{section}: required by job {name} (--jobs) but missing"
            for section in JOB_REQUIRES.get(name, ())
            if section not in config
        ]
    if problems:
        raise ConfigError(config.path, problems)
    return dataclasses.replace(config, data=_with_jobs(config, list(dict.fromkeys(names))))


def failed_jobs(engine: Engine, names: list[str]) -> list[str]:
    """Those of ``names`` whose latest recorded run failed (or was killed: abandoned)."""
    from courseinv.runner.status import latest_per_job

    latest = latest_per_job(engine, names)
    return [n for n in names if n in latest and latest[n].status in ("failed", "abandoned")]


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--jobs",
        metavar="A,B",
        help="run these jobs (comma-separated, in this order) instead of the config's "
        f"JOB_NAMES; known: {', '.join(job_names())}",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="run only those of the selected jobs whose latest run failed (exit 0 when none)",
    )
    p.add_argument(
        "--allow-shrink",
        action="store_true",
        help="publish tables even if they become empty or lose more rows than "
        "MAX_SHRINK_FRACTION (this run only)",
    )


# -- status -------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from courseinv.db.engine import describe, output_engine
    from courseinv.runner.status import (
        build_status,
        parse_duration,
        parse_since,
        render_text,
    )

    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        max_age = parse_duration(args.max_age) if args.max_age else None
        since = parse_since(args.since, now) if args.since else None
    except ValueError as exc:
        print(f"course-inventory status: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    config = _load(args)
    engine = output_engine(config, config.data_dir())
    try:
        status = build_status(
            engine,
            database=describe(engine),
            jobs=config.job_names,
            now=now,
            since=since,
            limit=args.limit,
            max_age=max_age,
            reports_dir=config.data_dir() / "reports",
        )
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(status.as_json(), indent=2))
    else:
        print(render_text(status))
    return EXIT_FAILED if status.problems else EXIT_OK


def add_status_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    p.add_argument(
        "--since", metavar="WHEN", help="list runs started since: 7d, 12h, or a UTC date/time"
    )
    p.add_argument(
        "--limit", type=int, default=10, metavar="N", help="list at most N recent runs (10)"
    )
    p.add_argument(
        "--max-age",
        metavar="AGE",
        help="exit 1 also when a configured job's latest run started longer ago than AGE "
        "(90m, 26h, 2d) or it never ran",
    )


# -- migrate, create-db, check-config -------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    from courseinv.db.engine import describe, output_engine, wait_for_db
    from courseinv.db.migrate import migrate

    config = _load(args)
    engine = output_engine(config, config.data_dir())
    wait_for_db(engine, float(config["DB_WAIT_SECONDS"]))
    applied = migrate(engine, break_lock=args.break_lock)
    print(f"{describe(engine)}: applied {len(applied)} migration(s)")
    return EXIT_OK


def cmd_create_db(args: argparse.Namespace) -> int:
    from courseinv.db.engine import describe, output_engine, wait_for_db
    from courseinv.db.migrate import reset

    config = _load(args)
    engine = output_engine(config, config.data_dir())
    if not args.yes:
        if not sys.stdin.isatty():
            print(
                f"course-inventory create-db: would empty every table in {describe(engine)}; "
                "there is no terminal to ask for confirmation: pass --yes",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        answer = input(f"Empty every course-inventory table in {describe(engine)}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing changed.")
            return EXIT_FAILED
    wait_for_db(engine, float(config["DB_WAIT_SECONDS"]))
    reset(engine)
    print(f"{describe(engine)}: tables emptied and migrations re-applied")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from courseinv.runner.checks import run_checks

    config = _load(args)
    print(f"config {config.path}: ok", flush=True)
    results = run_checks(config, report=lambda line: print(line, flush=True))
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


# -- passthrough commands -----------------------------------------------------------------


SANDBOX_EXTRA_HINT = (
    "the sandbox is a development extra: install it with "
    "pip install 'course-inventory[sandbox]' (missing module: {module})"
)


def _sandbox_entry(module: str, func: str) -> Callable[[list[str]], int] | None:
    """Import a sandbox entry point; None (after a one-line hint) when the extra is missing."""
    import importlib

    try:
        return getattr(importlib.import_module(module), func)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if not missing or missing == "courseinv":
            raise  # a broken installation, not a missing extra
        print(f"course-inventory: {SANDBOX_EXTRA_HINT.format(module=missing)}", file=sys.stderr)
        return None


def cmd_sandbox(argv: list[str]) -> int:
    sandbox_main = _sandbox_entry("courseinv.sandbox.cli", "main")
    if sandbox_main is None:
        return EXIT_CONFIG
    setup_logging("INFO")
    return sandbox_main(argv)


def cmd_demo(argv: list[str]) -> int:
    demo_main = _sandbox_entry("courseinv.sandbox.demo", "demo_main")
    return EXIT_CONFIG if demo_main is None else demo_main(argv)


# Subcommands with their own argument parsers: everything after the name is theirs.
PASSTHROUGH: dict[str, Callable[[list[str]], int]] = {"sandbox": cmd_sandbox, "demo": cmd_demo}
PASSTHROUGH_HELP = {
    "sandbox": "sandbox serve [...]: the simulated Canvas (development only)",
    "demo": "run every job against the sandbox into a local SQLite database",
}

Command = tuple[
    Callable[[argparse.Namespace], int], str, Callable[[argparse.ArgumentParser], None] | None
]


def _add_migrate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--break-lock", action="store_true", help="remove a stale yoyo lock")


def _add_create_db_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")


# name -> (function, help, adds its options)
COMMANDS: dict[str, Command] = {
    "run": (
        cmd_run,
        "validate the config, migrate, run JOB_NAMES (or --jobs), write the run report",
        add_run_arguments,
    ),
    "status": (
        cmd_status,
        "latest runs per job and data source freshness; exit 1 when a job's latest run failed",
        add_status_arguments,
    ),
    "migrate": (cmd_migrate, "apply pending schema migrations", _add_migrate_arguments),
    "create-db": (
        cmd_create_db,
        "empty the application tables and re-apply migrations",
        _add_create_db_arguments,
    ),
    "check-config": (
        cmd_check_config,
        "validate the config and check every source and the database run will use",
        None,
    ),
}


def _add_common(p: argparse.ArgumentParser, default: object) -> None:
    """--config and --log-format, accepted before or after the command name."""
    p.add_argument(
        "--config",
        type=Path,
        default=default,
        help=("config file (default: $ENV_DIR/$ENV_FILE)"),
    )
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=default,
        help=(
            "log lines as text (for people) or one JSON object per line (for log "
            "shippers); default: LOG_FORMAT from the config, else text"
        ),
    )


EPILOGS = {
    "run": "Logs go to stderr; at the end a summary (one line per job: outcome, rows, "
    "duration, warnings) and the path of the HTML run report (DATA_DIR/reports/) go to "
    "stdout. Exit codes: 0 every job succeeded, 1 a job failed (the others still ran) or "
    "the database was unreachable, 2 invalid config or options.",
    "status": "Exit codes: 0 healthy, 1 a configured job's latest run failed (or is older "
    "than --max-age), 2 invalid config or options.",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course-inventory",
        description="Build a reporting database of Canvas course inventory and tool usage.",
        epilog="Exit codes: 0 success, 1 a job or check failed, 2 invalid config or usage.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    _add_common(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (func, help_text, add_arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOGS.get(name))
        _add_common(p, argparse.SUPPRESS)
        p.set_defaults(func=func)
        if add_arguments is not None:
            add_arguments(p)
    add_events_parser(sub)  # events serve: the HTTPS Live Events receiver
    for name, help_text in PASSTHROUGH_HELP.items():
        sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] in PASSTHROUGH:
            return PASSTHROUGH[argv[0]](argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except ConfigError as exc:
        print(f"course-inventory: invalid configuration ({exc.path}):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("course-inventory: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # startup failures: database down, stale lock, ...
        message = redactor()(str(exc).strip() or type(exc).__name__)
        logging.getLogger("course_inventory").debug("startup failure", exc_info=True)
        print(f"course-inventory: {type(exc).__name__}: {message}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
