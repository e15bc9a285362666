"""Label Studio in and out on its documented formats (labelstud.io/guide/tasks, /guide/task_format,
/guide/export): the tasks and the labelling config label.py writes, and the JSON, JSON_MIN and CSV
exports read back into labels.csv."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from aigc_eval.cli.label import main
from aigc_eval.labelling.format import ACCEPT, LABEL, LABEL_COLUMNS, LABEL_ID, LABELER, LABELLED_AT, REASON, REASONS, REJECT, SKIP, SOURCE, SOURCE_QA
from aigc_eval.labelling.label_studio import DATA_ID, LOCAL_FILES_PREFIX, label_config, read_export
from conftest import read_csv
from label_harness import ROOT, make_run


def _export(tmp_path):
    scores = make_run(tmp_path / "run", 3)
    tasks_path = tmp_path / "tasks.json"
    assert main(["--scores", str(scores), "--export-label-studio", str(tasks_path)]) == 0
    return json.loads(tasks_path.read_text(encoding="utf-8")), tasks_path.with_suffix(".xml")


def test_the_export_is_a_task_list_whose_config_names_its_data_and_the_labels_vocabulary(tmp_path):
    tasks, config_path = _export(tmp_path)
    assert [t["data"][DATA_ID] for t in tasks] == ["g0", "g1", "g2"]
    data = tasks[0]["data"]
    assert data["image"] == LOCAL_FILES_PREFIX + "img0.png" and data["product_image"] == LOCAL_FILES_PREFIX + "cutout.png"
    assert data["raw_prompt"].startswith("请帮我") and data["scores"]["total_score"] == "0.000"
    root = ET.fromstring(config_path.read_text(encoding="utf-8"))
    variables = {node.get("value")[1:] for node in root.iter() if (node.get("value") or "").startswith("$")}
    assert variables <= set(data) and "scores" not in variables  # the scores stay hidden data
    choices = {node.get("name"): [c.get("value") for c in node.iter("Choice")] for node in root.iter("Choices")}
    assert choices == {"verdict": [ACCEPT, REJECT], "reason": list(REASONS)}
    names = {node.get("name") for node in root.iter() if node.get("name")}
    assert all(node.get("toName") in names for node in root.iter("Choices"))


def _annotated_json(tasks):
    """A JSON export shaped as labelstud.io/guide/task_format shows it, over the exported tasks."""
    out = []
    for number, task in enumerate(tasks, start=1):
        out.append({"id": number, "project": 4, "data": task["data"], "predictions": [],
                    "created_at": "2026-12-06T10:00:00.000000Z", "updated_at": "2026-12-06T10:05:00.000000Z"})
    choice = lambda tag, value: {"id": f"r{tag}", "from_name": tag, "to_name": "image", "type": "choices",
                                 "origin": "manual", "value": {"choices": [value]}}
    out[0]["annotations"] = [
        {"id": 11, "completed_by": 1, "result": [choice("verdict", "accept")], "was_cancelled": False,
         "ground_truth": False, "created_at": "2026-12-06T10:01:00.000000Z", "updated_at": "2026-12-06T10:01:30.000000Z",
         "lead_time": 4.2, "task": 1},
        {"id": 12, "completed_by": {"id": 2, "email": "qa2@example.com", "first_name": "", "last_name": ""},
         "result": [choice("verdict", "reject"), choice("reason", "background")], "was_cancelled": False,
         "created_at": "2026-12-06T10:02:00.000000Z", "updated_at": "2026-12-06T10:02:00.000000Z", "task": 1}]
    out[1]["annotations"] = [{"id": 13, "completed_by": 2, "result": [], "was_cancelled": True,
                              "created_at": "2026-12-06T10:03:00.000000Z", "task": 2}]
    out[2]["annotations"] = [{"id": 14, "completed_by": 1, "result": [choice("verdict", "maybe")], "task": 3,
                              "created_at": "2026-12-06T10:04:00.000000Z"}]
    return out


def test_a_json_export_becomes_labels_rows_and_a_refused_annotation_an_error_row(tmp_path):
    tasks, _ = _export(tmp_path)
    export = tmp_path / "export.json"
    export.write_text(json.dumps(_annotated_json(tasks), ensure_ascii=False), encoding="utf-8")
    labels = tmp_path / "labels.csv"
    assert main(["--import-label-studio", str(export), "--labels", str(labels)]) == 1  # one refused
    rows = read_csv(labels)
    assert list(rows[0]) == list(LABEL_COLUMNS)
    assert [(r[LABEL_ID], r[LABEL], r[REASON], r[LABELER], r[SOURCE], r[LABELLED_AT]) for r in rows] == [
        ("g0", ACCEPT, "", "ls-user-1", SOURCE_QA, "2026-12-06T10:01:30.000000Z"),
        ("g0", REJECT, "background", "qa2@example.com", SOURCE_QA, "2026-12-06T10:02:00.000000Z"),
        ("g1", SKIP, "", "ls-user-2", SOURCE_QA, "2026-12-06T10:03:00.000000Z")]
    errors = read_csv(tmp_path / "labels.import_errors.csv")
    assert [(e["task"], e["annotation"]) for e in errors] == [("3", "14")] and "maybe" in errors[0]["error"]
    assert main(["--import-label-studio", str(export), "--labels", str(labels)]) == 1
    assert len(read_csv(labels)) == 3  # importing the same export again adds nothing


def _flat(tasks):
    """JSON_MIN records (one per annotation: the data keys, one key per control tag, annotator ...)."""
    base = lambda task, n: {**{k: v for k, v in task["data"].items() if k != "scores"}, "id": n}
    return [
        {**base(tasks[0], 1), "verdict": "accept", "reason": "artefact", "annotator": "qa1@example.com",
         "annotation_id": 21, "created_at": "2026-12-06T11:00:00.000000Z", "updated_at": "2026-12-06T11:00:05.000000Z",
         "lead_time": 3.1},
        {**base(tasks[1], 2), "verdict": "reject", "reason": {"choices": ["product_blurred"]}, "annotator": 7,
         "annotation_id": 22, "created_at": "2026-12-06T11:01:00.000000Z", "updated_at": "2026-12-06T11:01:00.000000Z"},
        {**base(tasks[2], 3), "verdict": "reject", "annotator": "qa1@example.com", "annotation_id": 23,
         "created_at": "2026-12-06T11:02:00.000000Z", "updated_at": "2026-12-06T11:02:00.000000Z"},
    ]


EXPECTED_FLAT = [("g0", ACCEPT, "artefact", "qa1@example.com"), ("g1", REJECT, "product_blurred", "ls-user-7"),
                 ("g2", REJECT, "", "qa1@example.com")]


def test_json_min_and_csv_exports_give_the_same_rows(tmp_path):
    tasks, _ = _export(tmp_path)
    records = _flat(tasks)
    json_min = tmp_path / "export_min.json"
    json_min.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    buffer = io.StringIO()
    names = list(dict.fromkeys(k for r in records for k in r))
    writer = csv.DictWriter(buffer, names)
    writer.writeheader()
    for record in records:  # the CSV export writes a multi-choice value as its JSON
        writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in record.items()})
    csv_export = tmp_path / "export.csv"
    csv_export.write_text(buffer.getvalue(), encoding="utf-8")
    for path in (json_min, csv_export):
        rows, errors = read_export(path)
        assert errors == []
        assert [(r[LABEL_ID], r[LABEL], r[REASON], r[LABELER]) for r in rows] == EXPECTED_FLAT, path.name


def test_an_export_that_is_neither_format_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "export.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    assert main(["--import-label-studio", str(bad), "--labels", str(tmp_path / "labels.csv")]) == 2
    err = capsys.readouterr().err
    assert "neither a Label Studio JSON export" in err and "Traceback" not in err
    assert "View" in label_config()


REAL = ROOT / "tests" / "data" / "label_studio_1.23.2"
# What a real Label Studio 1.23.2 exported after importing label.py's tasks and config for the
# 12-image run tests/label_harness.make_run-style data and annotating five tasks through its API
# (the steps of test_round_trip_through_a_real_label_studio): reject+background, accept,
# reject+background, accept, and one skipped (was_cancelled), by user 1.
REAL_ROWS = [("g0", REJECT, "background"), ("g1", ACCEPT, ""), ("g2", REJECT, "background"), ("g3", ACCEPT, "")]


def test_exports_written_by_a_real_label_studio_read_back(tmp_path):
    for name, expected in (("export.json", REAL_ROWS + [("g4", SKIP, "")]), ("export_min.json", REAL_ROWS),
                           ("export.csv", REAL_ROWS)):
        rows, errors = read_export(REAL / name)
        assert errors == [], name
        assert [(r[LABEL_ID], r[LABEL], r[REASON]) for r in rows] == expected, name
        assert {r[LABELER] for r in rows} == {"ls-user-1"} and all(r[LABELLED_AT].endswith("Z") for r in rows)


LABEL_STUDIO = os.environ.get("LABEL_STUDIO")  # the label-studio command of its own virtual environment


@pytest.mark.skipif(not LABEL_STUDIO, reason="set LABEL_STUDIO to a label-studio command (pip install label-studio "
                                             "in a venv of its own; its first start takes minutes)")
def test_round_trip_through_a_real_label_studio(tmp_path):
    import requests

    from label_harness import free_port

    scores = make_run(tmp_path / "run", 6)
    tasks_path = tmp_path / "tasks.json"
    assert main(["--scores", str(scores), "--export-label-studio", str(tasks_path)]) == 0
    port, token = free_port(), "roundtrip0123456789"
    env = {**os.environ, "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(tmp_path / "run"), "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true"}
    studio = subprocess.Popen([LABEL_STUDIO, "start", "--no-browser", "--port", str(port), "--data-dir", str(tmp_path / "ls"),
                               "--username", "qa@example.com", "--password", "pass12345", "--user-token", token],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Token {token}"}
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            try:
                if requests.get(base + "/api/projects", headers=headers, timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert studio.poll() is None, "label-studio exited"
            time.sleep(3)
        project = requests.post(base + "/api/projects", headers=headers, timeout=60, json={
            "title": "aigc-eval", "label_config": tasks_path.with_suffix(".xml").read_text(encoding="utf-8")})
        assert project.status_code == 201, project.text
        pid = project.json()["id"]
        imported = requests.post(f"{base}/api/projects/{pid}/import", headers=headers, timeout=60,
                                 json=json.loads(tasks_path.read_text(encoding="utf-8")))
        assert imported.status_code == 201 and imported.json()["task_count"] == 6, imported.text
        tasks = requests.get(f"{base}/api/tasks", headers=headers, params={"project": pid}, timeout=60).json()
        tasks = tasks["tasks"] if isinstance(tasks, dict) else tasks
        expected = []
        for number, task in enumerate(sorted(tasks, key=lambda t: t["id"])[:3]):
            verdict, reason = ((REJECT, REASONS[number]), (ACCEPT, ""), (REJECT, ""))[number]
            result = [{"from_name": "verdict", "to_name": "image", "type": "choices", "value": {"choices": [verdict]}}]
            if reason:
                result.append({"from_name": "reason", "to_name": "image", "type": "choices", "value": {"choices": [reason]}})
            made = requests.post(f"{base}/api/tasks/{task['id']}/annotations", headers=headers, timeout=60,
                                 json={"result": result, "was_cancelled": False})
            assert made.status_code == 201, made.text
            expected.append((task["data"][DATA_ID], verdict, reason))
        for kind, suffix in (("JSON", "json"), ("JSON_MIN", "min.json"), ("CSV", "csv")):
            export = requests.get(f"{base}/api/projects/{pid}/export", headers=headers, params={"exportType": kind}, timeout=120)
            assert export.status_code == 200, export.text
            path = tmp_path / f"export.{suffix}"
            path.write_bytes(export.content)
            labels = tmp_path / f"labels_{kind}.csv"
            assert main(["--import-label-studio", str(path), "--labels", str(labels)]) == 0, kind
            assert [(r[LABEL_ID], r[LABEL], r[REASON]) for r in read_csv(labels)] == expected, kind
            assert {r[SOURCE] for r in read_csv(labels)} == {SOURCE_QA}
    finally:
        studio.terminate()
        studio.wait(60)
