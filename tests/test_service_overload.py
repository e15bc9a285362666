"""Overload and deadlines over real HTTP: a full queue, or an expected finish past the deadline,
answers 503 at once with Retry-After from the expected drain time (before the body is read); a
request that runs past --deadline-s answers 504; a burst gets only 200s and 503s; and the
service is at full speed again afterwards."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from service_harness import TOKEN, ImageHost, running, served_images, settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def host():
    server = ImageHost(served_images(), slow_s=2.0)
    yield server
    server.close()


def wait_idle(url: str, headers: dict[str, str] | None = None, timeout: float = 20) -> None:
    """Wait until the service has nothing queued or running (its /metrics say so)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = requests.get(f"{url}/metrics", headers=headers, timeout=5).text
        if "aigc_eval_items_in_flight 0.0" in text and "aigc_eval_queue_depth 0.0" in text:
            return
        time.sleep(0.05)
    raise TimeoutError("the service is still busy")


def test_late_answers_are_504_and_nothing_queues_before_a_batch_is_measured(clip_dir, inception_weights, host):
    # One item per batch, a 1 s deadline; each slow image takes 2 s.
    config = settings(clip_dir, inception_weights, None, allow_private_urls=True, batch_size=1, max_queue=1,
                      deadline_s=1.0, max_wait_ms=0)
    with running(config) as url:
        answers: dict[str, requests.Response] = {}

        def send(name: str, path: str) -> None:
            answers[name] = requests.post(f"{url}/v1/score", json={"image_url": host.url + path, "prompt": "咖啡杯"},
                                          timeout=30)

        slow = threading.Thread(target=send, args=("slow", "/slow/img0.png"))
        slow.start()  # nothing runs: admitted, and fetches for 2 s
        time.sleep(0.3)
        started = time.monotonic()
        send("second", "/img2.png")  # would wait behind a batch whose length nobody knows yet
        assert answers["second"].status_code == 503 and time.monotonic() - started < 0.5
        assert answers["second"].headers["Retry-After"] == "1"
        assert "measured" in answers["second"].json()["detail"]["message"]
        slow.join()
        assert answers["slow"].status_code == 504 and "deadline" in answers["slow"].json()["detail"]["message"]
        wait_idle(url)  # the slow fetch ends
        # 2 s per item measured now, over the deadline: admitted all the same, as nothing is running
        send("after", "/img2.png")
        assert answers["after"].status_code == 200 and answers["after"].json()["results"][0]["status"] == "ok"
        two = [{"image_url": host.url + "/img2.png", "prompt": "x"}] * 2  # more than --max-queue could ever hold
        too_many = requests.post(f"{url}/v1/score", json=two, timeout=30)
        assert too_many.status_code == 413 and too_many.json()["detail"]["field"] == "items"
        metrics = requests.get(f"{url}/metrics").text
        assert 'status="503"' in metrics and 'status="504"' in metrics


def test_a_full_queue_is_503_at_once_and_what_was_admitted_is_answered(clip_dir, inception_weights, host):
    # A 30 s deadline, one item per batch, one queued at most: two slow images run, one waits.
    config = settings(clip_dir, inception_weights, None, allow_private_urls=True, batch_size=1, max_queue=1,
                      deadline_s=30.0, max_wait_ms=0)
    with running(config) as url:
        def post(path: str) -> requests.Response:
            return requests.post(f"{url}/v1/score", json={"image_url": host.url + path, "prompt": "咖啡杯"}, timeout=30)

        assert post("/img0.png").status_code == 200  # measures the rate
        with ThreadPoolExecutor(3) as pool:
            admitted = []
            for path in ("/slow/img1.jpg", "/slow/img2.png", "/slow/img3.jpg"):
                admitted.append(pool.submit(post, path))
                time.sleep(0.3)
            started = time.monotonic()
            full = post("/img4.png")
            assert full.status_code == 503 and time.monotonic() - started < 0.5
            assert "queued already" in full.json()["detail"]["message"]
            assert 1 <= int(full.headers["Retry-After"]) <= 30
            assert [answer.result().status_code for answer in admitted] == [200, 200, 200]


def test_an_expected_finish_past_the_deadline_is_503_at_once(clip_dir, inception_weights, host):
    # Slow images take 2 s to fetch: after two of them alone, the rate is at least 4 s per item
    # with both workers busy (a batch alone counts twice). With one image per batch, a 9 s
    # deadline and room for 8 in the queue, two requests run side by side; a third would wait
    # for one of them (at least 3.5 s more) and then take its own 4 s, past 2/3 of the deadline.
    config = settings(clip_dir, inception_weights, None, allow_private_urls=True, batch_size=1, max_queue=8,
                      deadline_s=9.0, max_wait_ms=0, token=TOKEN)
    with running(config) as url:
        def post(path: str, session=requests, **kwargs) -> requests.Response:
            return session.post(f"{url}/v1/score", json={"image_url": host.url + path, "prompt": "咖啡杯"},
                                timeout=30, **{"headers": AUTH, **kwargs})

        for path in ("/slow/img0.png", "/slow/img1.jpg"):
            assert post(path).status_code == 200
        with ThreadPoolExecutor(2) as pool:
            running_two = [pool.submit(post, path) for path in ("/slow/img2.png", "/slow/img3.jpg")]
            time.sleep(0.5)  # both are running now
            assert post("/img2.png", headers={}).status_code == 401  # the token is checked first
            with requests.Session() as session:
                refused = post("/img4.png", session)
                assert refused.status_code == 503 and refused.elapsed.total_seconds() < 0.5
                assert "deadline" in refused.json()["detail"]["message"]
                # Retry-After: until the two running are done at the measured rate, rounded up
                assert 3 <= int(refused.headers["Retry-After"]) <= 9, refused.headers
                # decided before the body is read: not even malformed JSON gets as far as a 422
                junk = session.post(f"{url}/v1/score", data=b"{not json", timeout=30,
                                    headers={**AUTH, "Content-Type": "application/json"})
                assert junk.status_code == 503 and int(junk.headers["Retry-After"]) >= 3
                assert session.get(f"{url}/healthz", timeout=5).status_code == 200  # same connection, still usable
            assert [answer.result().status_code for answer in running_two] == [200, 200]  # admitted: in time
        wait_idle(url, AUTH)
        assert post("/img2.png").status_code == 200  # nothing queued or running: admitted again
        metrics = requests.get(f"{url}/metrics", headers=AUTH).text
        assert 'aigc_eval_http_requests_total{path="/v1/score",status="503"} 2.0' in metrics
        assert "aigc_eval_drain_seconds 0.0" in metrics  # nothing queued or running
        assert 'status="504"' not in metrics


def test_a_burst_gets_only_200s_and_503s(clip_dir, inception_weights):
    # 40 requests at once for images that take 0.4 s each to fetch, batches of 2, a 5 s deadline:
    # the service takes what it can finish in time and refuses the rest at once.
    images = ImageHost(served_images(), slow_s=0.4)
    config = settings(clip_dir, inception_weights, None, allow_private_urls=True, batch_size=2, max_queue=64,
                      deadline_s=5.0, max_wait_ms=20)
    try:
        with running(config) as url:
            def post(index: int) -> tuple[int, float]:
                started = time.monotonic()
                answer = requests.post(f"{url}/v1/score", timeout=30, json={
                    "image_url": f"{images.url}/slow/img{index % 5}.{'jpg' if index % 5 % 2 else 'png'}",
                    "prompt": "咖啡杯"})
                return answer.status_code, time.monotonic() - started

            assert post(0)[0] == 200 and post(1)[0] == 200  # measure the rate
            with ThreadPoolExecutor(40) as pool:
                outcomes = list(pool.map(post, range(40)))
            statuses = [status for status, _ in outcomes]
            assert set(statuses) <= {200, 503}, statuses
            assert statuses.count(200) >= 2 and statuses.count(503) >= 10, statuses
            assert max(seconds for status, seconds in outcomes if status == 503) < 1.0
            wait_idle(url)
            assert post(1)[0] == 200
    finally:
        images.close()


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
        assert early.status_code == 503 and early.headers["Retry-After"] == "5"
        release.set()
        deadline = time.monotonic() + 30
        while requests.get(f"{url}/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert requests.get(f"{url}/readyz").json()["status"] == "ok"
