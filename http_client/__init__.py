"""The project's one HTTP layer: every external API call goes through here.

Modules:

- ``session``: ``RetryingSession``, the pooled, retrying session any API client wraps
  (timeouts, backoff with jitter, Retry-After, typed errors, classification hook).
- ``errors``: the typed exceptions (``HttpError`` and subclasses).
- ``canvas``: ``CanvasClient`` (REST pagination, GraphQL, throttling, fan-out, the
  optional API gateway).
- ``throttle``: ``AdaptiveLimiter``, learns a leaky-bucket throttle from the responses.
- ``auth``: authenticators (``BearerToken``, ``OAuth2ClientCredentials``; Kaltura's
  ``KalturaSession`` in ``kaltura``), renewed once on a 401 by the session.
- ``stats``: ``HttpStats``, per-run requests/retries/throttling and rate-limit series.
- ``kaltura``: ``KalturaClient`` (media entries); ``zoom``: ``ZoomClient`` (meetings).
- ``fanout``: ``fan_out``/``FanOut``, bounded concurrent map with streamed results.
- ``progress``: ``Progress``, done/total and rate on a TTY or in the log.
"""

from courseinv.http_client.auth import AuthError, BearerToken, OAuth2ClientCredentials
from courseinv.http_client.canvas import CanvasClient, Gateway, GraphQLError
from courseinv.http_client.errors import (
    Forbidden,
    HttpError,
    NotFound,
    PermanentHttpError,
    RetriesExhausted,
    ThrottleStalled,
    Unauthorized,
    UnexpectedPayload,
)
from courseinv.http_client.fanout import FanOut, fan_out
from courseinv.http_client.progress import Progress
from courseinv.http_client.session import Action, Reply, RetryingSession, RetryPolicy, Verdict
from courseinv.http_client.stats import HttpStats
from courseinv.http_client.throttle import AdaptiveLimiter

__all__ = [
    "Action",
    "AdaptiveLimiter",
    "AuthError",
    "BearerToken",
    "CanvasClient",
    "FanOut",
    "Forbidden",
    "Gateway",
    "GraphQLError",
    "HttpError",
    "HttpStats",
    "NotFound",
    "OAuth2ClientCredentials",
    "PermanentHttpError",
    "Progress",
    "Reply",
    "RetriesExhausted",
    "RetryPolicy",
    "RetryingSession",
    "ThrottleStalled",
    "Unauthorized",
    "UnexpectedPayload",
    "Verdict",
    "fan_out",
]
