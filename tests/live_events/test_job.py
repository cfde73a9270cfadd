"""LIVE_EVENTS over the real SQS protocol (MiniStack's SQS, unmodified boto3) into SQLite,
MariaDB and PostgreSQL: ground truth, partial drains, redeliveries after a crash between
commit and delete, competing consumers, a database failure, bad messages, secrets.

Queues stay short: tests are about behaviour; scale belongs to the benchmark."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from courseinv.db.engine import make_engine
from courseinv.db.migrate import migrate
from courseinv.db.tables import data_source_status, job_run, live_event, live_event_rejected
from courseinv.live_events.job import drain
from courseinv.live_events.parse import read_events
from courseinv.live_events.sqs import Queue
from courseinv.live_events.store import store_batch
from courseinv.sandbox.live_events import StreamSpec, generate_stream
from courseinv.sandbox.sqs import ACCESS_KEY, SECRET_KEY, queue_depth, send_all
from sqlalchemy import select, text

from tests.conftest import run_cli
from tests.live_events.helpers import assert_matches_truth, count, projections, write_config

DATABASES = ["sqlite", "mariadb", "postgres"]
MESSY = dict(
    duplicate_rate=0.08,
    out_of_order_rate=0.3,
    malformed_rate=0.04,
    unknown_type_rate=0.03,
    unprojected_rate=0.05,
    new_field_rate=0.08,
    long_value_rate=0.02,
)


def _stream(institution, events: int, seed: int, **rates):
    return generate_stream(institution, StreamSpec(events=events, seed=seed, **{**MESSY, **rates}))


def _engine(url: str):
    engine = make_engine(url)
    migrate(engine)
    return engine


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
def test_one_run_drains_the_queue_into_the_ground_truth(
    database_url, sqs, queue_url, institution, tmp_path: Path
) -> None:
    stream = _stream(institution, 60, seed=1)
    client = sqs.client()
    send_all(client, queue_url, stream.messages)
    config = write_config(tmp_path, database_url, sqs.config(queue_url))

    result = run_cli(["--config", str(config), "run"])
    assert result.returncode == 0, result.stderr[-3000:]

    engine = make_engine(database_url)
    try:
        assert_matches_truth(engine, stream.truth)
        assert queue_depth(client, queue_url) == (0, 0)
        with engine.connect() as conn:
            run = conn.execute(select(job_run)).one()
            assert (run.job_name, run.status) == ("LIVE_EVENTS", "succeeded")
            fresh = conn.execute(select(data_source_status)).one()
            assert fresh.data_source_name == "CANVAS_LIVE_EVENTS"
            assert (
                fresh.data_updated_at == stream.truth.newest_event_time.replace(microsecond=0)
                or fresh.data_updated_at == stream.truth.newest_event_time
            )
        assert "events stored" in result.stderr and "rejected" in result.stderr
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
def test_partial_drains_and_a_crash_between_commit_and_delete_count_once(
    database_url, sqs, queue_url, institution
) -> None:
    stream = _stream(institution, 50, seed=2)
    client = sqs.client()
    send_all(client, queue_url, stream.messages)
    engine = _engine(database_url)
    queue = Queue(sqs.config(queue_url))
    try:
        # A consumer that crashes after its commit, before deleting: its messages come back.
        crashed = queue.receive(10)
        items = [i for m in crashed for i in read_events(m.body, source="sqs")]
        store_batch(engine, items)
        before = projections(engine)
        assert queue.release(crashed) == 0  # visible again at once (as after the timeout)

        runs = 0
        while queue_depth(client, queue_url) != (0, 0):
            totals = drain(queue, engine, max_messages=25, batch_messages=10)
            assert totals.messages <= 25
            # Nothing received and left in flight: stored and deleted, or never taken.
            assert queue_depth(client, queue_url)[1] == totals.not_deleted
            runs += 1
        assert runs >= 3
        assert_matches_truth(engine, stream.truth)
        assert before["events"] > 0

        # Every message again (a full redelivery): nothing changes.
        send_all(client, queue_url, stream.messages[:40])
        totals = drain(queue, engine, max_messages=1000)
        assert totals.stored == 0 and totals.messages == 40
        assert_matches_truth(engine, stream.truth)
    finally:
        queue.close()
        engine.dispose()


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
def test_three_concurrent_consumers_end_with_the_ground_truth(
    database_url, sqs, queue_url, institution
) -> None:
    stream = _stream(institution, 60, seed=3)
    client = sqs.client()
    send_all(client, queue_url, stream.messages)
    _engine(database_url).dispose()
    errors: list[BaseException] = []
    totals = []

    def consume() -> None:
        engine, queue = make_engine(database_url), Queue(sqs.config(queue_url))
        try:
            totals.append(drain(queue, engine, max_messages=10_000, batch_messages=10))
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            queue.close()
            engine.dispose()

    threads = [threading.Thread(target=consume) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not errors, errors
    assert sum(t.messages for t in totals) >= len(stream.messages)
    # They really competed: at least two stored batches (a third may find the queue empty).
    assert sum(t.messages > 0 for t in totals) >= 2
    engine = make_engine(database_url)
    try:
        assert_matches_truth(engine, stream.truth)
        # A message two consumers received at once (the local server, like SQS after a
        # visibility timeout, may hand one out twice) is deleted by one; the other's stale
        # receipt is refused and the copy returns later, already stored.
        visible, in_flight = queue_depth(client, queue_url)
        assert visible == 0 and in_flight == sum(t.not_deleted for t in totals)
    finally:
        engine.dispose()


FAIL_LINKS = {
    "sqlite": [
        "CREATE TRIGGER fail_links BEFORE INSERT ON lti_resource_link "
        "BEGIN SELECT RAISE(ABORT, 'simulated database failure'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION fail_links() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'simulated database failure'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER fail_links BEFORE INSERT ON lti_resource_link "
        "FOR EACH ROW EXECUTE FUNCTION fail_links()",
    ],
    "mysql": [
        "CREATE TRIGGER fail_links BEFORE INSERT ON lti_resource_link FOR EACH ROW "
        "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'simulated database failure'"
    ],
}


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
def test_a_database_failure_keeps_the_batch_on_the_queue_and_the_next_run_completes(
    database_url, sqs, queue_url, institution, tmp_path: Path
) -> None:
    stream = _stream(institution, 40, seed=4)
    client = sqs.client()
    send_all(client, queue_url, stream.messages)
    engine = _engine(database_url)
    try:
        with engine.begin() as conn:
            for ddl in FAIL_LINKS[engine.dialect.name]:
                conn.execute(text(ddl))
        config = write_config(tmp_path, database_url, sqs.config(queue_url, BATCH_MESSAGES=20))
        failed = run_cli(["--config", str(config), "run"])
        assert failed.returncode == 1, failed.stderr[-2000:]
        assert "simulated database failure" in failed.stderr
        # Nothing lost: every message is stored, rejected, or still on the queue.
        visible, in_flight = queue_depth(client, queue_url)
        assert in_flight == 0 and visible > 0
        with engine.connect() as conn:
            reason = conn.execute(select(job_run.c.status, job_run.c.reason)).one()
        assert reason.status == "failed"

        with engine.begin() as conn:
            on = " ON lti_resource_link" if engine.dialect.name == "postgresql" else ""
            conn.execute(text(f"DROP TRIGGER fail_links{on}"))
        again = run_cli(["--config", str(config), "run"])
        assert again.returncode == 0, again.stderr[-2000:]
        assert_matches_truth(engine, stream.truth)
        assert queue_depth(client, queue_url) == (0, 0)
    finally:
        engine.dispose()


MALFORMED = [
    ("not json", "not JSON"),
    ("[1, 2, 3]", "unknown envelope"),
    ('{"hello": "world"}', "unknown envelope"),
    ('{"metadata": {"event_time": "2026-09-01T00:00:00Z"}, "body": {}}', "event_name"),
    (
        '{"metadata": {"event_name": "course_updated", "event_time": "soon"}, "body": {"course_id": "5"}}',
        "unreadable time",
    ),
    (
        '{"metadata": {"event_name": "course_updated", "event_time": "2026-09-01T00:00:00Z"}, "body": {"course_id": [5]}}',
        "body.course_id",
    ),
    (
        '{"metadata": {"event_name": "enrollment_updated", "event_time": "2026-09-01T00:00:00Z"}, "body": {}}',
        "enrollment_id",
    ),
    ('{"sensor": "s", "sendTime": "2026-09-01T00:00:00Z", "dataVersion": "v", "data": []}', "data"),
    (
        '{"sensor": "s", "sendTime": "2026-09-01T00:00:00Z", "dataVersion": "v", "data": [{"type": "Event"}]}',
        '"id" is a required property',
    ),
    (
        '{"sensor": "s", "sendTime": "2026-09-01T00:00:00Z", "dataVersion": "v", "data": [{"id": "urn:uuid:1", '
        '"type": "Event", "action": "Created", "eventTime": "2026-09-01T00:00:00Z", "actor": "someone", '
        '"object": {"id": "x"}}]}',
        "actor",
    ),
    ('{"metadata": {"event_name": "course_created", "event_ti', "not JSON"),
]


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
def test_every_malformed_class_is_rejected_with_its_reason_and_the_run_goes_on(
    database_url, sqs, queue_url, institution
) -> None:
    good = _stream(institution, 20, seed=5, malformed_rate=0.0, duplicate_rate=0.0)
    client = sqs.client()
    bodies = [body for body, _ in MALFORMED]
    send_all(client, queue_url, [*bodies, *good.messages])
    engine = _engine(database_url)
    queue = Queue(sqs.config(queue_url))
    try:
        totals = drain(queue, engine, max_messages=1000, batch_messages=7)
        assert totals.rejected == len(MALFORMED)
        assert totals.stored == good.truth.events
        with engine.connect() as conn:
            rejects = {r.payload: r.reason for r in conn.execute(select(live_event_rejected))}
            stored = conn.execute(select(live_event.c.payload)).scalars().all()
        for body, why in MALFORMED:
            assert why in rejects[body], (body, rejects[body])
        # Nothing lost: each message is a live_event payload or a reject, none left queued.
        assert set(bodies) == set(rejects)
        assert set(good.messages) <= set(stored) | set(rejects)
        assert queue_depth(client, queue_url) == (0, 0)
    finally:
        queue.close()
        engine.dispose()


def test_unreachable_queue_fails_the_job_and_no_secret_is_printed(sqs, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    section = sqs.config(
        "http://127.0.0.1:9/000000000000/nowhere", SQS_ENDPOINT_URL="http://127.0.0.1:9"
    )
    config = write_config(tmp_path, url, section, MAX_REQ_ATTEMPTS=1)
    result = run_cli(["--config", str(config), "run"])
    assert result.returncode == 1
    assert "SQS receive_message on http://127.0.0.1:9/000000000000/nowhere failed" in result.stderr
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert secret not in result.stdout + result.stderr


def test_debug_logging_of_a_run_never_shows_the_aws_keys(
    sqs, queue_url, institution, tmp_path: Path
) -> None:
    stream = _stream(institution, 10, seed=6)
    send_all(sqs.client(), queue_url, stream.messages)
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    config = write_config(tmp_path, url, sqs.config(queue_url), LOG_LEVEL="DEBUG")
    result = run_cli(["--config", str(config), "run"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "LIVE_EVENTS" in result.stderr
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert secret not in result.stdout + result.stderr
    engine = make_engine(url)
    try:
        assert count(engine, live_event) == stream.truth.events
    finally:
        engine.dispose()


def test_check_config_tries_the_queue(sqs, queue_url, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    ok = run_cli(
        ["--config", str(write_config(tmp_path, url, sqs.config(queue_url))), "check-config"]
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "queue reachable: 0 messages waiting" in ok.stdout
    gone = sqs.config(queue_url.replace("/live-", "/missing-"))
    bad = run_cli(["--config", str(write_config(tmp_path, url, gone)), "check-config"])
    assert bad.returncode != 0
    assert "Live Events queue" in bad.stdout and SECRET_KEY not in bad.stdout + bad.stderr
