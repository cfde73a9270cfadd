"""The ``course-inventory`` command: run, migrate, create-db, check-config, sandbox, demo.

Exit codes: 0 success, 1 a job (or check) failed, 2 invalid config or usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from courseinv.config import Config, ConfigError, load_config
from courseinv.runner.jobs import job_names
from courseinv.runner.logs import redactor, setup_logging

log = logging.getLogger("course_inventory")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config, job_names=job_names())
    setup_logging(config["LOG_LEVEL"], config.secrets)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from courseinv.runner.run import prepare_database, run_jobs

    config = _load(args)
    engine = prepare_database(config)
    try:
        outcomes = run_jobs(config, engine)
    finally:
        engine.dispose()
    return EXIT_OK if all(o.succeeded for o in outcomes) else EXIT_FAILED


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
    print(f"config {config.path}: ok")
    results = run_checks(config)
    for name, ok, detail in results:
        print(f"{name}: {'ok' if ok else 'failed'}{' - ' + detail if detail else ''}")
    return EXIT_OK if all(ok for _, ok, _ in results) else EXIT_FAILED


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course-inventory",
        description="Build a reporting database of Canvas course inventory and tool usage.",
    )
    parser.add_argument(
        "--config", type=Path, help="config file (default: $ENV_DIR/$ENV_FILE)", default=None
    )
    sub = parser.add_subparsers(dest="command", required=True)
    commands: list[tuple[str, Callable[[argparse.Namespace], int], str]] = [
        ("run", cmd_run, "validate the config, migrate, run JOB_NAMES"),
        ("migrate", cmd_migrate, "apply pending schema migrations"),
        ("create-db", cmd_create_db, "empty the application tables and re-apply migrations"),
        ("check-config", cmd_check_config, "validate the config and try each connection"),
    ]
    for name, func, help_text in commands:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.set_defaults(func=func)
        if name == "migrate":
            p.add_argument("--break-lock", action="store_true", help="remove a stale yoyo lock")
        if name == "create-db":
            p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    sub.add_parser("sandbox", help="sandbox serve [...]: the simulated Canvas (development only)")
    sub.add_parser("demo", help="run every job against the sandbox into a local SQLite database")
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
