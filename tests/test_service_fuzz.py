"""schemathesis against the running service's own /openapi.json: no server error, every answer's
status, content type and body as the schema says, in at least 1,000 requests.

schemathesis runs from its own venv (.venv-fuzz, requirements-fuzz.txt; scripts/test.sh makes
it): requirements.txt installs the [dubbo] extra, whose jsonrpcclient 3.x holds click below 8,
and schemathesis 4 needs click 8. Its CLI is a subprocess against the real app under uvicorn on
loopback (random checkpoints). DNS is a resolver that parses numeric hosts only, so the URLs it
makes up fail at once instead of asking the network. The requests are counted by the service
itself (its /metrics), not taken from schemathesis's report alone."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import ROOT

from service_harness import running, settings

ST = Path(os.environ.get("AIGC_EVAL_FUZZ_VENV", ROOT / ".venv-fuzz")) / "bin" / "st"
SCHEMA_PATHS = ("/v1/score", "/healthz", "/readyz", "/metrics")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SEED = 28
# (operations, examples per operation): most of the budget on the one operation with a body.
RUNS = (("--include-path", "/v1/score", 860), ("--exclude-path", "/v1/score", 40))
MIN_REQUESTS = 1000
real_getaddrinfo = socket.getaddrinfo


def numeric_only(host, port, family=0, type=0, proto=0, flags=0):
    return real_getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)  # never asks DNS


@pytest.fixture(scope="module")
def service(clip_dir, inception_weights):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", numeric_only)
        with running(settings(clip_dir, inception_weights, None)) as url:
            yield url


def requests_by_status(url: str) -> dict[tuple[str, str], float]:
    """aigc_eval_http_requests_total by (path, status), from the service's /metrics."""
    text = requests.get(f"{url}/metrics", timeout=30).text
    pattern = r'^aigc_eval_http_requests_total\{path="([^"]*)",status="(\d+)"\} ([0-9.e+]+)$'
    return {(path, status): float(count) for path, status, count in re.findall(pattern, text, re.MULTILINE)}


def schemathesis(url: str, workdir: Path, select: tuple[str, str], examples: int) -> dict:
    """One `st run` against `url`; its JSON run report."""
    reports = workdir / f"report-{select[1].strip('/').replace('/', '-')}"
    command = [str(ST), "run", f"{url}/openapi.json", select[0], select[1], "--checks", CHECKS,
               "--phases", "examples,coverage,fuzzing", "--max-examples", str(examples), "--seed", str(SEED),
               "--workers", "2", "--generation-database", "none", "--report", "json", "--report-dir", str(reports),
               "--request-timeout", "30", "--no-color"]
    run = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=400)
    found = sorted(reports.glob("*.json"))
    assert found, f"schemathesis wrote no report (exit {run.returncode}):\n{run.stdout[-3000:]}{run.stderr[-3000:]}"
    report = json.loads(found[-1].read_text(encoding="utf-8"))
    assert run.returncode == 0 and report["exit_code"] == 0, run.stdout[-6000:]
    return report


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(service, tmp_path):
    if not ST.exists():
        pytest.fail(f"{ST} is missing: run scripts/test.sh, or python3 -m venv .venv-fuzz && "
                    ".venv-fuzz/bin/pip install -r requirements-fuzz.txt")
    before = requests_by_status(service)
    generated = 0
    for option, value, examples in RUNS:
        report = schemathesis(service, tmp_path, (option, value), examples)
        assert report["failures"] == [] and report["errors"] == [], (report["failures"], report["errors"])
        assert report["stop_reason"] == "completed" and report["complete"], report["stop_reason"]
        assert report["test_cases"]["with_failures"] == 0 and report["test_cases"]["errored"] == 0
        generated += report["test_cases"]["generated"]
    after = requests_by_status(service)
    sent = {key: after[key] - before.get(key, 0.0) for key in after if after[key] > before.get(key, 0.0)}
    to_schema = {key: count for key, count in sent.items() if key[0] in SCHEMA_PATHS}
    assert sum(to_schema.values()) >= MIN_REQUESTS, sent
    assert generated >= MIN_REQUESTS, generated
    assert not [key for key in sent if key[1].startswith("5") and key[1] != "503"], sent  # 503: documented overload
    assert sent.get(("/v1/score", "200"), 0) > 0 and sent.get(("/v1/score", "422"), 0) > 0, sent  # both kinds reached
