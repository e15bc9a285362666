"""Read queries on the store for the dashboard and `history check`: trends from the daily
aggregates (small tables, so they answer fast on any history), and the rows behind a point."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from sqlalchemy import Engine, func, select, tuple_

from aigc_eval import columns as col
from aigc_eval.store.rows import as_day, embedding_array
from aigc_eval.store.schema import score_daily as d
from aigc_eval.store.schema import score_daily_issue as di
from aigc_eval.store.schema import scores as s
from aigc_eval.store.stats import mean_interval, wilson

GRAINS = ("day", "week")
GROUP_BY = {"": None, "category": "category", "generator_version": "generator_version"}
SUMS = ("n_rows", "n_ok", "n_total", "sum_total", "sumsq_total", "n_p_accept", "sum_p_accept", "sumsq_p_accept",
        "n_clip", "sum_clip", "sumsq_clip", "n_regenerate", "n_embedding")


@dataclass(frozen=True)
class Slice:
    """Which rows: a day range [since, until) and optionally one category and one generator version."""

    since: date | None = None
    until: date | None = None
    category: str | None = None
    generator_version: str | None = None

    def where(self, table, day_column) -> list:
        conditions = []
        if self.since is not None:
            conditions.append(day_column >= self.since)
        if self.until is not None:
            conditions.append(day_column < self.until)
        if self.category is not None:
            conditions.append(table.c.category == self.category)
        if self.generator_version is not None:
            conditions.append(table.c.generator_version == self.generator_version)
        return conditions


def period_of(day: date, grain: str) -> date:
    """The day itself, or the Monday of its ISO week."""
    return day - timedelta(days=day.weekday()) if grain == "week" else day


def _point(period: date, group: str, sums: dict[str, float], issues: dict[str, int]) -> dict[str, object]:
    mean, lo, hi = mean_interval(int(sums["n_total"]), sums["sum_total"], sums["sumsq_total"])
    p, plo, phi = mean_interval(int(sums["n_p_accept"]), sums["sum_p_accept"], sums["sumsq_p_accept"])
    clip, clo, chi = mean_interval(int(sums["n_clip"]), sums["sum_clip"], sums["sumsq_clip"])
    regen = wilson(int(sums["n_regenerate"]), int(sums["n_ok"]))
    return {
        "period": period.isoformat(), "group": group, "n_rows": int(sums["n_rows"]), "n_ok": int(sums["n_ok"]),
        "total_mean": mean, "total_low": lo, "total_high": hi,
        "p_accept_mean": p, "p_accept_low": plo, "p_accept_high": phi,
        "clip_mean": clip, "clip_low": clo, "clip_high": chi,
        "regenerate_rate": regen[0], "regenerate_low": regen[1], "regenerate_high": regen[2],
        "issues": {code: dict(zip(("rate", "low", "high"), wilson(k, int(sums["n_ok"])))) for code, k in sorted(issues.items())},
    }


def overview(engine: Engine, where: Slice = Slice(), grain: str = "day", by: str = "") -> list[dict[str, object]]:
    """One point per period (and per group when `by` is category or generator_version), in order."""
    if grain not in GRAINS or by not in GROUP_BY:
        raise ValueError(f"grain must be one of {GRAINS} and by one of {tuple(GROUP_BY)}")
    group_col = [d.c[by]] if by else []
    query = (select(d.c.day, *group_col, *[func.sum(d.c[name]) for name in SUMS])
             .where(*where.where(d, d.c.day)).group_by(d.c.day, *group_col))
    issue_group = [di.c[by]] if by else []
    issue_query = (select(di.c.day, *issue_group, di.c.issue, func.sum(di.c.n))
                   .where(*where.where(di, di.c.day)).group_by(di.c.day, *issue_group, di.c.issue))
    sums: dict[tuple[date, str], dict[str, float]] = defaultdict(lambda: dict.fromkeys(SUMS, 0.0))
    issues: dict[tuple[date, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with engine.connect() as conn:
        for row in conn.execute(query):
            key = (period_of(as_day(row[0]), grain), str(row[1]) if by else "")
            for name, value in zip(SUMS, row[1 + len(group_col):]):
                sums[key][name] += float(value or 0)
        for row in conn.execute(issue_query):
            key = (period_of(as_day(row[0]), grain), str(row[1]) if by else "")
            issues[key][str(row[-2])] += int(row[-1])
    return [_point(k[0], k[1], sums[k], issues.get(k, {})) for k in sorted(sums)]


def releases(engine: Engine) -> list[dict[str, str]]:
    """The first day each generator version appears, in order."""
    query = (select(d.c.generator_version, func.min(d.c.day)).where(d.c.generator_version != "")
             .group_by(d.c.generator_version))
    with engine.connect() as conn:
        found = [(as_day(day), version) for version, day in conn.execute(query)]
    return [{"generator_version": v, "first_day": day.isoformat()} for day, v in sorted(found)]


def meta(engine: Engine) -> dict[str, object]:
    """Categories, generator versions and the first and last day stored."""
    with engine.connect() as conn:
        categories = sorted(r[0] for r in conn.execute(select(d.c.category).distinct()))
        versions = sorted(r[0] for r in conn.execute(select(d.c.generator_version).distinct()))
        first, last = conn.execute(select(func.min(d.c.day), func.max(d.c.day))).one()
    return {"categories": categories, "generator_versions": versions,
            "first_day": as_day(first).isoformat() if first else None, "last_day": as_day(last).isoformat() if last else None}


def group_sums(engine: Engine, where: Slice, by: str = "category") -> dict[str, tuple[int, float, float]]:
    """{group: (n, sum, sum of squares) of total_score} over the slice."""
    query = (select(d.c[by], func.sum(d.c.n_total), func.sum(d.c.sum_total), func.sum(d.c.sumsq_total))
             .where(*where.where(d, d.c.day)).group_by(d.c[by]))
    with engine.connect() as conn:
        return {str(g): (int(n or 0), float(a or 0), float(q or 0)) for g, n, a, q in conn.execute(query)}


def lowest(engine: Engine, where: Slice, limit: int = 20) -> list[dict[str, object]]:
    """The lowest-scoring ok images of the slice, with their reasons."""
    query = (select(s.c.run_id, s.c.image_id, s.c.category, s.c.generator_version, s.c.scored_day, s.c.total_score,
                    s.c.clip_score, s.c.p_accept, s.c.product_issues, s.c.regenerate, s.c.image_url, s.c.prompt)
             .where(s.c.status == col.STATUS_OK, s.c.total_score.is_not(None), *where.where(s, s.c.scored_day))
             .order_by(s.c.total_score, s.c.image_id).limit(limit))
    with engine.connect() as conn:
        out = [dict(row._mapping) for row in conn.execute(query)]
    for row in out:
        row["scored_day"] = as_day(row["scored_day"]).isoformat()
    return out


def values(engine: Engine, where: Slice, metric: str, cap: int = 200_000) -> dict[str, float]:
    """{image_id: value} of one score column for the slice's ok rows (at most `cap`; the last
    copy of an image id scored in several runs wins)."""
    column = s.c[metric]
    query = (select(s.c.image_id, column).where(s.c.status == col.STATUS_OK, column.is_not(None),
                                                 *where.where(s, s.c.scored_day)).order_by(s.c.scored_at).limit(cap))
    with engine.connect() as conn:
        return {str(i): float(v) for i, v in conn.execute(query)}


def embeddings(engine: Engine, where: Slice, cap: int = 2000, seed: int = 0) -> np.ndarray | None:
    """Up to `cap` stored CLIP embeddings of the slice's ok rows, a seeded random sample of them
    (random.Random(seed) over the sorted keys); None when there are none."""
    conditions = [s.c.status == col.STATUS_OK, s.c.embedding.is_not(None), *where.where(s, s.c.scored_day)]
    with engine.connect() as conn:
        keys = sorted(conn.execute(select(s.c.run_id, s.c.image_id).where(*conditions)).all())
        if not keys:
            return None
        if len(keys) > cap:
            keys = random.Random(seed).sample(keys, cap)
        vectors = []
        for start in range(0, len(keys), 400):
            chunk = [tuple(k) for k in keys[start:start + 400]]
            vectors += [embedding_array(r[0]) for r in conn.execute(
                select(s.c.embedding).where(tuple_(s.c.run_id, s.c.image_id).in_(chunk)))]
    dims = {len(v) for v in vectors}
    if len(dims) != 1:
        vectors = [v for v in vectors if len(v) == max(dims)]  # one model's embeddings only
    return np.stack(vectors)
