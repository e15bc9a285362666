"""main.py --input --reference: FID, KID and CMMD against real photos, overall and per category,
from the features the scoring pass computes anyway (random-initialised checkpoints)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

from aigc_eval.cli.score import main as main_cli
from aigc_eval.scoring.clipscore import ClipScorer
from aigc_eval.scoring.distribution import cmmd
from aigc_eval.scoring.inception import InceptionScorer
from conftest import ROOT, write_csv


def _generated(tmp_path, image_files):
    return write_csv(tmp_path / "generated.csv", [
        {"id": f"g-{i}", "prompt": "木桌上的咖啡杯", "image_url": str(path), "category": "A" if i < 3 else "B"}
        for i, path in enumerate(image_files)
    ])


def _reference(tmp_path, categories=("A", "A", "B", "B")):
    photos = sorted((ROOT / "samples" / "images").glob("*.jpg"))
    folder = tmp_path / "ref"
    folder.mkdir()
    rows = []
    for i, category in enumerate(categories):
        shutil.copy(photos[i % len(photos)], folder / f"r{i}.jpg")
        rows.append({"image_url": f"ref/r{i}.jpg", "category": category})
    return write_csv(tmp_path / "reference.csv", rows)


def _run(tmp_path, generated, reference, clip_dir, inception_weights, *extra):
    return main_cli(["--input", str(generated), "--reference", str(reference), "--model", "RN50", "--model-dir",
                     str(clip_dir), "--weights", str(inception_weights), "--device", "cpu", "--precision", "fp32",
                     "--clip-result", str(tmp_path / "clip.csv"), "--is-result", str(tmp_path / "is.csv"),
                     "--output", str(tmp_path / "total.csv"), "--category-output", str(tmp_path / "cat.csv"),
                     "--distribution-output", str(tmp_path / "dist.json"), "--report", str(tmp_path / "report.html"),
                     "-q", *extra])


def test_reference_comparison_agrees_with_torch_fidelity_on_the_saved_features(tmp_path, clip_dir, inception_weights,
                                                                               image_files):
    code = _run(tmp_path, _generated(tmp_path, image_files), _reference(tmp_path), clip_dir, inception_weights,
                "--save-features", str(tmp_path / "features"))
    assert code == 0
    result = json.loads((tmp_path / "dist.json").read_text(encoding="utf-8"))
    comparisons = result["comparisons"]
    assert list(comparisons) == ["overall", "A", "B"]
    overall = comparisons["overall"]
    assert (overall["n_generated"], overall["n_reference"]) == (5, 4)
    assert comparisons["A"]["n_generated"] == 3 and comparisons["B"]["n_reference"] == 2
    assert "2048" in overall["warning"]  # too few images for a reliable FID, and it says so with the numbers
    gen, ref = (np.load(tmp_path / "features" / f"{side}_inception_pool.npy") for side in ("generated", "reference"))
    assert gen.shape == (5, 2048) and ref.shape == (4, 2048)
    stats = [fid_features_to_statistics(torch.from_numpy(f.astype(np.float64))) for f in (gen, ref)]
    reference_fid = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    assert overall["fid"] == pytest.approx(reference_fid, rel=1e-5)
    clip_gen, clip_ref = (np.load(tmp_path / "features" / f"{side}_clip.npy") for side in ("generated", "reference"))
    assert overall["cmmd"] == pytest.approx(cmmd(clip_gen, clip_ref), rel=1e-5)
    assert math.isfinite(overall["kid_mean"]) and overall["kid_std"] >= 0
    ids = json.loads((tmp_path / "features" / "generated_ids.json").read_text())
    assert ids["ids"] == [f"g-{i}" for i in range(5)] and ids["categories"] == ["A", "A", "A", "B", "B"]
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'id="distribution"' in report and 'data-set="overall"' in report


def test_a_second_run_against_the_same_reference_computes_nothing(tmp_path, clip_dir, inception_weights, image_files,
                                                                  monkeypatch):
    generated, reference = _generated(tmp_path, image_files), _reference(tmp_path)
    assert _run(tmp_path, generated, reference, clip_dir, inception_weights) == 0
    first = json.loads((tmp_path / "dist.json").read_text(encoding="utf-8"))
    monkeypatch.setattr(InceptionScorer, "classify", lambda *a, **k: pytest.fail("ran Inception again"))
    monkeypatch.setattr(ClipScorer, "encode_images", lambda *a, **k: pytest.fail("ran CLIP again"))
    assert _run(tmp_path, generated, reference, clip_dir, inception_weights) == 0
    assert json.loads((tmp_path / "dist.json").read_text(encoding="utf-8")) == first


def test_a_category_on_one_side_only_is_a_warning_not_an_error(tmp_path, clip_dir, inception_weights, image_files):
    reference = _reference(tmp_path, categories=("A", "A", "C", "C"))
    assert _run(tmp_path, _generated(tmp_path, image_files), reference, clip_dir, inception_weights, "--no-report") == 0
    comparisons = json.loads((tmp_path / "dist.json").read_text(encoding="utf-8"))["comparisons"]
    assert comparisons["B"]["fid"] is None and comparisons["B"]["n_reference"] == 0 and comparisons["B"]["warning"]
    assert comparisons["C"]["n_generated"] == 0 and comparisons["C"]["warning"]
    assert comparisons["A"]["fid"] is not None


@pytest.mark.parametrize("case", ["empty csv", "empty folder", "without --input"])
def test_unusable_references_are_one_line_errors(tmp_path, clip_dir, inception_weights, image_files, capsys, case):
    if case == "empty csv":
        (tmp_path / "reference.csv").write_text("image_url,category\n", encoding="utf-8")
        code = _run(tmp_path, _generated(tmp_path, image_files), tmp_path / "reference.csv", clip_dir, inception_weights)
    elif case == "empty folder":
        (tmp_path / "photos").mkdir()
        code = _run(tmp_path, _generated(tmp_path, image_files), tmp_path / "photos", clip_dir, inception_weights)
    else:
        code = main_cli(["--reference", str(_reference(tmp_path)), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert not (tmp_path / "dist.json").exists()


def test_compare_gives_the_distance_between_two_runs_from_the_cache(tmp_path, clip_dir, inception_weights, image_files):
    from aigc_eval.decisions.outputs import run_compare
    from aigc_eval.io.image_fetch import FetchConfig
    from aigc_eval.scoring.distribution import compare_features

    reference = _reference(tmp_path)
    runs = {"a": _generated(tmp_path, image_files), "b": write_csv(tmp_path / "b.csv", [
        {"id": f"b-{i}", "prompt": "木桌上的咖啡杯", "image_url": f"ref/r{i}.jpg", "category": "A"} for i in range(4)])}
    for name, generated in runs.items():
        assert _run(tmp_path, generated, reference, clip_dir, inception_weights, "--no-report", "--output",
                    str(tmp_path / f"total_{name}.csv"), "--save-features", str(tmp_path / f"features_{name}")) == 0
    distance = run_compare(tmp_path / "total_a.csv", tmp_path / "total_b.csv", tmp_path / "compare.csv", "id",
                           fetch=FetchConfig())
    saved = [{backbone: np.load(tmp_path / f"features_{name}" / f"generated_{backbone}.npy").astype(np.float64)
              for backbone in ("inception_pool", "clip")} for name in runs]
    expected = compare_features(saved[0], saved[1])
    assert (distance["n_generated"], distance["n_reference"]) == (5, 4)
    assert distance["kid_mean"] == pytest.approx(expected["kid_mean"], rel=1e-4)
    assert distance["cmmd"] == pytest.approx(expected["cmmd"], rel=1e-4)
    # Without the cache, there is nothing to compare, and it says so rather than guessing.
    assert run_compare(tmp_path / "total_a.csv", tmp_path / "total_b.csv", tmp_path / "compare.csv", "id",
                       fetch=FetchConfig(cache_dir=None)) is None
