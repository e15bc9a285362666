"""Merge CLIPScore and Inception results into a weighted total per image, and decide.

Merge mode (the article's command) reads result_clip.csv and result_is.csv (with
result_is.json beside it), joins them on id and writes result_total.csv with a
`regenerate` column (why an image should be generated again: clip_score below --min-clip,
top-1 confidence below --min-confidence), result_category.csv (per-category counts,
shares, means, spreads and IS, when there is a category column) and report.html:

    python main.py --clip_weight 0.6 --is_weight 0.4

Score mode scores a CSV with both models in one process, each image fetched and decoded
once (prompts cleaned first, see evaluate_clipscore.py), writes result_clip.csv,
result_is.csv and result_is.json, then merges and decides as above:

    python main.py --input samples/sample.csv

Compare mode sets two scored runs side by side (difference, 95% interval, t-test and rank
test, paired on id when the runs share ids) and writes compare.csv:

    python main.py --compare result_total_a.csv result_total_b.csv

Normalisation before weighting: clip_norm = min(max(clip_score, 0), 0.6) / 0.6 (the
article's practical CLIPScore range; --clip-ceiling changes 0.6), is_norm = per-image KL
/ ln(number of classes), clipped to 0..1. total_score = (clip_weight * clip_norm +
is_weight * is_norm) / (clip_weight + is_weight), so it lies in 0..1.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

import columns as col
from cli_support import (
    EXIT_OK,
    EXIT_ROW_ERRORS,
    RuntimeOptions,
    add_cleaning_arguments,
    add_column_arguments,
    add_runtime_arguments,
    cleaning_options_from,
    flags,
    log,
    new_parser,
    run_cli,
    runtime_options_from,
    setup_logging,
)
from compare_runs import COMPARE_COLUMNS, compare_runs, format_comparison
from csv_io import AtomicCsvWriter, read_rows, write_rows
from decisions import (
    DEFAULT_MIN_CLIP,
    DEFAULT_MIN_CONFIDENCE,
    Thresholds,
    category_table,
    format_summary,
    imbalance_warning,
    regenerate_reasons,
    run_summary,
)
from evaluate_clipscore import ClipScorer, clip_output_columns
from evaluate_is import InceptionScorer, write_is_outputs
from image_fetch import FetchConfig
from image_pipeline import PreparedRow, batched, prepare_rows, warm_up_when_needed
from merge_scores import check_weights, merge_score_files
from metrics import DEFAULT_CLIP_CEILING, DEFAULT_IS_SPLITS
from model_lanes import ModelLanes, queued_ahead
from model_loading import CLIP_DEFAULT_MODEL, clip_model_names, resolve_device
from prompt_cleaning import CleaningOptions, clean_rows
from report_html import write_html_report
from score_cache import open_cache

CATEGORY_COLUMNS = [col.CAT_CATEGORY, col.CAT_COUNT, col.CAT_SHARE, col.CAT_CLIP_MEAN, col.CAT_CLIP_STD,
                    col.CAT_TOTAL_MEAN, col.CAT_TOTAL_STD, col.CAT_IS, col.CAT_IS_IMAGES, col.CAT_REGENERATE]


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


def decide_and_write(
    clip_path: Path, is_path: Path, output_path: Path, *, clip_weight: float = 0.6, is_weight: float = 0.4,
    id_col: str = col.ID, prompt_col: str = col.PROMPT, image_col: str = col.IMAGE_URL, category_col: str = col.CATEGORY,
    clip_ceiling: float = DEFAULT_CLIP_CEILING, thresholds: Thresholds | None = None,
    category_output: Path | None = None, report_path: Path | None = None, image_base_dir: Path | None = None,
    fetch: FetchConfig | None = None,
) -> dict[str, object]:
    """Merge the two result files, flag images to regenerate, and write result_total.csv, the
    per-category CSV (when there is a category column) and report.html. Returns the run summary."""
    thresholds = thresholds or Thresholds()
    columns, rows, is_summary = merge_score_files(
        clip_path, is_path, clip_weight=clip_weight, is_weight=is_weight, id_col=id_col, prompt_col=prompt_col,
        image_col=image_col, clip_ceiling=clip_ceiling)
    for row in rows:
        row[col.REGENERATE] = regenerate_reasons(row, thresholds)
    write_rows(output_path, columns, rows)
    table: list[dict[str, object]] = []
    if category_col in columns:
        table = category_table(rows, category_col, is_summary.get(col.KEY_PER_CATEGORY, {}))
        if category_output:
            write_rows(category_output, CATEGORY_COLUMNS, table)
    warnings = [is_summary.get(col.KEY_WARNING, ""), imbalance_warning(table)]
    summary = run_summary(rows, is_summary, clip_weight, is_weight, warnings)
    if report_path:
        write_html_report(report_path, summary=summary, rows=rows, categories=table, id_col=id_col,
                          prompt_col=prompt_col, image_col=image_col, image_base_dir=image_base_dir, fetch=fetch)
    return summary


def run_compare(path_a: Path, path_b: Path, output_path: Path, id_col: str) -> None:
    """--compare: write the A/B comparison and show it on stderr."""
    results = compare_runs(path_a, path_b, id_col)
    write_rows(output_path, COMPARE_COLUMNS, results)
    log.info("%s\nwrote %s", format_comparison(results, str(path_a), str(path_b)), output_path)


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
    decisions = parser.add_argument_group("decisions and report")
    decisions.add_argument(*flags("min-clip"), dest="min_clip", type=float, default=DEFAULT_MIN_CLIP,
                           help="flag images whose clip_score is below this for regeneration")
    decisions.add_argument(*flags("min-confidence"), dest="min_confidence", type=float, default=DEFAULT_MIN_CONFIDENCE,
                           help="flag images whose Inception top-1 confidence is below this")
    decisions.add_argument(*flags("category-output"), dest="category_output", type=Path,
                           default=Path(col.DEFAULT_CATEGORY_OUTPUT), help="per-category table (with a category column)")
    decisions.add_argument("--report", type=Path, default=Path(col.DEFAULT_REPORT), help="self-contained HTML report")
    decisions.add_argument(*flags("no-report"), dest="no_report", action="store_true", help="do not write the HTML report")
    decisions.add_argument("--compare", type=Path, nargs=2, metavar=("A.csv", "B.csv"), default=None,
                           help="compare two scored runs instead (paired on id when they share ids)")
    decisions.add_argument(*flags("compare-output"), dest="compare_output", type=Path,
                           default=Path(col.DEFAULT_COMPARE_OUTPUT), help="where --compare writes its table")
    scoring = parser.add_argument_group("scoring (with --input)")
    scoring.add_argument("--model", default=CLIP_DEFAULT_MODEL, choices=clip_model_names(), help="Chinese-CLIP model")
    scoring.add_argument(*flags("model-dir"), dest="model_dir", type=Path, default=None,
                         help="cn_clip download root holding clip_cn_<model>.pt (default: ~/.cache/clip)")
    scoring.add_argument("--weights", type=Path, default=None, help="local Inception-v3 state_dict")
    scoring.add_argument("--splits", type=int, default=DEFAULT_IS_SPLITS, help="IS splits")
    add_cleaning_arguments(scoring)
    add_runtime_arguments(scoring, batch_size=32)
    args = parser.parse_args(argv)
    setup_logging(args.quiet)

    def body() -> int:
        if args.compare:
            run_compare(args.compare[0], args.compare[1], args.compare_output, args.id_col)
            return EXIT_OK
        check_weights(args.clip_weight, args.is_weight)
        thresholds = Thresholds(args.min_clip, args.min_confidence)
        runtime = runtime_options_from(args)
        if args.input is not None:
            score_both(
                args.input, args.clip_result, args.is_result, id_col=args.id_col, prompt_col=args.prompt_col,
                image_col=args.image_col, model_name=args.model, model_dir=args.model_dir, weights=args.weights,
                splits=args.splits, cleaning=cleaning_options_from(args), runtime=runtime,
            )
        summary = decide_and_write(
            args.clip_result, args.is_result, args.output, clip_weight=args.clip_weight, is_weight=args.is_weight,
            id_col=args.id_col, prompt_col=args.prompt_col, image_col=args.image_col, category_col=args.category_col,
            clip_ceiling=args.clip_ceiling, thresholds=thresholds, category_output=args.category_output,
            report_path=None if args.no_report else args.report,
            image_base_dir=args.input.parent if args.input else None, fetch=runtime.fetch,
        )
        log.info("wrote %s\n%s", args.output, format_summary(summary))
        return EXIT_ROW_ERRORS if summary[col.SUM_ERRORS] else EXIT_OK

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
