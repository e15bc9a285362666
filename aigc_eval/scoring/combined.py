"""Scoring a CSV with every metric in one pass through the scoring core: each image fetched and
decoded once, CLIPScore and Inception computed side by side in the model lanes, and the product
check on the same decoded images when the input has cut-outs; the typed results go straight to
the decisions."""

from __future__ import annotations

import contextlib
from pathlib import Path

from tqdm import tqdm

from aigc_eval import columns as col
from aigc_eval import log
from aigc_eval.decisions.merge import RunResults
from aigc_eval.io.csv_io import AtomicCsvWriter, read_rows
from aigc_eval.metrics.base import Metric, MetricResult
from aigc_eval.metrics.registry import create_metrics
from aigc_eval.metrics.setup import MetricSetup
from aigc_eval.product.stage import ProductOptions
from aigc_eval.scoring.core import ScoringCore
from aigc_eval.scoring.fid_features import DEFAULT_FID_FEATURES, open_fid_extractor
from aigc_eval.scoring.result_files import (
    PRODUCT_METRICS,
    WRITTEN_BY_ROW,
    result_columns,
    result_formats,
    write_is_results,
    written_fields,
)
from aigc_eval.scoring.model_loading import resolve_device
from aigc_eval.scoring.prompt_cleaning import CleaningOptions, clean_rows
from aigc_eval.scoring.reference import (
    FeatureSet,
    attach_fid_features,
    compare_sets,
    format_distribution,
    read_reference,
    reference_features,
    save_features,
    write_distribution,
)
from aigc_eval.scoring.runtime import RuntimeOptions
from aigc_eval.scoring.score_cache import open_cache


def score_both(
    input_path: Path, metrics: dict[str, Metric], outputs: dict[str, Path], *, id_col: str, prompt_col: str,
    image_col: str, cleaning: CleaningOptions, runtime: RuntimeOptions, reference: Path | None = None,
    distribution_output: Path | None = None, save_features_dir: Path | None = None,
    fid_features: str = DEFAULT_FID_FEATURES, fid_weights: Path | None = None,
) -> RunResults:
    """Score `input_path` with every metric in one pass (each image fetched and decoded once, the
    models' work shared out to ModelLanes, a batch queued before the one before it is collected),
    write each metric's result file named in `outputs` (result_clip.csv; result_is.csv and
    result_is.json; result_product.csv, with the CLIP-space product similarity beside the
    product columns), and return the typed results for the decisions (no CSV read back).

    Product metrics run only when the input has the cut-out column (they are dropped otherwise).
    With a `reference` (a CSV or a folder of real product photos), the generated images are also
    compared with it (scoring/reference.py), written to `distribution_output`, and with
    `save_features_dir` their features are saved there; `fid_features` names what FID and KID are
    computed on (scoring/fid_features.py; torch-fidelity's weights from `fid_weights`)."""
    header, rows = read_rows(input_path, [id_col, prompt_col, image_col])
    rows = clean_rows(rows, prompt_col, cleaning, col.RAW_PROMPT)
    lead = (id_col, prompt_col, image_col)
    product_col = metrics["product"].setup.product.product_col if "product" in metrics else col.PRODUCT_IMAGE_URL  # type: ignore[attr-defined]
    if product_col not in header:
        metrics = {name: m for name, m in metrics.items() if name not in PRODUCT_METRICS}
    if not metrics:
        raise ValueError(f"{input_path}: no metric to run (the product metrics need the {product_col} column)")
    features = FeatureSet(id_col=id_col, category_col=cleaning.category_col) if reference is not None else None
    if reference is not None:  # a bad reference is a one-line error before any model work
        reference_rows, reference_base = read_reference(reference, id_col, image_col, cleaning.category_col)
        fid_extractor = open_fid_extractor(fid_features, fid_weights, resolve_device(runtime.device),
                                           open_cache(runtime.fetch.cache_dir))
    results: list[dict[str, MetricResult | None]] = []
    names = "+".join({"clip": "CLIPScore", "inception": "IS"}.get(n, n) for n in metrics if n != "product_clip")
    with ScoringCore.open(metrics, runtime) as core, contextlib.ExitStack() as stack:
        writers = {name: stack.enter_context(AtomicCsvWriter(path, result_columns(name, metrics, header, lead),
                                                             result_formats(name, metrics)))
                   for name, path in outputs.items() if name in metrics and name in WRITTEN_BY_ROW}
        base_dir = Path(input_path).parent
        with tqdm(total=len(rows), desc=names, unit="img", disable=runtime.quiet) as progress:
            for batch, scored in core.score(core.prepare(rows, image_col, base_dir), prompt_col):
                if features is not None:
                    features.add(scored)
                for item in scored:
                    results.append(dict(item.results))
                    for name, writer in writers.items():
                        writer.write({**item.row, **written_fields(name, item)})
                progress.update(len(batch))
        for writer in writers.values():
            writer.commit()
        if core.clip is not None:
            log.info("image embeddings: %d from the cache, %d computed", core.clip.reused, core.clip.computed)
        if features is not None:
            reference_set = reference_features(core, reference_rows, image_col, reference_base, id_col,
                                               cleaning.category_col)
            attach_fid_features(fid_extractor, core, image_col, [(features, base_dir), (reference_set, reference_base)])
            result = compare_sets(features, reference_set, fid_features)
            write_distribution(distribution_output or Path(col.DEFAULT_DISTRIBUTION_OUTPUT), result)
            log.info("%s", format_distribution(result))
            if save_features_dir is not None:
                save_features(save_features_dir, features, reference_set)
    summaries = {}
    for name, metric in metrics.items():
        summary = metric.summarise(rows, [r.get(name) or MetricResult() for r in results])
        if summary:
            summaries[name] = summary
    if "inception" in metrics:
        write_is_results(outputs["inception"], header, lead, rows, [r["inception"] for r in results],  # type: ignore[misc]
                         summaries["inception"], core.inception)
    extra = [name for name in header if name not in lead]
    labels = {name: Path(outputs.get(name, metric.result_file or name)).name for name, metric in metrics.items()}
    return RunResults(metrics, rows, results, [col.RAW_PROMPT, *extra], summaries, labels)


def score_csv(
    input_path: Path, clip_output: Path, is_output: Path, *, id_col: str, prompt_col: str, image_col: str,
    model_name: str, model_dir: Path | None, weights: Path | None, splits: int, cleaning: CleaningOptions,
    runtime: RuntimeOptions, product: ProductOptions | None = None, product_output: Path | None = None,
    reference: Path | None = None, distribution_output: Path | None = None, save_features_dir: Path | None = None,
    fid_features: str = DEFAULT_FID_FEATURES, fid_weights: Path | None = None, product_clip: bool = False,
) -> RunResults:
    """score_both with CLIP and Inception, and with `product` options and a `product_output` the
    product check (and with `product_clip` the CLIP-space product similarity, opt-in as in
    main.py --input), built from these options."""
    setup = MetricSetup(runtime=runtime, model_name=model_name, model_dir=model_dir, weights=weights,
                        keep_pool=reference is not None, splits=splits, category_col=cleaning.category_col,
                        **({"product": product} if product is not None else {}))
    with_product = product is not None and product_output is not None
    chosen = ("product", "product_clip") if product_clip else ("product",)
    metrics = create_metrics(["clip", "inception", *(chosen if with_product else ())], setup)
    outputs = {"clip": clip_output, "inception": is_output, **({"product": product_output} if with_product else {})}
    return score_both(input_path, metrics, outputs, id_col=id_col, prompt_col=prompt_col, image_col=image_col,  # type: ignore[arg-type]
                      cleaning=cleaning, runtime=runtime, reference=reference, distribution_output=distribution_output,
                      save_features_dir=save_features_dir, fid_features=fid_features, fid_weights=fid_weights)
