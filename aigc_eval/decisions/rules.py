"""From decided rows to the run's tables: the per-category table and the run summary.

Pure functions over result_total rows (typed values, or strings as CSV gives them) and the
Inception summary (result_is.json); the regenerate reasons themselves are metrics.decide's.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from aigc_eval import columns as col
from aigc_eval.product import names as pn

IMBALANCE_FACTOR = 2.0  # warn when one category holds more than this many times an even share


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def _ok_values(rows: Sequence[dict[str, object]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(col.STATUS) == col.STATUS_OK and r.get(key) not in (None, "")]


def category_table(
    rows: Sequence[dict[str, object]], category_col: str, per_category_is: dict[str, dict[str, object]]
) -> list[dict[str, object]]:
    """Count, share, mean and spread (population std) of each score per category, with the
    category's one-split IS and its sample size; sorted by count, largest first."""
    groups: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        groups.setdefault(str(row.get(category_col, "")), []).append(row)
    table = []
    for name, members in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        clip_mean, clip_std = _mean_std(_ok_values(members, col.CLIP_SCORE))
        total_mean, total_std = _mean_std(_ok_values(members, col.TOTAL_SCORE))
        inception = per_category_is.get(name, {})
        table.append({
            col.CAT_CATEGORY: name, col.CAT_COUNT: len(members), col.CAT_SHARE: len(members) / len(rows),
            col.CAT_CLIP_MEAN: clip_mean, col.CAT_CLIP_STD: clip_std,
            col.CAT_TOTAL_MEAN: total_mean, col.CAT_TOTAL_STD: total_std,
            col.CAT_IS: inception.get(col.KEY_IS_MEAN), col.CAT_IS_IMAGES: inception.get(col.KEY_NUM_IMAGES, 0),
            col.CAT_REGENERATE: sum(1 for r in members if r.get(col.REGENERATE)),
            col.CAT_PRODUCT_MEAN: _mean_std(_ok_values(members, pn.PRODUCT_SCORE))[0],
            col.CAT_PRODUCT_ISSUES: sum(1 for r in members if r.get(pn.PRODUCT_ISSUES)),
        })
    return table


def imbalance_warning(table: Sequence[dict[str, object]]) -> str:
    """A warning when one category dominates (the article: imbalance lowers alignment and diversity)."""
    if len(table) < 2:
        return ""
    largest = max(table, key=lambda entry: entry[col.CAT_SHARE])
    even = 1 / len(table)
    if largest[col.CAT_SHARE] <= IMBALANCE_FACTOR * even:
        return ""
    return (f"categories are unbalanced: {largest[col.CAT_CATEGORY]!s} holds {largest[col.CAT_SHARE]:.0%} of rows "
            f"(an even share is {even:.0%}); imbalance lowers both CLIPScore and IS")


def run_summary(
    rows: Sequence[dict[str, object]], is_summary: dict[str, object], clip_weight: float, is_weight: float,
    warnings: Sequence[str],
) -> dict[str, object]:
    """The figures printed after every run and shown at the top of report.html (SUM_* keys)."""
    statuses = [r.get(col.STATUS) for r in rows]
    clip_mean, _ = _mean_std(_ok_values(rows, col.CLIP_SCORE))
    total_mean, _ = _mean_std(_ok_values(rows, col.TOTAL_SCORE))
    return {
        col.SUM_ROWS: len(rows), col.SUM_OK: statuses.count(col.STATUS_OK),
        col.SUM_ERRORS: statuses.count(col.STATUS_ERROR), col.SUM_SKIPPED: statuses.count(col.STATUS_SKIPPED),
        col.SUM_CLIP_MEAN: clip_mean, col.SUM_TOTAL_MEAN: total_mean,
        col.SUM_IS_MEAN: is_summary.get(col.KEY_IS_MEAN), col.SUM_IS_STD: is_summary.get(col.KEY_IS_STD),
        col.SUM_IS_CI_LOW: is_summary.get(col.KEY_IS_CI_LOW), col.SUM_IS_CI_HIGH: is_summary.get(col.KEY_IS_CI_HIGH),
        col.SUM_IS_IMAGES: is_summary.get(col.KEY_NUM_IMAGES),
        col.SUM_REGENERATE: sum(1 for r in rows if r.get(col.REGENERATE)),
        col.SUM_CLIP_WEIGHT: clip_weight, col.SUM_IS_WEIGHT: is_weight,
        col.SUM_WARNINGS: [w for w in warnings if w],
    }


def add_product_summary(summary: dict[str, object], rows: Sequence[dict[str, object]], product_weight: float) -> None:
    """The product figures of a run with product checks: its weight, mean product_score over ok
    rows with a product score, and how many images have a product issue."""
    summary[col.SUM_PRODUCT_WEIGHT] = product_weight
    summary[col.SUM_PRODUCT_MEAN] = _mean_std(_ok_values(rows, pn.PRODUCT_SCORE))[0]
    summary[col.SUM_PRODUCT_ISSUES] = sum(1 for r in rows if r.get(pn.PRODUCT_ISSUES))


def _fmt(value: object, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_summary(summary: dict[str, object]) -> str:
    """The summary as a few lines of text for stderr."""
    interval = ""
    if summary[col.SUM_IS_CI_LOW] is not None:
        interval = f" (95% CI {_fmt(summary[col.SUM_IS_CI_LOW], 3)}-{_fmt(summary[col.SUM_IS_CI_HIGH], 3)})"
    lines = [
        f"rows {summary[col.SUM_ROWS]}: {summary[col.SUM_OK]} scored, {summary[col.SUM_ERRORS]} errors, "
        f"{summary[col.SUM_SKIPPED]} skipped",
        f"mean clip_score {_fmt(summary[col.SUM_CLIP_MEAN])}, mean total_score {_fmt(summary[col.SUM_TOTAL_MEAN])}",
        f"IS {_fmt(summary[col.SUM_IS_MEAN], 3)} ± {_fmt(summary[col.SUM_IS_STD], 3)}{interval} "
        f"over {_fmt(summary[col.SUM_IS_IMAGES])} images",
        f"to regenerate: {summary[col.SUM_REGENERATE]}",
    ]
    if col.SUM_PRODUCT_MEAN in summary:
        lines.insert(3, f"mean product_score {_fmt(summary[col.SUM_PRODUCT_MEAN])}, "
                        f"images with a product issue: {summary[col.SUM_PRODUCT_ISSUES]}")
    lines += [f"warning: {w}" for w in summary[col.SUM_WARNINGS]]
    return "\n".join(lines)
