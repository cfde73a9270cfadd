"""The HTTPS Live Events receiver: an ASGI app (Starlette) run by uvicorn.

``POST /`` (or ``/events``) takes one Canvas delivery. The answer:

====  ====================================================================================
200   every event of the delivery is committed (``live_event``; invalid ones of a mixed
      Caliper envelope in ``live_event_rejected``)
422   readable, but no event in it is valid: committed to ``live_event_rejected`` with the
      reason, as on the SQS path (retrying cannot help)
400   unreadable body: neither a compact JWT nor a JSON object
401   signature refused (see ``jwt_verify``) or an unsigned delivery while REQUIRE_SIGNED
413   body larger than ``max_body_bytes``
503   database unavailable, or the JWKS unreachable for a key not cached: nothing stored,
      the sender retries (``Retry-After``)
500   the store failed for another reason even alone (logged)
====  ====================================================================================

``GET /healthz`` answers 200 while the process serves, with the counters, the number of
signing keys and the outcome of the latest transaction. Log lines name the outcome, its
reason and the client address, never a token or a payload; refusals are logged at most
ten per outcome a minute (the rest counted), and a summary line is logged every minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from courseinv.live_events.jwks import KeysUnavailable
from courseinv.live_events.jwt_verify import SignedEventVerifier, TokenRefused
from courseinv.live_events.receiver_writer import BatchingWriter, StoreFailed, StoreUnavailable
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

log = logging.getLogger(__name__)

SOURCE = "https"
# header.payload.signature in base64url; the signature may be empty ("alg": "none").
COMPACT_JWS = re.compile(rb"[A-Za-z0-9_-]+=*\.[A-Za-z0-9_-]*=*\.[A-Za-z0-9_-]*=*")
RETRY_AFTER_S = "5"
SUMMARY_EVERY_S = 60.0

Read = Callable[[Any], Sequence[Any]]  # event payload -> parsed items (events, rejects)
IsRejected = Callable[[Any], bool]


@dataclass(frozen=True)
class ReceiverOptions:
    require_signed: bool = True
    max_body_bytes: int = 256 * 1024  # an SQS message's limit; Canvas events are far smaller
    max_batch_items: int = 500
    writers: int = 1
    group_commit: bool = True  # False: one transaction per request (benchmark baseline)


class Refused(Exception):
    """A delivery answered without storing anything: ``status`` and a loggable reason."""

    def __init__(self, status: int, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.outcome = outcome
        self.reason = reason


class LogThrottle:
    """At most ``limit`` refusal lines per outcome per ``window_s``; the rest are counted
    and summed up in one line when the window ends, so a flood cannot fill the log."""

    def __init__(self, limit: int = 10, window_s: float = 60.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._started: dict[str, float] = {}
        self._lines: Counter[str] = Counter()
        self._muted: Counter[str] = Counter()

    def allow(self, outcome: str) -> bool:
        now = time.monotonic()
        if now - self._started.get(outcome, -1e18) >= self.window_s:
            if self._muted[outcome]:
                log.warning("%d more delivery(ies) refused as %s in the last %.0f s (not logged)",
                            self._muted[outcome], outcome, self.window_s)
            self._started[outcome] = now
            self._lines[outcome] = self._muted[outcome] = 0
        self._lines[outcome] += 1
        if self._lines[outcome] > self.limit:
            self._muted[outcome] += 1
            return False
        return True


class Receiver:
    """Request handling, independent of how the app is served."""

    def __init__(
        self,
        *,
        read: Read,
        is_rejected: IsRejected,
        writer: BatchingWriter,
        verifier: SignedEventVerifier | None,
        options: ReceiverOptions,
    ) -> None:
        self.read = read
        self.is_rejected = is_rejected
        self.writer = writer
        self.verifier = verifier
        self.options = options
        self.counts: Counter[str] = Counter()
        self.log_throttle = LogThrottle()

    async def receive(self, request: Request) -> JSONResponse:
        client = request.client.host if request.client else "?"
        try:
            body = await self._body(request)
            event = await self._event(body)
            items = list(self.read(event))
            stored, rejected = await self._store(items)
        except Refused as refused:
            self.counts[refused.outcome] += 1
            if self.log_throttle.allow(refused.outcome):
                log.warning("Delivery from %s refused (HTTP %d): %s",
                            client, refused.status, refused.reason)
            headers = {"Retry-After": RETRY_AFTER_S} if refused.status == 503 else None
            return JSONResponse({"error": refused.reason}, refused.status, headers=headers)
        self.counts["events_stored"] += stored
        self.counts["events_rejected"] += rejected
        if stored == 0 and rejected:
            self.counts["rejected"] += 1
            if self.log_throttle.allow("rejected"):
                log.info("Delivery from %s rejected: %d invalid event(s) kept in "
                         "live_event_rejected", client, rejected)
            return JSONResponse({"stored": 0, "rejected": rejected}, 422)
        self.counts["accepted"] += 1
        return JSONResponse({"stored": stored, "rejected": rejected}, 200)

    async def _body(self, request: Request) -> bytes:
        limit = self.options.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise Refused(413, "too_large", f"body of {declared} bytes exceeds {limit}")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refused(413, "too_large", f"body exceeds {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            raise Refused(400, "unreadable", "client disconnected mid-body") from None
        return b"".join(chunks)

    async def _event(self, body: bytes) -> dict[str, Any]:
        """The event JSON object held by the body: verified claims, or unsigned JSON."""
        text = body.strip()
        if COMPACT_JWS.fullmatch(text):
            if self.verifier is None:
                raise Refused(401, "bad_token", "signed delivery but no JWKS_URL to verify it")
            return await self._verified(text)
        if text[:1] != b"{":
            raise Refused(400, "unreadable", "body is neither a compact JWT nor a JSON object")
        if self.options.require_signed:
            raise Refused(401, "unsigned", "unsigned delivery refused (REQUIRE_SIGNED is true)")
        try:
            event = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise Refused(400, "unreadable", "body is not valid JSON") from None
        if not isinstance(event, dict):
            raise Refused(400, "unreadable", "body is not a JSON object")
        return event

    async def _verified(self, token: bytes) -> dict[str, Any]:
        assert self.verifier is not None
        try:
            return await self.verifier.verify(token.decode("ascii"))
        except TokenRefused as exc:
            raise Refused(401, "bad_token", str(exc)) from None
        except KeysUnavailable as exc:
            raise Refused(503, "keys_unavailable", str(exc)) from None

    async def _store(self, items: list[Any]) -> tuple[int, int]:
        rejected = sum(1 for item in items if self.is_rejected(item))
        if not items:
            return 0, 0
        try:
            await self.writer.submit(items)
        except StoreUnavailable:
            raise Refused(503, "db_unavailable", "database unavailable; retry later") from None
        except StoreFailed:
            raise Refused(500, "store_failed", "the event could not be stored") from None
        return len(items) - rejected, rejected

    def health(self) -> dict[str, Any]:
        stats = self.writer.stats
        database = {None: "unknown", True: "ok", False: "unavailable"}[stats.last_ok]
        keys = self.verifier.keys if self.verifier else None
        return {
            "status": "ok",
            "database": database,
            "require_signed": self.options.require_signed,
            "signing_keys": keys.kids if keys else [],
            "jwks_fetches": keys.fetches if keys else 0,
            "transactions": stats.transactions,
            "largest_transaction": stats.largest_batch,
            "counts": dict(sorted(self.counts.items())),
        }


async def _log_summaries(receiver: Receiver, every_s: float) -> None:
    """One INFO line per period with what changed, while anything did."""
    last: Counter[str] = Counter()
    while True:
        await asyncio.sleep(every_s)
        delta = receiver.counts - last
        if delta:
            stats = receiver.writer.stats
            log.info("Last %.0f s: %s; %d transaction(s) so far", every_s,
                     ", ".join(f"{k} {v}" for k, v in sorted(delta.items())), stats.transactions)
        last = Counter(receiver.counts)


def build_app(receiver: Receiver) -> Starlette:
    """The ASGI app: routes plus a lifespan that runs the writer and loads the keys."""

    async def events(request: Request) -> JSONResponse:
        return await receiver.receive(request)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse(receiver.health())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        receiver.writer.start()
        if receiver.verifier is not None:
            with contextlib.suppress(KeysUnavailable):  # logged; retried on first use
                await receiver.verifier.keys.refresh()
        summary = asyncio.create_task(_log_summaries(receiver, SUMMARY_EVERY_S))
        try:
            yield
        finally:
            summary.cancel()
            await receiver.writer.stop()
            log.info("Receiver stopped: %s", dict(sorted(receiver.counts.items())))

    routes = [
        Route("/", events, methods=["POST"]),
        Route("/events", events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
