"""The recorder the scoring stages write through: one run record and its scored rows.

    with Recorder.open(url, source="batch", run=RunInfo(...)) as recorder:
        recorder.record(rows, embeddings)   # once per batch; one transaction each

Writes are idempotent on (run_id, image id): a rerun or a redelivery updates the row, never
doubles it. The store never costs a score: when the database fails, record() warns once on
stderr, appends the batch to the spool file (JSON lines) and returns; the next Recorder.open
on the same store (or `aigc-eval history import --spool`) loads the spool. No database error
is raised into the caller.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from aigc_eval.store import aggregates, spool
from aigc_eval.store.db import make_engine, upgrade
from aigc_eval.store.rows import score_row
from aigc_eval.store.schema import SOURCES, default_spool_path, resolve_url, runs, scores

log = logging.getLogger(__name__)
RETRY_AFTER_S = 30.0  # after a failure, batches go straight to the spool this long


def new_run_id() -> str:
    """A sortable, unique run id: UTC time to the second plus 8 random hex digits."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


def _tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aigc-image-eval")
    except PackageNotFoundError:
        return "unknown"


@dataclasses.dataclass
class RunInfo:
    """The run record (table `runs`). Stream workers of one channel share one run_id, so an image
    redelivered to another worker, or to a restarted one, updates the same row."""

    run_id: str = dataclasses.field(default_factory=lambda: new_run_id())
    started_at: datetime = dataclasses.field(default_factory=lambda: datetime.now(timezone.utc))
    input_file: str | None = None
    input_hash: str | None = None  # sha256 of the input file
    generator_version: str = ""  # for rows without a generator_version column
    tool_version: str = dataclasses.field(default_factory=lambda: _tool_version())
    metric_set: str | None = None  # e.g. "clip,is,product"
    calibration_hash: str | None = None
    machine: str = dataclasses.field(default_factory=platform.node)

    new_run_id = staticmethod(new_run_id)

    def to_json(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["started_at"] = self.started_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> "RunInfo":
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["started_at"] = datetime.fromisoformat(str(values["started_at"]))
        return cls(**values)


def _upsert(conn, table, rows: list[dict[str, object]], keys: list[str], update: list[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET update (DO NOTHING without), on either dialect.
    A row written again without an embedding keeps the one stored."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    if update:
        new = {name: statement.excluded[name] for name in update}
        if "embedding" in new:
            new["embedding"] = func.coalesce(statement.excluded.embedding, table.c.embedding)
        statement = statement.on_conflict_do_update(index_elements=keys, set_=new)
    else:
        statement = statement.on_conflict_do_nothing(index_elements=keys)
    conn.execute(statement, rows)


def _run_row(run: RunInfo, source: str) -> dict[str, object]:
    data = dataclasses.asdict(run)
    data["source"] = source
    data["ended_at"] = None
    return data


def write_batch(engine: Engine, run: RunInfo, source: str, rows: Sequence[Mapping[str, object]],
                embeddings: Sequence[np.ndarray | None] | None) -> int:
    """Upsert the run and the rows with their aggregates in one transaction; the number of rows."""
    now = datetime.now(timezone.utc)
    vectors = list(embeddings) if embeddings is not None else [None] * len(rows)
    if len(vectors) != len(rows):  # a caller's slip must not cost the scores: keep them, drop the vectors
        log.warning("record() got %d rows but %d embeddings; the batch is stored without embeddings", len(rows), len(vectors))
        vectors = [None] * len(rows)
    batch: dict[str, dict[str, object]] = {}
    for row, vector in zip(rows, vectors):
        try:
            stored = score_row(row, run.run_id, run.generator_version, now, vector)
        except ValueError as exc:
            log.warning("results store: %s; row skipped", exc)
            continue
        batch[stored["image_id"]] = stored  # the last copy of an id within a batch wins
    if not batch:
        return 0
    values = list(batch.values())
    with engine.begin() as conn:
        # DO NOTHING: updating the run's row would lock it, serialising every worker of a shared run
        _upsert(conn, runs, [_run_row(run, source)], ["run_id"], [])
        s = scores.c
        old = conn.execute(select(s.scored_day, s.category, s.generator_version).where(
            s.run_id == run.run_id, s.image_id.in_(list(batch)))).all() if len(batch) <= 30000 else []
        groups = {(v["scored_day"], v["category"], v["generator_version"]) for v in values} | {tuple(g) for g in old}
        aggregates.lock_groups(conn, groups)
        update = [c.name for c in scores.columns if c.name not in ("run_id", "image_id")]
        for start in range(0, len(values), 2000):
            _upsert(conn, scores, values[start:start + 2000], ["run_id", "image_id"], update)
        aggregates.refresh_groups(conn, groups)
    return len(values)


class Recorder:
    """Records one run into the store; see the module docstring. Build it with Recorder.open."""

    def __init__(self, engine: Engine | None, url: str, source: str, run: RunInfo, spool_path: Path):
        self.engine, self.url, self.source, self.run, self.spool_path = engine, url, source, run, spool_path
        self._warned = False
        self._failed_at: float | None = None if engine is not None else time.monotonic()
        self.spooled_rows = 0  # rows this recorder sent to the spool

    @classmethod
    def open(cls, url: str | None, *, source: str, run: RunInfo, spool_path: str | Path | None = None) -> "Recorder":
        """Open (and migrate) the store at `url`, None or "" meaning the default SQLite file
        (schema.default_store_path), load what an earlier run spooled, and record the run.
        A store that cannot be opened is warned about once; the run's rows then go to the spool."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
        resolved = resolve_url(url)
        path = Path(spool_path) if spool_path else default_spool_path(resolved)
        recorder = cls(None, resolved, source, run, path)
        try:
            engine = make_engine(resolved)
            upgrade(engine)
            with engine.begin() as conn:
                _upsert(conn, runs, [_run_row(run, source)], ["run_id"], ["ended_at"])
            recorder.engine, recorder._failed_at = engine, None
        except (SQLAlchemyError, OSError) as exc:
            recorder._warn(exc)
            return recorder
        spool.load(engine, path)
        return recorder

    def _warn(self, exc: BaseException) -> None:
        self._failed_at = time.monotonic()
        if not self._warned:
            self._warned = True
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"warning: the results store {_safe_url(self.url)} failed ({message}); scoring goes on and the "
                  f"rows it misses go to {self.spool_path}, loaded by the next run or `aigc-eval history import --spool`",
                  file=sys.stderr)

    def _database_usable(self) -> bool:
        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_AFTER_S:
            return False
        if self.engine is None:
            try:
                engine = make_engine(self.url)
                upgrade(engine)
                self.engine = engine
            except (SQLAlchemyError, OSError) as exc:
                self._warn(exc)
                return False
        return True

    def record(self, rows: Sequence[Mapping[str, object]], embeddings: Sequence[np.ndarray | None] | None = None) -> None:
        """Store one batch of result_total.csv rows (typed values) and their CLIP image embeddings
        (float arrays, or None per row or for the whole batch). Never raises for database errors."""
        if not rows:
            return
        if self._database_usable():
            try:
                write_batch(self.engine, self.run, self.source, rows, embeddings)
                return
            except SQLAlchemyError as exc:
                self._warn(exc)
        spool.append(self.spool_path, self.run, self.source, rows, embeddings)
        self.spooled_rows += len(rows)

    def close(self) -> None:
        """Set the run's ended_at (or spool it) and release the connections."""
        ended = datetime.now(timezone.utc)
        done = False
        if self._database_usable():
            try:
                with self.engine.begin() as conn:
                    conn.execute(runs.update().where(runs.c.run_id == self.run.run_id).values(ended_at=ended))
                done = True
            except SQLAlchemyError as exc:
                self._warn(exc)
        if not done:
            spool.append_end(self.spool_path, self.run, self.source, ended)
        if self.engine is not None:
            self.engine.dispose()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url
