"""A result cache on disk, so a rerun (after a crash, or on an already scored CSV) only reads.

Reads and writes `<cache dir>/scores.sqlite`: CLIP image embeddings keyed by (image content
hash, model key) and Inception logits keyed the same way. The model key names the model,
its weights file (path, size, modification time), the precision and the preprocessing
version, so changing any of them misses the cache instead of returning stale numbers.
Each batch is committed as it finishes: a `kill -9` loses at most the batch in flight.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import torch

SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    kind TEXT NOT NULL,
    model_key TEXT NOT NULL,
    digest TEXT NOT NULL,
    dtype TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (kind, model_key, digest)
)
"""


def weights_key(path: str | Path) -> str:
    """Identity of a weights file that changes when the file does: path, size and mtime."""
    stat = Path(path).stat()
    return f"{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


class ScoreCache:
    """Thread-safe feature store: get() from fetch workers, put_many() from the scoring loop."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)
        self._db.commit()

    def get(self, kind: str, model_key: str, digest: str) -> torch.Tensor | None:
        """The stored vector, or None."""
        with self._lock:
            found = self._db.execute(
                "SELECT dtype, data FROM features WHERE kind=? AND model_key=? AND digest=?", (kind, model_key, digest)
            ).fetchone()
        if found is None:
            return None
        return torch.from_numpy(np.frombuffer(found[1], dtype=found[0]).copy())

    def put_many(self, kind: str, model_key: str, items: list[tuple[str, torch.Tensor]]) -> None:
        """Store (digest, vector) pairs and commit them together."""
        if not items:
            return
        rows = []
        for digest, vector in items:
            array = vector.detach().cpu().numpy()
            rows.append((kind, model_key, digest, array.dtype.str, array.tobytes()))
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?)", rows)
            self._db.commit()

    def find(self, kind: str, digests: list[str]) -> dict[str, dict[str, torch.Tensor]]:
        """Every stored vector of `kind` for these image digests, by model key: {model_key: {digest: vector}}.
        For reading features back without the models (main.py --compare)."""
        found: dict[str, dict[str, torch.Tensor]] = {}
        unique = list(dict.fromkeys(digests))
        for start in range(0, len(unique), 500):  # SQLite's limit on bound parameters
            chunk = unique[start:start + 500]
            with self._lock:
                rows = self._db.execute(
                    f"SELECT model_key, digest, dtype, data FROM features WHERE kind=? AND digest IN ({','.join('?' * len(chunk))})",
                    (kind, *chunk)).fetchall()
            for model_key, digest, dtype, data in rows:
                found.setdefault(model_key, {})[digest] = torch.from_numpy(np.frombuffer(data, dtype=dtype).copy())
        return found

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_cache(cache_dir: Path | None) -> ScoreCache | None:
    """The score cache inside the image cache folder, or None when caching is off or impossible."""
    if cache_dir is None:
        return None
    try:
        return ScoreCache(Path(cache_dir) / "scores.sqlite")
    except (sqlite3.Error, OSError):
        return None  # a cache that cannot be opened only costs recomputation
