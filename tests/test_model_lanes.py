"""Model lanes: each call in its own thread with its share of the CPU threads, results in order."""

import threading

import pytest
import torch

from model_lanes import ModelLanes


@pytest.fixture
def three_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(before)


def _where() -> tuple[str, int]:
    return threading.current_thread().name, torch.get_num_threads()


def test_each_call_runs_in_its_own_lane_with_its_share_of_threads(three_threads):
    both_inside = threading.Barrier(2, timeout=10)  # passes only if the two calls run at the same time

    def call(value):
        both_inside.wait()
        return value, _where()

    with ModelLanes(torch.device("cpu")) as lanes:
        assert lanes.threads == [2, 1]
        for batch in range(3):
            first, second = lanes.run(lambda: call(("clip", batch)), lambda: call(("inception", batch)))
            assert first == (("clip", batch), ("model-lane-0_0", 2))
            assert second == (("inception", batch), ("model-lane-1_0", 1))
            assert torch.get_num_threads() == 3  # the caller's own setting is untouched
    seen = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start(), later.join()
    assert seen == [3]  # and after closing, new threads get it again


@pytest.mark.parametrize("device, count", [("cpu", 1), ("meta", 2)])
def test_one_lane_or_no_cpu_runs_the_calls_in_order_in_the_caller(three_threads, device, count):
    order = []
    with ModelLanes(torch.device(device), count) as lanes:
        assert lanes.run(lambda: order.append("a") or _where(), lambda: order.append("b") or _where()) == [
            (threading.current_thread().name, 3)] * 2
    assert order == ["a", "b"]


def test_an_error_in_a_lane_is_raised_to_the_caller(three_threads):
    def fails():
        raise KeyboardInterrupt("simulated kill mid-batch")

    with ModelLanes(torch.device("cpu")) as lanes:
        with pytest.raises(KeyboardInterrupt, match="simulated kill"):
            lanes.run(lambda: 1, fails)
        with pytest.raises(ValueError, match="3 calls for 2 lanes"):
            lanes.run(int, int, int)


def test_warm_up_starts_at_once_and_runs_before_the_lanes_next_call(three_threads):
    started, release, order = threading.Event(), threading.Event(), []

    def load():
        started.set()
        release.wait(10)
        order.append(("warm-up", threading.current_thread().name))

    with ModelLanes(torch.device("cpu")) as lanes:
        lanes.warm_up(1, load)
        assert started.wait(10)  # running while the caller goes on (fetching the first batch)
        release.set()
        lanes.run(int, lambda: order.append(("call", threading.current_thread().name)))
    assert order == [("warm-up", "model-lane-1_0"), ("call", "model-lane-1_0")]  # in its lane, before


def test_without_lanes_warm_up_leaves_the_loading_to_first_use(three_threads):
    called = []
    with ModelLanes(torch.device("cpu"), 1) as lanes:
        lanes.warm_up(0, lambda: called.append(threading.current_thread().name))
        assert lanes.run(lambda: "scored") == ["scored"]
    assert called == []  # no thread of its own, with its own malloc arena


def test_a_failed_warm_up_is_not_raised_by_the_lanes(three_threads):
    with ModelLanes(torch.device("cpu")) as lanes:
        lanes.warm_up(0, lambda: 1 / 0)
        assert lanes.run(lambda: "scored", int) == ["scored", 0]
