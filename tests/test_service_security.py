"""The service's address guard over real HTTP, and a property-based fuzz of /v1/score generated
from the service's own OpenAPI schema.

No traffic leaves 127.0.0.1: DNS is a fake resolver (made-up names, numeric hosts parsed
locally), and sockets to the one "public" test address are connected to the loopback image host
through url_guard._open, as tests/test_url_guard.py does; any other address is refused."""

from __future__ import annotations

import base64
import json
import socket

import pytest
import requests
from hypothesis import HealthCheck, event, given, settings as hypothesis_settings, strategies as st
from jsonschema import Draft7Validator, RefResolver

from aigc_eval.io import url_guard
from service_harness import ImageHost, png_bytes, running, served_images, settings

PUBLIC = "93.184.216.34"
real_getaddrinfo = socket.getaddrinfo


def fake_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    if host == "img.example":
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC, port))]
    return real_getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)  # never asks DNS


@pytest.fixture(scope="module")
def host():
    server = ImageHost(served_images())
    yield server
    server.close()


@pytest.fixture(scope="module")
def guarded(host, clip_dir, inception_weights):
    """A service without --allow-private-urls whose only reachable "public" host is img.example."""
    def fake_open(sock, sockaddr):
        if sockaddr[0] != PUBLIC:
            raise OSError(f"test network: no route to {sockaddr[0]}")
        sock.connect(("127.0.0.1", host.port))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
        patch.setattr(url_guard, "_open", fake_open)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            patch.delenv(name, raising=False)
        with running(settings(clip_dir, inception_weights, None)) as url:
            yield url


def score(url: str, body) -> requests.Response:
    return requests.post(f"{url}/v1/score", json=body, timeout=60)


def test_private_addresses_are_refused_per_item_redirects_included(guarded, host):
    items = [{"id": "public", "image_url": "http://img.example/img0.png", "prompt": "咖啡杯"},
             {"id": "loopback", "image_url": f"{host.url}/img0.png", "prompt": "咖啡杯"},
             {"id": "name", "image_url": f"http://localhost:{host.port}/img0.png", "prompt": "咖啡杯"},
             {"id": "redirect", "image_url": f"http://img.example/redirect?to={host.url}/img0.png", "prompt": "咖啡杯"},
             {"id": "metadata", "image_url": "http://169.254.169.254/latest/meta-data/", "prompt": "咖啡杯"},
             {"id": "cutout", "image_url": "http://img.example/scene.png", "prompt": "咖啡杯",
              "product_image_url": f"{host.url}/cutout.png"}]
    answer = score(guarded, items)
    assert answer.status_code == 200, answer.text
    results = {r["id"]: r for r in answer.json()["results"]}
    assert results["public"]["status"] == "ok"
    for name, reason in (("loopback", "loopback"), ("name", "loopback"), ("redirect", "loopback"),
                         ("metadata", "metadata")):
        assert results[name]["status"] == "error" and reason in results[name]["error"], results[name]
    assert results["cutout"]["status"] == "ok" and results["cutout"]["product"]["status"] == "error"
    assert "loopback" in results["cutout"]["product"]["error"]


# ---- fuzzing from the OpenAPI schema -------------------------------------------------------------

GOOD_B64 = base64.b64encode(png_bytes()).decode()
INTERESTING = ["http://img.example/img0.png", "http://img.example/missing.png", "http://127.0.0.1:1/x.png",
               "file:///etc/passwd", "ftp://img.example/a.png", "", "data:;base64,!!", GOOD_B64, "x" * 300]


def one_image(item: dict, keep: str | None, image: str) -> dict:
    """`item` with exactly one image field (`keep`, given `image` when it had none), or as drawn."""
    if keep is None:
        return item
    other = "image_base64" if keep == "image_url" else "image_url"
    item.pop(other, None)
    return {**item, keep: item.get(keep) or image}


def from_schema(schema: dict, doc: dict, depth: int = 0) -> st.SearchStrategy:
    """Values valid for `schema` (the subset pydantic emits: $ref, anyOf/oneOf, object, array, string,
    integer, number, boolean, null), strings mixed with values that exercise the service."""
    if "$ref" in schema:
        return from_schema(doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], doc, depth)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(sub, doc, depth) for sub in schema[key]])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        objects = st.fixed_dictionaries({k: from_schema(v, doc, depth + 1) for k, v in props.items() if k in required},
                                        optional={k: from_schema(v, doc, depth + 1) for k, v in props.items()
                                                  if k not in required})
        if {"image_url", "image_base64"} <= set(props):  # "exactly one of" is not in the schema: mostly keep to it
            return st.builds(one_image, objects, st.sampled_from(["image_url", "image_base64", None]),
                             st.sampled_from(INTERESTING))
        return objects
    if kind == "array":
        return st.lists(from_schema(schema["items"], doc, depth + 1), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 3), 3))
    if kind == "string":
        return st.one_of(st.text(max_size=min(schema.get("maxLength", 40), 40)), st.sampled_from(INTERESTING))
    return {"integer": st.integers(), "number": st.floats(allow_nan=False), "boolean": st.booleans(),
            "null": st.none()}.get(kind, st.none())


def malformed(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Broken variants: a field dropped or of the wrong type, unknown fields, other JSON, junk bytes."""
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                               lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                            max_size=3), max_leaves=8)

    def mutate(body, data):
        target = body[0] if isinstance(body, list) and body else body
        if isinstance(target, dict) and target:
            key = data.draw(st.sampled_from(sorted(target)))
            if data.draw(st.booleans()):
                del target[key]
            else:
                target[key] = data.draw(json_values)
        return body

    mutated = st.builds(lambda body, data: mutate(body, data), valid, st.data())
    extra = valid.map(lambda b: {**b, "unexpected": 1} if isinstance(b, dict) else b)
    return st.one_of(mutated, extra, json_values)


@pytest.fixture(scope="module")
def openapi(guarded):
    return requests.get(f"{guarded}/openapi.json").json()


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_score_from_the_openapi_schema(guarded, openapi, data):
    operation = openapi["paths"]["/v1/score"]["post"]
    request_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    valid = from_schema(request_schema, openapi)
    kind = data.draw(st.sampled_from(["valid", "valid", "malformed", "bytes"]))
    if kind == "bytes":
        raw = data.draw(st.binary(max_size=200))
    else:
        raw = json.dumps(data.draw(valid if kind == "valid" else malformed(valid))).encode()
    answer = requests.post(f"{guarded}/v1/score", data=raw, headers={"Content-Type": "application/json"}, timeout=60)
    event(f"{kind}: HTTP {answer.status_code}")
    assert answer.status_code < 500 or answer.status_code == 503, (answer.status_code, answer.text, raw[:300])
    assert str(answer.status_code) in operation["responses"], answer.status_code
    schema = operation["responses"][str(answer.status_code)]["content"]["application/json"]["schema"]
    errors = list(Draft7Validator(schema, resolver=RefResolver.from_schema(openapi)).iter_errors(answer.json()))
    assert not errors, (answer.status_code, answer.text, [e.message for e in errors])
