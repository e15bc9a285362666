"""Regenerate flags, the per-category table, the run summary, A/B comparison and bad scored CSVs."""

import math

import numpy as np
import pytest
from conftest import read_csv, write_csv
from scipy import stats

from aigc_eval import columns as col
from aigc_eval.cli.score import main as main_cli
from aigc_eval.decisions.compare import compare_runs
from aigc_eval.decisions.outputs import decide_files
from aigc_eval.decisions.rules import (
    category_table,
    imbalance_warning,
    run_summary,
)
from aigc_eval.metrics.base import MetricResult
from aigc_eval.metrics.decide import decide, decision_settings
from aigc_eval.metrics.registry import metric_templates


def _row(id_, clip, confidence, total, category="蛋糕", status="ok"):
    return {"id": id_, col.CLIP_SCORE: str(clip), col.TOP1_CONFIDENCE: str(confidence), col.TOTAL_SCORE: str(total),
            col.STATUS: status, "category": category}


def test_regenerate_reasons_follow_the_thresholds():
    metrics = metric_templates(["clip", "inception"])
    settings = decision_settings(metrics, thresholds={"clip.min": "0.3", "inception.min_confidence": "0.2"})

    def reasons(clip, confidence, status="ok"):
        results = {"clip": MetricResult(status, "", {col.CLIP_SCORE: clip, col.CLIP_NORM: 0.5}),
                   "inception": MetricResult("ok", "", {col.TOP1_CONFIDENCE: confidence, col.IS_NORM: 0.5})}
        return "; ".join(decide(metrics, results, settings).regenerate)

    assert reasons(0.45, 0.6) == ""
    assert reasons(0.21, 0.6) == "clip_score 0.210 < 0.3"
    assert reasons(0.21, 0.05) == "clip_score 0.210 < 0.3; top1_confidence 0.050 < 0.2"
    assert reasons(0.1, 0.05, status="error") == ""


@pytest.mark.parametrize("thresholds, message", [({"clip.min": "1.5"}, "clip.min"),
                                                 ({"inception.min_confidence": "-0.1"}, "inception.min_confidence"),
                                                 ({"clip.max": "0.1"}, "no such rule")])
def test_thresholds_out_of_range(thresholds, message):
    with pytest.raises(ValueError, match=message):
        decision_settings(metric_templates(["clip", "inception"]), thresholds=thresholds)


def test_category_table_and_imbalance():
    rows = [_row(str(i), 0.4, 0.5, 0.5) for i in range(7)] + [_row("x", 0.2, 0.5, 0.3, "鞋靴"), _row("y", 0.4, 0.5, 0.7, "鞋靴"),
                                                               _row("z", "", "", "", "家具", status="error")]
    rows[-2][col.REGENERATE] = ""
    rows[-3][col.REGENERATE] = "clip_score 0.200 < 0.3"
    table = category_table(rows, "category", {"蛋糕": {col.KEY_IS_MEAN: 1.7, col.KEY_NUM_IMAGES: 7}})
    assert [t[col.CAT_CATEGORY] for t in table] == ["蛋糕", "鞋靴", "家具"]
    shoes = table[1]
    assert shoes[col.CAT_COUNT] == 2 and shoes[col.CAT_SHARE] == pytest.approx(2 / 10)
    assert shoes[col.CAT_CLIP_MEAN] == pytest.approx(0.3) and shoes[col.CAT_CLIP_STD] == pytest.approx(0.1)
    assert shoes[col.CAT_REGENERATE] == 1 and shoes[col.CAT_IS] is None
    assert table[0][col.CAT_IS] == 1.7 and table[0][col.CAT_IS_IMAGES] == 7
    assert table[2][col.CAT_CLIP_MEAN] is None  # no scored rows
    assert "蛋糕 holds 70%" in imbalance_warning(table)
    assert imbalance_warning(category_table(rows[:2] + rows[7:9], "category", {})) == ""


def test_run_summary_counts():
    rows = [_row("a", 0.5, 0.5, 0.8), _row("b", 0.1, 0.5, 0.2), _row("c", "", "", "", status="skipped"),
            _row("d", "", "", "", status="error")]
    rows[1][col.REGENERATE] = "clip_score 0.100 < 0.3"
    summary = run_summary(rows, {col.KEY_IS_MEAN: 2.0, col.KEY_IS_STD: 0.1}, 0.6, 0.4, ["", "few images"])
    assert (summary[col.SUM_OK], summary[col.SUM_ERRORS], summary[col.SUM_SKIPPED], summary[col.SUM_REGENERATE]) == (2, 1, 1, 1)
    assert summary[col.SUM_CLIP_MEAN] == pytest.approx(0.3) and summary[col.SUM_WARNINGS] == ["few images"]


def _scored(path, values, status="ok", ids=None):
    ids = ids or [f"r{i}" for i in range(len(values))]
    return write_csv(path, [{"id": i, col.CLIP_SCORE: v, col.STATUS: status} for i, v in zip(ids, values)])


def test_paired_comparison_matches_scipy(tmp_path):
    rng = np.random.default_rng(1)
    before = rng.normal(0.38, 0.05, 30)
    after = before + rng.normal(0.13, 0.04, 30)  # the article's prompt refinement: 0.38 -> 0.51
    a, b = _scored(tmp_path / "a.csv", before), _scored(tmp_path / "b.csv", after)
    (result,) = compare_runs(a, b)
    differences = after - before
    low, high = stats.t.interval(0.95, 29, loc=differences.mean(), scale=stats.sem(differences))
    assert result["pairing"] == "paired on id" and result["n_a"] == 30
    assert result["difference"] == pytest.approx(differences.mean())
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((low, high))
    assert result["t_test_p"] == pytest.approx(stats.ttest_rel(after, before).pvalue)
    assert result["t_test_p"] < 1e-6 and result["rank_test_p"] < 1e-4


def test_unpaired_comparison_uses_welch(tmp_path):
    a = _scored(tmp_path / "a.csv", [0.30, 0.35, 0.40, 0.32])
    b = _scored(tmp_path / "b.csv", [0.50, 0.55, 0.45], ids=["x", "y", "z"])
    (result,) = compare_runs(a, b)
    assert result["pairing"] == "unpaired"
    assert result["t_test_p"] == pytest.approx(stats.ttest_ind([0.50, 0.55, 0.45], [0.30, 0.35, 0.40, 0.32], equal_var=False).pvalue)
    assert result["ci_low"] < result["difference"] < result["ci_high"]


def test_compare_cli_writes_the_table(tmp_path, capsys):
    a = _scored(tmp_path / "a.csv", [0.30, 0.35, 0.40, 0.32])
    b = _scored(tmp_path / "b.csv", [0.33, 0.36, 0.48, 0.30])
    out = tmp_path / "compare.csv"
    assert main_cli(["--compare", str(a), str(b), "--compare-output", str(out)]) == 0
    (row,) = read_csv(out)
    assert row["metric"] == "clip_score" and float(row["difference"]) == pytest.approx(0.025)
    assert "clip_score: 0.3425 -> 0.3675" in capsys.readouterr().err


@pytest.mark.parametrize(
    "clip_value, message",
    [("abc", "row 'a': clip_score is not a finite number ('abc')"), ("nan", "row 'a': clip_score is not a finite number ('nan')")],
)
def test_bad_scores_in_old_files_name_file_and_row(tmp_path, capsys, clip_value, message):
    clip = write_csv(tmp_path / "c.csv", [{"id": "a", col.CLIP_SCORE: clip_value, col.STATUS: "ok", col.ERROR: ""}])
    is_ = write_csv(tmp_path / "i.csv", [{"id": "a", col.KL: "0.1", col.TOP1_LABEL: "cup", col.TOP1_CONFIDENCE: "0.5",
                                          col.STATUS: "ok", col.ERROR: ""}])
    code = main_cli(["--clip-result", str(clip), "--is-result", str(is_), "--output", str(tmp_path / "t.csv"), "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and f"{clip}: {message}" in err and "Traceback" not in err


def test_compare_without_common_scores_is_an_error(tmp_path, capsys):
    a = write_csv(tmp_path / "a.csv", [{"id": "1", "x": "1"}])
    assert main_cli(["--compare", str(a), str(a)]) == 2
    assert "share none of the score columns" in capsys.readouterr().err


def test_skipped_rows_stay_skipped_in_the_total(tmp_path):
    clip = write_csv(tmp_path / "c.csv", [{"id": "a", col.CLIP_SCORE: "", col.STATUS: "skipped", col.ERROR: "no visual description"}])
    is_ = write_csv(tmp_path / "i.csv", [{"id": "a", col.KL: "0.1", col.TOP1_LABEL: "cup", col.TOP1_CONFIDENCE: "0.5",
                                          col.STATUS: "ok", col.ERROR: ""}])
    summary = decide_files({"clip": clip, "inception": is_}, tmp_path / "t.csv")
    (row,) = read_csv(tmp_path / "t.csv")
    assert row[col.STATUS] == "skipped" and "no visual description" in row[col.ERROR] and not math.isnan(summary[col.SUM_SKIPPED])
