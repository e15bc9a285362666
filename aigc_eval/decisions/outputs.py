"""Writing a run's decisions: result_total.csv with regenerate reasons, the per-category table,
report.html; and the A/B comparison's compare.csv."""

from __future__ import annotations

from pathlib import Path

from aigc_eval import columns as col
from aigc_eval import log
from aigc_eval.decisions.compare import COMPARE_COLUMNS, compare_runs, format_comparison
from aigc_eval.decisions.compare_distribution import (
    compare_run_images,
    format_run_distance,
)
from aigc_eval.decisions.merge import merge_product_file, merge_score_files
from aigc_eval.decisions.report import write_html_report
from aigc_eval.decisions.report_distribution import (
    distribution_section,
    read_distribution,
)
from aigc_eval.decisions.report_product import PRODUCT_CSS, product_section
from aigc_eval.decisions.rules import (
    Thresholds,
    add_product_summary,
    category_table,
    imbalance_warning,
    regenerate_reasons,
    run_summary,
)
from aigc_eval.io.csv_io import write_rows
from aigc_eval.io.image_fetch import FetchConfig
from aigc_eval.scoring.metrics import DEFAULT_CLIP_CEILING

CATEGORY_COLUMNS = [col.CAT_CATEGORY, col.CAT_COUNT, col.CAT_SHARE, col.CAT_CLIP_MEAN, col.CAT_CLIP_STD,
                    col.CAT_TOTAL_MEAN, col.CAT_TOTAL_STD, col.CAT_IS, col.CAT_IS_IMAGES, col.CAT_REGENERATE]
PRODUCT_CATEGORY_COLUMNS = [col.CAT_PRODUCT_MEAN, col.CAT_PRODUCT_ISSUES]
# The product term's weight in total_score beside clip_weight 0.6 and is_weight 0.4: a third of the total.
DEFAULT_PRODUCT_WEIGHT = 0.5


def decide_and_write(
    clip_path: Path, is_path: Path, output_path: Path, *, clip_weight: float = 0.6, is_weight: float = 0.4,
    id_col: str = col.ID, prompt_col: str = col.PROMPT, image_col: str = col.IMAGE_URL, category_col: str = col.CATEGORY,
    clip_ceiling: float = DEFAULT_CLIP_CEILING, thresholds: Thresholds | None = None,
    category_output: Path | None = None, report_path: Path | None = None, image_base_dir: Path | None = None,
    fetch: FetchConfig | None = None, product_path: Path | None = None, product_weight: float = DEFAULT_PRODUCT_WEIGHT,
    product_col: str = col.PRODUCT_IMAGE_URL, distribution_path: Path | None = None,
) -> dict[str, object]:
    """Merge the result files, flag images to regenerate, and write result_total.csv, the
    per-category CSV (when there is a category column) and report.html. Returns the run summary.

    With `product_path` (result_product.csv), the product term joins the total with
    `product_weight` and the product issues join the regenerate reasons. With `distribution_path`
    (result_distribution.json), the report gets its table."""
    thresholds = thresholds or Thresholds()
    columns, rows, is_summary = merge_score_files(
        clip_path, is_path, clip_weight=clip_weight, is_weight=is_weight, id_col=id_col, prompt_col=prompt_col,
        image_col=image_col, clip_ceiling=clip_ceiling)
    if product_path is not None:
        columns = merge_product_file(columns, rows, product_path, clip_weight=clip_weight, is_weight=is_weight,
                                     product_weight=product_weight, id_col=id_col)
    for row in rows:
        row[col.REGENERATE] = regenerate_reasons(row, thresholds)
    write_rows(output_path, columns, rows)
    table: list[dict[str, object]] = []
    if category_col in columns:
        table = category_table(rows, category_col, is_summary.get(col.KEY_PER_CATEGORY, {}))
        if category_output:
            write_rows(category_output, CATEGORY_COLUMNS + (PRODUCT_CATEGORY_COLUMNS if product_path else []), table)
    warnings = [is_summary.get(col.KEY_WARNING, ""), imbalance_warning(table)]
    summary = run_summary(rows, is_summary, clip_weight, is_weight, warnings)
    if product_path is not None:
        add_product_summary(summary, rows, product_weight)
    if report_path:
        sections, css = [], ""
        if product_path is not None:
            sections = [("products", "Product issues: the cut-out beside where it was found",
                         product_section(rows, fetch or FetchConfig(), image_base_dir, id_col=id_col, image_col=image_col,
                                         product_col=product_col))]
            css = PRODUCT_CSS
        if distribution_path is not None:
            sections.append(("distribution", "Distance to the reference photos",
                             distribution_section(read_distribution(distribution_path))))
        write_html_report(report_path, summary=summary, rows=rows, categories=table, id_col=id_col,
                          prompt_col=prompt_col, image_col=image_col, image_base_dir=image_base_dir, fetch=fetch,
                          sections=sections, css=css)
    return summary


def run_compare(path_a: Path, path_b: Path, output_path: Path, id_col: str, image_col: str = col.IMAGE_URL,
                fetch: FetchConfig | None = None) -> dict[str, object] | None:
    """--compare: write the A/B comparison and show it on stderr, with the distance between the
    two runs' images (KID, CMMD) when the score cache has their features; returns that distance."""
    results = compare_runs(path_a, path_b, id_col)
    write_rows(output_path, COMPARE_COLUMNS, results)
    distance = compare_run_images(path_a, path_b, id_col, image_col, fetch or FetchConfig())
    log.info("%s\n%s\nwrote %s", format_comparison(results, str(path_a), str(path_b)),
             format_run_distance(distance, str(path_a), str(path_b)), output_path)
    return distance
