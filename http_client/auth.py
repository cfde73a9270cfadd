"""Authentication objects: how a ``RetryingSession`` puts credentials on a request.

A session takes one authenticator (``RetryingSession(auth=...)``). Before every attempt
the session calls ``auth.apply(send)``, which adds the current credentials to that
attempt (a header, or a body field for Kaltura) and returns what it used. When a
response says the credentials were refused (``auth.rejected(response)``: HTTP 401 by
default, Kaltura's INVALID_KS inside an HTTP 200), the session asks ``auth.renew(used)``
for new ones *once* and repeats the request; a second refusal raises ``Unauthorized``.
That renew-on-401 loop lives only in ``session.py``.

- ``BearerToken``: a fixed token (Canvas). Cannot renew: a 401 fails at once.
- ``OAuth2ClientCredentials``: an OAuth 2.0 client-credentials grant (Zoom's
  Server-to-Server OAuth; the Canvas API gateway). The token is cached, renewed
  ``renew_margin`` seconds (at most a tenth of its life) before it expires, and once
  when the API answers 401. Thread-safe: one fetch serves every thread.
- ``KalturaSession`` (in ``kaltura.py``): a Kaltura session key (KS) from
  ``session.start``, sent in each call's body; INVALID_KS (HTTP 200) is its refusal.

Tokens and secrets never reach a URL (they go in headers or bodies), a log line, an
exception message or a repr.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import requests
from courseinv.http_client.errors import HttpError

if TYPE_CHECKING:
    from courseinv.http_client.session import RetryingSession

log = logging.getLogger(__name__)

RENEW_MARGIN_S = 60.0


class Authenticator(Protocol):
    """What ``RetryingSession`` needs from an authentication object."""

    def apply(self, send: dict[str, Any]) -> object:
        """Add credentials to one attempt's ``send`` kwargs; return what was used."""
        ...

    def rejected(self, response: requests.Response) -> bool:
        """Does ``response`` say the credentials were refused or expired?"""
        ...

    def renew(self, used: object) -> bool:
        """Replace the credentials ``used`` (unless already replaced); False: cannot."""
        ...

    # Optional: ``reason(response) -> str``, a safe account of why they were refused
    # (Kaltura's INVALID_KS message, redacted); else the HTTP reason phrase is used.


class AuthError(HttpError):
    """Credentials could not be obtained (token endpoint refused or unusable)."""


def _with_header(send: dict[str, Any], name: str, value: str) -> None:
    send["headers"] = {**(send.get("headers") or {}), name: value}


class BearerToken:
    """A fixed ``Authorization: Bearer`` token (Canvas API tokens)."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the bearer token is empty")
        self._value = f"Bearer {token}"

    def __repr__(self) -> str:
        return "BearerToken(<redacted>)"

    def apply(self, send: dict[str, Any]) -> object:
        _with_header(send, "Authorization", self._value)
        return None

    def rejected(self, response: requests.Response) -> bool:
        return response.status_code == 401

    def renew(self, used: object) -> bool:
        return False  # a fixed token cannot be renewed


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float


class OAuth2ClientCredentials:
    """OAuth 2.0 client credentials: ``POST token_url``, cache, renew ahead of expiry.

    ``form`` holds the grant's form fields (``grant_type`` and whatever the provider
    wants: ``client_id``/``client_secret``/``scope`` for the Canvas gateway,
    ``account_id`` for Zoom); ``basic`` (client id, secret) sends them as HTTP Basic
    auth instead, as Zoom requires. The answer must carry ``access_token``; its
    ``expires_in`` (seconds, default 3600) sets when it is renewed.
    """

    def __init__(
        self,
        token_url: str,
        form: Mapping[str, str],
        *,
        basic: tuple[str, str] | None = None,
        http: RetryingSession | None = None,
        what: str = "OAuth",
        hint: str = "check the client id and secret",
        renew_margin: float = RENEW_MARGIN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from courseinv.http_client.session import RetryingSession

        self.token_url = token_url
        self._form = dict(form)
        self._secrets = [v for k, v in self._form.items() if "secret" in k.lower() and v]
        self._headers = {"Accept": "application/json"}
        if basic is not None:
            self._secrets = [*self._secrets, basic[1]]
            pair = f"{basic[0]}:{basic[1]}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        self._http = http or RetryingSession(name="oauth", pool_size=1)
        self.what = what
        self.hint = hint
        self.renew_margin = renew_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self.fetches = 0

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials(token_url={self.token_url!r}, <credentials redacted>)"

    # -- Authenticator ------------------------------------------------------------
    def apply(self, send: dict[str, Any]) -> object:
        token = self.token()
        _with_header(send, "Authorization", f"Bearer {token}")
        return token

    def rejected(self, response: requests.Response) -> bool:
        return response.status_code == 401

    def renew(self, used: object) -> bool:
        with self._lock:
            if self._token is None or self._token.value == used:
                log.info("%s token rejected; requesting a new one", self.what)
                self._token = self._fetch()
        return True

    # -- the token ----------------------------------------------------------------
    def token(self) -> str:
        """The cached token, fetched when missing or about to expire."""
        with self._lock:
            if self._token is None or self._clock() >= self._token.renew_at:
                self._token = self._fetch()
            return self._token.value

    def _fetch(self) -> _Token:
        path = urlsplit(self.token_url).path or "/"
        self.fetches += 1
        reply = self._http.request(
            "POST",
            self.token_url,
            data=self._form,
            headers=self._headers,
            allow_status={400, 401, 403},
            authenticate=False,
        )
        data = reply.data if isinstance(reply.data, dict) else {}
        token = data.get("access_token")
        if reply.status != 200 or not isinstance(token, str) or not token:
            reason = str(data.get("error") or data.get("reason") or "")[:200]
            if reply.status == 200:
                reason = "no access_token in the answer"
            for secret in self._secrets:
                reason = reason.replace(secret, "[REDACTED]")
            detail = f"HTTP {reply.status}" + (f": {reason}" if reason else "")
            raise AuthError(
                "POST", path, f"{self.what} token request failed ({detail}); {self.hint}"
            )
        try:
            lifetime = float(data.get("expires_in") or 3600)
        except (TypeError, ValueError):
            lifetime = 3600.0
        margin = min(self.renew_margin, lifetime / 10)
        return _Token(token, self._clock() + lifetime - margin)
