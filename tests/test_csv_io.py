"""CSV reading and writing: clear errors, BOM, formula-injection neutralising, atomic writes."""

import pytest

from aigc_eval.io.csv_io import (
    AtomicCsvWriter,
    InputError,
    neutralise_cell,
    read_rows,
    write_rows,
)


def test_round_trip_neutralises_formulas_but_keeps_numbers(tmp_path):
    path = tmp_path / "out.csv"
    rows = [{"id": "=HYPERLINK(\"x\")", "score": -0.25, "note": "@SUM(A1)"}, {"id": "+1-2", "score": "-1e-3", "note": "中文"}]
    write_rows(path, ["id", "score", "note"], rows)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    assert "'=HYPERLINK" in text and "'@SUM" in text and ",-0.25," in text and ",-1e-3," in text
    _, back = read_rows(path, ["id"])
    assert back == [
        {"id": "=HYPERLINK(\"x\")", "score": "-0.25", "note": "@SUM(A1)"},
        {"id": "+1-2", "score": "-1e-3", "note": "中文"},
    ]


def test_neutralise_cell():
    assert neutralise_cell("-cmd|' /C calc'!A0") == "'-cmd|' /C calc'!A0"
    assert neutralise_cell("-12.5") == "-12.5"
    assert neutralise_cell(None) == ""
    assert neutralise_cell("plain") == "plain"


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty or has no header"), (b"\n\n", "empty or has no header"), (b"id,prompt\n1,a\n", "missing column\\(s\\) image_url"),
     (b"\xff\xfe\x00bad", "not UTF-8")],
)
def test_bad_inputs_name_the_file_and_problem(tmp_path, content, message):
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        read_rows(path, ["id", "prompt", "image_url"])
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_rows(tmp_path / "nope.csv", ["id"])


def test_bom_input_is_accepted(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid,prompt,image_url\n1,红色自行车,a.png\n".encode("utf-8"))
    header, rows = read_rows(path, ["id", "prompt", "image_url"])
    assert header == ["id", "prompt", "image_url"] and rows[0]["prompt"] == "红色自行车"


def test_failed_write_leaves_previous_file_untouched(tmp_path):
    path = tmp_path / "result.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with AtomicCsvWriter(path, ["a"]) as writer:
            writer.write({"a": 1})
            raise RuntimeError("crash mid-run")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["result.csv"]
