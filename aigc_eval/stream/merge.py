"""Shards -> the batch run's result files: main.py --shards 'result_stream.*.csv'.

Reads each shard's complete rows only (a torn tail left by a crash is ignored here, and cut off
when its worker starts again) with the logits beside it, keeps each image id once (the first
shard in name order, then file order: an image in two shards was written by a worker that died
after its fsync but before nsqd heard its FIN, and redelivered to another), orders the images
by id, and writes result_clip.csv, result_is.csv + .json (IS, its interval, per-category IS,
each image's KL against the marginal of all merged images: InceptionScorer's own maths) and,
when any image had the product check, result_product.csv, as main.py --input over the same
images in the same order writes them. main.py then merges and decides as usual.
"""

from __future__ import annotations

import glob
from pathlib import Path

import torch

from aigc_eval import columns as col
from aigc_eval import log
from aigc_eval.collection.messages import LISTENER_COLUMNS
from aigc_eval.io.csv_io import InputError, write_rows
from aigc_eval.product.stage import product_output_columns
from aigc_eval.scoring.clipscore import CLIP_RESULT_COLUMNS, clip_output_columns
from aigc_eval.scoring.image_pipeline import PreparedRow
from aigc_eval.scoring.inception import InceptionScorer, write_is_outputs
from aigc_eval.scoring.model_loading import inception_categories
from aigc_eval.stream.scoring import product_row
from aigc_eval.stream.shards import iter_shards, logits_sidecar

LEAD = (col.ID, col.PROMPT, col.IMAGE_URL)


def shard_files(pattern: str) -> list[Path]:
    """The shard CSVs matching a glob, in name order; InputError when there are none."""
    paths = sorted(Path(p) for p in glob.glob(pattern) if p.endswith(".csv") and Path(p).is_file())
    if not paths:
        raise InputError(f"--shards {pattern!r}: no shard CSV matches (they are named result_stream.<worker>.csv)")
    return paths


def collect_images(paths: list[Path]) -> tuple[list[dict[str, str]], dict[str, torch.Tensor], int]:
    """(each image's shard row once, ordered by id; logits by id; copies dropped)."""
    rows: dict[str, dict[str, str]] = {}
    logits: dict[str, torch.Tensor] = {}
    dropped = 0
    for path, shard_rows, shard_logits in iter_shards(paths):
        for row in shard_rows:
            image_id = row[col.ID]
            if image_id in rows:
                dropped += 1
                continue
            if not row[col.IMAGE_ERROR]:
                if image_id not in shard_logits:
                    raise InputError(f"{logits_sidecar(path)}: no logits for image {image_id!r} of {path.name}")
                logits[image_id] = shard_logits[image_id]
            rows[image_id] = row
    return [rows[key] for key in sorted(rows)], logits, dropped


def merge_shards(pattern: str, clip_output: Path, is_output: Path, product_output: Path, *, splits: int,
                 category_col: str = col.CATEGORY) -> bool:
    """Write the result files from the shards matching `pattern` (see the module docstring);
    returns whether result_product.csv was written."""
    if splits < 1:
        raise ValueError(f"--splits must be at least 1, got {splits}")
    paths = shard_files(pattern)
    images, logits, dropped = collect_images(paths)
    log.info("%d shards: %d images%s", len(paths), len(images),
             f" ({dropped} copies of images already in an earlier shard left out)" if dropped else "")
    header = list(LISTENER_COLUMNS)
    inputs = [{name: row[name] for name in (*LISTENER_COLUMNS, col.RAW_PROMPT)} for row in images]
    write_rows(clip_output, clip_output_columns(header, *LEAD),
               [{**base, **{name: row[name] for name in CLIP_RESULT_COLUMNS}} for base, row in zip(inputs, images)])
    scorer = InceptionScorer(None, inception_categories(), torch.device("cpu"))  # no model: the logits are given
    scorer.record([PreparedRow(base, error=row[col.IMAGE_ERROR]) for base, row in zip(inputs, images)],
                  [logits[row[col.ID]] for row in images if not row[col.IMAGE_ERROR]])
    write_is_outputs(scorer, header, is_output, splits, LEAD, None, category_col)
    with_product = any(row[col.PRODUCT_STATUS] for row in images)
    if with_product:
        write_rows(product_output, product_output_columns(header, *LEAD),
                   [{**base, **product_row(row)} for base, row in zip(inputs, images)])
    return with_product
