"""`aigc-eval history import`: load run folders scored before the store existed.

Reads RUN_DIR/result_total.csv (its cells restored from CSV-injection quoting, numbers as
floats) and records it as one batch run whose id comes from the file's sha256, so importing a
folder twice leaves one copy. CLIP image embeddings come from the score cache when the run's
images can be matched to it (through the download cache for URLs, the file's bytes for local
paths; decisions/compare_distribution.py matches them the same way); otherwise the rows are
stored without, and the summary says so.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from aigc_eval import columns as col
from aigc_eval.io.csv_io import InputError, read_rows, restore_cell
from aigc_eval.io.image_fetch import ImageCache, content_digest
from aigc_eval.scoring.score_cache import ScoreCache
from aigc_eval.store.recorder import Recorder, RunInfo
from aigc_eval.store.rows import typed
from aigc_eval.store.schema import GENERATOR_VERSION

CLIP_KIND = "clip_image"  # the score cache's kind for CLIP image embeddings (scoring/clipscore.py)
BATCH = 2000


@dataclass
class Imported:
    run_dir: Path
    run_id: str
    rows: int
    embeddings: int


def _digest(row: dict[str, str], run_dir: Path, images: ImageCache | None) -> str | None:
    source = (row.get(col.IMAGE_URL) or "").strip()
    if not source:
        return None
    if source.lower().startswith(("http://", "https://")):
        cached = images.get(source) if images is not None else None
        return cached[1] if cached else None
    local = Path(source).expanduser()
    local = local if local.is_absolute() else run_dir / local
    return content_digest(local.read_bytes()) if local.is_file() else None


def find_embeddings(rows: list[dict[str, str]], run_dir: Path, cache_dir: Path | None) -> list[np.ndarray | None]:
    """Each row's CLIP image embedding from the score cache, under the one model key that has
    the most of the run's images (a run is scored by one model); None where not found."""
    scores_path = cache_dir / "scores.sqlite" if cache_dir else None
    if scores_path is None or not scores_path.is_file():
        return [None] * len(rows)
    images = ImageCache(cache_dir)
    digests = [_digest(row, run_dir, images) for row in rows]
    cache = ScoreCache(scores_path)
    try:
        found = cache.find(CLIP_KIND, [d for d in digests if d])
    finally:
        cache.close()
    if not found:
        return [None] * len(rows)
    key = Counter({k: sum(d in v for d in digests if d) for k, v in found.items()}).most_common(1)[0][0]
    return [found[key][d].float().numpy() if d and d in found[key] else None for d in digests]


def import_run(run_dir: Path, url: str | None, cache_dir: Path | None, generator_version: str = "") -> Imported:
    """Record RUN_DIR/result_total.csv into the store at `url`."""
    path = run_dir / col.DEFAULT_TOTAL_OUTPUT if run_dir.is_dir() else run_dir
    header, raw = read_rows(path, [col.ID])
    data = path.read_bytes()
    file_hash = hashlib.sha256(data).hexdigest()
    modified = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    rows = []
    for row in raw:
        values = {k: typed(restore_cell(v or ""), k) for k, v in row.items() if k}
        values.setdefault(col.SCORED_AT, modified.isoformat())  # when the run wrote it, not now
        if not values.get(col.SCORED_AT):
            values[col.SCORED_AT] = modified.isoformat()
        rows.append(values)
    vectors = find_embeddings(raw, path.parent, cache_dir)
    versions = {str(r.get(GENERATOR_VERSION) or "") for r in rows}
    run = RunInfo(run_id=f"import-{file_hash[:20]}", started_at=modified, input_file=str(path.resolve()),
                  input_hash=file_hash, generator_version=generator_version or (versions.pop() if len(versions) == 1 else ""))
    if not rows:
        raise InputError(f"{path}: no rows to import")
    with Recorder.open(url, source="batch", run=run) as recorder:
        for start in range(0, len(rows), BATCH):
            recorder.record(rows[start:start + BATCH], vectors[start:start + BATCH])
        if recorder.spooled_rows:
            raise InputError(f"the store could not take {path}'s rows; they are in {recorder.spool_path}")
    return Imported(path.parent, run.run_id, len(rows), sum(v is not None for v in vectors))
