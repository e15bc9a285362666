"""What generate_request.py has done so far, kept so that a crash or kill -9 loses nothing.

Files, all beside --output:
- output.csv and error.csv: the consolidated state, rewritten atomically (csv_io) when a run
  starts and when it ends, so a reader never sees half a file.
- output.csv.journal: one JSON line per finished input row of the current run, appended and
  fsynced before the row counts as done. A torn last line (the process died mid-write) is cut
  off on the next start. Replaying the journal over the CSVs is idempotent, so dying between
  writing the CSVs and deleting the journal is harmless.
- output.csv.lock and error.csv.lock: flock()ed while a run works, so a second run on the same
  files stops with a message; the kernel drops the lock when the process dies, even by kill -9.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from aigc_eval import columns as col
from aigc_eval.io.csv_io import InputError, read_rows, write_rows

OUTPUT_COLUMNS = [col.ID, col.PROMPT, col.IMAGE_URL, col.CATEGORY, col.PRODUCT_IMAGE_URL, col.SOURCE_ID]
log = logging.getLogger("aigc_eval")

ERROR_COLUMNS = [col.ERROR_TYPE, col.ERROR_MESSAGE, col.ATTEMPTS, col.FAILED_AT]


class LockHeldError(RuntimeError):
    """Another run is writing the same output or error file."""


class RunLock:
    """Exclusive, non-blocking flock on `<file>.lock` for each file, held until release()."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = sorted({Path(p).resolve() for p in paths})
        self._fds: list[int] = []

    def acquire(self) -> "RunLock":
        for path in self.paths:
            lock_path = path.with_name(path.name + ".lock")
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                self.release()
                raise LockHeldError(f"{path} is being written by another run (pid {holder}); "
                                    f"wait for it to finish or pass another --output/--error") from None
            # The file stays after the run: deleting it would let two runs lock different inodes.
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            self._fds.append(fd)
        return self

    def release(self) -> None:
        while self._fds:
            fd = self._fds.pop()
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class Journal:
    """Append-only JSON lines, fsynced per record."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._handle = None

    def read(self) -> list[dict]:
        """The records written so far; a torn last line is cut off the file."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run", self.path, len(data) - end)
            with open(self.path, "r+b") as handle:
                handle.truncate(end)
                os.fsync(handle.fileno())
        records = []
        for number, line in enumerate(data[:end].splitlines(), 1):
            try:
                records.append(json.loads(line))
            except ValueError:
                log.warning("%s: line %d is not JSON; ignored", self.path, number)
        return records

    def append(self, record: dict) -> None:
        if self._handle is None:
            self._handle = open(self.path, "ab")
        self._handle.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self.path.unlink(missing_ok=True)


@dataclass
class RunState:
    """Rows generated (by input id), rows that failed a call (by input id), rows rejected as invalid."""

    done: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    invalid: list[dict[str, str]] = field(default_factory=list)
    output_header: list[str] = field(default_factory=lambda: list(OUTPUT_COLUMNS))
    error_header: list[str] = field(default_factory=list)

    def apply(self, record: dict) -> None:
        """Apply one journal record: {"key", "rows"} for a success, {"key", "error"} for a failure."""
        key = record["key"]
        if "rows" in record:
            self.done[key] = record["rows"]
            self.errors.pop(key, None)
        elif key not in self.done:  # a generated row never moves back to the error file
            self.errors[key] = record["error"]

    def widen_headers(self, input_header: Iterable[str]) -> None:
        """Carry the input's other columns into both files."""
        extra = [name for name in input_header if name not in ERROR_COLUMNS]
        self.output_header = _union(self.output_header, extra)
        self.error_header = _union(extra, self.error_header, ERROR_COLUMNS)


def _union(*headers: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(name for header in headers for name in header))


def journal_path(output_path: Path) -> Path:
    return output_path.with_name(output_path.name + ".journal")


def load_state(output_path: Path, error_path: Path, keep_invalid: bool) -> RunState:
    """The state left by earlier runs: the CSVs, then the journal replayed over them.

    Rows marked InvalidRow are dropped unless `keep_invalid` (with --retry-errors), because a
    normal run validates the input again and records them afresh.
    """
    state = RunState()
    if output_path.exists():
        header, rows = read_rows(output_path, [col.ID])
        if col.SOURCE_ID not in header:
            raise InputError(f"{output_path}: exists but was not written by generate_request.py (no {col.SOURCE_ID} "
                             "column); pass another --output or move the file")
        state.output_header = _union(OUTPUT_COLUMNS, header)
        for row in rows:
            state.done.setdefault(row[col.SOURCE_ID], []).append(row)
    if error_path.exists():
        header, rows = read_rows(error_path, [col.ID])
        if col.ERROR_TYPE not in header:
            raise InputError(f"{error_path}: exists but was not written by generate_request.py (no {col.ERROR_TYPE} "
                             "column); pass another --error or move the file")
        state.error_header = header
        for row in rows:
            if row.get(col.ERROR_TYPE) == col.ERROR_TYPE_INVALID_ROW:
                if keep_invalid:
                    state.invalid.append(row)
            elif row[col.ID] not in state.done:
                state.errors[row[col.ID]] = row
    for record in Journal(journal_path(output_path)).read():
        state.apply(record)
    return state


def save_state(state: RunState, output_path: Path, error_path: Path, order: Sequence[str], journal: Journal) -> None:
    """Write both CSVs atomically (output rows in input order), then drop the journal."""
    position = {key: index for index, key in enumerate(order)}
    done_keys = sorted(state.done, key=lambda key: position.get(key, len(position)))
    write_rows(output_path, state.output_header, (row for key in done_keys for row in state.done[key]))
    error_keys = sorted(state.errors, key=lambda key: position.get(key, len(position)))
    header = state.error_header or _union([col.ID, col.PROMPT, col.PRODUCT_IMAGE_URL, col.CATEGORY], ERROR_COLUMNS)
    write_rows(error_path, header, [*state.invalid, *(state.errors[key] for key in error_keys)])
    # The renames must be on disk before the journal that backs them is gone.
    for folder in {output_path.resolve().parent, error_path.resolve().parent}:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    journal.remove()
