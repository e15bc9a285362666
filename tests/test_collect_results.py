"""Collecting the stream workers' result messages into a CSV with message_listener.py.

A result message (stream/publish.py result_message) is one scored image, published at least
once; `--map id=id` makes the listener write one row per image id, and `--column NAME=PATH`
adds the scores. Runs the real pynsq client against tests/nsq_broker.py, as
test_message_listener.py does.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from nsq_broker import NsqBroker

from aigc_eval import columns as col
from aigc_eval.cli.listen import main
from aigc_eval.collection.listener import EXIT_STOPPED
from aigc_eval.collection.messages import (
    LISTENER_COLUMNS,
    MalformedMessage,
    listener_columns,
    load_mapping,
    message_to_rows,
    parse_columns,
)
from aigc_eval.io.csv_io import InputError
from aigc_eval.stream.publish import ResultSettings, result_message
from aigc_eval.stream.shards import SHARD_COLUMNS
from test_message_listener import _restore_logging, broker  # noqa: F401  (the listener tests' fixtures)

TOPIC = col.DEFAULT_RESULT_TOPIC
COLUMNS = ["--column", "clip_score=scores.clip_score", "--column", "total_score=total_score",
           "--column", "regenerate=regenerate"]


def shard_row(image_id: str, clip: str, confidence: str) -> dict[str, str]:
    """A worker's shard row for one ok image (what result_message is built from)."""
    row = {name: "" for name in SHARD_COLUMNS}
    row.update({col.ID: image_id, col.IMAGE_URL: f"https://g/{image_id}.png", col.CATEGORY: "蛋糕",
                col.REQUEST_ID: image_id.rsplit("_", 1)[0], col.WORKER: "w1", col.CLIP_SCORE: clip,
                col.PROMPT_TOKENS: "4", col.STATUS: col.STATUS_OK, col.TOP1_CLASS: "1", col.TOP1_LABEL: "goldfish",
                col.TOP1_CONFIDENCE: confidence, col.PRODUCT_STATUS: col.STATUS_SKIPPED,
                col.SCORED_AT: "2026-12-02T08:00:00+00:00", col.NSQ_MESSAGE_ID: f"m-{image_id}"})
    return row


def result_bodies() -> list[bytes]:
    """Two images of request r-1 as a worker publishes them: r-1_0 passes, r-1_1 has a low CLIP score."""
    settings = ResultSettings(weights={"clip": 0.6, "product": 0.5},
                              thresholds={"clip.min": "0.25", "inception.min_confidence": "0.15"})
    rows = [shard_row("r-1_0", "0.300000", "0.5"), shard_row("r-1_1", "0.200000", "0.1")]
    return [json.dumps(result_message(row, settings), ensure_ascii=False).encode("utf-8") for row in rows]


def listen(broker: NsqBroker, out: Path, *extra: str) -> int:
    return main(["--nsqd-tcp-address", broker.tcp_address, "--topic", TOPIC, "--output", str(out),
                 "--reconnect-delay", "0.2", "--idle-timeout", "0.6", "-q", *extra])


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_result_message_carries_the_image_url_and_category():
    message = json.loads(result_bodies()[1])
    assert message[col.KEY_RESULT_IMAGE_URL] == "https://g/r-1_1.png" and message[col.KEY_RESULT_CATEGORY] == "蛋糕"
    assert result_message({col.ID: "x_0"}, ResultSettings())[col.KEY_RESULT_CATEGORY] is None


def test_extra_columns_by_hand():
    body = json.dumps({"id": "a", "image_url": "https://g/a.png", "scores": {"clip_score": 0.31, "top1_label": None},
                       "regenerate": ["clip_score 0.2 < 0.25", "x"], "total_score": None, "n": 3, "ok": True,
                       "obj": {"b": [1, "二"]}}, ensure_ascii=False).encode()
    extra = parse_columns(["clip=scores.clip_score", "label=scores.top1_label", "why=regenerate", "total=total_score",
                           "n=n", "ok=ok", "obj=obj", "missing=no.such.path"])
    [row] = message_to_rows(body, "m1", 7, load_mapping(None, ["id=id"]), extra)
    assert list(row) == [*LISTENER_COLUMNS[:-1], "clip", "label", "why", "total", "n", "ok", "obj", "missing",
                         col.NSQ_MESSAGE_ID]
    assert (row[col.ID], row[col.IMAGE_URL], row[col.NSQ_MESSAGE_ID]) == ("a", "https://g/a.png", "m1")
    assert [row[name] for name in ("clip", "label", "why", "total", "n", "ok", "obj", "missing")] == [
        "0.31", "", "clip_score 0.2 < 0.25; x", "", "3", "true", '{"b":[1,"二"]}', ""]
    assert listener_columns() == LISTENER_COLUMNS  # no --column: the header is today's


def test_an_id_mapping_needs_the_id_and_exactly_one_image():
    mapping = load_mapping(None, ["id=id"])
    with pytest.raises(MalformedMessage, match="missing image id 'id'"):
        message_to_rows(b'{"image_url": "https://g/a.png"}', "m", 0, mapping)
    with pytest.raises(MalformedMessage, match="2 image URLs"):
        message_to_rows(b'{"id": "a", "image_urls": ["https://g/a.png", "https://g/b.png"]}', "m", 0, mapping)


@pytest.mark.parametrize("item, message", [
    ("clip_score", "expected NAME=PATH"), ("=scores.clip_score", "expected NAME=PATH"), ("x=", "expected NAME=PATH"),
    ("image_url=x", "already has a column 'image_url'"), ("nsq_message_id=x", "already has a column"),
])
def test_bad_column_syntax_is_a_one_line_error(item, message):
    with pytest.raises(InputError, match=message):
        parse_columns([item])


def test_results_collected_once_per_image_with_their_scores(broker, tmp_path, capsys):
    first, second = result_bodies()
    broker.publish(TOPIC, [first, second, first])  # at least once: r-1_0 published twice
    out = tmp_path / "scores.csv"
    assert listen(broker, out, "--map", "id=id", *COLUMNS) == EXIT_STOPPED
    header, rows = read_csv(out)
    assert header == [*LISTENER_COLUMNS[:-1], "clip_score", "total_score", "regenerate", col.NSQ_MESSAGE_ID]
    assert sorted(row[col.ID] for row in rows) == ["r-1_0", "r-1_1"]
    by_id = {row[col.ID]: row for row in rows}
    assert by_id["r-1_0"][col.IMAGE_URL] == "https://g/r-1_0.png" and by_id["r-1_0"][col.CATEGORY] == "蛋糕"
    assert by_id["r-1_0"]["clip_score"] == "0.3" and by_id["r-1_1"]["clip_score"] == "0.2"
    # No product term and no IS term in a stream: the total is clip_score / the 0.6 ceiling.
    assert by_id["r-1_0"]["total_score"] == "0.5" and json.loads(first)[col.KEY_RESULT_TOTAL] == 0.5
    assert by_id["r-1_0"]["regenerate"] == ""
    assert by_id["r-1_1"]["regenerate"] == "clip_score 0.200 < 0.25; top1_confidence 0.100 < 0.15"
    assert all(len(row[col.NSQ_MESSAGE_ID]) == 16 for row in rows)

    # A restart dedups on the ids already in the file: a third copy writes nothing.
    broker.publish(TOPIC, [second])
    assert listen(broker, out, "--map", "id=id", *COLUMNS) == EXIT_STOPPED
    assert sorted(row[col.ID] for row in read_csv(out)[1]) == ["r-1_0", "r-1_1"]

    # Resuming with other columns: one line naming both headers, and the file untouched.
    before = out.read_bytes()
    capsys.readouterr()
    assert listen(broker, out, "--map", "id=id", "--column", "clip_score=scores.clip_score") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ") and ",".join(header) in err
    assert ",".join([*LISTENER_COLUMNS[:-1], "clip_score", col.NSQ_MESSAGE_ID]) in err
    assert out.read_bytes() == before


def test_bad_column_on_the_command_line_exits_2_with_one_line(tmp_path, capsys):
    assert main(["--output", str(tmp_path / "o.csv"), "--column", "clip_score", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --column 'clip_score': expected NAME=PATH, such as clip_score=scores.clip_score"
    assert not (tmp_path / "o.csv").exists()


def test_without_an_id_mapping_duplicates_of_a_result_are_separate_messages(broker, tmp_path):
    """Without --map id=..., ids are request id + index and dedup is on NSQ's message id only: a
    republished result is a second row (why results need the id mapping)."""
    first, _ = result_bodies()
    broker.publish(TOPIC, [first, first])
    out = tmp_path / "scores.csv"
    assert listen(broker, out, "--map", "request_id=request_id") == EXIT_STOPPED
    header, rows = read_csv(out)
    assert header == LISTENER_COLUMNS and [row[col.ID] for row in rows] == ["r-1_0", "r-1_0"]
