"""The HTML run report, opened in the distribution's headless Chromium.

Checks that the page loads without console errors and without fetching anything, shows
every job and every table, and that its charts are drawn (pixels, not just elements).
Screenshots go to ``tests/output/`` (git-ignored); their paths are printed.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from courseinv.db.engine import make_engine
from courseinv.db.migrate import migrate
from courseinv.db.tables import data_source_status, job_run
from courseinv.runner.report import write_report
from sqlalchemy import insert, select

from tests.browser import Chromium, find_chromium
from tests.conftest import IN_CI, run_cli

OUTPUT = Path(__file__).resolve().parents[1] / "output"

# Draws every chart's SVG onto a canvas and counts the pixels that are not white.
INKED_PIXELS = """
Promise.all([...document.querySelectorAll('figure.chart svg')].map(svg => new Promise(done => {
  const box = svg.getBoundingClientRect();
  const img = new Image();
  img.onload = () => {
    const canvas = document.createElement('canvas');
    canvas.width = Math.ceil(box.width); canvas.height = Math.ceil(box.height);
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let inked = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i] + data[i+1] + data[i+2] < 600) inked++;
    done({id: svg.closest('figure').id, width: box.width, height: box.height, inked});
  };
  img.onerror = () => done({id: svg.closest('figure').id, error: true});
  img.src = URL.createObjectURL(new Blob([new XMLSerializer().serializeToString(svg)],
                                         {type: 'image/svg+xml'}));
})))
"""


@pytest.fixture
def browser() -> Chromium:
    executable = find_chromium()
    if executable is None:
        message = "chromium not installed (apt-get install chromium; .ci/run does it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with Chromium(executable) as chromium:
        yield chromium


def open_report(browser: Chromium, path: Path, shot: str) -> dict:
    """Load the page; return its charts' pixel counts; save a screenshot."""
    browser.open(path.as_uri())
    assert browser.problems() == [], browser.problems()
    assert browser.requested_urls() == [path.as_uri()]  # self-contained: nothing else loaded
    assert browser.evaluate("document.scripts.length") == 0
    charts = browser.evaluate(INKED_PIXELS, await_promise=True)
    OUTPUT.mkdir(exist_ok=True)
    screenshot = browser.screenshot(OUTPUT / shot)
    print(f"report screenshot: {screenshot}")
    return {c["id"]: c for c in charts}


def section_texts(browser: Chromium, selector: str) -> list[str]:
    return browser.evaluate(
        f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.textContent)"
    )


def test_report_of_a_real_run_in_chromium(tmp_path: Path, browser: Chromium) -> None:
    result = run_cli(
        ["demo", "--courses", "15", "--latency-ms", "0", "--data-dir", str(tmp_path)], timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.strip().startswith("run report:"))
    report = Path(line.split(":", 1)[1].strip())
    assert report.parent == tmp_path / "reports" and report.exists()
    assert (tmp_path / "reports" / "latest.html").read_bytes() == report.read_bytes()

    engine = make_engine(f"sqlite:///{tmp_path / 'course_inventory.sqlite3'}")
    with engine.connect() as conn:
        runs = conn.execute(select(job_run.c.job_name, job_run.c.details)).all()
    engine.dispose()
    charts = open_report(browser, report, "report-demo.png")

    assert section_texts(browser, "table.jobs td.job") == [
        "COURSE_INVENTORY",
        "MIVIDEO",
        "ONLINE_MEETINGS",
        "LIVE_EVENTS",
    ]
    for job, details in runs:
        tables = json.loads(details)["tables"]
        assert tables, job
        shown = section_texts(browser, f"#job-{job} table.rows td.table")
        assert shown == sorted(tables), (job, shown)
        counts = section_texts(browser, f"#job-{job} table.rows td:nth-child(2)")
        assert counts == [f"{tables[t]:,}" for t in sorted(tables)]
        phases = json.loads(details)["phases"]
        assert phases, job
        for phase in phases:  # every phase is a labelled bar of the phase chart
            assert f"{job}: {phase['name']}" in browser.evaluate(
                "document.querySelector('#chart-phases svg').textContent"
            )
    assert charts["chart-phases"]["inked"] > 2000, charts
    sources = section_texts(browser, "#freshness td.source")
    assert set(sources) >= {"CANVAS_API", "KALTURA_API", "ZOOM_API", "CANVAS_LTI",
                            "CANVAS_LIVE_EVENTS"}


def insert_run(conn, run_id: str, job: str, status: str, started: datetime, details: dict,
               reason: str | None = None) -> int:  # fmt: skip
    return conn.execute(insert(job_run).values(
        run_id=run_id, job_name=job, started_at=started, finished_at=started + timedelta(seconds=42),
        status=status, reason=reason, host="batch-1", rows_written=sum(details.get("tables", {}).values()),
        warnings=2, requests=1500, details=json.dumps(details),
    )).inserted_primary_key[0]  # fmt: skip


def test_report_shows_drops_endpoints_and_the_rate_limit_room(
    tmp_path: Path, browser: Chromium
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'inv.sqlite3'}")
    migrate(engine)
    t0 = datetime(2026, 3, 1, 2, 30)
    room = [{"t": i * 0.5, "remaining": 700 - (i * 37) % 500, "estimated_headroom": 650 - (i * 37) % 500}
            for i in range(200)]  # fmt: skip
    detail = {
        "elapsed_s": 42.0,
        "totals": {"requests": 1500, "retries": 4, "throttled": 2, "gave_up": 0},
        "by_api": {"canvas": {"requests": 1500, "retries": 4, "throttled": 2, "gave_up": 0}},
        "requests": [
            {
                "api": "canvas",
                "endpoint": "GET /api/v1/courses/:id/analytics/activity",
                "status": 200,
                "count": 1200,
            },
            {
                "api": "canvas",
                "endpoint": "GET /api/v1/courses/:id/analytics/activity",
                "status": 404,
                "count": 12,
            },
            {"api": "canvas", "endpoint": "POST /api/graphql", "status": 403, "count": 2},
            {"api": "canvas", "endpoint": "POST /api/graphql", "status": "error", "count": 4},
        ],
        "rate_limit": {"canvas": room},
    }
    with engine.begin() as conn:
        insert_run(conn, "R1", "COURSE_INVENTORY", "succeeded", t0 - timedelta(days=1),
                   {"tables": {"course": 1000, "term": 2}})  # fmt: skip
        current = insert_run(conn, "R2", "COURSE_INVENTORY", "succeeded", t0, {
            "tables": {"course": 300, "term": 2, "enrollment": 50},
            "http": {"requests": 1500, "retries": 4, "throttled": 2, "gave_up": 0},
            "http_detail": detail,
            "phases": [{"name": "Canvas pull", "start_s": 1.0, "seconds": 30.0},
                       {"name": "build and publish", "start_s": 31.0, "seconds": 9.5}],
        })  # fmt: skip
        insert_run(conn, "R2", "MIVIDEO", "failed", t0 + timedelta(minutes=1), {"tables": {}},
                   reason="BigQuery said <script>alert(1)</script> & no")  # fmt: skip
        conn.execute(insert(data_source_status).values(
            data_source_name="CANVAS_API", data_updated_at=t0 + timedelta(seconds=30),
            job_run_id=current))  # fmt: skip
    path = write_report(engine, "R2", tmp_path / "reports")
    engine.dispose()
    assert path == (tmp_path / "reports" / "R2.html").resolve()
    charts = open_report(browser, path, "report-synthetic.png")

    assert set(charts) == {"chart-phases", "chart-room-COURSE_INVENTORY"}
    assert all(c["width"] > 100 and c["height"] > 100 for c in charts.values()), charts
    assert charts["chart-room-COURSE_INVENTORY"]["inked"] > 2000, charts
    assert section_texts(browser, "table.jobs td.job") == ["COURSE_INVENTORY", "MIVIDEO"]
    changes = dict(zip(section_texts(browser, "#job-COURSE_INVENTORY table.rows td.table"),
                       section_texts(browser, "#job-COURSE_INVENTORY table.rows td:nth-child(4)"), strict=True))  # fmt: skip
    assert changes == {"course": "-700 (-70%)", "enrollment": "new", "term": "+0 (+0%)"}
    assert section_texts(browser, "#job-COURSE_INVENTORY td.drop") == ["-700 (-70%)"]
    endpoints = section_texts(browser, "#job-COURSE_INVENTORY table.endpoints tbody tr")
    assert len(endpoints) == 4 and "1,200" in endpoints[0]
    reason = section_texts(browser, "#job-MIVIDEO .reason")
    assert reason == ["Reason: BigQuery said <script>alert(1)</script> & no"]  # shown, not run
    assert section_texts(browser, "#job-MIVIDEO table.rows") == []
    assert "FAILED" in browser.evaluate("document.title")
    assert (tmp_path / "reports" / "latest.html").exists()


def test_chromium_check_catches_a_broken_page(tmp_path: Path, browser: Chromium) -> None:
    """The checks above can fail: a script error and a fetch show up as problems."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<html><body><img src='missing.png'><script>undefinedFunction()</script></body></html>"
    )
    browser.open(page.as_uri())
    problems = browser.problems()
    assert any("exception" in p for p in problems) and any(
        "load failed" in p or "log:" in p for p in problems
    )
    assert len(browser.requested_urls()) == 2
