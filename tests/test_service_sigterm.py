"""serve.py as a process: SIGTERM while a request is in flight lets it finish, then exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import requests

from conftest import ROOT
from service_harness import ImageHost, served_images, wait_ready


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sigterm_finishes_the_request_in_flight_and_exits_0(clip_dir, inception_weights, tmp_path):
    host = ImageHost(served_images(), slow_s=1.5)
    port = free_port()
    env = {**os.environ, "AIGC_EVAL_TOKEN": "t0ken"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "serve.py"), "--port", str(port), "--allow-private-urls", "--model", "RN50",
         "--model-dir", str(clip_dir), "--weights", str(inception_weights), "--precision", "fp32", "--device", "cpu",
         "--cache-dir", str(tmp_path / "cache")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, 90)
        answer: list[requests.Response] = []
        request = threading.Thread(target=lambda: answer.append(requests.post(
            f"{url}/v1/score", json={"image_url": host.url + "/slow/img0.png", "prompt": "咖啡杯"},
            headers={"Authorization": "Bearer t0ken"}, timeout=30)))
        request.start()
        time.sleep(0.7)  # the item is in its batch, fetching the slow image
        process.send_signal(signal.SIGTERM)
        request.join(30)
        assert answer and answer[0].status_code == 200, answer and answer[0].text
        assert answer[0].json()["results"][0]["status"] == "ok"
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert '"POST /v1/score" 200' in stderr and '"GET /readyz" 200' in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        host.close()
