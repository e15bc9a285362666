"""Pure figures of agreement between a score and people's verdicts (arrays in, numbers out).

Conventions, used everywhere in the calibration stage: y = 1 means people accept the image, a
higher score means the tool likes it more. ROC AUC is P(score of an accepted image > score of a
rejected one), ties counting one half. Average precision is that of finding the REJECTED images
by the lowest scores first (the regenerate use). Intervals are 95% percentile intervals of a
bootstrap that resamples whole groups (requests), seeded, so images of one request move together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, cohen_kappa_score

BOOTSTRAP_SAMPLES = 200  # enough for a percentile interval to about +-0.01 of AUC; keeps 100,000 rows under a minute
BOOTSTRAP_SEED = 20240
ECE_BINS = 10


def _tie_ranks(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, tie group index of each sorted position) for weighted rank sums."""
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    new_group = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    return order, np.cumsum(new_group) - 1


def weighted_auc(y: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None,
                 _ranks: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """ROC AUC with row weights (bootstrap counts), ties counting 1/2; NaN with one class only."""
    y = np.asarray(y, dtype=bool)
    weights = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    order, group = _ranks if _ranks is not None else _tie_ranks(np.asarray(scores, dtype=float))
    pos = np.bincount(group, weights=(weights * y)[order])
    neg = np.bincount(group, weights=(weights * ~y)[order])
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos == 0 or total_neg == 0:
        return float("nan")
    below = np.cumsum(neg) - neg  # rejected weight strictly below each tie group
    return float((pos * (below + 0.5 * neg)).sum() / (total_pos * total_neg))


def group_index(groups: np.ndarray) -> tuple[np.ndarray, int]:
    """Each row's group as 0..G-1, and G."""
    _, index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return index, int(index.max()) + 1 if len(index) else 0


def bootstrap_weights(groups: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED):
    """Yield row weights of `samples` group bootstrap resamples (a drawn group's rows count once per draw)."""
    index, count = group_index(groups)
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        drawn = np.bincount(rng.integers(0, count, size=count), minlength=count)
        yield drawn[index]


def auc_with_interval(y: np.ndarray, scores: np.ndarray, groups: np.ndarray,
                      samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """(AUC, 2.5th, 97.5th percentile of the group bootstrap)."""
    scores = np.asarray(scores, dtype=float)
    ranks = _tie_ranks(scores)
    point = weighted_auc(y, scores, _ranks=ranks)
    if np.isnan(point):
        return point, point, point
    draws = np.array([weighted_auc(y, scores, w, _ranks=ranks) for w in bootstrap_weights(groups, samples, seed)])
    draws = draws[~np.isnan(draws)]
    return point, float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def reject_average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of finding rejected images (y == 0) by the lowest scores first."""
    y = np.asarray(y)
    if y.min() == y.max():
        return float("nan")
    return float(average_precision_score(1 - y, -np.asarray(scores, dtype=float)))


def spearman(scores: np.ndarray, ratings: np.ndarray) -> float:
    """Spearman's rho between scores and ratings (NaN with fewer than 3 pairs or no spread)."""
    if len(scores) < 3 or np.ptp(ratings) == 0 or np.ptp(scores) == 0:
        return float("nan")
    return float(spearmanr(scores, ratings).statistic)


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference between p_accept and the verdict (0 perfect, 0.25 a coin)."""
    return float(np.mean((np.asarray(p) - np.asarray(y)) ** 2))


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    count: int
    mean_p: float
    accept_share: float


def reliability(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """Equal-width bins of p_accept: count, mean p_accept, share people accepted (empty bins left out)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        member = which == b
        if member.any():
            out.append(ReliabilityBin(b / bins, (b + 1) / bins, int(member.sum()), float(p[member].mean()), float(y[member].mean())))
    return out


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: sum over equal-width bins of (share of rows) * |mean p_accept - share accepted|."""
    n = len(y)
    return float(sum(b.count / n * abs(b.mean_p - b.accept_share) for b in reliability(y, p, bins)))


def precision_recall_at(y: np.ndarray, p: np.ndarray, threshold: float, weights: np.ndarray | None = None) -> tuple[float, float, float]:
    """(precision, recall, flagged share) of flagging p < threshold as reject: precision is the share
    of flagged images people reject, recall the share of rejected images flagged."""
    w = np.ones(len(y)) if weights is None else weights
    flagged = np.asarray(p) < threshold
    rejected = np.asarray(y) == 0
    tp = float((w * (flagged & rejected)).sum())
    n_flag, n_rej = float((w * flagged).sum()), float((w * rejected).sum())
    return (tp / n_flag if n_flag else float("nan"), tp / n_rej if n_rej else float("nan"), n_flag / float(w.sum()))


def labeler_agreement(by_labeler: dict[str, dict[str, int]]) -> dict[str, object]:
    """Agreement between labelers on images that several labelled: Cohen's kappa when exactly two
    labelers share images, Krippendorff's alpha (nominal) when more; with the number of images."""
    shared = {i: given for i, given in by_labeler.items() if len(given) >= 2}
    labelers = sorted({name for given in shared.values() for name in given})
    if not shared:
        return {"measure": "none", "value": float("nan"), "images": 0, "labelers": len(labelers)}
    if len(labelers) == 2:
        a = [given[labelers[0]] for given in shared.values()]
        b = [given[labelers[1]] for given in shared.values()]
        value = float(cohen_kappa_score(a, b)) if len(set(a) | set(b)) > 1 else float("nan")
        return {"measure": "cohen_kappa", "value": value, "images": len(shared), "labelers": 2}
    import krippendorff  # only needed here

    table = np.full((len(labelers), len(shared)), np.nan)
    position = {name: k for k, name in enumerate(labelers)}
    for column, given in enumerate(shared.values()):
        for name, verdict in given.items():
            table[position[name], column] = verdict
    try:
        value = float(krippendorff.alpha(reliability_data=table, level_of_measurement="nominal"))
    except ValueError:  # one value only: agreement is undefined
        value = float("nan")
    return {"measure": "krippendorff_alpha", "value": value, "images": len(shared), "labelers": len(labelers)}
