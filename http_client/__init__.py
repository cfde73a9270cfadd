"""The project's one HTTP layer: every external API call goes through here.

Modules:

- ``session``: ``RetryingSession``, the pooled, retrying session any API client wraps
  (timeouts, backoff with jitter, Retry-After, typed errors, classification hook).
- ``errors``: the typed exceptions (``HttpError`` and subclasses).
- ``canvas``: ``CanvasClient`` (REST pagination, GraphQL, throttling, fan-out).
- ``throttle``: ``AdaptiveLimiter``, concurrency driven by ``X-Rate-Limit-Remaining``.
- ``fanout``: ``fan_out``/``FanOut``, bounded concurrent map with streamed results.
- ``progress``: ``Progress``, done/total and rate on a TTY or in the log.
"""

from courseinv.http_client.canvas import CanvasClient, GraphQLError
from courseinv.http_client.errors import (
    Forbidden,
    HttpError,
    NotFound,
    PermanentHttpError,
    RetriesExhausted,
    Unauthorized,
    UnexpectedPayload,
)
from courseinv.http_client.fanout import FanOut, fan_out
from courseinv.http_client.progress import Progress
from courseinv.http_client.session import Action, Reply, RetryingSession, RetryPolicy, Verdict
from courseinv.http_client.throttle import AdaptiveLimiter

__all__ = [
    "Action",
    "AdaptiveLimiter",
    "CanvasClient",
    "FanOut",
    "Forbidden",
    "GraphQLError",
    "HttpError",
    "NotFound",
    "PermanentHttpError",
    "Progress",
    "Reply",
    "RetriesExhausted",
    "RetryPolicy",
    "RetryingSession",
    "Unauthorized",
    "UnexpectedPayload",
    "Verdict",
    "fan_out",
]
