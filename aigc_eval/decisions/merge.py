"""A run's per-image metric results, and the rows of result_total.csv decided from them.

`RunResults` holds each input row with its metrics' typed results and the set-level summaries.
A one-pass run (main.py --input) builds it in memory; the article's stage-by-stage workflow
reads it back from result_clip.csv, result_is.csv (with result_is.json beside it) and
result_product.csv (`read_results`), each metric parsing its own columns. Scored CSVs from older
runs or other tools are checked: missing columns, duplicate ids, NaN or non-numeric scores are
reported with the file and the row, never as a traceback. `total_rows` applies metrics.decide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from aigc_eval import columns as col
from aigc_eval.io.csv_io import InputError, read_rows
from aigc_eval.metrics.base import Metric, MetricResult
from aigc_eval.metrics.decide import DecisionSettings, decide
from aigc_eval.scoring.inception import summary_path_for

DEFAULT_NUM_CLASSES = 1000
# Columns of result_total.csv after every metric's: why to regenerate, the status, the error.
TAIL_COLUMNS = [col.REGENERATE, col.STATUS, col.ERROR]


@dataclass
class RunResults:
    """Every input row (`rows`, with the columns it had) and its results by metric name (None:
    the row is missing from that metric's results), the metrics, their summaries, and the name
    each metric goes by in error messages (its result file)."""

    metrics: dict[str, Metric]
    rows: list[dict[str, str]]
    results: list[dict[str, MetricResult | None]]
    extra_columns: list[str] = field(default_factory=list)  # the input's columns after id, prompt and image
    summaries: dict[str, dict[str, object]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def read_is_summary(summary_path: Path) -> dict[str, object]:
    """result_is.json as a dict ({} when absent); InputError when it is not a JSON object."""
    if not summary_path.is_file():
        return {}
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        if not isinstance(summary, dict):
            raise ValueError("expected a JSON object")
        int(summary.get(col.KEY_NUM_CLASSES, DEFAULT_NUM_CLASSES))
        return summary
    except (ValueError, TypeError) as exc:
        raise InputError(f"{summary_path}: not a valid IS summary ({exc})") from None


def _index_by_id(rows: list[dict[str, str]], id_col: str, path: Path) -> dict[str, dict[str, str]]:
    index: dict[str, dict[str, str]] = {}
    for row in rows:
        key = row[id_col]
        if key in index:
            raise InputError(f"{path}: id {key!r} appears more than once; ids must be unique to merge on id")
        index[key] = row
    return index


def _parse(metric: Metric, row: dict[str, str] | None, path: Path, id_col: str) -> MetricResult | None:
    if row is None:
        return None
    try:
        return metric.from_text(row, row.get(col.STATUS, ""), row.get(col.ERROR, ""))
    except ValueError as exc:
        raise InputError(f"{path}: row {row.get(id_col, '?')!r}: {exc}") from None


def read_results(paths: Mapping[str, Path], metrics: Mapping[str, Metric], *, id_col: str = col.ID,
                 prompt_col: str = col.PROMPT, image_col: str = col.IMAGE_URL) -> RunResults:
    """The written results of the metrics in `paths` (metric name -> its result CSV), joined on
    id: position by position when the files list the same ids in the same order (as when made
    from one input), else on unique ids, the first file's rows first. Metrics sharing a file
    (CLIP-space product similarity in result_product.csv) read it once."""
    files: dict[Path, tuple[list[str], list[dict[str, str]]]] = {}
    for name, path in paths.items():
        if path not in files:
            needed = [id_col, col.STATUS, col.ERROR, *metrics[name].required_when_ok]
            files[path] = read_rows(path, needed)
    summaries: dict[str, dict[str, object]] = {}
    if "inception" in paths:
        summaries["inception"] = read_is_summary(summary_path_for(paths["inception"]))
        metrics["inception"].with_summary(summaries["inception"])  # type: ignore[attr-defined]
    ordered = list(dict.fromkeys(paths.values()))
    first_header, first_rows = files[ordered[0]]
    same_order = all([r[id_col] for r in files[p][1]] == [r[id_col] for r in first_rows] for p in ordered)
    if same_order:
        per_file = {p: files[p][1] for p in ordered}
        keys = list(range(len(first_rows)))
    else:
        index = {p: _index_by_id(files[p][1], id_col, p) for p in ordered}
        keys = list(dict.fromkeys(r[id_col] for p in ordered for r in files[p][1]))
        per_file = {p: [index[p].get(k) for k in keys] for p in ordered}  # type: ignore[misc]
    rows, results = [], []
    for i in range(len(keys)):
        found = {p: per_file[p][i] for p in ordered}
        base: dict[str, str] = {}
        for p in reversed(ordered):  # the first file's cells win, as the CLIP file's did
            base.update(found[p] or {})
        rows.append(base)
        results.append({name: _parse(metrics[name], found[path], path, id_col) for name, path in paths.items()})
    lead = {id_col, prompt_col, image_col, col.STATUS, col.ERROR}
    known = lead | {c for m in metrics.values() for c in m.column_names()} | {col.PROMPT_TOKENS, col.TOP1_CLASS}
    extra = [n for p in ordered for n in files[p][0] if n not in known]
    return RunResults({name: m for name, m in metrics.items() if name in paths}, rows, results, list(dict.fromkeys(extra)), summaries,
                      {name: path.name for name, path in paths.items()})


def total_columns(run: RunResults, settings: DecisionSettings, id_col: str, prompt_col: str,
                  image_col: str) -> list[str]:
    """result_total.csv's header: id, prompt, image; each metric's own columns; the terms (of the
    metrics weighted by default or in this run) and the total; the columns metrics place after
    it; regenerate, status, error; the input's other columns."""
    metrics = run.metrics.values()
    after = [c for m in metrics for c in m.after_total]
    terms = [m.term.column for m in metrics if m.term is not None and m.term.column not in after
             and (m.term.default_weight > 0 or settings.weight(m.name) > 0)]
    before = [c for m in metrics for c in m.total_columns]
    head = [id_col, prompt_col, image_col, *before, *terms, col.TOTAL_SCORE, *after, *TAIL_COLUMNS]
    return head + [name for name in run.extra_columns if name not in head]


def total_rows(run: RunResults, settings: DecisionSettings, id_col: str = col.ID) -> list[dict[str, object]]:
    """One result_total row per input row: the row's columns, each metric's values, its terms,
    total_score and the decision (metrics.decide)."""
    out = []
    for row, results in zip(run.rows, run.results):
        decision = decide(run.metrics, results, settings, label=lambda m: run.labels.get(m.name, m.name))
        merged: dict[str, object] = dict(row)
        for name, metric in run.metrics.items():
            result = results.get(name)
            values = result.values if result is not None else {}
            for column in metric.column_names():
                merged[column] = values.get(column, "")
            if metric.term is not None and decision.status != col.STATUS_OK:
                merged[metric.term.column] = "" if metric.term.column not in metric.after_total else \
                    merged.get(metric.term.column, "")
            if not metric.required:
                merged[metric.error_column] = decision.metric_errors.get(name, "")
                if result is None and name in run.labels:
                    merged[metric.error_column] = f"missing from {run.labels[name]}"
        merged.update({col.TOTAL_SCORE: decision.total if decision.status == col.STATUS_OK else "",
                       col.REGENERATE: "; ".join(decision.regenerate), col.STATUS: decision.status,
                       col.ERROR: decision.error})
        out.append(merged)
    return out
