"""Signed Live Events for the sandbox: a key ring, its JWKS server, and a stream poster.

For development, tests, the demo and benchmarks only (never in production code).

- ``KeyRing``: RSA key pairs with key ids; signs an event as Canvas does with "Sign
  Payload" on (a compact RS256 JWT whose claims are the event plus ``iss``/``iat``/
  ``exp``, the ``kid`` in the header). ``rotate()`` retires the current key and signs
  with a new one: the JWKS publishes previous + current (+ next, when ``publish_next``).
- ``JwksServer``: serves the ring's public keys at ``GET /jwks`` (a ``SandboxServer``,
  so its request log counts fetches and it can be taken down).
- ``post_stream``: posts bodies to a receiver URL over kept-alive HTTP/1.1 connections
  at a chosen rate and concurrency, retrying 429/5xx and broken connections as a
  sender does, and returns statuses and latencies. Its tiny client is written on
  asyncio streams so that the load generator costs the benchmark little CPU.

``python -m courseinv.sandbox.live_events_signing --url http://127.0.0.1:8080/ ...``
serves a JWKS on ``--jwks-port`` and posts the sandbox institution's event stream
(``sandbox/live_events.py``), signed, at ``--rate``, rotating the key halfway.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from courseinv.sandbox.httpserver import Request, Response, SandboxServer, json_response
from joserfc import jwt
from joserfc.jwk import RSAKey

ISSUER = "https://live-events.canvas.instructure.com"


@dataclass
class SigningKey:
    kid: str
    private: RSAKey = field(repr=False)

    def public_jwk(self) -> dict[str, Any]:
        jwk = self.private.as_dict(private=False)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def public_pem(self) -> bytes:
        return self.private.as_pem(private=False)


def new_key(kid: str, bits: int = 2048) -> SigningKey:
    return SigningKey(kid, RSAKey.generate_key(bits, private=True))


class KeyRing:
    """The sandbox's Live Events signing keys; thread-safe."""

    def __init__(self, *, publish_next: bool = False, prefix: str = "sandbox-key") -> None:
        self._prefix = prefix
        self._serial = 0
        self._lock = threading.Lock()
        self.publish_next = publish_next
        self.previous: SigningKey | None = None
        self.current = self._new()
        self.next = self._new()

    def _new(self) -> SigningKey:
        self._serial += 1
        return new_key(f"{self._prefix}-{self._serial}")

    def rotate(self) -> SigningKey:
        """Retire the current key; sign with the next one from now on. Returns it."""
        with self._lock:
            self.previous, self.current, self.next = self.current, self.next, self._new()
            return self.current

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            published = [self.previous, self.current]
            if self.publish_next:
                published.append(self.next)
            return {"keys": [k.public_jwk() for k in published if k is not None]}

    def sign(self, event: dict[str, Any], *, lifetime_s: float | None = 300.0,
             now: float | None = None, issuer: str = ISSUER) -> str:
        """``event`` as Canvas signs it: claims = event + iss/iat (+ exp)."""
        issued = int(time.time() if now is None else now)
        claims = {**event, "iss": issuer, "iat": issued}
        if lifetime_s is not None:
            claims["exp"] = issued + int(lifetime_s)
        with self._lock:
            key = self.current
        return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": key.kid}, claims, key.private)


class JwksServer(SandboxServer):
    """``GET /jwks``: the ring's published public keys."""

    name = "jwks"

    def __init__(self, ring: KeyRing, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ring = ring
        self.add_route("GET", r"/jwks", "jwks", self._jwks)

    def _jwks(self, request: Request) -> Response:
        return json_response(self.ring.jwks())

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"

    @property
    def fetches(self) -> int:
        return self.log.count("jwks", 200)


# -- attack tokens (tests): what a forger can make without the private key ------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned_token(claims: dict[str, Any], header: dict[str, Any]) -> str:
    """``header.claims.`` with an empty signature (``alg: none`` style)."""
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), ""])


def hmac_token(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """HS256 with ``secret`` (the key-confusion attack passes the public key's PEM)."""
    import hashlib
    import hmac

    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64url(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


# -- the poster ----------------------------------------------------------------------

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass
class PostResult:
    """What one ``post_stream`` run saw: final statuses, latencies, retries."""

    statuses: Counter[int] = field(default_factory=Counter)  # final status per body
    latencies_ms: list[float] = field(default_factory=list)  # first send -> final answer
    retries: int = 0
    retry_statuses: Counter[int] = field(default_factory=Counter)  # answers retried
    connection_errors: int = 0
    elapsed_s: float = 0.0

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def percentile_ms(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@dataclass(frozen=True)
class PostPlan:
    url: str
    rate: float | None = None  # bodies per second in all; None: as fast as answered
    concurrency: int = 16
    content_type: str = "application/jwt"
    max_attempts: int = 50  # per body, for retryable answers and broken connections
    retry_delay_s: float = 0.2  # doubled per attempt, capped at 2 s, with jitter
    timeout_s: float = 30.0


class _Connection:
    """One kept-alive HTTP/1.1 connection to the receiver."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, head: bytes, body: bytes, timeout: float) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(head + body)
        return await asyncio.wait_for(_read_response(self.reader), timeout)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    pairs = (line.partition(":") for line in lines[1:] if line)
    headers = {k.strip().lower(): v.strip() for k, _, v in pairs}
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, b"".join(chunks)
            chunks.append(chunk[:-2])
    return status, await reader.read()


async def post_stream_async(bodies: Sequence[bytes], plan: PostPlan) -> PostResult:
    """Post every body (in order of start, concurrently); see ``PostPlan``."""
    parts = urlsplit(plan.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    result = PostResult()
    started = time.perf_counter()
    next_index = iter(range(len(bodies)))
    rng = random.Random(0)

    async def worker() -> None:
        conn = _Connection(host, port)
        try:
            for i in next_index:
                if plan.rate:
                    delay = started + i / plan.rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await _post_one(conn, path, host, bodies[i], plan, result, rng)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(max(1, plan.concurrency))))
    result.elapsed_s = time.perf_counter() - started
    return result


async def _post_one(conn: _Connection, path: str, host: str, body: bytes, plan: PostPlan,
                    result: PostResult, rng: random.Random) -> None:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {plan.content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    first = time.perf_counter()
    status = 0
    for attempt in range(plan.max_attempts):
        try:
            status, _ = await conn.post(head, body, plan.timeout_s)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            conn.close()
            result.connection_errors += 1
            status = 0
        if status and status not in RETRY_STATUSES:
            break
        if attempt + 1 < plan.max_attempts:
            if status:
                result.retry_statuses[status] += 1
            result.retries += 1
            delay = min(2.0, plan.retry_delay_s * 2**attempt)
            await asyncio.sleep(delay * (0.5 + rng.random() / 2))
    result.statuses[status] += 1
    result.latencies_ms.append((time.perf_counter() - first) * 1000)


def post_stream(bodies: Iterable[bytes | str], plan: PostPlan) -> PostResult:
    """Blocking wrapper of ``post_stream_async`` (runs its own event loop)."""
    data = [b.encode("utf-8") if isinstance(b, str) else b for b in bodies]
    return asyncio.run(post_stream_async(data, plan))


# -- command line ----------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m courseinv.sandbox.live_events_signing",
        description="Serve a sandbox JWKS and post a signed Live Events stream to a receiver.",
    )
    p.add_argument("--url", required=True, help="the receiver, e.g. http://127.0.0.1:8080/")
    p.add_argument("--jwks-port", type=int, default=8765, help="JWKS port (default 8765)")
    p.add_argument("--events", type=int, default=1000, help="events to post (default 1000)")
    p.add_argument("--courses", type=int, default=50, help="institution size (default 50)")
    p.add_argument("--rate", type=float, default=100.0, help="events per second (0: unbounded)")
    p.add_argument("--concurrency", type=int, default=8, help="connections (default 8)")
    p.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    return p


def stream_claims(events: int, *, courses: int = 50, seed: int = 0,
                  duplicate_rate: float = 0.05) -> list[dict[str, Any]]:
    """The sandbox institution's Live Events stream (both formats), as JWT claims."""
    from courseinv.sandbox.institution import Institution, InstitutionSpec
    from courseinv.sandbox.live_events import StreamSpec, generate_stream

    institution = Institution.generate(InstitutionSpec.sized(courses, seed=seed))
    spec = StreamSpec(events=events, seed=seed, duplicate_rate=duplicate_rate)
    return [json.loads(m) for m in generate_stream(institution, spec).messages]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    ring = KeyRing()
    events = stream_claims(args.events, courses=args.courses, seed=args.seed)
    with JwksServer(ring, port=args.jwks_port) as server:
        print(f"JWKS_URL {server.jwks_url} (set LIVE_EVENTS.JWKS_URL to it)", flush=True)
        half = len(events) // 2
        first = [ring.sign(e).encode() for e in events[:half]]
        plan = PostPlan(args.url, rate=args.rate or None, concurrency=args.concurrency)
        result_a = post_stream(first, plan)
        ring.rotate()
        print(f"rotated: now signing with {ring.current.kid}", flush=True)
        result_b = post_stream([ring.sign(e).encode() for e in events[half:]], plan)
    for label, res in (("before rotation", result_a), ("after rotation", result_b)):
        print(f"{label}: {res.sent} posted in {res.elapsed_s:.1f} s, statuses "
              f"{dict(res.statuses)}, retries {res.retries}, p50 {res.percentile_ms(50):.1f} ms, "
              f"p99 {res.percentile_ms(99):.1f} ms")
    ok = all(s < 300 for s in (result_a.statuses | result_b.statuses))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
