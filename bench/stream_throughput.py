"""One stream worker against main.py --input on the same images: images/s of each, side by side.

    .venv/bin/python -m bench.stream_throughput                    # 128 images, 3 rounds
    .venv/bin/python -m bench.stream_throughput --images 32 --repeat 1   # a quick smoke run

Writes full-size random-initialised ViT-B-16 and Inception-v3 checkpoints and the benchmark's
product images (bench/product_images.py, served by SlowImageServer with a per-request latency),
starts the project's NSQ test broker (tests/nsq_broker.py) in a process of its own, so its CPU
is billed to neither side and is reported apart, and one evaluate_stream.py worker with its
default settings (precision auto, --batch-size 32, --max-in-flight) and --no-cache.

Both sides are warm, as a worker that has been running is: a warm-up round (untimed) runs the
models at their batch shapes on each side first. Then, in each round, taking turns in order:
- main.py --input's scoring: score_csv (read the CSV, clean, fetch and decode, both models,
  write result_clip.csv, result_is.csv and result_is.json) on a core whose models were loaded
  before the timer started (the models' load is excluded; nothing else is), without a cache;
- the stream: the round's messages (one image each) published at once to the subscribed
  worker, timed in the broker's process from just before the publish to its last FIN.
Every round uses new image URLs and prompts (a round tag), so neither side reuses anything.
Prints images/s per round, their ratio (the issue's target: stream >= 85% of main.py), the
CPU seconds each process used (the bench process for main.py, the worker, the broker) and the
sizes of the worker's batches, read back from its shard. The worker's log goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

from PIL import Image

from aigc_eval import columns as col
from aigc_eval.io.image_fetch import FetchConfig
from aigc_eval.scoring import combined
from aigc_eval.scoring.core import ScoringCore
from aigc_eval.scoring.model_loading import resolve_device
from aigc_eval.scoring.prompt_cleaning import CleaningOptions
from aigc_eval.scoring.runtime import RuntimeOptions
from aigc_eval.stream.shards import read_shard
from bench.product_images import PROMPT_SUBJECTS, SlowImageServer, prompt_for, write_images
from bench.random_checkpoints import save_cn_clip_checkpoint, save_inception_state_dict
from bench.run_bench import machine

ROOT = Path(__file__).resolve().parent.parent
TOPIC, CHANNEL = col.DEFAULT_NSQ_TOPIC, col.DEFAULT_STREAM_CHANNEL
MODEL = "ViT-B-16"


class BrokerProcess:
    """tests/nsq_broker.py's NsqBroker in a child process, driven by lines on its stdin."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "bench.stream_throughput", "--serve-broker"], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.tcp_address = self._reply()["tcp"]

    def _reply(self) -> dict:
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            raise RuntimeError(f"the broker process ended (exit code {self.process.poll()})")
        return json.loads(line)

    def ask(self, *words: object) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write(" ".join(map(str, words)) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def close(self) -> None:
        self.process.terminate()
        self.process.communicate(timeout=10)


def serve_broker() -> None:
    """The child's side: start a broker, print its address, answer `stats`, `mpub` and `wait` lines.

    Each FIN's time is taken in the broker's own FIN handling (its Channel.finish, wrapped here),
    so waiting for the last one costs no polling CPU beside the worker."""
    sys.path.insert(0, str(ROOT / "tests"))
    import nsq_wire
    from nsq_broker import NsqBroker

    fins = threading.Condition()
    last_fin = {"t": 0.0, "count": 0}
    finish = nsq_wire.Channel.finish

    def timed_finish(self, client, message_id: bytes) -> None:
        finish(self, client, message_id)
        with fins:
            last_fin["t"], last_fin["count"] = time.monotonic(), last_fin["count"] + 1
            fins.notify_all()

    nsq_wire.Channel.finish = timed_finish

    def say(obj: dict) -> None:
        print(json.dumps(obj), flush=True)

    with NsqBroker() as broker:
        say({"tcp": broker.tcp_address})
        for line in sys.stdin:
            command, *args = line.split()
            if command == "stats":
                say(broker.stats(args[0], args[1]))
            elif command == "mpub":  # mpub TOPIC FILE: one message per line; the clock and CPU just before
                bodies = Path(args[1]).read_bytes().splitlines()
                started, cpu = time.monotonic(), time.process_time()
                broker.publish(args[0], bodies)
                say({"t": started, "cpu": cpu})
            elif command == "wait":  # wait FINISHED TIMEOUT: the time of the FIN that reached the count
                count, timeout = int(args[0]), float(args[1])
                with fins:
                    reached = fins.wait_for(lambda: last_fin["count"] >= count, timeout)
                say({"t": last_fin["t"], "cpu": time.process_time(), "ok": reached})


def batch_sizes(shard: list[dict[str, str]], tag: str) -> list[int]:
    """The sizes of the batches that scored a round's images, from their rows' scored_at: a batch's
    rows are stamped within milliseconds of each other, batches seconds apart."""
    times = sorted(datetime.fromisoformat(row[col.SCORED_AT]).timestamp() for row in shard if row[col.ID].startswith(tag))
    sizes: list[int] = []
    for previous, current in zip([float("-inf")] + times, times):
        if current - previous > 0.2:
            sizes.append(0)
        sizes[-1] += 1
    return sizes


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_rows(tag: str, base_url: str, names: list[str], count: int) -> list[dict[str, str]]:
    """`count` rows over the images, with URLs and prompts of their own for this round and side."""
    return [{col.ID: f"{tag}-{i}_0", col.PROMPT: f"{prompt_for(i)}，{tag}",
             col.IMAGE_URL: f"{base_url}/{names[i % len(names)]}?{tag}",
             col.CATEGORY: PROMPT_SUBJECTS[i % len(PROMPT_SUBJECTS)]} for i in range(count)]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@contextlib.contextmanager
def reused_core(core: ScoringCore) -> Iterator[None]:
    """score_csv opens this already-loaded core (fresh per-run state) instead of loading the models."""
    @contextlib.contextmanager
    def open_loaded(**_: object) -> Iterator[ScoringCore]:
        inception = copy.copy(core.inception)
        inception.rows, inception.errors, inception._logits = [], [], []
        yield ScoringCore(copy.copy(core.clip), inception, core.lanes, core.runtime, core.product)

    original = combined.ScoringCore
    combined.ScoringCore = type("LoadedCore", (), {"open": staticmethod(open_loaded)})  # type: ignore[misc]
    try:
        yield
    finally:
        combined.ScoringCore = original  # type: ignore[misc]


def time_main(work: Path, tag: str, rows: list[dict[str, str]], models: dict[str, Path], runtime: RuntimeOptions) -> float:
    """Seconds of score_csv on `rows` (the core patched in by reused_core); checks every image scored."""
    input_csv = write_csv(work / f"{tag}.csv", rows)
    start = time.perf_counter()
    combined.score_csv(input_csv, work / f"{tag}_clip.csv", work / f"{tag}_is.csv", id_col=col.ID,
                        prompt_col=col.PROMPT, image_col=col.IMAGE_URL, model_name=MODEL, model_dir=models["clip"],
                        weights=models["inception"], splits=10, cleaning=CleaningOptions(), runtime=runtime)
    seconds = time.perf_counter() - start
    with open(work / f"{tag}_clip.csv", encoding="utf-8-sig") as handle:
        scored = sum(row[col.STATUS] == col.STATUS_OK for row in csv.DictReader(handle))
    if scored < len(rows):
        raise RuntimeError(f"main.py did not score every image of {tag}: see {work / f'{tag}_clip.csv'}")
    return seconds


def time_stream(broker: BrokerProcess, work: Path, tag: str, rows: list[dict[str, str]], finished_before: int,
                worker_pid: int) -> tuple[float, float, float]:
    """(seconds from publish to the last FIN, worker CPU s, broker CPU s) for `rows` as messages."""
    bodies = work / f"{tag}.jsonl"
    bodies.write_text("".join(json.dumps({"request_id": row[col.ID][:-2], "prompt": row[col.PROMPT],
                                          "image_url": row[col.IMAGE_URL], "category": row[col.CATEGORY]},
                                         ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    worker_cpu = cpu_seconds(worker_pid)
    sent = broker.ask("mpub", TOPIC, bodies)
    done = broker.ask("wait", finished_before + len(rows), 3600)
    if not done["ok"]:
        raise RuntimeError(f"the worker did not FINish {tag} in time")
    return done["t"] - sent["t"], cpu_seconds(worker_pid) - worker_cpu, done["cpu"] - sent["cpu"]


def run(images: int, repeat: int, latency: float, precision: str) -> dict[str, object]:
    """Time both sides `repeat` times, taking turns; images/s and CPU seconds per round."""
    device = resolve_device(None)
    figures: dict[str, list] = {key: [] for key in ("main", "stream", "main_cpu", "worker_cpu", "broker_cpu")}
    with tempfile.TemporaryDirectory(prefix="aigc-stream-bench-") as tmp:
        work = Path(tmp)
        print(f"machine: {machine(device)}", file=sys.stderr)
        paths = write_images(work / "images", images)
        names = [path.name for path in paths]
        models = {"clip": work / "clip", "inception": work / "inception_v3.pth"}
        save_cn_clip_checkpoint(MODEL, models["clip"])
        save_inception_state_dict(models["inception"], [Image.open(p) for p in paths[:16]])
        server, broker, worker = SlowImageServer(work / "images", latency), BrokerProcess(), None
        try:
            (work / "shards").mkdir()
            worker = subprocess.Popen(
                [sys.executable, str(ROOT / "evaluate_stream.py"), "--nsqd-tcp-address", broker.tcp_address,
                 "--output-dir", str(work / "shards"), "--worker-name", "bench", "--model", MODEL,
                 "--model-dir", str(models["clip"]), "--weights", str(models["inception"]), "--precision", precision,
                 "--no-cache"], cwd=ROOT)  # its last line (stderr) counts its batches
            runtime = RuntimeOptions(None, precision, 32, 4, FetchConfig(cache_dir=None), quiet=True)
            with ScoringCore.with_models(model_name=MODEL, model_dir=models["clip"], weights=models["inception"],
                                  runtime=runtime) as core, reused_core(core):
                for model in (core.clip.model, core.inception.model):
                    core.lanes.submit(model.get).result()  # loaded in a lane, as score_csv loads them
                while broker.ask("stats", TOPIC, CHANNEL)["clients"] < 1:
                    if worker.poll() is not None:
                        raise RuntimeError(f"the worker exited with {worker.returncode}")
                    time.sleep(0.2)
                finished = 0
                for round_ in range(repeat + 1):  # round 0 warms both sides up, untimed
                    count = min(images, 64) if round_ == 0 else images
                    for side in (("main", "stream") if round_ % 2 else ("stream", "main")):
                        tag = f"r{round_}{side[0]}"
                        rows = round_rows(tag, server.url, names, count)
                        if side == "main":
                            cpu = time.process_time()
                            seconds = time_main(work, tag, rows, models, runtime)
                            cpu = time.process_time() - cpu
                        else:
                            seconds, worker_cpu, broker_cpu = time_stream(broker, work, tag, rows, finished, worker.pid)
                            finished += count
                        if round_ == 0:
                            continue
                        figures[side].append(count / seconds)
                        if side == "main":
                            figures["main_cpu"].append(cpu)
                        else:
                            figures["worker_cpu"].append(worker_cpu)
                            figures["broker_cpu"].append(broker_cpu)
                        print(f"round {round_} {side}: {count / seconds:.2f} images/s", file=sys.stderr)
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)
            shard = read_shard(work / "shards" / f"{col.DEFAULT_STREAM_PREFIX}.bench.csv")
            bad = [row[col.ID] for row in shard if row[col.IMAGE_ERROR] or row[col.STATUS] != col.STATUS_OK]
            if len(shard) != finished or bad:
                raise RuntimeError(f"the shard has {len(shard)} rows for {finished} messages; not scored: {bad[:5]}")
            figures["batches"] = [batch_sizes(shard, f"r{round_}s-") for round_ in range(1, repeat + 1)]
        finally:
            if worker is not None and worker.poll() is None:
                worker.kill()
            broker.close()
            server.close()
    return {"machine": machine(device), "images": images, **figures,
            "ratio_by_round": [s / m for s, m in zip(figures["stream"], figures["main"])],
            "ratio_fastest": max(figures["stream"]) / max(figures["main"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=128, help="images per round and side")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (after one untimed warm-up round)")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the image server waits per request")
    parser.add_argument("--precision", default="auto", choices=col.PRECISIONS)
    parser.add_argument("--serve-broker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_broker:
        serve_broker()
        return 0
    result = run(args.images, args.repeat, args.latency, args.precision)
    print(f"machine: {result['machine']}; {result['images']} images per round and side")
    print("main.py --input: " + ", ".join(f"{r:.2f}" for r in result["main"]) + " images/s")
    print("stream worker:   " + ", ".join(f"{r:.2f}" for r in result["stream"]) + " images/s")
    print("stream / main.py by round: " + ", ".join(f"{r:.1%}" for r in result["ratio_by_round"])
          + f"; fastest / fastest: {result['ratio_fastest']:.1%} (target >= 85%)")
    print("CPU s per round: main.py " + ", ".join(f"{c:.1f}" for c in result["main_cpu"])
          + "; worker " + ", ".join(f"{c:.1f}" for c in result["worker_cpu"])
          + "; broker (its own process) " + ", ".join(f"{c:.2f}" for c in result["broker_cpu"]))
    print("stream batch sizes by round: " + "; ".join(" ".join(map(str, sizes)) for sizes in result["batches"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
