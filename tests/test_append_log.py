"""The listener's append log: a record torn anywhere by a crash is cut off on reopening, never glued to the next."""

import os

import pytest

from aigc_eval import columns as col
from aigc_eval.collection.messages import LISTENER_COLUMNS
from aigc_eval.io.append_log import (
    CsvAppendLog,
    DeadLetterLog,
    OutputLock,
    OutputLocked,
    scan_csv_log,
)
from aigc_eval.io.csv_io import InputError, read_rows


def row(i: int, prompt: str = "多行\r\n提示, \"引号\" =1+1") -> dict[str, str]:
    return {col.ID: f"r-{i}_0", col.PROMPT: prompt, col.IMAGE_URL: f"https://a/{i}.png", col.PRODUCT_IMAGE_URL: "",
            col.CATEGORY: "蛋糕", col.TIMESTAMP: "1", col.NSQ_TIMESTAMP: "2", col.NSQ_MESSAGE_ID: f"{i:016x}"}


def test_every_torn_tail_is_cut_back_to_the_last_complete_record(tmp_path):
    path = tmp_path / "out.csv"
    log, keys = CsvAppendLog.open(path, LISTENER_COLUMNS, col.NSQ_MESSAGE_ID)
    log.append([row(1), row(2)])
    complete = path.stat().st_size
    log.append([row(3), row(4)])
    log.close()
    full = path.read_bytes()
    record3_end = complete + len(CsvAppendLog.encode_rows([row(3)], LISTENER_COLUMNS))
    for cut in range(complete, len(full) + 1):  # a crash after every byte of the last write
        good_end, keys = scan_csv_log(full[:cut], LISTENER_COLUMNS, col.NSQ_MESSAGE_ID, path)
        expected = len(full) if cut == len(full) else (record3_end if cut >= record3_end else complete)
        assert good_end == expected, cut
        assert len(keys) == {complete: 2, record3_end: 3, len(full): 4}[expected]


def test_reopening_repairs_keeps_the_torn_bytes_and_reads_back(tmp_path):
    path = tmp_path / "out.csv"
    log, _ = CsvAppendLog.open(path, LISTENER_COLUMNS, col.NSQ_MESSAGE_ID)
    log.append([row(1)])
    log.close()
    torn = CsvAppendLog.encode_rows([row(2)], LISTENER_COLUMNS)[:25]
    with open(path, "ab") as handle:
        handle.write(torn)
    log, keys = CsvAppendLog.open(path, LISTENER_COLUMNS, col.NSQ_MESSAGE_ID)
    assert keys == [f"{1:016x}"]
    assert (tmp_path / "out.csv.torn").read_bytes() == torn
    log.append([row(3)])
    log.close()
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    _, rows = read_rows(path, [col.ID, col.PROMPT, col.IMAGE_URL])
    assert [r[col.ID] for r in rows] == ["r-1_0", "r-3_0"] and rows[0][col.PROMPT] == row(1)[col.PROMPT]


def test_failed_append_is_cut_back(tmp_path, monkeypatch):
    path = tmp_path / "out.csv"
    log, _ = CsvAppendLog.open(path, LISTENER_COLUMNS, col.NSQ_MESSAGE_ID)
    log.append([row(1)])
    size = path.stat().st_size
    real_write = os.write

    def short_then_fail(fd, data):
        if len(data) > 10:
            return real_write(fd, bytes(data[:10]))  # a short write, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("aigc_eval.io.append_log.os.write", short_then_fail)
    with pytest.raises(OSError, match="No space"):
        log.append([row(2)])
    assert path.stat().st_size == size
    monkeypatch.undo()
    log.append([row(3)])
    log.close()
    assert scan_csv_log(path.read_bytes(), LISTENER_COLUMNS, col.NSQ_MESSAGE_ID, path)[1] == [f"{1:016x}", f"{3:016x}"]


def test_foreign_csv_is_refused(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("id,prompt,image_url\n1,a,b\n")
    with pytest.raises(InputError, match="not the listener's"):
        CsvAppendLog.open(path, LISTENER_COLUMNS, col.NSQ_MESSAGE_ID)


def test_dead_letter_torn_line_and_ids(tmp_path):
    path = tmp_path / "dl.jsonl"
    log, ids = DeadLetterLog.open(path, "nsq_message_id")
    log.append({"nsq_message_id": "a" * 16, "reason": "x", "body": "蛋糕"})
    log.close()
    with open(path, "ab") as handle:
        handle.write(b'{"nsq_message_id": "bbbb')
    log, ids = DeadLetterLog.open(path, "nsq_message_id")
    log.close()
    assert ids == ["a" * 16] and path.read_bytes().endswith(b"}\n")


def test_lock_is_exclusive_and_released(tmp_path):
    path = tmp_path / "out.csv"
    with OutputLock(path):
        with pytest.raises(OutputLocked, match=f"pid {os.getpid()}"):
            OutputLock(path).acquire()
    with OutputLock(path):
        pass
