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
/ ln(number of classes), clipped to 0..1, product_score as it is. total_score = the sum of
weight * term over the metrics with a term for the image, over the sum of their weights
(0..1); --metrics picks the metrics, --weight NAME=W and --threshold NAME.RULE=V the
weights and the regenerate rules (aigc_eval/metrics/, docs/metrics.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from aigc_eval import columns as col
from aigc_eval import log
from aigc_eval.cli.product import add_product_arguments, product_options_from
from aigc_eval.cli.support import (
    EXIT_OK,
    EXIT_ROW_ERRORS,
    add_cleaning_arguments,
    add_column_arguments,
    add_decision_arguments,
    add_store_arguments,
    add_model_arguments,
    add_runtime_arguments,
    cleaning_options_from,
    decision_flags_from,
    fetch_config_from,
    flags,
    new_parser,
    open_recorder,
    run_cli,
    runtime_options_from,
    setup_logging,
)
from aigc_eval.decisions.merge import read_results
from aigc_eval.decisions.outputs import decide_and_write, run_compare
from aigc_eval.decisions.rules import format_summary
from aigc_eval.io.csv_io import read_header
from aigc_eval.metrics.base import Metric
from aigc_eval.metrics.decide import check_weights_usable, decision_settings, with_calibration
from aigc_eval.metrics.product_clip import PRODUCT_CLIP_SIMILARITY
from aigc_eval.metrics.registry import create_metrics, flagged_metrics, parse_metric_names
from aigc_eval.metrics.setup import MetricSetup
from aigc_eval.scoring.combined import score_both
from aigc_eval.scoring.fid_features import DEFAULT_FID_FEATURES, FID_FEATURES_REGISTRY
from aigc_eval.scoring.metrics import DEFAULT_IS_SPLITS
from aigc_eval.scoring.result_files import PRODUCT_METRICS


def main(argv: Sequence[str] | None = None) -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--input", type=Path, default=None, help="score this CSV with every metric first, then merge")
    parser.add_argument(*flags("clip-result"), dest="clip_result", type=Path, default=Path(col.DEFAULT_CLIP_OUTPUT),
                        help="CLIPScore results (read, or written with --input)")
    parser.add_argument(*flags("is-result"), dest="is_result", type=Path, default=Path(col.DEFAULT_IS_OUTPUT),
                        help="Inception results (read, or written with --input); summary beside it as .json")
    parser.add_argument("--output", type=Path, default=Path(col.DEFAULT_TOTAL_OUTPUT), help="merged result CSV")
    add_column_arguments(parser)
    decisions = parser.add_argument_group("metrics, weights and decisions")
    add_decision_arguments(decisions)
    add_store_arguments(decisions, by_default=True)
    decisions.add_argument(*flags("category-output"), dest="category_output", type=Path,
                           default=Path(col.DEFAULT_CATEGORY_OUTPUT), help="per-category table (with a category column)")
    decisions.add_argument("--report", type=Path, default=Path(col.DEFAULT_REPORT), help="self-contained HTML report")
    decisions.add_argument(*flags("no-report"), dest="no_report", action="store_true", help="do not write the HTML report")
    decisions.add_argument("--labels", type=Path, default=None, metavar="labels.csv",
                           help="people's verdicts on these images: the report gains how well each number agrees "
                                "with them (calibrate.py's figures)")
    decisions.add_argument("--compare", type=Path, nargs=2, metavar=("A.csv", "B.csv"), default=None,
                           help="compare two scored runs instead (paired on id when they share ids)")
    decisions.add_argument(*flags("compare-output"), dest="compare_output", type=Path,
                           default=Path(col.DEFAULT_COMPARE_OUTPUT), help="where --compare writes its table")
    scoring = parser.add_argument_group("scoring (with --input)")
    add_model_arguments(scoring)
    scoring.add_argument("--splits", type=int, default=DEFAULT_IS_SPLITS, help="IS splits")
    add_cleaning_arguments(scoring)
    add_runtime_arguments(scoring, batch_size=32)
    product = parser.add_argument_group(
        "product checks (with --input when the input has the cut-out column; else merged from --product-result when it exists)")
    product.add_argument(*flags("product-result"), dest="product_result", type=Path,
                         default=Path(col.DEFAULT_PRODUCT_OUTPUT), help="product check results (read, or written with --input)")
    product.add_argument(*flags("no-product"), dest="no_product", action="store_true",
                         help="no product checks, and no product term in the total")
    add_product_arguments(product)
    reference = parser.add_argument_group("distribution distances (with --input)")
    reference.add_argument("--reference", type=Path, default=None,
                           help="real product photos to compare the generated images with (FID, KID, CMMD, overall and "
                                "per category): a CSV with the image column (and category), or a folder of images")
    reference.add_argument(*flags("distribution-output"), dest="distribution_output", type=Path,
                           default=Path(col.DEFAULT_DISTRIBUTION_OUTPUT), help="where --reference writes its distances")
    reference.add_argument(*flags("save-features"), dest="save_features", type=Path, default=None, metavar="DIR",
                           help="also save both sides' Inception pool features and CLIP embeddings as .npy there")
    reference.add_argument(*flags("fid-features"), dest="fid_features", default=DEFAULT_FID_FEATURES,
                           choices=list(FID_FEATURES_REGISTRY),
                           help="what FID and KID are computed on: torchvision's Inception from the scoring pass "
                                "(comparable across runs of this tool only), or torch-fidelity's TensorFlow-compatible "
                                "Inception (comparable with published FIDs; a second pass over the images)")
    reference.add_argument(*flags("fid-weights"), dest="fid_weights", type=Path, default=None, metavar="PATH",
                           help="local copy of torch-fidelity's weights-inception-2015-12-05-6726825d.pth (default: "
                                "torch hub's checkpoints folder, downloaded there on first use)")
    product.add_argument("--shards", default=None, metavar="GLOB",
                         help="merge stream shards (evaluate_stream.py, e.g. 'result_stream.*.csv') into the result files first")
    args = parser.parse_args(argv)
    setup_logging(args.quiet)

    def body() -> int:
        if args.compare:
            run_compare(args.compare[0], args.compare[1], args.compare_output, args.id_col, args.image_col,
                        fetch_config_from(args))
            return EXIT_OK
        if args.input is not None and args.shards is not None:
            raise ValueError("--input and --shards: give one (score a CSV, or merge stream shards)")
        if args.reference is not None and args.input is None:
            raise ValueError("--reference needs --input: the generated images' features come from scoring them")
        if args.reference is None and (args.fid_features != DEFAULT_FID_FEATURES or args.fid_weights is not None):
            raise ValueError("--fid-features and --fid-weights need --reference: they choose the features FID compares")
        if args.splits < 1:
            raise ValueError(f"--splits must be at least 1, got {args.splits}")
        runtime = runtime_options_from(args)
        names = parse_metric_names(args.metrics, flagged_metrics(*decision_flags_from(args)))
        if args.no_product:
            names = [name for name in names if name not in PRODUCT_METRICS]
        setup = MetricSetup(runtime=runtime, model_name=args.model, model_dir=args.model_dir, weights=args.weights,
                            clip_ceiling=args.clip_ceiling, product=product_options_from(args),
                            keep_pool=args.reference is not None, splits=args.splits, category_col=args.category_col)
        metrics = create_metrics(names, setup, explicit=args.metrics is not None)
        settings = decision_settings(metrics, *decision_flags_from(args))
        check_weights_usable(metrics, settings)
        if args.calibration is not None:  # checked before any scoring, against the metrics that will run
            planned = metrics
            if args.input is not None and args.product_col not in read_header(args.input):
                planned = {name: m for name, m in metrics.items() if name not in PRODUCT_METRICS}
            settings = with_calibration(planned, settings, args.calibration)
        columns = dict(id_col=args.id_col, prompt_col=args.prompt_col, image_col=args.image_col)
        outputs = {"clip": args.clip_result, "inception": args.is_result, "product": args.product_result}
        if args.input is not None:
            run = score_both(args.input, metrics, outputs, **columns, cleaning=cleaning_options_from(args),
                             runtime=runtime, reference=args.reference, distribution_output=args.distribution_output,
                             save_features_dir=args.save_features, fid_features=args.fid_features,
                             fid_weights=args.fid_weights)
        else:
            if args.shards is not None:
                from aigc_eval.stream.merge import merge_shards

                merge_shards(args.shards, args.clip_result, args.is_result, args.product_result,
                             splits=args.splits, category_col=args.category_col)
            run = read_results(result_paths(metrics, outputs, args.no_product), metrics, **columns)
        check_weights_usable(run.metrics, settings)
        calibration = settings.calibration
        recorder = open_recorder(args, "batch", args.input or args.clip_result, ",".join(run.metrics),
                                 calibration.digest if calibration is not None else None)
        try:
            summary = decide_and_write(
                run, settings, args.output, **columns, category_col=args.category_col,
                category_output=args.category_output, report_path=None if args.no_report else args.report,
                image_base_dir=args.input.parent if args.input else None, fetch=runtime.fetch,
                product_col=args.product_col, labels_path=args.labels, recorder=recorder,
                distribution_path=args.distribution_output if args.input is not None and args.reference else None)
        finally:
            if recorder is not None:
                recorder.close()
        log.info("wrote %s\n%s", args.output, format_summary(summary))
        return EXIT_ROW_ERRORS if summary[col.SUM_ERRORS] else EXIT_OK

    return run_cli(body)


def result_paths(metrics: dict[str, Metric], outputs: dict[str, Path], no_product: bool) -> dict[str, Path]:
    """The written result file of each metric to merge: CLIP's and Inception's always (when in the
    set), the product check's (and the CLIP-space similarity in it) and a plugin's
    result_<name>.csv when the file is there."""
    paths: dict[str, Path] = {}
    for name, metric in metrics.items():
        path = outputs.get(name) or (outputs["product"] if name == "product_clip" else Path(metric.result_file
                                                                                        or f"result_{name}.csv"))
        if name in ("clip", "inception") or path.is_file():
            if name == "product_clip" and PRODUCT_CLIP_SIMILARITY not in read_header(path):
                continue
            paths[name] = path
    if "product" in paths and not no_product:
        log.info("merging the product checks in %s (--no-product leaves them out)", paths["product"])
    if not paths:
        raise ValueError("nothing to merge: no result file of the chosen metrics is there (score with --input first)")
    return paths


if __name__ == "__main__":
    raise SystemExit(main())
