"""Product fidelity and composition of each generated image against the merchant's cut-out.

Reads a CSV with one row per generated image (id, prompt, image URL or path, and the cut-out
in product_image_url, an RGBA PNG whose alpha is the product's mask) and writes
result_product.csv: the input's id, prompt and image, then where the product was found
(product_found, product_scale, offsets, rotation, stretch, match_confidence), how faithful it
is (masked_ssim, delta_e_mean, sharpness_ratio, altered_share, edge_score), how it is
composed on the canvas (coverage_area, coverage_long_side, centre_offset, cut_off_share,
canvas size, aspect ratio), whole-image quality warnings, product_score (0..1) and
product_issues (from a fixed vocabulary, empty when the product is fine), then status and
error. Every definition and threshold is in docs/product_checks.md. No model weights.

A cut-out without transparency is segmented when its background is near-uniform, else the
row is an error that says so; a missing, broken or unreachable cut-out is a row error, and a
row with no cut-out is skipped.

    python evaluate_product.py                                  # output.csv -> result_product.csv
    python evaluate_product.py --input samples/sample.csv --profile amazon
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from aigc_eval import columns as col
from aigc_eval import log
from aigc_eval.io.csv_io import AtomicCsvWriter, read_rows
from aigc_eval.io.image_fetch import FetchConfig
from aigc_eval.scoring.image_pipeline import prepare_rows

from .stage import ProductChecker, ProductOptions, product_output_columns


def evaluate_product(
    input_path: Path, output_path: Path, *, id_col: str = col.ID, prompt_col: str = col.PROMPT,
    image_col: str = col.IMAGE_URL, options: ProductOptions | None = None, fetch: FetchConfig | None = None,
    workers: int = 4, quiet: bool = False,
) -> tuple[int, int]:
    """Check every row of `input_path` and write `output_path`; returns (rows, rows with status error)."""
    options, fetch = options or ProductOptions(), fetch or FetchConfig()
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    header, rows = read_rows(input_path, [id_col, prompt_col, image_col, options.product_col])
    checker = ProductChecker(options, fetch, Path(input_path).parent)
    prepared = prepare_rows(rows, image_col, [], fetch, workers, Path(input_path).parent, extra=checker)
    errors = 0
    with AtomicCsvWriter(output_path, product_output_columns(header, id_col, prompt_col, image_col)) as writer:
        for item in tqdm(prepared, total=len(rows), desc="product", unit="img", disable=quiet):
            errors += item.extra[col.STATUS] == col.STATUS_ERROR
            writer.write({**item.row, **item.extra})
        writer.commit()
    log.info("wrote %s: %d rows, %d errors", output_path, len(rows), errors)
    return len(rows), errors
