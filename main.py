"""Merge CLIPScore and Inception results into one weighted total score per image.

Merge mode (the article's command) reads result_clip.csv and result_is.csv (with
result_is.json beside it), joins them on id and writes result_total.csv:

    python main.py --clip_weight 0.6 --is_weight 0.4

Score mode scores a CSV with both models in one process, each image fetched and decoded
once, writes result_clip.csv, result_is.csv and result_is.json, then merges:

    python main.py --input samples/sample.csv

Normalisation before weighting: clip_norm = min(max(clip_score, 0), 0.6) / 0.6 (the
article's practical CLIPScore range; --clip-ceiling changes 0.6), is_norm = per-image KL
/ ln(number of classes), clipped to 0..1. total_score = (clip_weight * clip_norm +
is_weight * is_norm) / (clip_weight + is_weight), so it lies in 0..1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

import columns as col
from cli_support import (
    EXIT_OK,
    EXIT_ROW_ERRORS,
    add_column_arguments,
    RuntimeOptions,
    add_runtime_arguments,
    flags,
    log,
    new_parser,
    run_cli,
    runtime_options_from,
    setup_logging,
)
from csv_io import AtomicCsvWriter, InputError, read_rows, write_rows
from evaluate_clipscore import ClipScorer, clip_output_columns
from evaluate_is import InceptionScorer, summary_path_for, write_is_outputs
from image_pipeline import batched, prepare_rows
from metrics import DEFAULT_CLIP_CEILING, DEFAULT_IS_SPLITS, normalise_clip, normalise_kl, weighted_total
from model_loading import CLIP_DEFAULT_MODEL, clip_model_names, resolve_device
from score_cache import open_cache

TOTAL_COLUMNS_AFTER_LEAD = [
    col.CLIP_SCORE, col.TOP1_LABEL, col.TOP1_CONFIDENCE, col.KL,
    col.CLIP_NORM, col.IS_NORM, col.TOTAL_SCORE, col.STATUS, col.ERROR,
]
DEFAULT_NUM_CLASSES = 1000


def check_weights(clip_weight: float, is_weight: float) -> None:
    """Raise ValueError for negative weights or both zero."""
    weighted_total(0.0, 0.0, clip_weight, is_weight)


def _index_by_id(rows: list[dict[str, str]], id_col: str, path: Path) -> dict[str, dict[str, str]]:
    index: dict[str, dict[str, str]] = {}
    for row in rows:
        key = row[id_col]
        if key in index:
            raise InputError(f"{path}: id {key!r} appears more than once; ids must be unique to merge on id")
        index[key] = row
    return index


def pair_rows(
    clip_rows: list[dict[str, str]], is_rows: list[dict[str, str]], id_col: str, clip_path: Path, is_path: Path
) -> list[tuple[dict[str, str] | None, dict[str, str] | None]]:
    """Pair the rows of the two result files: position by position when both list the same
    ids in the same order (as when made from one input), else joined on unique ids."""
    if [r[id_col] for r in clip_rows] == [r[id_col] for r in is_rows]:
        return list(zip(clip_rows, is_rows))
    clip_index, is_index = _index_by_id(clip_rows, id_col, clip_path), _index_by_id(is_rows, id_col, is_path)
    pairs: list[tuple[dict[str, str] | None, dict[str, str] | None]] = [(r, is_index.get(r[id_col])) for r in clip_rows]
    return pairs + [(None, r) for r in is_rows if r[id_col] not in clip_index]


def merge_pair(
    clip_row: dict[str, str] | None, is_row: dict[str, str] | None, *, clip_weight: float, is_weight: float,
    num_classes: int, clip_ceiling: float, clip_name: str, is_name: str,
) -> dict[str, object]:
    """One result_total row from a CLIP row and an IS row of the same image (either may be missing)."""
    merged: dict[str, object] = {**(is_row or {}), **(clip_row or {})}
    reasons = []
    for row, name in ((clip_row, clip_name), (is_row, is_name)):
        if row is None:
            reasons.append(f"missing from {name}")
        elif row.get(col.STATUS) != col.STATUS_OK:
            reasons.append(f"{name}: {row.get(col.ERROR) or 'not scored'}")
    for field in (col.TOP1_LABEL, col.TOP1_CONFIDENCE, col.KL):
        merged[field] = (is_row or {}).get(field, "")
    merged[col.CLIP_SCORE] = (clip_row or {}).get(col.CLIP_SCORE, "")
    if reasons:
        merged.update({col.STATUS: col.STATUS_ERROR, col.ERROR: "; ".join(reasons)})
        return merged
    clip_norm = normalise_clip(float(clip_row[col.CLIP_SCORE]), clip_ceiling)
    is_norm = normalise_kl(float(is_row[col.KL]), num_classes)
    merged.update({
        col.CLIP_NORM: f"{clip_norm:.6f}", col.IS_NORM: f"{is_norm:.6f}",
        col.TOTAL_SCORE: f"{weighted_total(clip_norm, is_norm, clip_weight, is_weight):.6f}",
        col.STATUS: col.STATUS_OK, col.ERROR: "",
    })
    return merged


def read_num_classes(summary_path: Path) -> int:
    """num_classes from result_is.json, or 1000 (ImageNet) when the summary is absent."""
    if not summary_path.is_file():
        return DEFAULT_NUM_CLASSES
    try:
        return int(json.loads(summary_path.read_text(encoding="utf-8")).get(col.KEY_NUM_CLASSES, DEFAULT_NUM_CLASSES))
    except (ValueError, TypeError) as exc:
        raise InputError(f"{summary_path}: not a valid IS summary ({exc})") from None


def merge_results(
    clip_path: Path, is_path: Path, output_path: Path, *, clip_weight: float = 0.6, is_weight: float = 0.4,
    id_col: str = col.ID, prompt_col: str = col.PROMPT, image_col: str = col.IMAGE_URL,
    clip_ceiling: float = DEFAULT_CLIP_CEILING,
) -> list[dict[str, object]]:
    """Join result_clip.csv and result_is.csv on id and write result_total.csv; returns its rows."""
    check_weights(clip_weight, is_weight)
    if not 0 < clip_ceiling <= 1:
        raise ValueError(f"--clip-ceiling must be in (0, 1], got {clip_ceiling}")
    clip_header, clip_rows = read_rows(clip_path, [id_col, col.CLIP_SCORE, col.STATUS, col.ERROR])
    is_header, is_rows = read_rows(is_path, [id_col, col.KL, col.TOP1_LABEL, col.STATUS, col.ERROR])
    num_classes = read_num_classes(summary_path_for(is_path))
    merged = [
        merge_pair(c, i, clip_weight=clip_weight, is_weight=is_weight, num_classes=num_classes,
                   clip_ceiling=clip_ceiling, clip_name=clip_path.name, is_name=is_path.name)
        for c, i in pair_rows(clip_rows, is_rows, id_col, clip_path, is_path)
    ]
    lead = [id_col, prompt_col, image_col]
    known = set(lead + TOTAL_COLUMNS_AFTER_LEAD + [col.PROMPT_TOKENS, col.PROMPT_TRUNCATED, col.TOP1_CLASS])
    extra = [name for name in dict.fromkeys(clip_header + is_header) if name not in known]
    write_rows(output_path, lead + TOTAL_COLUMNS_AFTER_LEAD + extra, merged)
    return merged


def score_both(
    input_path: Path, clip_output: Path, is_output: Path, *, id_col: str, prompt_col: str, image_col: str,
    model_name: str, model_dir: Path | None, weights: Path | None, splits: int, runtime: RuntimeOptions,
) -> None:
    """Score `input_path` with both models in one pass (each image fetched and decoded once)
    and write result_clip.csv, result_is.csv and result_is.json."""
    if splits < 1:
        raise ValueError(f"--splits must be at least 1, got {splits}")
    header, rows = read_rows(input_path, [id_col, prompt_col, image_col])
    device = resolve_device(runtime.device)
    cache = open_cache(runtime.fetch.cache_dir)
    clip = ClipScorer.load(model_name, model_dir, device, runtime.precision, cache)
    inception = InceptionScorer.load(weights, device, runtime.precision, cache)
    prepared = prepare_rows(rows, image_col, [clip, inception], runtime.fetch, runtime.workers, Path(input_path).parent)
    with AtomicCsvWriter(clip_output, clip_output_columns(header, id_col, prompt_col, image_col)) as writer:
        with tqdm(total=len(rows), desc="CLIPScore+IS", unit="img", disable=runtime.quiet) as progress:
            for batch in batched(prepared, runtime.batch_size):
                for item, result in zip(batch, clip.score_batch(batch, prompt_col, slot=0)):
                    writer.write({**item.row, **result})
                inception.add_batch(batch, slot=1)
                progress.update(len(batch))
        writer.commit()
    write_is_outputs(inception, header, is_output, splits, (id_col, prompt_col, image_col), None)


def summarise(rows: Sequence[dict[str, object]]) -> str:
    """One line: rows, errors and the mean of each score over the ok rows."""
    ok = [r for r in rows if r[col.STATUS] == col.STATUS_OK]

    def mean(key: str) -> str:
        values = [float(r[key]) for r in ok if r.get(key) not in (None, "")]
        return f"{sum(values) / len(values):.4f}" if values else "n/a"

    return (f"{len(rows)} rows, {len(rows) - len(ok)} errors; mean clip_score {mean(col.CLIP_SCORE)}, "
            f"mean kl {mean(col.KL)}, mean total_score {mean(col.TOTAL_SCORE)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = new_parser(__doc__)
    parser.add_argument(*flags("clip-weight"), dest="clip_weight", type=float, default=0.6, help="weight of CLIPScore")
    parser.add_argument(*flags("is-weight"), dest="is_weight", type=float, default=0.4, help="weight of the Inception term")
    parser.add_argument(*flags("clip-ceiling"), dest="clip_ceiling", type=float, default=DEFAULT_CLIP_CEILING,
                        help="CLIPScore that counts as a perfect match when normalising")
    parser.add_argument("--input", type=Path, default=None, help="score this CSV with both metrics first, then merge")
    parser.add_argument(*flags("clip-result"), dest="clip_result", type=Path, default=Path(col.DEFAULT_CLIP_OUTPUT),
                        help="CLIPScore results (read, or written with --input)")
    parser.add_argument(*flags("is-result"), dest="is_result", type=Path, default=Path(col.DEFAULT_IS_OUTPUT),
                        help="Inception results (read, or written with --input); summary beside it as .json")
    parser.add_argument("--output", type=Path, default=Path(col.DEFAULT_TOTAL_OUTPUT), help="merged result CSV")
    add_column_arguments(parser)
    scoring = parser.add_argument_group("scoring (with --input)")
    scoring.add_argument("--model", default=CLIP_DEFAULT_MODEL, choices=clip_model_names(), help="Chinese-CLIP model")
    scoring.add_argument(*flags("model-dir"), dest="model_dir", type=Path, default=None,
                         help="cn_clip download root holding clip_cn_<model>.pt (default: ~/.cache/clip)")
    scoring.add_argument("--weights", type=Path, default=None, help="local Inception-v3 state_dict")
    scoring.add_argument("--splits", type=int, default=DEFAULT_IS_SPLITS, help="IS splits")
    add_runtime_arguments(scoring, batch_size=32)
    args = parser.parse_args(argv)
    setup_logging(args.quiet)

    def body() -> int:
        check_weights(args.clip_weight, args.is_weight)
        if args.input is not None:
            score_both(
                args.input, args.clip_result, args.is_result, id_col=args.id_col, prompt_col=args.prompt_col,
                image_col=args.image_col, model_name=args.model, model_dir=args.model_dir, weights=args.weights,
                splits=args.splits, runtime=runtime_options_from(args),
            )
        rows = merge_results(
            args.clip_result, args.is_result, args.output, clip_weight=args.clip_weight, is_weight=args.is_weight,
            id_col=args.id_col, prompt_col=args.prompt_col, image_col=args.image_col, clip_ceiling=args.clip_ceiling,
        )
        log.info("wrote %s: %s", args.output, summarise(rows))
        return EXIT_OK if all(r[col.STATUS] == col.STATUS_OK for r in rows) else EXIT_ROW_ERRORS

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
