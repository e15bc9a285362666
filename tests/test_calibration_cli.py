"""calibrate.py end to end on small CSVs: what it writes, its exit codes and one-line errors for
each bad input; and the labels file's rules (last row per (id, labeler), undone/skip, majority,
ties, the inter-labeler ceiling)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from aigc_eval.calibration.labels import read_labels
from aigc_eval.calibration.model import load_calibration
from aigc_eval.cli import main as aigc_eval
from aigc_eval.cli.calibrate import main
from aigc_eval.labelling import format as lf

from calibration_data import known_model, verdict_rows, write_labels, write_scores


def run(args, capsys):
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


@pytest.fixture()
def files(tmp_path):
    X, z, y, ids = known_model(600, seed=2)
    scores = write_scores(tmp_path / "result_total.csv", ids, X)
    labels = write_labels(tmp_path / "labels.csv", verdict_rows(ids, y))
    return tmp_path, scores, labels, ids, y


def test_calibrate_writes_the_calibration_and_both_reports(files, capsys):
    tmp, scores, labels, ids, y = files
    code, err = run(["--scores", scores, "--labels", labels, "--output", tmp / "calibration.json"], capsys)
    assert code == 0, err
    calibration = load_calibration(tmp / "calibration.json", ["clip", "inception", "product"])
    document = json.loads((tmp / "calibration.json").read_text(encoding="utf-8"))
    assert document["labels"]["count"] == 600 and document["labels"]["accept"] == int(y.sum())
    assert 0 < calibration.threshold < 1 and document["tool_version"] and document["cv"]["folds"] == 5
    with open(tmp / "calibration_report.csv", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["score"] for r in rows} == {"clip", "inception", "product", "default_total", "p_accept"}
    page = (tmp / "calibration_report.html").read_text(encoding="utf-8")
    assert "<script" not in page and page.count("<svg") == 2 and "people reject" in page
    assert "people's ceiling" in err and "ROC AUC" in err and "p_accept" in err


def test_the_subcommand_runs_the_same_stage(files, capsys):
    tmp, scores, labels, ids, y = files
    assert aigc_eval(["calibrate", "--scores", str(scores), "--labels", str(labels), "--output", str(tmp / "c.json")]) == 0


def test_ids_not_in_the_scores_are_counted_never_silently_dropped(files, capsys):
    tmp, scores, labels, ids, y = files
    extra = verdict_rows(ids, y) + [{lf.LABEL_ID: "ghost_0", lf.LABEL: "reject", lf.LABELER: "qa1"},
                                     {lf.LABEL_ID: "ghost_1", lf.LABEL: "accept", lf.LABELER: "qa1"}]
    write_labels(labels, extra)
    code, err = run(["--scores", scores, "--labels", labels, "--output", tmp / "c.json"], capsys)
    assert code == 0 and "2 labelled id(s) not in the scores, left out (e.g. ghost_0, ghost_1)" in err


@pytest.mark.parametrize("accepts", [0, 29])
def test_one_class_or_fewer_than_30_in_a_class_gives_no_fit_but_the_report(tmp_path, capsys, accepts):
    X, z, y, ids = known_model(200, seed=4)
    y = np.zeros(200, dtype=int)
    y[:accepts] = 1
    scores = write_scores(tmp_path / "s.csv", ids, X)
    labels = write_labels(tmp_path / "l.csv", verdict_rows(ids, y))
    code, err = run(["--scores", scores, "--labels", labels, "--output", tmp_path / "c.json"], capsys)
    assert code == 1
    assert f"no fit: {accepts} accept and {200 - accepts} reject labels" in err and "each class needs at least 30" in err
    assert not (tmp_path / "c.json").exists()
    assert (tmp_path / "calibration_report.csv").exists() and (tmp_path / "calibration_report.html").exists()


def test_duplicated_ids_in_the_scores_are_one_line_naming_the_row(files, capsys):
    tmp, scores, labels, ids, y = files
    lines = scores.read_text(encoding="utf-8").splitlines()
    scores.write_text("\n".join(lines + [lines[3]]) + "\n", encoding="utf-8")
    code, err = run(["--scores", scores, "--labels", labels, "--output", tmp / "c.json"], capsys)
    assert code == 2 and err.strip() == f"error: {scores}: row {len(lines)}: id {ids[2]!r} appears more than once; ids must be unique"
    assert not (tmp / "c.json").exists() and not (tmp / "calibration_report.csv").exists()


def test_a_labels_file_that_is_not_utf8_names_the_file_and_the_row(files, capsys):
    tmp, scores, labels, ids, y = files
    data = labels.read_bytes().splitlines(keepends=True)
    data[3] = data[3].replace(b"qa1", b"qa\xff")
    labels.write_bytes(b"".join(data))
    code, err = run(["--scores", scores, "--labels", labels, "--output", tmp / "c.json"], capsys)
    assert code == 2 and err.startswith(f"error: {labels}: row 3: not UTF-8 text") and err.count("\n") == 1


@pytest.mark.parametrize("cell, message", [
    ({lf.LABEL: "maybe"}, "label 'maybe' is not one of accept, reject, 1, 0, undone, skip"),
    ({lf.RATING: "7"}, "rating '7' is not a whole number from 1 to 5"),
    ({lf.REASON: "ugly"}, "reason 'ugly' is not one of"),
    ({lf.SOURCE: "gossip"}, "source 'gossip' is not one of qa, merchant_retry, merchant_no_retry"),
    ({lf.LABEL_ID: ""}, "empty id"),
])
def test_bad_label_cells_are_one_line_naming_the_file_and_the_row(files, capsys, cell, message):
    tmp, scores, labels, ids, y = files
    rows = verdict_rows(ids, y)
    rows[4].update(cell)
    write_labels(labels, rows)
    code, err = run(["--scores", scores, "--labels", labels, "--output", tmp / "c.json"], capsys)
    assert code == 2 and err.startswith(f"error: {labels}: row 5: ") and message in err and err.count("\n") == 1


def test_bad_arguments_exit_2_in_one_line(files, capsys):
    tmp, scores, labels, ids, y = files
    code, err = run(["--scores", scores, "--output", tmp / "c.json"], capsys)
    assert code == 2 and "no labels: give --labels" in err
    code, err = run(["--scores", scores, "--labels", labels, "--target-precision", "1.5"], capsys)
    assert code == 2 and "--target-precision must be between 0 and 1" in err
    code, err = run(["--scores", tmp / "none.csv", "--labels", labels], capsys)
    assert code == 2 and "none.csv: no such file" in err
    with pytest.raises(SystemExit) as stopped:
        main(["--labels", str(labels), "--target-precision", "0.8", "--target-regenerate-rate", "0.1"])
    assert stopped.value.code == 2


def test_target_regenerate_rate_sets_the_share_flagged(files, capsys):
    tmp, scores, labels, ids, y = files
    code, _ = run(["--scores", scores, "--labels", labels, "--output", tmp / "c.json", "--target_regenerate_rate", "0.2"], capsys)
    document = json.loads((tmp / "c.json").read_text(encoding="utf-8"))
    assert code == 0 and document["threshold_rule"] == {"target_regenerate_rate": 0.2}
    assert document["cv"]["flagged_share"] == pytest.approx(0.2, abs=0.01)


def test_labels_last_row_per_labeler_wins_undone_and_skip_withdraw_majority_decides(tmp_path):
    rows = [
        {lf.LABEL_ID: "a_0", lf.LABEL: "accept", lf.LABELER: "p"},
        {lf.LABEL_ID: "a_0", lf.LABEL: "reject", lf.LABELER: "p"},  # p changes their mind: reject wins
        {lf.LABEL_ID: "a_0", lf.LABEL: "1", lf.LABELER: "q"},
        {lf.LABEL_ID: "a_0", lf.LABEL: "0", lf.LABELER: "r"},  # 2 reject vs 1 accept: reject, a conflict
        {lf.LABEL_ID: "b_0", lf.LABEL: "accept", lf.LABELER: "p", lf.RATING: "4"},
        {lf.LABEL_ID: "b_0", lf.LABEL: "undone", lf.LABELER: "p"},  # withdrawn
        {lf.LABEL_ID: "c_0", lf.LABEL: "skip", lf.LABELER: "p"},
        {lf.LABEL_ID: "d_0", lf.LABEL: "accept", lf.LABELER: "p", lf.RATING: "5"},
        {lf.LABEL_ID: "d_0", lf.LABEL: "reject", lf.LABELER: "q", lf.RATING: "2"},  # a tie: no verdict
        {lf.LABEL_ID: "e_0", lf.LABEL: "ACCEPT", lf.LABELER: "q", lf.RATING: "3", lf.REASON: ""},
    ]
    labels = read_labels(write_labels(tmp_path / "l.csv", rows))
    assert labels.verdicts == {"a_0": 0, "e_0": 1}
    assert labels.duplicates == 2 and labels.withdrawn == 2 and labels.conflicts == 2 and labels.ties == ["d_0"]
    assert labels.ratings == {"d_0": 3.5, "e_0": 3.0}
    assert labels.by_labeler["a_0"] == {"p": 0, "q": 1, "r": 0}


def test_the_ceiling_is_cohens_kappa_for_two_labelers_and_krippendorffs_alpha_for_more():
    from sklearn.metrics import cohen_kappa_score

    from aigc_eval.calibration.agreement import labeler_agreement

    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 200)
    b = np.where(rng.uniform(size=200) < 0.8, a, 1 - a)
    two = labeler_agreement({f"i{k}": {"p": int(a[k]), "q": int(b[k])} for k in range(200)})
    assert two["measure"] == "cohen_kappa" and two["value"] == pytest.approx(cohen_kappa_score(a, b))
    c = np.where(rng.uniform(size=200) < 0.8, a, 1 - a)
    three = labeler_agreement({f"i{k}": {"p": int(a[k]), "q": int(b[k]), "r": int(c[k])} for k in range(200)})
    assert three["measure"] == "krippendorff_alpha" and three["labelers"] == 3
    assert 0.3 < three["value"] < 0.8


def test_the_report_section_for_main_py_adds_the_loaded_calibrations_p_accept(files, capsys):
    from aigc_eval.calibration.stage import agreement_section_for

    tmp, scores, labels, ids, y = files
    assert main(["--scores", str(scores), "--labels", str(labels), "--output", str(tmp / "c.json")]) == 0
    calibration = load_calibration(tmp / "c.json", ["clip", "inception", "product"])
    html = agreement_section_for(scores, labels, calibration)
    assert html.startswith('<section class="agreement">') and f"p_accept [{calibration.digest}]" in html
    assert html.count("<polyline") == 7 and "people reject" in html  # six ROC curves and the reliability line


def test_duplicates_and_conflicts_are_reported_and_two_labelers_give_the_kappa_ceiling(files, capsys):
    tmp, scores, labels, ids, y = files
    rng = np.random.default_rng(1)
    second = [int(v) if rng.uniform() < 0.85 else 1 - int(v) for v in y[:300]]
    rows = verdict_rows(ids, y) + verdict_rows(ids[:300], second, labeler="qa2") + verdict_rows(ids[:5], y[:5])
    write_labels(labels, rows)
    code, err = run(["--scores", scores, "--labels", labels, "--output", tmp / "c.json"], capsys)
    conflicts = sum(a != b for a, b in zip(y[:300], second))
    assert code == 0
    assert "5 row(s) superseded by a later row of the same (id, labeler), last one kept" in err
    assert f"{conflicts} image(s) where labelers disagree: decided by majority" in err
    assert f"{conflicts} image(s) tied between accept and reject: no verdict" in err  # one each way: a tie
    assert "people's ceiling: cohen_kappa = " in err and "over 300 images" in err
