"""The score cache: a rerun reads instead of recomputing, an interrupted run resumes, and
changed weights or precision never return stale numbers. Also bf16 against fp32."""

import json
import os
import threading

import pytest
import torch
from conftest import ROOT, cpu_fp32, read_csv, write_csv

from aigc_eval import columns as col
from aigc_eval.io.image_fetch import FetchConfig
from aigc_eval.scoring import clipscore as evaluate_clipscore_module
from aigc_eval.scoring import image_pipeline
from aigc_eval.scoring.clipscore import ClipScorer, evaluate_clipscore
from aigc_eval.scoring.inception import evaluate_is
from aigc_eval.scoring.model_loading import cpu_supports_bf16


def _csv(tmp_path, image_files):
    rows = [{"id": f"r{i}", "prompt": f"第{i}张商品图", "image_url": str(f)} for i, f in enumerate(image_files)]
    return write_csv(tmp_path / "in.csv", rows)


def _count_encoded(monkeypatch):
    """Count images sent to the CLIP image encoder (from the model lanes, so under a lock)."""
    seen, lock = {"images": 0}, threading.Lock()
    original = ClipScorer.encode_images

    def counting(self, pixels):
        with lock:
            seen["images"] += len(pixels)
        return original(self, pixels)

    monkeypatch.setattr(ClipScorer, "encode_images", counting)
    return seen


def _crash_when_recording_batch(monkeypatch, number: int):
    """Simulate a kill just before the `number`-th batch's results are recorded."""
    recorded, original = [], ClipScorer.score_batch

    def crashing(self, *args, **kwargs):
        recorded.append(1)
        if len(recorded) == number:
            raise KeyboardInterrupt("simulated kill mid-run")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ClipScorer, "score_batch", crashing)


def test_rerun_reads_the_cache_and_decodes_nothing(tmp_path, clip_dir, image_files, monkeypatch):
    runtime = cpu_fp32(batch_size=2, fetch=FetchConfig(cache_dir=tmp_path / "cache"))
    path = _csv(tmp_path, image_files)
    evaluate_clipscore(path, tmp_path / "first.csv", model_name="RN50", model_dir=clip_dir, runtime=runtime)
    seen = _count_encoded(monkeypatch)
    monkeypatch.setattr(image_pipeline, "decode_image", lambda *a, **k: pytest.fail("decoded a cached image"))
    monkeypatch.setattr(evaluate_clipscore_module, "load_chinese_clip", lambda *a, **k: pytest.fail("loaded the model"))
    evaluate_clipscore(path, tmp_path / "second.csv", model_name="RN50", model_dir=clip_dir, runtime=runtime)
    assert seen["images"] == 0
    assert read_csv(tmp_path / "first.csv") == read_csv(tmp_path / "second.csv")


def test_interrupted_run_resumes_with_only_the_missing_images(tmp_path, clip_dir, image_files, monkeypatch):
    runtime = cpu_fp32(batch_size=2, fetch=FetchConfig(cache_dir=tmp_path / "cache"))
    path, out = _csv(tmp_path, image_files), tmp_path / "result_clip.csv"
    _crash_when_recording_batch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        evaluate_clipscore(path, out, model_name="RN50", model_dir=clip_dir, runtime=runtime)
    assert not out.exists()  # never a half-written output
    monkeypatch.undo()
    seen = _count_encoded(monkeypatch)
    evaluate_clipscore(path, out, model_name="RN50", model_dir=clip_dir, runtime=runtime)
    assert seen["images"] == 1  # two batches of two were finished before the crash
    reference = tmp_path / "reference.csv"
    # The same batches as the resumed run: a matrix product's last bit can depend on the batch's size.
    evaluate_clipscore(path, reference, model_name="RN50", model_dir=clip_dir,
                       runtime=cpu_fp32(batch_size=2, fetch=FetchConfig(cache_dir=None)))
    assert [r[col.CLIP_SCORE] for r in read_csv(out)] == [r[col.CLIP_SCORE] for r in read_csv(reference)]


def test_changed_weights_or_precision_miss_the_cache(tmp_path, clip_dir, image_files, monkeypatch):
    runtime = cpu_fp32(fetch=FetchConfig(cache_dir=tmp_path / "cache"))
    path = _csv(tmp_path, image_files)
    evaluate_clipscore(path, tmp_path / "a.csv", model_name="RN50", model_dir=clip_dir, runtime=runtime)
    seen = _count_encoded(monkeypatch)
    checkpoint = clip_dir / "clip_cn_rn50.pt"
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    evaluate_clipscore(path, tmp_path / "b.csv", model_name="RN50", model_dir=clip_dir, runtime=runtime)
    assert seen["images"] == 5
    if cpu_supports_bf16():
        evaluate_clipscore(path, tmp_path / "c.csv", model_name="RN50", model_dir=clip_dir,
                           runtime=cpu_fp32(precision="bf16", fetch=FetchConfig(cache_dir=tmp_path / "cache")))
        assert seen["images"] == 10


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bfloat16")
def test_default_precision_stays_close_to_fp32(tmp_path, clip_dir_vit, inception_weights):
    # The shipped photos: on the synthetic gradient-and-noise images of other tests, even a
    # tenth of a grey level of input noise moves the random Inception's 5-image IS by 1.2% in fp32.
    path = _csv(tmp_path, sorted((ROOT / "samples" / "images").iterdir()))
    for precision in ("fp32", "auto"):
        runtime = cpu_fp32(precision=precision, fetch=FetchConfig(cache_dir=None))
        evaluate_clipscore(path, tmp_path / f"clip_{precision}.csv", model_dir=clip_dir_vit, runtime=runtime)
        evaluate_is(path, tmp_path / f"is_{precision}.csv", weights=inception_weights, splits=1, runtime=runtime)
    fp32, auto = (read_csv(tmp_path / f"clip_{p}.csv") for p in ("fp32", "auto"))
    differences = [abs(float(a[col.CLIP_SCORE]) - float(b[col.CLIP_SCORE])) for a, b in zip(fp32, auto)]
    assert 0 < max(differences) < 0.01  # auto really ran in bf16, and stayed within 0.01
    is_fp32, is_auto = (json.loads((tmp_path / f"is_{p}.json").read_text())[col.KEY_IS_MEAN] for p in ("fp32", "auto"))
    assert abs(is_auto - is_fp32) / is_fp32 < 0.01


def test_auto_precision_follows_the_hardware():
    from aigc_eval.scoring.model_loading import resolve_precision

    expected = torch.bfloat16 if cpu_supports_bf16() else torch.float32
    assert resolve_precision("auto", torch.device("cpu")) == expected
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", torch.device("cpu"))


def test_kill_9_mid_run_then_rerun_resumes_from_the_cache(tmp_path, clip_dir, inception_weights):
    """main.py --input killed with SIGKILL after some batches: the rerun computes only the rest."""
    import re
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    from conftest import ROOT, photo

    images = []
    for i in range(16):
        path = tmp_path / f"p{i}.jpg"
        photo((160, 120), seed=50 + i).save(path)
        images.append(path)
    path = write_csv(tmp_path / "in.csv", [{"id": f"r{i}", "prompt": f"第{i}张", "image_url": p.name} for i, p in enumerate(images)])
    cache = tmp_path / "cache"
    command = [sys.executable, str(ROOT / "main.py"), "--input", str(path), "--model", "RN50", "--model-dir", str(clip_dir),
               "--weights", str(inception_weights), "--batch-size", "2", "--workers", "1", "--precision", "fp32",
               "--cache-dir", str(cache), "--no-report", "--clip-result", str(tmp_path / "c.csv"),
               "--is-result", str(tmp_path / "i.csv"), "--output", str(tmp_path / "t.csv"),
               "--category-output", str(tmp_path / "cat.csv")]

    def committed() -> int:
        try:
            with sqlite3.connect(cache / "scores.sqlite", timeout=1) as db:
                return db.execute("SELECT COUNT(*) FROM features WHERE kind='inception_logits'").fetchone()[0]
        except sqlite3.Error:
            return 0

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while committed() < 4 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = committed()
    assert 4 <= done_before < 16, "the kill should land mid-run"
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "c.csv").exists()

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    reused, computed = map(int, re.search(r"logits: (\d+) from the cache, (\d+) computed", rerun.stderr).groups())
    assert reused >= done_before and reused + computed == 16 and computed < 16
    reference = subprocess.run([*command[:command.index("--cache-dir")], "--no-cache", "--no-report",
                                "--clip-result", str(tmp_path / "c_ref.csv"), "--is-result", str(tmp_path / "i_ref.csv"),
                                "--output", str(tmp_path / "t_ref.csv"), "--category-output", str(tmp_path / "cat_ref.csv")],
                               capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr
    resumed, fresh = read_csv(tmp_path / "t.csv"), read_csv(tmp_path / "t_ref.csv")
    assert [r["id"] for r in resumed] == [r["id"] for r in fresh]
    for a, b in zip(resumed, fresh):
        for key in (col.CLIP_SCORE, col.KL, col.TOTAL_SCORE):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-5)


def test_main_rerun_from_the_cache_loads_neither_model(tmp_path, clip_dir, inception_weights, image_files, monkeypatch):
    """main.py --input warms its models up early, but only for images that need them."""
    from aigc_eval.scoring import inception as evaluate_is_module
    from aigc_eval.scoring.combined import score_csv
    from aigc_eval.scoring.prompt_cleaning import CleaningOptions

    path = _csv(tmp_path, image_files)

    def run(tag):
        score_csv(path, tmp_path / f"{tag}_clip.csv", tmp_path / f"{tag}_is.csv", id_col="id", prompt_col="prompt",
                   image_col="image_url", model_name="RN50", model_dir=clip_dir, weights=inception_weights, splits=1,
                   cleaning=CleaningOptions(), runtime=cpu_fp32(batch_size=2, fetch=FetchConfig(cache_dir=tmp_path / "cache")))

    run("first")
    loaded = []  # a list, not pytest.fail: a warm-up thread drops its errors
    for module, loader in ((evaluate_clipscore_module, "load_chinese_clip"), (evaluate_is_module, "load_inception")):
        monkeypatch.setattr(module, loader, lambda *a, name=loader, **k: loaded.append(name))
    monkeypatch.setattr(image_pipeline, "decode_image", lambda *a, **k: pytest.fail("decoded a cached image"))
    run("second")
    assert loaded == []
    assert read_csv(tmp_path / "first_clip.csv") == read_csv(tmp_path / "second_clip.csv")
    assert read_csv(tmp_path / "first_is.csv") == read_csv(tmp_path / "second_is.csv")
