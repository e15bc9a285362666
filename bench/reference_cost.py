"""What --reference costs main.py --input: the same generated images scored without a reference,
with a reference set of the same size (its features computed), and again (its features cached).

    .venv/bin/python -m bench.reference_cost                 # 60 + 60 images, 2 rounds
    .venv/bin/python -m bench.reference_cost --images 8 --repeat 1   # a quick smoke run

Full-size random-initialised ViT-B-16 and Inception-v3, the benchmark's product images served with
20 ms latency: two generated sets and a reference set, of equal size and all different images. In
each round: generated set 1 without a reference (fresh cache) and with one (another fresh cache:
the reference is fetched and goes through both models once); then generated set 2 with the same
reference in that second cache (its features now come from the cache, set 2's are new) and without
one (a fresh cache). Targets (the issue's): cold - without at most the time of scoring the reference
once, i.e. cold <= 2 x without with equal sizes; warm under 5% more than without.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from aigc_eval import columns as col
from aigc_eval.io.image_fetch import FetchConfig
from aigc_eval.scoring.combined import score_csv
from aigc_eval.scoring.model_loading import resolve_device
from aigc_eval.scoring.prompt_cleaning import CleaningOptions
from aigc_eval.scoring.runtime import RuntimeOptions
from bench.product_images import (
    PROMPT_SUBJECTS,
    SlowImageServer,
    prompt_for,
    write_images,
)
from bench.random_checkpoints import save_cn_clip_checkpoint, save_inception_state_dict
from bench.run_bench import machine


def _write(path: Path, base_url: str, images: list[Path], prompts: bool) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[col.ID, col.PROMPT, col.IMAGE_URL, col.CATEGORY])
        writer.writeheader()
        for i, image in enumerate(images):
            writer.writerow({col.ID: f"{path.stem}-{i}", col.PROMPT: prompt_for(i) if prompts else "",
                             col.IMAGE_URL: f"{base_url}/{image.name}", col.CATEGORY: PROMPT_SUBJECTS[i % 2]})


def run(images: int, latency: float, repeat: int, precision: str) -> dict[str, list[float]]:
    """Seconds of each of the three runs, per round."""
    device = resolve_device(None)
    times: dict[str, list[float]] = {"without": [], "cold": [], "warm": [], "without 2": []}
    with tempfile.TemporaryDirectory(prefix="aigc-reference-bench-") as tmp:
        work = Path(tmp)
        print(f"machine: {machine(device)}", file=sys.stderr)
        paths = write_images(work / "images", 3 * images)
        models = {"clip": work / "clip", "inception": work / "inception_v3.pth"}
        save_cn_clip_checkpoint("ViT-B-16", models["clip"])
        save_inception_state_dict(models["inception"], [Image.open(p) for p in paths[:16]])
        server = SlowImageServer(work / "images", latency)
        try:
            _write(work / "generated1.csv", server.url, paths[:images], prompts=True)
            _write(work / "generated2.csv", server.url, paths[images:2 * images], prompts=True)
            _write(work / "reference.csv", server.url, paths[2 * images:], prompts=False)
            for round_ in range(repeat):
                plan = {"without": ("generated1", "fresh-1", False), "cold": ("generated1", "shared", True),
                        "warm": ("generated2", "shared", True), "without 2": ("generated2", "fresh-2", False)}
                for kind, (generated, cache, with_reference) in plan.items():
                    fetch = FetchConfig(cache_dir=work / f"cache-{round_}-{cache}")
                    start = time.perf_counter()
                    score_csv(work / f"{generated}.csv", work / "clip.csv", work / "is.csv", id_col=col.ID,
                               prompt_col=col.PROMPT, image_col=col.IMAGE_URL, model_name="ViT-B-16",
                               model_dir=models["clip"], weights=models["inception"], splits=10,
                               cleaning=CleaningOptions(), runtime=RuntimeOptions(None, precision, 32, 4, fetch, True),
                               reference=work / "reference.csv" if with_reference else None,
                               distribution_output=work / "distribution.json")
                    times[kind].append(time.perf_counter() - start)
                    print(f"round {round_ + 1} {kind}: {times[kind][-1]:.1f} s", file=sys.stderr)
        finally:
            server.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60, help="generated images, and as many reference images")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=col.PRECISIONS)
    args = parser.parse_args(argv)
    times = run(args.images, args.latency, args.repeat, args.precision)
    best = {kind: min(values) for kind, values in times.items()}
    print(f"machine: {machine(resolve_device(None))}")
    for kind, values in times.items():
        print(f"{kind:>7}: " + ", ".join(f"{v:.1f}" for v in values) + " s")
    print(f"cold reference / without: {best['cold'] / best['without']:.2f}x (target <= 2x with equal sizes); "
          f"warm reference / without: {best['warm'] / best['without 2']:.3f}x (target < 1.05x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
