"""The dashboard in headless Chromium (Playwright, Debian's chromium) on a real store (SQLite
here, PostgreSQL for the JSON): charts render, the numbers shown equal SQL on the same rows, a
click drills down to the right images, text from the store is escaped; plus a screenshot."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import requests
import uvicorn
from sqlalchemy import text

from aigc_eval import columns as col
from aigc_eval.dashboard.app import create_app
from aigc_eval.product import names as pn
from aigc_eval.store import Recorder, RunInfo
from aigc_eval.store.db import make_engine, upgrade

from postgres_server import PostgresServer, pg_bin

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = '<img src=x onerror="window.pwned=1">'
DAYS = 21
TODAY = datetime.now(timezone.utc).date()


def fill_store(url: str) -> None:
    """21 days to today: three categories (one with a hostile name), v2 from day 10, a drop for
    shoe in the last week, issues, regenerate reasons and CLIP embeddings."""
    rng = np.random.default_rng(3)
    with Recorder.open(url, source="batch", run=RunInfo(generator_version="v1")) as recorder:
        for offset in range(DAYS - 1, -1, -1):
            day = TODAY - timedelta(days=offset)
            rows, vectors = [], []
            for category in ("cake", "shoe", HOSTILE):
                for i in range(12 if category != HOSTILE else 3):
                    drop = 0.15 if category == "shoe" and offset < 7 else 0.0
                    total = float(np.clip(rng.normal(0.7 - drop, 0.08), 0, 1))
                    rows.append({
                        col.ID: f"{day}-{category[:4]}-{i}", col.CATEGORY: category, col.STATUS: col.STATUS_OK,
                        col.TOTAL_SCORE: total, col.CLIP_SCORE: float(rng.normal(0.3, 0.03)), "p_accept": total * 0.9,
                        pn.PRODUCT_ISSUES: pn.PRODUCT_ALTERED if total < 0.6 else "",
                        col.REGENERATE: "total below 0.6" if total < 0.6 else "", col.SCORED_AT: f"{day}T09:00:00Z",
                        "generator_version": "v2" if offset < 10 else "v1", col.IMAGE_URL: f"images/{day}-{i}.png"})
                    vectors.append(rng.normal(size=8))
            recorder.record(rows, vectors)


@contextlib.contextmanager
def serve(url: str):
    engine = make_engine(url)
    upgrade(engine)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(engine), log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(base + "/api/meta", timeout=2)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        engine.dispose()


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    url = str(tmp_path_factory.mktemp("dash") / "history.sqlite")
    fill_store(url)
    return url


def sql(url: str, query: str, **params):
    with make_engine(url).connect() as conn:
        return conn.execute(text(query), params).all()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed; scripts/test.sh installs it")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        yield browser
        browser.close()


def test_the_page_shows_what_sql_says_and_drills_down(sqlite_store, browser):
    with serve(sqlite_store) as base:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        requested = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(base + "/")
        page.wait_for_selector("body[data-rendered]")
        page.wait_for_selector("#alarms li")
        # every chart drew an SVG, and the total chart has one marker per day
        for chart in ("total", "p_accept", "clip", "regenerate", "issues", "volume"):
            assert page.locator(f"#chart-{chart} .main-svg").count() >= 1, chart
        assert page.locator("#chart-total .scatterlayer .trace .points path").count() == DAYS
        # the points table equals SQL on the rows
        expected = sql(sqlite_store, "SELECT scored_day, count(*), avg(total_score), avg(clip_score) FROM scores "
                                     "WHERE status='ok' GROUP BY scored_day ORDER BY scored_day")
        shown = page.eval_on_selector_all("#points tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
        assert len(shown) == len(expected) == DAYS
        for cells, (day, n, total, clip) in zip(shown, expected):
            assert cells[0] == str(day) and cells[2] == str(n)
            assert cells[4] == f"{total:.4f}" and cells[7] == f"{clip:.4f}"
        # release markers at the first day of each version
        firsts = sql(sqlite_store, "SELECT generator_version, min(scored_day) FROM scores GROUP BY generator_version ORDER BY 2")
        shapes = page.evaluate("document.getElementById('chart-total').layout.shapes.map(s => s.x0)")
        assert shapes == [str(d) for _, d in firsts]
        # the regression shows as an alarm for shoe alone
        alarm_lines = page.eval_on_selector_all("#alarms li", "items => items.map(i => i.textContent)")
        assert alarm_lines and all(line.startswith("shoe: ") for line in alarm_lines), alarm_lines
        # click the fifth day's point: the drill-down lists that day's lowest totals, lowest first
        page.locator("#chart-total .scatterlayer .trace .points path").nth(4).click(force=True)
        page.wait_for_selector("body[data-drilled]")
        title = page.text_content("#drill-title")
        day = title.split(" ")[0]
        assert day == str(expected[4][0])
        want = sql(sqlite_store, "SELECT image_id FROM scores WHERE scored_day=:d AND status='ok' "
                                 "ORDER BY total_score, image_id LIMIT 20", d=day)
        got = page.eval_on_selector_all("#drill tbody tr", "rows => rows.map(r => r.cells[0].textContent)")
        assert got == [r[0] for r in want]
        reasons = page.eval_on_selector_all("#drill tbody tr", "rows => rows.map(r => r.cells[7].textContent)")
        assert reasons[0] == "total below 0.6"
        # split by category: one trace per category, the hostile name as text, nothing ran
        page.select_option("#by", "category")
        page.wait_for_function("document.getElementById('chart-total').data.length === 3")
        assert page.evaluate("window.pwned") is None
        assert HOSTILE in page.eval_on_selector_all("#category option", "os => os.map(o => o.textContent)")
        page.select_option("#by", "")
        page.wait_for_function("document.getElementById('chart-total').data.length === 1")
        # compare this week with the four before it (the form's default windows)
        page.click("#compare-run")
        page.wait_for_selector("body[data-compared]")
        row = page.eval_on_selector_all("#compare-out tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")[1]
        b_since, b_until = page.input_value("#b-since"), page.input_value("#b-until")
        a_since = page.input_value("#a-since")
        (mean_a,), = sql(sqlite_store, "SELECT avg(total_score) FROM scores WHERE scored_day >= :s AND scored_day < :u", s=a_since, u=b_since)
        (mean_b,), = sql(sqlite_store, "SELECT avg(total_score) FROM scores WHERE scored_day >= :s AND scored_day < :u", s=b_since, u=b_until)
        assert row[0] == "total_score" and row[4] == f"{mean_a:.4f}" and row[5] == f"{mean_b:.4f}"
        assert "CMMD" in page.text_content("#compare-out")
        assert page.text_content("#compare-out").split("(mean total, B - A): ")[1].startswith("shoe -")
        assert errors == []
        assert all(u.startswith(base) for u in requested), [u for u in requested if not u.startswith(base)][:3]
        page.evaluate("document.getElementById('chart-volume').scrollIntoView()")
        page.evaluate("window.scrollTo(0, 0)")
        shot = ROOT / "docs" / "dashboard.png"
        page.set_viewport_size({"width": 1000, "height": 700})
        page.mouse.move(5, 5)
        page.wait_for_timeout(300)
        page.screenshot(path=str(shot), scale="css")
        assert shot.stat().st_size < 150_000
        page.close()


def test_the_json_on_postgresql_equals_sql():
    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed; scripts/test.sh installs it")
    server = PostgresServer()
    server.start()
    try:
        url = server.create_database("dash")
        fill_store(url)
        with serve(url) as base:
            data = requests.get(base + "/api/overview", params={"grain": "week", "by": "category"}, timeout=30).json()
            expected = sql(url, "SELECT date_trunc('week', scored_day)::date, category, count(*), avg(total_score) "
                                "FROM scores GROUP BY 1, 2 ORDER BY 1, 2")
            got = [(p["period"], p["group"], p["n_rows"], p["total_mean"]) for p in data["points"]]
            assert [(str(w), c, n) for w, c, n, _ in expected] == [g[:3] for g in got]
            assert [m for *_, m in got] == pytest.approx([m for *_, m in expected])
            bad = requests.get(base + "/api/drilldown", params={"since": "2026-11-05", "until": "2026-11-01"}, timeout=10)
            assert bad.status_code == 422 and bad.json()["detail"]["field"] == "until"
    finally:
        server.close()


def test_the_command_names_a_store_it_cannot_open(tmp_path, capsys):
    from aigc_eval.cli import main as aigc_eval

    assert aigc_eval(["dashboard", "--store", f"postgresql://x@/y?host={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the results store cannot be opened") and len(err.splitlines()) == 1
