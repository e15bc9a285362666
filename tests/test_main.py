"""main.py: the weighted merge, its argument checks, and the one-process scoring job."""

import json
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import ROOT, cpu_fp32, photo, read_csv, write_csv

from aigc_eval import columns as col
from aigc_eval.cli.score import main as main_cli
from aigc_eval.decisions.outputs import decide_files
from aigc_eval.io.image_fetch import FetchConfig
from bench.product_images import SlowImageServer

CLIP_ROWS = [
    {"id": "a", "prompt": "红色自行车", "image_url": "a.png", "clip_score": "0.3", "status": "ok", "error": "", "category": "玩具"},
    {"id": "b", "prompt": "黄色卡车", "image_url": "b.png", "clip_score": "0.9", "status": "ok", "error": "", "category": "玩具"},
    {"id": "c", "prompt": "", "image_url": "c.png", "clip_score": "", "status": "error", "error": "empty prompt in column prompt", "category": "蛋糕"},
    {"id": "d", "prompt": "x", "image_url": "d.png", "clip_score": "-0.1", "status": "ok", "error": "", "category": "蛋糕"},
]
IS_ROWS = [
    {"id": "b", "prompt": "黄色卡车", "image_url": "b.png", "top1_label": "trailer truck", "top1_confidence": "0.9", "kl": "0", "status": "ok", "error": ""},
    {"id": "a", "prompt": "红色自行车", "image_url": "a.png", "top1_label": "bicycle", "top1_confidence": "0.8", "kl": str(math.log(1000) / 2), "status": "ok", "error": ""},
    {"id": "c", "prompt": "", "image_url": "c.png", "top1_label": "cake", "top1_confidence": "0.5", "kl": "1.0", "status": "ok", "error": ""},
    {"id": "e", "prompt": "y", "image_url": "e.png", "top1_label": "", "top1_confidence": "", "kl": "", "status": "error", "error": "HTTP 404"},
]


@pytest.fixture
def results(tmp_path):
    return write_csv(tmp_path / "result_clip.csv", CLIP_ROWS), write_csv(tmp_path / "result_is.csv", IS_ROWS)


def test_merge_joins_on_id_and_weights_normalised_scores(tmp_path, results):
    summary = decide_files(dict(zip(("clip", "inception"), results)), tmp_path / "total.csv",
                           weights={"clip": 0.6, "inception": 0.4})
    rows = read_csv(tmp_path / "total.csv")
    written = {r["id"]: r for r in rows}
    assert [r["id"] for r in rows] == ["a", "b", "c", "d", "e"]
    assert (summary[col.SUM_ROWS], summary[col.SUM_OK], summary[col.SUM_ERRORS]) == (5, 2, 3)
    assert float(written["a"][col.TOTAL_SCORE]) == pytest.approx(0.6 * 0.5 + 0.4 * 0.5, abs=1e-6)
    assert float(written["b"][col.TOTAL_SCORE]) == pytest.approx(0.6 * 1.0 + 0.4 * 0.0, abs=1e-6)
    assert written["c"][col.STATUS] == "error" and "result_clip.csv: empty prompt" in written["c"][col.ERROR]
    assert written["d"][col.STATUS] == "error" and written["d"][col.ERROR] == "missing from result_is.csv"
    assert written["e"][col.ERROR] == "missing from result_clip.csv; result_is.csv: HTTP 404"
    assert written["a"]["category"] == "玩具" and written["a"][col.TOP1_LABEL] == "bicycle"


def test_article_command_uses_default_files(tmp_path, results, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main_cli(["--clip_weight", "1", "--is_weight", "0", "--no-report", "-q"]) == 1  # some rows are errors
    total = {r["id"]: r for r in read_csv(tmp_path / "result_total.csv")}
    assert float(total["b"][col.TOTAL_SCORE]) == pytest.approx(1.0)
    assert capsys.readouterr().out == ""


def test_num_classes_comes_from_the_summary(tmp_path, results):
    (tmp_path / "result_is.json").write_text(json.dumps({col.KEY_NUM_CLASSES: 10}))
    decide_files(dict(zip(("clip", "inception"), results)), tmp_path / "total.csv", weights={"clip": 0, "inception": 1})
    total = {r["id"]: r for r in read_csv(tmp_path / "total.csv")}
    assert float(total["a"][col.IS_NORM]) == 1.0  # ln(1000)/2 nats exceeds ln(10)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--clip-weight", "-1"], "must not be negative"),
        (["--clip_weight", "0", "--is_weight", "0"], "every weight is 0"),
        (["--clip-result", "nope.csv"], "nope.csv: no such file"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, results, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main_cli(args + ["--no-report", "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "result_total.csv").exists()


def test_duplicate_ids_in_differently_ordered_files_are_refused(tmp_path, capsys):
    clip = write_csv(tmp_path / "c.csv", [CLIP_ROWS[0], CLIP_ROWS[0], CLIP_ROWS[1]])
    is_ = write_csv(tmp_path / "i.csv", [IS_ROWS[0], IS_ROWS[1]])
    assert main_cli(["--clip-result", str(clip), "--is-result", str(is_), "--output", str(tmp_path / "t.csv"),
                      "--no-report", "-q"]) == 2
    assert "id 'a' appears more than once" in capsys.readouterr().err


def test_main_job_scores_the_shipped_sample(tmp_path, clip_dir_vit, inception_weights, capsys):
    sample = tmp_path / "samples"
    shutil.copytree(ROOT / "samples", sample)
    out = {name: tmp_path / name for name in ("result_clip.csv", "result_is.csv", "result_total.csv")}
    code = main_cli(["--input", str(sample / "sample.csv"), "--model-dir", str(clip_dir_vit), "--weights", str(inception_weights),
                      "--clip-result", str(out["result_clip.csv"]), "--is-result", str(out["result_is.csv"]),
                      "--output", str(out["result_total.csv"]), "--device", "cpu", "--precision", "fp32", "--no-cache",
                      "--category-output", str(tmp_path / "result_category.csv"), "--report", str(tmp_path / "report.html")])
    captured = capsys.readouterr()
    assert code == 0 and captured.out == ""
    assert "wrote" in captured.err and "rows 5: 5 scored, 0 errors, 0 skipped" in captured.err
    total = read_csv(out["result_total.csv"])
    assert [r["id"] for r in total] == ["s-1", "s-2", "s-3", "s-4", "s-5"]
    assert all(0 <= float(r[col.TOTAL_SCORE]) <= 1 for r in total)
    summary = json.loads((tmp_path / "result_is.json").read_text())
    assert summary[col.KEY_NUM_IMAGES] == 5
    assert all(r[col.RAW_PROMPT] for r in total)  # prompts were cleaned, the raw ones kept
    categories = {r["category"]: r for r in read_csv(tmp_path / "result_category.csv")}
    assert int(categories["咖啡"][col.CAT_COUNT]) == 2 and float(categories["咖啡"][col.CAT_SHARE]) == pytest.approx(0.4)
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert all(f'card-id">{r["id"]} ' in report for r in total) and report.count("data:image/jpeg;base64,") >= 5
    # One process, same numbers as the separate evaluators.
    from aigc_eval.scoring import clipscore as evaluate_clipscore
    separate = tmp_path / "separate.csv"
    evaluate_clipscore.evaluate_clipscore(sample / "sample.csv", separate, model_dir=clip_dir_vit,
                                          runtime=cpu_fp32(fetch=FetchConfig(cache_dir=None)))
    for joint, alone in zip(read_csv(out["result_clip.csv"]), read_csv(separate)):
        assert float(joint[col.CLIP_SCORE]) == pytest.approx(float(alone[col.CLIP_SCORE]), abs=1e-5)


def _recorded(scores: os.PathLike, kind: str) -> int:
    try:
        with sqlite3.connect(f"file:{scores}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT count(*) FROM features WHERE kind = ?", (kind,)).fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet


def test_kill_9_mid_run_loses_no_recorded_batch_and_the_rerun_resumes(tmp_path, clip_dir, inception_weights):
    """A real `kill -9` of `main.py --input` once two batches are recorded: no output is left
    half-written, and the rerun computes only what was not recorded, with the same scores."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(24):
        photo((64, 48), seed=100 + i).save(folder / f"p{i:02d}.png")
    server = SlowImageServer(folder, latency=0.3)  # slow enough to be killed mid-run
    try:
        rows = [{"id": f"r{i}", "prompt": f"第{i}张商品图", "image_url": f"{server.url}/p{i:02d}.png"} for i in range(24)]
        csv_path = write_csv(tmp_path / "in.csv", rows)
        out = {name: tmp_path / name for name in ("clip.csv", "is.csv", "total.csv")}
        job = [sys.executable, str(ROOT / "main.py"), "--input", str(csv_path), "--model", "RN50", "--model-dir",
               str(clip_dir), "--weights", str(inception_weights), "--device", "cpu", "--precision", "fp32",
               "--batch-size", "2", "--workers", "2", "--clip-result", "clip.csv", "--is-result", "is.csv",
               "--output", "total.csv", "--no-report"]
        command = job + ["--cache-dir", str(tmp_path / "cache"), "-q"]
        scores = tmp_path / "cache" / "scores.sqlite"
        run = subprocess.Popen(command, cwd=tmp_path)
        deadline = time.monotonic() + 120
        while _recorded(scores, "clip_image") < 4 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        run.send_signal(signal.SIGKILL)
        assert run.wait() == -signal.SIGKILL, "main.py finished before it could be killed mid-run"
        recorded = _recorded(scores, "clip_image")
        assert 4 <= recorded < 24 and _recorded(scores, "inception_logits") >= recorded
        assert not any(path.exists() for path in out.values())  # nothing half-written
        rerun = subprocess.run(command[:-1], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        reused, computed = map(int, re.search(r"image embeddings: (\d+) from the cache, (\d+) computed", rerun.stderr).groups())
        assert (reused, computed) == (recorded, 24 - recorded)
        reference = tmp_path / "reference"
        reference.mkdir()
        subprocess.run(job + ["--no-cache", "-q"], cwd=reference, check=True, timeout=300)
    finally:
        server.close()
    for name in ("clip.csv", "is.csv"):
        resumed, whole = read_csv(out[name]), read_csv(reference / name)
        assert [r["id"] for r in resumed] == [r["id"] for r in whole] == [f"r{i}" for i in range(24)]
        for a, b in zip(resumed, whole):
            for column in (col.CLIP_SCORE, col.KL):
                if column in a:
                    assert float(a[column]) == pytest.approx(float(b[column]), abs=1e-5)
