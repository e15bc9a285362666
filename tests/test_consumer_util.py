"""Message bodies to rows: the default mapping, changed mappings, and the reasons bodies are refused."""

import json

import pytest

from aigc_eval import columns as col
from aigc_eval.collection.messages import (
    LISTENER_COLUMNS,
    MalformedMessage,
    load_mapping,
    message_to_rows,
)
from aigc_eval.io.csv_io import InputError

BODY = {"request_id": "r-1", "prompt": "芋泥 薰衣草", "image_urls": ["https://a/0.png", "https://a/1.png"],
        "product_image_url": "https://p/cake.png", "category": "蛋糕", "timestamp": 1764115200}


def rows_of(body, mapping=None, message_id="0123456789abcdef"):
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return message_to_rows(raw, message_id, 1764115200123456789, *( [mapping] if mapping else []))


def test_default_body_gives_one_row_per_image():
    rows = rows_of(BODY)
    assert [list(row) for row in rows] == [LISTENER_COLUMNS, LISTENER_COLUMNS]
    assert rows[0] == {col.ID: "r-1_0", col.PROMPT: "芋泥 薰衣草", col.IMAGE_URL: "https://a/0.png",
                       col.PRODUCT_IMAGE_URL: "https://p/cake.png", col.CATEGORY: "蛋糕", col.TIMESTAMP: "1764115200",
                       col.NSQ_TIMESTAMP: "1764115200123456789", col.NSQ_MESSAGE_ID: "0123456789abcdef"}
    assert rows[1][col.ID] == "r-1_1" and rows[1][col.IMAGE_URL] == "https://a/1.png"


def test_single_image_url_and_optional_fields_and_json_prompt():
    rows = rows_of({"request_id": 7, "image_url": "https://a/x.png", "prompt": {"messages": [{"role": "user", "content": "红色"}]}})
    assert len(rows) == 1 and rows[0][col.ID] == "7_0"
    assert rows[0][col.PROMPT] == '{"messages":[{"role":"user","content":"红色"}]}'  # raw, cleaning is clean_prompt's job
    assert rows[0][col.CATEGORY] == rows[0][col.PRODUCT_IMAGE_URL] == rows[0][col.TIMESTAMP] == ""


@pytest.mark.parametrize("body, reason", [
    (b"\xff\xfe", "not UTF-8"),
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not an object"),
    ({"prompt": "x", "image_url": "https://a"}, "missing request id 'request_id'"),
    ({"request_id": "r", "prompt": "x"}, "no image URL"),
    ({"request_id": "r", "image_urls": []}, "non-empty list"),
    ({"request_id": "r", "image_urls": ["https://a", 3]}, r"'image_urls'\[1\] is not a URL"),
    (b'{"request_id": "r", "image_url": "https://a", "prompt": "\\ud800"}', "not valid Unicode"),
])
def test_malformed_bodies_say_why(body, reason):
    with pytest.raises(MalformedMessage, match=reason):
        rows_of(body)


def test_mapping_file_and_overrides_with_dotted_paths(tmp_path):
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({"request_id": "data.reqId", "image_urls": "data.images", "prompt": "data.text"}))
    mapping = load_mapping(path, ["category=meta.cat"])
    body = {"data": {"reqId": "q-9", "images": ["https://i/1"], "text": "大理石"}, "meta": {"cat": "家具"}}
    row = rows_of(body, mapping)[0]
    assert (row[col.ID], row[col.IMAGE_URL], row[col.PROMPT], row[col.CATEGORY]) == ("q-9_0", "https://i/1", "大理石", "家具")


@pytest.mark.parametrize("content, overrides, message", [
    ('{"requestid": "x"}', [], "unknown mapping key"),
    ("[1]", [], "one JSON object"),
    ("{", [], "not a JSON mapping file"),
    ('{"prompt": 3}', [], "must be a non-empty string"),
    ("{}", ["prompt"], "expected KEY=PATH"),
])
def test_bad_mappings_are_input_errors(tmp_path, content, overrides, message):
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_mapping(path, overrides)
