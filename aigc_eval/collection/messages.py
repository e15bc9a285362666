"""Turning an NSQ message from the generation service into rows of output.csv.

The generation service publishes one JSON object per request to
`generate_img_data_collect_topic`. With the default mapping the body looks like

    {"request_id": "r-1", "prompt": "<text or a JSON payload>",
     "image_urls": ["https://...", "https://..."], "product_image_url": "https://...",
     "category": "蛋糕", "timestamp": 1764115200}

and gives one row per generated image: id `r-1_0`, `r-1_1`, ... (request id, underscore,
the image's index), the prompt as raw text, the image URL, the product image URL, the
category, the body's timestamp as given, NSQ's own timestamp and message id. `image_url`
(one string) may stand instead of `image_urls`. `request_id` and at least one image URL
are required; the other fields may be missing (empty cells).

The producer's schema is not ours, so every body field is looked up through a
FieldMapping (a dotted path such as `data.reqId` reaches into nested objects), which
`--mapping FILE` (a JSON object) and `--map KEY=PATH` change. With an `id` path set
(`--map id=id`), each body describes one image and its row id is the value there: that is
how the stream workers' result messages (stream/publish.py) are collected, deduplicated on
the image id. `--column NAME=PATH` adds columns read from the body (ExtraColumns), placed
before nsq_message_id, which stays last. `--map session_id=PATH` (off by default) adds a
`session_id` column just before them: the merchant's session, which turns a regenerate turn into
a reject label for the session's previous request (calibration/retries.py). The prompt column holds
exactly what the producer sent: `clean_prompt` (from prompt_cleaning.py, offered here as
the article's consumer_util.clean_prompt) turns it into the visual description when the
evaluators score it, and the raw text stays in the output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from aigc_eval import columns as col
from aigc_eval.io.csv_io import InputError
from aigc_eval.scoring.prompt_cleaning import clean_prompt  # noqa: F401  (the article's consumer_util.clean_prompt)

# What the listener writes, in this order. The NSQ message id comes last: a row torn by a
# crash mid-write can then never look complete (see append_log.py).
LISTENER_COLUMNS = [
    col.ID,
    col.PROMPT,
    col.IMAGE_URL,
    col.PRODUCT_IMAGE_URL,
    col.CATEGORY,
    col.TIMESTAMP,
    col.NSQ_TIMESTAMP,
    col.NSQ_MESSAGE_ID,
]


@dataclass(frozen=True)
class FieldMapping:
    """Where each value is found in a message body: a key, or a dotted path into nested objects."""

    request_id: str = "request_id"
    prompt: str = "prompt"
    image_urls: str = "image_urls"  # a list of URLs, one row each
    image_url: str = "image_url"  # one URL, used when image_urls is absent
    product_image_url: str = "product_image_url"
    category: str = "category"
    timestamp: str = "timestamp"
    # Empty: no session_id column. Set (`--map session_id=sessionId`): the merchant's session, in a
    # session_id column before the extra columns; retries are read per session (calibration/retries.py).
    session_id: str = ""
    # Empty: ids are request id, "_", index. Set: each body is one image and its id is here
    # (a result message's `id`); the listener then also dedups on that id.
    id: str = ""

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]


DEFAULT_MAPPING = FieldMapping()

# Extra output columns (--column NAME=PATH): (column name, dotted body path) pairs, in order.
ExtraColumns = tuple[tuple[str, str], ...]


def session_columns(mapping: FieldMapping, extra: ExtraColumns = ()) -> ExtraColumns:
    """The extra columns with session_id in front when the mapping has a session path."""
    return (((col.SESSION_ID, mapping.session_id),) if mapping.session_id else ()) + tuple(extra)


def listener_columns(extra: ExtraColumns = (), mapping: FieldMapping | None = None) -> list[str]:
    """The listener's header: LISTENER_COLUMNS with session_id (when mapped) and the extra columns
    just before nsq_message_id. Without a session mapping the header is the same as before it existed."""
    extra = session_columns(mapping, extra) if mapping is not None else tuple(extra)
    return [*LISTENER_COLUMNS[:-1], *(name for name, _ in extra), LISTENER_COLUMNS[-1]]


def parse_columns(items: Sequence[str]) -> ExtraColumns:
    """`--column NAME=PATH` values as ExtraColumns; InputError naming the bad item.

    A name must be new: not a standard column and not given twice.
    """
    parsed: list[tuple[str, str]] = []
    for item in items:
        name, sep, path = (part.strip() for part in item.partition("="))
        if not sep or not name or not path:
            raise InputError(f"--column {item!r}: expected NAME=PATH, such as clip_score=scores.clip_score")
        if name in LISTENER_COLUMNS or name == col.SESSION_ID or name in (known for known, _ in parsed):
            raise InputError(f"--column {item!r}: the output already has a column {name!r}")
        parsed.append((name, path))
    return tuple(parsed)


class MalformedMessage(ValueError):
    """A message body that cannot become rows; the message says why (goes to the dead-letter file)."""


def load_mapping(path: Path | None = None, overrides: Sequence[str] = ()) -> FieldMapping:
    """The default mapping, updated from a JSON object file and then from KEY=PATH overrides.

    Raises InputError naming the file or override for unknown keys or non-string paths.
    """
    changes: dict[str, str] = {}
    if path is not None:
        try:
            loaded = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            raise InputError(f"{path}: no such mapping file") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a JSON mapping file ({exc})") from None
        if not isinstance(loaded, dict):
            raise InputError(f"{path}: the mapping file must hold one JSON object, such as {{\"request_id\": \"reqId\"}}")
        changes.update(_checked(loaded, str(path)))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--map {item!r}: expected KEY=PATH, such as request_id=data.reqId")
        changes.update(_checked({key.strip(): value.strip()}, f"--map {item!r}"))
    return replace(DEFAULT_MAPPING, **changes)


def _checked(raw: Mapping[str, Any], where: str) -> dict[str, str]:
    unknown = sorted(set(raw) - set(FieldMapping.keys()))
    if unknown:
        raise InputError(f"{where}: unknown mapping key(s) {', '.join(unknown)}; known: {', '.join(FieldMapping.keys())}")
    bad = [key for key, value in raw.items() if not isinstance(value, str) or not value.strip()]
    if bad:
        raise InputError(f"{where}: the path for {', '.join(bad)} must be a non-empty string")
    return {key: value.strip() for key, value in raw.items()}


def lookup(body: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (`data.reqId`), or None when any step is missing.

    A key that itself contains dots is found first, so `{"a.b": 1}` works with path `a.b`.
    """
    if path in body:
        return body[path]
    value: Any = body
    for step in path.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return None
        value = value[step]
    return value


def _text(value: Any) -> str:
    """A cell's text: strings as they are, numbers as written, objects and lists as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(value)


def _cell(value: Any) -> str:
    """An extra column's text: a list joined with "; " (each item as _text), anything else as _text."""
    if isinstance(value, list):
        return "; ".join(_text(item) for item in value)
    return _text(value)


def _image_urls(body: Mapping[str, Any], mapping: FieldMapping) -> list[str]:
    many = lookup(body, mapping.image_urls)
    if many is None:
        one = lookup(body, mapping.image_url)
        if one is None or one == "":
            raise MalformedMessage(f"no image URL: neither {mapping.image_urls!r} nor {mapping.image_url!r} is set")
        many, source = [one], mapping.image_url
    else:
        source = mapping.image_urls
        if isinstance(many, str):  # a producer that sends one URL under the list's name
            many = [many]
    if not isinstance(many, list) or not many:
        raise MalformedMessage(f"{source!r} must be a non-empty list of URLs, got {_text(many)[:80]!r}")
    for index, url in enumerate(many):
        if not isinstance(url, str) or not url.strip():
            raise MalformedMessage(f"{source!r}[{index}] is not a URL: {_text(url)[:80]!r}")
    return [url.strip() for url in many]


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object in a message body; MalformedMessage when it is not UTF-8 JSON or not an object."""
    try:
        parsed = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise MalformedMessage(f"body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise MalformedMessage(f"body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(parsed, dict):
        raise MalformedMessage(f"body is JSON but not an object (a {type(parsed).__name__})")
    return parsed


def message_to_rows(
    body: bytes, message_id: str, nsq_timestamp: int, mapping: FieldMapping = DEFAULT_MAPPING,
    extra: ExtraColumns = (),
) -> list[dict[str, str]]:
    """One row (listener_columns(extra)) per generated image in the message body.

    Raises MalformedMessage when the body is not a JSON object, lacks the request id (the
    image id with an `id` mapping) or an image URL, has several URLs with an `id` mapping,
    or holds text that cannot be written as UTF-8 (a lone surrogate escape).
    """
    data = parse_body(body)
    extra = session_columns(mapping, extra)
    key, what = (mapping.id, "image id") if mapping.id else (mapping.request_id, "request id")
    found = _text(lookup(data, key)).strip()
    if not found:
        raise MalformedMessage(f"missing {what} {key!r}")
    urls = _image_urls(data, mapping)
    if not mapping.id:
        ids = [f"{found}_{index}" for index in range(len(urls))]
    elif len(urls) == 1:
        ids = [found]
    else:
        raise MalformedMessage(f"{len(urls)} image URLs, but with an id mapping ({mapping.id!r}) a message is one image")
    shared = {
        col.PROMPT: _text(lookup(data, mapping.prompt)),
        col.PRODUCT_IMAGE_URL: _text(lookup(data, mapping.product_image_url)),
        col.CATEGORY: _text(lookup(data, mapping.category)),
        col.TIMESTAMP: _text(lookup(data, mapping.timestamp)),
        **{name: _cell(lookup(data, path)) for name, path in extra},
        col.NSQ_TIMESTAMP: str(nsq_timestamp),
        col.NSQ_MESSAGE_ID: message_id,
    }
    rows = [{col.ID: image_id, col.IMAGE_URL: url, **shared} for image_id, url in zip(ids, urls)]
    for row in rows:
        for name, value in row.items():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedMessage(f"{name} holds text that is not valid Unicode (a lone surrogate escape)") from None
    names = listener_columns(extra)
    return [{name: row[name] for name in names} for row in rows]
