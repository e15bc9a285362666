"""--calibration in the batch run, the service and a stream worker: the same p_accept for the same
images from all three, the learned weights in total_score, the p_accept reason in regenerate, and
a calibration made for another metric set refused in one line."""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import ROOT, photo, read_csv, write_csv
from nsq_broker import NsqBroker
from PIL import Image
from service_harness import ImageHost, product_scene, running, settings

from aigc_eval import columns as col
from aigc_eval.calibration import model as md
from aigc_eval.calibration.terms import definition_versions
from aigc_eval.cli.score import main as score_main
from aigc_eval.product import names as pn
from aigc_eval.stream.shards import read_shard

METRICS = ["clip", "inception", "product"]
INTERCEPT, PRODUCT_WEIGHT, THRESHOLD = -1.0, 4.0, 0.5


def write_calibration(path: Path, metrics: list[str] = METRICS) -> Path:
    """A calibration.json in calibrate.py's format whose only signal is the product term (CLIP and
    Inception weight 0: a stream has no Inception term, and the random checkpoints' CLIP none)."""
    weights = {name: (PRODUCT_WEIGHT if name == "product" else 0.0) for name in metrics}
    path.write_text(json.dumps({
        md.K_FORMAT: md.FORMAT, md.K_FORMAT_VERSION: md.FORMAT_VERSION, md.K_METRICS: metrics,
        md.K_DEFINITIONS: definition_versions(metrics), md.K_TERMS: metrics,
        md.K_MODEL: {md.K_INTERCEPT: INTERCEPT, md.K_WEIGHTS: weights, md.K_FILLS: {n: 0.5 for n in metrics}},
        md.K_CATEGORIES: {}, md.K_CALIBRATOR: {"kind": "platt", "a": 1.0, "b": 0.0}, md.K_THRESHOLD: THRESHOLD,
        md.K_LABELS: {"count": 0}, md.K_CV: {}, md.K_TOOL_VERSION: "test", md.K_CREATED_AT: "2026-12-06T00:00:00Z",
    }))
    return path


def expected_p(product_score: float | None) -> float:
    z = INTERCEPT + PRODUCT_WEIGHT * (0.5 if product_score is None else product_score)
    return 1 / (1 + math.exp(-z))


@pytest.fixture
def scenes(tmp_path) -> dict[str, Path]:
    """A product scene, the same scene with its colours swapped, a photo without the product, the cut-out."""
    scene, cutout = product_scene()
    files = {"scene.png": scene, "cutout.png": cutout}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    r, g, b = Image.open(tmp_path / "scene.png").convert("RGB").split()
    Image.merge("RGB", (b, g, r)).save(tmp_path / "swapped.png")
    photo((160, 128), seed=5).save(tmp_path / "plain.png")
    return {name: tmp_path / name for name in ("scene.png", "swapped.png", "plain.png", "cutout.png")}


def test_the_same_p_accept_from_the_batch_run_the_service_and_a_stream_worker(tmp_path, scenes, clip_dir,
                                                                              inception_weights):
    calibration = write_calibration(tmp_path / "calibration.json")
    names = ["scene.png", "swapped.png", "plain.png"]
    rows = [{"id": f"r-{i}_0", "prompt": "白色背景上的红色咖啡杯", "image_url": name, "category": "杯子",
             "product_image_url": "cutout.png"} for i, name in enumerate(names)]
    write_csv(tmp_path / "input.csv", rows)
    common = ["--model", "RN50", "--model-dir", str(clip_dir), "--weights", str(inception_weights), "--device", "cpu",
              "--precision", "fp32", "--calibration", str(calibration), "-q"]
    store = tmp_path / "history.sqlite"
    batch_args = ["--input", str(tmp_path / "input.csv"), "--output", str(tmp_path / "total.csv"),
                  "--clip-result", str(tmp_path / "c.csv"), "--is-result", str(tmp_path / "i.csv"),
                  "--product-result", str(tmp_path / "p.csv"), "--report", str(tmp_path / "report.html"),
                  "--store", str(store), *common]
    assert score_main(batch_args) == 0
    assert score_main(batch_args) == 0  # a rerun of the same input is the same run in the store
    batch = {r[col.ID]: r for r in read_csv(tmp_path / "total.csv")}
    for row in batch.values():
        product = float(row[pn.PRODUCT_SCORE])
        assert float(row[col.P_ACCEPT]) == pytest.approx(expected_p(product), abs=1e-6)
        assert float(row[col.TOTAL_SCORE]) == pytest.approx(product, abs=1e-6)  # the learned weights: product only
        flagged = f"p_accept {float(row[col.P_ACCEPT]):.2f} < {THRESHOLD:.2f}"
        assert (flagged in row[col.REGENERATE]) == (float(row[col.P_ACCEPT]) < THRESHOLD)
    assert len({row[col.P_ACCEPT] for row in batch.values()}) >= 2  # the product term tells the images apart
    assert "calibration" in (tmp_path / "report.html").read_text(encoding="utf-8")

    host = ImageHost({f"/{name}": scenes[name].read_bytes() for name in [*names, "cutout.png"]})
    try:
        with running(settings(clip_dir, inception_weights, None, allow_private_urls=True, calibration=calibration,
                              store=str(store))) as url:
            served = {}
            for row in rows:
                body = {"id": row["id"], "prompt": row["prompt"], "category": row["category"],
                        "image_url": f"{host.url}/{row['image_url']}", "product_image_url": f"{host.url}/cutout.png"}
                (served[row["id"]],) = requests.post(f"{url}/v1/score", json=body, timeout=60).json()["results"]
    finally:
        host.close()

    out = tmp_path / "stream"
    with NsqBroker() as broker:
        worker = subprocess.Popen([sys.executable, str(ROOT / "evaluate_stream.py"), "--nsqd-tcp-address",
                                   broker.tcp_address, "--output-dir", str(out), "--worker-name", "w0", "--store",
                                   str(store), *common],
                                  stderr=subprocess.PIPE, text=True)
        try:
            assert broker.wait_until(lambda: broker.stats("generate_img_data_collect_topic",
                                                          "aigc_image_eval_stream")["clients"] == 1, timeout=90)
            broker.publish("generate_img_data_collect_topic", [json.dumps({
                "request_id": row["id"].rsplit("_", 1)[0], "prompt": row["prompt"], "category": row["category"],
                "image_url": str(tmp_path / row["image_url"]), "product_image_url": str(scenes["cutout.png"])},
                ensure_ascii=False).encode() for row in rows])
            shard = out / "result_stream.w0.csv"

            async def bodies():
                topic = broker.topics.get("generate_img_score_topic")
                return [message.body for message, _ in topic.backlog] if topic else []

            assert broker.wait_until(lambda: shard.exists() and len(read_shard(shard)) == 3
                                     and len(broker._call(bodies())) >= 3, timeout=120)
            published = {m[col.KEY_RESULT_ID]: m for m in map(json.loads, broker._call(bodies()))}
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
    for image_id, row in batch.items():
        p = float(row[col.P_ACCEPT])
        assert served[image_id]["p_accept"] == pytest.approx(p, abs=1e-6)
        assert published[image_id][col.KEY_RESULT_P_ACCEPT] == pytest.approx(p, abs=1e-6)
    # Each of the three recorded its images in the store once, with the same p_accept (the batch run
    # with its CLIP embeddings), under its own run and source.
    with sqlite3.connect(store) as db:
        stored = db.execute("SELECT r.source, s.image_id, s.p_accept, s.embedding IS NOT NULL FROM scores s "
                            "JOIN runs r ON r.run_id = s.run_id").fetchall()
        calibrations = {row[0] for row in db.execute("SELECT calibration_hash FROM runs")}
    assert sorted(source for source, *_ in stored) == ["batch"] * 3 + ["service"] * 3 + ["stream"] * 3
    for source, image_id, p, has_embedding in stored:
        assert p == pytest.approx(float(batch[image_id][col.P_ACCEPT]), abs=1e-6)
        assert has_embedding == (source != "stream")
    assert len(calibrations) == 1 and None not in calibrations


def test_a_calibration_for_another_metric_set_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    calibration = write_calibration(tmp_path / "calibration.json", ["clip", "product"])
    write_csv(tmp_path / "result_clip.csv", [{"id": "a", col.CLIP_SCORE: "0.3", col.STATUS: "ok", col.ERROR: ""}])
    write_csv(tmp_path / "result_is.csv", [{"id": "a", col.KL: "1.0", col.TOP1_LABEL: "cup", col.TOP1_CONFIDENCE: "0.5",
                                            col.STATUS: "ok", col.ERROR: ""}])
    monkeypatch.chdir(tmp_path)
    assert score_main(["--calibration", str(calibration), "--no-report", "-q"]) == 2
    err = capsys.readouterr().err
    assert "made for the metrics clip, product" in err and err.count("\n") == 1
    assert not (tmp_path / "result_total.csv").exists()
