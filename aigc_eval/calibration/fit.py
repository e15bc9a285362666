"""The fit: a logistic regression over the terms, regularised by grouped cross-validation, with
per-category weights shrunk toward the global ones, and p_accept calibrated inside the
cross-validation (pure numpy/scikit-learn, arrays in, plain numbers out).

Definitions:
- z = intercept + sum_i w_i * x_i over the terms x_i in 0..1; a missing term takes its fill (the
  mean of that term over the training rows that have it).
- Weights are non-negative by default: scikit-learn's LogisticRegression (L2, Newton-Cholesky) is fitted,
  and while a weight is negative the most negative term is fixed at 0 and the rest refitted
  (an active-set search for the constrained optimum).
- C (inverse L2 strength) is the value of C_GRID whose global fit has the lowest out-of-fold log
  loss over FOLDS folds (the per-category fits use the same C), searched from the weakest penalty
  down; a stronger penalty is chosen only when it lowers the loss by LOSS_TOLERANCE, and the
  search stops after two that do not (the loss is taken as unimodal in log C);
  folds are drawn by group (request, or product cut-out), so one group's images never sit on
  both sides of a fold.
- A category with at least CATEGORY_MIN_LABELS labels and CLASS_MIN of each class gets its own
  fit, blended with the global one: w_c = s * w_cat + (1 - s) * w_global, s = n_c / (n_c + SHRINK_LABELS).
- p_accept = calibrator(z); the calibrator (Platt: sigmoid(a z + b); or isotonic) is fitted on the
  out-of-fold z, and judged on each fold by a calibrator fitted on the other folds' z.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

FOLDS = 5
FOLD_SEED = 7
C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
LOSS_TOLERANCE = 1e-5  # log loss a stronger penalty must gain to be chosen
CLASS_MIN = 30
CATEGORY_MIN_LABELS = 200
SHRINK_LABELS = 500
CALIBRATORS = ("platt", "isotonic")


@dataclass
class LinearModel:
    """z = intercept + weights . terms (missing terms replaced by fills)."""

    intercept: float
    weights: np.ndarray
    fills: np.ndarray
    intervals: np.ndarray | None = None  # (k, 2) 95% Wald intervals; NaN for a term fixed at 0

    def z(self, X: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(X), self.fills, X)
        return self.intercept + filled @ self.weights


@dataclass
class TermsModel:
    """The global model and per-category overrides (already shrunk)."""

    global_model: LinearModel
    categories: dict[str, LinearModel] = field(default_factory=dict)
    category_labels: dict[str, int] = field(default_factory=dict)

    def z(self, X: np.ndarray, categories: np.ndarray) -> np.ndarray:
        out = self.global_model.z(X)
        for name, model in self.categories.items():
            member = categories == name
            if member.any():
                out[member] = model.z(X[member])
        return out


def fills_of(X: np.ndarray) -> np.ndarray:
    """Each column's mean over its present values (0.5 when a column has none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(X, axis=0)
    return np.where(np.isnan(means), 0.5, means)


def fit_linear(X: np.ndarray, y: np.ndarray, C: float, nonneg: bool = True, intervals: bool = False) -> LinearModel:
    """L2 logistic regression of y on the terms (non-negative weights unless `nonneg` is False)."""
    fills = fills_of(X)
    filled = np.where(np.isnan(X), fills, X)
    k = X.shape[1]
    active = list(range(k))
    weights, intercept = np.zeros(k), 0.0
    while active:
        # Newton-Cholesky: exact Newton steps suit a handful of terms over many rows (lbfgs is ~10x slower here).
        model = LogisticRegression(C=C, solver="newton-cholesky", max_iter=200, tol=1e-8)
        model.fit(filled[:, active], y)
        coef = model.coef_[0]
        if nonneg and (coef < 0).any():
            active.pop(int(np.argmin(coef)))
            continue
        weights = np.zeros(k)
        weights[active] = coef
        intercept = float(model.intercept_[0])
        break
    else:
        rate = min(max(float(np.mean(y)), 1e-6), 1 - 1e-6)
        intercept = math.log(rate / (1 - rate))
    fitted = LinearModel(intercept, weights, fills)
    if intervals:
        fitted.intervals = wald_intervals(filled, fitted, active, C)
    return fitted


def wald_intervals(filled: np.ndarray, model: LinearModel, active: list[int], C: float) -> np.ndarray:
    """95% intervals weight +- 1.96 SE, SE from the inverse penalised Hessian at the fit, over the
    free terms (a term fixed at 0 by the constraint has NaN)."""
    out = np.full((filled.shape[1], 2), np.nan)
    if not active:
        return out
    design = np.column_stack([np.ones(len(filled)), filled[:, active]])
    z = model.intercept + filled @ model.weights
    p = 1.0 / (1.0 + np.exp(-z))
    hessian = design.T @ (design * (p * (1 - p))[:, None])
    hessian[1:, 1:] += np.eye(len(active)) / C
    cov = np.linalg.pinv(hessian)
    se = np.sqrt(np.clip(np.diag(cov)[1:], 0, None))
    out[active, 0] = model.weights[active] - 1.96 * se
    out[active, 1] = model.weights[active] + 1.96 * se
    return out


def enough_classes(y: np.ndarray, minimum: int = CLASS_MIN) -> bool:
    return len(y) > 0 and int(y.sum()) >= minimum and int(len(y) - y.sum()) >= minimum


def fit_terms_model(X: np.ndarray, y: np.ndarray, categories: np.ndarray, C: float, nonneg: bool = True,
                    intervals: bool = False, class_min: int = CLASS_MIN) -> TermsModel:
    """The global fit, and a shrunk fit for each category with enough labels."""
    model = TermsModel(fit_linear(X, y, C, nonneg, intervals))
    names, codes = np.unique(np.asarray(categories).astype(str), return_inverse=True)
    counts = np.bincount(codes, minlength=len(names))
    for code, name in enumerate(names):
        if not name or counts[code] < CATEGORY_MIN_LABELS:
            continue
        member = codes == code
        n = int(counts[code])
        if not enough_classes(y[member], class_min):
            continue
        own = fit_linear(X[member], y[member], C, nonneg)
        share = n / (n + SHRINK_LABELS)
        g = model.global_model
        model.categories[str(name)] = LinearModel(share * own.intercept + (1 - share) * g.intercept,
                                                  share * own.weights + (1 - share) * g.weights, g.fills)
        model.category_labels[str(name)] = n
    return model


def assign_folds(groups: np.ndarray, folds: int = FOLDS, seed: int = FOLD_SEED) -> np.ndarray:
    """Fold of each row: groups shuffled (seeded) and dealt round-robin, so a group is in one fold."""
    unique, index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of_group = np.empty(len(unique), dtype=int)
    fold_of_group[order] = np.arange(len(unique)) % folds
    return fold_of_group[index]


def log_loss(y: np.ndarray, z: np.ndarray) -> float:
    """Mean negative log likelihood of y under sigmoid(z)."""
    return float(np.mean(np.logaddexp(0, z) - y * z))


@dataclass
class CrossValidation:
    """What grouped cross-validation found: the chosen C, out-of-fold z and p_accept."""

    C: float
    losses: dict[float, float]
    z_oof: np.ndarray
    p_oof: np.ndarray
    folds: np.ndarray


def out_of_fold_z(X, y, categories, folds, C, nonneg, class_min, per_category: bool = True) -> np.ndarray | None:
    """Each row's z from the fit on the other folds (None when a training side has one class)."""
    z = np.empty(len(y))
    none = np.full(len(y), "", dtype=object)
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        if not (y[train].min() < y[train].max()):
            return None
        cats = categories if per_category else none
        model = fit_terms_model(X[train], y[train], cats[train], C, nonneg, class_min=class_min)
        z[test] = model.z(X[test], cats[test])
    return z


def cross_validate(X: np.ndarray, y: np.ndarray, groups: np.ndarray, categories: np.ndarray, *,
                   nonneg: bool = True, calibrator: str = "platt", grid: tuple[float, ...] = C_GRID,
                   folds: int = FOLDS, class_min: int = CLASS_MIN) -> CrossValidation:
    """Choose C by the grouped-CV log loss of the global fit; then the out-of-fold z of the full
    model (global and per-category) at that C, and p_accept calibrated per fold by a calibrator
    fitted on the other folds' out-of-fold z."""
    fold = assign_folds(groups, folds)
    categories = np.asarray(categories, dtype=object)
    losses, best, misses = {}, None, 0
    for C in sorted(grid, reverse=True):  # weakest penalty first; the loss is taken as unimodal in log C
        z = out_of_fold_z(X, y, categories, fold, C, nonneg, class_min, per_category=False)
        if z is None:
            raise ValueError("a cross-validation fold has labels of one class only; label more images")
        losses[C] = log_loss(y, z)
        if best is None or losses[C] < losses[best] - LOSS_TOLERANCE:
            best, misses = C, 0
        else:
            misses += 1
            if misses == 2:
                break  # two stronger penalties in a row did not help: past the minimum
    C = best
    z_oof = out_of_fold_z(X, y, categories, fold, C, nonneg, class_min)
    p_oof = np.empty(len(y))
    for k in np.unique(fold):
        other = fold != k
        p_oof[fold == k] = apply_calibrator(fit_calibrator(z_oof[other], y[other], calibrator), z_oof[fold == k])
    return CrossValidation(C, losses, z_oof, p_oof, fold)


def fit_calibrator(z: np.ndarray, y: np.ndarray, kind: str) -> dict[str, object]:
    """The calibrator's parameters as plain JSON values."""
    if kind == "platt":
        model = LogisticRegression(C=1e6, solver="newton-cholesky", max_iter=200).fit(z.reshape(-1, 1), y)
        return {"kind": "platt", "a": float(model.coef_[0][0]), "b": float(model.intercept_[0])}
    if kind == "isotonic":
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(z, y)
        return {"kind": "isotonic", "x": [float(v) for v in model.X_thresholds_], "y": [float(v) for v in model.y_thresholds_]}
    raise ValueError(f"unknown calibrator {kind!r}; choose one of {', '.join(CALIBRATORS)}")


def apply_calibrator(params: dict[str, object], z: np.ndarray) -> np.ndarray:
    """p_accept from z: Platt's sigmoid(a z + b), or the isotonic step function interpolated linearly."""
    z = np.asarray(z, dtype=float)
    if params["kind"] == "platt":
        return 1.0 / (1.0 + np.exp(-(float(params["a"]) * z + float(params["b"]))))
    return np.interp(z, np.asarray(params["x"], dtype=float), np.asarray(params["y"], dtype=float))


def choose_threshold(y: np.ndarray, p: np.ndarray, target_precision: float | None,
                     target_rate: float | None) -> float:
    """The regenerate threshold on p_accept (flag p < threshold).

    With a target regenerate rate r: the r-quantile of p (so about r of the images are flagged).
    With a target precision P: the highest threshold at which at least P of the flagged images are
    rejected by people (the most recall for that precision); the lowest p when none reaches it.
    """
    p = np.asarray(p, dtype=float)
    if target_rate is not None:
        return float(np.quantile(p, target_rate))
    order = np.argsort(p, kind="mergesort")
    ps, rejected = p[order], (np.asarray(y)[order] == 0)
    last = np.r_[ps[1:] != ps[:-1], True]  # thresholds between distinct values
    flagged = np.arange(1, len(ps) + 1)
    precision = np.cumsum(rejected) / flagged
    ok = np.nonzero(last & (precision >= (target_precision if target_precision is not None else 0.8)))[0]
    if not len(ok):
        return float(ps[0])
    i = ok[-1]
    return float(ps[i + 1]) if i + 1 < len(ps) else float(ps[i] + 1e-9)
