"""labels.csv as an append-only log: every verdict is one row, written and fsynced before the
page is told it is saved; an undo appends an `undone` row; nothing is ever rewritten.

Reads the file back on start (a torn last row, left by a kill mid-write, is cut off and kept in
`labels.csv.torn`, as the listener's log does), so a restarted server knows each labeler's
verdicts and resumes exactly. One server owns the file (an flock on `labels.csv.lock`); several
labelers share that server, so their rows never overwrite each other.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from aigc_eval.io.append_log import CsvAppendLog, OutputLock, OutputLocked
from aigc_eval.io.csv_io import InputError, read_rows
from aigc_eval.labelling.format import (
    LABEL,
    LABEL_COLUMNS,
    LABEL_ID,
    LABEL_VALUES,
    LABELER,
    LABELLED_AT,
    RATING,
    REASON,
    REASONS,
    SOURCE,
    SOURCE_QA,
    SOURCES,
    UNDONE,
)

MAX_LABELER_CHARS = 64


def check_labeler(name: str) -> str:
    """The labeler's name, trimmed; ValueError when empty, too long or holding control characters."""
    name = (name or "").strip()
    if not name or len(name) > MAX_LABELER_CHARS or any(ord(ch) < 32 or ch in ",\"" for ch in name):
        raise ValueError(f"labeler name must be 1-{MAX_LABELER_CHARS} characters, no commas, quotes or "
                         f"control characters; got {name[:80]!r}")
    return name


def utc_now() -> str:
    """The time a verdict is written: UTC, ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def in_effect(row: dict[str, str] | None) -> bool:
    """Whether a labeler's last row on an image still stands (a verdict or a skip, not undone)."""
    return row is not None and row[LABEL] != UNDONE


class LabelStore:
    """The verdicts in labels.csv, held in memory by (id, labeler) and appended to on disk."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._check_header()
        self._lock_file = OutputLock(self.path)
        try:
            self._lock_file.acquire()
        except OutputLocked:
            raise InputError(f"{self.path}: another label.py is writing this file; label in that page "
                             "(several labelers can share it), or choose another --labels file") from None
        self._log, _ = CsvAppendLog.open(self.path, LABEL_COLUMNS, LABEL_ID)
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], dict[str, str]] = {}
        self._rows: dict[str, list[dict[str, str]]] = defaultdict(list)
        for row in read_rows(self.path, LABEL_COLUMNS)[1]:
            self._remember(row)

    def _check_header(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        header = read_rows(self.path, ())[0]
        if header != list(LABEL_COLUMNS):
            raise InputError(f"{self.path}: its header is {','.join(header)}, not the labels format's "
                             f"{','.join(LABEL_COLUMNS)}; pass a new file with --labels")

    def _remember(self, row: dict[str, str]) -> None:
        self._last[(row[LABEL_ID], row[LABELER])] = row
        self._rows[row[LABELER]].append(row)

    def append(self, image_id: str, label: str, labeler: str, reason: str = "", source: str = SOURCE_QA) -> dict[str, str]:
        """Write one row and fsync it; return it. ValueError for a label, reason or source outside the format."""
        if label not in LABEL_VALUES:
            raise ValueError(f"label must be one of {', '.join(LABEL_VALUES)}; got {label!r}")
        if reason and reason not in REASONS:
            raise ValueError(f"reason must be one of {', '.join(REASONS)}; got {reason!r}")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}; got {source!r}")
        row = {LABEL_ID: image_id, LABEL: label, RATING: "", REASON: reason, LABELER: check_labeler(labeler),
               SOURCE: source, LABELLED_AT: utc_now()}
        with self._lock:
            self._log.append([row])  # fsynced before it returns; an OSError leaves the file as it was
            self._remember(row)
        return row

    def append_rows(self, rows: list[dict[str, str]]) -> int:
        """Append ready-made rows (an import) in one fsynced write, leaving out exact repeats of rows
        already in the file, so importing the same export twice adds nothing; returns how many were new."""
        with self._lock:
            known = {tuple(r[c] for c in LABEL_COLUMNS) for rs in self._rows.values() for r in rs}
            new, seen = [], set()
            for row in rows:
                key = tuple(row.get(c, "") for c in LABEL_COLUMNS)
                if key not in known and key not in seen:
                    seen.add(key)
                    new.append({c: row.get(c, "") for c in LABEL_COLUMNS})
            if new:
                self._log.append(new)
                for row in new:
                    self._remember(row)
        return len(new)

    def undo(self, labeler: str) -> dict[str, str] | None:
        """Withdraw the labeler's latest verdict (or skip) still in effect by appending an `undone` row;
        returns the row withdrawn, or None when there is nothing to undo."""
        with self._lock:
            target = next((row for row in reversed(self._rows.get(labeler, []))
                           if row[LABEL] != UNDONE and self._last.get((row[LABEL_ID], labeler)) is row), None)
        if target is None:
            return None
        self.append(target[LABEL_ID], UNDONE, labeler)
        return target

    def last(self, image_id: str, labeler: str) -> dict[str, str] | None:
        """The labeler's last row on the image, or None."""
        return self._last.get((image_id, labeler))

    def current(self) -> list[dict[str, str]]:
        """Every labeler's last row on every image, where it still stands."""
        with self._lock:
            return [row for row in self._last.values() if in_effect(row)]

    def history(self, labeler: str) -> list[dict[str, str]]:
        """The labeler's rows in the order written."""
        with self._lock:
            return list(self._rows.get(labeler, []))

    def taken(self) -> dict[str, set[str]]:
        """image id -> labelers whose verdict or skip on it stands."""
        out: dict[str, set[str]] = defaultdict(set)
        with self._lock:
            for (image_id, labeler), row in self._last.items():
                if in_effect(row):
                    out[image_id].add(labeler)
        return out

    def close(self) -> None:
        self._log.close()
        self._lock_file.release()

