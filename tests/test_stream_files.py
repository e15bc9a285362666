"""The stream workers' files without models: shards, torn tails, the merge, result messages, CLI errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from aigc_eval import columns as col
from aigc_eval.cli.score import main as score_main
from aigc_eval.cli.stream import main as stream_main
from aigc_eval.io.append_log import OutputLock
from aigc_eval.io.csv_io import InputError, read_rows
from aigc_eval.product import names as pn
from aigc_eval.scoring.metrics import inception_score
from aigc_eval.stream.merge import merge_shards
from aigc_eval.stream.publish import IS_TERM_OMITTED, ResultSettings, result_message
from aigc_eval.stream.shards import SHARD_COLUMNS, ShardPaths, ShardStore


def shard_row(image_id: str, worker: str, clip: float = 0.4, **changes: str) -> dict[str, str]:
    row = {name: "" for name in SHARD_COLUMNS}
    row.update({col.ID: image_id, col.PROMPT: "=蛋糕", col.RAW_PROMPT: "=蛋糕", col.IMAGE_URL: f"https://g/{image_id}.png",
                col.CATEGORY: "蛋糕" if image_id < "m" else "鞋", col.REQUEST_ID: image_id.rsplit("_", 1)[0],
                col.WORKER: worker, col.CLIP_SCORE: f"{clip:.6f}", col.PROMPT_TOKENS: "4", col.PROMPT_TRUNCATED: "false",
                col.STATUS: col.STATUS_OK, col.TOP1_CLASS: "1", col.TOP1_LABEL: "goldfish", col.TOP1_CONFIDENCE: "0.5",
                col.PRODUCT_STATUS: col.STATUS_SKIPPED, col.PRODUCT_ERROR: "no cut-out", col.NSQ_MESSAGE_ID: f"m-{image_id}"})
    row.update(changes)
    return row


def test_merge_ignores_torn_tails_keeps_each_image_once_and_computes_is_from_the_logits(tmp_path):
    rng = np.random.default_rng(0)
    logits = {f"{p}-{i}_0": torch.from_numpy(rng.normal(0, 3, 1000).astype(np.float32)) for p in "ax" for i in range(12)}
    ids = sorted(logits)
    plan = {"w1": ids[:10], "w2": ids[8:20] + ["bad_0"], "w3": ids[20:]}  # w1 and w2 both hold ids[8:10]
    for worker, owned in plan.items():
        store = ShardStore(ShardPaths(tmp_path, worker))
        rows = [shard_row(i, worker) if i != "bad_0" else
                shard_row(i, worker, status=col.STATUS_ERROR, error="HTTP 404", image_error="HTTP 404", clip_score="")
                for i in owned]
        store.append(rows, [(i, logits[i]) for i in owned if i in logits])
        store.close()
    with open(tmp_path / "result_stream.w3.csv", "ab") as handle:
        handle.write('zz_0,"torn'.encode())  # a crash mid-write: ignored by the merge
    with open(tmp_path / "result_stream.w3.logits.jsonl", "ab") as handle:
        handle.write(b'{"id": "zz_0", "logi')
    product = merge_shards(str(tmp_path / "result_stream.*.csv"), tmp_path / "c.csv", tmp_path / "i.csv",
                           tmp_path / "p.csv", splits=10)
    assert product  # every row was through the product check (skipped: no cut-out)
    _, clip_rows = read_rows(tmp_path / "c.csv", [col.ID])
    assert [r[col.ID] for r in clip_rows] == sorted(ids + ["bad_0"])
    assert clip_rows[1][col.PROMPT] == "=蛋糕" and clip_rows[1][col.RAW_PROMPT] == "=蛋糕"
    summary = json.loads((tmp_path / "i.json").read_text())
    expected = inception_score(torch.stack([logits[i] for i in ids]), splits=10)
    assert math.isclose(summary[col.KEY_IS_MEAN], expected[0], rel_tol=1e-12) and summary[col.KEY_NUM_ERRORS] == 1
    assert set(summary[col.KEY_PER_CATEGORY]) == {"蛋糕", "鞋"}
    _, is_rows = read_rows(tmp_path / "i.csv", [col.ID, col.KL])
    bad = next(r for r in is_rows if r[col.ID] == "bad_0")
    assert bad[col.STATUS] == col.STATUS_ERROR and bad[col.ERROR] == "HTTP 404"
    # A worker restarting on its shard cuts the torn tail off (kept in .torn) and keeps the rest.
    store = ShardStore(ShardPaths(tmp_path, "w3"))
    assert len(store.rows) == 4 and (tmp_path / "result_stream.w3.csv.torn").read_bytes() == 'zz_0,"torn'.encode()
    store.close()
    # The same images through main.py --shards: totals, categories, report.
    assert score_main(["--shards", str(tmp_path / "result_stream.*.csv"), "--clip-result", str(tmp_path / "c.csv"),
                       "--is-result", str(tmp_path / "i.csv"), "--product-result", str(tmp_path / "p.csv"),
                       "--output", str(tmp_path / "t.csv"), "--category-output", str(tmp_path / "cat.csv"),
                       "--no-report", "-q"]) == 1  # bad_0 is an error row
    _, totals = read_rows(tmp_path / "t.csv", [col.ID, col.TOTAL_SCORE])
    assert len(totals) == 25 and all(r[col.TOTAL_SCORE] for r in totals if r[col.STATUS] == col.STATUS_OK)


def test_a_shard_row_without_its_logits_is_refused(tmp_path):
    store = ShardStore(ShardPaths(tmp_path, "w1"))
    store.csv_log.append([shard_row("a_0", "w1")])
    store.close()
    with pytest.raises(InputError, match="no logits for image 'a_0'"):
        merge_shards(str(tmp_path / "*.csv"), tmp_path / "c.csv", tmp_path / "i.csv", tmp_path / "p.csv", splits=1)


def test_result_message_total_leaves_the_is_term_out_and_gives_reasons():
    settings = ResultSettings(weights={"clip": 0.6, "product": 0.5},
                              thresholds={"clip.min": "0.3", "inception.min_confidence": "0.15"})
    ok = result_message(shard_row("r-1_0", "w1", clip=0.3, top1_confidence="0.1", product_status=col.STATUS_OK,
                                  product_score="0.8", product_issues="product_recoloured"), settings)
    assert ok[col.KEY_RESULT_REQUEST_ID] == "r-1" and ok[col.KEY_RESULT_STATUS] == col.STATUS_OK
    assert ok[col.KEY_RESULT_TOTAL] == pytest.approx((0.6 * 0.5 + 0.5 * 0.8) / 1.1, abs=1e-6)
    assert ok[col.KEY_RESULT_REGENERATE] == ["top1_confidence 0.100 < 0.15", "product_recoloured"]
    assert ok[col.KEY_RESULT_IS_TERM] == IS_TERM_OMITTED and ok[col.KEY_RESULT_SCORES][pn.PRODUCT_SCORE] == 0.8
    failed = result_message(shard_row("r-2_0", "w1", image_error="HTTP 404", clip_score=""), settings)
    assert (failed[col.KEY_RESULT_STATUS], failed[col.KEY_RESULT_ERROR], failed[col.KEY_RESULT_TOTAL]) == ("error", "HTTP 404", None)


def test_cli_refuses_bad_names_a_held_lock_and_empty_globs(tmp_path, capsys):
    assert stream_main(["--worker-name", "../x", "--output-dir", str(tmp_path)]) == 2
    assert "--worker-name '../x'" in capsys.readouterr().err
    with OutputLock(tmp_path / "result_stream.w1.csv"):
        assert stream_main(["--worker-name", "w1", "--output-dir", str(tmp_path), "--nsqd-tcp-address", "127.0.0.1:9"]) == 4
    assert "another listener" in capsys.readouterr().err
    assert stream_main(["--lookupd-http-address", "127.0.0.1:9", "--output-dir", str(tmp_path)]) == 2
    assert "--result-nsqd-tcp-address" in capsys.readouterr().err
    assert stream_main(["--map", "id=id", "--output-dir", str(tmp_path)]) == 2  # the listener's one-image mode
    assert "--map id=... is for collecting" in capsys.readouterr().err
    assert score_main(["--shards", str(tmp_path / "none.*.csv"), "-q"]) == 2
    assert "no shard CSV matches" in capsys.readouterr().err
    assert score_main(["--shards", "x", "--input", "y.csv", "-q"]) == 2


@pytest.mark.parametrize(("args", "expected"), [([], 64), (["--batch-size", "48"], 96),
                                                (["--batch-size", "48", "--max-in-flight", "10"], 10)])
def test_max_in_flight_defaults_to_twice_the_batch_size(tmp_path, args, expected):
    """Two batches' worth in flight lets the next batch fill while the models run one."""
    from aigc_eval.cli.stream import build_parser, options_from

    options = options_from(build_parser().parse_args(["--output-dir", str(tmp_path), "--worker-name", "w", *args]))
    assert options.nsq.max_in_flight == expected
