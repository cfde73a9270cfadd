"""The Canvas LMS API client: REST pagination, GraphQL, throttle awareness, fan-out.

Every job talks to Canvas through one ``CanvasClient``::

    with CanvasClient.from_config(ctx.config) as canvas:
        term = canvas.get(f"/api/v1/accounts/{acct}/terms/{term_id}")
        for course in canvas.paginate(f"/api/v1/accounts/{acct}/courses",
                                      {"enrollment_term_id": term_id,
                                       "include[]": ["total_students"]}):
            ...
        for term in canvas.paginate(f"/api/v1/accounts/{acct}/terms", key="enrollment_terms"):
            ...
        activity = canvas.get(f"/api/v1/courses/{cid}/analytics/activity", allow_404=True)
        data = canvas.graphql(query, {"id": "42"})              # the ``data`` object
        for node in canvas.graphql_connection(ENROLLMENTS_QUERY, {"courseId": "42"},
                                              ("course", "enrollmentsConnection")):
            ...
        run = canvas.map(fetch_one_course, course_ids, desc="enrollments", skip=(NotFound,))
        for course_id, result in run:   # completion order; run.skipped after the loop
            ...

API (paths are relative to the Canvas root, e.g. ``/api/v1/courses/1``; absolute URLs
are accepted only on the configured host, so the token never leaves it):

- ``CanvasClient(base_url, token, *, max_attempts=3, workers=8, timeout=(10, 60),
  policy=None, limiter=None, progress=Progress, per_page=100)``;
  ``CanvasClient.from_config(config)`` reads ``CANVAS.CANVAS_URL``,
  ``CANVAS.CANVAS_TOKEN``, ``MAX_REQ_ATTEMPTS`` and ``NUM_ASYNC_WORKERS``.
- ``get(path, params=None, *, allow_404=False) -> Any``: parsed JSON, ``None`` on an
  allowed 404.
- ``post(path, data=None) -> Any`` (form fields) and ``delete(path) -> Any``: parsed
  JSON; retried like every call (use ``post`` only where a repeat is harmless).
- ``paginate(path, params=None, *, key=None, per_page=None) -> Iterator``: the items of
  every page, following ``Link: rel="next"`` verbatim until absent; ``key`` picks the
  list out of object-shaped pages (``"enrollment_terms"``, ``"events"``). Pages may
  repeat rows: de-duplicate by id in the caller.
- ``graphql(query, variables=None, *, operation_name=None) -> dict``: the ``data``
  object; ``GraphQLError`` when the payload has ``errors``.
- ``graphql_connection(query, variables, path_to_connection, *, cursor_var="after",
  allow_null=False) -> Iterator[dict]``: the nodes of a connection across pages
  (``pageInfo { endCursor hasNextPage }``). The query must declare ``$after: String``
  (or ``cursor_var``) and select ``nodes`` (or ``edges { node }``) and ``pageInfo``. A
  ``null`` object on the path (course missing or roster not visible) raises
  ``GraphQLError`` unless ``allow_null``.
- ``map(func, items, *, desc="items", skip=()) -> FanOut``: ``func(item)`` for every
  item with at most ``workers`` in flight, progress reported (see ``fanout.py``).
- ``stats() -> dict``: requests, retries, throttled, pages, cost, ... for logs.

Errors (``errors.py``): ``Unauthorized`` (401), ``Forbidden`` (403 that is not
throttling), ``NotFound`` (404), ``PermanentHttpError`` (other 4xx),
``RetriesExhausted``, ``UnexpectedPayload``, ``GraphQLError``; all name the method and
URL path, never the token or query string.

Throttling: 429, or 403 whose body says "Rate Limit Exceeded", is retried on its own
budget; the ``AdaptiveLimiter`` (``throttle.py``) reads ``X-Rate-Limit-Remaining`` from
every response and lowers the number of requests in flight before the bucket empties.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from courseinv.http_client.errors import HttpError, UnexpectedPayload
from courseinv.http_client.fanout import FanOut
from courseinv.http_client.progress import Progress, ProgressFactory
from courseinv.http_client.session import Action, RetryingSession, RetryPolicy, Verdict
from courseinv.http_client.throttle import AdaptiveLimiter

T = TypeVar("T")
R = TypeVar("R")

GRAPHQL_PATH = "/api/graphql"


class GraphQLError(HttpError):
    """A GraphQL response carried ``errors`` (HTTP 200), or a required object was null."""

    def __init__(self, path: str, messages: Sequence[str]) -> None:
        self.messages = list(messages)
        shown = "; ".join(self.messages[:3])
        more = f" (+{len(self.messages) - 3} more)" if len(self.messages) > 3 else ""
        super().__init__("POST", path, f"GraphQL error: {shown}{more}")


def canvas_classify(response: requests.Response) -> Verdict | None:
    """Canvas's throttling: 403 with "Rate Limit Exceeded" (or remaining 0) throttles."""
    if response.status_code != 403:
        return None
    remaining = response.headers.get("X-Rate-Limit-Remaining", "").strip()
    if "rate limit exceeded" in response.text.lower() or remaining in {"0", "0.0"}:
        return Verdict(Action.THROTTLE, "403 Rate Limit Exceeded")
    return None


class CanvasClient:
    """One Canvas host and token: see the module docstring for the API."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_attempts: int = 3,
        workers: int = 8,
        timeout: tuple[float, float] = (10.0, 60.0),
        policy: RetryPolicy | None = None,
        limiter: AdaptiveLimiter | None = None,
        progress: ProgressFactory = Progress,
        per_page: int = 100,
    ) -> None:
        split = urlsplit(base_url)
        if split.scheme not in ("http", "https") or not split.netloc:
            raise ValueError("Canvas base URL must be an absolute http(s) URL")
        self.base_url = base_url.rstrip("/")
        self._origin = (split.scheme, split.netloc)
        self.workers = workers
        self.per_page = per_page
        self.progress = progress
        self.limiter = limiter or AdaptiveLimiter(workers)
        self._session = RetryingSession(
            name="canvas",
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": "course-inventory",
            },
            policy=policy or RetryPolicy(max_attempts=max_attempts),
            pool_size=workers,
            timeout=timeout,
            classify=canvas_classify,
            pacer=self.limiter,
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> CanvasClient:
        """Build from the validated config (``CANVAS`` section plus the HTTP knobs)."""
        canvas = config["CANVAS"]
        kwargs: dict[str, Any] = {
            "max_attempts": int(config.get("MAX_REQ_ATTEMPTS", 3)),
            "workers": int(config.get("NUM_ASYNC_WORKERS", 8)),
        }
        kwargs.update(overrides)
        return cls(canvas["CANVAS_URL"], canvas["CANVAS_TOKEN"], **kwargs)

    def __repr__(self) -> str:
        return f"CanvasClient(base_url={self.base_url!r}, token=<redacted>, workers={self.workers})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> CanvasClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- REST -------------------------------------------------------------------
    def get(
        self, path: str, params: Mapping[str, Any] | None = None, *, allow_404: bool = False
    ) -> Any:
        """GET one object; ``None`` when it is 404 and ``allow_404``."""
        return self._session.get_json(self.url(path), params, allow_404=allow_404)

    def post(self, path: str, data: Mapping[str, Any] | None = None) -> Any:
        """POST form fields; parsed JSON. Retried like every call, so only for requests
        whose repeat is harmless (starting an account report run)."""
        return self._session.request("POST", self.url(path), data=data).data

    def delete(self, path: str) -> Any:
        """DELETE one object (idempotent); parsed JSON."""
        return self._session.request("DELETE", self.url(path)).data

    def paginate(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        per_page: int | None = None,
    ) -> Iterator[Any]:
        """Yield the items of every page, following ``rel="next"`` until it is absent."""
        query: dict[str, Any] | None = {"per_page": per_page or self.per_page, **(params or {})}
        url: str | None = self.url(path)
        seen: set[str] = set()
        while url is not None:
            reply = self._session.request("GET", url, params=query)
            self._session.stats.add("pages")
            yield from _page_items(reply.data, key, urlsplit(url).path)
            query = None  # the next link already carries every parameter
            url = reply.links.get("next", {}).get("url")
            if url is not None:
                if url in seen:
                    raise UnexpectedPayload("GET", urlsplit(url).path, "pagination loops")
                seen.add(url)
                self._check_origin(url)

    # -- GraphQL ----------------------------------------------------------------
    def graphql(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        operation_name: str | None = None,
    ) -> dict[str, Any]:
        """Run one query; return its ``data``. Raises ``GraphQLError`` on ``errors``."""
        body: dict[str, Any] = {"query": query, "variables": dict(variables or {})}
        if operation_name:
            body["operationName"] = operation_name
        payload = self._session.request("POST", self.url(GRAPHQL_PATH), json=body).data
        if not isinstance(payload, dict):
            raise UnexpectedPayload("POST", GRAPHQL_PATH, "GraphQL response is not an object")
        if payload.get("errors"):
            raise GraphQLError(GRAPHQL_PATH, [_error_message(e) for e in payload["errors"]])
        data = payload.get("data")
        if not isinstance(data, dict):
            raise UnexpectedPayload("POST", GRAPHQL_PATH, "GraphQL response has no data")
        return data

    def graphql_connection(
        self,
        query: str,
        variables: Mapping[str, Any] | None,
        path_to_connection: Sequence[str],
        *,
        cursor_var: str = "after",
        allow_null: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Yield every node of the connection at ``path_to_connection``, page by page."""
        variables = dict(variables or {})
        cursor = variables.get(cursor_var)
        while True:
            data = self.graphql(query, {**variables, cursor_var: cursor})
            connection = _walk(data, path_to_connection)
            if connection is None:
                if allow_null:
                    return
                where = ".".join(path_to_connection)
                raise GraphQLError(GRAPHQL_PATH, [f"{where} is null (missing or not visible)"])
            yield from _connection_nodes(connection)
            page = connection.get("pageInfo") or {}
            if not page.get("hasNextPage"):
                return
            next_cursor = page.get("endCursor")
            if not next_cursor or next_cursor == cursor:
                raise UnexpectedPayload("POST", GRAPHQL_PATH, "connection cursor did not advance")
            cursor = next_cursor

    # -- fan-out ----------------------------------------------------------------
    def map(
        self,
        func: Callable[[T], R],
        items: Iterable[T],
        *,
        desc: str = "items",
        skip: tuple[type[BaseException], ...] = (),
    ) -> FanOut[T, R]:
        """Run ``func(item)`` for every item, ``workers`` at a time (see ``fanout.py``)."""
        return FanOut(
            func, items, workers=self.workers, desc=desc, skip=skip, progress=self.progress
        )

    def stats(self) -> dict[str, float]:
        """Counters for logs and benchmarks: requests, retries, throttled, pages, cost."""
        out: dict[str, float] = dict(self._session.stats.snapshot())
        out["throttle_waits"] = self.limiter.waits
        out["cost"] = round(self.limiter.total_cost, 3)
        if self.limiter.min_remaining is not None:
            out["min_remaining"] = self.limiter.min_remaining
        return out

    # -- URLs -------------------------------------------------------------------
    def url(self, path: str) -> str:
        """Absolute URL of ``path`` (a Canvas path, or a URL on the configured host)."""
        if path.startswith(("http://", "https://")):
            self._check_origin(path)
            return path
        return self.base_url + "/" + path.lstrip("/")

    def _check_origin(self, url: str) -> None:
        split = urlsplit(url)
        if (split.scheme, split.netloc) != self._origin:
            raise UnexpectedPayload("GET", split.path, "URL points outside the Canvas host")


def _page_items(data: Any, key: str | None, path: str) -> list[Any]:
    if key is not None:
        data = data.get(key) if isinstance(data, dict) else None
    if not isinstance(data, list):
        want = f"an object with a {key!r} list" if key else "a JSON list"
        raise UnexpectedPayload("GET", path, f"expected {want}")
    return data


def _walk(data: Any, path: Sequence[str]) -> Any:
    for name in path:
        if not isinstance(data, dict):
            return None
        data = data.get(name)
    return data


def _connection_nodes(connection: Mapping[str, Any]) -> list[dict[str, Any]]:
    if connection.get("nodes") is not None:
        return [n for n in connection["nodes"] if n is not None]
    edges = connection.get("edges") or []
    return [e["node"] for e in edges if e and e.get("node") is not None]


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        message = str(error.get("message", error))
        path = error.get("path")
        return f"{message} (at {'.'.join(map(str, path))})" if path else message
    return str(error)
