"""Small purpose-built fakes on the project's ``SandboxServer`` base, for client tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from courseinv.sandbox.httpserver import Request, Response, Route, SandboxServer, json_response

TOKEN = "tok-SECRET-7f3a9c"


class ScriptedServer(SandboxServer):
    """Routes whose answers are scripted per test; checks the Bearer token.

    ``script(endpoint, [Response, ...])`` queues responses for an endpoint; once the
    queue is empty the endpoint's default handler answers.
    """

    name = "scripted"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._scripts: dict[str, list[Response]] = {}
        self._lock = threading.Lock()
        self.pages = 5
        self.per_page_seen: list[str | None] = []
        self.add_route("GET", r"/api/v1/items", "items", self._items)
        self.add_route("GET", r"/api/v1/terms", "terms", self._terms)
        self.add_route("GET", r"/api/v1/things/(\d+)", "thing", self._thing)
        self.add_route("GET", r"/api/v1/slow/(\d+)", "slow", self._slow)
        self.add_route("POST", r"/api/graphql", "graphql", self._graphql)

    def reset(self) -> None:
        """Forget scripts, counters and knobs between tests sharing one server."""
        with self._lock:
            self._scripts.clear()
        self.log.reset()
        self.pages = 5
        self.per_page_seen.clear()

    def script(self, endpoint: str, responses: list[Response]) -> None:
        with self._lock:
            self._scripts.setdefault(endpoint, []).extend(responses)

    def before(self, request: Request, route: Route) -> Response | None:
        if request.bearer_token() != TOKEN:
            return json_response({"errors": [{"message": "Invalid access token."}]}, 401)
        with self._lock:
            queue = self._scripts.get(route.endpoint)
            if queue:
                return queue.pop(0)
        return None

    def _items(self, request: Request) -> Response:
        """Pages of integers; the last row of each page repeats on the next one."""
        page = int(request.arg("page", "1") or 1)
        per_page = int(request.arg("per_page", "10") or 10)
        self.per_page_seen.append(request.arg("per_page"))
        start = (page - 1) * (per_page - 1)
        rows = [{"id": i} for i in range(start, start + per_page)]
        headers = {}
        if page < self.pages:
            nxt = f"{self.url}/api/v1/items?page={page + 1}&per_page={per_page}&x=%C3%A9"
            headers["Link"] = f'<{nxt}>; rel="next",<{self.url}/api/v1/items?page=1>; rel="first"'
        return json_response(rows, **headers)

    def _terms(self, request: Request) -> Response:
        if request.arg("page") == "2":
            return json_response({"enrollment_terms": [{"id": 2}]})
        link = f'<{self.url}/api/v1/terms?page=2>; rel="next"'
        return json_response({"enrollment_terms": [{"id": 1}]}, link=link)

    def _thing(self, request: Request) -> Response:
        assert request.match is not None
        return json_response({"id": int(request.match.group(1))})

    def _slow(self, request: Request) -> Response:
        assert request.match is not None
        time.sleep(float(request.arg("s", "0.1") or 0.1))
        return json_response({"id": int(request.match.group(1))})

    def _graphql(self, request: Request) -> Response:
        """A two-page connection keyed by cursor, enough for the client's paging rules."""
        variables = request.json().get("variables") or {}
        after = variables.get("after")
        if after is None:
            nodes, page = [{"_id": "1"}, {"_id": "2"}], {"endCursor": "c2", "hasNextPage": True}
        elif after == "c2":
            nodes, page = [{"_id": "3"}], {"endCursor": "c3", "hasNextPage": False}
        else:
            return json_response({"errors": [{"message": f"bad cursor {after}"}]})
        course = {"_id": "9", "enrollmentsConnection": {"nodes": nodes, "pageInfo": page}}
        return json_response({"data": {"course": course}})


class BucketServer(SandboxServer):
    """Canvas's throttle model in miniature: a leaky bucket with up-front reservations.

    Each request reserves ``up_front`` units while it runs (``work_s``), then keeps
    ``cost``; the bucket leaks ``leak`` units/s; a request that would lift the level to
    ``hwm`` gets ``403 Forbidden (Rate Limit Exceeded)``.
    """

    name = "bucket"

    def __init__(
        self,
        *,
        hwm: float = 700.0,
        up_front: float = 50.0,
        cost: float = 1.0,
        leak: float = 10.0,
        work_s: float = 0.02,
        status: int = 403,
        initial_level: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.hwm, self.up_front, self.cost, self.leak = hwm, up_front, cost, leak
        self.work_s, self.throttle_status = work_s, status
        self._clock = clock
        self._level = initial_level  # > 0: someone else used the token just before
        self._t = clock()
        self._lock = threading.Lock()
        self.peak_in_flight = 0
        self._in_flight = 0
        self.add_route("GET", r"/api/v1/courses/(\d+)", "course", self._course)

    def _leak(self) -> None:
        now = self._clock()
        self._level = max(0.0, self._level - self.leak * (now - self._t))
        self._t = now

    def _course(self, request: Request) -> Response:
        with self._lock:
            self._leak()
            if self._level + self.up_front >= self.hwm:
                return Response(
                    self.throttle_status,
                    "403 Forbidden (Rate Limit Exceeded)\n",
                    {"X-Rate-Limit-Remaining": "0.0"},
                )
            self._level += self.up_front
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        time.sleep(self.work_s)
        with self._lock:
            self._leak()
            self._in_flight -= 1
            self._level += self.cost - self.up_front
            remaining = self.hwm - self._level
        assert request.match is not None
        headers = {
            "X-Request-Cost": f"{self.cost:.4f}",
            "X-Rate-Limit-Remaining": f"{remaining:.4f}",
        }
        return json_response({"id": int(request.match.group(1))}, **headers)
