"""The per-metric result files of a one-pass run, as the stage scripts write them: result_clip.csv,
result_is.csv with result_is.json, and result_product.csv (with the CLIP-space product similarity
beside the product columns when CLIP runs too). Values are formatted here, where they are written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from aigc_eval import columns as col
from aigc_eval import log
from aigc_eval.io.csv_io import write_rows, write_text_atomic
from aigc_eval.metrics.base import Metric, MetricResult
from aigc_eval.metrics.product_clip import PRODUCT_CLIP_SIMILARITY
from aigc_eval.product import names as pn
from aigc_eval.product.stage import product_output_columns
from aigc_eval.scoring.clipscore import CLIP_FORMATS, clip_output_columns
from aigc_eval.scoring.core import ScoredRow
from aigc_eval.scoring.inception import IS_FORMATS, is_output_columns, summary_path_for

PRODUCT_METRICS = ("product", "product_clip")  # they need the input's cut-out column
WRITTEN_BY_ROW = ("clip", "product")  # written as the rows come; result_is.csv needs the whole run


def result_columns(name: str, metrics: dict[str, Metric], header: Sequence[str], lead: tuple[str, str, str]) -> list[str]:
    """The header of metric `name`'s result file."""
    if name == "clip":
        return clip_output_columns(list(header), *lead)
    columns = product_output_columns(list(header), *lead)
    if "product_clip" in metrics:
        columns.insert(columns.index(pn.PRODUCT_CROP_BOX) + 1, PRODUCT_CLIP_SIMILARITY)
    return columns


def result_formats(name: str, metrics: dict[str, Metric]) -> dict[str, str]:
    return CLIP_FORMATS if name == "clip" else {PRODUCT_CLIP_SIMILARITY: ".6f"}


def written_fields(name: str, scored: ScoredRow) -> dict[str, object]:
    """What metric `name`'s result file gets for one row (result_product.csv: the product check's
    fields and the CLIP-space similarity)."""
    fields = scored.fields(name)
    if name == "product":
        fields.update(scored.results["product_clip"].values if "product_clip" in scored.results else {})
    return fields


def write_is_results(path: Path, header: Sequence[str], lead: tuple[str, str, str], rows: Sequence[dict[str, str]],
                     results: Sequence[MetricResult | None], summary: dict[str, object], scorer: object) -> None:
    """result_is.csv and result_is.json beside it from the Inception metric's results and summary."""
    written = [{**row, **(r.values if r else {}), col.STATUS: r.status if r else col.STATUS_ERROR,
                col.ERROR: r.error if r else ""} for row, r in zip(rows, results)]
    write_rows(path, is_output_columns(list(header), *lead), written, IS_FORMATS)
    write_text_atomic(summary_path_for(path), json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    mean, std = summary[col.KEY_IS_MEAN], summary[col.KEY_IS_STD]
    log.info("wrote %s: IS %s over %d images; logits: %d from the cache, %d computed", path,
             f"{mean:.4f} ± {std:.4f}" if mean is not None else "n/a", summary[col.KEY_NUM_IMAGES],
             getattr(scorer, "reused", 0), getattr(scorer, "computed", 0))
    if summary[col.KEY_WARNING]:
        log.warning("warning: %s", summary[col.KEY_WARNING])
