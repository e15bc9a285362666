"""Helpers for the HTTP service tests: a loopback image host, the real app under uvicorn on a
free 127.0.0.1 port, and service settings for the random test checkpoints."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import requests
import uvicorn
from PIL import Image

from aigc_eval.io.image_fetch import FetchConfig
from aigc_eval.scoring.runtime import RuntimeOptions
from aigc_eval.service.app import create_app
from aigc_eval.service.scoring import ServiceSettings
from conftest import ROOT, encode, photo

TOKEN = "s3cret-token"


def product_scene() -> tuple[bytes, bytes]:
    """(generated image PNG, cut-out PNG): the shipped coffee cut-out pasted onto a photo background."""
    cutout = Image.open(ROOT / "samples" / "images" / "coffee_cutout.png").convert("RGBA")
    cutout = cutout.resize((cutout.width * 160 // max(cutout.size), cutout.height * 160 // max(cutout.size)))
    background = photo((320, 256), seed=11)
    background.paste(cutout, (80, 48), cutout)
    return encode(background, "PNG"), encode(cutout, "PNG")


def served_images() -> dict[str, bytes]:
    """Path -> bytes served by the image host: photos, the product scene and its cut-out."""
    images = {f"/img{i}.{'jpg' if i % 2 else 'png'}": encode(photo((96 + 16 * i, 80 + 8 * i), seed=i),
                                                             "JPEG" if i % 2 else "PNG") for i in range(5)}
    scene, cutout = product_scene()
    return {**images, "/scene.png": scene, "/cutout.png": cutout}


class ImageHost:
    """A threaded HTTP server on 127.0.0.1: `routes` path -> bytes, /slow/<path> after `slow_s`,
    /redirect?to=URL a 302 to URL, anything else 404."""

    def __init__(self, routes: dict[str, bytes], slow_s: float = 2.0):
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path, _, query = self.path.partition("?")
                if path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", query.removeprefix("to="))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path.startswith("/slow/"):
                    time.sleep(host.slow_s)
                    path = path[len("/slow"):]
                body = host.routes.get(path)
                try:
                    self.send_response(200 if body is not None else 404)
                    self.send_header("Content-Length", str(len(body or b"no")))
                    self.end_headers()
                    self.wfile.write(body or b"no")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.routes, self.slow_s = routes, slow_s
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def settings(clip_dir: Path, inception_weights: Path, cache_dir: Path | None, **overrides) -> ServiceSettings:
    """ServiceSettings for the random RN50 + Inception checkpoints, CPU fp32, no fetch retries."""
    runtime = RuntimeOptions(device="cpu", precision="fp32", batch_size=overrides.pop("batch_size", 8), workers=2,
                             quiet=True, fetch=FetchConfig(cache_dir=cache_dir, retries=0, timeout=10))
    return ServiceSettings(model_name="RN50", model_dir=clip_dir, weights=inception_weights, runtime=runtime,
                           **overrides)


@contextlib.contextmanager
def running(service_settings: ServiceSettings, ready: bool = True) -> Iterator[str]:
    """The real app under uvicorn in a thread on a free loopback port; yields its base URL once
    /readyz answers 200 (with `ready`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # as serve.py binds: TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(service_settings), log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_ready(url, 60, ready)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def wait_ready(url: str, timeout: float, ready: bool = True) -> None:
    """Wait until /readyz is 200 (or, without `ready`, until /healthz answers)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"{url}/{'readyz' if ready else 'healthz'}", timeout=5).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def png_bytes(size=(64, 48), seed=3) -> bytes:
    buffer = io.BytesIO()
    photo(size, seed).save(buffer, "PNG")
    return buffer.getvalue()
