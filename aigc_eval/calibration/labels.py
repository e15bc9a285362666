"""Reading and checking labels.csv (the format: aigc_eval/labelling/format.py) into one verdict per
image.

Rules, as the format defines them: for the same (id, labeler) the last row wins (the earlier
ones are counted as duplicates and reported); a last row of `undone` or `skip` leaves that
labeler without a verdict on the image. Several labelers on one image are kept apart (they feed
the inter-labeler agreement) and decided by majority; a tie gives the image no verdict, and is
counted. Bad cells (an unknown label, a rating outside 1-5, an unknown reason, an empty id) and a
file that is not UTF-8 raise InputError naming the file and the row.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aigc_eval.io.csv_io import InputError
from aigc_eval.labelling import format as lf


def read_csv_strict(path: Path, required: tuple[str, ...] | list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a UTF-8 CSV; InputError naming the file and the row for text that is not
    UTF-8, a missing file or header, or missing required columns."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        row = data[: exc.start].count(b"\n")  # header is line 1, data row N is line N + 1
        raise InputError(f"{path}: row {row}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 CSV") from None
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = [name.strip() for name in next(reader, [])]
        if not any(header):
            raise InputError(f"{path}: the file is empty or has no header row")
        missing = [name for name in required if name not in header]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)}; the header has {', '.join(header)}")
        width = len(header)
        # Short rows get empty cells, as DictReader gives them; cells beyond the header are ignored.
        rows = [dict(zip(header, [v.strip() for v in cells] + [""] * (width - len(cells))))
                for cells in reader if cells]
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    return header, rows


@dataclass(frozen=True)
class LabelRow:
    """One checked row of labels.csv (verdict None: undone or skip)."""

    image_id: str
    verdict: int | None
    rating: float | None
    reason: str
    labeler: str
    source: str
    labelled_at: str


@dataclass
class LabelSet:
    """The labels of one file, decided per image."""

    path: str
    rows_read: int
    verdicts: dict[str, int]  # id -> 1 accept / 0 reject (majority over labelers)
    ratings: dict[str, float]  # id -> mean rating of the labelers who gave one
    by_labeler: dict[str, dict[str, int]]  # id -> labeler -> verdict (the last row's)
    duplicates: int = 0  # rows superseded by a later row of the same (id, labeler)
    duplicate_examples: list[str] = field(default_factory=list)
    withdrawn: int = 0  # (id, labeler) pairs whose last row is undone or skip
    conflicts: int = 0  # images whose labelers disagree (decided by majority)
    ties: list[str] = field(default_factory=list)  # images with as many accepts as rejects: no verdict
    sources: Counter = field(default_factory=Counter)  # verdict rows kept, by source
    reasons: dict[str, list[str]] = field(default_factory=dict)  # id -> reasons given

    def digest(self, ids: list[str] | None = None) -> str:
        """sha256 (first 16 hex) over the sorted "id<TAB>verdict" lines of `ids` (default all)."""
        chosen = sorted(self.verdicts if ids is None else ids)
        text = "\n".join(f"{i}\t{self.verdicts[i]}" for i in chosen)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def parse_label_row(row: dict[str, str], number: int, path: Path) -> LabelRow:
    """One row checked; InputError naming the file and the row (1 = the first data row)."""
    where = f"{path}: row {number}"
    image_id = row.get(lf.LABEL_ID, "")
    if not image_id:
        raise InputError(f"{where}: empty {lf.LABEL_ID}; every label names the scored image's id")
    raw = row.get(lf.LABEL, "").lower()
    if raw not in lf.LABEL_VALUES:
        raise InputError(f"{where}: {lf.LABEL} {row.get(lf.LABEL, '')!r} is not one of {', '.join(lf.LABEL_VALUES)}")
    rating = None
    if text := row.get(lf.RATING, ""):
        try:
            rating = float(text)
        except ValueError:
            rating = None
        if rating is None or rating != int(rating) or not lf.RATING_MIN <= rating <= lf.RATING_MAX:
            raise InputError(f"{where}: {lf.RATING} {text!r} is not a whole number from {lf.RATING_MIN} to {lf.RATING_MAX}")
    reasons = [part.strip() for part in row.get(lf.REASON, "").split(";") if part.strip()]
    unknown = [reason for reason in reasons if reason not in lf.REASONS]
    if unknown:
        raise InputError(f"{where}: {lf.REASON} {unknown[0]!r} is not one of {', '.join(lf.REASONS)}")
    source = row.get(lf.SOURCE, "")
    if source and source not in lf.SOURCES:
        raise InputError(f"{where}: {lf.SOURCE} {source!r} is not one of {', '.join(lf.SOURCES)}")
    return LabelRow(image_id, lf.LABEL_VALUES[raw], rating, ";".join(reasons), row.get(lf.LABELER, ""), source,
                    row.get(lf.LABELLED_AT, ""))


def decide(rows: list[LabelRow], path: str = "") -> LabelSet:
    """Last row per (id, labeler) wins; then a majority verdict per image."""
    last: dict[tuple[str, str], LabelRow] = {}
    duplicates, examples = 0, []
    for row in rows:
        key = (row.image_id, row.labeler)
        if key in last:
            duplicates += 1
            if len(examples) < 5:
                examples.append(f"{row.image_id}/{row.labeler or '(no labeler)'}")
        last[key] = row
    by_labeler: dict[str, dict[str, int]] = {}
    ratings_given: dict[str, list[float]] = {}
    reasons: dict[str, list[str]] = {}
    sources: Counter = Counter()
    withdrawn = 0
    for (image_id, labeler), row in last.items():
        if row.verdict is None:
            withdrawn += 1
            continue
        by_labeler.setdefault(image_id, {})[labeler] = row.verdict
        sources[row.source or "(none)"] += 1
        if row.rating is not None:
            ratings_given.setdefault(image_id, []).append(row.rating)
        if row.reason:
            reasons.setdefault(image_id, []).append(row.reason)
    verdicts: dict[str, int] = {}
    conflicts, ties = 0, []
    for image_id, given in by_labeler.items():
        accepts = sum(given.values())
        rejects = len(given) - accepts
        if accepts and rejects:
            conflicts += 1
        if accepts == rejects:
            ties.append(image_id)
        else:
            verdicts[image_id] = int(accepts > rejects)
    ratings = {i: sum(r) / len(r) for i, r in ratings_given.items()}
    return LabelSet(path, len(rows), verdicts, ratings, by_labeler, duplicates, examples, withdrawn, conflicts,
                    sorted(ties), sources, reasons)


def read_labels(path: Path) -> LabelSet:
    """Read and decide labels.csv; InputError (one line, the file and the row) for bad input."""
    path = Path(path)
    _, raw = read_csv_strict(path, lf.REQUIRED_COLUMNS)
    rows = [parse_label_row(row, number, path) for number, row in enumerate(raw, start=1)]
    return decide(rows, str(path))


def merge_label_rows(*groups: list[LabelRow]) -> list[LabelRow]:
    """Rows of several sources in order (a later group's row wins for the same (id, labeler))."""
    return [row for group in groups for row in group]
