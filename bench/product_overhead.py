"""What the product check costs main.py --input: the same images scored with and without cut-outs.

    .venv/bin/python -m bench.product_overhead                 # 120 images, 3 rounds
    .venv/bin/python -m bench.product_overhead --images 16 --repeat 1   # a quick smoke run

Writes full-size random-initialised models (Chinese-CLIP ViT-B-16, Inception-v3) and the
benchmark's product images with the cut-out each was made from, serves them from a local HTTP
server with a per-request latency, and times score_csv (main.py --input's scoring) on the same
CSV with a cold cache, with the product check (the CSV's product_image_url column) and without
it (--no-product), the two taking turns in each round. Each counts as its fastest round, as in
bench/run_bench.py; the ratio with/without is the issue's target (>= 85%). Prints the figures.
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
from aigc_eval.product.stage import ProductOptions
from aigc_eval.scoring.combined import score_csv
from aigc_eval.scoring.model_loading import resolve_device
from aigc_eval.scoring.prompt_cleaning import CleaningOptions
from aigc_eval.scoring.runtime import RuntimeOptions
from bench.product_images import (
    PROMPT_SUBJECTS,
    SlowImageServer,
    cutout_name,
    prompt_for,
    write_images,
)
from bench.random_checkpoints import save_cn_clip_checkpoint, save_inception_state_dict
from bench.run_bench import machine


def write_product_input(path: Path, base_url: str, images: list[Path]) -> None:
    """A CSV of the images with their cut-outs' URLs in product_image_url."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[col.ID, col.PROMPT, col.IMAGE_URL, col.PRODUCT_IMAGE_URL, col.CATEGORY])
        writer.writeheader()
        for i, image in enumerate(images):
            writer.writerow({col.ID: f"p-{i}", col.PROMPT: prompt_for(i), col.IMAGE_URL: f"{base_url}/{image.name}",
                             col.PRODUCT_IMAGE_URL: f"{base_url}/{cutout_name(image)}",
                             col.CATEGORY: PROMPT_SUBJECTS[i % len(PROMPT_SUBJECTS)]})


def run(images: int, latency: float, repeat: int, batch_size: int, workers: int, precision: str,
        product_clip: bool = False) -> dict[str, object]:
    """Time both runs `repeat` times each (and, with `product_clip`, a third with the opt-in
    CLIP-space product similarity too) and return images/s per round and the ratio of the
    fastest."""
    device = resolve_device(None)
    with tempfile.TemporaryDirectory(prefix="aigc-product-bench-") as tmp:
        work = Path(tmp)
        print(f"machine: {machine(device)}", file=sys.stderr)
        paths = write_images(work / "images", images, cutouts=True)
        models = {"clip": work / "clip", "inception": work / "inception_v3.pth"}
        save_cn_clip_checkpoint("ViT-B-16", models["clip"])
        save_inception_state_dict(models["inception"], [Image.open(p) for p in paths[:16]])
        server = SlowImageServer(work / "images", latency)
        try:
            write_product_input(work / "input.csv", server.url, paths)
            kinds = ("with", "without", *(("with_clip",) if product_clip else ()))
            rates: dict[str, list[float]] = {kind: [] for kind in kinds}
            issues = 0
            for round_ in range(repeat):
                for kind in (kinds if round_ % 2 == 0 else kinds[::-1]):
                    tag = f"{kind}{round_}"
                    runtime = RuntimeOptions(None, precision, batch_size, workers,
                                             FetchConfig(cache_dir=work / f"cache-{tag}"), quiet=True)
                    start = time.perf_counter()
                    score_csv(work / "input.csv", work / f"{tag}_clip.csv", work / f"{tag}_is.csv", id_col=col.ID,
                               prompt_col=col.PROMPT, image_col=col.IMAGE_URL, model_name="ViT-B-16",
                               model_dir=models["clip"], weights=models["inception"], splits=10,
                               cleaning=CleaningOptions(), runtime=runtime,
                               product=ProductOptions() if kind != "without" else None,
                               product_output=work / f"{tag}_product.csv", product_clip=kind == "with_clip")
                    rates[kind].append(images / (time.perf_counter() - start))
                    print(f"round {round_ + 1} {LABELS[kind]}: {rates[kind][-1]:.2f} images/s", file=sys.stderr)
                    if kind == "with":
                        with open(work / f"{tag}_product.csv", encoding="utf-8-sig") as handle:
                            issues = sum(1 for row in csv.DictReader(handle) if row["product_issues"])
        finally:
            server.close()
    return {"machine": machine(device), "images": images, "rates": rates, "issues": issues,
            "ratio_fastest": max(rates["with"]) / max(rates["without"]),
            "ratio_by_round": [a / b for a, b in zip(rates["with"], rates["without"])],
            **({"clip_ratio_fastest": max(rates["with_clip"]) / max(rates["without"])} if product_clip else {})}


LABELS = {"with": "with product checks", "without": "without product checks",
          "with_clip": "with product checks and product_clip"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the image server waits per request")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--precision", default="auto", choices=col.PRECISIONS)
    parser.add_argument("--product-clip", action="store_true",
                        help="also time a third run with the opt-in CLIP-space product similarity")
    args = parser.parse_args(argv)
    result = run(args.images, args.latency, args.repeat, args.batch_size, args.workers, args.precision,
                 args.product_clip)
    print(f"machine: {result['machine']}")
    print(f"images: {result['images']}, with product checks: {result['issues']} images flagged with a product issue")
    for kind, rates in result["rates"].items():
        print(f"{LABELS[kind]}: " + ", ".join(f"{r:.2f}" for r in rates) + " images/s")
    print(f"with / without, fastest rounds: {result['ratio_fastest']:.1%} (target >= 85%); by round: "
          + ", ".join(f"{r:.1%}" for r in result["ratio_by_round"]))
    if "clip_ratio_fastest" in result:
        print(f"with product_clip too / without, fastest rounds: {result['clip_ratio_fastest']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
