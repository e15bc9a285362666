"""A stream worker's files in --output-dir, all append-only and crash-safe:

- `result_stream.<worker>.csv`, the shard: one row per scored image (SHARD_COLUMNS), appended
  with one write + fsync per batch by io.append_log.CsvAppendLog; its torn tail is cut off
  (kept in `.csv.torn`) when the worker opens it again;
- `result_stream.<worker>.logits.jsonl`: each image's Inception logits (float32, base64) keyed
  by id, fsynced *before* the shard rows, so every complete shard row has its logits; a record
  whose shard row never became complete is ignored by the merge;
- `result_stream.<worker>.published.jsonl`: ids whose result message nsqd acknowledged (not
  fsynced: a lost mark only means the result is published again, at least once);
- `result_stream.<worker>.dead_letter.jsonl` (the listener's format) and `.csv.lock`.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from aigc_eval import columns as col
from aigc_eval.io.append_log import (
    CsvAppendLog,
    DeadLetterLog,
    scan_csv_log,
)
from aigc_eval.io.csv_io import InputError, restore_cell
from aigc_eval.product import names as pn

log = logging.getLogger("aigc_eval")

# The listener's columns (the evaluators' input), then what scoring adds. The NSQ message id
# stays last, as in the listener's file: a torn record can never look complete.
SHARD_COLUMNS = [
    col.ID, col.PROMPT, col.IMAGE_URL, col.PRODUCT_IMAGE_URL, col.CATEGORY, col.TIMESTAMP, col.NSQ_TIMESTAMP,
    col.RAW_PROMPT, col.REQUEST_ID, col.WORKER,
    col.CLIP_SCORE, col.PROMPT_TOKENS, col.PROMPT_TRUNCATED, col.STATUS, col.ERROR,
    col.TOP1_CLASS, col.TOP1_LABEL, col.TOP1_CONFIDENCE, col.IMAGE_ERROR,
    *pn.PRODUCT_COLUMNS, pn.PRODUCT_CROP_BOX, col.PRODUCT_STATUS, col.PRODUCT_ERROR,
    col.SCORED_AT, col.NSQ_MESSAGE_ID,
]
WORKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_worker_name(name: str) -> str:
    """`name` when it can be part of a file name; ValueError otherwise."""
    if not WORKER_NAME.match(name):
        raise ValueError(f"--worker-name {name!r}: use 1-100 of A-Z a-z 0-9 . _ - (starting with a letter or digit)")
    return name


@dataclass(frozen=True)
class ShardPaths:
    """Where one worker's files are."""

    output_dir: Path
    worker: str
    prefix: str = col.DEFAULT_STREAM_PREFIX

    def _file(self, suffix: str) -> Path:
        return Path(self.output_dir) / f"{self.prefix}.{self.worker}.{suffix}"

    @property
    def shard(self) -> Path:
        return self._file("csv")

    @property
    def logits(self) -> Path:
        return self._file("logits.jsonl")

    @property
    def published(self) -> Path:
        return self._file("published.jsonl")

    @property
    def dead_letter(self) -> Path:
        return self._file("dead_letter.jsonl")


def logits_sidecar(shard: Path) -> Path:
    """result_stream.w1.csv -> result_stream.w1.logits.jsonl, beside it."""
    return shard.with_name(f"{shard.stem}.logits.jsonl")


def encode_logits(logits: torch.Tensor) -> str:
    return base64.b64encode(logits.detach().to(torch.float32).cpu().numpy().astype("<f4").tobytes()).decode("ascii")


def decode_logits(text: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32))


class ShardStore:
    """One worker's shard, logits sidecar and published marks, opened (and repaired) together."""

    def __init__(self, paths: ShardPaths):
        self.paths = paths
        self.csv_log, _ = CsvAppendLog.open(paths.shard, SHARD_COLUMNS, col.NSQ_MESSAGE_ID)
        self.logits_log, _ = DeadLetterLog.open(paths.logits, col.KEY_STREAM_ID)
        self.marks_log, published = DeadLetterLog.open(paths.published, col.KEY_STREAM_ID)
        self.rows = read_shard(paths.shard)  # repaired above: every row is complete
        self.published = set(published)

    def done_message_ids(self) -> set[str]:
        return {row[col.NSQ_MESSAGE_ID] for row in self.rows}

    def done_image_ids(self) -> set[str]:
        return {row[col.ID] for row in self.rows}

    def unpublished(self) -> list[dict[str, str]]:
        """Rows on disk whose result nsqd never acknowledged (published again on start)."""
        return [row for row in self.rows if row[col.ID] not in self.published]

    def append(self, rows: Sequence[dict[str, object]], logits: Sequence[tuple[str, torch.Tensor]]) -> None:
        """Logits first, then the rows, each one write + fsync: a complete row always has its logits."""
        self.logits_log.append_many([{col.KEY_STREAM_ID: image_id, col.KEY_STREAM_LOGITS: encode_logits(t)}
                                     for image_id, t in logits])
        self.csv_log.append(rows)

    def mark_published(self, ids: Sequence[str]) -> None:
        self.marks_log.append_many([{col.KEY_STREAM_ID: image_id} for image_id in ids], fsync=False)
        self.published.update(ids)

    def close(self) -> None:
        for handle in (self.csv_log, self.logits_log, self.marks_log):
            handle.close()


def _complete_prefix(path: Path) -> bytes:
    """The file's bytes up to its last complete record, without changing the file (a live worker
    may be appending to it, or a dead one left a torn tail its restart will cut off)."""
    data = path.read_bytes()
    good_end, _ = scan_csv_log(data, SHARD_COLUMNS, col.NSQ_MESSAGE_ID, path)
    return data[:good_end]


def read_shard(path: Path) -> list[dict[str, str]]:
    """The complete rows of a shard, cells restored (as csv_io.read_rows restores them)."""
    text = _complete_prefix(Path(path)).decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    return [dict(zip(SHARD_COLUMNS, map(restore_cell, record))) for record in reader if record]


def read_logits(path: Path) -> dict[str, torch.Tensor]:
    """id -> logits from a sidecar's complete lines (a later record for an id replaces an earlier one)."""
    if not Path(path).is_file():
        return {}
    found: dict[str, torch.Tensor] = {}
    data = Path(path).read_bytes()
    for number, line in enumerate(data[: data.rfind(b"\n") + 1].splitlines(), start=1):
        try:
            record = json.loads(line)
            found[str(record[col.KEY_STREAM_ID])] = decode_logits(record[col.KEY_STREAM_LOGITS])
        except (ValueError, KeyError, TypeError):
            if line.strip():
                raise InputError(f"{path}: line {number} is not a logits record") from None
    return found


def iter_shards(paths: Sequence[Path]) -> Iterator[tuple[Path, list[dict[str, str]], dict[str, torch.Tensor]]]:
    """(shard, its complete rows, its logits by id) for each shard, in the order given."""
    for path in paths:
        yield path, read_shard(path), read_logits(logits_sidecar(path))
