"""message_listener.py against the test broker, through the real pynsq client over TCP.

Every test checks the output the evaluators read: each published image exactly once,
each message id on rows of one message only, nothing lost across crashes and restarts.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import cpu_fp32
from nsq_broker import NsqBroker

from aigc_eval import columns as col
from aigc_eval.cli.listen import main
from aigc_eval.collection.listener import (
    EXIT_DEAD_LETTERS,
    EXIT_LOCKED,
    EXIT_NO_NSQD,
    EXIT_STOPPED,
    ListenerOptions,
    collect_from_nsq,
)
from aigc_eval.collection.messages import LISTENER_COLUMNS
from aigc_eval.io.append_log import scan_csv_log
from aigc_eval.io.csv_io import read_rows

ROOT = Path(__file__).resolve().parent.parent
TOPIC, CHANNEL = col.DEFAULT_NSQ_TOPIC, col.DEFAULT_NSQ_CHANNEL


def body(i: int, images: int = 2) -> bytes:
    """A generation record as the default mapping reads it; odd requests use the single image_url form."""
    data = {"request_id": f"r-{i}", "prompt": f"=芋泥 薰衣草 {i}\n第二行, \"引号\"", "product_image_url": f"https://p/{i}.png",
            "category": "蛋糕", "timestamp": 1764115200 + i}
    if i % 2:
        data["image_url"] = f"https://g/{i}_0.png"
    else:
        data["image_urls"] = [f"https://g/{i}_{k}.png" for k in range(images)]
    return json.dumps(data, ensure_ascii=False).encode()


def expected_ids(numbers) -> list[str]:
    return sorted(f"r-{i}_{k}" for i in numbers for k in range(1 if i % 2 else 2))


def output_rows(path: Path) -> list[dict[str, str]]:
    return read_rows(path, [col.ID, col.PROMPT, col.IMAGE_URL])[1]


def assert_exactly_once(path: Path, numbers) -> list[dict[str, str]]:
    rows = output_rows(path)
    ids = [r[col.ID] for r in rows]
    assert sorted(ids) == expected_ids(numbers), f"missing {set(expected_ids(numbers)) - set(ids)}, duplicated {[i for i, n in collections.Counter(ids).items() if n > 1]}"
    owners = collections.defaultdict(set)
    for r in rows:
        owners[r[col.NSQ_MESSAGE_ID]].add(r[col.ID].rsplit("_", 1)[0])
    assert all(len(requests) == 1 for requests in owners.values())
    return rows


@pytest.fixture(autouse=True)
def _restore_logging():
    """main() points logging at the stderr pytest captures for that test; undo it afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def broker():
    with NsqBroker(msg_timeout=1.0) as running:
        yield running


def options(broker: NsqBroker, output: Path, **changes) -> ListenerOptions:
    return ListenerOptions(output=output, nsqd_tcp_addresses=(broker.tcp_address,), reconnect_delay=0.2,
                           idle_timeout=changes.pop("idle_timeout", 0.8), **changes)


def cli(broker: NsqBroker, output: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "message_listener.py"), "--nsqd-tcp-address", broker.tcp_address,
            "--output", str(output), "--reconnect-delay", "0.2", *extra]


def settled_stats(broker: NsqBroker) -> dict[str, int]:
    """The channel's counters once the broker has seen every listener's connection close: it
    reads a connection's frames in order, so by then it has counted all of their FINs."""
    assert broker.wait_until(lambda: broker.stats(TOPIC, CHANNEL)["clients"] == 0), "a listener is still connected"
    return broker.stats(TOPIC, CHANNEL)


def test_many_messages_every_row_once_and_readable_by_the_evaluators(broker, tmp_path):
    broker.publish(TOPIC, [body(i) for i in range(1500)])
    out = tmp_path / "output.csv"
    started = time.monotonic()
    stats = collect_from_nsq(options(broker, out, idle_timeout=0.5), handle_signals=False)
    elapsed = time.monotonic() - started - 0.5
    rows = assert_exactly_once(out, range(1500))
    assert (stats.messages, stats.written, stats.rows, stats.duplicates) == (1500, 1500, 2250, 0)
    assert out.read_bytes().startswith(b"\xef\xbb\xbf") and b'"\'=' in out.read_bytes()  # formula cell neutralised on disk
    first = next(r for r in rows if r[col.ID] == "r-0_1")
    assert first[col.PROMPT] == "=芋泥 薰衣草 0\n第二行, \"引号\"" and first[col.CATEGORY] == "蛋糕"
    assert first[col.PRODUCT_IMAGE_URL] == "https://p/0.png" and first[col.TIMESTAMP] == "1764115200"
    assert settled_stats(broker) | {"delivered": 0} == {"depth": 0, "in_flight": 0, "deferred": 0, "delivered": 0,
                                                              "finished": 1500, "requeued": 0, "timed_out": 0, "clients": 0}
    print(f"\n1500 messages -> 2250 rows in {elapsed:.2f} s ({1500 / max(elapsed, 1e-3):.0f} messages/s)")


def test_malformed_messages_go_to_the_dead_letter_file_once(broker, tmp_path):
    bad = [b"not json", b"[1]", b'{"prompt": "no id", "image_url": "https://x"}', b'{"request_id": "r-x"}', b"\xff\xfe"]
    broker.publish(TOPIC, [body(0), *bad, body(1)])
    out = tmp_path / "output.csv"
    assert main(["--nsqd-tcp-address", broker.tcp_address, "--output", str(out), "--idle-timeout", "0.6", "-q"]) == EXIT_DEAD_LETTERS
    assert_exactly_once(out, [0, 1])
    letters = [json.loads(line) for line in (tmp_path / "output.dead_letter.jsonl").read_text().splitlines()]
    assert [letter.get("body") for letter in letters] == [b.decode() for b in bad[:4]] + [None]
    assert letters[4]["body_base64"] == "//4=" and "not UTF-8" in letters[4]["reason"]
    assert [letter["reason"].split(" (")[0] for letter in letters[:4]] == [
        "body is not JSON", "body is JSON but not an object", "missing request id 'request_id'", "no image URL: neither 'image_urls' nor 'image_url' is set"]
    assert all(len(letter["nsq_message_id"]) == 16 and letter["attempts"] == 1 for letter in letters)
    assert settled_stats(broker)["finished"] == 7


def test_lost_fins_and_restart_dedupe_and_torn_tail_repair(broker, tmp_path):
    out = tmp_path / "output.csv"
    broker.publish(TOPIC, [body(i) for i in range(40)])
    broker.drop_fins = 5  # these messages are written but nsqd never hears it: they come back after 1 s
    stats = collect_from_nsq(options(broker, out, max_messages=40, idle_timeout=3.0), handle_signals=False)
    assert stats.messages == 40 and stats.written == 40
    # A crash in the middle of a write: half a record, no newline.
    with open(out, "ab") as handle:
        handle.write('r-99_0,"半'.encode())
    broker.publish(TOPIC, [body(i) for i in range(40, 60)])
    stats = collect_from_nsq(options(broker, out, idle_timeout=1.5), handle_signals=False)
    assert stats.duplicates == 5 and stats.written == 20
    assert_exactly_once(out, range(60))
    assert (tmp_path / "output.csv.torn").read_bytes() == 'r-99_0,"半'.encode()
    assert settled_stats(broker)["in_flight"] == 0


def test_max_messages_and_lookupd(broker, tmp_path):
    broker.publish(TOPIC, [body(i) for i in range(30)])
    out = tmp_path / "output.csv"
    code = main(["--lookupd-http-address", broker.http_address, "--output", str(out), "--max-messages", "12",
                 "--max-in-flight", "5", "-q"])
    assert code == EXIT_STOPPED
    rows = output_rows(out)
    assert len({r[col.NSQ_MESSAGE_ID] for r in rows}) == 12
    assert broker.wait_until(lambda: broker.stats(TOPIC, CHANNEL)["depth"] == 18)  # the rest stays queued


def test_idle_timeout_without_nsqd_exits_6(tmp_path, capsys):
    with NsqBroker() as gone:
        address = gone.tcp_address
    code = main(["--nsqd-tcp-address", address, "--output", str(tmp_path / "o.csv"), "--idle-timeout", "0.5"])
    assert code == EXIT_NO_NSQD
    assert "no message for 0.5 s" in capsys.readouterr().err


def test_broker_disconnect_mid_stream_and_reconnect(broker, tmp_path):
    out = tmp_path / "output.csv"
    broker.publish(TOPIC, [body(i) for i in range(200)])

    def disrupt() -> None:
        broker.wait_until(lambda: broker.stats(TOPIC, CHANNEL)["finished"] >= 50)
        broker.disconnect_clients()
        broker.publish(TOPIC, [body(i) for i in range(200, 400)])

    thread = threading.Thread(target=disrupt)
    thread.start()
    collect_from_nsq(options(broker, out, max_in_flight=10, idle_timeout=2.5), handle_signals=False)
    thread.join()
    assert_exactly_once(out, range(400))
    assert sum(1 for _, line in broker.commands if line == b"IDENTIFY") >= 2  # it did reconnect


def test_failed_writes_requeue_and_nothing_is_torn(broker, tmp_path):
    out = tmp_path / "output.csv"
    broker.publish(TOPIC, [body(i) for i in range(60)])
    limit = 3000  # bytes: a few dozen rows fit, then every write fails with EFBIG

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.Popen(cli(broker, out, "--requeue-delay", "0", "--max-in-flight", "4"), preexec_fn=small_files,
                            stderr=subprocess.PIPE, text=True)
    assert broker.wait_until(lambda: broker.stats(TOPIC, CHANNEL)["requeued"] >= 3, timeout=15)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == EXIT_STOPPED and "could not write" in err
    data = out.read_bytes()
    assert len(data) <= limit and scan_csv_log(data, LISTENER_COLUMNS, col.NSQ_MESSAGE_ID, out)[0] == len(data)
    collect_from_nsq(options(broker, out, idle_timeout=1.5), handle_signals=False)
    assert_exactly_once(out, range(60))


def test_sigterm_with_messages_in_flight_writes_them_then_exits_0(broker, tmp_path):
    out = tmp_path / "output.csv"
    proc = subprocess.Popen(cli(broker, out, "--max-in-flight", "50"), stderr=subprocess.PIPE, text=True)
    assert broker.wait_until(lambda: broker.stats(TOPIC, CHANNEL)["clients"] == 1, timeout=15)
    for start in range(0, 3000, 100):
        broker.publish(TOPIC, [body(i) for i in range(start, start + 100)])
        if start == 1000:
            proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == EXIT_STOPPED and "SIGTERM received" in err
    stats = settled_stats(broker)
    assert stats["in_flight"] == 0 and stats["timed_out"] == 0 and stats["requeued"] == 0
    written = {r[col.NSQ_MESSAGE_ID] for r in output_rows(out)}
    assert 0 < len(written) == stats["finished"] < 3000


def test_lock_file_stops_a_second_listener(broker, tmp_path, capsys):
    out = tmp_path / "output.csv"
    first = subprocess.Popen(cli(broker, out), stderr=subprocess.DEVNULL)
    try:
        assert broker.wait_until(lambda: broker.stats(TOPIC, CHANNEL)["clients"] == 1, timeout=15)
        assert main(["--nsqd-tcp-address", broker.tcp_address, "--output", str(out), "--idle-timeout", "0.3"]) == EXIT_LOCKED
        assert f"(pid {first.pid})" in capsys.readouterr().err
    finally:
        first.kill()
        first.wait()
    assert broker.wait_until(lambda: broker.stats(TOPIC, CHANNEL)["clients"] == 0)
    broker.publish(TOPIC, [body(1)])  # kill -9 leaves no stale lock behind
    assert main(["--nsqd-tcp-address", broker.tcp_address, "--output", str(out), "--idle-timeout", "0.5", "-q"]) == EXIT_STOPPED
    assert_exactly_once(out, [1])


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(broker, tmp_path):
    """The listener is killed with SIGKILL again and again while messages keep arriving, then drains the topic."""
    out = tmp_path / "output.csv"
    rng = random.Random(4)
    total, kills = 6000, 0
    done = threading.Event()

    def publish_steadily() -> None:  # faster than the listener drains, so kills land mid-stream
        for start in range(0, total, 200):
            broker.publish(TOPIC, [body(i) for i in range(start, start + 200)])
            time.sleep(0.1)
        done.set()

    publisher = threading.Thread(target=publish_steadily)
    publisher.start()
    while not done.is_set() or kills < 8:
        delivered = broker.stats(TOPIC, CHANNEL)["delivered"]
        proc = subprocess.Popen(cli(broker, out, "--max-in-flight", "20"), stderr=subprocess.DEVNULL)
        # A cold interpreter can take over a second to import; time the kill from this listener's first delivery.
        broker.wait_until(lambda: broker.stats(TOPIC, CHANNEL)["delivered"] > delivered or proc.poll() is not None, timeout=30)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    publisher.join()
    final = subprocess.run(cli(broker, out, "--idle-timeout", "1.5", "-q"), capture_output=True, text=True, timeout=60)
    assert final.returncode == EXIT_STOPPED, final.stderr
    rows = assert_exactly_once(out, range(total))
    stats = settled_stats(broker)
    assert stats["depth"] == stats["in_flight"] == 0 and not (tmp_path / "output.dead_letter.jsonl").read_bytes()
    assert stats["timed_out"] > 0  # some kills did hit messages in flight, which came back and were written once
    print(f"\n{kills} kills, {len(rows)} rows from {total} messages, {stats['delivered']} deliveries, "
          f"{stats['timed_out']} redelivered after a kill, torn tail repaired: {(tmp_path / 'output.csv.torn').exists()}")


def test_published_over_http_collected_then_scored_by_evaluate_clipscore(broker, tmp_path, clip_dir, image_server):
    """The article's chain: the generation service publishes, the listener collects, the evaluator scores."""
    import urllib.request

    from aigc_eval.io.image_fetch import FetchConfig
    from aigc_eval.scoring.clipscore import evaluate_clipscore

    base, _ = image_server
    for i, paths in enumerate([["/good.jpg", "/rgba.png"], ["/cmyk.jpg"]]):
        record = {"request_id": f"req-{i}", "prompt": "大理石台面上的蛋糕", "image_urls": [base + p for p in paths], "category": "蛋糕"}
        request = urllib.request.Request(f"http://{broker.http_address}/pub?topic={TOPIC}", data=json.dumps(record).encode())
        assert urllib.request.urlopen(request).read() == b"OK"
    out = tmp_path / "output.csv"
    assert main(["--nsqd-tcp-address", broker.tcp_address, "--output", str(out), "--idle-timeout", "0.5", "-q"]) == EXIT_STOPPED
    rows, errors = evaluate_clipscore(out, tmp_path / "result_clip.csv", model_name="RN50", model_dir=clip_dir,
                                      runtime=cpu_fp32(fetch=FetchConfig(timeout=5, retries=0, cache_dir=tmp_path / "cache")))
    assert (rows, errors) == (3, 0)
    scored = read_rows(tmp_path / "result_clip.csv", [col.ID, col.CLIP_SCORE, col.NSQ_MESSAGE_ID])[1]
    assert sorted(r[col.ID] for r in scored) == ["req-0_0", "req-0_1", "req-1_0"]
    assert all(r[col.STATUS] == col.STATUS_OK and -1 <= float(r[col.CLIP_SCORE]) <= 1 and r[col.CATEGORY] == "蛋糕" for r in scored)
