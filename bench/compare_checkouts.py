"""(b) of bench.run_bench for two checkouts side by side: is a change as fast as the code before it?

    git worktree add /tmp/before <commit>
    .venv/bin/python -m bench.compare_checkouts /tmp/before --images 200 --repeat 3

One set of full-size random models (ViT-B-16, Inception-v3) and one image server with a per-request
latency (bench.run_bench's) serve both; each round runs `main.py --input` of this checkout and of the
other one as (b) runs it (defaults, cold cache, no report), in alternating order, each in a fresh
process of this interpreter (imports and model loading included, the same for both). Each side
counts its fastest round, as run_bench does; the ratio of those, every round and the CPU are shown.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.product_images import SlowImageServer, write_images  # noqa: E402
from bench.random_checkpoints import save_cn_clip_checkpoint, save_inception_state_dict  # noqa: E402
from bench.run_bench import machine, write_input  # noqa: E402


def run_main(checkout: Path, work: Path, input_csv: Path, models: dict[str, Path], tag: str, batch_size: int) -> float:
    """Seconds of one `main.py --input` of `checkout` with a cold cache."""
    out = work / tag
    out.mkdir(exist_ok=True)
    command = [sys.executable, str(checkout / "main.py"), "--input", str(input_csv), "--model", "ViT-B-16",
               "--model-dir", str(models["clip"]), "--weights", str(models["inception"]), "--batch-size", str(batch_size),
               "--cache-dir", str(out / "cache"), "--no-report", "-q"]
    start = time.perf_counter()
    subprocess.run(command, cwd=out, check=True, capture_output=True, timeout=3600)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="the other checkout (a git worktree of the commit to compare with)")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    import torch

    print(f"machine: {machine(torch.device('cpu'))}", file=sys.stderr)
    seconds: dict[str, list[float]] = {"this": [], "other": []}
    with tempfile.TemporaryDirectory(prefix="aigc-compare-") as tmp:
        work = Path(tmp)
        paths = write_images(work / "images", args.images)
        models = {"clip": work / "clip", "inception": work / "inception_v3.pth"}
        save_cn_clip_checkpoint("ViT-B-16", models["clip"])
        save_inception_state_dict(models["inception"], [Image.open(p) for p in paths[:16]])
        server = SlowImageServer(work / "images", args.latency)
        try:
            write_input(work / "input.csv", server.url, [p.name for p in paths], args.images)
            for round_ in range(args.repeat):
                order = ("this", "other") if round_ % 2 == 0 else ("other", "this")
                for side in order:
                    checkout = ROOT if side == "this" else args.other.resolve()
                    took = run_main(checkout, work, work / "input.csv", models, f"{side}{round_}", args.batch_size)
                    seconds[side].append(took)
                    print(f"round {round_ + 1}: {side} {args.images / took:.2f} images/s", file=sys.stderr)
        finally:
            server.close()
    rate = {side: [args.images / s for s in values] for side, values in seconds.items()}
    best = {side: max(values) for side, values in rate.items()}
    print(f"machine: {machine(torch.device('cpu'))}")
    for side in ("this", "other"):
        print(f"{side}: fastest {best[side]:.2f} images/s, median {statistics.median(rate[side]):.2f}, "
              f"each {', '.join(f'{v:.2f}' for v in rate[side])}")
    print(f"this / other: {best['this'] / best['other']:.3f} (fastest rounds); by round "
          f"{', '.join(f'{a / b:.3f}' for a, b in zip(rate['this'], rate['other']))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
