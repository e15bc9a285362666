"""Label Studio in and out: a run as Label Studio tasks plus the labelling config that matches
them, and Label Studio's exports (JSON, JSON_MIN and CSV) back into labels.csv rows.

Formats, as Label Studio documents them (labelstud.io/guide/tasks, /guide/task_format and
/guide/export): a task file is a JSON list of `{"data": {...}}`; the config's `$name` variables
name keys of `data`, and keys no tag names (here the scores) are kept with the task but not
shown. The JSON export is the list of tasks, each with `annotations`, each with `result` (for a
Choices tag: `{"from_name", "to_name", "type": "choices", "value": {"choices": [...]}}`),
`completed_by` (a user id, or an object with the user's email), `was_cancelled` (the annotator
skipped), `created_at` and `updated_at`. JSON_MIN and CSV have one flat record per annotation:
the task's data keys, one key per control tag (`verdict`, `reason`: a single choice as the
string, several as `{"choices": [...]}`), `annotator`, `annotation_id`, `created_at`,
`updated_at`, and the task's `id`. Our own id travels as `data.image_id`, because the exports
flatten `data` beside Label Studio's own task `id`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterable
from urllib.parse import quote, urlparse
from xml.sax.saxutils import quoteattr

from aigc_eval.io.csv_io import InputError
from aigc_eval.labelling.format import (
    ACCEPT,
    LABEL,
    LABEL_ID,
    LABELER,
    LABELLED_AT,
    RATING,
    REASON,
    REASONS,
    REJECT,
    SKIP,
    SOURCE,
    SOURCE_QA,
)
from aigc_eval.labelling.session import Item

VERDICT_TAG, REASON_TAG, IMAGE_TAG = "verdict", "reason", "image"
DATA_ID, DATA_IMAGE, DATA_CUTOUT = "image_id", "image", "product_image"
DATA_PROMPT, DATA_RAW_PROMPT, DATA_CATEGORY, DATA_SCORES = "prompt", "raw_prompt", "category", "scores"
LOCAL_FILES_PREFIX = "/data/local-files/?d="  # Label Studio's local-files serving (LOCAL_FILES_DOCUMENT_ROOT)


def label_config() -> str:
    """The labelling config: the image, the cut-out, the prompt, an accept/reject choice and the reasons."""
    reasons = "\n".join(f"    <Choice value={quoteattr(code)}/>" for code in REASONS)
    return f"""<View>
  <Header value="$category"/>
  <View style="display: flex; gap: 12px">
    <Image name="{IMAGE_TAG}" value="${DATA_IMAGE}" maxWidth="800px"/>
    <Image name="cutout" value="${DATA_CUTOUT}" maxWidth="260px"/>
  </View>
  <Text name="prompt" value="${DATA_PROMPT}"/>
  <Choices name="{VERDICT_TAG}" toName="{IMAGE_TAG}" choice="single-radio" required="true" showInline="true">
    <Choice value="{ACCEPT}" hotkey="a"/>
    <Choice value="{REJECT}" hotkey="r"/>
  </Choices>
  <Choices name="{REASON_TAG}" toName="{IMAGE_TAG}" choice="single" showInline="true">
{reasons}
  </Choices>
</View>
"""


def task_image_ref(ref: str, run_dir: Path) -> str:
    """An image reference as Label Studio loads it: URLs as they are, a local path in the run's folder
    as a local-files URL relative to that folder (set LOCAL_FILES_DOCUMENT_ROOT to it)."""
    if not ref or urlparse(ref).scheme.lower() in ("http", "https", "data"):
        return ref
    path = Path(ref).expanduser()
    path = (path if path.is_absolute() else run_dir / path).resolve()
    if not path.is_relative_to(run_dir.resolve()):
        raise InputError(f"{ref}: outside the run's folder {run_dir}; Label Studio can serve only files under one root")
    return LOCAL_FILES_PREFIX + quote(path.relative_to(run_dir.resolve()).as_posix())


def export_tasks(items: Iterable[Item], run_dir: Path) -> list[dict]:
    """Label Studio tasks for a run: shown data, plus the scores kept hidden (no tag names them)."""
    return [{"data": {DATA_ID: item.id, DATA_IMAGE: task_image_ref(item.image, run_dir),
                      DATA_CUTOUT: task_image_ref(item.cutout, run_dir), DATA_PROMPT: item.prompt,
                      DATA_RAW_PROMPT: item.raw_prompt, DATA_CATEGORY: item.category, DATA_SCORES: item.scores}}
            for item in items]


def _choices(value: object) -> list[str]:
    """A control tag's value in any export: a string, a JSON string, {"choices": [...]} or a list."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("{", "[")):
            try:
                return _choices(json.loads(text))
            except ValueError:
                pass
        return [text]
    if isinstance(value, dict):
        return _choices(value.get("choices"))
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _annotator(value: object) -> str:
    """The labeler an export names: the user's email (or username) when given, else `ls-user-<id>`."""
    if isinstance(value, dict):
        value = value.get("email") or value.get("username") or value.get("id")
    text = str(value if value is not None else "").strip()
    return f"ls-user-{text}" if text.isdigit() else text


def _row(image_id: object, verdict: list[str], reason: list[str], annotator: object, stamp: object,
         cancelled: bool = False) -> dict[str, str]:
    """One labels.csv row; ValueError saying what is missing or outside the vocabulary."""
    image_id = str(image_id or "").strip()
    if not image_id:
        raise ValueError(f"no {DATA_ID} in the task's data (export tasks with label.py --export-label-studio)")
    labeler = _annotator(annotator)
    if not labeler:
        raise ValueError("no annotator")
    if cancelled:
        label, reason = SKIP, []
    elif len(verdict) != 1 or verdict[0] not in (ACCEPT, REJECT):
        raise ValueError(f"{VERDICT_TAG} must be one of {ACCEPT}, {REJECT}; got {verdict or 'nothing'}")
    else:
        label = verdict[0]
    bad = [r for r in reason if r not in REASONS]
    if bad or len(reason) > 1:
        raise ValueError(f"{REASON_TAG} must be one of {', '.join(REASONS)}; got {reason}")
    return {LABEL_ID: image_id, LABEL: label, RATING: "", REASON: reason[0] if reason else "", LABELER: labeler,
            SOURCE: SOURCE_QA, LABELLED_AT: str(stamp or "")}


def _from_json_tasks(tasks: list[dict]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    rows, errors = [], []
    for task in tasks:
        data = task.get("data") or {}
        for annotation in task.get("annotations") or []:
            picked: dict[str, list[str]] = {VERDICT_TAG: [], REASON_TAG: []}
            for result in annotation.get("result") or []:
                if result.get("from_name") in picked and result.get("type") == "choices":
                    picked[result["from_name"]] += _choices((result.get("value") or {}).get("choices"))
            try:
                rows.append(_row(data.get(DATA_ID), picked[VERDICT_TAG], picked[REASON_TAG], annotation.get("completed_by"),
                                 annotation.get("updated_at") or annotation.get("created_at"),
                                 bool(annotation.get("was_cancelled"))))
            except ValueError as exc:
                errors.append({"task": str(task.get("id", "")), "annotation": str(annotation.get("id", "")), "error": str(exc)})
    return rows, errors


def _from_flat(records: Iterable[dict]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    rows, errors = [], []
    for record in records:
        try:
            rows.append(_row(record.get(DATA_ID), _choices(record.get(VERDICT_TAG)), _choices(record.get(REASON_TAG)),
                             record.get("annotator"), record.get("updated_at") or record.get("created_at")))
        except ValueError as exc:
            errors.append({"task": str(record.get("id", "")), "annotation": str(record.get("annotation_id", "")),
                           "error": str(exc)})
    return rows, errors


def read_export(path: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(labels rows, errors) from a Label Studio export: JSON, JSON_MIN or CSV, told apart by content.

    Each annotation becomes one row or one error (task id, annotation id, why). Raises InputError
    when the file is neither JSON nor CSV of these shapes."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the Label Studio export ({exc})") from None
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except ValueError as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
        if not all(isinstance(r, dict) for r in records):
            raise InputError(f"{path}: a Label Studio JSON export is a list of objects")
        full = any("annotations" in r or "data" in r for r in records)
        return _from_json_tasks(records) if full else _from_flat(records)
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or VERDICT_TAG not in reader.fieldnames:
        raise InputError(f"{path}: neither a Label Studio JSON export nor its CSV export with a {VERDICT_TAG} column")
    return _from_flat(reader)
