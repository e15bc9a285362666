"""The spool: batches the store missed, as JSON lines, loaded into the store later.

Each line is one batch: {"kind": "rows", "run": RunInfo, "source": ..., "rows": [...],
"embeddings": [base64 float16 or null, ...]} or {"kind": "end", "run": ..., "ended_at": ...}.
A line is written with one append (O_APPEND), so processes sharing a spool do not interleave;
a line cut short by a kill is skipped with a warning when loading. Loading first renames the
spool to <spool>.loading-<pid>, so two loaders never load one line twice; a load the database
refuses leaves that file, which the next load picks up.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from aigc_eval.store.rows import json_value, embedding_bytes


def _append_line(path: Path, record: Mapping[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def append(path: Path, run, source: str, rows: Sequence[Mapping[str, object]],
           embeddings: Sequence[np.ndarray | None] | None) -> None:
    """Append one batch to the spool."""
    vectors = list(embeddings) if embeddings is not None else [None] * len(rows)
    encoded = [None if (b := embedding_bytes(v)) is None else base64.b64encode(b).decode("ascii") for v in vectors]
    rows_json = [{str(k): json_value(v) for k, v in row.items()} for row in rows]
    _append_line(path, {"kind": "rows", "run": run.to_json(), "source": source, "rows": rows_json, "embeddings": encoded})


def append_end(path: Path, run, source: str, ended_at: datetime) -> None:
    _append_line(path, {"kind": "end", "run": run.to_json(), "source": source, "ended_at": ended_at.isoformat()})


def _claim(path: Path) -> list[Path]:
    """Spool files this process may load: the spool renamed to a file of its own, plus leftovers."""
    claimed = []
    for leftover in sorted(path.parent.glob(path.name + ".loading-*")):
        mine = path.with_name(f"{path.name}.loading-{os.getpid()}-{len(claimed)}")
        try:
            leftover.rename(mine)
            claimed.append(mine)
        except OSError:
            pass  # another loader took it
    mine = path.with_name(f"{path.name}.loading-{os.getpid()}-{len(claimed)}")
    try:
        path.rename(mine)
        claimed.append(mine)
    except FileNotFoundError:
        pass
    return claimed


def _decode(encoded: object) -> np.ndarray | None:
    if not encoded:
        return None
    return np.frombuffer(base64.b64decode(str(encoded)), dtype="<f2").astype(np.float32)


def _load_file(engine: Engine, claimed: Path) -> tuple[int, int]:
    from aigc_eval.store.recorder import RunInfo, _run_row, _upsert, write_batch  # the recorder imports this module
    from aigc_eval.store.schema import runs

    loaded = skipped = 0
    for number, line in enumerate(claimed.read_text(encoding="utf-8").splitlines(), 1):
        try:
            record = json.loads(line)
            run = RunInfo.from_json(record["run"])
        except (ValueError, KeyError, TypeError):
            print(f"warning: {claimed}:{number}: not a whole spool line (cut short by a kill?); skipped", file=sys.stderr)
            skipped += 1
            continue
        if record.get("kind") == "end":
            with engine.begin() as conn:
                _upsert(conn, runs, [_run_row(run, record["source"])], ["run_id"], [])
                conn.execute(runs.update().where(runs.c.run_id == run.run_id)
                             .values(ended_at=datetime.fromisoformat(record["ended_at"])))
            continue
        vectors = [_decode(e) for e in record.get("embeddings") or [None] * len(record["rows"])]
        loaded += write_batch(engine, run, record["source"], record["rows"], vectors)
    return loaded, skipped


def load(engine: Engine, path: Path) -> int:
    """Load the spool at `path` into the store; the number of rows loaded. Database errors leave
    the claimed file for the next load and are reported on stderr, not raised."""
    total = 0
    for claimed in _claim(path):
        try:
            loaded, _ = _load_file(engine, claimed)
        except (SQLAlchemyError, OSError) as exc:
            print(f"warning: could not load the spool {claimed} into the store ({str(exc).splitlines()[0]}); "
                  "it stays for the next run", file=sys.stderr)
            continue
        claimed.unlink()
        total += loaded
        print(f"loaded {loaded} spooled rows from {path} into the store", file=sys.stderr)
    return total
