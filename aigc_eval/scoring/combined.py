"""Scoring a CSV with both models in one pass through the scoring core: each image fetched and
decoded once, CLIPScore and Inception computed side by side in the model lanes, and the product
check on the same decoded images when the input has cut-outs."""

from __future__ import annotations

import contextlib
from pathlib import Path

from tqdm import tqdm

from aigc_eval import columns as col
from aigc_eval import log
from aigc_eval.io.csv_io import AtomicCsvWriter, read_rows
from aigc_eval.product.stage import ProductOptions, product_output_columns
from aigc_eval.scoring.clipscore import clip_output_columns
from aigc_eval.scoring.core import ScoringCore
from aigc_eval.scoring.fid_features import DEFAULT_FID_FEATURES, open_fid_extractor
from aigc_eval.scoring.inception import write_is_outputs
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
    input_path: Path, clip_output: Path, is_output: Path, *, id_col: str, prompt_col: str, image_col: str,
    model_name: str, model_dir: Path | None, weights: Path | None, splits: int, cleaning: CleaningOptions,
    runtime: RuntimeOptions, product: ProductOptions | None = None, product_output: Path | None = None,
    reference: Path | None = None, distribution_output: Path | None = None, save_features_dir: Path | None = None,
    fid_features: str = DEFAULT_FID_FEATURES, fid_weights: Path | None = None,
) -> bool:
    """Score `input_path` with both models in one pass (each image fetched and decoded once,
    both models' work shared out to ModelLanes, a batch queued before the one before it is
    collected) and write result_clip.csv, result_is.csv and result_is.json.

    With `product` options and a `product_output` path, an input that has the cut-out column
    also gets the product check, run on the same decoded images in the worker threads while
    the models compute, written to `product_output`. Returns whether it was.

    With a `reference` (a CSV or a folder of real product photos), the generated images are also
    compared with it (scoring/reference.py), written to `distribution_output`, and with
    `save_features_dir` their features are saved there; `fid_features` names what FID and KID are
    computed on (scoring/fid_features.py; torch-fidelity's weights from `fid_weights`)."""
    if splits < 1:
        raise ValueError(f"--splits must be at least 1, got {splits}")
    header, rows = read_rows(input_path, [id_col, prompt_col, image_col])
    rows = clean_rows(rows, prompt_col, cleaning, col.RAW_PROMPT)
    lead = (id_col, prompt_col, image_col)
    with_product = product is not None and product_output is not None and product.product_col in header
    features = FeatureSet(id_col=id_col, category_col=cleaning.category_col) if reference is not None else None
    if reference is not None:  # a bad reference is a one-line error before any model work
        reference_rows, reference_base = read_reference(reference, id_col, image_col, cleaning.category_col)
        fid_extractor = open_fid_extractor(fid_features, fid_weights, resolve_device(runtime.device),
                                           open_cache(runtime.fetch.cache_dir))
    with ScoringCore.open(model_name=model_name, model_dir=model_dir, weights=weights, runtime=runtime,
                          product=product if with_product else None, keep_pool=reference is not None) as core, \
            AtomicCsvWriter(clip_output, clip_output_columns(header, *lead)) as writer, \
            (AtomicCsvWriter(product_output, product_output_columns(header, *lead)) if with_product
             else contextlib.nullcontext()) as product_writer:
        base_dir = Path(input_path).parent
        prepared = core.prepare(rows, image_col, base_dir, core.checker(base_dir))
        with tqdm(total=len(rows), desc="CLIPScore+IS" + ("+product" if with_product else ""), unit="img",
                  disable=runtime.quiet) as progress:
            for batch, scored in core.score(prepared, prompt_col):
                core.inception.record(batch, [item.logits for item in scored if item.logits is not None])
                if features is not None:
                    features.add(scored)
                for item in scored:
                    writer.write({**item.row, **item.clip})
                    if product_writer is not None:
                        product_writer.write({**item.row, **item.product})
                progress.update(len(batch))
        writer.commit()
        if product_writer is not None:
            product_writer.commit()
        log.info("wrote %s: image embeddings: %d from the cache, %d computed", clip_output, core.clip.reused,
                 core.clip.computed)
        if features is not None:
            reference_set = reference_features(core, reference_rows, image_col, reference_base, id_col,
                                               cleaning.category_col)
            attach_fid_features(fid_extractor, core, image_col, [(features, base_dir), (reference_set, reference_base)])
            result = compare_sets(features, reference_set, fid_features)
            write_distribution(distribution_output or Path(col.DEFAULT_DISTRIBUTION_OUTPUT), result)
            log.info("%s", format_distribution(result))
            if save_features_dir is not None:
                save_features(save_features_dir, features, reference_set)
    write_is_outputs(core.inception, header, is_output, splits, lead, None, cleaning.category_col)
    return with_product
