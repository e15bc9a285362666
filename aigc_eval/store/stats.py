"""Pure statistics on the store's sums: means with 95% t intervals, rates with Wilson intervals,
and the regression and drift rules of `history check`. No I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from scipy import stats

LEVEL = 0.95


@lru_cache(maxsize=4096)
def _t_quantile(q: float, dof: int) -> float:
    return float(stats.t.ppf(q, dof))  # scipy's ppf costs ~0.1 ms a call: the overview has thousands


@lru_cache(maxsize=16)
def _z(q: float) -> float:
    return float(stats.norm.ppf(q))


def mean_interval(n: int, total: float, sumsq: float, level: float = LEVEL) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high) from n, sum x and sum x^2: the t interval mean ± t_{n-1} s / sqrt(n),
    s the sample standard deviation (ddof 1); the interval is None below 2 values."""
    if n <= 0:
        return None, None, None
    mean = total / n
    if n < 2:
        return mean, None, None
    var = max((sumsq - n * mean * mean) / (n - 1), 0.0)
    half = _t_quantile(0.5 + level / 2, n - 1) * math.sqrt(var / n)
    return mean, mean - half, mean + half


def std_from_sums(n: int, total: float, sumsq: float) -> float:
    mean = total / n
    return math.sqrt(max((sumsq - n * mean * mean) / (n - 1), 0.0)) if n > 1 else 0.0


def wilson(k: int, n: int, level: float = LEVEL) -> tuple[float | None, float | None, float | None]:
    """(k/n, low, high): the Wilson score interval of a proportion."""
    if n <= 0:
        return None, None, None
    z = _z(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Thresholds:
    """When `history check` raises an alarm."""

    drop: float = 0.02  # the mean total falls by more than this (total_score units)
    alpha: float = 0.01  # ... and Welch's one-sided t-test gives p below this
    cmmd: float = 0.5  # CMMD (x1000, the paper's scale) between window and baseline above this
    min_rows: int = 30  # fewer rows in either side: no mean test for that category
    min_embeddings: int = 50  # fewer embeddings a side: no CMMD (distribution.CMMD_MIN_RELIABLE)


def mean_drop(window: tuple[int, float, float], baseline: tuple[int, float, float]) -> tuple[float, float]:
    """(window mean - baseline mean, Welch's one-sided p for "the window is lower") from
    (n, sum, sum of squares) of each side (scipy.stats.ttest_ind_from_stats, equal_var=False)."""
    (nw, sw, qw), (nb, sb, qb) = window, baseline
    mw, mb = sw / nw, sb / nb
    sdw, sdb = std_from_sums(nw, sw, qw), std_from_sums(nb, sb, qb)
    if sdw == 0 and sdb == 0:
        return mw - mb, 0.0 if mw < mb else 1.0
    result = stats.ttest_ind_from_stats(mw, sdw, nw, mb, sdb, nb, equal_var=False, alternative="less")
    return mw - mb, float(result.pvalue)
