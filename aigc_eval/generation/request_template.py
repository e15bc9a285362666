"""Request arguments built from a CSV row, and image URLs picked out of a response.

The template is a JSON array holding the call's positional arguments. In its strings,
`{column}` is replaced by that column's cell; a string that is exactly `{column:int}`,
`{column:float}` or `{column:json}` becomes a number or any JSON value instead of text;
`{{` and `}}` are literal braces. The default, one object argument:

    [{"productImageUrl": "{product_image_url}", "prompt": "{prompt}", "category": "{category}"}]

The response path is dot-separated keys and list indices, `*` meaning every element
(`data.images.*.url`); the default `imageUrls`. A response that is itself a list of URLs or
a single URL string is taken as it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from aigc_eval import columns as col

DEFAULT_TEMPLATE = json.dumps(
    [{"productImageUrl": f"{{{col.PRODUCT_IMAGE_URL}}}", "prompt": f"{{{col.PROMPT}}}", "category": f"{{{col.CATEGORY}}}"}],
    ensure_ascii=False,
)
DEFAULT_RESPONSE_PATH = "imageUrls"

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}:]+)(?::(int|float|json|str))?\}")
CONVERTERS = {"int": int, "float": float, "json": json.loads, "str": str}


class ResponseShapeError(ValueError):
    """The response holds no usable image URLs at the configured path."""


def _strings(value: Any) -> list[str]:
    """Every string in a template, depth first."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    return []


class RequestTemplate:
    """A parsed template; `render(row)` gives the argument list for one row."""

    def __init__(self, text: str):
        source = text
        if text.startswith("@"):
            path = Path(text[1:])
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"--template {source}: cannot read {path} ({exc.strerror or exc})") from None
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--template: not JSON ({exc.msg} at character {exc.pos})") from None
        if not isinstance(parsed, list):
            raise ValueError("--template: must be a JSON array of the call's arguments, such as [{\"prompt\": \"{prompt}\"}]")
        self.arguments: list[Any] = parsed
        self.columns: list[str] = list(dict.fromkeys(
            match.group(1).strip() for s in _strings(parsed) for match in _PLACEHOLDER.finditer(s) if match.group(1)
        ))

    def _fill(self, text: str, row: dict[str, str]) -> Any:
        whole = _PLACEHOLDER.fullmatch(text)
        if whole and whole.group(1):
            name, kind = whole.group(1).strip(), whole.group(2) or "str"
            try:
                return CONVERTERS[kind](row.get(name, ""))
            except ValueError:
                raise ValueError(f"column {name}: {row.get(name, '')!r} is not {kind}") from None

        def replace(match: re.Match) -> str:
            if match.group(0) in ("{{", "}}"):
                return match.group(0)[0]
            return str(row.get(match.group(1).strip(), ""))

        return _PLACEHOLDER.sub(replace, text)

    def _render(self, value: Any, row: dict[str, str]) -> Any:
        if isinstance(value, str):
            return self._fill(value, row)
        if isinstance(value, list):
            return [self._render(item, row) for item in value]
        if isinstance(value, dict):
            return {key: self._render(item, row) for key, item in value.items()}
        return value

    def render(self, row: dict[str, str]) -> list[Any]:
        """The argument list for `row`; ValueError when a typed placeholder does not convert."""
        return self._render(self.arguments, row)


def _follow(value: Any, keys: Sequence[str], path: str) -> list[Any]:
    if not keys:
        return [value]
    key, rest = keys[0], keys[1:]
    if key == "*":
        if not isinstance(value, list):
            raise ResponseShapeError(f"response path {path}: '*' expects a list, got {type(value).__name__}")
        return [found for item in value for found in _follow(item, rest, path)]
    if isinstance(value, dict) and key in value:
        return _follow(value[key], rest, path)
    if isinstance(value, list) and key.lstrip("-").isdigit() and -len(value) <= int(key) < len(value):
        return _follow(value[int(key)], rest, path)
    shown = f"keys {', '.join(map(str, list(value)[:10]))}" if isinstance(value, dict) else type(value).__name__
    raise ResponseShapeError(f"response has no {key!r} at path {path} (found {shown})")


def extract_image_urls(response: Any, path: str = DEFAULT_RESPONSE_PATH) -> list[str]:
    """The non-empty image URLs at `path` in `response` (a list, or one URL string).

    A response that is a list or a string is used whole. Raises ResponseShapeError when
    nothing usable is found, so the row is recorded as an error instead of vanishing.
    """
    if isinstance(response, (list, str)):
        found: list[Any] = [response]
    else:
        found = _follow(response, [part for part in path.split(".") if part], path)
    urls: list[Any] = []
    for value in found:
        urls.extend(value if isinstance(value, list) else [value])
    bad = [url for url in urls if not isinstance(url, str) or not url.strip()]
    if bad:
        raise ResponseShapeError(f"response path {path}: expected URL strings, got {json.dumps(bad[0], ensure_ascii=False)[:100]}")
    if not urls:
        raise ResponseShapeError(f"response path {path}: the service returned no image URLs")
    return [url.strip() for url in urls]
