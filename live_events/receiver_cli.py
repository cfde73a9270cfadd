"""``course-inventory events serve``: run the HTTPS Live Events receiver.

    course-inventory events serve [--config PATH] [--listen HOST:PORT]
        [--max-body-bytes N] [--max-batch N] [--writers N]

Reads LIVE_EVENTS.JWKS_URL, REQUIRE_SIGNED and LISTEN from the config, waits for the
database and applies pending migrations (as ``run`` does), then serves until SIGTERM or
Ctrl-C, finishing the requests in flight. Run it behind the institution's TLS
terminator (an OpenShift Route, an ingress, a load balancer): it speaks plain HTTP.

This module imports only the standard library at import time; the server and its
dependencies load when the command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from courseinv.live_events.receiver import Receiver, ReceiverOptions
    from sqlalchemy import Engine

DEFAULT_LISTEN = "0.0.0.0:8080"
CANVAS_JWKS_URL = "https://8axpcl50e4.execute-api.us-east-1.amazonaws.com/main/jwks"


def add_events_parser(sub: Any) -> None:
    """Register ``events serve`` on the main parser's subcommands."""
    events = sub.add_parser("events", help="Canvas Live Events: `events serve` (HTTPS receiver)")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    serve = events_sub.add_parser("serve", help="receive Canvas Live Events over HTTP(S)")
    serve.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    serve.add_argument(
        "--listen", help=f"HOST:PORT (default LIVE_EVENTS.LISTEN or {DEFAULT_LISTEN})"
    )
    serve.add_argument("--max-body-bytes", type=_positive, default=256 * 1024,
                       help="larger bodies get 413 (default 262144)")
    serve.add_argument("--max-batch", type=_positive, default=500,
                       help="most events in one transaction (default 500)")
    serve.add_argument("--writers", type=_positive, default=1,
                       help="transactions in flight at once, per process (default 1)")
    serve.add_argument("--processes", type=_positive, default=1,
                       help="server processes sharing the port (default 1; one per core)")
    serve.set_defaults(func=cmd_events_serve)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"LISTEN must be HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def cmd_events_serve(args: argparse.Namespace) -> int:
    from courseinv.config import ConfigError, load_config
    from courseinv.runner.jobs import job_names
    from courseinv.runner.logs import setup_logging
    from courseinv.runner.run import prepare_database

    config = load_config(args.config, job_names=job_names())
    setup_logging(config["LOG_LEVEL"], config.secrets)
    section = dict(config.get("LIVE_EVENTS") or {})
    try:
        host, port = parse_listen(args.listen or section.get("LISTEN") or DEFAULT_LISTEN)
    except ValueError as exc:
        raise ConfigError(config.path, [f"LIVE_EVENTS.LISTEN / --listen: {exc}"]) from None
    options = _options(section, args)
    jwks_url = section.get("JWKS_URL") or CANVAS_JWKS_URL
    engine = prepare_database(config)
    logging.getLogger(__name__).info(
        "Receiving Live Events on %s:%d (REQUIRE_SIGNED %s, JWKS %s, body limit %d bytes, "
        "%d process(es))", host, port, options.require_signed, jwks_url,
        options.max_body_bytes, args.processes,
    )
    if args.processes > 1:
        engine.dispose()  # each worker process opens its own
        os.environ[WORKER_ENV] = json.dumps(
            {"config": str(config.path), "jwks_url": jwks_url, "options": asdict(options)}
        )
        serve_processes(host, port, args.processes)
        return 0
    try:
        serve(make_receiver(engine, jwks_url, options), host, port)
    finally:
        engine.dispose()
    return 0


def _options(section: dict[str, Any], args: argparse.Namespace) -> ReceiverOptions:
    from courseinv.live_events.receiver import ReceiverOptions

    return ReceiverOptions(
        require_signed=bool(section.get("REQUIRE_SIGNED", True)),
        max_body_bytes=args.max_body_bytes,
        max_batch_items=args.max_batch,
        writers=args.writers,
    )


def make_receiver(
    engine: Engine,
    jwks_url: str | None,
    options: ReceiverOptions,
    *,
    jwks_min_refetch_s: float = 10.0,
    jwks_ttl_s: float = 3600.0,
) -> Receiver:
    """A receiver storing into ``engine`` through the LIVE_EVENTS parser and store."""
    from functools import partial

    from courseinv.http_client import RetryingSession, RetryPolicy
    from courseinv.live_events.jwks import JwksCache
    from courseinv.live_events.jwt_verify import SignedEventVerifier
    from courseinv.live_events.parse import Rejected, read_events
    from courseinv.live_events.receiver import SOURCE, Receiver
    from courseinv.live_events.receiver_writer import BatchingWriter
    from courseinv.live_events.store import store_batch

    verifier = None
    if jwks_url:
        session = RetryingSession(name="jwks", policy=RetryPolicy(max_attempts=2), timeout=(5, 10))
        cache = JwksCache(jwks_url, session.get_json, ttl=jwks_ttl_s,
                          min_refetch_interval=jwks_min_refetch_s)
        verifier = SignedEventVerifier(cache)
    writer = BatchingWriter(partial(store_batch, engine), max_items=options.max_batch_items,
                            writers=options.writers, group=options.group_commit)
    return Receiver(
        read=partial(read_events, source=SOURCE),
        is_rejected=lambda item: isinstance(item, Rejected),
        writer=writer,
        verifier=verifier,
        options=options,
    )


WORKER_ENV = "COURSE_INVENTORY_EVENTS_WORKER"


def worker_app() -> Any:
    """The ASGI app of one worker process of ``--processes N`` (a uvicorn app factory).

    Reads what the parent put in ``WORKER_ENV``: the config file (loaded and validated
    again here), the JWKS URL and the options. The parent has already migrated.
    """
    from courseinv.config import load_config
    from courseinv.db.engine import output_engine
    from courseinv.live_events.receiver import ReceiverOptions, build_app
    from courseinv.runner.jobs import job_names
    from courseinv.runner.logs import setup_logging

    spec = json.loads(os.environ[WORKER_ENV])
    config = load_config(spec["config"], job_names=job_names())
    setup_logging(config["LOG_LEVEL"], config.secrets)
    engine = output_engine(config, config.data_dir())
    options = ReceiverOptions(**spec["options"])
    return build_app(make_receiver(engine, spec["jwks_url"], options))


def serve_processes(host: str, port: int, processes: int) -> None:
    """Serve with ``processes`` uvicorn workers on one socket until SIGTERM/SIGINT."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        f"{__name__}:worker_app", factory=True, host=host, port=port, workers=processes,
        access_log=False, log_config=None, lifespan="on", timeout_graceful_shutdown=30,
        server_header=False,
    )
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def serve(receiver: Receiver, host: str, port: int, *, sock: socket.socket | None = None) -> None:
    """Serve ``receiver`` with uvicorn until stopped (SIGTERM/SIGINT: graceful)."""
    import uvicorn
    from courseinv.live_events.receiver import build_app

    config = uvicorn.Config(
        build_app(receiver), host=host, port=port, access_log=False, log_config=None,
        lifespan="on", timeout_graceful_shutdown=30, server_header=False,
    )
    # uvicorn stops gracefully on SIGTERM, then re-raises it to the handler it found:
    # make that one a no-op so a stop asked by the orchestrator exits 0.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.Server(config).run(sockets=[sock] if sock else None)
    finally:
        signal.signal(signal.SIGTERM, previous)


class ServerThread:
    """A receiver served by uvicorn on a background thread (tests, benchmarks, embedding).

    ``start()`` returns once the server accepts connections; ``stop()`` shuts it down
    gracefully (requests in flight finish, the writer stores what it was given).
    """

    def __init__(self, receiver: Receiver, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn
        from courseinv.live_events.receiver import build_app

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.url = "http://{}:{}".format(*self._sock.getsockname()[:2])
        config = uvicorn.Config(
            build_app(receiver), access_log=False, log_config=None, lifespan="on",
            timeout_graceful_shutdown=10, server_header=False,
        )
        self.server = uvicorn.Server(config)
        self._thread: Any = None

    def start(self, timeout_s: float = 15.0) -> ServerThread:
        import threading
        import time

        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True,
            name="events-serve",
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the receiver did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
