"""A/B comparison of two scored runs (`main.py --compare A.csv B.csv`), as in the article's
prompt-refinement test (CLIPScore 0.38 -> 0.51).

Reads two scored CSVs (result_total.csv, result_clip.csv or result_is.csv of two runs) and
writes one row per metric both contain: the means, the difference B - A with a
confidence interval, a t-test and a rank test (scipy). When the runs share ids the
comparison is paired on id (paired t-test, Wilcoxon signed-rank), otherwise it is
unpaired (Welch's t-test, Mann-Whitney U). Only rows with status ok are used.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats

from aigc_eval import columns as col
from aigc_eval.io.csv_io import InputError, read_rows
from aigc_eval.metrics.base import Column, parse_value

COMPARED_METRICS = (col.CLIP_SCORE, col.TOTAL_SCORE, col.TOP1_CONFIDENCE, col.KL)
COMPARE_COLUMNS = ["metric", "pairing", "n_a", "n_b", "mean_a", "mean_b", "difference", "ci_low", "ci_high",
                   "t_test_p", "rank_test_p"]
MIN_SHARED_IDS = 2



def parse_score(row: dict[str, str], key: str, id_col: str, path: Path) -> float:
    """The finite number in row[key]; InputError naming the file, the row and the value otherwise."""
    try:
        return float(parse_value(Column(key, "", "s"), row.get(key, "")))  # type: ignore[arg-type]
    except ValueError as exc:
        raise InputError(f"{path}: row {row.get(id_col, '?')!r}: {exc}") from None


def _scores(rows: list[dict[str, str]], metric: str, id_col: str, path: Path) -> dict[str, float]:
    scores: dict[str, float] = {}
    for row in rows:
        if row.get(col.STATUS, col.STATUS_OK) != col.STATUS_OK or row.get(metric, "") == "":
            continue
        if row[id_col] in scores:
            raise InputError(f"{path}: id {row[id_col]!r} appears more than once; ids must be unique to compare runs")
        scores[row[id_col]] = parse_score(row, metric, id_col, path)
    return scores


def _paired(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float, float, float]:
    differences = b - a
    mean, sem = differences.mean(), stats.sem(differences)
    low, high = stats.t.interval(level, len(differences) - 1, loc=mean, scale=sem) if sem > 0 else (mean, mean)
    t_p = stats.ttest_rel(b, a).pvalue if sem > 0 else (1.0 if mean == 0 else 0.0)
    rank_p = stats.wilcoxon(differences).pvalue if np.any(differences != 0) else 1.0
    return float(low), float(high), float(t_p), float(rank_p)


def _unpaired(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float, float, float]:
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    difference = b.mean() - a.mean()
    if va + vb == 0:
        return float(difference), float(difference), 1.0 if difference == 0 else 0.0, 1.0
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    low, high = stats.t.interval(level, dof, loc=difference, scale=math.sqrt(va + vb))
    t_p = stats.ttest_ind(b, a, equal_var=False).pvalue
    rank_p = stats.mannwhitneyu(b, a, alternative="two-sided").pvalue
    return float(low), float(high), float(t_p), float(rank_p)


def compare_runs(path_a: Path, path_b: Path, id_col: str = col.ID, level: float = 0.95) -> list[dict[str, object]]:
    """One comparison row (COMPARE_COLUMNS) per metric present in both files."""
    header_a, rows_a = read_rows(path_a, [id_col])
    header_b, rows_b = read_rows(path_b, [id_col])
    metrics = [m for m in COMPARED_METRICS if m in header_a and m in header_b]
    if not metrics:
        raise InputError(f"{path_a} and {path_b} share none of the score columns {', '.join(COMPARED_METRICS)}")
    results = []
    for metric in metrics:
        a, b = _scores(rows_a, metric, id_col, path_a), _scores(rows_b, metric, id_col, path_b)
        shared = [key for key in a if key in b]
        paired = len(shared) >= MIN_SHARED_IDS
        if paired:
            xa, xb = np.array([a[k] for k in shared]), np.array([b[k] for k in shared])
            low, high, t_p, rank_p = _paired(xa, xb, level)
        else:
            xa, xb = np.array(list(a.values())), np.array(list(b.values()))
            if len(xa) < 2 or len(xb) < 2:
                raise InputError(f"{metric}: need at least 2 scored rows in each run to compare, got {len(xa)} and {len(xb)}")
            low, high, t_p, rank_p = _unpaired(xa, xb, level)
        results.append({
            "metric": metric, "pairing": "paired on id" if paired else "unpaired", "n_a": len(xa), "n_b": len(xb),
            "mean_a": float(xa.mean()), "mean_b": float(xb.mean()), "difference": float(xb.mean() - xa.mean()),
            "ci_low": low, "ci_high": high, "t_test_p": t_p, "rank_test_p": rank_p,
        })
    return results


def format_comparison(results: Sequence[dict[str, object]], name_a: str, name_b: str) -> str:
    """A readable table of compare_runs' rows."""
    lines = [f"A = {name_a}, B = {name_b}; difference = B - A with a 95% confidence interval"]
    for r in results:
        lines.append(
            f"{r['metric']:>16}: {r['mean_a']:.4f} -> {r['mean_b']:.4f}, difference {r['difference']:+.4f} "
            f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}], t-test p={r['t_test_p']:.3g}, rank test p={r['rank_test_p']:.3g} "
            f"({r['pairing']}, n={r['n_a']}/{r['n_b']})"
        )
    return "\n".join(lines)
