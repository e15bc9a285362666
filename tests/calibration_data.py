"""Synthetic scores and labels for the calibration tests: terms drawn uniformly, labels from a
known logistic model, written as result_total.csv and labels.csv. Everything is seeded."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from aigc_eval import columns as col
from aigc_eval.calibration.terms import CLIP, INCEPTION, PRODUCT, term_columns
from aigc_eval.labelling import format as lf
from aigc_eval.product import names as pn

TRUE_WEIGHTS = {CLIP: 3.0, INCEPTION: 1.5, PRODUCT: 0.0}
TRUE_INTERCEPT = -2.0
SCORE_COLUMNS = [col.ID, col.PROMPT, col.IMAGE_URL, col.CATEGORY, col.CLIP_NORM, col.IS_NORM, pn.PRODUCT_SCORE,
                 col.TOTAL_SCORE, col.STATUS]


def known_model(n: int, seed: int = 1, images_per_request: int = 2):
    """(terms (n, 3), true z, labels, ids): ids are r<request>_<index>."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n, 3))
    z = TRUE_INTERCEPT + X @ np.array([TRUE_WEIGHTS[k] for k in (CLIP, INCEPTION, PRODUCT)])
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-z))).astype(int)
    ids = [f"r{i // images_per_request}_{i % images_per_request}" for i in range(n)]
    return X, z, y, ids


def default_total(X: np.ndarray) -> np.ndarray:
    return (0.6 * X[:, 0] + 0.4 * X[:, 1] + 0.5 * X[:, 2]) / 1.5


def write_scores(path: Path, ids, X, categories=None, totals=None, product=True) -> Path:
    totals = default_total(X) if totals is None else totals
    columns = term_columns()
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, SCORE_COLUMNS)
        writer.writeheader()
        for i, image_id in enumerate(ids):
            writer.writerow({col.ID: image_id, col.PROMPT: f"prompt {i}", col.IMAGE_URL: f"https://example.com/{image_id}.png",
                             col.CATEGORY: categories[i] if categories is not None else "",
                             columns[CLIP]: f"{X[i, 0]:.6f}", columns[INCEPTION]: f"{X[i, 1]:.6f}",
                             columns[PRODUCT]: f"{X[i, 2]:.6f}" if product and not np.isnan(X[i, 2]) else "",
                             col.TOTAL_SCORE: f"{totals[i]:.6f}", col.STATUS: col.STATUS_OK})
    return path


def write_labels(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, lf.LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def verdict_rows(ids, y, labeler: str = "qa1") -> list[dict[str, str]]:
    return [{lf.LABEL_ID: i, lf.LABEL: lf.ACCEPT if v else lf.REJECT, lf.LABELER: labeler, lf.SOURCE: lf.SOURCE_QA}
            for i, v in zip(ids, y)]
