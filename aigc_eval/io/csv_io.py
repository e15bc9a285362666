"""Reading stage inputs and writing stage outputs as CSV.

Reads: any UTF-8 CSV (a BOM is accepted). Writes: UTF-8 with a BOM so Excel shows Chinese,
atomically (a temporary file in the same folder, fsynced, then renamed), with text cells
that start with = + - @ neutralised against formula injection.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

FORMULA_PREFIXES = ("=", "+", "-", "@")
# Prefix that Excel and LibreOffice treat as "this is text"; stripped again on read.
NEUTRALISER = "'"


class InputError(ValueError):
    """A stage input is unusable; the message says which file and what to do."""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def neutralise_cell(value: object) -> str:
    """Return the cell as text, prefixed with ' when a spreadsheet would run it as a formula.

    Numbers (such as a negative CLIPScore) are left as they are.
    """
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_PREFIXES) and not _is_number(text):
        return NEUTRALISER + text
    return text


def restore_cell(text: str) -> str:
    """Undo neutralise_cell, so a value survives a write and a read unchanged."""
    if text.startswith(NEUTRALISER) and text[1:2] in FORMULA_PREFIXES and not _is_number(text[1:]):
        return text[1:]
    return text


def read_rows(path: str | Path, required: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Read a CSV into (header, rows of str), checking that the required columns exist.

    Raises InputError naming the file for a missing, unreadable, empty or header-less file
    or for missing columns.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; pass the stage input with --input")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in (reader.fieldnames or [])]
            if not header or not any(header):
                raise InputError(f"{path}: the file is empty or has no header row")
            reader.fieldnames = header
            missing = [name for name in required if name not in header]
            if missing:
                raise InputError(
                    f"{path}: missing column(s) {', '.join(missing)}; the header has "
                    f"{', '.join(header)} (choose others with --id-col/--prompt-col/--image-col)"
                )
            rows = [
                {key: restore_cell(value or "") for key, value in row.items() if key is not None}
                for row in reader
            ]
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    return header, rows


def finite_or_none(value: object) -> float | None:
    """A finite float from a cell or value; None for None, "", NaN, infinities and non-numbers."""
    if value is None or value == "":
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def read_header(path: str | Path) -> list[str]:
    """The header row of a CSV (empty when the file is empty); InputError as read_rows gives."""
    return read_rows(path, [])[0]


class AtomicCsvWriter:
    """Write rows to a temporary file beside `path`; `commit()` fsyncs and renames it into place.

    Used as a context manager: leaving the block without commit() (an error) removes the
    temporary file, so the next stage never sees a half-written CSV.
    """

    def __init__(self, path: str | Path, fieldnames: Sequence[str], formats: Mapping[str, str] | None = None):
        self.path = Path(path)
        self.formats = dict(formats or {})  # column -> format of its float values (".6f")
        self.fieldnames = list(fieldnames)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._tmp = Path(tmp)
        self._handle = os.fdopen(fd, "w", newline="", encoding="utf-8-sig")
        self._writer = csv.DictWriter(self._handle, fieldnames=self.fieldnames, extrasaction="ignore")
        self._writer.writeheader()
        self._done = False

    def write(self, row: dict[str, object]) -> None:
        formats = self.formats
        self._writer.writerow({key: neutralise_cell(_formatted(row.get(key), formats.get(key))) for key in self.fieldnames})

    def write_all(self, rows: Iterable[dict[str, object]]) -> None:
        for row in rows:
            self.write(row)

    def commit(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._tmp, self.path)
        self._done = True

    def discard(self) -> None:
        if not self._handle.closed:
            self._handle.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicCsvWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._done:
            self.discard()


def _formatted(value: object, fmt: str | None) -> object:
    return format(value, fmt) if fmt and isinstance(value, float) else value


def write_rows(path: str | Path, fieldnames: Sequence[str], rows: Iterable[dict[str, object]],
               formats: Mapping[str, str] | None = None) -> None:
    """Write all rows to `path` atomically; float values of the columns in `formats` as given there."""
    with AtomicCsvWriter(path, fieldnames, formats) as writer:
        writer.write_all(rows)
        writer.commit()


def write_bytes_atomic(path: str | Path, data: bytes, fsync: bool = True) -> None:
    """Write `data` to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a small UTF-8 text file (a JSON summary) atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))
