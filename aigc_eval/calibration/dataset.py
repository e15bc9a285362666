"""Joining result_total.csv (and optionally result_product.csv) with the decided labels into the
arrays the fit reads: one row per labelled, scored image.

Groups (for cross-validation and the bootstrap): the product cut-out (product_image_url) when a
row has one, else the request id (the `request_id` column, else `source_id`, else the image id
without its trailing "_<index>"): images of one request, or of one product, stay together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aigc_eval import columns as col
from aigc_eval.calibration.labels import LabelSet, read_csv_strict
from aigc_eval.calibration.terms import MEASUREMENT_TERMS, parse_term, term_columns
from aigc_eval.io.csv_io import InputError


def request_of(row: dict[str, str]) -> str:
    """The request an image belongs to (see the module docstring)."""
    for key in (col.REQUEST_ID, col.SOURCE_ID):
        if row.get(key):
            return row[key]
    image_id = row.get(col.ID, "")
    head, sep, tail = image_id.rpartition("_")
    return head if sep and tail.isdigit() else image_id


def group_of(row: dict[str, str]) -> str:
    product = row.get(col.PRODUCT_IMAGE_URL, "")
    return f"product:{product}" if product else f"request:{request_of(row)}"


def index_scores(path: Path, id_col: str = col.ID) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(header, rows by id) of a scores file; InputError naming the row of a duplicated id."""
    header, rows = read_csv_strict(path, [id_col])
    index: dict[str, dict[str, str]] = {}
    for number, row in enumerate(rows, start=1):
        key = row[id_col]
        if key in index:
            raise InputError(f"{path}: row {number}: id {key!r} appears more than once; ids must be unique")
        index[key] = row
    return header, index


@dataclass
class Dataset:
    ids: list[str]
    metric_names: list[str]  # metrics whose term column is present (the calibration's metric set)
    term_names: list[str]  # metric names, then measurement terms
    X: np.ndarray  # (n, k) terms, NaN where missing
    y: np.ndarray  # 1 accept, 0 reject
    ratings: np.ndarray  # NaN where none
    groups: np.ndarray
    categories: np.ndarray
    default_total: np.ndarray  # total_score as the run wrote it (NaN where empty)
    rows: list[dict[str, str]]
    unmatched: list[str] = field(default_factory=list)  # labelled ids not in the scores
    unscored: list[str] = field(default_factory=list)  # labelled ids whose row has no terms (status not ok)


def build_dataset(scores: Path, labels: LabelSet, product: Path | None = None, id_col: str = col.ID) -> Dataset:
    """The labelled, scored rows as arrays; every label is in exactly one of ids, unmatched, unscored."""
    header, index = index_scores(scores, id_col)
    columns = term_columns()
    metric_names = [name for name, column in columns.items()
                    if column in header and any(parse_term(r.get(column)) is not None for r in index.values())]
    measurements: dict[str, dict[str, str]] = {}
    measure_header = header
    if product is not None:
        measure_header, measurements = index_scores(product, id_col)
    extra = [name for name, (column, _) in MEASUREMENT_TERMS.items() if column in measure_header]
    term_names = metric_names + extra
    ids, values, y, ratings, groups, cats, totals, rows = [], [], [], [], [], [], [], []
    unmatched, unscored = [], []
    for image_id in sorted(labels.verdicts):
        row = index.get(image_id)
        if row is None:
            unmatched.append(image_id)
            continue
        terms = [parse_term(row.get(columns[name])) for name in metric_names]
        if row.get(col.STATUS, col.STATUS_OK) != col.STATUS_OK or all(t is None for t in terms):
            unscored.append(image_id)
            continue
        source = measurements.get(image_id, {}) if product is not None else row
        for name in extra:
            column, transform = MEASUREMENT_TERMS[name]
            value = parse_term(source.get(column))
            terms.append(None if value is None else transform(value))
        ids.append(image_id)
        values.append([np.nan if t is None else t for t in terms])
        y.append(labels.verdicts[image_id])
        ratings.append(labels.ratings.get(image_id, np.nan))
        groups.append(group_of(row))
        cats.append(row.get(col.CATEGORY, ""))
        total = parse_term(row.get(col.TOTAL_SCORE))
        totals.append(np.nan if total is None else total)
        rows.append(row)
    X = np.array(values, dtype=float).reshape(len(ids), len(term_names))
    return Dataset(ids, metric_names, term_names, X, np.array(y, dtype=int), np.array(ratings, dtype=float),
                   np.array(groups, dtype=object), np.array(cats, dtype=object), np.array(totals, dtype=float), rows,
                   unmatched, unscored)
