"""`aigc-eval history`: check on a generated history with one injected regression (SQLite and
PostgreSQL), import of old run folders with their embeddings from the score cache, the spool."""

from __future__ import annotations

import csv
from datetime import date, timedelta

import numpy as np
import pytest
import torch
from sqlalchemy import text

from aigc_eval import columns as col
from aigc_eval.cli import main as aigc_eval
from aigc_eval.io.image_fetch import content_digest
from aigc_eval.product import names as pn
from aigc_eval.scoring.score_cache import ScoreCache
from aigc_eval.store import Recorder, RunInfo
from aigc_eval.store.db import make_engine

from postgres_server import pg  # noqa: F401  (the fixture)

UNTIL = date(2026, 11, 30)  # the day after the window
CATEGORIES = ("cake", "shoe", "lamp")




@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "history.sqlite")
    return request.getfixturevalue("pg").create_database(f"h{tmp_path.name[-12:].replace('-', '_')}")


def generate_history(url: str, regressed: str | None, drifted: str | None, per_day: int = 40, seed: int = 1) -> None:
    """35 days of rows for three categories; in the last 7 days `regressed` scores 0.06 lower and
    `drifted`'s CLIP embeddings move (a new look), everything else stays the same distribution."""
    rng = np.random.default_rng(seed)
    centres = {c: rng.normal(size=16) for c in CATEGORIES}
    shift = rng.normal(size=16) * 0.6
    run = RunInfo(generator_version="v1")
    with Recorder.open(url, source="batch", run=run) as recorder:
        for offset in range(35, 0, -1):
            day = UNTIL - timedelta(days=offset)
            recent = offset <= 7
            rows, vectors = [], []
            for category in CATEGORIES:
                for i in range(per_day):
                    mean = 0.70 - (0.06 if recent and category == regressed else 0.0)
                    rows.append({col.ID: f"{day}-{category}-{i}", col.CATEGORY: category, col.STATUS: col.STATUS_OK,
                                 col.TOTAL_SCORE: float(rng.normal(mean, 0.05)), col.CLIP_SCORE: float(rng.normal(0.3, 0.02)),
                                 col.SCORED_AT: f"{day}T10:00:00Z"})
                    vector = centres[category] + rng.normal(size=16) * 0.5
                    vectors.append(vector + shift if recent and category == drifted else vector)
            recorder.record(rows, vectors)


def test_check_alarms_for_the_regressed_category_alone(store_url, capsys):
    generate_history(store_url, regressed="shoe", drifted="shoe")
    code = aigc_eval(["history", "check", "--store", store_url, "--window", "7d", "--baseline", "28d", "--until", UNTIL.isoformat()])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert len(lines) == 2, lines
    assert all(line.startswith("shoe: ") for line in lines)
    assert "mean total_score" in lines[0] and "CMMD" in lines[1]


def test_check_passes_a_steady_history(tmp_path, capsys):
    url = str(tmp_path / "steady.sqlite")
    generate_history(url, regressed=None, drifted=None)
    assert aigc_eval(["history", "check", "--store", url, "--until", UNTIL.isoformat()]) == 0
    assert capsys.readouterr().out == ""


def test_check_rejects_a_bad_duration(capsys):
    with pytest.raises(SystemExit) as exit_info:
        aigc_eval(["history", "check", "--window", "seven"])
    assert exit_info.value.code == 2
    assert "is not a duration" in capsys.readouterr().err


def write_run(run_dir, n: int, cache_dir) -> list[np.ndarray]:
    """A scored run folder whose local images have CLIP embeddings in the score cache (all but the last)."""
    run_dir.mkdir()
    cache = ScoreCache(cache_dir / "scores.sqlite")
    vectors, rows = [], []
    for i in range(n):
        image = run_dir / f"img{i}.png"
        image.write_bytes(f"image {i}".encode())
        vector = torch.arange(8, dtype=torch.float32) + i
        if i < n - 1:
            cache.put_many("clip_image", "cn_clip:ViT-B-16:model-a", [(content_digest(image.read_bytes()), vector)])
        vectors.append(vector.numpy())
        rows.append({col.ID: f"{100 + i}", col.PROMPT: "=cake" if i == 0 else "一个蛋糕", col.IMAGE_URL: image.name,
                     col.CATEGORY: "cake", col.STATUS: col.STATUS_OK, col.CLIP_SCORE: 0.3, col.TOTAL_SCORE: 0.5 + i / 10,
                     col.KL: 2.0, pn.PRODUCT_ISSUES: "", col.REGENERATE: ""})
    cache.close()
    with open(run_dir / col.DEFAULT_TOTAL_OUTPUT, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return vectors


def test_import_old_runs_with_their_embeddings_once(tmp_path, capsys):
    cache_dir = tmp_path / "image-cache"
    vectors = write_run(tmp_path / "run1", 4, cache_dir)
    url = str(tmp_path / "store.sqlite")
    for _ in range(2):
        assert aigc_eval(["history", "import", str(tmp_path / "run1"), "--store", url, "--generator-version", "v0"]) == 0
    out = capsys.readouterr().out
    assert "4 rows, 3 CLIP embeddings" in out
    with make_engine(url).connect() as conn:
        found = conn.execute(text("SELECT image_id, embedding, generator_version, metrics FROM scores ORDER BY image_id")).all()
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 1
    assert [r[0] for r in found] == ["100", "101", "102", "103"]  # numeric-looking ids stay text
    for (image_id, blob, version, _), vector in zip(found[:3], vectors):
        assert version == "v0"
        np.testing.assert_array_equal(np.frombuffer(blob, dtype="<f2"), vector.astype(np.float16))
    assert found[3][1] is None


def test_import_without_a_cache_says_so(tmp_path, capsys):
    run_dir = tmp_path / "run2"
    write_run(run_dir, 3, tmp_path / "elsewhere")
    url = str(tmp_path / "store.sqlite")
    assert aigc_eval(["history", "import", str(run_dir), "--store", url, "--cache-dir", str(tmp_path / "none")]) == 0
    assert "no CLIP embeddings" in capsys.readouterr().out


def test_import_a_spool(tmp_path, capsys):
    spool = tmp_path / "spool.jsonl"
    with Recorder.open(f"postgresql://x@/y?host={tmp_path}", source="stream", run=RunInfo(), spool_path=spool) as recorder:
        recorder.record([{col.ID: "a", col.TOTAL_SCORE: 0.4}, {col.ID: "b", col.TOTAL_SCORE: 0.6}])
    url = str(tmp_path / "store.sqlite")
    assert aigc_eval(["history", "import", "--spool", str(spool), "--store", url]) == 0
    assert "2 rows loaded" in capsys.readouterr().out
    assert not spool.exists()
    with make_engine(url).connect() as conn:
        assert conn.execute(text("SELECT count(*), sum(total_score) FROM scores")).one() == (2, pytest.approx(1.0))


def test_import_of_a_missing_folder_is_one_line(tmp_path, capsys):
    assert aigc_eval(["history", "import", str(tmp_path / "nope"), "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no such file" in err and len(err.splitlines()) == 1
