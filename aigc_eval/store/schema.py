"""The store's tables (SQLAlchemy Core), the names of its columns, and where it lives by default.

This is the schema at the latest migration; migrations/versions/ builds it step by step, and a
test checks the two agree. docs/store.md describes each column for direct SQL.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import (
    JSON, Column, Date, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Table, Text,
)

from aigc_eval import columns as col
from aigc_eval.io.image_fetch import default_cache_dir

# Columns of result_total.csv the store reads beyond aigc_eval/columns.py's (written by the
# calibration stage and by inputs that name the generator).
GENERATOR_VERSION = col.GENERATOR_VERSION
P_ACCEPT = col.P_ACCEPT

SOURCES = ("batch", "stream", "service")
STORE_FILE = "history.sqlite"  # beside the score cache (scores.sqlite) in the cache folder
SPOOL_SUFFIX = ".spool.jsonl"
STORE_ENV = "AIGC_EVAL_STORE"  # a URL or path overriding the default store

metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("source", String(16), nullable=False),
    Column("input_file", Text),
    Column("input_hash", String(64)),
    Column("generator_version", Text, nullable=False, default=""),
    Column("tool_version", String(32)),
    Column("metric_set", Text),
    Column("calibration_hash", String(64)),
    Column("machine", Text),
)

scores = Table(
    "scores", metadata,
    Column("run_id", String(64), ForeignKey("runs.run_id"), primary_key=True),
    Column("image_id", Text, primary_key=True),
    Column("category", Text, nullable=False, default=""),
    Column("generator_version", Text, nullable=False, default=""),
    Column("scored_at", DateTime(timezone=True), nullable=False),
    Column("scored_day", Date, nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("total_score", Float),
    Column("p_accept", Float),
    Column("clip_score", Float),
    Column("product_issues", Text, nullable=False, default=""),  # issue codes, ";"-joined
    Column("regenerate", Text, nullable=False, default=""),  # reasons, "; "-joined; "" = fine
    Column("image_url", Text),
    Column("prompt", Text),
    Column("metrics", JSON),  # every other column of the row, {name: number or text}
    Column("embedding", LargeBinary),  # CLIP image embedding, float16 little-endian
    Index("ix_scores_group", "scored_day", "category", "generator_version"),
    Index("ix_scores_day_total", "scored_day", "total_score"),
)

# One row per (day, category, generator version): the sums the overview and `history check`
# need, kept up to date by the recorder in the same transaction as the rows.
score_daily = Table(
    "score_daily", metadata,
    Column("day", Date, primary_key=True),
    Column("category", Text, primary_key=True),
    Column("generator_version", Text, primary_key=True),
    Column("n_rows", Integer, nullable=False),
    Column("n_ok", Integer, nullable=False),
    Column("n_total", Integer, nullable=False),
    Column("sum_total", Float, nullable=False),
    Column("sumsq_total", Float, nullable=False),
    Column("n_p_accept", Integer, nullable=False),
    Column("sum_p_accept", Float, nullable=False),
    Column("sumsq_p_accept", Float, nullable=False),
    Column("n_clip", Integer, nullable=False),
    Column("sum_clip", Float, nullable=False),
    Column("sumsq_clip", Float, nullable=False),
    Column("n_regenerate", Integer, nullable=False),
    Column("n_embedding", Integer, nullable=False),
)

score_daily_issue = Table(
    "score_daily_issue", metadata,
    Column("day", Date, primary_key=True),
    Column("category", Text, primary_key=True),
    Column("generator_version", Text, primary_key=True),
    Column("issue", String(64), primary_key=True),
    Column("n", Integer, nullable=False),
)


def default_store_path() -> Path:
    """$AIGC_EVAL_STORE when it is a path, else history.sqlite in the image cache folder
    ($AIGC_EVAL_CACHE, else ~/.cache/aigc-image-eval/images), beside the score cache."""
    return default_cache_dir() / STORE_FILE


def resolve_url(url: str | Path | None) -> str:
    """A SQLAlchemy URL from --store: None or "" -> $AIGC_EVAL_STORE or the default SQLite file;
    a path -> sqlite:///path; postgresql://... -> postgresql+psycopg://... (psycopg 3)."""
    text = str(url or os.environ.get(STORE_ENV, "") or "")
    if not text:
        text = str(default_store_path())
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def default_spool_path(url: str) -> Path:
    """The spool beside a SQLite store (history.sqlite.spool.jsonl); for a server, in the cache folder."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):] + SPOOL_SUFFIX)
    return default_cache_dir() / f"history-server{SPOOL_SUFFIX}"
