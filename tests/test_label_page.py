"""The review page (label.py) in headless Chromium, driven by key presses and clicks against a
real label.py server in a child process: the rows written, undo and reasons, reload and kill -9
resumes, two labelers at once, hostile rows, and the token."""

from __future__ import annotations

import csv

import pytest
import requests

from aigc_eval import columns as col
from aigc_eval.labelling.format import ACCEPT, LABEL, LABEL_COLUMNS, LABEL_ID, LABELER, REASON, REASONS, REJECT, SKIP, SOURCE, SOURCE_QA, UNDONE
from aigc_eval.labelling.order import in_overlap
from label_harness import Server, chromium_path, launch, make_run

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements-dev.txt (playwright)")


@pytest.fixture(scope="module")
def browser():
    if chromium_path() is None:
        pytest.fail("Chromium not found on PATH ($CHROMIUM, chromium, chromium-browser): `apt-get install chromium` "
                    "(bash scripts/test.sh does)", pytrace=False)
    with sync_api.sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def servers():
    started: list[Server] = []

    def start(*args, **kwargs) -> Server:
        server = Server(*args, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def labels(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def open_page(browser, url: str):
    # bypass_csp lets Playwright evaluate its waits; it also means the escaping test below does not
    # lean on the page's Content-Security-Policy (checked on its own there).
    page = browser.new_page(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    page.goto(url)
    return page


def shown(page) -> str:
    page.wait_for_function("document.body.dataset.shown !== undefined")
    return page.evaluate("document.body.dataset.shown")


def press_and_wait_saved(page, key: str) -> None:
    """Press a verdict key and wait until the page says it is saved and shows the next image."""
    page.wait_for_function("document.body.dataset.shown !== undefined && !window.labelState.busy")
    before = page.evaluate("window.labelState.saved.length")
    page.keyboard.press(key)
    page.wait_for_function(f"window.labelState.saved.length > {before} && !window.labelState.busy")


def test_labelling_ten_images_writes_the_ten_expected_rows(browser, servers, tmp_path):
    scores = make_run(tmp_path / "run", 10)
    out = tmp_path / "run" / "labels.csv"
    server = servers(scores, out, "--labeler", "qa1", "--order", "input")
    page = open_page(browser, server.url)
    keys = ["a", "r", "a", "a", "s", "r", "a", "r", "a", "a"]
    for number, key in enumerate(keys):
        assert shown(page) == f"g{number}"
        assert page.locator("#main-image img").count() == 1
        press_and_wait_saved(page, key)
        assert "saved" in page.locator("#status").text_content()
    assert shown(page) == "finish"
    page.wait_for_function("document.getElementById('finish-command').textContent.length > 0")
    assert f"python calibrate.py --scores {scores} --labels {out} --output calibration.json" == page.locator("#finish-command").text_content()
    rows = labels(out)
    expected = {"a": ACCEPT, "r": REJECT, "s": SKIP}
    assert [(r[LABEL_ID], r[LABEL], r[LABELER], r[SOURCE]) for r in rows] == \
           [(f"g{i}", expected[k], "qa1", SOURCE_QA) for i, k in enumerate(keys)]
    assert list(rows[0]) == list(LABEL_COLUMNS)
    assert "10 by qa1" in page.locator("#progress-text").text_content()


def test_reason_keys_and_undo_append_the_rows_the_format_defines(browser, servers, tmp_path):
    scores = make_run(tmp_path / "run", 4)
    out = tmp_path / "run" / "labels.csv"
    page = open_page(browser, servers(scores, out, "--labeler", "qa1", "--order", "input").url)
    assert shown(page) == "g0"
    page.keyboard.press("3")
    assert page.locator("#reasons button.picked").text_content().endswith(REASONS[2])
    press_and_wait_saved(page, "r")
    assert shown(page) == "g1"
    page.keyboard.press("=")  # the twelfth reason
    page.keyboard.press("a")
    page.wait_for_function("window.labelState.saved.length == 2 && document.body.dataset.shown == 'g2'")
    page.keyboard.press("u")
    page.wait_for_function("document.body.dataset.shown == 'g1' && !window.labelState.busy")
    assert "undone" in page.locator("#status").text_content()
    page.get_by_role("button", name="reject r").click()  # the mouse works too
    page.wait_for_function("window.labelState.saved.length == 3 && document.body.dataset.shown == 'g2'")
    rows = labels(out)
    assert [(r[LABEL_ID], r[LABEL], r[REASON]) for r in rows] == [
        ("g0", REJECT, REASONS[2]), ("g1", ACCEPT, REASONS[11]), ("g1", UNDONE, ""), ("g1", REJECT, "")]
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("document.body.dataset.shown == 'g1'")
    assert "reject" in page.locator("#verdict").text_content()


def test_a_reload_resumes_where_the_labeler_was(browser, servers, tmp_path):
    scores = make_run(tmp_path / "run", 8)
    out = tmp_path / "run" / "labels.csv"
    page = open_page(browser, servers(scores, out, "--labeler", "qa1").url)
    seen = []
    for _ in range(3):
        seen.append(shown(page))
        press_and_wait_saved(page, "a")
    upcoming = shown(page)
    page.reload()
    page.wait_for_function(f"document.body.dataset.shown == {upcoming!r}")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(f"document.body.dataset.shown == {seen[-1]!r}")
    assert "accept" in page.locator("#verdict").text_content()
    assert "3 by qa1" in page.locator("#progress-text").text_content()


def test_two_labelers_at_once_both_end_up_in_the_file_with_the_overlap_shared(browser, servers, tmp_path):
    scores = make_run(tmp_path / "run", 12)
    out = tmp_path / "run" / "labels.csv"
    server = servers(scores, out, "--overlap", "0.3", "--seed", "3")
    pages = []
    for name in ("qa1", "qa2"):
        page = browser.new_context(bypass_csp=True).new_page()
        page.goto(server.url)
        page.locator("#name-input").fill(name)
        page.keyboard.press("Enter")
        pages.append(page)
    done = [False, False]
    while not all(done):  # alternate key presses between the two
        for k, page in enumerate(pages):
            if not done[k]:
                if shown(page) == "finish":
                    done[k] = True
                else:
                    press_and_wait_saved(page, "a" if k == 0 else "r")
    rows = labels(out)
    by_labeler = {name: {r[LABEL_ID] for r in rows if r[LABELER] == name} for name in ("qa1", "qa2")}
    shared = {f"g{i}" for i in range(12) if in_overlap(f"g{i}", 0.3, 3)}
    assert shared and len(shared) < 12
    assert by_labeler["qa1"] | by_labeler["qa2"] == {f"g{i}" for i in range(12)}
    assert by_labeler["qa1"] & by_labeler["qa2"] == shared
    assert len(rows) == 12 + len(shared)
    assert "qa1" in pages[1].locator("#finish-text").text_content()


def test_kill_9_between_key_presses_loses_no_verdict_shown_as_saved(browser, servers, tmp_path):
    scores = make_run(tmp_path / "run", 10)
    out = tmp_path / "run" / "labels.csv"
    server = servers(scores, out, "--labeler", "qa1", "--order", "input")
    page = open_page(browser, server.url)
    for key in "arar":
        press_and_wait_saved(page, key)
    page.keyboard.press("a")  # and the server dies with it in flight, or just after
    server.kill9()
    page.wait_for_function("!window.labelState.busy")
    saved = page.evaluate("window.labelState.saved")
    assert len(saved) >= 4
    on_disk = [(r[LABEL_ID], r[LABEL]) for r in labels(out)]
    assert [(s["id"], s["label"]) for s in saved] == on_disk[:len(saved)]
    if len(on_disk) > len(saved):  # written, but the answer never reached the page: it says not saved
        assert "NOT saved" in page.locator("#status").text_content()
    page.keyboard.press("r")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('NOT saved')")
    restarted = servers(scores, out, "--labeler", "qa1", "--order", "input", port=server.port)
    page.reload()
    page.wait_for_function(f"document.body.dataset.shown == 'g{len(on_disk)}'")
    press_and_wait_saved(page, "a")
    assert [r[LABEL_ID] for r in labels(out)] == [f"g{i}" for i in range(len(on_disk) + 1)]
    assert restarted.proc.poll() is None


def test_hostile_rows_are_escaped_refused_or_shown_as_a_placeholder(browser, servers, tmp_path, image_server):
    base, _ = image_server
    (tmp_path / "secret.png").write_bytes((tmp_path / "run").mkdir() or b"")
    from label_harness import photo_png

    photo_png(tmp_path / "secret.png", 1)
    script = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>雪地'
    extra = [{col.ID: "html", col.PROMPT: script, col.IMAGE_URL: "img0.png", col.CATEGORY: "<b>蛋糕</b>"},
             {col.ID: "missing", col.PROMPT: "蛋糕", col.IMAGE_URL: f"{base}/missing.jpg", col.CATEGORY: "蛋糕"},
             {col.ID: "outside", col.PROMPT: "蛋糕", col.IMAGE_URL: "../secret.png", col.CATEGORY: "蛋糕"},
             {col.ID: "absolute", col.PROMPT: "蛋糕", col.IMAGE_URL: "/etc/passwd", col.CATEGORY: "蛋糕"}]
    scores = make_run(tmp_path / "run", 1, extra=extra)
    server = servers(scores, tmp_path / "run" / "labels.csv", "--labeler", "qa1", "--order", "input",
                     "--allow-private-urls")
    page = open_page(browser, server.url)
    press_and_wait_saved(page, "a")
    assert shown(page) == "html"
    raw = page.locator("#raw-prompt").text_content()
    assert raw == script and page.locator("#category").text_content() == "<b>蛋糕</b>"
    assert page.locator("aside script, aside b, #prompt img").count() == 0
    assert page.evaluate("window.pwned") is None
    press_and_wait_saved(page, "a")
    assert shown(page) == "missing"
    assert "HTTP 404" in page.locator("#main-image .placeholder").text_content()
    press_and_wait_saved(page, "r")
    assert shown(page) == "outside"
    assert "outside the run's folder" in page.locator("#main-image .placeholder").text_content()
    press_and_wait_saved(page, "r")
    assert "outside the run's folder" in page.locator("#main-image .placeholder").text_content()
    refused = requests.get(server.url + "api/image/3/image", timeout=5)
    assert refused.status_code == 403 and "outside the run's folder" in refused.json()["detail"]
    headers = requests.get(server.url, timeout=5).headers
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert requests.get(server.url + "api/config", headers={"Host": "attacker.example"}, timeout=5).status_code == 400


def test_the_network_needs_a_token_and_the_page_carries_it(browser, servers, tmp_path):
    import subprocess
    import sys

    from label_harness import ROOT

    scores = make_run(tmp_path / "run", 2)
    out = tmp_path / "run" / "labels.csv"
    refused = subprocess.run([sys.executable, str(ROOT / "label.py"), "--scores", str(scores), "--labels", str(out),
                              "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--token" in refused.stderr and "Traceback" not in refused.stderr
    server = Server(scores, out, "--labeler", "qa1", "--host", "0.0.0.0", "--token", "s3cret")
    server.start()
    try:
        assert requests.get(server.url + "api/config", timeout=5).status_code == 401
        assert requests.get(server.url + "api/image/0/image", timeout=5).status_code == 401
        page = open_page(browser, server.url + "?token=s3cret")
        assert shown(page).startswith("g")
        press_and_wait_saved(page, "a")
        assert len(labels(out)) == 1
    finally:
        server.stop()
