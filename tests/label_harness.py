"""What the review page's browser tests, its screenshot and its latency benchmark share: a run
folder with images, a real `label.py` server in a child process, and headless Chromium."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from aigc_eval import columns as col
from aigc_eval.io.csv_io import write_rows

ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = ("女装", "蛋糕", "运动鞋")
PROMPTS = ("请帮我生成一张图片：雪地背景，白色羽绒服，柔和的晨光", "生成一张商品图：草莓奶油蛋糕，木桌，暖色调",
           "画一张海报：红色跑鞋，城市街道，夜景霓虹")


def chromium_path() -> str | None:
    """Debian's Chromium ($CHROMIUM, chromium or chromium-browser on PATH)."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if name and (found := shutil.which(name)):
            return found
    return None


def launch(playwright):
    """Headless Chromium from Debian, driven by Playwright (no browser download)."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])


def photo_png(path: Path, seed: int, size=(320, 240)) -> None:
    """A product-style picture: a soft background gradient and the cut-out's red shape on it."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    tint = rng.uniform(0.75, 1.0, 3)
    base = (170 + 80 * np.stack([x / w, y / h, 1 - x / w], axis=-1)) * tint
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    cx, cy, r = int(w * rng.uniform(0.35, 0.65)), int(h * rng.uniform(0.4, 0.6)), int(min(w, h) * 0.3)
    ImageDraw.Draw(image).ellipse((cx - r * 0.85, cy - r, cx + r * 0.85, cy + r), fill=(200, 30, 40))
    image.save(path)


def make_run(folder: Path, count: int, with_cutouts: bool = True, extra: list[dict] | None = None) -> Path:
    """A scored run of `count` local images with Chinese prompts (every other row with a cut-out);
    returns its result_total.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    if with_cutouts:
        from PIL import Image, ImageDraw

        cut = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
        ImageDraw.Draw(cut).ellipse((30, 20, 170, 180), fill=(200, 30, 40, 255))
        cut.save(folder / "cutout.png")
    rows = []
    for i in range(count):
        photo_png(folder / f"img{i}.png", i)
        rows.append({col.ID: f"g{i}", col.PROMPT: PROMPTS[i % 3], col.IMAGE_URL: f"img{i}.png",
                     col.CATEGORY: CATEGORIES[i % 3],
                     col.PRODUCT_IMAGE_URL: "cutout.png" if with_cutouts and i % 2 == 0 else "",
                     col.TOTAL_SCORE: f"{(i * 7 % count) / count:.3f}", col.CLIP_SCORE: "0.31"})
    rows += extra or []
    path = folder / col.DEFAULT_TOTAL_OUTPUT
    names = list(dict.fromkeys(k for row in rows for k in row))
    write_rows(path, names, rows)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`label.py` in a child process (a real uvicorn), started and waited for."""

    def __init__(self, scores: Path, labels: Path, *flags: str, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.args = [sys.executable, str(ROOT / "label.py"), "--scores", str(scores), "--labels", str(labels),
                     "--port", str(self.port), "--no-cache", *flags]
        self.proc: subprocess.Popen | None = None

    def start(self, headers: dict | None = None) -> "Server":
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"label.py exited with {self.proc.returncode}: {self.proc.stdout.read()}")
            try:
                if requests.get(self.url + "api/config", timeout=1, headers=headers).status_code in (200, 401):
                    return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("label.py did not start within 30 s")

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def screenshot(path: Path, folder: Path) -> int:
    """The page on a run with Chinese prompts and a cut-out, as a PNG reduced to 256 colours
    (small enough to keep in docs/); returns its size in bytes."""
    import io

    from PIL import Image
    from playwright.sync_api import sync_playwright

    from aigc_eval.labelling.store import LabelStore

    scores = make_run(folder, 6)
    labels = folder / "labels.csv"
    store = LabelStore(labels)  # a few verdicts already, so the bar and the rate show something
    for image_id in ("g1", "g3"):
        store.append(image_id, "accept", "qa1")
    store.close()
    server = Server(scores, labels, "--labeler", "qa1", "--order", "input").start()
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport={"width": 1100, "height": 780}, bypass_csp=True)
            page.goto(server.url)
            page.wait_for_function("document.body.dataset.shown === 'g0'")
            page.keyboard.press("p")
            page.keyboard.press("7")
            png = page.screenshot()
            browser.close()
    finally:
        server.stop()
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(256)
    image.save(path, optimize=True)
    return path.stat().st_size


if __name__ == "__main__":  # python tests/label_harness.py docs/labelling_page.png
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(screenshot(Path(sys.argv[1]), Path(tmp) / "run"), "bytes")
