"""Scoring a CSV with both models in one pass: each image fetched and decoded once, CLIPScore
and Inception computed side by side in the model lanes."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from aigc_eval import columns as col
from aigc_eval import log
from aigc_eval.io.csv_io import AtomicCsvWriter, read_rows
from aigc_eval.scoring.clipscore import ClipScorer, clip_output_columns
from aigc_eval.scoring.image_pipeline import (
    PreparedRow,
    batched,
    prepare_rows,
    warm_up_when_needed,
)
from aigc_eval.scoring.inception import InceptionScorer, write_is_outputs
from aigc_eval.scoring.model_lanes import ModelLanes, queued_ahead
from aigc_eval.scoring.model_loading import resolve_device
from aigc_eval.scoring.prompt_cleaning import CleaningOptions, clean_rows
from aigc_eval.scoring.runtime import RuntimeOptions
from aigc_eval.scoring.score_cache import open_cache


def score_both(
    input_path: Path, clip_output: Path, is_output: Path, *, id_col: str, prompt_col: str, image_col: str,
    model_name: str, model_dir: Path | None, weights: Path | None, splits: int, cleaning: CleaningOptions,
    runtime: RuntimeOptions,
) -> None:
    """Score `input_path` with both models in one pass (each image fetched and decoded once,
    both models' work shared out to ModelLanes, a batch queued before the one before it is
    collected) and write result_clip.csv, result_is.csv and result_is.json."""
    if splits < 1:
        raise ValueError(f"--splits must be at least 1, got {splits}")
    header, rows = read_rows(input_path, [id_col, prompt_col, image_col])
    rows = clean_rows(rows, prompt_col, cleaning, col.RAW_PROMPT)
    device = resolve_device(runtime.device)
    cache = open_cache(runtime.fetch.cache_dir)
    clip = ClipScorer.load(model_name, model_dir, device, runtime.precision, cache)
    inception = InceptionScorer.load(weights, device, runtime.precision, cache)
    prepared = prepare_rows(rows, image_col, [clip, inception], runtime.fetch, runtime.workers, Path(input_path).parent,
                            ahead=2 * runtime.batch_size)
    with AtomicCsvWriter(clip_output, clip_output_columns(header, id_col, prompt_col, image_col)) as writer, \
            ModelLanes(device) as lanes:
        prepared = warm_up_when_needed(prepared, [partial(lanes.warm_up, clip.model.get),
                                                  partial(lanes.warm_up, inception.model.get)])

        def submit(batch: list[PreparedRow]) -> Callable[[], list[dict[str, object]]]:
            clip_done = clip.submit_batch(batch, prompt_col, lanes, slot=0)
            is_done = inception.submit_batch(batch, lanes, slot=1)

            def finish() -> list[dict[str, object]]:
                is_done()
                return clip_done()

            return finish

        with tqdm(total=len(rows), desc="CLIPScore+IS", unit="img", disable=runtime.quiet) as progress:
            for batch, results in queued_ahead(batched(prepared, runtime.batch_size), submit):
                for item, result in zip(batch, results):
                    writer.write({**item.row, **result})
                progress.update(len(batch))
        writer.commit()
    log.info("wrote %s: image embeddings: %d from the cache, %d computed", clip_output, clip.reused, clip.computed)
    write_is_outputs(inception, header, is_output, splits, (id_col, prompt_col, image_col), None, cleaning.category_col)
