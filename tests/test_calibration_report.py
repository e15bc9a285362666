"""calibration_report.html in headless Chromium (Debian's, through Playwright): it loads nothing
from the network, draws its charts, escapes what the data holds; and the embedding probe on a
real score cache."""

from __future__ import annotations

import csv
import hashlib
import shutil

import numpy as np
import pytest
import torch

from aigc_eval import columns as col
from aigc_eval.cli.calibrate import main as calibrate
from aigc_eval.scoring.score_cache import ScoreCache

from calibration_data import known_model, verdict_rows, write_labels, write_scores

CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/test.sh installs it)")
def test_the_report_page_is_self_contained_draws_its_charts_and_escapes_text(tmp_path, capsys):
    from playwright.sync_api import sync_playwright

    X, _, y, ids = known_model(400, seed=8)
    scores = write_scores(tmp_path / "result_total.csv", ids, X)
    # A hostile prompt on the image the score likes least among the accepted ones.
    rows = list(csv.DictReader(open(scores, encoding="utf-8")))
    worst = min((r for r, v in zip(rows, y) if v == 1), key=lambda r: float(r[col.CLIP_NORM]) * 3 + float(r[col.IS_NORM]) * 1.5)
    worst[col.PROMPT] = "<script>window.hacked=1</script><img src=x onerror=window.hacked=2>"
    with open(scores, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    labels = write_labels(tmp_path / "labels.csv", verdict_rows(ids, y))
    assert calibrate(["--scores", str(scores), "--labels", str(labels), "--output", str(tmp_path / "c.json")]) == 0
    page_path = tmp_path / "calibration_report.html"
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_path.as_uri())
        page.wait_for_load_state("load")
        assert [url for url in requests if not url.startswith("file:")] == []
        charts = page.locator("svg")
        assert charts.count() == 2
        for k in range(2):
            box = charts.nth(k).bounding_box()
            assert box["width"] > 200 and box["height"] > 200
        assert page.locator("svg polyline").count() >= 6  # five ROC curves and the reliability line
        assert page.evaluate("window.hacked === undefined")
        assert "<script>window.hacked=1</script>" in page.inner_text("body")
        assert page.get_by_text("people reject").count() >= 1
        browser.close()


def test_the_embedding_probe_is_kept_only_when_it_beats_the_terms(tmp_path, capsys):
    """Local images whose cached CLIP image embedding carries the verdict (the terms carry a weak
    signal): the probe beats the terms by far more than its margin and is kept. Then the same with
    embeddings that carry nothing: reported, not kept."""
    rng = np.random.default_rng(5)
    n, dim = 400, 16
    X, _, y, ids = known_model(n, seed=6)
    images = tmp_path / "images"
    images.mkdir()
    for strong in (True, False):
        cache_dir = tmp_path / f"cache_{strong}"
        cache = ScoreCache(cache_dir / "scores.sqlite")
        image_items, text_items = [], []
        rows_paths = []
        for i, image_id in enumerate(ids):
            data = f"image {image_id}".encode()
            (images / f"{image_id}.png").write_bytes(data)
            rows_paths.append(f"images/{image_id}.png")
            vector = rng.normal(size=dim)
            if strong:
                vector[0] = 3.0 * (2 * y[i] - 1) + rng.normal()
            image_items.append((hashlib.sha256(data).hexdigest(), torch.tensor(vector, dtype=torch.float32)))
            text_items.append((hashlib.sha256(f"prompt {i}".encode()).hexdigest(), torch.ones(dim)))
        cache.put_many("clip_image", "m", image_items)
        cache.put_many("clip_text", "m", text_items)
        cache.close()
        scores = write_scores(tmp_path / "result_total.csv", ids, X)
        rows = list(csv.DictReader(open(scores, encoding="utf-8")))
        for row, path in zip(rows, rows_paths):
            row[col.IMAGE_URL] = path
        with open(scores, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        labels = write_labels(tmp_path / "labels.csv", verdict_rows(ids, y))
        out = tmp_path / f"c_{strong}.json"
        assert calibrate(["--scores", str(scores), "--labels", str(labels), "--output", str(out), "--embeddings", str(cache_dir)]) == 0
        import json

        probe = json.loads(out.read_text(encoding="utf-8"))["cv"]["embedding_probe"]
        err = capsys.readouterr().err
        assert probe["rows"] == n and "embedding probe: CV AUC" in err
        if strong:
            assert probe["kept"] and probe["auc"] > probe["terms_auc"] + 0.1 and "head" in probe
        else:
            assert not probe["kept"] and "not kept" in err
