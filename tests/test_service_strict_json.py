"""Strict JSON at the service's door (aigc_eval/service/strict_json.py): non-finite numbers and
lone surrogates are refused with a 400 naming the problem, its position and its field, and no
error answer echoes the input in a way that can fail to render.

Hand-checked positions on small texts first, then every hostile body against the real service
under uvicorn on loopback (random checkpoints)."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from aigc_eval.service.strict_json import check_body, find_problem, render_errors
from service_harness import png_bytes, running, settings

PNG = base64.b64encode(png_bytes()).decode()


def strict_loads(data: bytes):
    """The answer's body as strict JSON: UTF-8, no NaN or Infinity."""
    def refuse(constant):
        raise ValueError(f"{constant} in an answer")
    return json.loads(data.decode("utf-8"), parse_constant=refuse)


# ---- the scanner on its own ---------------------------------------------------------------------

@pytest.mark.parametrize("text, field, offset, start", [
    ('{"prompt": NaN}', "prompt", 11, "NaN is not a JSON number at line 1 column 12 (char 11)"),
    ('[{"a": 1}, {"b": [0, -Infinity]}]', "items.1.b.1", 21, "-Infinity is not a JSON number"),
    ("-Infinity", "body", 0, "-Infinity is not a JSON number at line 1 column 1"),
    ('{"x":\n  1.5e999}', "x", 8, "the number 1.5e999 is beyond the float range at line 2 column 3 (char 8)"),
    ('{"p": "ab\\ud800"}', "p", 9, "the escape \\ud800 is a lone UTF-16 surrogate at line 1 column 10"),
    ('{"p": "\\ud83d\\ude00\\udc00"}', "p", 19, "the escape \\udc00 is a lone"),  # a pair, then a lone low half
    ('{"p": "\\ud83dx"}', "p", 7, "the escape \\ud83d is a lone"),  # a high half not followed by its low half
    ('{"ok": 1, "k\\uDBFF": 2}', "body", 12, "the escape \\uDBFF in a key is a lone"),
    ('[{"a\\"b": NaN}]', "items.0.a\"b", 10, "NaN is not"),  # an escaped quote does not end the key
    ('{"p": "x\ud800"}', "p", 8, "the surrogate code point U+D800, encoded directly"),
])
def test_problems_are_named_with_their_position_and_field(text, field, offset, start):
    problem = find_problem(text)
    assert problem is not None and problem.field == field and problem.offset == offset
    assert problem.message.startswith(start), problem.message


@pytest.mark.parametrize("text", [
    '{"p": "\\ud83d\\ude00 and \\u5496"}', '{"p": "\\\\ud800"}', '{"p": "NaN Infinity"}', '{"x": 1e308, "y": -2.5E-400}',
    '[1, 2, {"a": [true, false, null]}]', '{"p": "咖啡杯 😀"}',
    '{not json NaN',  # not JSON before the NaN: the parser's to report (422)
])
def test_standard_json_and_text_that_is_not_json_pass(text):
    assert find_problem(text) is None


def test_bodies_are_read_as_json_loads_reads_them():
    sent = '{"p": "\ud800"}'
    for encoding in ("utf-8", "utf-16", "utf-32"):
        problem = check_body(sent.encode(encoding, "surrogatepass"))
        assert problem is not None and problem.field == "p" and problem.offset == 7, encoding
    assert check_body(b'{"p": "\xff"}') is None  # not UTF-8 at all: FastAPI's own 400
    big = json.dumps({"prompt": "咖啡杯", "image_base64": "QUJD" * 500_000}).encode()
    assert check_body(big) is None and check_body(big[:-1] + b', "x": NaN}').field == "x"


def test_422_details_drop_the_input_and_keep_json_values():
    errors = [{"loc": ("body", "item", "prompt"), "msg": "Field required", "type": "missing", "input": b"\xff"},
              {"loc": ("body", 0), "msg": "m", "type": "value_error", "input": float("nan"),
               "ctx": {"error": ValueError("give exactly one"), "limit": float("inf"), "max_length": 256}}]
    assert render_errors(errors) == [
        {"loc": ["body", "item", "prompt"], "msg": "Field required", "type": "missing"},
        {"loc": ["body", 0], "msg": "m", "type": "value_error",
         "ctx": {"error": "give exactly one", "limit": "inf", "max_length": 256}}]


# ---- against the running service ----------------------------------------------------------------

@pytest.fixture(scope="module")
def server(clip_dir, inception_weights):
    with running(settings(clip_dir, inception_weights, None)) as url:
        yield url


def item(**fields: str) -> str:
    """A JSON object text from already-encoded JSON values (so NaN and escapes go through as written)."""
    return "{" + ", ".join(f"{json.dumps(key)}: {value}" for key, value in fields.items()) + "}"


GOOD = {"image_base64": json.dumps(PNG), "prompt": '"咖啡杯"'}
NON_FINITE = {  # name -> (body text, field named in the 400)
    "NaN as prompt": (item(**{**GOOD, "prompt": "NaN"}), "prompt"),
    "NaN as id": (item(id="NaN", **GOOD), "id"),
    "Infinity in an unknown field": (item(**GOOD, extra="Infinity"), "extra"),
    "NaN in a list": ("[" + item(**GOOD) + ", NaN]", "items.1"),
    "NaN as a list element value": ("[" + item(**GOOD, id="[1, NaN]") + "]", "items.0.id.1"),
    "a bare -Infinity body": ("-Infinity", "body"),
    "a number beyond the float range": (item(**GOOD, id="1e999"), "id"),
}
LONE = '"\\ud800"'
SURROGATES = {
    "in prompt": (item(**{**GOOD, "prompt": LONE}), "prompt"),
    "in id": (item(id=LONE, **GOOD), "id"),
    "in category": (item(category='"\\udfff x"', **GOOD), "category"),
    "in image_url": (item(image_url='"http://a/\\udbff.png"', prompt='"x"'), "image_url"),
    "in an unknown field": (item(**GOOD, extra='"\\udc00"'), "extra"),
    "in a key": ("{" + '"\\ud800": 1, ' + item(**GOOD)[1:], "body"),
    "a high half before another high half": (item(**{**GOOD, "prompt": '"\\ud83d\\ud83d\\ude00"'}), "prompt"),
}


def post(url: str, data: bytes, content_type: str | None = "application/json") -> requests.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.post(f"{url}/v1/score", data=data, headers=headers, timeout=60)


@pytest.mark.parametrize("name", sorted(NON_FINITE) + [f"surrogate {name}" for name in sorted(SURROGATES)])
def test_hostile_json_gets_a_400_naming_problem_position_and_field(server, name):
    text, field = NON_FINITE[name] if name in NON_FINITE else SURROGATES[name.removeprefix("surrogate ")]
    answer = post(server, text.encode())
    assert answer.status_code == 400, (answer.status_code, answer.text)
    detail = strict_loads(answer.content)["detail"]
    assert detail["field"] == field, detail
    problem = find_problem(text)
    assert f"line {problem.line} column {problem.column} (char {problem.offset})" in detail["message"]
    assert ("surrogate" if name.startswith("surrogate") else ("NaN" if "NaN" in text[problem.offset:problem.offset + 3]
            else "Infinity" if "Infinity" in text[problem.offset:problem.offset + 9] else "float range")) in detail["message"]


def test_surrogates_sent_as_raw_bytes_in_utf8_and_utf16_get_a_400(server):
    text = item(**{**GOOD, "prompt": '"\ud800"'})
    for encoding in ("utf-8", "utf-16"):
        answer = post(server, text.encode(encoding, "surrogatepass"))
        assert answer.status_code == 400, (encoding, answer.text)
        assert "U+D800" in strict_loads(answer.content)["detail"]["message"]


def test_a_valid_surrogate_pair_is_scored(server):
    answer = post(server, item(**{**GOOD, "prompt": '"\\ud83d\\ude00 \\u5496\\u5561\\u676f"'}).encode())
    assert answer.status_code == 200, answer.text
    assert strict_loads(answer.content)["results"][0]["raw_prompt"] == "😀 咖啡杯"


@pytest.mark.parametrize("data, content_type", [
    (b"\xff\xfe{", "text/plain"), (b'{"prompt": "\xed\xa0\x80"}', "text/plain"), (b"\xff", None),
    (b'{"prompt": "\xff"}', "application/json"), (b"{not json", "application/json"),
    (json.dumps({**json.loads(item(**GOOD)), "image_url": "x"}).encode(), "application/json"),  # both images: 422
    (json.dumps({"prompt": "x" * 30000, "image_url": "http://a/b.png"}).encode(), "application/json"),
])
def test_other_bad_bodies_get_a_4xx_whose_body_is_json(server, data, content_type):
    """Bodies FastAPI reads as bytes (not JSON content types) used to reach the 422 handler, which
    echoed them as text and failed on bytes that are not UTF-8 (500)."""
    answer = post(server, data, content_type)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    body = strict_loads(answer.content)
    assert "detail" in body
    if answer.status_code == 422:
        assert all("input" not in error for error in body["detail"])
