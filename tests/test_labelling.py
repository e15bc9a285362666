"""The labels log (store.py), the orders (order.py) and label.py's command line, without a browser."""

from __future__ import annotations

import json
import os

import pytest

from aigc_eval import columns as col
from aigc_eval.cli.label import main, read_threshold
from aigc_eval.io.csv_io import InputError
from aigc_eval.labelling.format import ACCEPT, LABEL, LABEL_COLUMNS, LABEL_ID, LABEL_VALUES, REJECT, SKIP, UNDONE
from aigc_eval.labelling.order import in_overlap, score_bins, stratified_order, uncertainty_order
from aigc_eval.labelling.session import Review, load_items, order_items
from aigc_eval.labelling.store import LabelStore
from conftest import read_csv, write_csv
from label_harness import make_run


def test_each_verdict_is_on_disk_when_append_returns_and_undo_appends_a_correction(tmp_path):
    path = tmp_path / "labels.csv"
    store = LabelStore(path)
    store.append("a", ACCEPT, "qa1", "")
    store.append("b", REJECT, "qa1", "background")
    assert [r[LABEL] for r in read_csv(path)] == [ACCEPT, REJECT]  # read by another handle: on disk already
    assert store.undo("qa1")[LABEL_ID] == "b"
    assert store.undo("qa1")[LABEL_ID] == "a"
    assert store.undo("qa1") is None
    store.close()
    assert [(r[LABEL_ID], r[LABEL]) for r in read_csv(path)] == [("a", ACCEPT), ("b", REJECT), ("b", UNDONE), ("a", UNDONE)]
    assert all(r[LABEL] in LABEL_VALUES for r in read_csv(path))


def test_a_restart_reads_the_verdicts_back_and_cuts_off_a_torn_row(tmp_path):
    path = tmp_path / "labels.csv"
    store = LabelStore(path)
    store.append("a", ACCEPT, "qa1")
    store.append("b", SKIP, "qa2")
    store.close()
    with open(path, "ab") as handle:  # what a kill -9 in the middle of a write leaves
        handle.write(b"c,rej")
    again = LabelStore(path)
    assert again.last("a", "qa1")[LABEL] == ACCEPT and again.last("b", "qa2")[LABEL] == SKIP
    assert again.taken() == {"a": {"qa1"}, "b": {"qa2"}}
    again.append("c", REJECT, "qa1")
    again.close()
    assert [r[LABEL_ID] for r in read_csv(path)] == ["a", "b", "c"]
    assert (tmp_path / "labels.csv.torn").read_bytes() == b"c,rej"


def test_the_store_refuses_a_foreign_file_a_second_server_and_values_outside_the_format(tmp_path):
    foreign = write_csv(tmp_path / "other.csv", [{"id": "a", "verdict": "ok"}])
    with pytest.raises(InputError, match="not the labels format"):
        LabelStore(foreign)
    store = LabelStore(tmp_path / "labels.csv")
    with pytest.raises(InputError, match="another label.py"):
        LabelStore(tmp_path / "labels.csv")
    for bad in ({"label": "maybe"}, {"label": ACCEPT, "reason": "ugly"}, {"label": ACCEPT, "labeler": "a,b"}):
        with pytest.raises(ValueError):
            store.append("a", bad["label"], bad.get("labeler", "qa1"), bad.get("reason", ""))
    store.close()
    assert read_csv(tmp_path / "labels.csv") == []


def test_score_bins_are_quantiles_and_the_stratified_order_visits_every_stratum_first():
    assert score_bins([0.1, 0.2, 0.3, 0.4, None], 2) == [0, 0, 1, 1, -1]
    categories = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    scores = [i / 100 for i in range(100)]
    order = stratified_order(categories, scores, bins=5, seed=1)
    assert sorted(order) == list(range(100))
    bins = score_bins(scores, 5)
    strata = {(categories[i], bins[i]) for i in range(100)}
    first = {(categories[i], bins[i]) for i in order[:len(strata)]}
    assert first == strata  # the first labels already span every category x score bin
    assert order == stratified_order(categories, scores, bins=5, seed=1)  # a restart computes the same order
    assert order != stratified_order(categories, scores, bins=5, seed=2)


def test_uncertainty_order_puts_p_accept_nearest_the_threshold_first():
    assert uncertainty_order([0.9, None, 0.52, 0.1, 0.45], 0.5) == [2, 4, 0, 3, 1]


def test_the_overlap_is_a_stable_share_of_the_ids():
    ids = [f"img{i}" for i in range(4000)]
    shared = [i for i in ids if in_overlap(i, 0.1)]
    assert 0.08 < len(shared) / len(ids) < 0.12
    assert shared == [i for i in ids if in_overlap(i, 0.1)]
    assert not any(in_overlap(i, 0.0) for i in ids) and all(in_overlap(i, 1.0) for i in ids)


def test_items_carry_the_cleaned_and_the_raw_prompt_and_refuse_repeated_ids(tmp_path):
    scores = make_run(tmp_path, 2)
    items = load_items(scores)
    assert items[0].raw_prompt.startswith("请帮我生成一张图片")
    assert "请帮我" not in items[0].prompt and "雪地背景" in items[0].prompt
    assert items[0].cutout == "cutout.png" and items[1].cutout == ""
    duplicate = write_csv(tmp_path / "dup.csv", [{col.ID: "x", col.IMAGE_URL: "a.png"}, {col.ID: "x", col.IMAGE_URL: "b.png"}])
    with pytest.raises(InputError, match="ids must be unique"):
        load_items(duplicate)


def test_work_is_shared_out_and_an_undo_reopens_the_image(tmp_path):
    items = load_items(make_run(tmp_path, 6))
    store = LabelStore(tmp_path / "labels.csv")
    review = Review(items, order_items(items, "input", 0.5), store)
    first = review.next_items("qa1", 3)
    second = review.next_items("qa2", 3)
    assert [i.id for i in first] == ["g0", "g1", "g2"] and [i.id for i in second] == ["g3", "g4", "g5"]
    store.append("g0", ACCEPT, "qa1")
    assert [i.id for i in review.next_items("qa1", 3, holding=["g1", "g2"])] == []
    store.undo("qa1")
    assert [i.id for i in review.next_items("qa1", 1, holding=["g1", "g2"])] == ["g0"]
    assert review.progress("qa1")["mine"] == 0
    store.close()


def test_uncertainty_order_needs_p_accept_and_the_threshold_comes_from_the_calibration(tmp_path, capsys):
    scores = make_run(tmp_path, 3)
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"threshold": 0.7, "method": "isotonic"}))
    assert read_threshold(calibration, None) == 0.7
    assert read_threshold(calibration, 0.3) == 0.3
    assert read_threshold(None, None) == 0.5
    assert main(["--scores", str(scores), "--order", "uncertainty", "--labels", str(tmp_path / "l.csv")]) == 2
    assert "needs a p_accept column" in capsys.readouterr().err
    assert main(["--scores", str(scores), "--calibration", str(calibration), "--labels", str(tmp_path / "l.csv")]) == 2
    err = capsys.readouterr().err  # not a calibrate.py file: one line saying so
    assert str(calibration) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    rows = read_csv(scores)
    for row, p in zip(rows, ("0.9", "0.68", "0.2")):
        row["p_accept"] = p
    items = load_items(write_csv(tmp_path / "with_p.csv", rows))
    assert [items[i].id for i in order_items(items, "uncertainty", 0.7)] == ["g1", "g0", "g2"]


def test_labels_written_by_the_page_keep_the_formats_columns(tmp_path):
    store = LabelStore(tmp_path / "labels.csv")
    store.append("=cmd", ACCEPT, "qa1")  # a spreadsheet formula in an id stays text, and reads back the same
    store.close()
    rows = read_csv(tmp_path / "labels.csv")
    assert list(rows[0]) == list(LABEL_COLUMNS)
    raw = (tmp_path / "labels.csv").read_text(encoding="utf-8-sig")
    assert "'=cmd" in raw and os.path.getsize(tmp_path / "labels.csv") > 0


def test_without_a_p_accept_column_the_calibrations_own_scorer_gives_the_uncertainty_order(tmp_path):
    from aigc_eval.cli.calibrate import main as calibrate
    from aigc_eval.labelling.session import p_accept_from_calibration
    from calibration_data import known_model, verdict_rows, write_labels, write_scores

    X, _, y, ids = known_model(200)
    scores = write_scores(tmp_path / "result_total.csv", ids, X)
    labels = write_labels(tmp_path / "labels.csv", verdict_rows(ids, y))
    calibration = tmp_path / "calibration.json"
    assert calibrate(["--scores", str(scores), "--labels", str(labels), "--output", str(calibration), "-q"]) == 0
    p = p_accept_from_calibration(scores, calibration)
    assert len(p) == 200 and all(0.0 < v < 1.0 for v in p) and len(set(p)) > 100
    # p_accept rises with the CLIP term, which the known model weights most
    clip = X[:, 0]
    assert sum((p[i] - p[j]) * (clip[i] - clip[j]) > 0 for i in range(0, 200, 7) for j in range(1, 200, 11)) > 0.6 * 29 * 19
    threshold = read_threshold(calibration, None)
    items = load_items(scores)
    order = order_items(items, "uncertainty", threshold, p_accept=p)
    distances = [abs(p[i] - threshold) for i in order]
    assert distances == sorted(distances)
