"""`events serve` end to end: real HTTP into the receiver, real MariaDB/PostgreSQL/SQLite.

The receiver runs on uvicorn in a thread (``ServerThread``), verifies tokens against
the sandbox JWKS server, and stores through the LIVE_EVENTS store. Deliveries are
posted by the sandbox poster (kept-alive HTTP/1.1, retries on 503 as a sender does).
The database goes down for real: a TCP proxy in front of MariaDB/PostgreSQL is closed,
the SQLite file's directory is moved away.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from courseinv.db.engine import make_engine
from courseinv.db.migrate import migrate
from courseinv.live_events.receiver import ReceiverOptions
from courseinv.live_events.receiver_cli import ServerThread, make_receiver
from courseinv.sandbox.institution import Institution
from courseinv.sandbox.live_events import StreamSpec, generate_stream
from courseinv.sandbox.live_events_signing import (
    JwksServer,
    KeyRing,
    PostPlan,
    hmac_token,
    post_stream,
    unsigned_token,
)
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url

from tests.conftest import create_database, drop_database, run_cli
from tests.foundation.test_packaging import BLOCKING_CLI, SANDBOX_EXTRA
from tests.live_events.helpers import assert_matches_truth

SHARD = 10**13  # Canvas global id = shard * 10^13 + local id; the sandbox uses shard 1
T0 = datetime(2026, 11, 30, 9, 0, 0)


def gid(local: int) -> str:
    return str(SHARD + local)


def at(minutes: float) -> str:
    return datetime.fromtimestamp(T0.timestamp() + minutes * 60).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def canvas(name: str, minutes: float, body: dict[str, Any], *, user: int = 7, course: int | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "event_name": name, "event_time": at(minutes), "producer": "canvas",
        "root_account_id": gid(1), "user_id": gid(user), "request_id": str(uuid.uuid4()),
    }
    if course is not None:
        metadata.update(context_type="Course", context_id=gid(course))
    return {"metadata": metadata, "body": body}


def course_event(name: str, course: int, title: str, state: str, minutes: float) -> dict[str, Any]:
    return canvas(name, minutes, {"course_id": gid(course), "name": title, "workflow_state": state,
                                  "account_id": gid(2), "uuid": uuid.uuid4().hex})


def enrollment_event(name: str, enrollment: int, course: int, user: int, state: str, minutes: float) -> dict[str, Any]:
    return canvas(name, minutes, {
        "enrollment_id": gid(enrollment), "course_id": gid(course), "course_section_id": gid(course + 1000),
        "user_id": gid(user), "type": "StudentEnrollment", "workflow_state": state,
    })


def submission_event(course: int, user: int, minutes: float) -> dict[str, Any]:
    return canvas("submission_created", minutes, {
        "submission_id": gid(int(minutes * 100) + user), "assignment_id": gid(300), "user_id": gid(user),
        "submitted_at": at(minutes), "workflow_state": "submitted", "submission_type": "online_text_entry",
    }, user=user, course=course)


def caliper_view(course: int, user: int, minutes: float) -> dict[str, Any]:
    event = {
        "@context": "http://purl.imsglobal.org/ctx/caliper/v1p1",
        "id": f"urn:uuid:{uuid.uuid4()}",
        "type": "NavigationEvent",
        "actor": {"id": f"urn:instructure:canvas:user:{gid(user)}", "type": "Person"},
        "action": "NavigatedTo",
        "object": {"id": f"urn:instructure:canvas:wikiPage:{gid(900 + course)}", "type": "Page",
                   "name": "Syllabus"},
        "group": {"id": f"urn:instructure:canvas:course:{gid(course)}", "type": "CourseOffering"},
        "eventTime": at(minutes),
        "edApp": {"id": "http://canvas.sandbox/", "type": "SoftwareApplication"},
    }
    return {"sensor": "http://canvas.sandbox/", "sendTime": at(minutes),
            "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p1", "data": [event]}


def caliper_course_created(course: int, title: str, minutes: float) -> dict[str, Any]:
    envelope = caliper_view(course, 7, minutes)
    event = envelope["data"][0]
    event.update(type="Event", action="Created",
                 object={"id": f"urn:instructure:canvas:course:{gid(course)}", "type": "CourseOffering",
                         "name": title})
    event.pop("group")
    return envelope


# -- what the stream holds, and what the tables must say afterwards ---------------------

def stream() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Events in arrival order (with an out-of-order update) and the expected tables."""
    events = [
        course_event("course_created", 11, "Algebra", "claimed", 0),
        course_event("course_created", 12, "Biology", "claimed", 1),
        caliper_course_created(13, "Chemistry", 2),
        course_event("course_updated", 11, "Algebra I", "available", 30),
        course_event("course_updated", 12, "Biology (old name)", "claimed", 0.5),  # older: loses
        enrollment_event("enrollment_created", 501, 11, 71, "invited", 3),
        enrollment_event("enrollment_created", 502, 11, 72, "invited", 3),
        enrollment_event("enrollment_updated", 501, 11, 71, "active", 40),
        enrollment_event("enrollment_updated", 502, 11, 72, "deleted", 2),  # older than created
    ]
    views = [(11, 71, 5), (11, 71, 15), (11, 72, 20), (12, 71, 65), (13, 73, 70)]
    events += [caliper_view(c, u, m) for c, u, m in views]
    events += [submission_event(11, 71, 25), submission_event(11, 71, 26), submission_event(12, 72, 61)]
    expected = {
        "live_course_state": {11: ("Algebra I", "available"), 12: ("Biology", "claimed"),
                              13: ("Chemistry", None)},
        "live_enrollment_state": {501: (11, 71, "active"), 502: (11, 72, "invited")},
        # (course, hour, user) -> (page_views, participations)
        "live_course_activity_hourly": {
            (11, 9, 71): (2, 2), (11, 9, 72): (1, 0), (12, 10, 71): (1, 0), (12, 10, 72): (0, 1),
            (13, 10, 73): (1, 0),
        },
    }
    return events, expected


def tables(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        courses = {r.course_id: (r.name, r.workflow_state) for r in conn.execute(
            text("SELECT course_id, name, workflow_state FROM live_course_state"))}
        enrollments = {r.enrollment_id: (r.course_id, r.user_id, r.workflow_state) for r in conn.execute(
            text("SELECT enrollment_id, course_id, user_id, workflow_state FROM live_enrollment_state"))}
        activity = {}
        for r in conn.execute(text("SELECT course_id, hour_utc, user_id, page_views, participations "
                                   "FROM live_course_activity_hourly")):
            hour = r.hour_utc if isinstance(r.hour_utc, datetime) else datetime.fromisoformat(str(r.hour_utc))
            activity[(r.course_id, hour.hour, r.user_id)] = (r.page_views, r.participations)
    return {"live_course_state": courses, "live_enrollment_state": enrollments,
            "live_course_activity_hourly": activity}


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(text(table))).scalar_one()


# -- fixtures ---------------------------------------------------------------------------

class TcpProxy:
    """Forwards 127.0.0.1:<port> to a database; ``down()`` resets every connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener: socket.socket | None = None
        self.port = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class Database:
    """A migrated database the receiver reaches through something the test can break."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.proxy: TcpProxy | None = None
        self._server_url: str | None = None
        if kind == "sqlite":
            self.dir = tmp_path / "db"
            self.dir.mkdir()
            url = f"sqlite:///{self.dir / 'inventory.sqlite3'}"
        else:
            self._server_url = create_database(kind)
            parsed = make_url(self._server_url)
            self.proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 0)).up()
            url = parsed.set(host="127.0.0.1", port=self.proxy.port).render_as_string(hide_password=False)
        self.engine = make_engine(url)
        migrate(self.engine)
        # The test reads the tables directly, never through the proxy it breaks.
        self.direct = make_engine(self._server_url or url)

    def down(self) -> None:
        if self.proxy is not None:
            self.proxy.down()
        else:
            self.dir.rename(self.dir.with_name("db-away"))

    def up(self) -> None:
        if self.proxy is not None:
            self.proxy.up()
        else:
            self.dir.with_name("db-away").rename(self.dir)

    def close(self) -> None:
        self.engine.dispose()
        self.direct.dispose()
        if self.proxy is not None:
            self.proxy.down()
        if self._server_url:
            drop_database(self._server_url)


@pytest.fixture(params=["sqlite", "mariadb", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    database = Database(request.param, tmp_path)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    return KeyRing(prefix="http-test")


class Running:
    def __init__(self, thread: ServerThread, jwks: JwksServer) -> None:
        self.url = thread.url + "/"
        self.jwks = jwks
        self.thread = thread

    def post(self, body: bytes | str, **headers: str) -> requests.Response:
        return requests.post(self.url, data=body, headers=headers, timeout=30)

    def health(self) -> dict[str, Any]:
        return requests.get(self.url + "healthz", timeout=10).json()


@contextlib.contextmanager
def running(engine: Engine, ring: KeyRing, **options: Any) -> Iterator[Running]:
    refetch = options.pop("jwks_min_refetch_s", 0.2)
    with JwksServer(ring) as jwks:
        receiver = make_receiver(engine, jwks.jwks_url, ReceiverOptions(**options),
                                 jwks_min_refetch_s=refetch)
        with ServerThread(receiver) as thread:
            yield Running(thread, jwks)


def signed(ring: KeyRing, events: list[dict[str, Any]]) -> list[bytes]:
    return [ring.sign(e).encode() for e in events]


# -- tests ------------------------------------------------------------------------------

def test_signed_stream_of_both_formats_lands_and_projects_exactly(db: Database) -> None:
    ring = KeyRing(prefix=f"stream-{db.kind}")
    events, expected = stream()
    with running(db.engine, ring) as run:
        first = post_stream(signed(ring, events[:8]), PostPlan(run.url, concurrency=4))
        assert run.jwks.fetches == 1
        time.sleep(0.25)
        ring.rotate()  # mid-stream: a key the receiver has not seen yet
        rest = post_stream(signed(ring, events[8:]), PostPlan(run.url, concurrency=4))
        assert run.jwks.fetches == 2  # one refetch for the unknown kid
        # Duplicates: the same events signed again (new iat/exp, same event) and re-posted.
        again = post_stream(signed(ring, events[:5] + events[-3:]), PostPlan(run.url, concurrency=8))
        health = run.health()
    for result in (first, rest, again):
        assert dict(result.statuses) == {200: result.sent}, result.statuses
    assert count(db.direct, "live_event") == len(events)
    assert count(db.direct, "live_event_rejected") == 0
    assert tables(db.direct) == expected
    assert health["counts"]["accepted"] == len(events) + 8
    assert health["database"] == "ok"


def test_sandbox_stream_matches_its_ground_truth(db: Database, institution: Institution) -> None:
    """The sandbox institution's stream (both formats, redeliveries, out of order, unknown
    types and fields, over-long values), signed and posted concurrently with a key
    rotation halfway: the tables end exactly as the stream's ground truth says."""
    spec = StreamSpec(events=160, seed=13, new_field_rate=0.05, unknown_type_rate=0.03,
                      long_value_rate=0.03, duplicate_rate=0.08)
    stream_ = generate_stream(institution, spec)
    claims = [json.loads(message) for message in stream_.messages]
    half = len(claims) // 2
    ring = KeyRing(prefix=f"truth-{db.kind}")
    with running(db.engine, ring) as run:
        first = post_stream(signed(ring, claims[:half]), PostPlan(run.url, concurrency=8))
        time.sleep(0.25)
        ring.rotate()
        second = post_stream(signed(ring, claims[half:]), PostPlan(run.url, concurrency=8))
        fetches = run.jwks.fetches
    assert first.statuses == {200: half} and second.statuses == {200: len(claims) - half}
    assert fetches == 2
    assert_matches_truth(db.direct, stream_.truth)


def test_attacks_are_refused_and_nothing_is_stored(db: Database, ring: KeyRing, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    event = course_event("course_created", 21, "Secret Course Name", "available", 0)
    kid = ring.current.kid
    token = ring.sign(event)
    head, body, sig = token.split(".")
    other = KeyRing(prefix="attacker")
    other.current.kid = kid  # the attacker's own key under the genuine kid
    attacks: dict[str, tuple[bytes | str, int]] = {
        "forged signature (attacker's key, genuine kid)": (other.sign(event), 401),
        "tampered claims": (f"{head}.{unsigned_token(event, {}).split('.')[1]}.{sig}", 401),
        "wrong algorithm (HS256 keyed with the public key)": (hmac_token(event, ring.current.public_pem(), kid), 401),
        "wrong algorithm (RS512 header)": (unsigned_token(event, {"alg": "RS512", "kid": kid}) + sig, 401),
        "alg none": (unsigned_token(event, {"alg": "none", "kid": kid}), 401),
        "expired token": (ring.sign(event, now=time.time() - 7200), 401),
        "unknown kid": (unsigned_token(event, {"alg": "RS256", "kid": "nobody"}) + sig, 401),
        "unsigned JSON with REQUIRE_SIGNED on": (json.dumps(event), 401),
        "oversized body": (ring.sign({**event, "pad": "x" * 3000}), 413),
        "non-JSON body": ("this is not json", 400),
        "empty body": ("", 400),
        "binary body": (b"\x00\xff" + os.urandom(64), 400),
    }
    with caplog.at_level(logging.INFO), running(db.engine, ring, max_body_bytes=2048, jwks_min_refetch_s=0) as run:
        got = {name: run.post(body).status_code for name, (body, _) in attacks.items()}
        wrong_envelope = ring.sign({"hello": "world", "data_version": 3})
        envelope_status = run.post(wrong_envelope).status_code
        health = run.health()
    assert got == {name: status for name, (_, status) in attacks.items()}
    # Readable but invalid: kept in live_event_rejected with the reason, answered 422.
    assert envelope_status == 422
    assert count(db.direct, "live_event") == 0
    with db.direct.connect() as conn:
        rows = conn.execute(text("SELECT source, reason FROM live_event_rejected")).all()
    assert [(r.source, "envelope" in r.reason) for r in rows] == [("https", True)]
    counts = health["counts"]
    assert counts["bad_token"] == 7 and counts["unsigned"] == 1 and counts["too_large"] == 1
    assert counts["unreadable"] == 3
    assert counts["rejected"] == 1 and "accepted" not in counts
    logged = caplog.text
    assert "Secret Course Name" not in logged and sig not in logged and body not in logged
    assert "refused (HTTP 401)" in logged and "refused (HTTP 413)" in logged


def test_database_down_answers_503_and_nothing_is_lost_once_back(db: Database, ring: KeyRing) -> None:
    events = [course_event("course_created", 100 + i, f"Course {i}", "available", i) for i in range(40)]
    bodies = signed(ring, events)
    with running(db.engine, ring) as run:
        assert post_stream(bodies[:10], PostPlan(run.url, concurrency=4)).statuses == {200: 10}
        db.down()
        direct = run.post(bodies[10])
        assert direct.status_code == 503 and direct.headers["Retry-After"]
        assert run.health()["database"] == "unavailable"
        result: dict[str, Any] = {}
        plan = PostPlan(run.url, concurrency=6, retry_delay_s=0.1, max_attempts=200)

        def send() -> None:
            result["r"] = post_stream(bodies[10:], plan)

        sender = threading.Thread(target=send)
        sender.start()  # retries while the database is down...
        time.sleep(1.5)
        db.up()  # ...and gets through once it is back
        sender.join(timeout=120)
        health = run.health()
    posted = result["r"]
    assert posted.statuses == {200: 30}
    assert posted.retry_statuses[503] > 0
    assert count(db.direct, "live_event") == 40
    assert sorted(tables(db.direct)["live_course_state"]) == [100 + i for i in range(40)]
    assert health["counts"]["db_unavailable"] >= 1 and health["database"] == "ok"


def test_concurrent_requests_share_transactions(tmp_path: Path, ring: KeyRing) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'inventory.sqlite3'}")
    migrate(engine)
    events = [caliper_view(11, 1000 + i, i % 50) for i in range(300)]
    bodies = signed(ring, events)
    with running(engine, ring) as run:
        result = post_stream(bodies, PostPlan(run.url, concurrency=32))
        health = run.health()
    assert result.statuses == {200: 300}
    assert count(engine, "live_event") == 300
    assert health["transactions"] < 150, health  # grouped, not one per request
    assert health["largest_transaction"] > 1
    engine.dispose()


def test_unsigned_deliveries_when_require_signed_is_false(tmp_path: Path, ring: KeyRing) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'inventory.sqlite3'}")
    migrate(engine)
    event = course_event("course_created", 31, "Open Course", "available", 0)
    with running(engine, ring, require_signed=False) as run:
        assert run.post(json.dumps(event), **{"Content-Type": "application/json"}).status_code == 200
        assert run.post(ring.sign(event)).status_code == 200  # signed ones still verified
        assert run.post(hmac_token(event, b"k", ring.current.kid)).status_code == 401
        assert run.post("{not json").status_code == 400
        assert run.post("[1, 2]").status_code == 400
    assert count(engine, "live_event") == 1  # the signed copy is the same event
    engine.dispose()


@pytest.mark.parametrize("processes", [1, 2])
def test_events_serve_command_serves_until_sigterm_without_the_sandbox(processes: int, tmp_path: Path, ring: KeyRing) -> None:
    with JwksServer(ring) as jwks:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = tmp_path / "env.hjson"
        config.write_text(json.dumps({
            "JOB_NAMES": ["LIVE_EVENTS"], "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "INFO",
            "LIVE_EVENTS": {"SQS_QUEUE_URL": "http://127.0.0.1:1/q", "AWS_REGION": "us-east-1",
                            "JWKS_URL": jwks.jwks_url, "LISTEN": f"127.0.0.1:{port}"},
        }))
        import subprocess
        import sys
        # The production command, with the sandbox and its extra made unimportable.
        blocked = ",".join((*SANDBOX_EXTRA, "courseinv.sandbox"))
        proc = subprocess.Popen(
            [sys.executable, "-c", BLOCKING_CLI, blocked, "--config", str(config), "events", "serve",
             "--processes", str(processes)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(url + "/healthz", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.2)
            tokens = [ring.sign(course_event("course_created", 41 + i, "CLI Course", "available", 0))
                      for i in range(6)]
            token = tokens[0]
            # Fresh connections, so that with two processes both get some.
            assert [requests.post(url + "/", data=t, timeout=30).status_code for t in tokens] == [200] * 6
            assert requests.post(url + "/", data=token[:-3], timeout=10).status_code == 401
        finally:
            proc.terminate()
            output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert token not in output and token.split(".")[1] not in output
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'course_inventory.sqlite3'}")
    assert count(engine, "live_event") == 6
    engine.dispose()


def test_events_serve_with_a_bad_listen_address_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "env.hjson"
    config.write_text(json.dumps({"JOB_NAMES": ["LIVE_EVENTS"], "DATA_DIR": str(tmp_path / "data"),
                                  "LIVE_EVENTS": {"LISTEN": "127.0.0.1:99999"}}))
    result = run_cli(["--config", str(config), "events", "serve"])
    assert result.returncode == 2, result.stderr
    assert "LISTEN" in result.stderr and "Traceback" not in result.stderr


def test_a_flood_of_refusals_is_logged_at_most_ten_times_a_minute(tmp_path: Path, ring: KeyRing, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'inventory.sqlite3'}")
    migrate(engine)
    with caplog.at_level(logging.INFO), running(engine, ring) as run:
        result = post_stream([b"{}"] * 40, PostPlan(run.url, concurrency=4, content_type="application/json"))
        health = run.health()
    assert result.statuses == {401: 40} and health["counts"]["unsigned"] == 40
    assert caplog.text.count("refused (HTTP 401): unsigned delivery refused") == 10
    engine.dispose()
