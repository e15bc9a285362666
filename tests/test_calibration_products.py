"""Real signals: the product case set on real photographs (tests/product_cases.py), measured by the
real product check. Damaged cases are labelled reject and benign ones accept, 5% of the labels
flipped; the CLIP and IS terms are random numbers (what the random checkpoints' terms amount to:
no signal). Split by product, the learned p_accept must beat the default total on held-out
products by a clear margin, and the fit must learn to ignore CLIP and IS."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from aigc_eval.calibration import agreement as ag
from aigc_eval.calibration import fit as ft
from aigc_eval.calibration.terms import CLIP, INCEPTION, PRODUCT, measurement_terms
from aigc_eval.product import names as pn
from aigc_eval.product.check import check_product
from aigc_eval.product.composition import PROFILES
from aigc_eval.product.cutout import prepare_cutout

import product_cases

TERMS = [CLIP, INCEPTION, PRODUCT, "masked_ssim", "delta_e"]
FLIP = 0.05
CLASS_MIN = 10  # 95 cases: each training split has about 29 accepts


@pytest.fixture(scope="module")
def measured():
    products = product_cases.build_products()
    cutouts = {name: prepare_cutout(image) for name, image in products.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = product_cases.build_cases(products)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        rows = [check_product(c.generated, cutouts[c.product], profile=PROFILES[c.profile]).as_row() for c in cases]
    finally:
        cv2.setNumThreads(threads)
    rng = np.random.default_rng(2024)
    n = len(cases)
    X = np.full((n, len(TERMS)), np.nan)
    X[:, 0], X[:, 1] = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    for i, row in enumerate(rows):
        score = row.get(pn.PRODUCT_SCORE)
        X[i, 2] = np.nan if score is None or score == "" else float(score)
        extra = measurement_terms(row)
        X[i, 3], X[i, 4] = (np.nan if extra[k] is None else extra[k] for k in ("masked_ssim", "delta_e"))
    y = np.array([1 if c.expected is None else 0 for c in cases])
    flip = rng.uniform(size=n) < FLIP
    y = np.where(flip, 1 - y, y)
    products_of = np.array([c.product for c in cases], dtype=object)
    default = (0.6 * X[:, 0] + 0.4 * X[:, 1] + 0.5 * np.nan_to_num(X[:, 2], nan=0.0)) / 1.5
    return X, y, products_of, default, int(flip.sum())


def held_out_p(X, y, groups, train, test):
    cats = np.array([""] * len(y), dtype=object)
    cv = ft.cross_validate(X[train], y[train], groups[train], cats[train], class_min=CLASS_MIN, folds=4)
    model = ft.fit_terms_model(X[train], y[train], cats[train], cv.C, class_min=CLASS_MIN)
    calibrator = ft.fit_calibrator(cv.z_oof, y[train], "platt")
    return ft.apply_calibrator(calibrator, model.z(X[test], cats[test]))


def test_learned_p_accept_beats_the_default_total_on_held_out_products(measured):
    X, y, products_of, default, flipped = measured
    p = np.empty(len(y))
    for product in np.unique(products_of):  # leave one product out
        test = products_of == product
        p[test] = held_out_p(X, y, products_of, ~test, test)
    learned, baseline = ag.weighted_auc(y, p), ag.weighted_auc(y, default)
    print(f"\n{len(y)} cases on {len(np.unique(products_of))} products, {flipped} labels flipped; held-out AUC: "
          f"default total {baseline:.3f}, learned p_accept {learned:.3f}")
    assert learned >= baseline + 0.05


def test_the_fit_learns_to_ignore_clip_and_is(measured):
    X, y, products_of, default, _ = measured
    cats = np.array([""] * len(y), dtype=object)
    cv = ft.cross_validate(X, y, products_of, cats, class_min=CLASS_MIN)
    model = ft.fit_terms_model(X, y, cats, cv.C, intervals=True, class_min=CLASS_MIN).global_model
    weights, intervals = model.weights, model.intervals
    print("\nweights", dict(zip(TERMS, np.round(weights, 3))), "intervals", np.round(intervals, 2).tolist(), "C", cv.C)
    product_side = weights[2:].max()
    assert product_side > 0
    for k in (0, 1):  # CLIP and IS: small beside the product terms, and not told apart from 0
        assert weights[k] <= 0.2 * product_side
        assert weights[k] == 0 or intervals[k][0] <= 0
