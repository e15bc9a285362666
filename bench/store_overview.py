"""The dashboard's overview on a 10-million-row history in PostgreSQL: how long it answers.

Generates N rows (default 10,000,000: 365 days, 20 categories, five generator versions released
over the year, totals, CLIP scores, p_accept, issues, regenerate reasons) server-side with
generate_series into a store migrated to the latest schema, builds the daily aggregates, then
times, each as the median of 5 runs after one warm-up:
  - GET /api/overview (day, overall) and (week, by category) through the app (FastAPI TestClient);
  - the same overall numbers computed straight from the `scores` rows (what the aggregates save);
  - one Recorder.record() of 500 rows into the full table (the aggregates kept up to date).

  python bench/store_overview.py                      # starts a temporary PostgreSQL (Debian's)
  python bench/store_overview.py --store postgresql://user@host/db --rows 1000000

Run it once: it takes minutes and ~3 GB of disk.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sqlalchemy import text  # noqa: E402

from aigc_eval.store import Recorder, RunInfo  # noqa: E402
from aigc_eval.store.aggregates import rebuild_all  # noqa: E402
from aigc_eval.store.db import make_engine, upgrade  # noqa: E402

GENERATE = """
INSERT INTO scores (run_id, image_id, category, generator_version, scored_at, scored_day, status, total_score,
                    p_accept, clip_score, product_issues, regenerate, metrics)
SELECT 'bench-' || (g / 100000), 'img-' || g, 'category-' || (g % 20),
       'v' || (1 + least(4, ((g % 365) / 73))),
       timestamptz '2025-01-01 00:00:00+00' + ((g % 365) || ' days')::interval + ((g % 86400) || ' seconds')::interval,
       date '2025-01-01' + (g % 365)::int,
       CASE WHEN g % 50 = 0 THEN 'error' ELSE 'ok' END,
       CASE WHEN g % 50 = 0 THEN NULL ELSE 0.55 + 0.3 * ((g * 7919) % 1000) / 1000.0 END,
       CASE WHEN g % 50 = 0 THEN NULL ELSE ((g * 104729) % 1000) / 1000.0 END,
       0.2 + 0.2 * ((g * 31) % 1000) / 1000.0,
       CASE WHEN g % 11 = 0 THEN 'product_altered' WHEN g % 17 = 0 THEN 'product_cut_off;product_too_small' ELSE '' END,
       CASE WHEN g % 11 = 0 OR g % 17 = 0 THEN 'product issues' ELSE '' END,
       json_build_object('kl', ((g * 13) % 100) / 10.0)
FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint) - 1) AS g
"""

DIRECT = """
SELECT scored_day, count(*), count(total_score) FILTER (WHERE status = 'ok'), avg(total_score) FILTER (WHERE status = 'ok'),
       stddev_samp(total_score) FILTER (WHERE status = 'ok'), avg(clip_score) FILTER (WHERE status = 'ok'),
       avg(CASE WHEN regenerate <> '' THEN 1.0 ELSE 0.0 END) FILTER (WHERE status = 'ok')
FROM scores GROUP BY scored_day ORDER BY scored_day
"""


def median_time(fn, runs: int = 5) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=None, help="a PostgreSQL URL (default: a temporary server)")
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    server = None
    if args.store is None:
        from postgres_server import PostgresServer

        server = PostgresServer()
        server.start()
        args.store = server.create_database("bench")
    try:
        engine = make_engine(args.store)
        upgrade(engine)
        start = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO runs (run_id, started_at, source, generator_version) SELECT 'bench-' || r, now(), "
                              "'batch', '' FROM generate_series(0, :n) AS r ON CONFLICT DO NOTHING"), {"n": args.rows // 100000})
        step = 1_000_000
        for lo in range(0, args.rows, step):
            with engine.begin() as conn:
                conn.execute(text(GENERATE), {"lo": lo, "hi": min(lo + step, args.rows)})
            print(f"  {min(lo + step, args.rows):,} rows, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        with engine.begin() as conn:
            rebuild_all(conn)
            conn.execute(text("ANALYZE"))
        aggregate_s = time.perf_counter() - start
        with engine.connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM scores")).scalar()
            groups = conn.execute(text("SELECT count(*) FROM score_daily")).scalar()

        from fastapi.testclient import TestClient

        from aigc_eval.dashboard.app import create_app

        client = TestClient(create_app(engine))

        def overview_day():
            response = client.get("/api/overview", params={"grain": "day"})
            assert response.status_code == 200 and len(response.json()["points"]) == 365

        def overview_week_by_category():
            response = client.get("/api/overview", params={"grain": "week", "by": "category"})
            assert response.status_code == 200

        def direct():
            with engine.connect() as conn:
                assert len(conn.execute(text(DIRECT)).all()) == 365

        rows = [{"id": f"new-{i}", "category": f"category-{i % 20}", "status": "ok", "total_score": 0.7,
                 "clip_score": 0.3, "scored_at": "2025-06-01T12:00:00Z", "generator_version": "v3"} for i in range(500)]
        recorder = Recorder.open(args.store, source="stream", run=RunInfo(run_id="bench-live"))
        t_day = median_time(overview_day)
        t_week = median_time(overview_week_by_category)
        t_direct = median_time(direct, runs=3)
        t_record = median_time(lambda: recorder.record(rows))
        recorder.close()
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else platform.machine()
        print(f"CPU: {cpu}; rows {n:,}, aggregate rows {groups:,}")
        print(f"load {load_s:.0f} s, aggregates rebuilt in {aggregate_s:.1f} s")
        print(f"GET /api/overview day, overall:         {t_day * 1000:.1f} ms (median of 5)")
        print(f"GET /api/overview week, by category:    {t_week * 1000:.1f} ms")
        print(f"same numbers from the rows (GROUP BY):  {t_direct * 1000:.0f} ms ({t_direct / t_day:.1f}x the overview)")
        print(f"record() of 500 rows with aggregates:   {t_record * 1000:.1f} ms")
    finally:
        if server is not None:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
