"""The HTTP server every sandbox fake (Canvas, Kaltura, Zoom, BigQuery) is built on.

For development, tests, the demo and benchmarks only: it simulates external APIs on
127.0.0.1 and must never be pointed at real data.

A fake subclasses ``SandboxServer`` and registers routes. The base class provides:
latency (fixed + jitter), injected faults (5xx, truncated 200 bodies, connection
resets), a "down" switch that resets every connection, hostile payloads (``tamper``: an
edit of the JSON body an endpoint answers, e.g. a null or malformed field), and a request
log with counters by endpoint and status that tests and benchmarks read.
"""

from __future__ import annotations

import copy
import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Latency:
    """Per-request delay: ``fixed_ms`` plus a uniform random ``0..jitter_ms``."""

    fixed_ms: float = 0.0
    jitter_ms: float = 0.0

    def delay_s(self, rng: random.Random) -> float:
        return (self.fixed_ms + rng.uniform(0, self.jitter_ms)) / 1000.0


@dataclass(frozen=True)
class Faults:
    """Probabilities (0..1) of injecting each fault class into a faultable request."""

    error_5xx: float = 0.0
    truncated: float = 0.0
    reset: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Faults:
        """Parse ``"5xx=0.1,truncated=0.05,reset=0.02"`` (the CLI form)."""
        names = {"5xx": "error_5xx", "truncated": "truncated", "reset": "reset"}
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, value = part.partition("=")
            if key not in names:
                raise ValueError(f"unknown fault {key!r}; expected one of {sorted(names)}")
            values[names[key]] = float(value)
        return cls(**values)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    match: re.Match[str] | None = None

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)

    def bearer_token(self) -> str | None:
        auth = self.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass
class Response:
    status: int = 200
    body: Any = None  # bytes/str sent as-is; anything else JSON-encoded
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        if self.body is None and self.status == 204:
            return b""
        return json.dumps(self.body, ensure_ascii=False).encode("utf-8")

    def content_type(self) -> str:
        if "Content-Type" in self.headers:
            return self.headers["Content-Type"]
        if isinstance(self.body, bytes | str):
            return "text/plain; charset=utf-8"
        return "application/json; charset=utf-8"


def json_response(body: Any, status: int = 200, **headers: str) -> Response:
    return Response(status=status, body=body, headers=dict(headers))


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    endpoint: str  # the name used in the request log, e.g. "courses.list"
    handler: Handler
    faultable: bool = True


class RequestLog:
    """Thread-safe counters of answered requests by (endpoint, status)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, int]] = Counter()

    def record(self, endpoint: str, status: int) -> None:
        with self._lock:
            self._counts[(endpoint, status)] += 1

    def count(self, endpoint: str | None = None, status: int | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (ep, st), n in self._counts.items()
                if (endpoint is None or ep == endpoint) and (status is None or st == status)
            )

    def by_endpoint(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        with self._lock:
            for (ep, _), n in self._counts.items():
                out[ep] += n
        return dict(sorted(out.items()))

    def by_status(self) -> dict[int, int]:
        out: Counter[int] = Counter()
        with self._lock:
            for (_, st), n in self._counts.items():
                out[st] += n
        return dict(sorted(out.items()))

    def snapshot(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class _Reset(Exception):
    """Raised inside a handler thread to drop the connection with a TCP RST."""


class SandboxServer:
    """Base of every fake: routing, latency, faults, request log, lifecycle.

    Use as a context manager (``with CanvasServer(...) as server: server.url``) or call
    ``start()``/``stop()``. Knobs (``latency``, ``faults``, ``down``) may be changed while
    it runs.
    """

    name = "sandbox"
    # Statuses returned by the injected 5xx fault, cycled at random.
    FAULT_STATUSES = (500, 502, 503, 504)

    def __init__(
        self,
        *,
        latency: Latency | None = None,
        faults: Faults | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.latency = latency or Latency()
        self.faults = faults or Faults()
        self.down = False  # when True every request's connection is reset
        self.log = RequestLog()
        self._routes: list[Route] = []
        self._tampers: dict[str, Callable[[Any], Any]] = {}
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._host, self._port = host, port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- routing -----------------------------------------------------------------
    def add_route(
        self, method: str, pattern: str, endpoint: str, handler: Handler, *, faultable: bool = True
    ) -> None:
        """Register ``handler`` for ``method`` and a full-match regex on the URL path."""
        self._routes.append(
            Route(method.upper(), re.compile(pattern), endpoint, handler, faultable)
        )

    def tamper(self, endpoint: str, edit: Callable[[Any], Any] | None) -> None:
        """Serve hostile payloads: every 200 JSON answer of ``endpoint`` becomes ``edit(body)``
        (on a copy; ``edit`` returns the body to send). ``None`` removes the edit."""
        if edit is None:
            self._tampers.pop(endpoint, None)
        else:
            self._tampers[endpoint] = edit

    def before(self, request: Request, route: Route) -> Response | None:
        """Hook run before a matched handler (auth, throttling). Return a Response to stop."""
        return None

    def after(self, request: Request, route: Route, response: Response) -> None:
        """Hook run after a handler (e.g. add throttle headers)."""

    # -- lifecycle ---------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{self.name} server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SandboxServer:
        handler_cls = _make_handler(self)
        httpd = ThreadingHTTPServer((self._host, self._port), handler_cls)
        httpd.daemon_threads = True
        self._httpd = httpd
        # A short poll interval: stop() (shutdown) returns within ~50 ms, not 0.5 s.
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- dispatch ----------------------------------------------------------------
    def _chance(self, p: float) -> bool:
        if p <= 0:
            return False
        with self._rng_lock:
            return self._rng.random() < p

    def _sleep_latency(self) -> None:
        with self._rng_lock:
            delay = self.latency.delay_s(self._rng)
        if delay > 0:
            time.sleep(delay)

    def dispatch(self, request: Request) -> tuple[Response, str]:
        """Answer ``request``; returns the response and the endpoint name for the log."""
        route = self._match(request)
        if route is None:
            return json_response({"errors": [{"message": "Not found"}]}, 404), "unmatched"
        self._sleep_latency()
        if self.down:
            raise _Reset()
        if route.faultable:
            if self._chance(self.faults.reset):
                self.log.record(route.endpoint, 0)
                raise _Reset()
            if self._chance(self.faults.error_5xx):
                with self._rng_lock:
                    status = self._rng.choice(self.FAULT_STATUSES)
                return Response(status, f"{status} injected fault\n"), route.endpoint
        response = self.before(request, route)
        if response is None:
            response = route.handler(request)
        self.after(request, route, response)
        edit = self._tampers.get(route.endpoint)
        if edit is not None and response.status == 200 and not isinstance(
            response.body, bytes | str
        ):
            response.body = edit(copy.deepcopy(response.body))
        if route.faultable and response.status == 200 and self._chance(self.faults.truncated):
            body = response.payload()
            response = Response(200, body[: max(1, len(body) // 2)], dict(response.headers))
            response.headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return response, route.endpoint

    def _match(self, request: Request) -> Route | None:
        for route in self._routes:
            if route.method != request.method:
                continue
            m = route.pattern.fullmatch(request.path)
            if m:
                request.match = m
                return route
        return None


def _make_handler(server: SandboxServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so clients can pool connections
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle plus the
        # client's delayed ACK adds ~40 ms to every response on a kept-alive connection.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # silence stderr
            pass

        def _handle(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            try:
                response, endpoint = server.dispatch(request)
            except _Reset:
                self._reset()
                return
            except Exception as exc:  # a bug in a fake: answer 500 rather than hang
                response, endpoint = Response(500, f"sandbox error: {exc!r}\n"), "error"
            payload = response.payload()
            # Record before answering, so a client that has its reply sees it counted.
            server.log.record(endpoint, response.status)
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type())
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                if name.lower() not in ("content-type", "content-length"):
                    self.send_header(name, value)
            try:
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                self.close_connection = True

        def _reset(self) -> None:
            # SO_LINGER with timeout 0 makes close() send RST: the client sees
            # "connection reset by peer" rather than a clean EOF.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return _Handler


# ThreadingHTTPServer's default listen backlog (5) is too small for fan-out clients.
ThreadingHTTPServer.request_queue_size = 128
