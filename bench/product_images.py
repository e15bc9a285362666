"""Product-style test images for the benchmark, and a local HTTP server that serves them slowly.

The images are made from the shipped sample photos: a product cut from one photo, placed
on a background made from another or on a studio gradient, at sizes from a few hundred
to about 1500 pixels a side; most are JPEG, some PNG, and some PNGs are transparent
cut-outs, as the generation service's inputs and outputs are.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "samples" / "images"
PROMPT_SUBJECTS = ["咖啡杯", "蛋糕", "运动鞋", "茶叶礼盒", "木椅", "口红", "手表", "保温杯"]
PROMPT_SCENES = ["大理石台面配金色装饰", "樱桃木地板背景", "雪地背景，清晨阳光", "绿色森林背景", "薰衣草花田",
                 "极简白色摄影棚", "海边沙滩日落", "温馨的家居客厅"]


def _gradient(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    w, h = size
    top, bottom = rng.integers(40, 255, 3), rng.integers(0, 200, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    rows = (top * (1 - t) + bottom * t).astype(np.float32)
    noise = rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    return Image.fromarray(np.clip(np.broadcast_to(rows, (h, w, 3)) + noise, 0, 255).astype(np.uint8))


def make_image(index: int, photos: list[Image.Image]) -> tuple[Image.Image, str]:
    """The index-th benchmark image and its file format (JPEG or PNG)."""
    image, fmt, _ = make_image_and_cutout(index, photos)
    return image, fmt


def make_image_and_cutout(index: int, photos: list[Image.Image]) -> tuple[Image.Image, str, Image.Image]:
    """The index-th benchmark image, its file format, and the merchant's cut-out it was made from
    (the product at its source size, an RGBA PNG whose alpha is the elliptical mask)."""
    rng = np.random.default_rng(index)
    side = int(rng.integers(400, 1500))
    size = (side, int(side * rng.uniform(0.7, 1.3)))
    if rng.random() < 0.5:
        background = photos[int(rng.integers(len(photos)))].resize(size, Image.BICUBIC).filter(ImageFilter.GaussianBlur(3))
    else:
        background = _gradient(size, rng)
    source = photos[int(rng.integers(len(photos)))]
    scale = rng.uniform(0.4, 0.8) * min(size) / max(source.size)
    product = source.resize((max(8, int(source.width * scale)), max(8, int(source.height * scale))), Image.BICUBIC)
    mask = Image.new("L", product.size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, product.width - 1, product.height - 1), fill=255)
    cutout = source.convert("RGBA")
    cutout.putalpha(mask.resize(source.size, Image.BILINEAR))
    position = (int(rng.integers(0, size[0] - product.width + 1)), int(rng.integers(0, size[1] - product.height + 1)))
    kind = rng.random()
    if kind < 0.15:  # a transparent cut-out: the product alone on nothing
        canvas = Image.new("RGBA", size, (0, 0, 0, 0))
        canvas.paste(product, position, mask)
        return canvas, "PNG", cutout
    background.paste(product, position, mask)
    return background.convert("RGB"), "PNG" if kind < 0.3 else "JPEG", cutout


def cutout_name(image_path: Path) -> str:
    """The file name write_images(..., cutouts=True) gives an image's cut-out."""
    return f"cutout_{image_path.stem.split('_')[-1]}.png"


def write_images(folder: Path, count: int, cutouts: bool = False) -> list[Path]:
    """Write `count` benchmark images into `folder` (and, with `cutouts`, the cut-out each was
    made from, named by cutout_name); returns the images' paths."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = [Image.open(path).convert("RGB") for path in sorted(SAMPLE_DIR.glob("*.jpg"))]
    paths = []
    for index in range(count):
        image, fmt, cutout = make_image_and_cutout(index, photos)
        path = folder / f"product_{index:04d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        image.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 6}))
        if cutouts:
            cutout.save(folder / cutout_name(path), "PNG")
        paths.append(path)
    return paths


def prompt_for(index: int) -> str:
    """A background prompt in the style of the article's; prompts repeat across images."""
    rng = np.random.default_rng(10_000 + index)
    return f"{PROMPT_SCENES[int(rng.integers(len(PROMPT_SCENES)))]}，{PROMPT_SUBJECTS[int(rng.integers(len(PROMPT_SUBJECTS)))]}"


class SlowImageServer:
    """Serves a folder over HTTP/1.1 on 127.0.0.1 from a child process, each response delayed
    by `latency` seconds.

    A child process, as a real image host is: a server thread inside the benchmark would
    share main.py's interpreter lock and bill its request handling to the code under test.
    HTTP/1.1 keeps connections open, as CDNs do, for clients that reuse them.
    """

    def __init__(self, folder: Path, latency: float):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.product_images", str(folder), str(latency)],
            cwd=Path(__file__).resolve().parent.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = (self.process.stdout.readline() if self.process.stdout else "").strip()
        if not self.url.startswith("http://"):
            self.close()
            raise RuntimeError(f"the image server did not start (exit code {self.process.returncode})")

    def close(self) -> None:
        self.process.terminate()
        self.process.communicate()  # closes the pipes and reaps the child


def serve(folder: Path, latency: float) -> None:
    """Serve `folder` until stdin closes (the benchmark ended, however it ended); the first
    line on stdout is the server's URL."""
    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_GET(self):
            time.sleep(latency)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), float(sys.argv[2]))
