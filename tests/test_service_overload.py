"""Overload and deadlines over real HTTP: a full queue answers 503 with Retry-After at once, a
request past --deadline-s answers 504, and the service is at full speed again afterwards."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from service_harness import ImageHost, running, served_images, settings


@pytest.fixture(scope="module")
def host():
    server = ImageHost(served_images(), slow_s=2.0)
    yield server
    server.close()


def test_full_queue_is_503_and_late_answers_are_504(clip_dir, inception_weights, host):
    # One item per batch (two batches at once), one queued at most, one second per request; each
    # slow image takes 2 s.
    config = settings(clip_dir, inception_weights, None, allow_private_urls=True, batch_size=1, max_queue=1,
                      deadline_s=1.0, max_wait_ms=0)
    with running(config) as url:
        answers: dict[str, requests.Response] = {}

        def send(name: str, path: str) -> None:
            answers[name] = requests.post(f"{url}/v1/score", json={"image_url": host.url + path, "prompt": "咖啡杯"},
                                          timeout=30)

        slow = [threading.Thread(target=send, args=(f"slow{i}", f"/slow/img{i}.png")) for i in range(3)]
        for thread in slow:  # two batches take one each (two workers fetch for 2 s); the third waits
            thread.start()
            time.sleep(0.2)
        started = time.monotonic()
        send("fast", "/img2.png")
        assert answers["fast"].status_code == 503 and time.monotonic() - started < 0.5
        assert answers["fast"].headers["Retry-After"] == "1" and "overloaded" in answers["fast"].json()["detail"]["message"]
        for thread in slow:
            thread.join()
        assert [answers[f"slow{i}"].status_code for i in range(3)] == [504] * 3
        assert "deadline" in answers["slow0"].json()["detail"]["message"]
        time.sleep(1.5)  # the two batches' fetches end; the queued item left the queue unprocessed
        send("after", "/img2.png")
        assert answers["after"].status_code == 200 and answers["after"].json()["results"][0]["status"] == "ok"
        two = [{"image_url": host.url + "/img2.png", "prompt": "x"}] * 2  # more than --max-queue could ever hold
        too_many = requests.post(f"{url}/v1/score", json=two, timeout=30)
        assert too_many.status_code == 413 and too_many.json()["detail"]["field"] == "items"
        metrics = requests.get(f"{url}/metrics").text
        assert 'status="503"' in metrics and 'status="504"' in metrics


def test_not_ready_until_the_models_are_loaded(clip_dir, inception_weights, host, monkeypatch):
    from aigc_eval.scoring.model_loading import LazyModel

    release = threading.Event()
    real_get = LazyModel.get

    def slow_get(self):
        release.wait(20)
        return real_get(self)

    monkeypatch.setattr(LazyModel, "get", slow_get)
    with running(settings(clip_dir, inception_weights, None, allow_private_urls=True), ready=False) as url:
        assert requests.get(f"{url}/healthz").status_code == 200
        loading = requests.get(f"{url}/readyz")
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        early = requests.post(f"{url}/v1/score", json={"image_url": host.url + "/img0.png", "prompt": "x"})
        assert early.status_code == 503 and "Retry-After" in early.headers
        release.set()
        deadline = time.monotonic() + 30
        while requests.get(f"{url}/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert requests.get(f"{url}/readyz").json()["status"] == "ok"
