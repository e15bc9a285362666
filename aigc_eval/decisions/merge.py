"""Joining result_clip.csv and result_is.csv into one row per image with a weighted total.

Reads the two per-image result files (and result_is.json beside the second); returns
merged rows for main.py to decide on and write. Scored CSVs from older runs or other tools
are checked: missing columns, duplicate ids, NaN or non-numeric scores are reported with
the file and the row, never as a traceback.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from aigc_eval import columns as col
from aigc_eval.io.csv_io import InputError, read_rows
from aigc_eval.product import names as pn
from aigc_eval.scoring.inception import summary_path_for
from aigc_eval.scoring.metrics import (
    DEFAULT_CLIP_CEILING,
    normalise_clip,
    normalise_kl,
    weighted_total,
)

TOTAL_RESULT_COLUMNS = [
    col.CLIP_SCORE, col.TOP1_LABEL, col.TOP1_CONFIDENCE, col.KL,
    col.CLIP_NORM, col.IS_NORM, col.TOTAL_SCORE, col.REGENERATE, col.STATUS, col.ERROR,
]
DEFAULT_NUM_CLASSES = 1000
Pair = tuple[dict[str, str] | None, dict[str, str] | None]


def parse_score(row: dict[str, str], key: str, id_col: str, path: Path) -> float:
    """The finite number in row[key]; InputError naming the file, the row and the value otherwise."""
    text = row.get(key, "")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"{path}: row {row.get(id_col, '?')!r}: {key} is not a finite number ({text!r})")
    return value


def check_weights(clip_weight: float, is_weight: float) -> None:
    """Raise ValueError for negative weights or both zero."""
    weighted_total(0.0, 0.0, clip_weight, is_weight)


def _index_by_id(rows: list[dict[str, str]], id_col: str, path: Path) -> dict[str, dict[str, str]]:
    index: dict[str, dict[str, str]] = {}
    for row in rows:
        key = row[id_col]
        if key in index:
            raise InputError(f"{path}: id {key!r} appears more than once; ids must be unique to merge on id")
        index[key] = row
    return index


def pair_rows(clip_rows: list[dict[str, str]], is_rows: list[dict[str, str]], id_col: str, clip_path: Path,
              is_path: Path) -> list[Pair]:
    """Pair the rows of the two result files: position by position when both list the same
    ids in the same order (as when made from one input), else joined on unique ids."""
    if [r[id_col] for r in clip_rows] == [r[id_col] for r in is_rows]:
        return list(zip(clip_rows, is_rows))
    clip_index, is_index = _index_by_id(clip_rows, id_col, clip_path), _index_by_id(is_rows, id_col, is_path)
    pairs: list[Pair] = [(r, is_index.get(r[id_col])) for r in clip_rows]
    return pairs + [(None, r) for r in is_rows if r[id_col] not in clip_index]


def merge_pair(clip_row: dict[str, str] | None, is_row: dict[str, str] | None, *, clip_weight: float,
               is_weight: float, num_classes: int, clip_ceiling: float, id_col: str, clip_path: Path,
               is_path: Path) -> dict[str, object]:
    """One result_total row from a CLIP row and an IS row of the same image (either may be missing).

    Its status is error when either side is missing or failed, skipped when the CLIP side
    was skipped (nothing visual in the prompt), else ok with the normalised scores and total.
    """
    merged: dict[str, object] = {**(is_row or {}), **(clip_row or {})}
    for field in (col.TOP1_LABEL, col.TOP1_CONFIDENCE, col.KL):
        merged[field] = (is_row or {}).get(field, "")
    merged[col.CLIP_SCORE] = (clip_row or {}).get(col.CLIP_SCORE, "")
    reasons, skipped = [], False
    for row, path in ((clip_row, clip_path), (is_row, is_path)):
        if row is None:
            reasons.append(f"missing from {path.name}")
        elif row.get(col.STATUS) == col.STATUS_SKIPPED:
            skipped = True
            reasons.append(f"{path.name}: {row.get(col.ERROR) or 'skipped'}")
        elif row.get(col.STATUS) != col.STATUS_OK:
            reasons.append(f"{path.name}: {row.get(col.ERROR) or 'not scored'}")
    if reasons:
        only_skipped = skipped and len(reasons) == 1
        merged.update({col.STATUS: col.STATUS_SKIPPED if only_skipped else col.STATUS_ERROR, col.ERROR: "; ".join(reasons)})
        return merged
    clip_norm = normalise_clip(parse_score(clip_row, col.CLIP_SCORE, id_col, clip_path), clip_ceiling)
    is_norm = normalise_kl(parse_score(is_row, col.KL, id_col, is_path), num_classes)
    parse_score(is_row, col.TOP1_CONFIDENCE, id_col, is_path)
    merged.update({
        col.CLIP_NORM: f"{clip_norm:.6f}", col.IS_NORM: f"{is_norm:.6f}",
        col.TOTAL_SCORE: f"{weighted_total(clip_norm, is_norm, clip_weight, is_weight):.6f}",
        col.STATUS: col.STATUS_OK, col.ERROR: "",
    })
    return merged


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


def merge_score_files(
    clip_path: Path, is_path: Path, *, clip_weight: float = 0.6, is_weight: float = 0.4, id_col: str = col.ID,
    prompt_col: str = col.PROMPT, image_col: str = col.IMAGE_URL, clip_ceiling: float = DEFAULT_CLIP_CEILING,
) -> tuple[list[str], list[dict[str, object]], dict[str, object]]:
    """Join the two result files on id. Returns (output columns, merged rows, IS summary)."""
    check_weights(clip_weight, is_weight)
    if not 0 < clip_ceiling <= 1:
        raise ValueError(f"--clip-ceiling must be in (0, 1], got {clip_ceiling}")
    clip_header, clip_rows = read_rows(clip_path, [id_col, col.CLIP_SCORE, col.STATUS, col.ERROR])
    is_header, is_rows = read_rows(is_path, [id_col, col.KL, col.TOP1_LABEL, col.TOP1_CONFIDENCE, col.STATUS, col.ERROR])
    is_summary = read_is_summary(summary_path_for(is_path))
    num_classes = int(is_summary.get(col.KEY_NUM_CLASSES, DEFAULT_NUM_CLASSES))
    merged = [
        merge_pair(c, i, clip_weight=clip_weight, is_weight=is_weight, num_classes=num_classes,
                   clip_ceiling=clip_ceiling, id_col=id_col, clip_path=clip_path, is_path=is_path)
        for c, i in pair_rows(clip_rows, is_rows, id_col, clip_path, is_path)
    ]
    lead = [id_col, prompt_col, image_col]
    known = set(lead + TOTAL_RESULT_COLUMNS + [col.PROMPT_TOKENS, col.PROMPT_TRUNCATED, col.TOP1_CLASS])
    extra = [name for name in dict.fromkeys(clip_header + is_header) if name not in known]
    return lead + TOTAL_RESULT_COLUMNS + extra, merged, is_summary


def merge_product_file(
    columns: list[str], rows: list[dict[str, object]], product_path: Path, *, clip_weight: float, is_weight: float,
    product_weight: float, id_col: str = col.ID,
) -> list[str]:
    """Join result_product.csv onto merged rows by id: each row gets product_score,
    product_issues and the crop box, and an ok row with an ok product check gets the product
    term in its total_score (weighted_total with `product_weight`). A failed product check
    leaves the total as it was and says why in product_error. Returns the output columns."""
    weighted_total(0.0, 0.0, clip_weight, is_weight, 0.0, product_weight)  # checks the weights
    _, product_rows = read_rows(product_path, [id_col, pn.PRODUCT_SCORE, pn.PRODUCT_ISSUES, col.STATUS, col.ERROR])
    index = _index_by_id(product_rows, id_col, product_path)
    for row in rows:
        checked = index.get(str(row.get(id_col, "")))
        if checked is None:
            row[col.PRODUCT_ERROR] = f"missing from {product_path.name}"
            continue
        row.update({name: checked.get(name, "") for name in (pn.PRODUCT_SCORE, pn.PRODUCT_ISSUES, pn.PRODUCT_CROP_BOX)})
        if checked.get(col.STATUS) == col.STATUS_ERROR:
            row[col.PRODUCT_ERROR] = checked.get(col.ERROR) or "not checked"
        elif checked.get(col.STATUS) == col.STATUS_OK and row.get(col.STATUS) == col.STATUS_OK:
            product = parse_score(checked, pn.PRODUCT_SCORE, id_col, product_path)
            row[col.TOTAL_SCORE] = f"{weighted_total(float(row[col.CLIP_NORM]), float(row[col.IS_NORM]), clip_weight, is_weight, product, product_weight):.6f}"  # noqa: E501
    at = columns.index(col.REGENERATE)
    added = [pn.PRODUCT_SCORE, pn.PRODUCT_ISSUES, col.PRODUCT_ERROR, pn.PRODUCT_CROP_BOX]
    return columns[:at] + added + [name for name in columns[at:] if name not in added]
