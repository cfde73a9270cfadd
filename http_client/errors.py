"""Typed errors raised by the HTTP layer.

Every message names the HTTP method and the URL *path* only: never the query string
(it may carry an API key or a Kaltura KS), never headers, never a token. Requests'
own exceptions embed the full URL, so they are never chained into these errors; the
reason is reduced to exception class names instead.

Hierarchy::

    HttpError                      base of everything below
    ├── PermanentHttpError         a 4xx that retrying cannot fix (.status)
    │   ├── Unauthorized           401 (bad or expired token)
    │   ├── Forbidden              403 that is not throttling
    │   └── NotFound               404 the caller did not allow
    ├── RetriesExhausted           transient failures outlasted the attempt budget
    ├── ThrottleStalled            a rate limit that admits no request at all (throttle.py)
    ├── UnexpectedPayload          2xx whose JSON does not have the expected shape
    └── GraphQLError               a GraphQL response carrying ``errors`` (canvas.py)
"""

from __future__ import annotations


class HttpError(Exception):
    """Base of every HTTP-layer error. ``method`` and ``path`` say which call failed."""

    def __init__(self, method: str, path: str, message: str) -> None:
        self.method = method
        self.path = path
        super().__init__(f"{method} {path}: {message}")


class PermanentHttpError(HttpError):
    """A response status that retrying will not change (401, 403, 404, other 4xx)."""

    def __init__(self, method: str, path: str, status: int, reason: str = "") -> None:
        self.status = status
        self.reason = reason
        detail = f"HTTP {status}" + (f" {reason}" if reason else "")
        super().__init__(method, path, detail)


class Unauthorized(PermanentHttpError):
    """401: the token is missing, invalid or expired."""


class Forbidden(PermanentHttpError):
    """403 that is not throttling: the token lacks a permission."""


class NotFound(PermanentHttpError):
    """404 on an object the caller required."""


class RetriesExhausted(HttpError):
    """Transient failures (connection, timeout, 5xx, bad JSON, throttling) never cleared."""

    def __init__(self, method: str, path: str, attempts: int, last_reason: str) -> None:
        self.attempts = attempts
        self.last_reason = last_reason
        super().__init__(method, path, f"gave up after {attempts} attempt(s); last: {last_reason}")


class UnexpectedPayload(HttpError):
    """A successful response whose JSON does not have the shape the caller expects."""


def permanent_error(method: str, path: str, status: int, reason: str = "") -> PermanentHttpError:
    """The most specific ``PermanentHttpError`` subclass for ``status``."""
    cls = {401: Unauthorized, 403: Forbidden, 404: NotFound}.get(status, PermanentHttpError)
    return cls(method, path, status, reason)


class ThrottleStalled(HttpError):
    """The API's rate limit admits no request at all (e.g. a bucket smaller than one
    request's up-front charge): waiting longer would not help."""

    def __init__(self, detail: str, method: str = "", path: str = "") -> None:
        self.detail = detail
        HttpError.__init__(self, method, path, detail)
        if not method:
            self.args = (detail,)

    def __str__(self) -> str:
        return f"{self.method} {self.path}: {self.detail}" if self.method else self.detail

    def at(self, method: str, path: str) -> ThrottleStalled:
        """The same error naming the request that met it."""
        return ThrottleStalled(self.detail, method, path)
