"""The benchmark runs end to end at a tiny size (timings are not tested, only that it works)."""

import resource

import pytest
from torchvision.models import Inception_V3_Weights, ViT_B_16_Weights

from aigc_eval.scoring.model_loading import default_device
from bench.run_bench import main, report, run_benchmark, script_peak_mib, target


def test_benchmark_runs_on_a_tiny_size():
    figures = run_benchmark(images=4, latency=0.0, memory_sizes=[2], batch_size=2, workers=2, repeat=3)
    assert set(figures["images_per_s"]) == {"a", "b", "c", "d", "d_lanes", "d_sequential"}
    assert figures["device"] == default_device()  # main.py's default, for (a) to (d) alike
    runs = figures["images_per_s_each_round"]
    assert runs["d"] == [max(pair) for pair in zip(runs["d_lanes"], runs["d_sequential"])]  # the ceiling
    for key, rate in figures["images_per_s"].items():
        assert len(runs[key]) == 3 and all(r > 0 for r in runs[key]) and rate == max(runs[key])
        assert figures["images_per_s_median"][key] == sorted(runs[key])[1]
    for name, (top, bottom) in {"b_over_a": "ba", "b_over_d": "bd", "c_over_b": "cb", "d_over_a": "da"}.items():
        assert figures[name] == max(runs[top]) / max(runs[bottom])  # the fastest rounds'
        within_rounds = [t / b for t, b in zip(runs[top], runs[bottom])]
        assert figures["ratios_each_round"][name] == within_rounds
        assert figures["ratios_median_round"][name] == sorted(within_rounds)[1]
    assert figures["peak_memory_mib"][2] > 100  # torch and two models are resident
    assert 0 <= figures["max_clip_score_difference"] < 0.05
    assert figures["relative_is_difference"] < 0.05
    # The FLOP counts agree with torchvision's own (its "_ops" count multiply-adds, in billions):
    # cn_clip's ViT-B-16 image tower is torchvision's ViT-B/16 but for its last projection.
    work = figures["gflop_per_image"]
    assert work["inception"] / 2 == pytest.approx(Inception_V3_Weights.IMAGENET1K_V1.meta["_ops"], rel=0.002)
    assert work["clip_image"] / 2 == pytest.approx(ViT_B_16_Weights.IMAGENET1K_V1.meta["_ops"], rel=0.002)
    assert 0.5 < work["clip_text"] < 10  # a 12-layer, 768-wide text tower over a short prompt
    matmul = figures["matmul_gflop_per_s_each_round"]
    assert len(matmul) == 3 and min(matmul) > 1 and figures["matmul_gflop_per_s"] == max(matmul)
    table = report(figures)
    assert "| fastest round | median round | each round |" in table and "| (b)/(a) |" in table
    assert "| peak memory, 2 rows |" in table
    assert "| (d) shared out to lanes, as main.py runs them |" in table
    assert "| (d)/(a), the most (b)/(a) could be |" in table and "of this machine's matrix-multiply rate" in table
    judged = next(line for line in table.splitlines() if line.startswith("| (b)/(a) |"))
    assert judged.endswith(f"| ≥ 4x {'✔' if figures['b_over_a'] >= 4 else '✘'} |")


def test_targets_are_judged_at_their_bounds():
    assert target("b_over_d", 0.85) == "≥ 85% ✔" and target("b_over_d", 0.849) == "≥ 85% ✘"
    assert target("b_over_a", 4.0) == "≥ 4x ✔" and target("c_over_b", 19.9) == "≥ 20x ✘"
    assert target("memory_ratio", 1.2) == "≤ 1.2 ✔" and target("memory_ratio", 1.21) == "≤ 1.2 ✘"
    assert target("relative_is_difference", 0.011) == "≤ 1% ✘" and target("max_clip_score_difference", 0.002) == "≤ 0.01 ✔"
    assert target("d_over_a", 9.0) == ""  # a bound, not a target


def test_a_device_that_cannot_be_used_is_a_one_line_error_before_any_work(capsys):
    assert main(["--device", "abacus", "--images", "4", "--memory-sizes"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device abacus: ") and err.count("\n") == 1 and "machine:" not in err


def test_peak_memory_is_the_scripts_own_not_the_parents(tmp_path):
    """wait4's ru_maxrss would report this (torch-sized) test process's peak for a tiny child."""
    parent_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert parent_mib > 150
    (tmp_path / "small.py").write_text("import sys\nassert sys.argv[1:] == ['x']\n")
    (tmp_path / "big.py").write_text("block = bytearray(200 * 2**20)\nblock[::4096] = b'x' * len(block[::4096])\n")
    small = script_peak_mib(tmp_path / "small.py", ["x"], tmp_path / "peak.txt")
    big = script_peak_mib(tmp_path / "big.py", [], tmp_path / "peak.txt")
    assert small < 60 < 200 < big < 260
