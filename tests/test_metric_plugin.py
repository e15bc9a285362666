"""A metric from another package, installed at test time (pip install of docs/plugin_example),
found through the aigc_eval.metrics entry-point group: it appears in result_total.csv with its
weight, in the service's answers and in the report; the registry's own rules."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, photo, read_csv, write_csv

from aigc_eval import columns as col
from aigc_eval.metrics.base import MetricResult
from aigc_eval.metrics.decide import decide, decision_settings
from aigc_eval.metrics.registry import BUILTIN, create_metrics, metric_classes, parse_metric_names
from aigc_eval.metrics.setup import MetricSetup


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """The example plugin installed (pip, no network, no build isolation) into a folder of its own."""
    target, source = tmp_path_factory.mktemp("plugin-site"), tmp_path_factory.mktemp("plugin-src") / "plugin"
    shutil.copytree(ROOT / "docs" / "plugin_example", source)  # the build leaves files beside the source
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(source)], check=True, capture_output=True, timeout=300)
    assert list(target.glob("aigc_eval_colourfulness-*.dist-info"))
    return target


def run_main(args: list[str], plugin_path: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), str(ROOT)])}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_plugin_metric_joins_the_total_with_its_weight_and_the_report(plugin_path, tmp_path, clip_dir,
                                                                        inception_weights):
    for i in range(3):
        photo((80, 60), seed=i).save(tmp_path / f"p{i}.png")
    write_csv(tmp_path / "in.csv", [{"id": f"r{i}", "prompt": "木桌上的杯子", "image_url": f"p{i}.png"} for i in range(3)])
    common = ["--input", "in.csv", "--model", "RN50", "--model-dir", str(clip_dir), "--weights", str(inception_weights),
              "--device", "cpu", "--precision", "fp32", "-q"]
    done = run_main([*common, "--weight", "colourfulness=0.5"], plugin_path, tmp_path)
    assert done.returncode == 0, done.stderr
    rows = read_csv(tmp_path / "result_total.csv")
    header = list(rows[0])
    assert "colourfulness" in header and "colourfulness_norm" in header
    sys.path.insert(0, str(plugin_path))
    try:
        from aigc_eval_colourfulness import colourfulness
    finally:
        sys.path.remove(str(plugin_path))
    from PIL import Image
    for row in rows:
        expected = colourfulness(np.asarray(Image.open(tmp_path / row[col.IMAGE_URL]).convert("RGB")))
        assert float(row["colourfulness"]) == pytest.approx(expected, abs=1e-4)
        terms = (0.6 * float(row[col.CLIP_NORM]) + 0.4 * float(row[col.IS_NORM])
                 + 0.5 * min(expected / 150, 1.0)) / 1.5
        assert float(row[col.TOTAL_SCORE]) == pytest.approx(terms, abs=2e-6)
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "colourfulness 0.50" in report
    # Its rule, switched on, names the image in regenerate; --metrics leaves it out entirely.
    done = run_main([*common, "--threshold", "colourfulness.min=1000", "--output", "t2.csv", "--no-report"],
                    plugin_path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert all("colourfulness" in r[col.REGENERATE] for r in read_csv(tmp_path / "t2.csv"))
    done = run_main([*common, "--metrics", "clip,inception", "--output", "t3.csv", "--no-report"], plugin_path, tmp_path)
    assert done.returncode == 0 and "colourfulness" not in read_csv(tmp_path / "t3.csv")[0]


def test_a_plugin_metric_is_in_the_service_answer(plugin_path, tmp_path, clip_dir, inception_weights):
    """The service, in a process that sees the plugin, gives its values and its term."""
    script = f"""
import base64, io, json, sys
sys.path[:0] = [{str(plugin_path)!r}, {str(ROOT / 'tests')!r}, {str(ROOT)!r}]
from service_harness import running, settings, png_bytes
import requests
s = settings({str(clip_dir)!r}, {str(inception_weights)!r}, None, metric_weights={{"clip": 0.6, "colourfulness": 0.5}})
with running(s) as url:
    body = {{"prompt": "木桌上的杯子", "image_base64": base64.b64encode(png_bytes()).decode()}}
    print(json.dumps(requests.post(url + "/v1/score", json=body, timeout=60).json()))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout.strip().splitlines()[-1])["results"]
    values = result["metrics"]["colourfulness"]["values"]
    assert result["components"]["weights"] == {"clip": 0.6, "colourfulness": 0.5}
    expected = (0.6 * result["components"]["clip_norm"] + 0.5 * values["colourfulness_norm"]) / 1.1
    assert result["total_score"] == pytest.approx(expected, abs=1e-9)


def test_the_registry_refuses_unknown_names_and_unmet_needs():
    assert list(BUILTIN) == ["clip", "inception", "product", "product_clip"]
    assert list(metric_classes())[:4] == list(BUILTIN)
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metric_names("clip,nope")
    with pytest.raises(ValueError, match="product_clip needs clip"):
        create_metrics(["product", "product_clip"], MetricSetup(), explicit=True)
    assert list(create_metrics(["product", "product_clip"], MetricSetup())) == ["product"]  # left out when implied


def test_the_lightweight_set_decides_on_the_product_check_alone():
    metrics = create_metrics(["product"], MetricSetup())
    settings = decision_settings(metrics)
    ok = decide(metrics, {"product": MetricResult("ok", "", {"product_score": 0.25, "product_issues": "product_cut_off"})},
                settings)
    assert (ok.status, ok.total, ok.regenerate) == ("ok", 0.25, ["product_cut_off"])
    failed = decide(metrics, {"product": MetricResult("error", "cut-out 404")}, settings)
    assert (failed.status, failed.error) == ("error", "product: cut-out 404")


def test_serve_and_stream_take_the_same_decision_flags(clip_dir, inception_weights, tmp_path):
    from aigc_eval.cli import serve, stream

    common = ["--metrics", "clip,inception", "--weight", "clip=0.5", "--threshold", "clip.min=0.2", "--min-confidence",
              "0.1", "--model", "RN50", "--model-dir", str(clip_dir), "--weights", str(inception_weights)]
    settings = serve.settings_from(serve.build_parser().parse_args(common))
    assert settings.metrics == ("clip", "inception") and settings.metric_weights == {"clip": 0.5}
    assert settings.thresholds == {"clip.min": "0.2", "inception.min_confidence": "0.1"}
    options = stream.options_from(stream.build_parser().parse_args([*common, "--output-dir", str(tmp_path)]))
    assert options.results.decision.weights == {"clip": 0.5, "inception": 0.4}
    assert options.results.decision.thresholds == {"clip.min": 0.2, "inception.min_confidence": 0.1}
    with pytest.raises(ValueError, match="disagree"):
        serve.settings_from(serve.build_parser().parse_args([*common, "--clip-weight", "0.7"]))
