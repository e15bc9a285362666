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
from aigc_eval.decisions.merge import RunResults, read_results, total_columns, total_rows
from aigc_eval.decisions.report import write_html_report
from aigc_eval.decisions.report_distribution import (
    distribution_section,
    read_distribution,
)
from aigc_eval.decisions.report_product import PRODUCT_CSS, product_section
from aigc_eval.decisions.rules import (
    add_product_summary,
    category_table,
    imbalance_warning,
    run_summary,
)
from aigc_eval.io.csv_io import write_rows
from aigc_eval.io.image_fetch import FetchConfig
from aigc_eval.metrics.base import Metric
from aigc_eval.metrics.decide import DecisionSettings, check_weights_usable, decision_settings
from aigc_eval.metrics.registry import metric_templates

CATEGORY_COLUMNS = [col.CAT_CATEGORY, col.CAT_COUNT, col.CAT_SHARE, col.CAT_CLIP_MEAN, col.CAT_CLIP_STD,
                    col.CAT_TOTAL_MEAN, col.CAT_TOTAL_STD, col.CAT_IS, col.CAT_IS_IMAGES, col.CAT_REGENERATE]
PRODUCT_CATEGORY_COLUMNS = [col.CAT_PRODUCT_MEAN, col.CAT_PRODUCT_ISSUES]


def column_formats(metrics: dict[str, Metric]) -> dict[str, str]:
    """How result_total.csv writes each float column: the metrics' declared formats, the total."""
    formats = {c.name: c.fmt for m in metrics.values() for c in m.columns if c.fmt and c.fmt not in ("s", "d")}
    formats.update({m.term.column: ".6f" for m in metrics.values() if m.term is not None and m.term.column not in formats
                    and not any(c.name == m.term.column for c in m.columns)})
    return {**formats, col.TOTAL_SCORE: ".6f"}


def decide_and_write(
    run: RunResults, settings: DecisionSettings, output_path: Path, *, id_col: str = col.ID,
    prompt_col: str = col.PROMPT, image_col: str = col.IMAGE_URL, category_col: str = col.CATEGORY,
    category_output: Path | None = None, report_path: Path | None = None, image_base_dir: Path | None = None,
    fetch: FetchConfig | None = None, product_col: str = col.PRODUCT_IMAGE_URL, distribution_path: Path | None = None,
) -> dict[str, object]:
    """Decide every row of `run` (metrics.decide with `settings`) and write result_total.csv, the
    per-category CSV (when there is a category column) and report.html. Returns the run summary.

    With the product check in the run, the product issues join the regenerate reasons and the
    report gets its section; with `distribution_path` (result_distribution.json), its table."""
    columns = total_columns(run, settings, id_col, prompt_col, image_col)
    rows = total_rows(run, settings, id_col)
    write_rows(output_path, columns, rows, column_formats(run.metrics))
    with_product = "product" in run.metrics
    is_summary = run.summaries.get("inception", {})
    table: list[dict[str, object]] = []
    if category_col in columns:
        table = category_table(rows, category_col, is_summary.get(col.KEY_PER_CATEGORY, {}))  # type: ignore[arg-type]
        if category_output:
            write_rows(category_output, CATEGORY_COLUMNS + (PRODUCT_CATEGORY_COLUMNS if with_product else []), table)
    warnings = [str(is_summary.get(col.KEY_WARNING, "")), imbalance_warning(table)]
    summary = run_summary(rows, is_summary, settings.weight("clip"), settings.weight("inception"), warnings)
    summary[col.SUM_WEIGHTS] = {name: settings.weight(name) for name, m in run.metrics.items() if m.term is not None}
    if with_product:
        add_product_summary(summary, rows, settings.weight("product"))
    if report_path:
        sections, css = [], ""
        if with_product:
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


def decide_files(paths: dict[str, Path], output_path: Path, *, metrics: dict[str, Metric] | None = None,
                 weights: dict[str, float] | None = None, thresholds: dict[str, str] | None = None,
                 **options: object) -> dict[str, object]:
    """The article's merge: the written results in `paths` (metric name -> its result CSV), decided
    with the default metrics' declarations (or `metrics`) and `weights` / `thresholds` over their
    defaults, written as decide_and_write writes them (`options` are its keyword arguments)."""
    metrics = metrics or metric_templates(list(paths))
    settings = decision_settings(metrics, weights, thresholds)
    columns = {k: options[k] for k in ("id_col", "prompt_col", "image_col") if k in options}
    run = read_results({n: p for n, p in paths.items() if n in metrics}, metrics, **columns)  # type: ignore[arg-type]
    check_weights_usable(run.metrics, settings)
    return decide_and_write(run, settings, output_path, **options)  # type: ignore[arg-type]


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
