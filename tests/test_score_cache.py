"""The score cache: a rerun reads instead of recomputing, an interrupted run resumes, and
changed weights or precision never return stale numbers. Also bf16 against fp32."""

import json
import os

import pytest
import torch

import columns as col
import evaluate_clipscore as evaluate_clipscore_module
import image_pipeline
from conftest import cpu_fp32, read_csv, write_csv
from evaluate_clipscore import ClipScorer, evaluate_clipscore
from evaluate_is import evaluate_is
from image_fetch import FetchConfig
from model_loading import cpu_supports_bf16


def _csv(tmp_path, image_files):
    rows = [{"id": f"r{i}", "prompt": f"第{i}张商品图", "image_url": str(f)} for i, f in enumerate(image_files)]
    return write_csv(tmp_path / "in.csv", rows)


def _count_encoded(monkeypatch, fail_after: int | None = None):
    """Count images sent to the CLIP image encoder; optionally crash after some batches."""
    seen = {"images": 0, "calls": 0}
    original = ClipScorer.encode_images

    def counting(self, pixels):
        seen["calls"] += 1
        if fail_after is not None and seen["calls"] > fail_after:
            raise KeyboardInterrupt("simulated kill mid-run")
        seen["images"] += len(pixels)
        return original(self, pixels)

    monkeypatch.setattr(ClipScorer, "encode_images", counting)
    return seen


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
    _count_encoded(monkeypatch, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate_clipscore(path, out, model_name="RN50", model_dir=clip_dir, runtime=runtime)
    assert not out.exists()  # never a half-written output
    monkeypatch.undo()
    seen = _count_encoded(monkeypatch)
    evaluate_clipscore(path, out, model_name="RN50", model_dir=clip_dir, runtime=runtime)
    assert seen["images"] == 1  # two batches of two were finished before the crash
    reference = tmp_path / "reference.csv"
    evaluate_clipscore(path, reference, model_name="RN50", model_dir=clip_dir, runtime=cpu_fp32(fetch=FetchConfig(cache_dir=None)))
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
def test_default_precision_stays_close_to_fp32(tmp_path, clip_dir_vit, inception_weights, image_files):
    path = _csv(tmp_path, image_files)
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
    from model_loading import resolve_precision

    expected = torch.bfloat16 if cpu_supports_bf16() else torch.float32
    assert resolve_precision("auto", torch.device("cpu")) == expected
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", torch.device("cpu"))
