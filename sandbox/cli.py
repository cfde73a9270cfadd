"""``course-inventory sandbox serve``: run the Canvas sandbox by hand (development only).

    course-inventory sandbox serve [--seed N] [--courses N] [--terms N]
        [--latency-ms X] [--jitter-ms Y] [--faults "5xx=0.1,truncated=0.05,reset=0.02"]
        [--throttle-capacity N] [--no-throttle] [--port N] [--token T] [--udw-sqlite PATH]

Prints the URL, token, account id and term ids, then serves until Ctrl-C (or SIGTERM).
Also runnable as ``python -m courseinv.sandbox.cli serve ...``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from courseinv.sandbox.canvas import CanvasServer, ThrottleSpec
from courseinv.sandbox.httpserver import Faults, Latency
from courseinv.sandbox.institution import Institution, InstitutionSpec

BANNER = (
    "DEVELOPMENT SANDBOX: a simulated Canvas LMS with invented data, for development, "
    "tests and demos only. Never point production jobs or real tokens at it."
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="course-inventory sandbox serve",
        description="Serve a simulated institution through a fake Canvas API on 127.0.0.1.",
    )
    p.add_argument("--seed", type=int, default=0, help="institution seed (default 0)")
    p.add_argument("--courses", type=int, default=200, help="number of courses (default 200)")
    p.add_argument("--terms", type=int, default=2, help="number of terms (default 2)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency per request")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="extra random latency 0..Y")
    p.add_argument("--faults", default="", help='fault rates, e.g. "5xx=0.1,truncated=0.05"')
    p.add_argument("--throttle-capacity", type=float, default=700.0, help="bucket high-water")
    p.add_argument("--no-throttle", action="store_true", help="disable throttling")
    p.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    p.add_argument("--token", default=None, help="fixed API token (default: random)")
    p.add_argument("--udw-sqlite", type=Path, default=None, help="also seed a UDW SQLite file")
    return p


def serve_main(argv: list[str]) -> int:
    """Entry point of ``sandbox serve``; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.courses < 1 or args.terms < 1:
        parser.error("--courses and --terms must be at least 1")
    try:
        faults = Faults.parse(args.faults)
    except ValueError as exc:
        parser.error(f"--faults: {exc}")
    institution = Institution.generate(
        InstitutionSpec.sized(args.courses, terms=args.terms, seed=args.seed)
    )
    throttle = None if args.no_throttle else ThrottleSpec(capacity=args.throttle_capacity)
    server = CanvasServer(
        institution,
        token=args.token,
        latency=Latency(args.latency_ms, args.jitter_ms),
        faults=faults,
        throttle=throttle,
        seed=args.seed,
        port=args.port,
    )
    try:
        server.start()
    except OSError as exc:
        print(f"error: cannot listen on port {args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Explicit handlers: SIGINT may be inherited as ignored (background jobs).
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        _print_summary(server, institution, args.udw_sqlite)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(f"stopped; requests by endpoint: {server.log.by_endpoint()}", flush=True)
    return 0


def _print_summary(server: CanvasServer, inst: Institution, udw_path: Path | None) -> None:
    kept = inst.kept_courses(inst.term_ids)
    lines = [
        BANNER,
        f"Canvas URL:  {server.url}",
        f"Token:       {server.token}",
        f"Account id:  {server.account_id}",
        f"Term ids:    {', '.join(str(t) for t in inst.term_ids)}",
        f"Institution: {len(inst.courses)} courses ({len(kept)} with students), "
        f"{len(inst.sections)} sections, {len(inst.enrollments)} enrollments",
    ]
    t = server.throttle
    lines.append(
        "Throttle:    off"
        if t is None
        else f"Throttle:    capacity {t.capacity:g}, leak {t.leak_per_s:g}/s, "
        f"up-front {t.up_front:g}, cost {t.cost:g} (GraphQL {t.cost_of('graphql'):g})"
    )
    if udw_path is not None:
        from courseinv.sandbox.udw import seed_udw  # SQLAlchemy only when asked for

        udw_path.parent.mkdir(parents=True, exist_ok=True)
        counts = seed_udw(inst, f"sqlite:///{udw_path.resolve()}")
        lines.append(f"UDW SQLite:  {udw_path} ({counts['course_section_dim']} sections)")
    lines += [
        f'Try:         curl -i -H "Authorization: Bearer {server.token}" '
        f'"{server.url}/api/v1/accounts/{server.account_id}/courses'
        f'?enrollment_term_id={inst.term_ids[0]}&include[]=total_students&per_page=5"',
        "Serving until Ctrl-C.",
    ]
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if not argv or argv[0] != "serve":
        print(USAGE, file=sys.stderr)
        return 2
    return serve_main(argv[1:])


USAGE = f"""usage: course-inventory sandbox serve [options]

{BANNER}

commands:
  serve    serve a simulated institution through a fake Canvas API on 127.0.0.1
           (course-inventory sandbox serve --help lists its options)"""


if __name__ == "__main__":
    sys.exit(main())
