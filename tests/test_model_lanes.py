"""Model lanes: tasks from one queue, taken by whichever lane is free, each lane with its share of
the CPU threads; split work comes back joined in order."""

import threading

import pytest
import torch

from aigc_eval.scoring.model_lanes import ModelLanes, queued_ahead


@pytest.fixture
def three_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(before)


def _where() -> tuple[str, int]:
    return threading.current_thread().name, torch.get_num_threads()


def test_tasks_run_at_the_same_time_in_the_lanes_with_their_share_of_threads(three_threads):
    both_inside = threading.Barrier(2, timeout=10)  # passes only if two tasks run at the same time

    def task(value):
        both_inside.wait()
        return value, _where()

    with ModelLanes(torch.device("cpu")) as lanes:
        assert lanes.threads == [2, 1]
        for batch in range(3):
            first, second = lanes.submit(task, ("clip", batch)), lanes.submit(task, ("inception", batch))
            results = [first.result(), second.result()]
            assert [value for value, _ in results] == [("clip", batch), ("inception", batch)]
            assert sorted(where for _, where in results) == [("model-lane-0", 2), ("model-lane-1", 1)]
            assert torch.get_num_threads() == 3  # the caller's own setting is untouched
    seen = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start(), later.join()
    assert seen == [3]  # and after closing, new threads get it again


def test_split_runs_one_slice_per_lane_at_once_and_joins_them_in_order(three_threads):
    both_inside = threading.Barrier(2, timeout=10)
    lanes_seen = []

    def double(rows: torch.Tensor) -> torch.Tensor:
        both_inside.wait()
        lanes_seen.append(threading.current_thread().name)
        return rows * 2

    batch = torch.arange(7.0).view(7, 1)
    with ModelLanes(torch.device("cpu")) as lanes:
        joined = lanes.split(double, batch)
        assert torch.equal(joined.result(), batch * 2)
    assert sorted(lanes_seen) == ["model-lane-0", "model-lane-1"]


def test_a_free_lane_takes_the_next_task_whichever_model_it_is_for(three_threads):
    """A long task holds one lane; every later task, queued behind it, runs in the other."""
    release = threading.Event()
    with ModelLanes(torch.device("cpu")) as lanes:
        long = lanes.submit(lambda: release.wait(10) and _where()[0])
        short = [lanes.submit(lambda: _where()[0]) for _ in range(5)]
        others = {task.result(timeout=10) for task in short}
        release.set()
        assert len(others) == 1 and long.result(timeout=10) not in others


@pytest.mark.parametrize("device, count", [("cpu", 1), ("meta", 2)])
def test_one_lane_or_no_cpu_runs_the_calls_at_once_in_the_caller(three_threads, device, count):
    order = []
    with ModelLanes(torch.device(device), count) as lanes:
        first = lanes.submit(lambda: order.append("a") or _where())
        order.append("submitted")
        joined = lanes.split(lambda rows: rows + 1, torch.zeros(4))
        assert first.result() == (threading.current_thread().name, 3)
        assert torch.equal(joined.result(), torch.ones(4))
    assert order == ["a", "submitted"]


def test_an_error_in_a_lane_is_raised_by_its_result(three_threads):
    def fails(_=None):
        raise KeyboardInterrupt("simulated kill mid-batch")

    with ModelLanes(torch.device("cpu")) as lanes:
        with pytest.raises(KeyboardInterrupt, match="simulated kill"):
            lanes.submit(fails).result()
        with pytest.raises(KeyboardInterrupt, match="simulated kill"):
            lanes.split(fails, torch.zeros(4)).result()
        assert lanes.submit(int, "5").result() == 5  # the lanes go on
    with ModelLanes(torch.device("cpu"), 1) as lanes:
        with pytest.raises(ValueError):
            lanes.submit(int, "x").result()


def test_close_cancels_what_has_not_started_and_waits_for_what_has(three_threads):
    started, release, finished = threading.Barrier(3, timeout=10), threading.Event(), []

    def hold():
        started.wait()
        release.wait(10)
        finished.append(threading.current_thread().name)

    lanes = ModelLanes(torch.device("cpu"))
    running = [lanes.submit(hold), lanes.submit(hold)]
    queued = lanes.submit(finished.append, "never")
    started.wait()
    threading.Timer(0.2, release.set).start()
    lanes.close()
    assert all(task.done() and task.exception() is None for task in running)
    assert queued.cancelled() and "never" not in finished
    assert torch.get_num_threads() == 3


def test_warm_up_starts_at_once_and_later_tasks_go_on_in_the_other_lane(three_threads):
    started, release, order = threading.Event(), threading.Event(), []

    def load():
        started.set()
        release.wait(10)
        order.append("warm-up")

    with ModelLanes(torch.device("cpu")) as lanes:
        lanes.warm_up(load)
        assert started.wait(10)  # running while the caller goes on (fetching the first batch)
        lanes.submit(order.append, "task").result(timeout=10)
        release.set()
    assert order == ["task", "warm-up"]


def test_without_lanes_warm_up_leaves_the_loading_to_first_use(three_threads):
    called = []
    with ModelLanes(torch.device("cpu"), 1) as lanes:
        lanes.warm_up(lambda: called.append(threading.current_thread().name))
        assert lanes.submit(lambda: "scored").result() == "scored"
    assert called == []  # no thread of its own, with its own malloc arena


def test_a_failed_warm_up_is_not_raised_by_the_lanes(three_threads):
    with ModelLanes(torch.device("cpu")) as lanes:
        lanes.warm_up(lambda: 1 / 0)
        assert [lanes.submit(lambda: "scored").result(), lanes.submit(int).result()] == ["scored", 0]


def test_queued_ahead_submits_each_batch_before_collecting_the_one_before():
    events = []

    def submit(batch):
        events.append(("submit", batch))
        return lambda: events.append(("collect", batch)) or batch * 10

    assert list(queued_ahead(iter([1, 2, 3]), submit)) == [(1, 10), (2, 20), (3, 30)]
    assert events == [("submit", 1), ("submit", 2), ("collect", 1), ("submit", 3), ("collect", 2), ("collect", 3)]
    assert list(queued_ahead([], submit)) == []
