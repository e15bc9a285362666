"""evaluate_stream.py against the test broker: three workers on one channel, one killed with
SIGKILL mid-stream and restarted, then main.py --shards against main.py --input.

Images are a few small files on disk under distinct ids (the score cache makes repeats cheap,
so 150 images stay fast on 2 cores); workers run RN50 + a random Inception, on CPU in fp32.

fp32 CPU kernels round differently with the batch size and the thread count (Inception logits of
+-30 differ by up to 1.5e-4 between batches of 1, 8 and 16, top-1 confidences by 5e-6: measured),
so both sides compute each image alone (--batch-size 1, one thread per model call) and every
message carries one image: the scores are then computed the same way and must agree to 1e-6.
"""

from __future__ import annotations

import collections
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, photo, read_csv, write_csv
from nsq_broker import NsqBroker
from PIL import Image

from aigc_eval import columns as col
from aigc_eval.cli.score import main as score_main
from aigc_eval.cli.stream import main as stream_main
from aigc_eval.collection.messages import message_to_rows
from aigc_eval.stream.shards import read_shard

TOPIC, CHANNEL, RESULTS = col.DEFAULT_NSQ_TOPIC, col.DEFAULT_STREAM_CHANNEL, col.DEFAULT_RESULT_TOPIC
REQUESTS = 150  # one image each (see BATCH below)
MALFORMED = [b"not json", b'{"prompt": "no id", "image_url": "x.png"}', b'{"request_id": "r-x"}']
PROMPTS = ["大理石台面上的蛋糕", "雪地背景，运动鞋", "木桌上的陶瓷杯子", "海边的草帽"]
CATEGORIES = ["蛋糕", "鞋", "杯子"]


@pytest.fixture
def images(tmp_path) -> tuple[list[Path], Path]:
    """Four generated images (PNG and JPEG) and one RGBA cut-out."""
    paths = []
    for i in range(5):
        path = tmp_path / "images" / f"gen{i}.{'jpg' if i % 2 else 'png'}"
        path.parent.mkdir(exist_ok=True)
        photo((96 + 8 * i, 72), seed=i).save(path)
        paths.append(path)
    cutout = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    cutout.paste((200, 30, 30, 255), (8, 8, 32, 32))
    cutout.save(tmp_path / "images" / "cutout.png")
    return paths, tmp_path / "images" / "cutout.png"


def body(i: int, images: tuple[list[Path], Path]) -> bytes:
    gen, cutout = images
    data = {"request_id": f"r-{i}", "prompt": PROMPTS[i % len(PROMPTS)], "category": CATEGORIES[i % len(CATEGORIES)],
            "timestamp": 1764115200 + i, "product_image_url": str(cutout) if i % 10 == 0 else "",
            "image_urls" if i % 2 else "image_url": [str(gen[i % len(gen)])] if i % 2 else str(gen[i % len(gen)])}
    return json.dumps(data, ensure_ascii=False).encode()


def expected_ids() -> set[str]:
    return {f"r-{i}_0" for i in range(REQUESTS)}


def worker_cmd(broker: NsqBroker, out: Path, name: str, clip_dir: Path, weights: Path) -> list[str]:
    return [sys.executable, str(ROOT / "evaluate_stream.py"), "--nsqd-tcp-address", broker.tcp_address,
            "--output-dir", str(out), "--worker-name", name, "--model", "RN50", "--model-dir", str(clip_dir),
            "--weights", str(weights), "--device", "cpu", "--precision", "fp32", "--batch-size", "1",
            "--max-in-flight", "16", "--msg-timeout", "2", "--reconnect-delay", "0.2", "--requeue-delay", "0", "-q"]


def result_bodies(broker: NsqBroker) -> list[dict]:
    """The result topic has no channel, so the broker keeps every result published to it."""
    async def bodies() -> list[bytes]:
        topic = broker.topics.get(RESULTS)
        return [message.body for message, _ in topic.backlog] if topic else []

    return [json.loads(b) for b in broker._call(bodies())]


def shard_ids(out: Path) -> dict[str, list[str]]:
    return {path.name: [row[col.ID] for row in read_shard(path)] for path in sorted(out.glob("result_stream.*.csv"))}


def test_three_workers_one_killed_every_image_once_and_merge_equals_batch(tmp_path, images, clip_dir, inception_weights):
    out = tmp_path / "stream"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AIGC_EVAL_CACHE": str(tmp_path / "stream-cache")}
    with NsqBroker() as broker:
        def start(name: str) -> subprocess.Popen:
            return subprocess.Popen(worker_cmd(broker, out, name, clip_dir, inception_weights), env=env,
                                    stderr=subprocess.PIPE, text=True)

        workers = {name: start(name) for name in ("w0", "w1", "w2")}
        assert broker.wait_until(lambda: broker.stats(TOPIC, CHANNEL)["clients"] == 3, timeout=90), "workers did not connect"
        started = time.monotonic()

        def publish_steadily() -> None:
            broker.publish(TOPIC, MALFORMED)
            for first in range(0, REQUESTS, 15):
                broker.publish(TOPIC, [body(i, images) for i in range(first, first + 15)])
                time.sleep(0.4)

        publisher = threading.Thread(target=publish_steadily)
        publisher.start()
        shard0 = out / "result_stream.w0.csv"
        assert broker.wait_until(lambda: shard0.exists() and len(read_shard(shard0)) >= 6, timeout=60)
        workers["w0"].send_signal(signal.SIGKILL)
        workers["w0"].wait()
        before_kill = {row[col.ID] for row in read_shard(shard0)}
        with open(shard0, "ab") as handle:  # as if the kill had landed in the middle of a write
            handle.write('r-999_0,"半'.encode())
        with open(out / "result_stream.w0.logits.jsonl", "ab") as handle:
            handle.write(b'{"id": "r-999_0", "logits')
        publisher.join()
        workers["w0"] = start("w0")
        assert broker.wait_until(lambda: broker.stats(TOPIC, CHANNEL)["clients"] == 3, timeout=60), "w0 did not come back"
        done = lambda: set().union(*map(set, shard_ids(out).values())) >= expected_ids() and \
            broker.stats(TOPIC, CHANNEL)["in_flight"] == broker.stats(TOPIC, CHANNEL)["depth"] == 0  # noqa: E731
        assert broker.wait_until(done, timeout=120), "not every image was scored"
        elapsed = time.monotonic() - started
        for proc in workers.values():
            proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(timeout=30) for name, proc in workers.items()}
        errors = {name: proc.stderr.read() for name, proc in workers.items()}
        assert set(codes.values()) <= {0, 1}, errors
        stats = broker.stats(TOPIC, CHANNEL)
        results = result_bodies(broker)

    # Every image in the shards, never twice in one; in two shards only when the killed worker
    # had fsynced it before the kill, too late to FIN (the merge keeps one copy).
    ids = shard_ids(out)
    assert all(len(found) == len(set(found)) for found in ids.values())
    owners = collections.defaultdict(list)
    for shard, found in ids.items():
        for image_id in found:
            owners[image_id].append(shard)
    assert set(owners) == expected_ids()
    twice = {image_id for image_id, shards in owners.items() if len(shards) > 1}
    assert twice <= before_kill, twice - before_kill
    assert (out / "result_stream.w0.csv.torn").read_bytes() == 'r-999_0,"半'.encode()
    assert stats["in_flight"] == stats["depth"] == stats["deferred"] == 0 and stats["clients"] == 0
    letters = [json.loads(line) for path in out.glob("*.dead_letter.jsonl") for line in path.read_text().splitlines()]
    assert sorted(letter["body"] for letter in letters) == sorted(b.decode() for b in MALFORMED)
    assert {r[col.KEY_RESULT_ID] for r in results} == expected_ids()
    assert all(r[col.KEY_RESULT_REQUEST_ID] == r[col.KEY_RESULT_ID].rsplit("_", 1)[0] for r in results)
    print(f"\n{len(expected_ids())} images, {stats['delivered']} deliveries, {stats['timed_out']} timed out after the "
          f"kill, {len(twice)} in two shards, {len(results)} results, {len(before_kill)} in w0 before the kill, "
          f"{elapsed:.1f} s from first publish to done")

    # main.py --shards against main.py --input over the same images, ordered by id as the merge orders them.
    merged_dir, batch_dir = tmp_path / "merged", tmp_path / "batch"
    batch_dir.mkdir()
    rows = sorted((row for i in range(REQUESTS) for row in message_to_rows(body(i, images), "", 0)), key=lambda r: r[col.ID])
    batch_input = write_csv(batch_dir / "input.csv", [{k: r[k] for k in (col.ID, col.PROMPT, col.IMAGE_URL,
                                                                           col.PRODUCT_IMAGE_URL, col.CATEGORY)} for r in rows])
    common = ["--model", "RN50", "--model-dir", str(clip_dir), "--weights", str(inception_weights), "--device", "cpu",
              "--precision", "fp32", "--batch-size", "1", "--no-report", "-q"]

    def outputs(folder: Path) -> list[str]:
        folder.mkdir(exist_ok=True)
        pairs = (("clip-result", "result_clip.csv"), ("is-result", "result_is.csv"), ("product-result", "result_product.csv"),
                 ("output", "result_total.csv"), ("category-output", "result_category.csv"))
        return [arg for name, file in pairs for arg in (f"--{name}", str(folder / file))]

    assert score_main(["--shards", str(out / "result_stream.*.csv"), *outputs(merged_dir), *common]) == 0
    assert score_main(["--input", str(batch_input), "--cache-dir", str(tmp_path / "batch-cache"), *outputs(batch_dir),
                       *common]) == 0
    assert_same_outputs(merged_dir, batch_dir)


def close(a: str, b: str, tolerance: float = 1e-6) -> bool:
    if a == b:
        return True
    return bool(a and b) and math.isclose(float(a), float(b), rel_tol=0, abs_tol=tolerance + 1e-9)


def assert_same_outputs(merged: Path, batch: Path) -> None:
    """Scores within 1e-6 (fp32 batches of other sizes), the same statuses, reasons and IS."""
    total_m, total_b = read_csv(merged / "result_total.csv"), read_csv(batch / "result_total.csv")
    assert [r[col.ID] for r in total_m] == [r[col.ID] for r in total_b]
    for m, b in zip(total_m, total_b):
        for name in (col.CLIP_SCORE, col.TOP1_CONFIDENCE, col.KL, col.CLIP_NORM, col.IS_NORM, col.TOTAL_SCORE,
                     "product_score"):
            assert close(m[name], b[name]), (m[col.ID], name, m[name], b[name])
        for name in (col.STATUS, col.ERROR, col.TOP1_LABEL, col.PROMPT, col.RAW_PROMPT, "product_issues", col.CATEGORY):
            assert m[name] == b[name], (m[col.ID], name)
        assert [r.split(" ")[0] for r in m[col.REGENERATE].split("; ")] == [r.split(" ")[0] for r in b[col.REGENERATE].split("; ")]
    checked = [sum(1 for r in rows if r["product_score"]) for rows in (total_m, total_b)]
    assert len(total_m) == 150 and checked[0] == checked[1] > 0
    is_m, is_b = (json.loads((folder / "result_is.json").read_text()) for folder in (merged, batch))
    for key in (col.KEY_IS_MEAN, col.KEY_IS_STD, col.KEY_IS_CI_LOW, col.KEY_IS_CI_HIGH):
        assert math.isclose(is_m[key], is_b[key], rel_tol=1e-6), key
    assert is_m[col.KEY_NUM_IMAGES] == is_b[col.KEY_NUM_IMAGES] == 150 and is_m[col.KEY_SPLITS] == is_b[col.KEY_SPLITS]
    assert is_m[col.KEY_PER_CATEGORY].keys() == is_b[col.KEY_PER_CATEGORY].keys()
    cat_m, cat_b = read_csv(merged / "result_category.csv"), read_csv(batch / "result_category.csv")
    assert [(r["category"], r["count"], r["regenerate_count"]) for r in cat_m] == \
        [(r["category"], r["count"], r["regenerate_count"]) for r in cat_b]
    assert all(math.isclose(float(m["inception_score"]), float(b["inception_score"]), rel_tol=1e-6) for m, b in zip(cat_m, cat_b))


def test_results_nsqd_never_acknowledged_are_published_by_the_next_start(tmp_path, images, clip_dir, inception_weights):
    """Publishing to an nsqd that is gone never loses a result: the rows are on disk, unmarked,
    and the next start of the same worker publishes them (then only the new ones)."""
    with NsqBroker() as gone:
        dead_address = gone.tcp_address
    out = tmp_path / "stream"
    with NsqBroker() as broker:
        broker.publish(TOPIC, [body(i, images) for i in range(6)])
        cmd = worker_cmd(broker, out, "w1", clip_dir, inception_weights)[2:]
        assert stream_main([*cmd, "--result-nsqd-tcp-address", dead_address, "--idle-timeout", "1.5"]) == 0
        assert len(read_shard(out / "result_stream.w1.csv")) == 6 and result_bodies(broker) == []
        assert not (out / "result_stream.w1.published.jsonl").read_bytes()
        broker.publish(TOPIC, [body(i, images) for i in range(6, 8)])
        assert stream_main([*cmd, "--idle-timeout", "1.5"]) == 0
        results = result_bodies(broker)
    assert sorted(r[col.KEY_RESULT_ID] for r in results) == sorted(f"r-{i}_0" for i in range(8))
    marks = [json.loads(line)["id"] for line in (out / "result_stream.w1.published.jsonl").read_text().splitlines()]
    assert sorted(marks) == sorted(f"r-{i}_0" for i in range(8))
