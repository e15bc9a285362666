"""The benchmark runs end to end at a tiny size (timings are not tested, only that it works)."""

from bench.run_bench import report, run_benchmark


def test_benchmark_runs_on_a_tiny_size():
    figures = run_benchmark(images=4, latency=0.0, memory_sizes=[2], batch_size=2, workers=2, repeat=2)
    assert set(figures["images_per_s"]) == {"a", "b", "c", "d"}
    for key, rate in figures["images_per_s"].items():
        rounds = figures["images_per_s_each_round"][key]
        assert len(rounds) == 2 and all(r > 0 for r in rounds) and rate == max(rounds)
    assert figures["peak_memory_mib"][2] > 100  # torch and two models are resident
    assert 0 <= figures["max_clip_score_difference"] < 0.05
    assert figures["relative_is_difference"] < 0.05
    table = report(figures)
    assert "| (b)/(a) |" in table and "| peak memory, 2 rows |" in table
