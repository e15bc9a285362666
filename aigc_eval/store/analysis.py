"""Regressions, drift and comparisons over the store: `history check`'s alarms and the
dashboard's window or version comparison. The tests are decisions/compare.py's (paired on
image id when the sides share ids, else unpaired); KID and CMMD are scoring/distribution.py's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
from sqlalchemy import Engine

from aigc_eval import columns as col
from aigc_eval.decisions.compare import MIN_SHARED_IDS, _paired, _unpaired
from aigc_eval.scoring.distribution import cmmd, kernel_inception_distance, size_warning
from aigc_eval.store import queries
from aigc_eval.store.queries import Slice
from aigc_eval.store.schema import P_ACCEPT
from aigc_eval.store.stats import Thresholds, mean_drop

COMPARED = (col.TOTAL_SCORE, col.CLIP_SCORE, P_ACCEPT)
KID_SUBSETS = 20  # fewer rounds than torch-fidelity's 100: the page answers in a second or two


@dataclass(frozen=True)
class Alarm:
    category: str
    kind: str  # "mean_drop" or "cmmd"
    line: str


def windows(window_days: int, baseline_days: int, until: date | None = None) -> tuple[Slice, Slice]:
    """(window, baseline): the last `window_days` days before `until` (default: tomorrow, UTC,
    so today counts) and the `baseline_days` days before those."""
    end = until or (datetime.now(timezone.utc).date() + timedelta(days=1))
    start = end - timedelta(days=window_days)
    return Slice(since=start, until=end), Slice(since=start - timedelta(days=baseline_days), until=start)


def _with_category(where: Slice, category: str) -> Slice:
    return Slice(where.since, where.until, category, where.generator_version)


def check(engine: Engine, window: Slice, baseline: Slice, thresholds: Thresholds = Thresholds()) -> list[Alarm]:
    """One alarm per category whose mean total fell by more than thresholds.drop with Welch's
    one-sided p < thresholds.alpha, and one per category whose CMMD to its baseline embeddings
    exceeds thresholds.cmmd; sorted by category."""
    now, before = queries.group_sums(engine, window), queries.group_sums(engine, baseline)
    alarms = []
    for category in sorted(set(now) & set(before)):
        w, b = now[category], before[category]
        if min(w[0], b[0]) >= thresholds.min_rows:
            diff, p = mean_drop(w, b)
            if diff < -thresholds.drop and p < thresholds.alpha:
                alarms.append(Alarm(category, "mean_drop", (
                    f"{category or '(no category)'}: mean total_score {b[1] / b[0]:.4f} -> {w[1] / w[0]:.4f} "
                    f"({diff:+.4f}, Welch t one-sided p={p:.2g}; n={b[0]}/{w[0]}; baseline {baseline.since}..{baseline.until}, "
                    f"window {window.since}..{window.until})")))
        ea = queries.embeddings(engine, _with_category(baseline, category))
        eb = queries.embeddings(engine, _with_category(window, category))
        if ea is not None and eb is not None and min(len(ea), len(eb)) >= thresholds.min_embeddings and ea.shape[1] == eb.shape[1]:
            value = cmmd(ea, eb)
            if value > thresholds.cmmd:
                alarms.append(Alarm(category, "cmmd", (
                    f"{category or '(no category)'}: CMMD to the baseline {value:.3f} > {thresholds.cmmd} "
                    f"(CLIP embeddings, n={len(ea)}/{len(eb)})")))
    return alarms


def _test(a: dict[str, float], b: dict[str, float]) -> dict[str, object] | None:
    shared = [k for k in a if k in b]
    if len(shared) >= MIN_SHARED_IDS:
        xa, xb = np.array([a[k] for k in shared]), np.array([b[k] for k in shared])
        low, high, t_p, rank_p = _paired(xa, xb, 0.95)
        pairing = "paired on image id"
    else:
        xa, xb = np.array(list(a.values())), np.array(list(b.values()))
        if min(len(xa), len(xb)) < 2:
            return None
        low, high, t_p, rank_p = _unpaired(xa, xb, 0.95)
        pairing = "unpaired"
    return {"pairing": pairing, "n_a": len(xa), "n_b": len(xb), "mean_a": float(xa.mean()), "mean_b": float(xb.mean()),
            "difference": float(xb.mean() - xa.mean()), "ci_low": low, "ci_high": high, "t_test_p": t_p, "rank_test_p": rank_p}


def compare(engine: Engine, a: Slice, b: Slice, top: int = 10) -> dict[str, object]:
    """Side A against side B: each score's test, KID and CMMD on the stored embeddings, and the
    categories whose mean total moved most (B - A)."""
    tests = {}
    for metric in COMPARED:
        result = _test(queries.values(engine, a, metric), queries.values(engine, b, metric))
        if result is not None:
            tests[metric] = result
    distance: dict[str, object] = {}
    ea, eb = queries.embeddings(engine, a), queries.embeddings(engine, b)
    if ea is not None and eb is not None and min(len(ea), len(eb)) >= 2 and ea.shape[1] == eb.shape[1]:
        kid_mean, kid_std = kernel_inception_distance(ea, eb, subsets=KID_SUBSETS)
        distance = {"kid_mean": kid_mean, "kid_std": kid_std, "cmmd": cmmd(ea, eb), "n_a": len(ea), "n_b": len(eb),
                    "warning": size_warning(len(ea), len(eb), metrics=("kid_mean", "cmmd"))}
    sa, sb = queries.group_sums(engine, a), queries.group_sums(engine, b)
    moved = []
    for category in set(sa) & set(sb):
        if sa[category][0] and sb[category][0]:
            ma, mb = sa[category][1] / sa[category][0], sb[category][1] / sb[category][0]
            moved.append({"category": category, "mean_a": ma, "mean_b": mb, "difference": mb - ma,
                          "n_a": sa[category][0], "n_b": sb[category][0]})
    moved.sort(key=lambda m: -abs(m["difference"]))
    return {"tests": tests, "distance": distance, "moved": moved[:top]}
