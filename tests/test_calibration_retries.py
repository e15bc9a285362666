"""Merchants' retries as labels: messages with sessions and regenerate turns published through
the test broker to the real listener (--map session_id=...), then labels-from-retries; and the
retry window on hand-made output.csv rows."""

from __future__ import annotations

import csv
import json
import logging

import pytest
from nsq_broker import NsqBroker

from aigc_eval import columns as col
from aigc_eval.calibration.labels import read_labels
from aigc_eval.calibration.retries import labels_from_retries
from aigc_eval.cli import main as aigc_eval
from aigc_eval.cli.listen import main as listen
from aigc_eval.collection.messages import LISTENER_COLUMNS, listener_columns, load_mapping
from aigc_eval.labelling import format as lf

TOPIC = col.DEFAULT_NSQ_TOPIC


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def chat(*turns: tuple[str, str]) -> str:
    return json.dumps([{"role": role, "content": text} for role, text in turns], ensure_ascii=False)


# (request id, session or None, prompt, number of images), in publish order; sessions interleave.
MESSAGES = [
    ("a1", "A", "画一个芋泥蛋糕，薰衣草花田背景", 2),
    ("b1", "B", chat(("user", "a red sneaker on white")), 1),
    ("a2", "A", "不好看，重新生成", 2),  # rejects a1
    ("c1", "C", "重画", 1),  # a retry with no earlier request of C in the file: no label
    ("b2", "B", chat(("user", "a red sneaker on white"), ("assistant", "here it is"), ("user", "not good, generate another one")), 1),  # rejects b1
    ("a3", "A", "再来一张，换成雪地背景", 1),  # rejects a2
    ("d1", None, "画一双鞋", 1),
    ("d2", None, "重画", 1),  # no session: nothing
    ("a4", "A", "好的，谢谢", 1),  # an acknowledgement, not a retry: a3 keeps no label
]
EXPECTED_REJECTS = {"a1_0", "a1_1", "a2_0", "a2_1", "b1_0"}


def body(request_id: str, session: str | None, prompt: str, images: int) -> bytes:
    data = {"request_id": request_id, "prompt": prompt, "image_urls": [f"https://g/{request_id}_{k}.png" for k in range(images)],
            "category": "蛋糕"}
    if session:
        data["meta"] = {"session": session}
    return json.dumps(data, ensure_ascii=False).encode()


def test_retries_published_through_the_broker_give_exactly_the_expected_labels(tmp_path, capsys):
    out = tmp_path / "output.csv"
    with NsqBroker(msg_timeout=1.0) as broker:
        for message in MESSAGES:  # one PUB each, so nsqd's timestamps follow the publish order
            broker.publish(TOPIC, [body(*message)])
        code = listen(["--nsqd-tcp-address", broker.tcp_address, "--output", str(out), "--idle-timeout", "0.8",
                       "--map", "session_id=meta.session", "-q"])
    assert code == 0
    with open(out, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames, list(reader)
    assert header == [*LISTENER_COLUMNS[:-1], col.SESSION_ID, col.NSQ_MESSAGE_ID]
    assert {r[col.ID]: r[col.SESSION_ID] for r in rows}["b2_0"] == "B" and len(rows) == 11

    labels = tmp_path / "retry_labels.csv"
    assert aigc_eval(["labels-from-retries", "--input", str(out), "--output", str(labels)]) == 0
    err = capsys.readouterr().err
    assert "4 regenerate requests (1 without an earlier request in their session), 2 rows without a session" in err
    decided = read_labels(labels)
    assert decided.verdicts == {i: 0 for i in EXPECTED_REJECTS}
    assert decided.sources == {lf.SOURCE_MERCHANT_RETRY: 5}
    with open(labels, encoding="utf-8-sig", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert all(r[lf.LABELER] == "merchant" and r[lf.LABELLED_AT].endswith("Z") for r in written)


def test_without_a_session_mapping_the_output_header_is_unchanged():
    assert listener_columns((), load_mapping()) == LISTENER_COLUMNS
    assert load_mapping(overrides=["session_id=sid"]).session_id == "sid"


def write_output(path, rows):
    header = listener_columns((), load_mapping(overrides=["session_id=s"]))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, header)
        writer.writeheader()
        for image_id, session, prompt, seconds, message in rows:
            writer.writerow({col.ID: image_id, col.PROMPT: prompt, col.IMAGE_URL: f"https://g/{image_id}.png",
                             col.SESSION_ID: session, col.NSQ_TIMESTAMP: str(int(seconds * 1e9)), col.NSQ_MESSAGE_ID: message})
    return path


def test_the_retry_window_labels_requests_without_a_retry_accept_and_leaves_recent_ones(tmp_path):
    path = write_output(tmp_path / "output.csv", [
        ("s1_0", "S", "画蛋糕", 0, "m1"),
        ("s2_0", "S", "重画", 100, "m2"),  # a retry after 100 s: s1 is rejected (a retry beats the window)
        ("s3_0", "S", "画鞋", 1000, "m3"),
        ("s3_1", "S", "画鞋", 1000, "m3"),
        ("s4_0", "S", "one more please", 1030, "m4"),  # rejects s3 (30 s later)
        ("t1_0", "T", "画帽子", 2000, "m5"),  # no retry after it: accept
        ("t2_0", "T", "画围巾", 2200, "m6"),  # a new request, not a retry: t1 still accepted; t2 accepted
        ("u1_0", "U", "画手表", 5000, "m7"),  # the file ends here: too recent to know, no label
    ])
    rows, stats = labels_from_retries(path, retry_window=60)
    got = {r.image_id: (r.verdict, r.source) for r in rows}
    acc, rej = (1, lf.SOURCE_MERCHANT_NO_RETRY), (0, lf.SOURCE_MERCHANT_RETRY)
    assert got == {"s1_0": rej, "s2_0": acc, "s3_0": rej, "s3_1": rej, "s4_0": acc, "t1_0": acc, "t2_0": acc}
    rows, _ = labels_from_retries(path)  # off by default: rejects only
    assert {r.image_id for r in rows} == {"s1_0", "s3_0", "s3_1"}


def test_retry_labels_feed_the_calibration_stage(tmp_path, capsys):
    """--retries on calibrate.py: the retry labels join labels.csv's (here: too few for a fit, so the
    agreement report is written and the stage says why)."""
    from calibration_data import known_model, write_scores
    from aigc_eval.cli.calibrate import main as calibrate

    path = write_output(tmp_path / "output.csv", [("s1_0", "S", "画蛋糕", 0, "m1"), ("s2_0", "S", "重画", 100, "m2")])
    X, _, _, _ = known_model(2)
    scores = write_scores(tmp_path / "result_total.csv", ["s1_0", "s2_0"], X)
    code = calibrate(["--scores", str(scores), "--retries", str(path), "--output", str(tmp_path / "c.json")])
    err = capsys.readouterr().err
    assert code == 1 and "1 scored and labelled (0 accept, 1 reject)" in err and "merchant_retry 1" in err


def test_an_output_without_sessions_is_one_line(tmp_path, capsys):
    path = tmp_path / "output.csv"
    path.write_text(",".join(LISTENER_COLUMNS) + "\n", encoding="utf-8")
    assert aigc_eval(["labels-from-retries", "--input", str(path), "--output", str(tmp_path / "l.csv")]) == 2
    err = capsys.readouterr().err
    assert "no session_id column; collect with message_listener.py --map session_id=PATH" in err and err.count("\n") == 1
