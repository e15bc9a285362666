"""Load benchmark of the HTTP scoring service (serve.py) with wrk, against main.py --input.

    apt-get install -y wrk
    .venv/bin/python -m bench.bench_service --images 96 --precision fp32
    .venv/bin/python -m bench.bench_service --phases overload --overload-seconds 60 --seconds 40

On the benchmark's product images (bench/product_images.py, served by SlowImageServer with a
per-request latency) and random-initialised checkpoints in the released formats, it:
(1) times main.py --input's scoring (score_csv, in-process, cold and without caches) and
subtracts the models' load time, giving images/s; (2) times one image alone through the scoring
core, fetch plus model work, the floor for a single request's latency; (3) starts serve.py
(--no-cache, so every request costs a fetch and both models) and drives it with wrk at
concurrency 1, 8 and 32, each request a JSON POST of one image from a Lua script cycling over
the images: throughput and p50/p95/p99 latency; (4) starts it again with a small queue and
drives it at concurrency 256 (overload: only 200s and 503s expected) while sampling its resident
memory, then at concurrency 8 again (full speed once the load drops; it starts while the work
admitted during the overload still runs, so give --seconds well over two thirds of serve.py's
--deadline-s). --phases runs a part of these: main (1), floor (2), levels (3), overload (4).
Figures go to stdout (and --json), 200s, 503s and 504s counted apart. Targets: c=32 at least 80%
of main.py's images/s; c=1 p50 at most 1.5x (2); under overload no 504s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aigc_eval import columns as col  # noqa: E402
from aigc_eval.io.image_fetch import FetchConfig  # noqa: E402
from aigc_eval.scoring.combined import score_csv  # noqa: E402
from aigc_eval.scoring.core import ScoringCore  # noqa: E402
from aigc_eval.scoring.prompt_cleaning import CleaningOptions  # noqa: E402
from aigc_eval.scoring.runtime import RuntimeOptions  # noqa: E402
from bench.product_images import SlowImageServer, prompt_for, write_images  # noqa: E402
from bench.random_checkpoints import save_cn_clip_checkpoint, save_inception_state_dict  # noqa: E402
from bench.run_bench import write_input  # noqa: E402

# Per thread: cycles over the bodies from an offset, counts statuses; done() prints one JSON line.
WRK_SCRIPT = r"""
local bodies, i, threads = {}, 0, {}
c200, c503, c504, cother = 0, 0, 0, 0
function setup(thread) table.insert(threads, thread); thread:set("offset", #threads * 7) end
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  i = offset or 0
end
function request()
  i = i % #bodies + 1
  return wrk.format("POST", "/v1/score", {["Content-Type"] = "application/json"}, bodies[i])
end
function response(status, headers, body)
  if status == 200 then c200 = c200 + 1 elseif status == 503 then c503 = c503 + 1
  elseif status == 504 then c504 = c504 + 1 else cother = cother + 1 end
end
function done(summary, latency, requests)
  local s200, s503, s504, sother = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    s200 = s200 + t:get("c200"); s503 = s503 + t:get("c503"); s504 = s504 + t:get("c504"); sother = sother + t:get("cother")
  end
  io.write(string.format('WRK {"seconds": %f, "requests": %d, "timeouts": %d, "p50": %f, "p95": %f, "p99": %f, ' ..
    '"s200": %d, "s503": %d, "s504": %d, "other": %d}\n', summary.duration / 1e6, summary.requests,
    summary.errors.timeout, latency:percentile(50) / 1e6, latency:percentile(95) / 1e6, latency:percentile(99) / 1e6,
    s200, s503, s504, sother))
end
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wrk(url: str, script: Path, bodies: Path, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run; its figures, with ok images/s (200s per second)."""
    threads = max(1, min(connections, 4))
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "120s",
                          "-s", str(script), url, "--", str(bodies)], capture_output=True, text=True, check=True).stdout
    figures = json.loads(next(line[4:] for line in out.splitlines() if line.startswith("WRK ")))
    figures["ok_per_s"] = figures["s200"] / figures["seconds"]
    return figures


class Service:
    """serve.py as a child process on a free port, waited for until ready."""

    def __init__(self, args: list[str], port: int, log: Path | None = None):
        self.url = f"http://127.0.0.1:{port}"
        stderr = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (the child holds it)
        self.process = subprocess.Popen([sys.executable, str(ROOT / "serve.py"), "--port", str(port), "-q", *args],
                                        stderr=stderr)
        end = time.monotonic() + 300
        while time.monotonic() < end:
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"serve.py exited with {self.process.returncode}")
            time.sleep(0.5)
        raise TimeoutError("serve.py not ready")

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(60)


def single_image_floor(rows: list[dict[str, str]], models: dict[str, Path], model: str, runtime: RuntimeOptions,
                       count: int = 8) -> dict[str, float]:
    """Median seconds for one image alone through the scoring core: its fetch, and both models."""
    fetches, models_s = [], []
    with ScoringCore.with_models(model_name=model, model_dir=models["clip"], weights=models["inception"],
                          runtime=runtime) as core:
        core.clip.model.get(), core.inception.model.get()
        for row in rows[:count + 1]:
            start = time.perf_counter()
            prepared = list(core.prepare([row], col.IMAGE_URL))
            fetched = time.perf_counter()
            core.submit(prepared, col.PROMPT)()
            fetches.append(fetched - start)
            models_s.append(time.perf_counter() - fetched)
    fetch, model_s = statistics.median(fetches[1:]), statistics.median(models_s[1:])  # the first warms up
    return {"fetch_s": fetch, "models_s": model_s, "one_image_s": fetch + model_s}


PHASES = ("main", "floor", "levels", "overload")  # --phases: all by default


def run(args: argparse.Namespace) -> dict[str, object]:
    """The phases in args.phases; figures of the others are left out of the result."""
    if not shutil.which("wrk"):
        raise SystemExit("error: wrk is not installed (apt-get install -y wrk)")
    phases = set(args.phases)
    figures: dict[str, object] = {
        "machine": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("model name")), "?") + f", {os.cpu_count()} cores",
        "images": args.images, "model": args.model, "precision": args.precision, "latency_s": args.latency}
    work = Path(tempfile.mkdtemp(prefix="aigc-service-bench-"))
    try:
        paths = write_images(work / "images", args.images)
        models = {"clip": work / "clip", "inception": work / "inception_v3.pth"}
        save_cn_clip_checkpoint(args.model, models["clip"])
        save_inception_state_dict(models["inception"], [Image.open(p) for p in paths[:16]])
        images = SlowImageServer(work / "images", args.latency)
        try:
            rows = write_input(work / "input.csv", images.url, [p.name for p in paths], args.images)
            runtime = RuntimeOptions(device=args.device, precision=args.precision, batch_size=32, workers=4, quiet=True,
                                     fetch=FetchConfig(cache_dir=None))
            if "main" in phases:
                figures.update(time_main(work, models, args, runtime))
            if "floor" in phases:
                print("one image alone ...", file=sys.stderr)
                figures.update(single_image_floor(rows, models, args.model, runtime))
            bodies = work / "bodies.jsonl"
            bodies.write_text("".join(json.dumps({"id": r["id"], "image_url": r["image_url"], "prompt": prompt_for(i),
                                                  "category": r["category"]}, ensure_ascii=False) + "\n"
                                      for i, r in enumerate(rows)), encoding="utf-8")
            script = work / "post.lua"
            script.write_text(WRK_SCRIPT)
            common = ["--model", args.model, "--model-dir", str(models["clip"]), "--weights", str(models["inception"]),
                      "--precision", args.precision, "--no-cache", "--allow-private-urls",
                      "--batch-size", str(args.batch_size), *(["--device", args.device] if args.device else [])]
            if "levels" in phases:
                service = Service([*common, "--max-queue", "64"], args.port, args.service_log)
                levels = figures["levels"] = {}
                try:
                    for connections, seconds in ((1, args.seconds), (8, args.seconds), (32, args.seconds * 3 // 2)):
                        print(f"wrk c={connections} ...", file=sys.stderr)
                        levels[connections] = wrk(service.url, script, bodies, connections, seconds)  # type: ignore[index]
                finally:
                    service.stop()
            if "overload" in phases:
                figures.update(overload(common, args, script, bodies))
        finally:
            images.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "main_images_per_s" in figures and "levels" in figures:
        figures["c32_over_main"] = figures["levels"][32]["ok_per_s"] / figures["main_images_per_s"]  # type: ignore[index]
    if "one_image_s" in figures and "levels" in figures:
        figures["c1_p50_over_one_image"] = figures["levels"][1]["p50"] / figures["one_image_s"]  # type: ignore[index]
    return figures


def time_main(work: Path, models: dict[str, Path], args: argparse.Namespace, runtime: RuntimeOptions) -> dict[str, float]:
    """main.py --input's images/s on the input CSV, the models' load time subtracted."""
    print("main.py --input ...", file=sys.stderr)
    load_start = time.perf_counter()
    with ScoringCore.with_models(model_name=args.model, model_dir=models["clip"], weights=models["inception"],
                          runtime=runtime) as core:
        core.clip.model.get(), core.inception.model.get()
    load_s = time.perf_counter() - load_start
    start = time.perf_counter()
    score_csv(work / "input.csv", work / "clip.csv", work / "is.csv", id_col=col.ID, prompt_col=col.PROMPT,
               image_col=col.IMAGE_URL, model_name=args.model, model_dir=models["clip"],
               weights=models["inception"], splits=10, cleaning=CleaningOptions(), runtime=runtime)
    main_rate = args.images / max(time.perf_counter() - start - load_s, 1e-9)
    return {"main_images_per_s": main_rate, "model_load_s": load_s}


def overload(common: list[str], args: argparse.Namespace, script: Path, bodies: Path) -> dict[str, object]:
    """Concurrency 256 against --max-queue 16 for --overload-seconds while sampling the service's
    resident memory, then concurrency 8 (full speed again?), then SIGTERM."""
    print(f"overload c=256 against --max-queue 16 for {args.overload_seconds}s ...", file=sys.stderr)
    service = Service([*common, "--max-queue", "16"], args.port + 1, args.service_log)
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss_mib(service.process.pid))
            time.sleep(0.5)

    try:
        before = rss_mib(service.process.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            flood = wrk(service.url, script, bodies, 256, args.overload_seconds)
        finally:
            stop.set()
            sampler.join()
        print("c=8 after the overload ...", file=sys.stderr)
        after = wrk(service.url, script, bodies, 8, args.seconds)
        exit_code = service.stop()
    finally:
        if service.process.poll() is None:
            service.process.kill()
    third = max(1, len(samples) // 3)
    return {"overload": flood, "after_overload_c8": after, "exit_code_after_sigterm": exit_code,
            "rss_mib": {"before": before, "first_third_max": max(samples[:third], default=0),
                        "last_third_max": max(samples[-third:], default=0), "max": max(samples, default=0)}}


def report(figures: dict[str, object]) -> str:
    """The figures as text; phases that did not run are left out."""
    lines = [f"machine: {figures['machine']}; {figures['images']} images, {figures['model']}, {figures['precision']}, "
             f"image latency {figures['latency_s']}s"]
    if "main_images_per_s" in figures:
        lines.append(f"main.py --input: {figures['main_images_per_s']:.2f} images/s "
                     f"(model load {figures['model_load_s']:.1f}s excluded)")
    if "one_image_s" in figures:
        lines.append(f"one image alone: fetch {figures['fetch_s'] * 1000:.0f} ms + models "
                     f"{figures['models_s'] * 1000:.0f} ms")
    runs = [(str(c), f) for c, f in figures.get("levels", {}).items()]  # type: ignore[union-attr]
    if "overload" in figures:
        runs += [("256 (q=16)", figures["overload"]), ("8 after", figures["after_overload_c8"])]
    if runs:
        lines.append("concurrency  images/s   p50 s   p95 s   p99 s   200s  503s  504s  other  wrk timeouts")
    for name, f in runs:
        lines.append(f"{name:>11}  {f['ok_per_s']:8.2f}  {f['p50']:6.2f}  {f['p95']:6.2f}  {f['p99']:6.2f}  "
                     f"{f['s200']:5d} {f['s503']:5d} {f['s504']:5d}  {f['other']:5d}  {f['timeouts']:5d}")
    if "rss_mib" in figures:
        rss = figures["rss_mib"]
        lines.append(f"overload RSS MiB: before {rss['before']:.0f}, max in first third {rss['first_third_max']:.0f}, "
                     f"in last third {rss['last_third_max']:.0f}; exit code after SIGTERM "
                     f"{figures['exit_code_after_sigterm']}")
    if "c32_over_main" in figures:
        lines.append(f"c=32 / main.py: {figures['c32_over_main']:.0%} (target >= 80%)")
    if "c1_p50_over_one_image" in figures:
        lines.append(f"c=1 p50 / one image: {figures['c1_p50_over_one_image']:.2f}x (target <= 1.5x)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--model", default="ViT-B-16", help="Chinese-CLIP architecture of the random checkpoint")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", type=int, default=16, help="serve.py --batch-size")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the image server waits per request")
    parser.add_argument("--seconds", type=int, default=20, help="length of each wrk run (c=32: 1.5x)")
    parser.add_argument("--overload-seconds", type=int, default=None,
                        help="length of the c=256 run (default: 2x --seconds)")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                        help="what to run: main.py --input's speed, one image alone, c=1/8/32, the overload "
                             "and the c=8 run after it (e.g. --phases overload)")
    parser.add_argument("--port", type=int, default=18080, help="serve.py's port (the overload run uses the next)")
    parser.add_argument("--service-log", type=Path, default=None,
                        help="append serve.py's stderr (warnings and errors: it runs with -q) to this file")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.overload_seconds is None:
        args.overload_seconds = args.seconds * 2
    figures = run(args)
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
