"""Hand-checkable cases: Dubbo telnet replies, request templates, response paths, backoff,
the rate limiter, and dubbo-python3's install defect."""

from __future__ import annotations

import random
import sys

import pytest

from aigc_eval import columns as col
from aigc_eval.generation.dubbo import (
    ServiceAddress,
    ServiceError,
    SetupError,
    TelnetTransport,
    _load_dubbo_client,
    parse_telnet_reply,
)
from aigc_eval.generation.request_template import (
    DEFAULT_TEMPLATE,
    RequestTemplate,
    ResponseShapeError,
    extract_image_urls,
)
from aigc_eval.generation.runner import RateLimiter, backoff_delay

ADDRESS = ServiceAddress("com.example.ImageService", "generate")
RESULT = '{"imageUrls":["http://a/1.png","http://a/2.png"]}'


@pytest.mark.parametrize("reply", [
    f"{RESULT}\r\nelapsed: 12 ms.\r\ndubbo>",  # Dubbo 2.6
    f"result: {RESULT}\r\nelapsed: 1 ms.\r\ndubbo>",  # Dubbo 2.7, Dubbo 3 QoS
    f"Use default service com.example.ImageService.\r\nresult: {RESULT}\r\nelapsed: 1 ms.\r\ndubbo>",
    f"  Welcome to dubbo\r\ndubbo>result: {RESULT}\r\nelapsed: 1 ms.\r\ndubbo>",  # a QoS banner first
])
def test_telnet_reply_formats_give_the_json_result(reply):
    assert parse_telnet_reply(reply, ADDRESS) == {"imageUrls": ["http://a/1.png", "http://a/2.png"]}


def test_telnet_string_and_null_results():
    assert parse_telnet_reply('"http://a/1.png"\r\nelapsed: 1 ms.\r\ndubbo>', ADDRESS) == "http://a/1.png"
    assert parse_telnet_reply("result: null\r\nelapsed: 1 ms.\r\ndubbo>", ADDRESS) is None


@pytest.mark.parametrize("reply, expected", [
    ("No such service com.example.ImageService\r\ndubbo>", "No such service com.example.ImageService"),
    ("No such method generate in service com.example.ImageService\r\ndubbo>", "No such method generate"),
    ("Unsupported command: invoke\r\ndubbo>", "Unsupported command: invoke"),
])
def test_telnet_configuration_errors_stop_the_run(reply, expected):
    with pytest.raises(SetupError, match=expected) as info:
        parse_telnet_reply(reply, ADDRESS)
    assert "com.example.ImageService.generate" in str(info.value)


def test_telnet_failed_invocation_is_a_service_error_with_the_cause():
    reply = "Failed to invoke method generate, cause: java.lang.IllegalArgumentException: bad prompt\r\ndubbo>"
    with pytest.raises(ServiceError, match="IllegalArgumentException: bad prompt") as info:
        parse_telnet_reply(reply, ADDRESS)
    assert info.value.kind == "ServiceError" and not info.value.retryable


def test_telnet_unreadable_reply_is_a_bad_response():
    with pytest.raises(ServiceError, match="not a JSON result") as info:
        parse_telnet_reply("Please input method name\r\ndubbo>", ADDRESS)
    assert info.value.kind == "BadResponse"


def test_telnet_command_is_one_ascii_line():
    transport = TelnetTransport("127.0.0.1:20880", ADDRESS, timeout=1)
    line = transport.command([{"prompt": "雪地\n背景"}, 3])
    assert line == b'invoke com.example.ImageService.generate({"prompt":"\\u96ea\\u5730\\n\\u80cc\\u666f"},3)\r\n'


@pytest.mark.parametrize("provider", ["localhost", "127.0.0.1:", "127.0.0.1:99999", ":20880"])
def test_bad_provider_address_is_a_usage_error(provider):
    with pytest.raises(ValueError, match="--provider"):
        TelnetTransport(provider, ADDRESS, timeout=1)


ROW = {col.ID: "p-1", col.PROMPT: "雪地", col.PRODUCT_IMAGE_URL: "http://x/p.png", col.CATEGORY: "鞋靴", "n": "3", "meta": '{"a": 1}'}


def test_default_template_is_one_object_from_the_row():
    template = RequestTemplate(DEFAULT_TEMPLATE)
    assert template.columns == [col.PRODUCT_IMAGE_URL, col.PROMPT, col.CATEGORY]
    assert template.render(ROW) == [{"productImageUrl": "http://x/p.png", "prompt": "雪地", "category": "鞋靴"}]


def test_template_types_escapes_and_several_arguments(tmp_path):
    text = '["{id}", {"text": "{category}: {prompt} {{literal}}", "count": "{n:int}", "meta": "{meta:json}"}, 7]'
    (tmp_path / "t.json").write_text(text, encoding="utf-8")
    for template in (RequestTemplate(text), RequestTemplate(f"@{tmp_path / 't.json'}")):
        assert template.columns == ["id", "category", "prompt", "n", "meta"]
        assert template.render(ROW) == ["p-1", {"text": "鞋靴: 雪地 {literal}", "count": 3, "meta": {"a": 1}}, 7]


def test_template_conversion_failure_names_the_column():
    with pytest.raises(ValueError, match="column prompt: '雪地' is not int"):
        RequestTemplate('["{prompt:int}"]').render(ROW)


@pytest.mark.parametrize("text, message", [("{", "not JSON"), ('{"a": 1}', "JSON array"), ("@/no/such.json", "cannot read")])
def test_bad_templates_are_usage_errors(text, message):
    with pytest.raises(ValueError, match=message):
        RequestTemplate(text)


@pytest.mark.parametrize("response, path, urls", [
    ({"imageUrls": ["u1", "u2"]}, "imageUrls", ["u1", "u2"]),
    (["u1", "u2"], "imageUrls", ["u1", "u2"]),  # a bare list
    ("u1", "imageUrls", ["u1"]),  # a single URL string
    ({"data": {"images": [{"url": "u1"}, {"url": "u2"}]}}, "data.images.*.url", ["u1", "u2"]),
    ({"data": {"images": [{"url": "u1"}, {"url": "u2"}]}}, "data.images.1.url", ["u2"]),
    ({"imageUrl": " u1 "}, "imageUrl", ["u1"]),
])
def test_response_paths(response, path, urls):
    assert extract_image_urls(response, path) == urls


@pytest.mark.parametrize("response, path, message", [
    ({"code": 0}, "imageUrls", "no 'imageUrls'"),
    ({"imageUrls": []}, "imageUrls", "no image URLs"),
    ({"imageUrls": [None]}, "imageUrls", "expected URL strings"),
    (None, "imageUrls", "no 'imageUrls'"),
    ({"data": 3}, "data.*", "expects a list"),
])
def test_unusable_responses_are_errors(response, path, message):
    with pytest.raises(ResponseShapeError, match=message):
        extract_image_urls(response, path)


def test_backoff_doubles_with_jitter_and_a_cap():
    rng = random.Random(0)
    for attempt, nominal in [(1, 0.5), (2, 1.0), (3, 2.0), (10, 30.0)]:
        delays = [backoff_delay(attempt, 0.5, rng) for _ in range(200)]
        assert nominal * 0.5 <= min(delays) and max(delays) < nominal
        assert len(set(delays)) == 200  # jittered


def test_rate_limiter_spaces_call_starts():
    now, slept = [100.0], []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
    assert slept == [0.25, 0.25, 0.25, 0.25]
    RateLimiter(0, clock=lambda: now[0], sleep=sleep).wait()  # no limit: no sleep
    assert len(slept) == 4


def test_dubbo_client_without_jsonrpcclient_3_gives_an_install_hint(monkeypatch):
    _load_dubbo_client()  # every module is in sys.modules, so monkeypatch puts each one back
    for name in [name for name in sys.modules if name.startswith(("dubbo_client", "jsonrpcclient.clients"))]:
        monkeypatch.delitem(sys.modules, name)
    # jsonrpcclient 4.x has no jsonrpcclient.clients; None in sys.modules makes the import fail the same way.
    monkeypatch.setitem(sys.modules, "jsonrpcclient.clients.http_client", None)
    with pytest.raises(SetupError, match=r"needs jsonrpcclient 3\.x.*jsonrpcclient 3\.3\.6 is installed.*pip install"):
        _load_dubbo_client()
