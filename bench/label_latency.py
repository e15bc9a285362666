"""Key press to next image on the review page (label.py), measured in headless Chromium on a run
of 10,000 images.

The images are 1024x1024 JPEGs (and PNG cut-outs on half the rows) served over HTTP by a child
process, so they go through the page's real path: fetch path and disk cache, decode, shrink,
JPEG, prefetch and decode in the browser. Each key press is timed inside the page, from the key
event's timestamp to the first task after the frame that shows the next image; the time seen
from Playwright (press to the DOM showing the next id, including its round trips) is given too.

    .venv/bin/python -m bench.label_latency                  # 10,000 rows, 200 presses
    .venv/bin/python -m bench.label_latency --rows 1000 --presses 50 --pause 0.1
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from aigc_eval import columns as col  # noqa: E402
from aigc_eval.io.csv_io import write_rows  # noqa: E402
from label_harness import CATEGORIES, PROMPTS, Server, free_port, launch  # noqa: E402

POOL = 24  # distinct pictures; every URL is still fetched, cached and shrunk on its own


def _pictures() -> tuple[list[bytes], list[bytes]]:
    import numpy as np
    from PIL import Image, ImageDraw

    photos, cutouts = [], []
    for seed in range(POOL):
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:1024, 0:1024]
        base = (150 + 100 * np.stack([x / 1024, y / 1024, 1 - x / 1024], axis=-1)) * rng.uniform(0.7, 1, 3)
        noisy = base + rng.normal(0, 6, base.shape)
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
        ImageDraw.Draw(image).ellipse((300, 250, 720, 800), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
        cut = Image.new("RGBA", (600, 600), (0, 0, 0, 0))
        ImageDraw.Draw(cut).ellipse((100, 60, 500, 560), fill=(200, 30, 40, 255))
        buffer = io.BytesIO()
        cut.save(buffer, "PNG")
        cutouts.append(buffer.getvalue())
    return photos, cutouts


def _serve_images(port: int) -> None:
    photos, cutouts = _pictures()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            kind, _, name = self.path.strip("/").partition("/")
            number = int(name.split(".")[0])
            body, ctype = (photos[number % POOL], "image/jpeg") if kind == "img" else (cutouts[number % POOL], "image/png")
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def make_big_run(folder: Path, rows: int, image_port: int) -> Path:
    rng = random.Random(0)
    base = f"http://127.0.0.1:{image_port}"
    table = [{col.ID: f"img{i:05d}", col.PROMPT: PROMPTS[i % 3], col.IMAGE_URL: f"{base}/img/{i}.jpg",
              col.CATEGORY: CATEGORIES[i % 3] + str(i % 7), col.PRODUCT_IMAGE_URL: f"{base}/cut/{i}.png" if i % 2 else "",
              col.TOTAL_SCORE: f"{rng.random():.4f}", col.CLIP_SCORE: f"{rng.uniform(0.2, 0.4):.4f}"} for i in range(rows)]
    path = folder / col.DEFAULT_TOTAL_OUTPUT
    write_rows(path, list(table[0]), table)
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(rows: int, presses: int, pause: float) -> dict:
    from playwright.sync_api import sync_playwright

    image_port = free_port()
    images = multiprocessing.Process(target=_serve_images, args=(image_port,), daemon=True)
    images.start()
    with tempfile.TemporaryDirectory(prefix="label-bench-") as tmp:
        folder = Path(tmp)
        scores = make_big_run(folder, rows, image_port)
        labels = folder / "labels.csv"
        server = Server(scores, labels, "--labeler", "bench", "--allow-private-urls", "--cache-dir", str(folder / "cache"))
        server.args.remove("--no-cache")
        server.start()
        try:
            with sync_playwright() as playwright:
                browser = launch(playwright)
                page = browser.new_page(viewport={"width": 1440, "height": 900}, bypass_csp=True)
                page.goto(server.url)
                page.wait_for_function("document.body.dataset.shown !== undefined", timeout=60000)
                time.sleep(2.0)  # the first images prefetched, as when a person starts reading
                outside = []
                for k in range(presses):
                    before = page.evaluate("document.body.dataset.shown")
                    started = time.perf_counter()
                    page.keyboard.press("a" if k % 3 else "r")
                    page.wait_for_function(f"document.body.dataset.shown !== {before!r} && "
                                           f"window.labelState.timings.length > {k}", timeout=30000)
                    outside.append((time.perf_counter() - started) * 1000)
                    time.sleep(pause)
                inside = [t["ms"] for t in page.evaluate("window.labelState.timings")]
                browser.close()
        finally:
            server.stop()
            images.terminate()
        written = sum(1 for _ in open(labels, encoding="utf-8-sig")) - 1
    return {"rows": rows, "presses": presses, "pause_s": pause, "rows_written": written,
            "in_page_ms": {"median": round(statistics.median(inside), 1), "p95": round(percentile(inside, 0.95), 1),
                           "max": round(max(inside), 1)},
            "playwright_ms": {"median": round(statistics.median(outside), 1), "p95": round(percentile(outside, 0.95), 1),
                              "max": round(max(outside), 1)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000, help="images in the run")
    parser.add_argument("--presses", type=int, default=200, help="key presses timed")
    parser.add_argument("--pause", type=float, default=0.4, help="seconds between presses (a fast reviewer: 0.4-1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    result = measure(args.rows, args.presses, args.pause)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
