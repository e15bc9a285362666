"""generate_request.py against real parts on 127.0.0.1: a ZooKeeper server (Debian's package),
Dubbo-style jsonrpc and telnet providers (tests/dubbo_provider.py), and an image server."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, cpu_fp32, read_csv, write_csv
from dubbo_provider import (
    GenerationService,
    ImageServer,
    JsonRpcProvider,
    TelnetProvider,
    fault_is_transient_failure,
    transient_faults,
)
from kazoo.client import KazooClient
from zookeeper_server import (
    INSTALL_HINT,
    ZooKeeperServer,
    free_port,
    zookeeper_classpath,
)

from aigc_eval import columns as col
from aigc_eval.cli.generate import main
from aigc_eval.generation.dubbo import (
    JsonRpcTransport,
    ServiceAddress,
    SetupError,
    TelnetTransport,
)
from aigc_eval.generation.request_template import DEFAULT_TEMPLATE, RequestTemplate
from aigc_eval.generation.runner import (
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_ROW_ERRORS,
    EXIT_SERVICE,
    EXIT_USAGE,
    CallPolicy,
    generate_requests,
)
from aigc_eval.generation.state import RunLock
from aigc_eval.io.csv_io import read_rows

METHOD = "generate"
FAST = CallPolicy(workers=8, timeout=1.0, retries=2, backoff=0.01)
_interfaces = itertools.count()


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory):
    if zookeeper_classpath() is None:
        pytest.fail(INSTALL_HINT)  # CI installs it; a silent skip would hide the jsonrpc tests
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper")).start()
    yield server
    server.stop()


@pytest.fixture
def zk(zookeeper):
    client = KazooClient(hosts=zookeeper.address)
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


@pytest.fixture(scope="session")
def images():
    server = ImageServer()
    yield server
    server.close()


@pytest.fixture
def interface():
    """A fresh interface name per test, so tests never see each other's ZooKeeper nodes."""
    return f"com.example.aigc.ImageService{next(_interfaces)}"


@pytest.fixture
def provider(images, interface, zk):
    """A registered jsonrpc provider; tests change provider.service.fault to inject failures."""
    server = JsonRpcProvider(GenerationService(images.base_url, hang_seconds=2.0), interface, METHOD)
    server.register(zk)
    yield server
    server.close()


def make_input(path: Path, count: int) -> Path:
    rows = [{col.ID: f"r-{i:03d}", col.PROMPT: f"背景 {i}", col.PRODUCT_IMAGE_URL: product(i), col.CATEGORY: "蛋糕"}
            for i in range(count)]
    return write_csv(path, rows)


def product(i: int) -> str:
    return f"https://img.example.com/products/item-{i:03d}.png"  # only echoed by the provider, never fetched


def jsonrpc(zookeeper, interface, version="1.0.0", group="", timeout=1.0):
    return lambda: JsonRpcTransport(zookeeper.address, ServiceAddress(interface, METHOD, version, group), timeout, 5)


def run(tmp_path, connect, input_path=None, policy=FAST, **kwargs):
    return generate_requests(input_path or tmp_path / "in.csv", tmp_path / "out.csv", tmp_path / "err.csv", connect,
                             RequestTemplate(DEFAULT_TEMPLATE), policy=policy, quiet=True, seed=0, **kwargs)


def outcome(tmp_path) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """(output rows by source id, error rows by id), checking that no input row is in both."""
    done: dict[str, list[dict]] = {}
    for row in read_csv(tmp_path / "out.csv"):
        done.setdefault(row[col.SOURCE_ID], []).append(row)
    errors = {row[col.ID]: row for row in read_csv(tmp_path / "err.csv")}
    assert not set(done) & set(errors)
    return done, errors


def test_clean_batch_through_zookeeper_writes_what_the_evaluators_read(tmp_path, zookeeper, provider, interface, images):
    summary = run(tmp_path, jsonrpc(zookeeper, interface), input_path=ROOT / "data_sample.csv")
    assert (summary.generated, summary.images, summary.failed, summary.exit_code) == (5, 10, 0, EXIT_OK)
    header, rows = read_rows(tmp_path / "out.csv", [col.ID, col.PROMPT, col.IMAGE_URL])
    assert header[:6] == [col.ID, col.PROMPT, col.IMAGE_URL, col.CATEGORY, col.PRODUCT_IMAGE_URL, col.SOURCE_ID]
    assert [row[col.ID] for row in rows] == [f"p-00{i}_{j}" for i in range(1, 6) for j in range(2)]
    first = rows[0]
    assert first[col.PROMPT] == "大理石台面配金色装饰，柔和的自然光" and first[col.CATEGORY] == "蛋糕"
    assert first[col.PRODUCT_IMAGE_URL] == "https://img.example.com/products/cake-001.png"
    assert all(row[col.IMAGE_URL].startswith(images.base_url + "/gen/") for row in rows)
    assert sum(provider.service.calls.values()) == 5
    assert read_csv(tmp_path / "err.csv") == [] and not (tmp_path / "out.csv.journal").exists()
    # the consumer node dubbo_client registered went away with its session
    assert not provider_nodes_of(tmp_path, zookeeper, interface, "consumers")


def provider_nodes_of(tmp_path, zookeeper, interface, kind):
    client = KazooClient(hosts=zookeeper.address)
    client.start(timeout=10)
    try:
        path = f"/dubbo/{interface}/{kind}"
        return client.get_children(path) if client.exists(path) else []
    finally:
        client.stop()
        client.close()


def test_output_scores_directly_with_the_clipscore_evaluator(tmp_path, zookeeper, provider, interface, clip_dir):
    from aigc_eval.scoring.clipscore import evaluate_clipscore

    run(tmp_path, jsonrpc(zookeeper, interface), input_path=ROOT / "data_sample.csv")
    rows, errors = evaluate_clipscore(tmp_path / "out.csv", tmp_path / "clip.csv", model_name="RN50", model_dir=clip_dir,
                                      runtime=cpu_fp32(batch_size=4, workers=2))
    scored = read_csv(tmp_path / "clip.csv")
    assert (rows, errors) == (10, 0)
    assert all(row[col.STATUS] == col.STATUS_OK and -1 <= float(row[col.CLIP_SCORE]) <= 1 for row in scored)
    assert {row[col.SOURCE_ID] for row in scored} == {f"p-00{i}" for i in range(1, 6)}


def test_thirty_percent_transient_faults_are_retried_and_every_row_accounted_for(tmp_path, zookeeper, provider, interface):
    fault = transient_faults(30, "seed0")
    provider.service.fault = fault
    make_input(tmp_path / "in.csv", 40)
    summary = run(tmp_path, jsonrpc(zookeeper, interface))
    done, errors = outcome(tmp_path)
    assert set(done) | set(errors) == {f"r-{i:03d}" for i in range(40)}
    doomed = {f"r-{i:03d}" for i in range(40) if fault_is_transient_failure(fault, product(i), 3)}
    assert doomed and doomed <= set(errors)  # seed0 fails three rows on all three attempts
    for row in errors.values():
        assert row[col.ERROR_TYPE] in {"Timeout", "ConnectionError", "HTTP503"} and row[col.ATTEMPTS] == "3"
        assert provider.service.calls[row[col.PRODUCT_IMAGE_URL]] == 3
    assert all(len(rows) == 2 for rows in done.values())
    assert summary.retries >= sum(fault(product(i), 1) != "ok" for i in range(40))
    assert summary.exit_code == EXIT_ROW_ERRORS

    provider.service.fault = lambda key, nth: "ok"  # the service recovers: a rerun completes exactly the rest
    before = dict(provider.service.calls)
    assert run(tmp_path, jsonrpc(zookeeper, interface)).exit_code == EXIT_OK
    called_again = {key for key, count in provider.service.calls.items() if count > before.get(key, 0)}
    assert called_again == {errors[key][col.PRODUCT_IMAGE_URL] for key in errors}
    done, errors = outcome(tmp_path)
    assert len(done) == 40 and not errors


def test_service_errors_are_not_retried_and_keep_the_service_message(tmp_path, zookeeper, provider, interface):
    # -32001 is outside dubbo_client's error table (AttributeError there), -32602 inside it (TypeError there).
    actions = {product(1): "error", product(2): "invalid-params"}
    provider.service.fault = lambda key, nth: actions.get(key, "ok")
    make_input(tmp_path / "in.csv", 4)
    assert run(tmp_path, jsonrpc(zookeeper, interface)).exit_code == EXIT_ROW_ERRORS
    done, errors = outcome(tmp_path)
    assert set(done) == {"r-000", "r-003"}
    assert errors["r-001"][col.ERROR_TYPE] == "ServiceError" and errors["r-001"][col.ATTEMPTS] == "1"
    assert "JSON-RPC error -32001: prompt rejected for" in errors["r-001"][col.ERROR_MESSAGE]
    assert "IllegalArgumentException" in errors["r-001"][col.ERROR_MESSAGE]
    assert "JSON-RPC error -32602: Invalid method parameters" in errors["r-002"][col.ERROR_MESSAGE]
    assert provider.service.calls[product(1)] == provider.service.calls[product(2)] == 1

    provider.service.fault = lambda key, nth: "ok"
    assert run(tmp_path, jsonrpc(zookeeper, interface), retry_errors=True).exit_code == EXIT_OK
    done, errors = outcome(tmp_path)
    assert set(done) == {"r-000", "r-001", "r-002", "r-003"} and not errors
    assert provider.service.calls[product(0)] == 1  # --retry-errors called only the error file's rows


def test_provider_that_leaves_zookeeper_mid_run(tmp_path, zookeeper, provider, interface, zk):
    def leave_after_ten(key, nth):
        if sum(provider.service.calls.values()) == 10:
            provider.deregister(zk)
        return "ok"

    provider.service.fault = leave_after_ten
    provider.service.delay = 0.02
    make_input(tmp_path / "in.csv", 40)
    summary = run(tmp_path, jsonrpc(zookeeper, interface))
    done, errors = outcome(tmp_path)
    assert set(done) | set(errors) == {f"r-{i:03d}" for i in range(40)}
    assert errors and {row[col.ERROR_TYPE] for row in errors.values()} == {"NoProvider"}
    assert all(row[col.ATTEMPTS] == "3" for row in errors.values()) and summary.exit_code == EXIT_ROW_ERRORS

    provider.register(zk)
    assert run(tmp_path, jsonrpc(zookeeper, interface)).exit_code == EXIT_OK
    done, errors = outcome(tmp_path)
    assert len(done) == 40 and not errors


def test_zookeeper_unreachable_exits_4_with_the_address(tmp_path, capsys):
    make_input(tmp_path / "in.csv", 2)
    address = f"127.0.0.1:{free_port()}"
    code = main(["--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"), "--error", str(tmp_path / "err.csv"),
                 "--zookeeper", address, "--interface", "com.example.Nothing", "--method", METHOD, "--connect-timeout", "1", "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_SERVICE
    assert err.strip() == f"error: ZooKeeper at {address} did not answer within 1 s; check --zookeeper"
    assert read_csv(tmp_path / "out.csv") == [] and read_csv(tmp_path / "err.csv") == []  # nothing lost, nothing invented


def test_no_provider_registered_exits_4(tmp_path, zookeeper, interface, capsys):
    make_input(tmp_path / "in.csv", 2)
    code = main(["--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"), "--error", str(tmp_path / "err.csv"),
                 "--zookeeper", zookeeper.address, "--interface", interface, "--method", METHOD, "-q"])
    assert code == EXIT_SERVICE
    assert f"error: no provider of {interface} is registered in ZooKeeper at {zookeeper.address}" in capsys.readouterr().err


def test_wrong_version_lists_what_is_registered(tmp_path, zookeeper, provider, interface):
    make_input(tmp_path / "in.csv", 2)
    with pytest.raises(SetupError, match=r"version='2\.0\.0'.*registered: jsonrpc://127\.0\.0\.1:\d+ version='1\.0\.0'"):
        run(tmp_path, jsonrpc(zookeeper, interface, version="2.0.0"))
    assert sum(provider.service.calls.values()) == 0


def test_missing_configurators_node_is_created_instead_of_nonodeerror(tmp_path, zookeeper, images, interface, zk):
    server = JsonRpcProvider(GenerationService(images.base_url), interface, METHOD)
    try:
        server.register(zk, version="2.1", group="gpu", configurators=False)
        make_input(tmp_path / "in.csv", 3)
        assert run(tmp_path, jsonrpc(zookeeper, interface, version="2.1", group="gpu")).exit_code == EXIT_OK
        assert zk.exists(f"/dubbo/{interface}/configurators")
    finally:
        server.close()


def test_unknown_method_exits_4(tmp_path, zookeeper, provider, interface, capsys):
    make_input(tmp_path / "in.csv", 3)
    code = main(["--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"), "--error", str(tmp_path / "err.csv"),
                 "--zookeeper", zookeeper.address, "--interface", interface, "--method", "paint", "--version", "1.0.0", "-q"])
    assert code == EXIT_SERVICE
    assert "no such method (JSON-RPC -32601" in capsys.readouterr().err
    assert read_csv(tmp_path / "err.csv") == []  # a configuration error is not blamed on the rows


def test_malformed_rows_go_to_the_error_file_with_the_reason(tmp_path, zookeeper, provider, interface):
    rows = [
        {col.ID: "a", col.PROMPT: "雪地", col.PRODUCT_IMAGE_URL: product(0), col.CATEGORY: "鞋靴"},
        {col.ID: "", col.PROMPT: "森林", col.PRODUCT_IMAGE_URL: product(1), col.CATEGORY: "茶饮"},
        {col.ID: "a", col.PROMPT: "花田", col.PRODUCT_IMAGE_URL: product(2), col.CATEGORY: "蛋糕"},
        {col.ID: "b", col.PROMPT: " ", col.PRODUCT_IMAGE_URL: product(3), col.CATEGORY: "蛋糕"},
        {col.ID: "c", col.PROMPT: "木地板", col.PRODUCT_IMAGE_URL: product(4), col.CATEGORY: "家具"},
    ]
    write_csv(tmp_path / "in.csv", rows)
    for _ in range(2):  # a rerun reports the same invalid rows once, and calls nothing again
        assert run(tmp_path, jsonrpc(zookeeper, interface)).exit_code == EXIT_ROW_ERRORS
        done = {row[col.SOURCE_ID] for row in read_csv(tmp_path / "out.csv")}
        errors = read_csv(tmp_path / "err.csv")
        assert done == {"a", "c"}  # the first "a"; its duplicate is in the error file
        assert [(row[col.ERROR_TYPE], row[col.ERROR_MESSAGE]) for row in errors] == [
            ("InvalidRow", "in.csv line 3: missing id"),
            ("InvalidRow", "in.csv line 4: duplicate id a (first on line 2)"),
            ("InvalidRow", "in.csv line 5: empty or unusable prompt"),
        ]
        assert sum(provider.service.calls.values()) == 2


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("id,text\n1,x\n", "missing column(s) prompt, product_image_url, category"),
    (b"id,prompt\n\xff\xfe,x\n", "not UTF-8"),
])
def test_unusable_input_file_is_one_line_naming_the_file(tmp_path, capsys, content, message):
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code = main(["--input", str(path), "--output", str(tmp_path / "out.csv"), "--error", str(tmp_path / "err.csv"),
                 "--interface", "com.example.X", "--method", METHOD])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and err.startswith(f"error: {path}: ") and message in err and "\n" not in err
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("style", ["2.6", "2.7", "3"])
def test_telnet_transport_with_each_reply_format(tmp_path, images, style, capsys):
    service = GenerationService(images.base_url)
    server = TelnetProvider(service, "com.example.Telnet", METHOD, style=style)
    try:
        make_input(tmp_path / "in.csv", 6)
        # snake_case spellings of the flags work too
        code = main(["--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"), "--error", str(tmp_path / "err.csv"),
                     "--transport", "telnet", "--provider", server.address, "--interface", "com.example.Telnet",
                     "--method", METHOD, "--response_path", "imageUrls", "--workers", "3", "-q"])
    finally:
        server.close()
    assert code == EXIT_OK, capsys.readouterr().err
    done, errors = outcome(tmp_path)
    assert len(done) == 6 and not errors and sum(service.calls.values()) == 6
    assert done["r-002"][1][col.IMAGE_URL] == service.result(product(2))["imageUrls"][1]


def test_telnet_failures_retry_transient_and_record_service_errors(tmp_path, images):
    actions = {(product(0), 1): "drop", (product(1), 1): "timeout", (product(2), 1): "error"}
    service = GenerationService(images.base_url, fault=lambda key, nth: actions.get((key, nth), "ok"), hang_seconds=2.0)
    server = TelnetProvider(service, "com.example.Telnet", METHOD)
    address = ServiceAddress("com.example.Telnet", METHOD)
    try:
        make_input(tmp_path / "in.csv", 4)
        summary = run(tmp_path, lambda: TelnetTransport(server.address, address, timeout=1.0))
    finally:
        server.close()
    done, errors = outcome(tmp_path)
    assert set(done) == {"r-000", "r-001", "r-003"} and summary.retries == 2
    assert (errors["r-002"][col.ERROR_TYPE], errors["r-002"][col.ATTEMPTS]) == ("ServiceError", "1")
    assert "Failed to invoke method generate, cause: java.lang.IllegalArgumentException" in errors["r-002"][col.ERROR_MESSAGE]


def test_telnet_unknown_method_and_refused_provider(tmp_path, images, capsys):
    server = TelnetProvider(GenerationService(images.base_url), "com.example.Telnet", METHOD)
    make_input(tmp_path / "in.csv", 2)
    common = ["--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"), "--error", str(tmp_path / "err.csv"),
              "--transport", "telnet", "--interface", "com.example.Telnet", "--backoff", "0.01", "--timeout", "1", "-q"]
    try:
        assert main([*common, "--provider", server.address, "--method", "paint"]) == EXIT_SERVICE
        assert "the provider answered 'No such method paint in service com.example.Telnet'" in capsys.readouterr().err
    finally:
        server.close()
    assert main([*common, "--provider", f"127.0.0.1:{free_port()}", "--method", METHOD, "--retries", "1"]) == EXIT_ROW_ERRORS
    assert {(row[col.ERROR_TYPE], row[col.ATTEMPTS]) for row in read_csv(tmp_path / "err.csv")} == {("ConnectionRefused", "2")}


def test_a_second_run_on_the_same_files_is_locked_out(tmp_path, capsys):
    make_input(tmp_path / "in.csv", 1)
    with RunLock([tmp_path / "out.csv"]):
        code = main(["--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"), "--error", str(tmp_path / "err.csv"),
                     "--transport", "telnet", "--provider", "127.0.0.1:1", "--interface", "com.example.X", "--method", METHOD])
    assert code == EXIT_LOCKED
    assert f"error: {tmp_path / 'out.csv'} is being written by another run (pid {os.getpid()})" in capsys.readouterr().err


def test_output_of_another_stage_is_not_overwritten(tmp_path, capsys):
    make_input(tmp_path / "in.csv", 1)
    write_csv(tmp_path / "out.csv", [{col.ID: "x", col.PROMPT: "p", col.IMAGE_URL: "u"}])  # e.g. the NSQ listener's output.csv
    code = main(["--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"), "--error", str(tmp_path / "err.csv"),
                 "--transport", "telnet", "--provider", "127.0.0.1:1", "--interface", "com.example.X", "--method", METHOD])
    assert code == EXIT_USAGE and "was not written by generate_request.py" in capsys.readouterr().err
    assert read_csv(tmp_path / "out.csv") == [{col.ID: "x", col.PROMPT: "p", col.IMAGE_URL: "u"}]


def test_kill_9_mid_run_then_resume_completes_exactly_the_missing_rows(tmp_path, images):
    service = GenerationService(images.base_url, delay=0.03)
    server = TelnetProvider(service, "com.example.Telnet", METHOD)
    make_input(tmp_path / "in.csv", 60)
    journal = tmp_path / "out.csv.journal"
    command = [sys.executable, str(ROOT / "generate_request.py"), "--input", str(tmp_path / "in.csv"),
               "--output", str(tmp_path / "out.csv"), "--error", str(tmp_path / "err.csv"), "--transport", "telnet",
               "--provider", server.address, "--interface", "com.example.Telnet", "--method", METHOD, "--workers", "2", "-q"]
    try:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if journal.exists() and journal.read_bytes().count(b"\n") >= 10:
                break
            time.sleep(0.01)
        assert process.poll() is None, process.stderr.read().decode()
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()
        journalled = {json.loads(line)["key"] for line in journal.read_bytes().splitlines()}
        assert 10 <= len(journalled) < 60 and read_csv(tmp_path / "out.csv") == []
        with open(journal, "ab") as handle:  # a record torn by the crash
            handle.write(b'{"key": "r-059", "rows": [{"id": "r-05')
        first_run = dict(service.calls)

        summary = run(tmp_path, lambda: TelnetTransport(server.address, ServiceAddress("com.example.Telnet", METHOD), 5.0))
    finally:
        server.close()
    second_run = {key for key, count in service.calls.items() if count > first_run.get(key, 0)}
    assert second_run == {product(i) for i in range(60)} - {product(int(key[2:])) for key in journalled}
    assert summary.skipped == len(journalled) and summary.exit_code == EXIT_OK
    rows = read_csv(tmp_path / "out.csv")
    assert [row[col.ID] for row in rows] == [f"r-{i:03d}_{j}" for i in range(60) for j in range(2)]
    assert not journal.exists()


def test_sigterm_saves_finished_rows_and_exits_130(tmp_path, images):
    service = GenerationService(images.base_url, delay=0.03)
    server = TelnetProvider(service, "com.example.Telnet", METHOD)
    make_input(tmp_path / "in.csv", 60)
    command = [sys.executable, str(ROOT / "generate_request.py"), "--input", str(tmp_path / "in.csv"),
               "--output", str(tmp_path / "out.csv"), "--error", str(tmp_path / "err.csv"), "--transport", "telnet",
               "--provider", server.address, "--interface", "com.example.Telnet", "--method", METHOD, "--workers", "2", "-q"]
    try:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (sum(service.calls.values()) >= 10 or process.poll() is not None):
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        server.close()
    assert process.returncode == 130 and "interrupted; finished rows are saved" in err
    done = {row[col.SOURCE_ID] for row in read_csv(tmp_path / "out.csv")}
    assert 10 <= len(done) < 60 and not (tmp_path / "out.csv.journal").exists()
    assert done == {f"r-{i:03d}" for i in range(60) if service.calls[product(i)]}  # in-flight calls were kept too


def test_retry_errors_without_an_error_file_is_a_usage_error(tmp_path, capsys):
    code = main(["--retry-errors", "--output", str(tmp_path / "out.csv"), "--error", str(tmp_path / "err.csv"),
                 "--transport", "telnet", "--provider", "127.0.0.1:1", "--interface", "com.example.X", "--method", METHOD])
    assert code == EXIT_USAGE
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path / 'err.csv'}: no such file; "
                                                "--retry-errors reruns the rows of the error file named by --error")
