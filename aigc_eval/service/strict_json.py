"""Strict JSON at the service's door, and 422 answers that cannot fail to render.

Python's json module reads more than JSON: `NaN`, `Infinity` and `-Infinity`, numbers too large
for a float (`1e999` becomes inf), and strings holding lone UTF-16 surrogates (`"\\ud800"`, or
the surrogate's bytes encoded directly, which json.loads lets through). Neither can be written
back: Starlette's JSONResponse refuses non-finite floats and UTF-8 has no surrogates, so a
request carrying one used to end in a 500 from the very handler that tried to say what was wrong.

`StrictJson` looks at every JSON request body before FastAPI parses it and answers 400 with the
problem, where it is (line, column and character offset, as json's own errors give them) and the
field it is in; `validation_error` renders 422s without echoing the input back. `install(app)`
wires both in.
"""

from __future__ import annotations

import asyncio
import email.message
import json
import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aigc_eval.service.middleware import send_json

BODY_METHODS = {"POST", "PUT", "PATCH"}
THREAD_ABOVE_BYTES = 1 << 20  # larger bodies are scanned off the event loop
MAX_KEY_IN_FIELD = 64  # characters of a caller's key quoted in `field`

# One JSON token at a time, strings aside (_string_end finds their end with str.find, so a
# 16 MB base64 string costs a memchr rather than a regex step per character). The three
# non-standard constants are tokens of their own.
_TOKEN = re.compile(r"""
    (?P<space>[ \t\n\r]+)
  | (?P<punct>[{}\[\],:])
  | (?P<constant>-?Infinity|NaN)
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<word>true|false|null)
""", re.VERBOSE)
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
LONE_ESCAPE_ADVICE = ("send the character itself, or a high surrogate (\\ud800-\\udbff) followed by "
                      "a low one (\\udc00-\\udfff)")


@dataclass(frozen=True)
class JsonProblem:
    """What is wrong with a JSON text, where (`offset` in characters, `line` and `column` from 1),
    in which field (a dotted path as the service's other errors name fields; `body` for the top
    level), and what to send instead."""

    what: str
    offset: int
    line: int
    column: int
    field: str
    advice: str

    @property
    def message(self) -> str:
        return f"{self.what} at line {self.line} column {self.column} (char {self.offset}): {self.advice}"


class _Path:
    """The path to the value being read: object keys and array indices."""

    def __init__(self) -> None:
        self.frames: list[list[Any]] = []  # [kind "{" or "[", key or index, expecting a key]

    def field(self, depth: int | None = None) -> str:
        frames = self.frames if depth is None else self.frames[:depth]
        parts = ["items"] if self.frames and self.frames[0][0] == "[" else []
        parts += [str(frame[1]) for frame in frames if frame[1] is not None]
        return ".".join(parts) or "body"


def _position(text: str, offset: int) -> tuple[int, int]:
    """(line, column), both from 1, of character `offset`, counted as json.JSONDecodeError does."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - text.rfind("\n", 0, offset)


def _string_end(text: str, start: int) -> int:
    """The offset after the closing quote of the string opening at `start`; -1 when unclosed."""
    end = start + 1
    while True:
        quote = text.find('"', end)
        if quote < 0:
            return -1
        backslash = quote - 1
        while text[backslash] == "\\":
            backslash -= 1
        if (quote - 1 - backslash) % 2 == 0:  # an even run of backslashes escapes only itself
            return quote + 1
        end = quote + 1


def _lone_escape(text: str, start: int, end: int) -> int | None:
    """The offset of the first \\uXXXX escape in text[start:end] that is half a surrogate pair
    without its other half; None when there is none."""
    if text.find("\\u", start, end) < 0:
        return None
    pending = None  # (start, end) of a high-surrogate escape waiting for its low half
    for escape in _ESCAPE.finditer(text, start, end):
        code = int(escape.group(1), 16) if escape.group(1) else -1
        if pending is not None:
            if escape.start() == pending[1] and 0xDC00 <= code <= 0xDFFF:
                pending = None
                continue
            return pending[0]
        if 0xD800 <= code <= 0xDBFF:
            pending = (escape.start(), escape.end())
        elif 0xDC00 <= code <= 0xDFFF:
            return escape.start()
    return pending[0] if pending is not None else None


def _first_raw_surrogate(text: str) -> int:
    """The offset of the first surrogate code point in `text` itself (json.loads lets them through
    from bytes); len(text) when there is none."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return len(text)


def find_problem(text: str, raw: int | None = None) -> JsonProblem | None:
    """The first non-finite number (NaN, Infinity, -Infinity, a number beyond the float range) or
    lone surrogate (in a key or a string value) in JSON text `text`, or None. Text that stops
    being JSON before any such problem gives None too: the parser reports it. `raw`, when known,
    is _first_raw_surrogate(text)."""
    path, offset = _Path(), 0
    raw = _first_raw_surrogate(text) if raw is None else raw
    while offset < len(text):
        frame = path.frames[-1] if path.frames else None
        what, at, depth, advice = None, offset, None, ""
        if text[offset] == '"':
            end = _string_end(text, offset)
            if end < 0:
                return None
            is_key = frame is not None and frame[0] == "{" and frame[2]
            lone = _lone_escape(text, offset + 1, min(end, raw))
            if lone is not None:
                at, advice = lone, LONE_ESCAPE_ADVICE
                what = f"the escape {text[lone:lone + 6]}{' in a key' if is_key else ''} is a lone UTF-16 surrogate"
            elif raw < end:
                at, what = raw, (f"the surrogate code point U+{ord(text[raw]):04X}{' in a key' if is_key else ''}, "
                                 "encoded directly, is not a character")
                advice = "send the text as UTF-8 (or UTF-16) of real characters"
            elif is_key:
                key = json.loads(text[offset:end])
                frame[1] = key if len(key) <= MAX_KEY_IN_FIELD else key[:MAX_KEY_IN_FIELD] + "..."
            if what is not None and is_key:
                depth = len(path.frames) - 1  # the field is the object holding the key
        else:
            token = _TOKEN.match(text, offset)
            if token is None:
                return None
            kind, value, end = token.lastgroup, token.group(), token.end()
            if kind == "constant":
                what, advice = f"{value} is not a JSON number", "JSON has no NaN or Infinity; send a finite number, or null"
            elif kind == "number" and any(c in value for c in ".eE") and abs(float(value)) == float("inf"):
                what = f"the number {value[:40]}{'...' if len(value) > 40 else ''} is beyond the float range"
                advice = "it would be read as infinity; send a finite number"
            elif value in ("{", "["):
                path.frames.append([value, 0 if value == "[" else None, value == "{"])
            elif value in ("}", "]") and path.frames:
                path.frames.pop()
            elif value == "," and frame is not None:
                if frame[0] == "[":
                    frame[1] += 1
                else:
                    frame[1:] = [None, True]
            elif value == ":" and frame is not None:
                frame[2] = False
        if what is not None:
            line, column = _position(text, at)
            return JsonProblem(what, at, line, column, path.field(depth), advice)
        offset = end
    return None


def check_body(body: bytes) -> JsonProblem | None:
    """The JsonProblem of a request body, None when it has none or is not text json.loads reads
    (FastAPI answers that itself, 400). json.loads decodes UTF-8, -16 or -32, told apart by the
    first bytes, and lets surrogates through; a strict decode first says whether there are any."""
    encoding = json.detect_encoding(body)
    try:
        text = body.decode(encoding)
        raw = len(text)
    except UnicodeDecodeError:
        try:
            text = body.decode(encoding, "surrogatepass")
        except UnicodeDecodeError:
            return None
        raw = None
    return find_problem(text, raw)


def is_json_request(scope: Scope) -> bool:
    """Whether FastAPI would read this request's body as JSON (application/json or */*+json), or
    might (no content type at all)."""
    if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
        return False
    value = next((v for k, v in scope["headers"] if k == b"content-type"), None)
    if value is None:
        return True
    parsed = email.message.Message()
    parsed["content-type"] = value.decode("latin-1")
    subtype = parsed.get_content_subtype()
    return parsed.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class StrictJson:
    """400 for a JSON body with a non-finite number or a lone surrogate, before FastAPI parses it.
    Sits inside BodyLimit, so the body it reads is already capped."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_json_request(scope):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = (await asyncio.to_thread(check_body, body) if len(body) > THREAD_ABOVE_BYTES
                   else check_body(body))
        if problem is not None:
            await send_json(send, 400, {"detail": {"field": problem.field, "message": problem.message}})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _plain(value: Any) -> Any:
    """A ctx value as JSON can hold it: strings, finite numbers, booleans and None as they are,
    anything else (an exception, a pattern) as its text."""
    if value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and value == value
                                                                 and abs(value) != float("inf")):
        return value
    return str(value)


def render_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's 422 detail items (loc, msg, type, ctx) without `input`: the caller has its input,
    which may be megabytes of base64 or, for a body that is not JSON, bytes that are not text."""
    rendered = []
    for error in errors:
        item = {"loc": [part if isinstance(part, int) else str(part) for part in error.get("loc", ())],
                "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}
        if isinstance(error.get("ctx"), dict):
            item["ctx"] = {str(key): _plain(value) for key, value in error["ctx"].items()}
        rendered.append(item)
    return rendered


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """The 422 answer: FastAPI's HTTPValidationError shape, rendered from render_errors."""
    return JSONResponse({"detail": render_errors(exc.errors())}, 422)


def install(app: FastAPI) -> None:
    """Add StrictJson and the 422 handler to `app`. Call it before adding BodyLimit, so that
    StrictJson runs inside it (middlewares added later wrap those added earlier)."""
    app.add_middleware(StrictJson)
    app.add_exception_handler(RequestValidationError, validation_error)
