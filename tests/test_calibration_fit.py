"""The fit on labels from a known logistic model (recovery, AUC, calibration), the grouping that
prevents leakage, the threshold rules and the scorer read back from calibration.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from aigc_eval.calibration import agreement as ag
from aigc_eval.calibration import fit as ft
from aigc_eval.calibration.analysis import analyse
from aigc_eval.calibration.dataset import Dataset
from aigc_eval.calibration.model import load_calibration
from aigc_eval.calibration.report import calibration_document
from aigc_eval.calibration.terms import CLIP, INCEPTION, PRODUCT

from calibration_data import TRUE_INTERCEPT, TRUE_WEIGHTS, default_total, known_model

NAMES = [CLIP, INCEPTION, PRODUCT]


def dataset(X, y, ids, groups=None, categories=None) -> Dataset:
    n = len(y)
    groups = np.array([i.rsplit("_", 1)[0] for i in ids], dtype=object) if groups is None else groups
    cats = np.array([""] * n, dtype=object) if categories is None else np.asarray(categories, dtype=object)
    return Dataset(list(ids), list(NAMES), list(NAMES), X, np.asarray(y), np.full(n, np.nan), groups, cats,
                   default_total(np.nan_to_num(X, nan=0.5)), [{} for _ in range(n)])


@pytest.fixture(scope="module")
def synthetic():
    X, z, y, ids = known_model(5000)
    return X, z, y, ids, analyse(dataset(X, y, ids), {})


def test_the_fit_recovers_the_known_weights_within_its_intervals(synthetic):
    X, z, y, ids, analysis = synthetic
    g = analysis.fit.model.global_model
    print(f"\nrecovered intercept {g.intercept:.3f} (true {TRUE_INTERCEPT}); weights", {
        n: (round(w, 3), None if math.isnan(lo) else (round(lo, 3), round(hi, 3))) for n, w, (lo, hi) in zip(NAMES, g.weights, g.intervals)})
    for k, name in enumerate(NAMES):
        lo, hi = g.intervals[k]
        if TRUE_WEIGHTS[name] == 0:  # a zero weight: fixed at 0 by the constraint, or an interval holding 0
            assert g.weights[k] == 0 or lo <= 0 <= hi
        else:
            assert lo <= TRUE_WEIGHTS[name] <= hi, (name, g.weights[k], lo, hi)


def test_cross_validated_auc_is_within_0_01_of_the_known_models(synthetic):
    X, z, y, ids, analysis = synthetic
    known = ag.weighted_auc(y, z)
    learned = analysis.fit.auc[0]
    print(f"\nknown-model AUC {known:.4f}, cross-validated learned AUC {learned:.4f}")
    assert abs(learned - known) <= 0.01


def test_expected_calibration_error_is_at_most_0_03_on_5000_rows(synthetic):
    analysis = synthetic[-1]
    print(f"\nECE {analysis.fit.ece:.4f}, Brier {analysis.fit.brier:.4f}")
    assert len(synthetic[2]) == 5000 and analysis.fit.ece <= 0.03


def test_the_default_total_is_reported_beside_the_learned_score(synthetic):
    analysis = synthetic[-1]
    by = {a.score: a for a in analysis.agreements if not a.category}
    assert {"clip", "inception", "product", "default_total", "p_accept"} <= set(by)
    assert by["p_accept"].auc > by["default_total"].auc  # the known model does not weigh product
    assert by["product"].auc_low < 0.5 < by["product"].auc_high  # no signal: the interval holds 1/2


def test_a_leaking_split_inflates_auc_and_grouping_by_request_prevents_it():
    """Each request's 8 images share the request's verdict and a request-specific term (a one-hot
    'fingerprint', say the product or the scene) that says nothing about other requests. Split at
    random across folds, the fit learns each request's verdict from its siblings and the AUC is
    inflated; with folds grouped by request it cannot, and the out-of-fold AUC shows no skill."""
    rng = np.random.default_rng(3)
    requests, per = 200, 8
    verdict = rng.integers(0, 2, requests)
    ids = [f"q{r}_{i}" for r in range(requests) for i in range(per)]
    y = np.repeat(verdict, per)
    X = np.zeros((len(y), requests))
    X[np.arange(len(y)), np.repeat(np.arange(requests), per)] = 1.0
    groups_request = np.array([i.rsplit("_", 1)[0] for i in ids], dtype=object)
    groups_leaky = np.array([str(k) for k in range(len(y))], dtype=object)  # every image its own group
    cats = np.array([""] * len(y), dtype=object)
    leaky = ft.cross_validate(X, y, groups_leaky, cats, nonneg=False, class_min=5)
    grouped = ft.cross_validate(X, y, groups_request, cats, nonneg=False, class_min=5)
    leaky_auc, grouped_auc = ag.weighted_auc(y, leaky.z_oof), ag.weighted_auc(y, grouped.z_oof)
    print(f"\nleaky AUC {leaky_auc:.3f}, grouped AUC {grouped_auc:.3f}")
    assert leaky_auc > 0.9
    assert grouped_auc < 0.6


def test_threshold_by_target_precision_and_by_regenerate_rate():
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1, 1, 1])
    p = np.linspace(0.05, 0.95, 10)
    t = ft.choose_threshold(y, p, 0.75, None)
    precision, recall, share = ag.precision_recall_at(y, p, t)
    # Flagging the lowest 5 gives 4/5 = 0.8 >= 0.75; the lowest 6 gives 4/6 < 0.75: five are flagged.
    assert share == 0.5 and precision == 0.8 and recall == 1.0
    t = ft.choose_threshold(y, p, None, 0.3)
    assert ag.precision_recall_at(y, p, t)[2] == pytest.approx(0.3, abs=0.1)


def test_auc_matches_scikit_learn_and_ties_count_one_half():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.uniform(size=500) + 0.3 * y, 1)  # many ties
    assert ag.weighted_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert ag.weighted_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5


def test_isotonic_calibrator_is_monotone_and_calibrated():
    X, z, y, ids = known_model(3000, seed=5)
    analysis = analyse(dataset(X, y, ids), {}, calibrator="isotonic")
    assert analysis.fit.calibrator["kind"] == "isotonic" and analysis.fit.ece <= 0.04
    ys = analysis.fit.calibrator["y"]
    assert all(a <= b for a, b in zip(ys, ys[1:]))


def test_the_scorer_read_back_from_the_file_reproduces_the_fit(tmp_path, synthetic):
    X, z, y, ids, analysis = synthetic
    document = calibration_document(analysis, "abc")
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    calibration = load_calibration(path, [PRODUCT, CLIP, INCEPTION])  # order does not matter
    fit = analysis.fit
    expected = ft.apply_calibrator(fit.calibrator, fit.model.z(X[:50], np.array([""] * 50, dtype=object)))
    got = [calibration.p_accept({CLIP: r[0], INCEPTION: r[1], PRODUCT: r[2]}, None) for r in X[:50]]
    assert np.allclose(got, expected, atol=1e-12)
    assert set(calibration.weights(None)) == set(NAMES) and min(calibration.weights(None).values()) >= 0
    assert calibration.threshold == fit.threshold and len(calibration.digest) == 12 and calibration.created_at.endswith("Z")
    # A missing term takes its fill: the same as passing the fill.
    fill = document["model"]["fills"][PRODUCT]
    assert calibration.p_accept({CLIP: 0.5, INCEPTION: 0.5, PRODUCT: None}, "unknown") == pytest.approx(
        calibration.p_accept({CLIP: 0.5, INCEPTION: 0.5, PRODUCT: fill}, None))
    assert calibration.p_accept({CLIP: 0.5, INCEPTION: 0.5}, None) == calibration.p_accept({CLIP: 0.5, INCEPTION: 0.5, PRODUCT: None}, None)


def test_a_file_for_another_metric_set_or_definition_is_refused_in_one_line(tmp_path, synthetic):
    document = calibration_document(synthetic[-1], "abc")
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ValueError) as refused:
        load_calibration(path, [CLIP, INCEPTION])
    assert "made for the metrics clip, inception, product" in str(refused.value) and "\n" not in str(refused.value)
    document["definition_versions"][CLIP] = "0"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ValueError, match="other metric definitions"):
        load_calibration(path, NAMES)
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not a calibration file"):
        load_calibration(path, NAMES)
    with pytest.raises(ValueError, match="no such calibration file"):
        load_calibration(tmp_path / "none.json", NAMES)


def test_per_category_weights_are_fitted_where_there_are_enough_labels_and_shrunk_toward_global():
    rng = np.random.default_rng(11)
    n = 6000
    X = rng.uniform(0, 1, (n, 3))
    cats = np.where(np.arange(n) < 3000, "蛋糕", "鞋")
    cats[-100:] = "rare"
    # In 蛋糕 only product matters; elsewhere only clip.
    z = np.where(cats == "蛋糕", -2 + 4 * X[:, 2], -2 + 4 * X[:, 0])
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-z))).astype(int)
    ids = [f"c{i}_0" for i in range(n)]
    analysis = analyse(dataset(X, y, ids, categories=cats), {})
    model = analysis.fit.model
    assert set(model.categories) == {"蛋糕", "鞋"}  # "rare" has too few labels: global weights
    cake, shoe, g = model.categories["蛋糕"].weights, model.categories["鞋"].weights, model.global_model.weights
    assert cake[2] > g[2] and cake[0] < g[0] and shoe[0] > g[0]
    share = 3000 / (3000 + ft.SHRINK_LABELS)
    assert cake[2] < g[2] + (cake[2] - g[2]) / share + 1e-9  # between the category's own fit and global
