"""Shared fixtures: random-initialised checkpoints in the released formats, test images,
and a real HTTP server on loopback serving good and hostile images."""

from __future__ import annotations

import csv
import io
import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.random_checkpoints import save_cn_clip_checkpoint, save_inception_state_dict  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path, monkeypatch):
    """Keep every test away from the user's caches and from the network's model hubs."""
    monkeypatch.setenv("AIGC_EVAL_CACHE", str(tmp_path / "image-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture(autouse=True)
def _restore_logging():
    """Put the root logger back after each test: a script's main() points it at the stderr of
    the moment, which under pytest is a capture that is closed when the test ends."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    """A cn_clip download root holding a random RN50 checkpoint (ResNet-50 with batch norm + RBT3)."""
    folder = tmp_path_factory.mktemp("cn_clip")
    save_cn_clip_checkpoint("RN50", folder)
    return folder


@pytest.fixture(scope="session")
def clip_dir_vit(tmp_path_factory) -> Path:
    """A cn_clip download root holding a random ViT-B-16 checkpoint, the default model."""
    folder = tmp_path_factory.mktemp("cn_clip_vit")
    save_cn_clip_checkpoint("ViT-B-16", folder)
    return folder


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory) -> Path:
    """A random torchvision Inception-v3 state_dict with the released keys, calibrated on the shipped photos."""
    path = tmp_path_factory.mktemp("inception") / "inception_v3_random.pth"
    photos = [Image.open(p).convert("RGB") for p in sorted((ROOT / "samples" / "images").iterdir())]
    return save_inception_state_dict(path, photos)


def cpu_fp32(**overrides):
    """Runtime options for exact comparisons: CPU, fp32, quiet."""
    from aigc_eval.scoring.runtime import RuntimeOptions

    return RuntimeOptions(**{"device": "cpu", "precision": "fp32", "quiet": True, **overrides})


def photo(size=(96, 64), seed=0) -> Image.Image:
    """A smooth random colour image: gradients plus noise, like a small photo."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], axis=-1)
    noisy = base * rng.uniform(0.3, 1.0, 3) + rng.normal(0, 20, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def image_files(tmp_path) -> list[Path]:
    """Five small different photos on disk (JPEG and PNG)."""
    paths = []
    for i in range(5):
        path = tmp_path / f"img{i}.{'jpg' if i % 2 else 'png'}"
        photo((80 + 8 * i, 60 + 4 * i), seed=i).save(path)
        paths.append(path)
    return paths


def write_csv(path: Path, rows: list[dict[str, object]], fieldnames: list[str] | None = None) -> Path:
    fieldnames = fieldnames or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def png_claiming_size(png: bytes, width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels: a decompression bomb in a few bytes."""
    import struct
    import zlib

    ihdr = png[16:29]
    patched = struct.pack(">II", width, height) + ihdr[8:]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + patched))
    return png[:16] + patched + crc + png[33:]


def hostile_images() -> dict[str, tuple[int, str, bytes]]:
    """Path -> (status, content type, body) for the hostile image server."""
    good = photo((120, 90), seed=7)
    jpeg = encode(good, "JPEG", quality=90)
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (16, 16, 48, 48))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    grey16 = Image.fromarray(np.full((40, 50), 32768, dtype=np.uint16))
    frames = [Image.new("RGB", (40, 40), colour) for colour in ("red", "green", "blue")]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(1, (8, 8, 24, 24))
    bomb = png_claiming_size(encode(Image.new("L", (8, 8), 0), "PNG"), 50_000, 50_000)
    return {
        "/good.jpg": (200, "image/jpeg", jpeg),
        "/truncated.jpg": (200, "image/jpeg", jpeg[: len(jpeg) // 2]),
        "/empty.png": (200, "image/png", b""),
        "/page.html": (200, "text/html", b"<!DOCTYPE html><html><body>Not found</body></html>"),
        "/bomb.png": (200, "image/png", bomb),
        "/missing.png": (404, "text/plain", b"no"),
        "/rgba.png": (200, "image/png", encode(rgba, "PNG")),
        "/palette-alpha.png": (200, "image/png", encode(palette, "PNG", transparency=0)),
        "/cmyk.jpg": (200, "image/jpeg", encode(good.convert("CMYK"), "JPEG")),
        "/grey16.png": (200, "image/png", encode(grey16, "PNG")),
        "/grey.jpg": (200, "image/jpeg", encode(good.convert("L"), "JPEG")),
        "/exif.jpg": (200, "image/jpeg", encode(photo((100, 50), seed=3), "JPEG", exif=exif.tobytes())),
        "/animated.gif": (200, "image/gif", animated.getvalue()),
    }


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str, bytes]] = {}
    hits: dict[str, int] = {}
    slow_seconds = 3.0

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        self.hits[path] = self.hits.get(path, 0) + 1
        if path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
            return
        if path == "/slow.jpg":
            time.sleep(self.slow_seconds)
        if path == "/flaky.jpg" and self.hits[path] == 1:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, content_type, body = self.routes.get(
            "/good.jpg" if path in ("/slow.jpg", "/flaky.jpg") else path, (404, "text/plain", b"not found")
        )
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def image_server():
    """A real HTTP server on 127.0.0.1 serving hostile_images(); yields (base URL, hit counter)."""
    handler = type("Handler", (_Handler,), {"routes": hostile_images(), "hits": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.hits
    server.shutdown()
    server.server_close()
