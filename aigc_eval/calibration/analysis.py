"""Everything the calibration stage computes from the joined data, before any file is written:
the agreement figures of every score, and (with enough labels) the fit, its cross-validated
figures and the threshold. Pure: arrays in, an Analysis out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aigc_eval.calibration import agreement as ag
from aigc_eval.calibration import fit as ft
from aigc_eval.calibration.dataset import Dataset

DEFAULT_TOTAL = "default_total"
LEARNED = "p_accept"
CATEGORY_REPORT_MIN = 50  # labels a category needs for its own agreement rows
CATEGORY_CLASS_MIN = 10
DISAGREEMENTS = 12  # images listed in each direction


@dataclass
class ScoreAgreement:
    score: str
    category: str  # "" for all
    n: int
    accept: int
    reject: int
    auc: float
    auc_low: float
    auc_high: float
    average_precision: float
    spearman: float


@dataclass
class FitResult:
    model: ft.TermsModel
    cv: ft.CrossValidation
    calibrator: dict[str, object]
    calibrator_kind: str
    threshold: float
    threshold_rule: dict[str, float]
    brier: float
    ece: float
    reliability: list[ag.ReliabilityBin]
    precision: tuple[float, float, float]  # point, low, high at the threshold (out of fold)
    recall: tuple[float, float, float]
    flagged_share: float
    confusion: dict[str, int]  # at the threshold, out of fold
    auc: tuple[float, float, float]
    embedding: dict[str, object] | None = None


@dataclass
class Analysis:
    data: Dataset
    agreements: list[ScoreAgreement]
    labelers: dict[str, object]
    fit: FitResult | None
    no_fit_reason: str = ""
    disagreements: dict[str, list[int]] = field(default_factory=dict)  # direction -> row positions
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # score -> (fpr, tpr)


def score_agreement(name: str, category: str, y, scores, ratings, groups) -> ScoreAgreement | None:
    present = ~np.isnan(scores)
    y, scores, ratings, groups = y[present], scores[present], ratings[present], groups[present]
    if not len(y):
        return None
    auc, low, high = ag.auc_with_interval(y, scores, groups)
    rated = ~np.isnan(ratings)
    rho = ag.spearman(scores[rated], ratings[rated]) if rated.any() else float("nan")
    return ScoreAgreement(name, category, int(len(y)), int(y.sum()), int(len(y) - y.sum()), auc, low, high,
                          ag.reject_average_precision(y, scores), rho)


def roc_points(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) with accept as positive, thinned to <= 200 points."""
    from sklearn.metrics import roc_curve

    present = ~np.isnan(scores)
    if len(np.unique(y[present])) < 2:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    fpr, tpr, _ = roc_curve(y[present], scores[present])
    if len(fpr) > 200:
        keep = np.unique(np.linspace(0, len(fpr) - 1, 200).astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return fpr, tpr


def run_fit(data: Dataset, *, nonneg: bool, calibrator: str, target_precision: float | None,
            target_rate: float | None, class_min: int = ft.CLASS_MIN) -> FitResult:
    cv = ft.cross_validate(data.X, data.y, data.groups, data.categories, nonneg=nonneg, calibrator=calibrator,
                           class_min=class_min)
    model = ft.fit_terms_model(data.X, data.y, data.categories, cv.C, nonneg, intervals=True, class_min=class_min)
    params = ft.fit_calibrator(cv.z_oof, data.y, calibrator)
    threshold = ft.choose_threshold(data.y, cv.p_oof, target_precision, target_rate)
    rule = {"target_regenerate_rate": target_rate} if target_rate is not None else {
        "target_precision": target_precision if target_precision is not None else 0.8}
    y, p = data.y, cv.p_oof
    draws = [ag.precision_recall_at(y, p, threshold, w) for w in ag.bootstrap_weights(data.groups)]
    prec, rec, share = ag.precision_recall_at(y, p, threshold)

    def interval(values: list[float], point: float) -> tuple[float, float, float]:
        finite = np.array([v for v in values if not np.isnan(v)])
        if not len(finite):
            return point, float("nan"), float("nan")
        return point, float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))

    flagged = p < threshold
    confusion = {"flagged_rejected": int((flagged & (y == 0)).sum()), "flagged_accepted": int((flagged & (y == 1)).sum()),
                 "kept_rejected": int((~flagged & (y == 0)).sum()), "kept_accepted": int((~flagged & (y == 1)).sum())}
    return FitResult(model, cv, params, calibrator, threshold, rule, ag.brier(y, p), ag.expected_calibration_error(y, p),
                     ag.reliability(y, p), interval([d[0] for d in draws], prec), interval([d[1] for d in draws], rec),
                     share, confusion, ag.auc_with_interval(y, p, data.groups))


def analyse(data: Dataset, labelers: dict[str, object], *, nonneg: bool = True, calibrator: str = "platt",
            target_precision: float | None = None, target_rate: float | None = None,
            class_min: int = ft.CLASS_MIN) -> Analysis:
    """Agreement of each term and of the default total; the fit when each class has class_min labels."""
    scores: dict[str, np.ndarray] = {name: data.X[:, k] for k, name in enumerate(data.term_names)}
    scores[DEFAULT_TOTAL] = data.default_total
    fit: FitResult | None = None
    reason = ""
    accepts, rejects = int(data.y.sum()), int(len(data.y) - data.y.sum())
    if not ft.enough_classes(data.y, class_min):
        reason = (f"no fit: {accepts} accept and {rejects} reject labels on scored images; "
                  f"each class needs at least {class_min}")
    else:
        fit = run_fit(data, nonneg=nonneg, calibrator=calibrator, target_precision=target_precision,
                      target_rate=target_rate, class_min=class_min)
        scores[LEARNED] = fit.cv.p_oof
    agreements = []
    for name, values in scores.items():
        found = score_agreement(name, "", data.y, values, data.ratings, data.groups)
        if found:
            agreements.append(found)
    for category in sorted(set(data.categories) - {""}):
        member = data.categories == category
        y = data.y[member]
        if member.sum() < CATEGORY_REPORT_MIN or not ft.enough_classes(y, CATEGORY_CLASS_MIN):
            continue
        for name, values in scores.items():
            found = score_agreement(name, category, y, values[member], data.ratings[member], data.groups[member])
            if found:
                agreements.append(found)
    analysis = Analysis(data, agreements, labelers, fit, reason)
    analysis.curves = {name: roc_points(data.y, values) for name, values in scores.items() if len(data.y)}
    ranking = fit.cv.p_oof if fit else data.default_total
    if len(data.y):
        filled = np.where(np.isnan(ranking), 0.5, ranking)
        accepted, rejected = np.nonzero(data.y == 1)[0], np.nonzero(data.y == 0)[0]
        analysis.disagreements = {
            "accepted, scored lowest": list(accepted[np.argsort(filled[accepted], kind="mergesort")][:DISAGREEMENTS]),
            "rejected, scored highest": list(rejected[np.argsort(-filled[rejected], kind="mergesort")][:DISAGREEMENTS]),
        }
    return analysis
