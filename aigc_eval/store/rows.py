"""From a result_total.csv row (typed values or CSV text) to a `scores` row: pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timezone

import numpy as np

from aigc_eval.io.csv_io import finite_or_none
from aigc_eval import columns as col
from aigc_eval.product import names as pn
from aigc_eval.store.schema import GENERATOR_VERSION, P_ACCEPT

# Row columns with a column of their own in `scores`; every other one goes to `metrics`.
OWN_COLUMNS = {
    col.ID, col.CATEGORY, GENERATOR_VERSION, col.SCORED_AT, col.STATUS, col.ERROR, col.TOTAL_SCORE, P_ACCEPT,
    col.CLIP_SCORE, pn.PRODUCT_ISSUES, col.REGENERATE, col.IMAGE_URL, col.PROMPT,
}


number = finite_or_none  # one parser of number cells (io/csv_io.py)


# Text columns whose cells may look like numbers ("123", "1e5") and must stay text.
TEXT_COLUMNS = {col.ID, col.CATEGORY, GENERATOR_VERSION, col.PROMPT, col.IMAGE_URL, col.STATUS, col.ERROR,
                col.REGENERATE, pn.PRODUCT_ISSUES, col.SCORED_AT, col.TIMESTAMP, col.NSQ_MESSAGE_ID}


def typed(value: str, column: str = "") -> object:
    """A CSV cell as the scoring stages produce it: "" -> None, numbers -> float, else the text;
    ids and the TEXT_COLUMNS stay text."""
    if value == "":
        return None
    if column in TEXT_COLUMNS or column.endswith("_id"):
        return value
    x = number(value)
    return x if x is not None else value


def json_value(value: object) -> object:
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (int, float, np.floating, np.integer)):
        return number(value)
    return str(value)


def parse_time(value: object, default: datetime) -> datetime:
    """ISO 8601 (naive means UTC) or a datetime; `default` when empty or unreadable."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return default
    else:
        return default
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def issues_text(value: object) -> str:
    """Product issue codes as one ";"-joined string without spaces, "" when none."""
    return ";".join(part.strip() for part in _text(value).split(";") if part.strip())


def embedding_bytes(vector: np.ndarray | None) -> bytes | None:
    """float16 little-endian bytes of a 1-D vector, None for None or an empty vector."""
    if vector is None:
        return None
    array = np.asarray(vector, dtype="<f2").reshape(-1)
    return array.tobytes() if array.size else None


def embedding_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f2").astype(np.float64)


def score_row(row: Mapping[str, object], run_id: str, run_version: str, now: datetime,
              embedding: np.ndarray | None) -> dict[str, object]:
    """The `scores` row of one scored CSV row; ValueError when it has no id."""
    image_id = _text(row.get(col.ID))
    if not image_id:
        raise ValueError(f"a row without {col.ID!r} cannot be stored: {dict(row)!r:.200}")
    scored_at = parse_time(row.get(col.SCORED_AT), now)
    return {
        "run_id": run_id,
        "image_id": image_id,
        "category": _text(row.get(col.CATEGORY)),
        "generator_version": _text(row.get(GENERATOR_VERSION)) or run_version,
        "scored_at": scored_at,
        "scored_day": scored_at.date(),
        "status": _text(row.get(col.STATUS)) or col.STATUS_OK,
        "error": _text(row.get(col.ERROR)) or None,
        "total_score": number(row.get(col.TOTAL_SCORE)),
        "p_accept": number(row.get(P_ACCEPT)),
        "clip_score": number(row.get(col.CLIP_SCORE)),
        "product_issues": issues_text(row.get(pn.PRODUCT_ISSUES)),
        "regenerate": _text(row.get(col.REGENERATE)),
        "image_url": _text(row.get(col.IMAGE_URL)) or None,
        "prompt": _text(row.get(col.PROMPT)) or None,
        "metrics": {k: json_value(v) for k, v in row.items() if k not in OWN_COLUMNS},
        "embedding": embedding_bytes(embedding),
    }


def as_day(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
