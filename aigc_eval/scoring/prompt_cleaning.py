"""Turning raw listened prompts into the visual description an image should show.

Real prompts arrive as JSON payloads (chat messages, parts lists, stringified JSON inside
JSON, generation parameters beside the prompt), as tagged transcripts, or as commands
("不好看，重画", "do it again"). `clean_prompt` keeps the user's descriptive text; the
word lists it uses live in data/prompt_rules.json beside this module, and the category-to-subject mapping
used by `label_subject` in data/category_subjects.json, so both can be extended without
touching code. `consumer_util.clean_prompt` is this module's function.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_RULES = DATA_DIR / "prompt_rules.json"
DEFAULT_SUBJECTS = DATA_DIR / "category_subjects.json"

CLAUSE_SPLIT = re.compile(r"[，,。!！?？;；\n\r]+|(?<![0-9])\.(?![0-9])")
EDGE_CHARS = " \t\"'“”‘’:：-—~·*#>`{}[]"
CHATML_TURN = re.compile(r"<\|im_start\|>\s*([A-Za-z]+)\s*\n?")  # ChatML: <|im_start|>user\n...<|im_end|>
CJK = re.compile(r"[\u3400-\u9fff]")
MAX_DEPTH = 12
STRING_PAIR = re.compile(r'"([^"\\]+)"\s*:\s*"((?:[^"\\]|\\.)*)"')
MEANINGLESS = {"null", "none", "undefined", "nan", "n/a", "true", "false"}
HAS_WORD = re.compile(r"[^\W\d_]")  # a letter of any script


@dataclass(frozen=True)
class PromptRules:
    """Compiled word lists (see data/prompt_rules.json for what each holds)."""

    command_clauses: tuple[re.Pattern, ...]
    request_prefixes: tuple[re.Pattern, ...]
    request_suffixes: tuple[re.Pattern, ...]
    markup: tuple[re.Pattern, ...]
    prompt_keys: frozenset[str]
    container_keys: frozenset[str]
    dropped_keys: frozenset[str]
    dropped_roles: frozenset[str]
    transcript_tag: re.Pattern
    transcript_roles: dict[str, str]
    regenerate_clauses: tuple[re.Pattern, ...] = ()  # commands asking for another image (optional key)


def _compile(patterns: Iterable[str], template: str) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(template.format(p), re.IGNORECASE | re.DOTALL) for p in patterns)


@lru_cache(maxsize=8)
def load_rules(path: Path | None = None) -> PromptRules:
    """Read and compile a rules file (default data/prompt_rules.json). Raises ValueError naming the file."""
    path = Path(path or DEFAULT_RULES)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        roles = {str(k).lower(): str(v).lower() for k, v in raw["transcript_roles"].items()}
        tag = "|".join(sorted((re.escape(name) for name in roles), key=len, reverse=True))
        return PromptRules(
            command_clauses=_compile(raw["command_clauses"], r"^(?:{})$"),
            request_prefixes=_compile(raw["request_prefixes"], r"^(?:{})\s*"),
            request_suffixes=_compile(raw["request_suffixes"], r"\s*(?:{})$"),
            markup=_compile(raw["markup_patterns"], "{}"),
            prompt_keys=frozenset(k.lower() for k in raw["prompt_keys"]),
            container_keys=frozenset(k.lower() for k in raw["container_keys"]),
            dropped_keys=frozenset(k.lower() for k in raw["dropped_keys"]),
            dropped_roles=frozenset(k.lower() for k in raw["dropped_roles"]),
            transcript_tag=re.compile(rf"(?:^|(?<=[\s。！？.!?]))[\[<【(]?({tag})[\]>】)]?\s*[:：]", re.IGNORECASE),
            transcript_roles=roles,
            regenerate_clauses=_compile(raw.get("regenerate_clauses", []), r"^(?:请|麻烦|帮我|给我|please )?(?:{})$"),
        )
    except (OSError, ValueError, KeyError, TypeError, re.error) as exc:
        raise ValueError(f"{path}: not a usable prompt rules file ({type(exc).__name__}: {exc})") from None


@lru_cache(maxsize=8)
def load_subjects(path: Path | None = None) -> dict[str, str]:
    """Read a category -> subject mapping (default data/category_subjects.json). Raises ValueError naming the file."""
    path = Path(path or DEFAULT_SUBJECTS)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("expected a JSON object of category to subject")
        return {str(k).strip(): str(v).strip() for k, v in raw.items() if not str(k).startswith("_") and str(v).strip()}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a usable subjects file ({exc})") from None


def _parse_json(text: str) -> object | None:
    """The JSON value of `text`, or None when it is not JSON (or is a bare number or word)."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[\"":
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        return None


def _salvage_objects(text: str) -> list[dict[str, str]]:
    """What can be read from malformed JSON (such as a payload cut short): its complete {...}
    objects, else its "key": "string" pairs, a new object starting whenever a key repeats."""
    found = [p for m in re.finditer(r"\{[^{}]*\}", text) if isinstance(p := _parse_json(m.group(0)), dict)]
    if found:
        return found
    objects: list[dict[str, str]] = [{}]
    for key, value in STRING_PAIR.findall(text):
        if key in objects[-1]:
            objects.append({})
        objects[-1][key] = _parse_json(f'"{value}"') or value
    return [o for o in objects if o]


def _transcript_turns(text: str, rules: PromptRules) -> list[str]:
    """The user's parts of a tagged transcript ("system: ... user: ..."); the whole text if untagged."""
    tags = list(rules.transcript_tag.finditer(text))
    if not tags:
        return [text]
    turns = []
    for tag, following in zip(tags, tags[1:] + [None]):
        role = rules.transcript_roles.get(tag.group(1).lower(), "user")
        body = text[tag.end(): following.start() if following else len(text)]
        if role == "user":
            turns.append(body)
    return turns


def _content_texts(content: object) -> list[object]:
    """Text parts of a message's content: a string, or a list of parts where image parts are dropped."""
    if isinstance(content, list):
        texts: list[object] = []
        for part in content:
            if isinstance(part, dict):
                kind = str(part.get("type", "text")).lower()
                if "image" in kind or "audio" in kind or "file" in kind:
                    continue
                texts.append(part.get("text", part.get("content", "")))
            else:
                texts.append(part)
        return texts
    return [content]


def _user_turns(value: object, rules: PromptRules, depth: int = 0) -> list[str]:
    """The user's texts in `value`, in order: a string, a chat message or list of them, or any JSON."""
    if depth > MAX_DEPTH or value is None:
        return []
    if isinstance(value, str):
        parsed = _parse_json(value)
        if parsed is not None and parsed != value:
            return _user_turns(parsed, rules, depth + 1)
        if value.strip()[:1] in ("{", "["):
            salvaged = _salvage_objects(value)
            if salvaged:
                return _user_turns(salvaged, rules, depth + 1)
        return _transcript_turns(CHATML_TURN.sub(r"\n\1: ", value), rules)
    if isinstance(value, list):
        return [text for item in value for text in _user_turns(item, rules, depth + 1)]
    if not isinstance(value, dict):
        return []
    lowered = {str(k).lower(): v for k, v in value.items()}
    if "role" in lowered:
        if str(lowered["role"]).lower() in rules.dropped_roles:
            return []
        content = lowered.get("content", lowered.get("text", lowered.get("message")))
        return [t for part in _content_texts(content) for t in _user_turns(part, rules, depth + 1)]
    texts = []
    for key, item in lowered.items():
        if key in rules.dropped_keys or key.startswith(("negative", "neg_")):
            continue
        if key in rules.prompt_keys or key in rules.container_keys or isinstance(item, (dict, list)):
            texts.extend(_user_turns(item, rules, depth + 1))
    return texts


def _strip_request(clause: str, rules: PromptRules) -> str:
    """Remove request phrasing ("给我做一张", "的主图", "please generate") around a description."""
    previous = None
    while clause != previous:
        previous = clause
        for pattern in rules.request_prefixes:
            clause = pattern.sub("", clause, count=1).strip(EDGE_CHARS)
        for pattern in rules.request_suffixes:
            clause = pattern.sub("", clause, count=1).strip(EDGE_CHARS)
    return clause


def _is_command(clause: str, rules: PromptRules) -> bool:
    return any(pattern.match(clause) for pattern in rules.command_clauses)


def clean_text(text: str, rules: PromptRules) -> str:
    """The descriptive clauses of one user turn, without markup, commands or request phrasing."""
    for pattern in rules.markup:
        text = pattern.sub(" ", text)
    kept = []
    for clause in CLAUSE_SPLIT.split(text):
        clause = re.sub(r"\s+", " ", clause).strip(EDGE_CHARS)
        if not HAS_WORD.search(clause) or clause.lower() in MEANINGLESS or _is_command(clause, rules):
            continue
        clause = _strip_request(clause, rules)
        if clause and not _is_command(clause, rules) and clause not in kept:
            kept.append(clause)
    joiner = "，" if any(CJK.search(c) for c in kept) else ", "
    return joiner.join(kept)


def clean_prompt(raw: str, rules: PromptRules | None = None) -> str:
    """The visual description in a raw prompt, or "" when nothing visual remains. Never raises.

    The last user turn that still describes something wins: in a conversation, later
    turns replace earlier ones ("再来一张，换成雪地背景").
    """
    try:
        rules = rules or load_rules()
        for turn in reversed(_user_turns(raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False), rules)):
            cleaned = clean_text(turn if isinstance(turn, str) else str(turn), rules)
            if cleaned:
                return cleaned
        return ""
    except Exception:  # whatever arrives, a prompt that cannot be understood scores as "nothing visual"
        return ""


def is_regenerate_request(raw: str, rules: PromptRules | None = None) -> bool:
    """True when the raw prompt's last user turn asks for another image: one of its clauses (before
    or after request phrasing is stripped) is a regenerate clause ("不好看，重新生成", "再来一张，换成
    雪地背景", "generate another one"). Acknowledgements ("好的", "ok") are commands but not
    regenerate requests. Never raises; False for what cannot be read."""
    try:
        rules = rules or load_rules()
        turns = _user_turns(raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False), rules)
        if not turns or not rules.regenerate_clauses:
            return False
        text = turns[-1] if isinstance(turns[-1], str) else str(turns[-1])
        for pattern in rules.markup:
            text = pattern.sub(" ", text)
        for clause in CLAUSE_SPLIT.split(text):
            clause = re.sub(r"\s+", " ", clause).strip(EDGE_CHARS)
            if clause and any(p.match(c) for c in (clause, _strip_request(clause, rules)) for p in rules.regenerate_clauses):
                return True
        return False
    except Exception:  # a prompt that cannot be understood is not a retry
        return False


def label_subject(prompt: str, category: str, subjects: dict[str, str]) -> str:
    """Append the category's subject when the prompt does not name it ("薰衣草花田" + 蛋糕)."""
    subject = subjects.get((category or "").strip(), "")
    if not prompt or not subject or subject.lower() in prompt.lower():
        return prompt
    return f"{prompt}，{subject}" if CJK.search(prompt + subject) else f"{prompt}, {subject}"


@dataclass(frozen=True)
class CleaningOptions:
    """Whether and how stage inputs' prompts are cleaned before scoring."""

    enabled: bool = True
    rules_path: Path | None = None
    subjects_path: Path | None = None
    category_col: str = "category"


def clean_rows(rows: list[dict[str, str]], prompt_col: str, options: CleaningOptions, raw_col: str) -> list[dict[str, str]]:
    """Rows whose `prompt_col` holds the cleaned, subject-labelled prompt and `raw_col` the prompt
    as given (kept from an earlier run when the row already has it). Unchanged when disabled."""
    if not options.enabled:
        return rows
    rules, subjects = load_rules(options.rules_path), load_subjects(options.subjects_path)
    cleaned = []
    for row in rows:
        raw = row.get(raw_col) or row.get(prompt_col, "")
        prompt = label_subject(clean_prompt(raw, rules), row.get(options.category_col, ""), subjects)
        cleaned.append({**row, prompt_col: prompt, raw_col: raw})
    return cleaned
