"""CLIPScore: agreement with cn_clip's own encoders, batch independence, truncation, errors."""

import contextlib
import io
import json

import pytest
import torch
from conftest import cpu_fp32, read_csv, write_csv
from PIL import Image

from aigc_eval import columns as col
from aigc_eval.cli.clipscore import main as clip_main
from aigc_eval.io.image_fetch import FetchConfig
from aigc_eval.scoring.clipscore import evaluate_clipscore as run_clip
from aigc_eval.scoring.model_loading import WeightsMissingError, load_chinese_clip

PROMPTS = ["红色的自行车停在草地上", "一只黄色的卡车", "木桌上的咖啡杯", "雪地背景的靴子", "薰衣草花田"]


def _csv(tmp_path, image_files, prompts=PROMPTS):
    rows = [{"id": f"r{i}", "prompt": p, "image_url": str(f)} for i, (p, f) in enumerate(zip(prompts, image_files))]
    return write_csv(tmp_path / "in.csv", rows)


def _scores(path):
    return {row["id"]: float(row[col.CLIP_SCORE]) for row in read_csv(path)}


def test_agrees_with_cn_clip_encoders(tmp_path, clip_dir, image_files):
    from cn_clip.clip import load_from_name, tokenize

    out = tmp_path / "result_clip.csv"
    rows, errors = run_clip(_csv(tmp_path, image_files), out, model_name="RN50", model_dir=clip_dir, runtime=cpu_fp32(batch_size=2))
    assert (rows, errors) == (5, 0)
    with contextlib.redirect_stdout(io.StringIO()):
        model, preprocess = load_from_name("RN50", device="cpu", download_root=str(clip_dir))
    model.eval()
    with torch.no_grad():
        images = torch.stack([preprocess(Image.open(f)) for f in image_files])
        image_emb = model.encode_image(images)
        text_emb = model.encode_text(tokenize(PROMPTS))
    image_emb = image_emb / image_emb.norm(dim=-1, keepdim=True)
    text_emb = text_emb / text_emb.norm(dim=-1, keepdim=True)
    expected = (image_emb * text_emb).sum(dim=-1).tolist()
    ours = _scores(out)
    for i, value in enumerate(expected):
        assert ours[f"r{i}"] == pytest.approx(value, abs=1e-5)


def test_score_does_not_depend_on_batch_size_or_neighbours(tmp_path, clip_dir, image_files):
    path = _csv(tmp_path, image_files)
    results = []
    for batch_size, order in ((1, None), (5, None), (3, [4, 2, 0, 3, 1])):
        if order:
            rows = read_csv(path)
            path = write_csv(tmp_path / "shuffled.csv", [rows[i] for i in order])
        out = tmp_path / f"out{batch_size}.csv"
        run_clip(path, out, model_name="RN50", model_dir=clip_dir, runtime=cpu_fp32(batch_size=batch_size))
        results.append(_scores(out))
    for other in results[1:]:
        for key, value in results[0].items():
            assert other[key] == pytest.approx(value, abs=2e-6)


def test_model_is_loaded_in_eval_mode(clip_dir):
    model, _ = load_chinese_clip("RN50", clip_dir, torch.device("cpu"))
    assert not any(module.training for module in model.modules())
    assert next(model.parameters()).dtype == torch.float32


def test_long_prompts_are_marked_truncated_and_empty_prompts_are_errors(tmp_path, clip_dir, image_files):
    prompts = ["短提示", "一个很长的描述" * 12, "", "a red bicycle", "   "]
    out = tmp_path / "out.csv"
    rows, errors = run_clip(_csv(tmp_path, image_files, prompts), out, model_name="RN50", model_dir=clip_dir,
                            runtime=cpu_fp32())
    result = read_csv(out)
    assert (rows, errors) == (5, 2)
    assert [r[col.STATUS] for r in result] == ["ok", "ok", "error", "ok", "error"]
    assert result[1][col.PROMPT_TRUNCATED] == "true" and int(result[1][col.PROMPT_TOKENS]) > 52
    assert result[0][col.PROMPT_TRUNCATED] == "false" and result[0][col.PROMPT_TOKENS] == "5"
    assert result[2][col.ERROR] == "empty prompt in column prompt"
    assert list(result[0])[:8] == ["id", "prompt", "image_url", "clip_score", "prompt_tokens", "prompt_truncated", "status", "error"]


def test_hostile_images_are_reported_and_good_ones_scored(tmp_path, clip_dir, image_server):
    base, _ = image_server
    paths = ["/good.jpg", "/truncated.jpg", "/page.html", "/missing.png", "/rgba.png", "/cmyk.jpg", "/grey16.png",
             "/exif.jpg", "/animated.gif", "/bomb.png", "/empty.png", "/loop"]
    rows = [{"id": str(i), "prompt": "产品图", "image_url": base + p} for i, p in enumerate(paths)]
    out = tmp_path / "out.csv"
    n, errors = run_clip(write_csv(tmp_path / "in.csv", rows), out, model_name="RN50", model_dir=clip_dir,
                         runtime=cpu_fp32(fetch=FetchConfig(timeout=2, retries=0, cache_dir=tmp_path / "c")))
    status = {paths[int(r["id"])]: r[col.STATUS] for r in read_csv(out)}
    bad = {"/truncated.jpg", "/page.html", "/missing.png", "/bomb.png", "/empty.png", "/loop"}
    assert n == len(paths) and errors == len(bad)
    assert {p for p, s in status.items() if s == "error"} == bad


def test_missing_weights_name_the_file(tmp_path, image_files, capsys):
    code = clip_main(["--input", str(_csv(tmp_path, image_files)), "--output", str(tmp_path / "o.csv"),
                                    "--model-dir", str(tmp_path / "nothing"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 3
    assert str(tmp_path / "nothing" / "clip_cn_vit-b-16.pt") in err and "huggingface.co/OFA-Sys/chinese-clip-vit-base-patch16" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.csv").exists()
    with pytest.raises(WeightsMissingError):
        load_chinese_clip("RN50", tmp_path / "nothing", torch.device("cpu"))


def test_cli_end_to_end_with_default_model(tmp_path, clip_dir_vit, image_files, capsys):
    out = tmp_path / "result_clip.csv"
    code = clip_main(["--input", str(_csv(tmp_path, image_files)), "--output", str(out),
                                    "--model_dir", str(clip_dir_vit), "--batch_size", "2", "--device", "cpu", "-q"])
    captured = capsys.readouterr()
    assert code == 0 and captured.out == "" and captured.err == ""
    assert all(-1 <= s <= 1 for s in _scores(out).values()) and len(_scores(out)) == 5


def test_cli_rejects_missing_columns(tmp_path, capsys):
    path = write_csv(tmp_path / "bad.csv", [{"id": 1, "text": "x"}])
    code = clip_main(["--input", str(path), "--output", str(tmp_path / "o.csv"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and f"error: {path}: missing column(s) prompt, image_url" in err
    assert not (tmp_path / "o.csv").exists()


def test_prompts_are_cleaned_labelled_and_kept_raw(tmp_path, clip_dir, image_files):
    raws = [
        json.dumps({"messages": [{"role": "system", "content": "只输出背景描述"}, {"role": "user", "content": "给我做一张薰衣草花田背景的主图"}]},
                   ensure_ascii=False),
        "不好看，重画",
        "香芋薰衣草",
        "",
        json.dumps({"prompt": "雪地背景", "negative_prompt": "模糊", "seed": 1}, ensure_ascii=False),
    ]
    rows = [{"id": f"r{i}", "prompt": p, "image_url": str(f), "category": "蛋糕"} for i, (p, f) in enumerate(zip(raws, image_files))]
    path, out = write_csv(tmp_path / "in.csv", rows), tmp_path / "out.csv"
    n, errors = run_clip(path, out, model_name="RN50", model_dir=clip_dir, runtime=cpu_fp32())
    result = read_csv(out)
    assert (n, errors) == (5, 1)  # the empty prompt is an error; the command-only one is skipped, not an error
    assert [r["prompt"] for r in result] == ["薰衣草花田背景，蛋糕", "", "香芋薰衣草，蛋糕", "", "雪地背景，蛋糕"]
    assert [r[col.RAW_PROMPT] for r in result] == raws
    assert [r[col.STATUS] for r in result] == ["ok", "skipped", "ok", "error", "ok"]
    assert "no visual description" in result[1][col.ERROR]
    # Rescoring the output keeps the original raw prompt and gives the same scores.
    run_clip(out, tmp_path / "again.csv", model_name="RN50", model_dir=clip_dir, runtime=cpu_fp32())
    again = read_csv(tmp_path / "again.csv")
    assert [r[col.RAW_PROMPT] for r in again] == raws and [r[col.CLIP_SCORE] for r in again] == [r[col.CLIP_SCORE] for r in result]


def test_no_clean_scores_prompts_as_given(tmp_path, clip_dir, image_files, capsys):
    rows = [{"id": "a", "prompt": "不好看，重画", "image_url": str(image_files[0])}]
    out = tmp_path / "out.csv"
    code = clip_main(["--input", str(write_csv(tmp_path / "in.csv", rows)), "--output", str(out), "--model", "RN50",
                                    "--model-dir", str(clip_dir), "--no-clean", "-q"])
    (row,) = read_csv(out)
    assert code == 0 and row["prompt"] == "不好看，重画" and row[col.STATUS] == "ok" and row[col.RAW_PROMPT] == ""
