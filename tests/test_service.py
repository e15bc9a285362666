"""The HTTP scoring service end to end, over real HTTP on loopback: one item, lists, base64 and
URL images, the product check, the same numbers as main.py --input under concurrent requests,
every error status, health, readiness, metrics and the access log."""

from __future__ import annotations

import base64
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import torch

from aigc_eval.cli import inception as inception_cli
from aigc_eval.decisions.outputs import decide_files
from aigc_eval.io.image_fetch import FetchConfig
from aigc_eval.product.stage import ProductOptions
from aigc_eval.scoring.combined import score_csv
from aigc_eval.scoring.metrics import kl_to_marginal, per_image_kl
from aigc_eval.scoring.prompt_cleaning import CleaningOptions
from aigc_eval.service.schemas import IS_TERM_OMITTED, ScoreResponse
from aigc_eval.service.scoring import load_reference_marginal
from conftest import cpu_fp32, read_csv, write_csv
from service_harness import TOKEN, ImageHost, running, served_images, settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROMPTS = ["大理石台面配金色装饰，咖啡杯", "雪地背景，清晨阳光，运动鞋", "a red cup on a wooden table",
           "薰衣草花田，蛋糕", "极简白色摄影棚，手表", "咖啡杯放在木桌上"]


@pytest.fixture(scope="module")
def host():
    server = ImageHost(served_images())
    yield server
    server.close()


@pytest.fixture(scope="module")
def batch(host, clip_dir, inception_weights, tmp_path_factory):
    """main.py --input (score_csv, then decide_and_write) on a CSV of the served images (one with
    a cut-out), and evaluate_is.py --save-logits on the same CSV for the service's reference
    marginal; no caches."""
    work = tmp_path_factory.mktemp("batch")
    names = [p for p in served_images() if p.startswith("/img")] + ["/scene.png"]
    rows = [{"id": f"r{i}", "prompt": PROMPTS[i], "image_url": host.url + name, "category": "咖啡杯",
             "product_image_url": host.url + "/cutout.png" if name == "/scene.png" else ""}
            for i, name in enumerate(names)]
    csv_path = write_csv(work / "input.csv", rows)
    out = {name: work / f"{name}.csv" for name in ("clip", "is", "total", "product")}
    runtime = cpu_fp32(fetch=FetchConfig(cache_dir=None))
    assert score_csv(csv_path, out["clip"], out["is"], id_col="id", prompt_col="prompt", image_col="image_url",
                      model_name="RN50", model_dir=clip_dir, weights=inception_weights, splits=10,
                      cleaning=CleaningOptions(), runtime=runtime, product=ProductOptions(),
                      product_output=out["product"])
    decide_files({"clip": out["clip"], "inception": out["is"], "product": out["product"]}, out["total"])
    common = ["--weights", str(inception_weights), "--precision", "fp32", "--device", "cpu", "--no-cache", "-q"]
    logits = work / "logits.npy"
    assert inception_cli.main(["--input", str(csv_path), "--output", str(work / "is_only.csv"),
                               "--save-logits", str(logits), *common]) == 0
    return {"rows": rows, "logits": logits, **{k: {r["id"]: r for r in read_csv(v)} for k, v in out.items()
                                                 if k != "category"}}


@pytest.fixture(scope="module")
def server(batch, clip_dir, inception_weights, tmp_path_factory):
    with running(settings(clip_dir, inception_weights, tmp_path_factory.mktemp("cache"), token=TOKEN,
                          allow_private_urls=True, reference_marginal=batch["logits"],
                          max_body_bytes=1024 * 1024)) as url:
        yield url


def post(url: str, body, headers=AUTH, **kwargs) -> requests.Response:
    return requests.post(f"{url}/v1/score", json=body, headers=headers, timeout=60, **kwargs)


def item_for(row: dict[str, str]) -> dict[str, object]:
    item = {"id": row["id"], "image_url": row["image_url"], "prompt": row["prompt"], "category": row["category"]}
    return {**item, "product_image_url": row["product_image_url"]} if row["product_image_url"] else item


def test_one_item_by_url_and_by_base64_give_the_same_scores(server, host):
    url_item = {"image_url": host.url + "/img1.jpg", "prompt": "雪地背景，运动鞋"}
    answer = post(server, url_item)
    assert answer.status_code == 200, answer.text
    body = ScoreResponse.model_validate(answer.json())
    result = body.results[0]
    assert result.status == "ok" and result.error is None and result.id is None
    assert result.is_term.startswith("included") and body.is_term == result.is_term
    assert -1 <= result.clip_score <= 1 and 0 <= result.total_score <= 1 and result.top1_label
    assert result.components.clip_weight == 0.6 and result.components.is_weight == 0.4
    assert result.product is None and result.raw_prompt == "雪地背景，运动鞋"
    inline = base64.b64encode(host.routes["/img1.jpg"]).decode()
    for image in (inline, "data:image/jpeg;base64," + inline):
        again = post(server, {"id": "b64", "image_base64": image, "prompt": "雪地背景，运动鞋"}).json()["results"][0]
        assert again["id"] == "b64"
        assert {k: again[k] for k in ("clip_score", "top1_label", "top1_confidence", "kl", "total_score")} == \
            {k: getattr(result, k) for k in ("clip_score", "top1_label", "top1_confidence", "kl", "total_score")}


def test_a_list_with_a_product_cutout_gets_the_product_check(server, host):
    items = [{"id": "plain", "image_url": host.url + "/img0.png", "prompt": "咖啡杯"},
             {"id": "scene", "image_url": host.url + "/scene.png", "prompt": "大理石台面，咖啡杯",
              "product_image_url": host.url + "/cutout.png"}]
    results = post(server, items).json()["results"]
    assert [r["id"] for r in results] == ["plain", "scene"]
    plain, scene = results
    assert plain["product"] is None and plain["components"]["product_weight"] == 0
    assert scene["status"] == "ok" and scene["product"]["status"] == "ok", scene
    assert 0 <= scene["product"]["product_score"] <= 1 and scene["product"]["measurements"]["product_found"] is True
    assert scene["components"]["product_weight"] == 0.5
    assert scene["components"]["product_score"] == scene["product"]["product_score"]


def test_concurrent_requests_give_the_numbers_of_a_batch_run(server, batch):
    """Singles and lists from 8 threads at once, against main.py --input and evaluate_is.py."""
    rows = batch["rows"]
    bodies = [item_for(row) for row in rows] + [[item_for(row) for row in rows[i:i + 3]] for i in (0, 3)]
    bodies = bodies * 2
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda body: post(server, body), bodies))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    results = [r for a in answers for r in a.json()["results"]]
    assert len(results) == 2 * 2 * len(rows)
    for result in results:
        clip, inc, total = (batch[k][result["id"]] for k in ("clip", "is", "total"))
        assert result["status"] == "ok" == total["status"], result
        assert abs(result["clip_score"] - float(clip["clip_score"])) <= 1e-6 + 1e-12
        assert result["top1_label"] == inc["top1_label"] and result["top1_class"] == int(inc["top1_class"])
        # Inception's fp32 sums depend on the batch an image shares (docs/service.md#agreement): 1e-5.
        assert abs(result["top1_confidence"] - float(inc["top1_confidence"])) <= 1e-5
        # The reference marginal is this very batch's: the single-image KL is the batch's kl.
        assert abs(result["kl"] - float(inc["kl"])) <= 1e-5
        assert abs(result["total_score"] - float(total["total_score"])) <= 1e-5
        assert "; ".join(result["regenerate"]) == total["regenerate"]
        if result["id"] == rows[-1]["id"]:
            assert abs(result["product"]["product_score"] - float(batch["product"][result["id"]]["product_score"])) < 1e-9


def test_reference_marginal_files_and_the_kl(batch, tmp_path):
    logits = torch.from_numpy(np.load(batch["logits"]))
    marginal = load_reference_marginal(batch["logits"], 1000)
    assert torch.allclose(kl_to_marginal(logits, marginal), per_image_kl(logits), atol=1e-9)
    np.save(tmp_path / "p.npy", marginal.numpy())
    assert torch.allclose(load_reference_marginal(tmp_path / "p.npy", 1000), marginal)
    for bad in (np.zeros((3, 10)), np.full(1000, 0.5), np.array(["a"])):
        np.save(tmp_path / "bad.npy", bad)
        with pytest.raises(ValueError, match="--reference-marginal"):
            load_reference_marginal(tmp_path / "bad.npy", 1000)


def test_without_a_reference_marginal_the_is_term_is_left_out(clip_dir, inception_weights, host):
    with running(settings(clip_dir, inception_weights, None, allow_private_urls=True)) as url:
        result = post(url, {"image_url": host.url + "/img2.png", "prompt": "咖啡杯"}, headers={}).json()["results"][0]
    assert result["is_term"] == IS_TERM_OMITTED and result["kl"] is None
    assert result["components"]["is_weight"] == 0 and result["components"]["is_norm"] is None
    assert math.isclose(result["total_score"], result["components"]["clip_norm"], abs_tol=1e-6)


def test_error_statuses_name_the_field(server, host):
    good = {"image_url": host.url + "/img0.png", "prompt": "咖啡杯"}
    assert post(server, good, headers={}).status_code == 401
    wrong = post(server, good, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    assert wrong.json()["detail"]["field"] == "Authorization"
    missing = post(server, {"image_url": good["image_url"]})
    assert missing.status_code == 422 and "prompt" in missing.json()["detail"][0]["loc"]
    both = post(server, {**good, "image_base64": "AAAA"})
    assert both.status_code == 422 and "exactly one" in both.text
    assert post(server, [], headers=AUTH).status_code == 422
    bad_json = requests.post(f"{server}/v1/score", data=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert bad_json.status_code == 422
    for body, field in (({"image_base64": "not base64!", "prompt": "x"}, "image_base64"),
                        ({"image_url": "file:///etc/passwd", "prompt": "x"}, "image_url"),
                        ([good, {"image_url": "ftp://x/y.png", "prompt": "x"}], "items.1.image_url"),
                        ({**good, "product_image_url": "/etc/passwd"}, "product_image_url")):
        answer = post(server, body)
        assert answer.status_code == 400 and answer.json()["detail"]["field"] == field, answer.text
    huge = requests.post(f"{server}/v1/score", data=b"x" * (1024 * 1024 + 1), headers=AUTH)
    assert huge.status_code == 413 and huge.json()["detail"]["field"] == "body"
    chunked = requests.post(f"{server}/v1/score", data=(b"x" * 65536 for _ in range(20)), headers=AUTH)
    assert chunked.status_code == 413
    gone = post(server, [good, {"id": "gone", "image_url": host.url + "/missing.png", "prompt": "咖啡杯"},
                         {"id": "junk", "image_base64": base64.b64encode(b"not an image").decode(), "prompt": "x"}])
    assert gone.status_code == 200
    ok, missing_image, junk = gone.json()["results"]
    assert ok["status"] == "ok" and missing_image["status"] == "error" and "404" in missing_image["error"]
    assert junk["status"] == "error" and "image" in junk["error"] and junk["total_score"] is None


def test_health_readiness_metrics_docs_and_access_log(server, host, caplog):
    assert requests.get(f"{server}/healthz").json()["status"] == "ok"
    assert requests.get(f"{server}/readyz").json()["status"] == "ok"
    with caplog.at_level(logging.INFO, logger="aigc_eval"):
        for _ in range(2):  # the second time the features come from the score cache
            assert post(server, {"image_url": host.url + "/img3.jpg", "prompt": "手表"}).status_code == 200
    assert any('"POST /v1/score" 200' in record.getMessage() for record in caplog.records)
    for path in ("/metrics", "/openapi.json", "/docs"):  # with --token, only the probes are open
        refused = requests.get(f"{server}{path}")
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer", path
    metrics = requests.get(f"{server}/metrics", headers=AUTH).text
    for line in ('aigc_eval_http_requests_total{path="/v1/score",status="200"}', "aigc_eval_batch_size_bucket",
                 "aigc_eval_queue_depth 0.0", 'aigc_eval_score_cache_total{model="clip",outcome="reused"}',
                 "aigc_eval_http_request_seconds_bucket", 'aigc_eval_items_total{status="ok"}'):
        assert line in metrics, line
    schema = requests.get(f"{server}/openapi.json", headers=AUTH).json()
    assert {"ScoreItem", "ScoreResponse", "ErrorResponse"} <= set(schema["components"]["schemas"])
    assert set(schema["paths"]["/v1/score"]["post"]["responses"]) >= {"200", "400", "401", "413", "422", "503", "504"}
    assert "swagger" in requests.get(f"{server}/docs", headers=AUTH).text.lower()
    assert "security" in schema["paths"]["/metrics"]["get"]
