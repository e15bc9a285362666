"""The benchmark runs end to end at a tiny size (timings are not tested, only that it works)."""

from bench.run_bench import report, run_benchmark


def test_benchmark_runs_on_a_tiny_size():
    figures = run_benchmark(images=4, latency=0.0, memory_sizes=[2], batch_size=2, workers=2, repeat=3)
    assert set(figures["images_per_s"]) == {"a", "b", "c", "d", "d_lanes", "d_sequential"}
    runs = figures["images_per_s_each_round"]
    assert runs["d"] == [max(pair) for pair in zip(runs["d_lanes"], runs["d_sequential"])]  # the ceiling
    for key, rate in figures["images_per_s"].items():
        assert len(runs[key]) == 3 and all(r > 0 for r in runs[key]) and rate == sorted(runs[key])[1]
    for name, (top, bottom) in {"b_over_a": "ba", "b_over_d": "bd", "c_over_b": "cb"}.items():
        within_rounds = [t / b for t, b in zip(runs[top], runs[bottom])]
        assert figures["ratios_each_round"][name] == within_rounds and figures[name] == sorted(within_rounds)[1]
    assert figures["peak_memory_mib"][2] > 100  # torch and two models are resident
    assert 0 <= figures["max_clip_score_difference"] < 0.05
    assert figures["relative_is_difference"] < 0.05
    table = report(figures)
    assert "| (b)/(a) |" in table and "(rounds: " in table and "| peak memory, 2 rows |" in table
    assert "| (d) side by side in lanes, as main.py runs them |" in table
