"""Inception Score evaluator: summary and per-image columns, saved logits, weights loading."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import cpu_fp32, read_csv, write_csv
from torch_fidelity.metric_isc import isc_features_to_metric

from aigc_eval import columns as col
from aigc_eval.cli.inception import main as is_main
from aigc_eval.scoring import inception as evaluate_is
from aigc_eval.scoring.metrics import per_image_kl
from aigc_eval.scoring.model_loading import inception_checkpoint_path


def _csv(tmp_path, sources):
    rows = [{"id": f"r{i}", "prompt": "商品", "image_url": str(s), "category": "蛋糕"} for i, s in enumerate(sources)]
    return write_csv(tmp_path / "in.csv", rows)


def test_outputs_agree_with_torch_fidelity_on_saved_logits(tmp_path, inception_weights, image_files):
    sources = image_files + [tmp_path / "absent.png"] + image_files
    out, logits_path = tmp_path / "result_is.csv", tmp_path / "logits.npy"
    code = is_main(["--input", str(_csv(tmp_path, sources)), "--output", str(out), "--weights", str(inception_weights),
                             "--splits", "2", "--save-logits", str(logits_path), "--batch-size", "3", "--device", "cpu",
                             "--precision", "fp32", "-q"])
    assert code == 1  # one row could not be read
    rows = read_csv(out)
    summary = json.loads((tmp_path / "result_is.json").read_text())
    logits = torch.from_numpy(np.load(logits_path))
    assert logits.shape == (10, 1000)
    reference = isc_features_to_metric(logits, splits=2, shuffle=True, rng_seed=2020)
    assert summary[col.KEY_IS_MEAN] == pytest.approx(reference["inception_score_mean"], abs=1e-6)
    assert summary[col.KEY_IS_STD] == pytest.approx(reference["inception_score_std"], abs=1e-6)
    assert summary[col.KEY_IS_MEAN] > 1.0  # the random classifier spreads these images over classes
    assert (summary[col.KEY_NUM_IMAGES], summary[col.KEY_SPLITS], summary[col.KEY_NUM_ERRORS]) == (10, 2, 1)
    assert "more than 500" in summary[col.KEY_WARNING]
    ok = [r for r in rows if r[col.STATUS] == "ok"]
    assert [r["id"] for r in rows if r[col.STATUS] == "error"] == ["r5"] and "no such file" in rows[5][col.ERROR]
    probs = logits.double().softmax(dim=1)
    kl = per_image_kl(logits)
    for i, row in enumerate(ok):
        assert int(row[col.TOP1_CLASS]) == int(probs[i].argmax())
        assert float(row[col.TOP1_CONFIDENCE]) == pytest.approx(float(probs[i].max()), abs=1e-6)
        assert float(row[col.KL]) == pytest.approx(float(kl[i]), abs=1e-6)
        assert row[col.TOP1_LABEL] and row["category"] == "蛋糕"
    # The same image twice in one batch gets the same logits: no batch dependence.
    assert torch.allclose(logits[:5], logits[5:], atol=1e-4)


def test_default_weights_come_from_torchvision_cache(tmp_path, inception_weights, image_files):
    target = inception_checkpoint_path()
    assert target.name == "inception_v3_google-0cc3c7bd.pth" and str(tmp_path) in str(target)
    target.parent.mkdir(parents=True)
    target.write_bytes(inception_weights.read_bytes())
    rows, errors = evaluate_is.evaluate_is(_csv(tmp_path, image_files), tmp_path / "r.csv", runtime=cpu_fp32())
    assert (rows, errors) == (5, 0)
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary[col.KEY_SPLITS] == 1 and "splits reduced from 10 to 1" in summary[col.KEY_WARNING]
    assert summary[col.KEY_IS_CI_LOW] <= summary[col.KEY_IS_CI_HIGH]
    assert summary[col.KEY_PER_CATEGORY]["蛋糕"][col.KEY_NUM_IMAGES] == 5
    assert summary[col.KEY_PER_CATEGORY]["蛋糕"][col.KEY_IS_MEAN] == pytest.approx(summary[col.KEY_IS_MEAN])
    assert math.isfinite(summary[col.KEY_IS_MEAN])


def test_missing_weights_name_the_file(tmp_path, image_files, capsys):
    code = is_main(["--input", str(_csv(tmp_path, image_files)), "--output", str(tmp_path / "r.csv"), "-q"])
    err = capsys.readouterr().err
    assert code == 3 and str(inception_checkpoint_path()) in err and "inception_v3_google-0cc3c7bd.pth" in err
    assert "Traceback" not in err and not (tmp_path / "r.csv").exists()
    code = is_main(["--input", str(_csv(tmp_path, image_files)), "--weights", str(tmp_path / "w.pth"), "-q"])
    assert code == 3 and "w.pth: no such file" in capsys.readouterr().err


def test_weights_file_of_the_wrong_model_is_refused(tmp_path, image_files, capsys):
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    code = is_main(["--input", str(_csv(tmp_path, image_files)), "--weights", str(wrong), "-q"])
    assert code == 3 and "not an Inception-v3 ImageNet state_dict" in capsys.readouterr().err


def test_all_rows_failing_still_writes_outputs(tmp_path, inception_weights):
    out = tmp_path / "r.csv"
    rows, errors = evaluate_is.evaluate_is(_csv(tmp_path, [tmp_path / "a.png", "http://127.0.0.1:9/b.png"]), out,
                                           weights=inception_weights, runtime=cpu_fp32())
    assert (rows, errors) == (2, 2)
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary[col.KEY_IS_MEAN] is None and summary[col.KEY_NUM_IMAGES] == 0
