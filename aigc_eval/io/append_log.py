"""Crash-safe append-only files for the NSQ listener: the output CSV, the dead-letter file, the lock.

The output CSV is an append log, so the stages' write-then-rename does not apply. Instead:
- the file is created with its BOM and header atomically (csv_io.AtomicCsvWriter);
- rows are appended with one os.write per batch and fsynced before the listener FINishes
  the messages, so a FINished message is always on disk;
- on opening, every record is checked; a torn tail left by a crash mid-write (a record
  cut short, without its final newline or with too few fields) is cut off and kept in
  `<file>.torn` for inspection. Its messages were never FINished, so NSQ delivers them again;
- a failed append (disk full, EFBIG) is cut back to the last complete record at once.

Reads and writes: the CSV named by --output, `<output>.lock`, and the dead-letter JSON lines.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from aigc_eval.io.csv_io import (
    AtomicCsvWriter,
    InputError,
    neutralise_cell,
    restore_cell,
)

log = logging.getLogger("aigc_eval")


class OutputLocked(RuntimeError):
    """Another listener holds the lock on this output file."""


class OutputBroken(OSError):
    """An append failed and the file could not be cut back to its last complete record."""


class OutputLock:
    """An exclusive flock on `<path>.lock`, held while the listener runs.

    The kernel drops the lock when the process dies (kill -9 included), so a stale lock
    file never blocks a restart; the file itself stays and holds the last holder's pid.
    """

    def __init__(self, path: str | Path):
        self.path = Path(f"{path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise OutputLocked(f"{self.path}: another listener (pid {holder}) is writing this output") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def _write_all(fd: int, data: bytes) -> None:
    """os.write until everything is written (a regular file may take a short write)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _append_or_cut_back(fd: int, path: Path, size: int, data: bytes, fsync: bool = True) -> int:
    """Append `data` at `size` (with an fsync) and return the new size. On an OSError the file is
    cut back to `size` and the error re-raised; OutputBroken when the cut itself fails: the file
    may then end in a torn record, which the next start repairs, so the caller must stop appending."""
    try:
        _write_all(fd, data)
        if fsync:
            os.fsync(fd)
    except OSError:
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as cut:
            raise OutputBroken(cut.errno, f"could not cut back after a failed write ({cut.strerror})", str(path)) from cut
        raise
    return size + len(data)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _keep_torn(path: Path, tail: bytes) -> Path:
    """Append a torn tail to `<path>.torn`, so cutting it off never destroys bytes."""
    torn = Path(f"{path}.torn")
    with open(torn, "ab") as handle:
        handle.write(tail)
        handle.flush()
        os.fsync(handle.fileno())
    return torn


def _lines(data: bytes) -> Iterator[bytes]:
    """The file's lines split on b'\\n' only, each with its newline (the last one may lack it)."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end + 1
        yield data[start:end]
        start = end


def scan_csv_log(data: bytes, fieldnames: Sequence[str], key_column: str, path: Path) -> tuple[int, list[str]]:
    """(length of the valid prefix in bytes, key of every complete record) for an append log.

    A record is complete when it has every column, a non-empty key and ends with a newline.
    Raises InputError when the header is not `fieldnames`.
    """
    consumed = {"bytes": 0, "last": b""}

    def feed() -> Iterator[str]:
        for index, line in enumerate(_lines(data)):
            consumed["bytes"] += len(line)
            consumed["last"] = line
            yield line.decode("utf-8-sig" if index == 0 else "utf-8")

    reader = csv.reader(feed())
    try:
        header = next(reader)
    except (StopIteration, UnicodeDecodeError, csv.Error):
        header = []
    if [name.strip() for name in header] != list(fieldnames) or not consumed["last"].endswith(b"\n"):
        raise InputError(
            f"{path}: its header is {','.join(header) or '(none)'}, not the listener's "
            f"{','.join(fieldnames)}; write to a new file with --output"
        )
    key_index = list(fieldnames).index(key_column)
    good_end, keys = consumed["bytes"], []
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except (UnicodeDecodeError, csv.Error):
            break
        if not consumed["last"].endswith(b"\n"):
            break
        if record == []:  # a blank line: nothing to keep, nothing torn
            good_end = consumed["bytes"]
            continue
        if len(record) != len(fieldnames) or not restore_cell(record[key_index]):
            break
        keys.append(restore_cell(record[key_index]))
        good_end = consumed["bytes"]
    return good_end, keys


class CsvAppendLog:
    """An append-only UTF-8 CSV (BOM, header once) whose appends are all-or-nothing on disk."""

    def __init__(self, path: Path, fieldnames: Sequence[str], fd: int, size: int):
        self.path, self.fieldnames, self._fd, self.size = path, list(fieldnames), fd, size

    @classmethod
    def open(cls, path: str | Path, fieldnames: Sequence[str], key_column: str) -> tuple["CsvAppendLog", list[str]]:
        """Open (creating with a header, or repairing a torn tail) and return (log, keys already in it)."""
        path = Path(path)
        if not path.exists() or path.stat().st_size == 0:
            with AtomicCsvWriter(path, fieldnames) as writer:
                writer.commit()
            _fsync_dir(path)
        data = path.read_bytes()
        good_end, keys = scan_csv_log(data, fieldnames, key_column, path)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        if good_end < len(data):
            torn = _keep_torn(path, data[good_end:])
            os.ftruncate(fd, good_end)
            os.fsync(fd)
            log.warning("%s: cut off a torn tail of %d bytes left by an interrupted write (kept in %s)",
                        path, len(data) - good_end, torn)
        return cls(path, fieldnames, fd, good_end), keys

    @staticmethod
    def encode_rows(rows: Iterable[dict[str, object]], fieldnames: Sequence[str]) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer)  # the csv module's default \r\n, as csv_io writes
        for row in rows:
            writer.writerow([neutralise_cell(row.get(name)) for name in fieldnames])
        return buffer.getvalue().encode("utf-8")

    def append(self, rows: Sequence[dict[str, object]]) -> None:
        """Append rows and fsync; on failure cut the file back and re-raise the OSError.

        Raises OutputBroken when the cut itself fails: the file may then end in a torn
        record, which the next start repairs, so the caller must stop appending.
        """
        self.size = _append_or_cut_back(self._fd, self.path, self.size, self.encode_rows(rows, self.fieldnames))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _json_line(record: dict[str, object]) -> bytes:
    try:
        return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
    except UnicodeEncodeError:  # a lone surrogate somewhere: \u escapes are still valid JSON
        return json.dumps(record).encode("ascii") + b"\n"


class DeadLetterLog:
    """JSON lines, one per message that could not become rows; fsynced before the message is FINished."""

    def __init__(self, path: Path, fd: int, size: int):
        self.path, self._fd, self.size = path, fd, size

    @classmethod
    def open(cls, path: str | Path, id_key: str) -> tuple["DeadLetterLog", list[str]]:
        """Open for appending (repairing a torn last line) and return (log, message ids already in it)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = path.read_bytes()
        good_end = data.rfind(b"\n") + 1
        if good_end < len(data):
            torn = _keep_torn(path, data[good_end:])
            os.ftruncate(fd, good_end)
            os.fsync(fd)
            log.warning("%s: cut off a torn last line of %d bytes (kept in %s)", path, len(data) - good_end, torn)
        ids = []
        for number, line in enumerate(data[:good_end].splitlines(), start=1):
            try:
                ids.append(str(json.loads(line)[id_key]))
            except (ValueError, KeyError, TypeError):
                if line.strip():
                    log.warning("%s: line %d is not a dead-letter record; ignored", path, number)
        return cls(path, fd, good_end), ids

    def append(self, record: dict[str, object]) -> None:
        """Append one record and fsync; on failure cut the file back and re-raise the OSError."""
        self.append_many([record])

    def append_many(self, records: Sequence[dict[str, object]], fsync: bool = True) -> None:
        """Append records with one write (and one fsync: group commit); on failure cut back and re-raise."""
        data = b"".join(_json_line(record) for record in records)
        if data:
            self.size = _append_or_cut_back(self._fd, self.path, self.size, data, fsync)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
