"""The MIVIDEO sandbox fakes, exercised with real clients over HTTP.

BigQuery: the unmodified ``google-cloud-bigquery`` client with a service-account key.
Kaltura: plain ``requests`` in each request form Kaltura accepts.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import google.auth.transport.requests
import pytest
import requests
from courseinv.mivideo.events import query_text
from courseinv.sandbox.bigquery import BigQueryServer
from courseinv.sandbox.caliper import CaliperEventStore
from courseinv.sandbox.kaltura import KalturaServer
from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery
from google.oauth2 import service_account

TODAY = date(2026, 3, 12)
COURSES = [101, 102, 3456, 12_345_678_901]
SCOPES = ["https://www.googleapis.com/auth/bigquery"]


# -- Caliper event store ------------------------------------------------------------------


def test_event_store_is_deterministic_and_has_every_kind_of_noise() -> None:
    a = CaliperEventStore(5, COURSES, TODAY, days=3, events_per_day=200)
    b = CaliperEventStore(5, COURSES, TODAY, days=3, events_per_day=200)
    assert [e.event for e in a.events] == [e.event for e in b.events]
    assert CaliperEventStore(6, COURSES, TODAY, days=3).events[0].id != a.events[0].id

    noise = [e for e in a.events if e.counted_course_id is None]
    payloads = [json.loads(e.event) for e in noise]
    course_values = [(p["object"].get("extensions") or {}).get("kaf:course_id") for p in payloads]
    assert {"abc", "12abc"} & set(course_values)  # non-numeric ids
    assert any("extensions" not in p["object"] for p in payloads)  # missing
    assert {e.action for e in noise} - {"Started"}  # other actions
    assert {e.type for e in noise} - {"MediaEvent"}  # other types
    assert any(not e.ed_app.endswith("/KafEdApp") for e in noise)  # other tools
    times = [e.event_time for e in a.events]
    assert any(t.microsecond % 1000 for t in times)  # microsecond precision
    assert max(times).date() == TODAY  # today's events exist (not countable yet)


def test_advance_day_appends_the_next_day() -> None:
    store = CaliperEventStore(5, COURSES, TODAY, days=2, events_per_day=50)
    before = len(store.events)
    after = datetime(2020, 1, 1, tzinfo=UTC)
    counted_before = store.expected_media_started_hourly(after)["event_count"].sum()
    store.advance_day()
    assert store.today == date(2026, 3, 13)
    assert len(store.events) > before
    assert store.expected_media_started_hourly(after)["event_count"].sum() > counted_before


# -- BigQuery -------------------------------------------------------------------------------


@pytest.fixture
def bq(tmp_path: Path) -> Iterator[tuple[BigQueryServer, Path]]:
    store = CaliperEventStore(11, COURSES, TODAY, days=3, events_per_day=200)
    with BigQueryServer(store, page_rows=25) as server:
        key = server.create_service_account_key(tmp_path)
        yield server, key


def _client(server: BigQueryServer, key: Path) -> bigquery.Client:
    credentials = service_account.Credentials.from_service_account_file(str(key), scopes=SCOPES)
    return bigquery.Client(
        project="sandbox-udp", credentials=credentials, client_options={"api_endpoint": server.url}
    )


def _after_param(after: datetime) -> bigquery.QueryJobConfig:
    return bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("after_time", "TIMESTAMP", after),
            bigquery.ScalarQueryParameter("hour_from", "TIMESTAMP", after),
        ]
    )


def test_unmodified_client_runs_the_job_query_with_paging(
    bq: tuple[BigQueryServer, Path],
) -> None:
    server, key = bq
    after = datetime(2026, 3, 10, 7, 30, tzinfo=UTC)
    job = _client(server, key).query(
        query_text("sandbox-udp.event_store.events"), job_config=_after_param(after)
    )
    rows = [tuple(r.values()) for r in job.result()]

    expected = server.store.expected_media_started_hourly(after)
    got = [
        (h.replace(tzinfo=None), c, t.replace(tzinfo=None), n) for h, c, t, n in rows
    ]  # fmt: skip
    assert got == list(expected.itertuples(index=False, name=None))
    assert len(rows) > 2 * server.page_rows  # several result pages
    assert server.log.count("jobs.getQueryResults") >= len(rows) // server.page_rows + 1
    assert server.auth_modes["self_signed_jwt"] == sum(server.log.by_endpoint().values())
    record = server.queries[-1]
    assert record.parameters == {"after_time": after, "hour_from": after}
    assert "2026-03-10" not in record.sql  # the watermark travels as a parameter


def test_current_date_is_the_sandbox_today(bq: tuple[BigQueryServer, Path]) -> None:
    server, key = bq
    client = _client(server, key)
    (row,) = client.query("SELECT CURRENT_DATE() AS d, TIMESTAMP(CURRENT_DATE()) AS t").result()
    assert row["d"] == TODAY
    assert row["t"] == datetime(2026, 3, 12, tzinfo=UTC)
    server.store.advance_day()
    (row,) = client.query("SELECT CURRENT_DATE() AS d").result()
    assert row["d"] == date(2026, 3, 13)


def test_running_jobs_are_polled_until_done(bq: tuple[BigQueryServer, Path]) -> None:
    server, key = bq
    server.polls_until_done = 2
    (row,) = _client(server, key).query("SELECT COUNT(*) AS n FROM event_store.events").result()
    assert row["n"] == len(server.store.events)
    assert server.log.count("jobs.getQueryResults") + server.log.count("jobs.get") >= 3


def test_query_errors_and_auth_errors(bq: tuple[BigQueryServer, Path], tmp_path: Path) -> None:
    server, key = bq
    client = _client(server, key)
    with pytest.raises(api_exceptions.NotFound, match="events_missing"):
        client.query("SELECT 1 FROM event_store.events_missing").result()
    with pytest.raises(api_exceptions.BadRequest):
        client.query("SELECT FROM WHERE").result()
    # A key the server did not issue (its public half is unknown) cannot get a token.
    other = BigQueryServer(server.store)
    with other:
        foreign_key = other.create_service_account_key(tmp_path / "other")
    with pytest.raises(api_exceptions.Unauthorized):
        _client(server, foreign_key).query("SELECT 1").result()
    # No bearer token: 401.
    response = requests.get(f"{server.url}/bigquery/v2/projects/p/jobs/x", timeout=5)
    assert response.status_code == 401


def test_token_endpoint_grants_access_tokens(bq: tuple[BigQueryServer, Path]) -> None:
    """A key in Google's universe goes through the jwt-bearer grant at ``token_uri``."""
    server, key = bq
    info = {**json.loads(key.read_text()), "universe_domain": "googleapis.com"}
    credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    credentials.refresh(google.auth.transport.requests.Request())
    assert server.log.count("oauth.token", 200) == 1
    url = f"{server.url}/bigquery/v2/projects/p/jobs/nope"
    headers = {"Authorization": f"Bearer {credentials.token}"}
    assert requests.get(url, headers=headers, timeout=5).status_code == 404  # authenticated
    assert server.auth_modes["access_token"] == 1
    bad = requests.post(
        f"{server.url}/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "a.b.c"},
        timeout=5,
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"


# -- Kaltura ---------------------------------------------------------------------------------


@pytest.fixture
def kaltura() -> Iterator[KalturaServer]:
    with KalturaServer(3, COURSES, TODAY, days=2, media_per_day=60) as server:
        yield server


def _api(server: KalturaServer, service: str, action: str) -> str:
    return f"{server.url}/api_v3/service/{service}/action/{action}"


def _ks(server: KalturaServer) -> str:
    data = {"format": 1, "partnerId": server.partner_id, "secret": server.admin_secret, "type": 2}
    ks = requests.post(_api(server, "session", "start"), data=data, timeout=5).json()
    assert isinstance(ks, str) and ks
    return ks


def test_session_start_rejects_a_wrong_secret(kaltura: KalturaServer) -> None:
    data = {"format": 1, "partnerId": kaltura.partner_id, "secret": "wrong", "type": 2}
    body = requests.post(_api(kaltura, "session", "start"), data=data, timeout=5).json()
    assert body["objectType"] == "KalturaAPIException"
    assert body["code"] == "START_SESSION_ERROR"


def test_media_list_accepts_query_form_and_json_bodies(kaltura: KalturaServer) -> None:
    ks = _ks(kaltura)
    flat = {
        "format": "1",
        "ks": ks,
        "filter[objectType]": "KalturaMediaEntryFilter",
        "filter[categoriesFullNameIn]": kaltura.root,
        "filter[orderBy]": "+createdAt",
        "pager[pageSize]": "7",
        "pager[pageIndex]": "2",
    }
    nested = {
        "format": 1,
        "ks": ks,
        "filter": {
            "objectType": "KalturaMediaEntryFilter",
            "categoriesFullNameIn": kaltura.root,
            "orderBy": "+createdAt",
        },
        "pager": {"objectType": "KalturaFilterPager", "pageSize": 7, "pageIndex": 2},
    }
    url = _api(kaltura, "media", "list")
    by_get = requests.get(url, params=flat, timeout=5).json()
    by_form = requests.post(url, data=flat, timeout=5).json()
    by_json = requests.post(url, json=nested, timeout=5).json()
    assert by_get == by_form == by_json
    expected = kaltura.expected_media_created()
    assert by_get["totalCount"] == len(expected)
    ordered = sorted(kaltura.entries, key=lambda e: (e.created_at, e.tie_key))
    listed = [e.id for e in ordered if e.id in set(expected["id"])]
    assert [o["id"] for o in by_get["objects"]] == listed[7:14]


def test_paging_cap_ties_and_id_not_in(kaltura: KalturaServer) -> None:
    kaltura.add_bulk(10_400, datetime(2026, 3, 20, tzinfo=UTC), tie_size=300, tie_rank=10_000)
    ks = _ks(kaltura)

    def page(index: int, **extra: object) -> dict:
        data = {"format": 1, "ks": ks, "filter[orderBy]": "+createdAt",
                "pager[pageSize]": 500, "pager[pageIndex]": index, **extra}  # fmt: skip
        return requests.post(_api(kaltura, "media", "list"), data=data, timeout=10).json()

    assert page(20)["objects"]  # 500 x 20 = 10,000: still allowed
    capped = page(21)
    assert capped["objectType"] == "KalturaAPIException"
    assert capped["code"] == "QUERY_EXCEEDED_MAX_MATCHES_ALLOWED"

    # The tie straddles the cap: 300 entries at one second, not in id order.
    tie_second, size = Counter(e.created_at for e in kaltura.entries).most_common(1)[0]
    assert size == 300
    tied = page(1, **{"filter[createdAtGreaterThanOrEqual]": tie_second})["objects"]
    tied_ids = [o["id"] for o in tied if o["createdAt"] == tie_second]
    assert len(tied_ids) == 300 and tied_ids != sorted(tied_ids)
    rest = page(
        1,
        **{
            "filter[createdAtGreaterThanOrEqual]": tie_second,
            "filter[idNotIn]": ",".join(tied_ids[:200]),
        },
    )["objects"]
    assert [o["id"] for o in rest if o["createdAt"] == tie_second] == tied_ids[200:]


def test_categories_filter_matches_under_the_root_only(kaltura: KalturaServer) -> None:
    ks = _ks(kaltura)
    data = {"format": 1, "ks": ks, "filter[categoriesFullNameIn]": kaltura.root,
            "pager[pageSize]": 500}  # fmt: skip
    objects = requests.post(_api(kaltura, "media", "list"), data=data, timeout=5).json()["objects"]
    root = kaltura.root
    for obj in objects:
        assert any(c.startswith(root + ">") for c in obj["categories"].split(","))
    everything = {e.id for e in kaltura.entries}
    assert len(objects) < len(everything)  # some entries live outside the root only
    junk = ",".join(o["categories"] for o in objects)
    assert "Shared Repository" in junk and f"{root}2>" in junk and "Other_Root>" in junk


def test_invalid_ks_expiry_and_failing_for_good(kaltura: KalturaServer) -> None:
    ks = _ks(kaltura)
    url = _api(kaltura, "media", "list")
    assert requests.post(url, data={"format": 1, "ks": ks}, timeout=5).json()["objects"]
    kaltura.expire_sessions(after=1)
    assert requests.post(url, data={"format": 1, "ks": ks}, timeout=5).json()["objects"]
    expired = requests.post(url, data={"format": 1, "ks": ks}, timeout=5).json()
    assert expired["code"] == "INVALID_KS"
    fresh = _ks(kaltura)
    assert requests.post(url, data={"format": 1, "ks": fresh}, timeout=5).json()["objects"]
    assert requests.post(url, data={"format": 1}, timeout=5).json()["code"] == "MISSING_KS"

    kaltura.fail_media_list(after=1)
    assert requests.post(url, data={"format": 1, "ks": fresh}, timeout=5).status_code == 200
    for _ in range(3):
        assert requests.post(url, data={"format": 1, "ks": fresh}, timeout=5).status_code == 500
