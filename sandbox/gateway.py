"""A fake institutional API gateway (like the U-M API Directory) in front of the Canvas sandbox.

For development, tests, the demo and benchmarks only.

    POST /oauth2/token          form: grant_type=client_credentials, client_id,
                                client_secret, scope -> {access_token, token_type,
                                expires_in, scope}; 401 invalid_client, 400 otherwise
    ANY  /<scope_prefix>/<path> forwarded to Canvas as /<path> with the gateway's own
                                Canvas token; the answer (status, body, headers: Link,
                                X-Rate-Limit-Remaining...) comes back unchanged, so
                                Link URLs name the Canvas host, not the gateway

Checks, in order: a bearer token the gateway issued (401 otherwise, 401 too once it has
expired after ``token_ttl`` seconds), the token's scope equal to ``subscription``
(403), the gateway's own rate limit of ``rate_per_s`` requests per second per token
with bursts of ``burst`` (429 with ``Retry-After``). ``GRAPHQL`` is not carried (404),
as the original's gateway did not expose it. Tokens issued, token requests, expired
and rate-limited answers are counted for tests.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from courseinv.sandbox.canvas import CanvasServer
from courseinv.sandbox.httpserver import Request, Response, SandboxServer, json_response


@dataclass
class _Issued:
    scope: str
    expires: float
    tokens: float  # rate-limit bucket (token bucket: refills at rate_per_s)
    at: float


class GatewayServer(SandboxServer):
    """``with GatewayServer(canvas, client_id=..., ...) as gw: gw.url``."""

    name = "gateway"

    def __init__(
        self,
        canvas: CanvasServer,
        *,
        scope_prefix: str = "aa/CanvasReadOnly",
        subscription: str = "canvasreadonly",
        client_id: str = "gateway-client",
        client_secret: str | None = None,
        token_ttl: float = 3600.0,
        rate_per_s: float = 200.0,
        burst: float = 50.0,
        carried_prefixes: tuple[str, ...] = ("/api/v1/",),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.canvas = canvas
        self.scope_prefix = scope_prefix.strip("/")
        self.subscription = subscription
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.token_ttl = token_ttl
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.carried_prefixes = carried_prefixes
        self.canvas_token = canvas.issue_token()  # the gateway's own Canvas token
        self._issued: dict[str, _Issued] = {}
        self._lock = threading.Lock()
        self.tokens_issued = 0
        self.expired = 0
        self.rate_limited = 0
        self.add_route("POST", r"/oauth2/token", "token", self._token, faultable=False)
        prefix = self.scope_prefix.replace(".", r"\.")
        for method in ("GET", "POST"):
            self.add_route(method, rf"/{prefix}(/.*)", "forward", self._forward)

    # -- token endpoint ---------------------------------------------------------
    def _token(self, request: Request) -> Response:
        form = {k: v[-1] for k, v in request.form().items()}
        if form.get("grant_type") != "client_credentials":
            return json_response({"error": "unsupported_grant_type"}, 400)
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return json_response({"error": "invalid_client"}, 401)
        scope = form.get("scope", "")
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            self._issued[token] = _Issued(scope, now + self.token_ttl, self.burst, now)
            self.tokens_issued += 1
        body = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(self.token_ttl) if self.token_ttl >= 1 else self.token_ttl,
            "scope": scope,
        }
        return json_response(body)

    def expire_tokens(self) -> None:
        """Make every issued token expire now (the next call gets 401)."""
        with self._lock:
            for issued in self._issued.values():
                issued.expires = 0.0

    # -- forwarding -------------------------------------------------------------
    def _forward(self, request: Request) -> Response:
        refused = self._admit(request.bearer_token())
        if refused is not None:
            return refused
        path = request.match[1] if request.match else "/"  # type: ignore[index]
        if not path.startswith(self.carried_prefixes):
            return json_response({"error": "not_found", "message": "not carried"}, 404)
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        headers["authorization"] = f"Bearer {self.canvas_token}"
        headers["host"] = self.canvas.url.removeprefix("http://")
        inner = Request(request.method, path, dict(request.query), headers, request.body)
        response, endpoint = self.canvas.dispatch(inner)
        self.canvas.log.record(endpoint, response.status)
        return response

    def _admit(self, token: str | None) -> Response | None:
        now = time.monotonic()
        with self._lock:
            issued = self._issued.get(token or "")
            if issued is None or issued.expires <= now:
                if issued is not None:
                    self.expired += 1
                body = {"error": "invalid_token"}
                return json_response(
                    body, 401, **{"WWW-Authenticate": 'Bearer error="invalid_token"'}
                )
            if issued.scope != self.subscription:
                return json_response({"error": "insufficient_scope"}, 403)
            issued.tokens = min(self.burst, issued.tokens + (now - issued.at) * self.rate_per_s)
            issued.at = now
            if issued.tokens < 1.0:
                self.rate_limited += 1
                wait = (1.0 - issued.tokens) / self.rate_per_s
                return json_response(
                    {"error": "rate_limited"}, 429, **{"Retry-After": f"{wait:.3f}"}
                )
            issued.tokens -= 1.0
        return None
