"""A run under review: its images as the page shows them (cleaned prompt, raw prompt, category,
cut-out, scores), the order, and which image each labeler gets next.

Work is shared out as the labelers ask for it: an image outside the overlap goes to one labeler
only (the first to be handed it holds it for CLAIM_SECONDS, and once someone's verdict on it is
saved nobody else is handed it); an image inside the overlap goes to every labeler. A labeler's
next image is the first in the order that they have not decided or skipped, so a restarted
server or a reloaded page resumes exactly there.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from aigc_eval import columns as col
from aigc_eval.io.csv_io import InputError, read_rows
from aigc_eval.labelling.format import (
    ACCEPT,
    LABEL,
    LABEL_ID,
    LABELER,
    LABELLED_AT,
    P_ACCEPT,
    REASON,
    REASONS,
    REJECT,
    SKIP,
    UNDONE,
)
from aigc_eval.labelling.order import (
    DEFAULT_SEED,
    INPUT,
    STRATIFIED,
    UNCERTAINTY,
    in_overlap,
    parse_number,
    stratified_order,
    uncertainty_order,
)
from aigc_eval.labelling.store import LabelStore, in_effect
from aigc_eval.product.names import PRODUCT_SCORE
from aigc_eval.scoring.prompt_cleaning import clean_prompt, label_subject, load_rules, load_subjects

# The columns the score toggle shows, where the run has them.
SCORE_COLUMNS: tuple[str, ...] = (col.TOTAL_SCORE, col.CLIP_SCORE, col.CLIP_NORM, col.IS_NORM, PRODUCT_SCORE,
                                  col.TOP1_LABEL, col.TOP1_CONFIDENCE, P_ACCEPT, col.REGENERATE)
CLAIM_SECONDS = 900.0
RATE_WINDOW_S = 300.0


@dataclass(frozen=True)
class Item:
    """One image as the page shows it."""

    index: int
    id: str
    image: str
    cutout: str
    prompt: str
    raw_prompt: str
    category: str
    scores: dict[str, str] = field(default_factory=dict)


def load_items(path: Path, category_col: str = col.CATEGORY) -> list[Item]:
    """The scored run's rows as Items, prompts cleaned as the scoring stages clean them.

    Raises InputError for a missing id or image column, an empty file or a repeated id."""
    if not Path(path).is_file():
        raise InputError(f"{path}: no such file; pass the scored run (main.py's {col.DEFAULT_TOTAL_OUTPUT}) with --scores")
    _, rows = read_rows(path, (col.ID, col.IMAGE_URL))
    if not rows:
        raise InputError(f"{path}: no rows to label")
    rules, subjects = load_rules(), load_subjects()
    items, seen = [], {}
    for number, row in enumerate(rows, start=2):
        image_id = row[col.ID].strip()
        if not image_id:
            raise InputError(f"{path}: line {number} has an empty {col.ID}")
        if image_id in seen:
            raise InputError(f"{path}: id {image_id!r} is on lines {seen[image_id]} and {number}; ids must be unique")
        seen[image_id] = number
        raw = row.get(col.RAW_PROMPT) or row.get(col.PROMPT, "")
        category = row.get(category_col, "")
        # A result_total.csv already holds the cleaned prompt beside raw_prompt; other files get cleaned here.
        prompt = row.get(col.PROMPT, "") if row.get(col.RAW_PROMPT) else label_subject(clean_prompt(raw, rules), category, subjects)
        scores = {name: row[name] for name in SCORE_COLUMNS if row.get(name, "") != ""}
        items.append(Item(len(items), image_id, row[col.IMAGE_URL].strip(), row.get(col.PRODUCT_IMAGE_URL, "").strip(),
                          prompt, raw, category, scores))
    return items


def p_accept_from_calibration(scores: Path, calibration: Path, category_col: str = col.CATEGORY) -> list[float | None]:
    """Each row's p_accept by calibrate.py's own scorer (calibration/model.py) from the row's term
    columns (calibration/terms.py), for a scores CSV that does not carry a p_accept column yet.
    Raises ValueError (one line) when the calibration does not fit the run."""
    from aigc_eval.calibration.model import K_METRICS, load_calibration
    from aigc_eval.calibration.terms import measurement_terms, parse_term, term_columns

    try:
        metric_set = json.loads(Path(calibration).read_text(encoding="utf-8")).get(K_METRICS) or []
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(f"{calibration}: cannot read the calibration ({exc}); pass calibrate.py's calibration.json") from None
    model = load_calibration(calibration, metric_set)
    columns = term_columns()
    out: list[float | None] = []
    for row in read_rows(scores, (col.ID,))[1]:
        terms = {name: parse_term(row.get(columns[name])) for name in model.terms if name in columns}
        terms.update({k: v for k, v in measurement_terms(row).items() if k in model.terms})
        out.append(model.p_accept(terms, row.get(category_col) or None))
    return out


def order_items(items: Sequence[Item], order: str, threshold: float, seed: int = DEFAULT_SEED,
                p_accept: Sequence[float | None] | None = None) -> list[int]:
    """Item indices in the order the page shows them (see order.py). Uncertainty order uses the
    scores' p_accept column, else `p_accept` (p_accept_from_calibration)."""
    if order == INPUT:
        return list(range(len(items)))
    if order == UNCERTAINTY:
        p = [parse_number(item.scores.get(P_ACCEPT)) for item in items]
        if all(value is None for value in p) and p_accept is not None:
            p = list(p_accept)
        if all(value is None for value in p):
            raise InputError(f"uncertainty order needs a {P_ACCEPT} column in the scores CSV, or --calibration "
                             "calibration.json to compute it; use --order stratified or input without either")
        return uncertainty_order(p, threshold)
    if order == STRATIFIED:
        return stratified_order([item.category for item in items],
                                [parse_number(item.scores.get(col.TOTAL_SCORE)) for item in items], seed=seed)
    raise ValueError(f"unknown order {order!r}")


class Review:
    """The run, its order and the labels store: who gets which image next, progress, and counts."""

    def __init__(self, items: list[Item], order: list[int], store: LabelStore, overlap: float = 0.0,
                 seed: int = DEFAULT_SEED):
        self.items, self.order, self.store = items, order, store
        self.by_id = {item.id: item for item in items}
        self.shared = {item.id for item in items if in_overlap(item.id, overlap, seed)}
        self._claims: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def next_items(self, labeler: str, count: int, holding: Sequence[str] = ()) -> list[Item]:
        """Up to `count` images for the labeler after those the page already holds, claimed for them."""
        now, taken, holding = time.monotonic(), self.store.taken(), set(holding)
        picked: list[Item] = []
        with self._lock:
            for index in self.order:
                item = self.items[index]
                if item.id in holding:
                    self._claims[item.id] = (labeler, now + CLAIM_SECONDS)
                    continue
                if len(picked) >= count or labeler in taken.get(item.id, ()):
                    continue
                if item.id not in self.shared:
                    holder, until = self._claims.get(item.id, (labeler, 0.0))
                    if taken.get(item.id) or (holder != labeler and until > now):
                        continue
                    self._claims[item.id] = (labeler, now + CLAIM_SECONDS)
                picked.append(item)
        return picked

    def verdict(self, image_id: str, labeler: str) -> dict[str, str] | None:
        row = self.store.last(image_id, labeler)
        return row if in_effect(row) else None

    def recent(self, labeler: str, count: int) -> list[Item]:
        """The labeler's latest decided images, oldest first (what the left arrow goes back to)."""
        out: list[Item] = []
        for row in reversed(self.store.history(labeler)):
            item = self.by_id.get(row[LABEL_ID])
            if item is not None and item not in out and self.verdict(item.id, labeler):
                out.append(item)
                if len(out) >= count:
                    break
        return out[::-1]

    def progress(self, labeler: str) -> dict[str, float | int]:
        """Counts for the bar: the labeler's verdicts, the run's images decided, the share, the rate per minute."""
        taken = self.store.taken()
        mine = sum(1 for labelers in taken.values() if labeler in labelers)
        done = sum(1 for image_id in taken if image_id in self.by_id)
        now, recent = time.time(), []
        for row in reversed(self.store.history(labeler)):  # newest first: stop at the window's start
            stamp = _epoch(row[LABELLED_AT])
            if stamp is None or now - stamp > RATE_WINDOW_S:
                break
            if row[LABEL] != UNDONE:
                recent.append(stamp)
        rate = len(recent) * 60.0 / max(now - min(recent), 30.0) if recent else 0.0
        return {"mine": mine, "done": done, "total": len(self.items),
                "share": done / len(self.items), "rate_per_min": round(rate, 1)}

    def summary(self, labeler: str) -> dict[str, object]:
        """Counts per label and per reason, for everyone and for this labeler (the finish page)."""
        def counts(rows: list[dict[str, str]]) -> dict[str, dict[str, int]]:
            labels = {name: sum(1 for r in rows if r[LABEL] == name) for name in (ACCEPT, REJECT, SKIP)}
            reasons = {name: n for name in REASONS if (n := sum(1 for r in rows if r[REASON] == name))}
            return {"labels": labels, "reasons": reasons}

        rows = self.store.current()
        return {"all": counts(rows), "mine": counts([r for r in rows if r[LABELER] == labeler]),
                "labelers": sorted({r[LABELER] for r in rows})}


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None
