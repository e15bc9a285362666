"""The results store on SQLite and on a real PostgreSQL: migrations, idempotent reruns, the
aggregates against the rows, three writer processes with a kill -9, and a store that is down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import inspect, text

from aigc_eval import columns as col
from aigc_eval.product import names as pn
from aigc_eval.store import Recorder, RunInfo
from aigc_eval.store.aggregates import rebuild_all
from aigc_eval.store.db import current_revision, head_revision, make_engine, upgrade
from aigc_eval.store.schema import default_spool_path, metadata, resolve_url

from postgres_server import pg  # noqa: F401  (the fixture)

HERE = Path(__file__).resolve().parent




_counter = iter(range(10**6))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "history.sqlite")
    return request.getfixturevalue("pg").create_database(f"t{next(_counter)}")


def rows(n: int, day: str = "2026-11-02", version: str | None = None) -> list[dict[str, object]]:
    out = []
    for i in range(n):
        row = {col.ID: f"i{i}", col.CATEGORY: ("cake", "shoe")[i % 2], col.STATUS: col.STATUS_OK if i % 5 else col.STATUS_ERROR,
               col.TOTAL_SCORE: i / n if i % 5 else None, col.CLIP_SCORE: 0.2 + i / (10 * n), col.KL: 1.0 + i,
               pn.PRODUCT_ISSUES: "product_altered; product_cut_off" if i % 3 == 0 else "",
               col.REGENERATE: "low clip" if i % 4 == 0 else "", col.SCORED_AT: f"{day}T12:00:00+00:00"}
        if version:
            row["generator_version"] = version
        out.append(row)
    return out


def scalar(url: str, sql: str):
    with make_engine(url).connect() as conn:
        return conn.execute(text(sql)).scalar()


def test_migrations_from_empty_match_the_schema(store_url):
    engine = make_engine(store_url)
    upgrade(engine)
    assert current_revision(engine) == head_revision() == "0002"
    found = inspect(engine)
    for table in metadata.sorted_tables:
        assert {c["name"] for c in found.get_columns(table.name)} == {c.name for c in table.columns}, table.name
    assert {ix["name"] for ix in found.get_indexes("scores")} >= {"ix_scores_group", "ix_scores_day_total"}


def test_migration_from_the_first_revision_keeps_rows_and_fills_aggregates(store_url):
    engine = make_engine(store_url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO runs (run_id, started_at, source, generator_version) VALUES ('r1', '2026-11-01 00:00:00', 'batch', 'v0')"))
        for i, total in enumerate((0.2, 0.4, 0.9)):
            conn.execute(text("INSERT INTO scores (run_id, image_id, category, generator_version, scored_at, scored_day, status, "
                              "total_score, clip_score, product_issues, regenerate) VALUES ('r1', :id, 'cake', 'v0', "
                              "'2026-11-01 10:00:00', '2026-11-01', 'ok', :t, 0.3, 'product_altered', '')"), {"id": f"x{i}", "t": total})
    assert "p_accept" not in {c["name"] for c in inspect(engine).get_columns("scores")}
    upgrade(engine)
    assert current_revision(engine) == "0002"
    assert scalar(store_url, "SELECT count(*) FROM scores") == 3
    assert scalar(store_url, "SELECT n_ok FROM score_daily") == 3
    assert scalar(store_url, "SELECT sum_total FROM score_daily") == pytest.approx(1.5)
    assert scalar(store_url, "SELECT n FROM score_daily_issue WHERE issue='product_altered'") == 3


def aggregates_match_rows(url: str) -> None:
    """score_daily as kept by the writes equals a rebuild from the rows."""
    engine = make_engine(url)
    query = "SELECT * FROM score_daily ORDER BY day, category, generator_version"
    issues = "SELECT * FROM score_daily_issue ORDER BY day, category, generator_version, issue"
    with engine.connect() as conn:
        kept, kept_issues = conn.execute(text(query)).all(), conn.execute(text(issues)).all()
    with engine.begin() as conn:
        rebuild_all(conn)
        rebuilt, rebuilt_issues = conn.execute(text(query)).all(), conn.execute(text(issues)).all()
    assert kept_issues == rebuilt_issues
    assert [r[:3] + tuple(round(x, 9) for x in r[3:]) for r in kept] == [r[:3] + tuple(round(x, 9) for x in r[3:]) for r in rebuilt]


def test_a_rerun_of_the_same_batch_leaves_one_copy(store_url):
    run = RunInfo(generator_version="v1")
    vectors = [np.full(4, i + 1.0) for i in range(40)]
    for _ in range(2):
        with Recorder.open(store_url, source="batch", run=run) as recorder:
            recorder.record(rows(40), vectors)
    assert scalar(store_url, "SELECT count(*) FROM scores") == 40
    assert scalar(store_url, "SELECT n_rows FROM score_daily WHERE category='cake'") == 20
    assert scalar(store_url, "SELECT count(*) FROM runs") == 1
    assert scalar(store_url, "SELECT count(*) FROM runs WHERE ended_at IS NOT NULL") == 1
    ok = [r for r in rows(40) if r[col.STATUS] == col.STATUS_OK]
    assert scalar(store_url, "SELECT sum(n_total) FROM score_daily") == len(ok)
    assert scalar(store_url, "SELECT sum(sum_total) FROM score_daily") == pytest.approx(sum(r[col.TOTAL_SCORE] for r in ok))
    issue_rows = sum(1 for r in ok if r[pn.PRODUCT_ISSUES])
    assert scalar(store_url, "SELECT sum(n) FROM score_daily_issue WHERE issue='product_cut_off'") == issue_rows
    assert scalar(store_url, "SELECT metrics FROM scores WHERE image_id='i3'") in ({"kl": 4.0}, '{"kl": 4.0}')
    blob = scalar(store_url, "SELECT embedding FROM scores WHERE image_id='i3'")
    assert np.frombuffer(blob, dtype="<f2").tolist() == [4.0] * 4
    aggregates_match_rows(store_url)


def test_a_rescored_row_moves_between_days_and_the_aggregates_follow(store_url):
    run = RunInfo(generator_version="v1")
    with Recorder.open(store_url, source="batch", run=run) as recorder:
        recorder.record(rows(10, day="2026-11-02"))
        recorder.record(rows(4, day="2026-11-03", version="v2"))
    assert scalar(store_url, "SELECT count(*) FROM scores") == 10
    assert scalar(store_url, "SELECT sum(n_rows) FROM score_daily") == 10
    assert scalar(store_url, "SELECT sum(n_rows) FROM score_daily WHERE generator_version='v2'") == 4
    aggregates_match_rows(store_url)


def test_default_store_is_beside_the_score_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("AIGC_EVAL_STORE", raising=False)
    url = resolve_url(None)
    assert url == f"sqlite:///{(tmp_path / 'image-cache' / 'history.sqlite').resolve()}"
    assert default_spool_path(url).name == "history.sqlite.spool.jsonl"
    with Recorder.open("", source="service", run=RunInfo()) as recorder:
        recorder.record(rows(3))
    assert (tmp_path / "image-cache" / "history.sqlite").is_file()


def test_a_store_down_during_a_run_spools_and_the_next_open_loads(pg, tmp_path, capfd):
    url = pg.create_database("down")
    spool = tmp_path / "spool.jsonl"
    run = RunInfo(generator_version="v1")
    recorder = Recorder.open(url, source="batch", run=run, spool_path=spool)
    recorder.record(rows(10))
    pg.stop()
    try:
        recorder.record(rows(30)[10:20], [np.ones(4)] * 10)
        recorder.record(rows(30)[20:30])
        recorder.close()
    finally:
        pg.start()
    err = capfd.readouterr().err
    assert err.count("warning: the results store") == 1, err
    assert str(spool) in err
    lines = [json.loads(line) for line in spool.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["rows", "rows", "end"]
    assert sum(len(line.get("rows", [])) for line in lines) == 20
    assert scalar(url, "SELECT count(*) FROM scores") == 10
    with Recorder.open(url, source="batch", run=RunInfo(), spool_path=spool):
        pass
    assert not spool.exists() and not list(tmp_path.glob("spool.jsonl.loading-*"))
    assert scalar(url, "SELECT count(*) FROM scores") == 30
    assert scalar(url, "SELECT count(*) FROM scores WHERE embedding IS NOT NULL") == 10
    assert scalar(url, f"SELECT count(*) FROM runs WHERE run_id='{run.run_id}' AND ended_at IS NOT NULL") == 1
    aggregates_match_rows(url)


def test_a_store_that_never_opens_costs_nothing(tmp_path, capfd):
    spool = tmp_path / "spool.jsonl"
    bad = f"postgresql://nobody@/nowhere?host={tmp_path}"  # no server on this socket
    with Recorder.open(bad, source="batch", run=RunInfo(), spool_path=spool) as recorder:
        recorder.record(rows(5))
        recorder.record(rows(7))
    assert "warning: the results store" in capfd.readouterr().err
    assert sum(len(json.loads(line).get("rows", [])) for line in spool.read_text().splitlines()) == 12
    target = tmp_path / "later.sqlite"
    with Recorder.open(str(target), source="batch", run=RunInfo(), spool_path=spool):
        pass
    assert scalar(str(target), "SELECT count(*) FROM scores") == 7  # one run: ids i0..i4 came in both batches


def test_three_writers_with_a_kill_lose_nothing_and_double_nothing(pg):
    url = pg.create_database("writers")
    writer = [sys.executable, str(HERE / "store_writer.py"), url]
    ranges = {"a": (0, 300), "b": (200, 500), "c": (400, 600)}  # overlaps: images redelivered to another worker
    procs = {name: subprocess.Popen([*writer, name, str(lo), str(hi), "0.05"], stdout=subprocess.PIPE, text=True)
             for name, (lo, hi) in ranges.items()}
    victim = procs["b"]
    for _ in range(3):  # let b finish a few batches, then kill it mid-run
        assert json.loads(victim.stdout.readline())["worker"] == "b"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    # its unfinished messages are redelivered to a restarted worker b, which starts over
    procs["b"] = subprocess.Popen([*writer, "b", "200", "500"], stdout=subprocess.PIPE, text=True)
    for name, proc in procs.items():
        proc.communicate(timeout=300)
        assert proc.returncode == 0, name
    with make_engine(url).connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT image_id FROM scores"))]
    assert len(ids) == len(set(ids)) == 600
    assert set(ids) == {f"img-{i:05d}" for i in range(600)}
    assert scalar(url, "SELECT sum(n_rows) FROM score_daily") == 600
    aggregates_match_rows(url)


def test_rows_the_store_cannot_key_are_skipped_not_raised(tmp_path, caplog):
    url = str(tmp_path / "s.sqlite")
    assert RunInfo.new_run_id() != RunInfo.new_run_id()
    with Recorder.open(url, source="batch", run=RunInfo()) as recorder:
        recorder.record([{col.TOTAL_SCORE: 0.5}, {col.ID: "kept", col.TOTAL_SCORE: 0.4}], [np.ones(3)])
    assert scalar(url, "SELECT image_id FROM scores") == "kept"
    assert "without embeddings" in caplog.text and "row skipped" in caplog.text
