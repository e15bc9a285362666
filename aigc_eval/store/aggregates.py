"""The daily aggregates (score_daily, score_daily_issue): recomputed from the rows for each
(day, category, generator version) a write touches, in the writer's transaction.

Recomputing a group instead of adding deltas keeps the aggregates exact under reruns and
redeliveries (an upsert that changes a row's values or its day). On PostgreSQL the writer first
takes a transaction-scoped advisory lock per group, so two workers writing the same group one
after the other each recompute with the other's rows visible; SQLite serialises writers anyway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import Connection, and_, case, delete, func, insert, literal, select, text, tuple_

from aigc_eval import columns as col
from aigc_eval.product.names import ISSUE_CODES
from aigc_eval.store.schema import score_daily, score_daily_issue, scores

Group = tuple[object, str, str]  # (day, category, generator_version)
_CHUNK = 300  # groups per statement (SQLite's bound-parameter limit)


def _lock_key(group: Group) -> int:
    digest = hashlib.blake2b(f"{group[0]}|{group[1]}|{group[2]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_groups(conn: Connection, groups: Iterable[Group]) -> None:
    """PostgreSQL: an advisory lock per group until the transaction ends, taken in one order so
    writers cannot deadlock on them. Nothing to do on SQLite."""
    if conn.dialect.name != "postgresql":
        return
    for key in sorted({_lock_key(g) for g in groups}):
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _n(condition) -> object:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _sum(value, sq: bool = False) -> object:
    return func.coalesce(func.sum(value * value if sq else value), 0.0)


def _aggregate_select(where) -> object:
    s = scores.c
    ok = s.status == col.STATUS_OK
    total = case((ok, s.total_score))
    p = case((ok, s.p_accept))
    clip = case((ok, s.clip_score))
    issues = literal(";") + s.product_issues + literal(";")
    columns = [
        s.scored_day, s.category, s.generator_version, func.count().label("n_rows"), _n(ok).label("n_ok"),
        func.count(total).label("n_total"), _sum(total).label("sum_total"), _sum(total, True).label("sumsq_total"),
        func.count(p).label("n_p_accept"), _sum(p).label("sum_p_accept"), _sum(p, True).label("sumsq_p_accept"),
        func.count(clip).label("n_clip"), _sum(clip).label("sum_clip"), _sum(clip, True).label("sumsq_clip"),
        _n(and_(ok, s.regenerate != "")).label("n_regenerate"),
        _n(and_(ok, s.embedding.is_not(None))).label("n_embedding"),
        *[_n(and_(ok, issues.like(f"%;{code};%"))).label(f"issue_{i}") for i, code in enumerate(ISSUE_CODES)],
    ]
    query = select(*columns).group_by(s.scored_day, s.category, s.generator_version)
    return query if where is None else query.where(where)


_DAILY_NAMES = [c.name for c in score_daily.columns]


def _write(conn: Connection, result_rows) -> None:
    daily, issues = [], []
    for row in result_rows:
        values = list(row)
        daily.append(dict(zip(_DAILY_NAMES, values[: len(_DAILY_NAMES)])))
        for code, n in zip(ISSUE_CODES, values[len(_DAILY_NAMES):]):
            if n:
                issues.append({"day": values[0], "category": values[1], "generator_version": values[2], "issue": code, "n": n})
    if daily:
        conn.execute(insert(score_daily), daily)
    if issues:
        conn.execute(insert(score_daily_issue), issues)


def refresh_groups(conn: Connection, groups: Iterable[Group]) -> None:
    """Recompute the aggregates of these groups from the rows (a group with no rows left goes)."""
    groups = list(dict.fromkeys(groups))
    for start in range(0, len(groups), _CHUNK):
        chunk = groups[start:start + _CHUNK]
        for table in (score_daily, score_daily_issue):
            key = tuple_(table.c.day, table.c.category, table.c.generator_version)
            conn.execute(delete(table).where(key.in_(chunk)))
        key = tuple_(scores.c.scored_day, scores.c.category, scores.c.generator_version)
        _write(conn, conn.execute(_aggregate_select(key.in_(chunk))))


def rebuild_all(conn: Connection) -> None:
    """Recompute every group: after a migration or a bulk load that bypassed the recorder."""
    conn.execute(delete(score_daily_issue))
    conn.execute(delete(score_daily))
    _write(conn, conn.execute(_aggregate_select(None)))
