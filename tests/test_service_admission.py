"""Deadline-aware admission without HTTP: the expected finish and the service rate by hand
(admission.py), and DynamicBatcher.check refusing what would not be done in time, with a
Retry-After from the expected drain time."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from aigc_eval.service.batcher import DeadlineExceeded, DynamicBatcher, QueueFull
from test_batcher import Recorder, run, until


def test_expected_finish_by_hand():
    from aigc_eval.service.admission import expected_finish

    # Idle, 2 workers, 1 s per item: 3 new items in batches of 2 -> [2 items on worker A: 2 s],
    # [1 item on worker B: 1 s]; the last batch holding new items ends at 1 s.
    assert expected_finish(1.0, [], queued=0, new=3, max_batch=2, workers=2) == 1.0
    # Both workers busy: one ends in 4 - 1 = 3 s, the other in 2 - 1.5 = 0.5 s. The 2 queued go on
    # the second at 0.5, ending 0.5 + 0.1 (forming) + 2 = 2.6; the new one follows them there
    # (2.6 < 3), ending 2.6 + 0.1 + 1 = 3.7.
    assert expected_finish(1.0, [(4, 1.0), (2, 1.5)], queued=2, new=1, max_batch=2, workers=2, max_wait_s=0.1) \
        == pytest.approx(3.7)
    # new=0: the drain time, when the last running or queued item is done.
    assert expected_finish(1.0, [(4, 1.0), (2, 1.5)], queued=2, new=0, max_batch=2, workers=2) == 3.0
    assert expected_finish(1.0, [(4, 1.0)], queued=0, new=0, max_batch=2, workers=2) == 3.0
    assert expected_finish(0.5, [], queued=0, new=0, max_batch=2, workers=2) == 0.0


def test_service_rate_is_a_moving_average_raised_by_a_slow_running_batch():
    from aigc_eval.service.admission import ServiceRate, retry_after_s

    rate = ServiceRate(alpha=0.5)
    assert rate.current([]) is None and rate.current([(4, 2.0)]) == 0.5  # known only from the running batch
    rate.record(4, 4.0)  # 1 s per item
    rate.record(2, 4.0)  # 2 s per item: 1 + 0.5 x (2 - 1)
    rate.record(0, 9.0)  # no items: ignored
    assert rate.seconds_per_item == 1.5
    assert rate.current([(2, 1.0)]) == 1.5 and rate.current([(2, 5.0)]) == 2.5  # 5 s for 2 items already
    assert [retry_after_s(x, 30) for x in (None, 0.0, 0.2, 1.0, 1.01, 7.5, 300.0)] == [1, 1, 1, 1, 2, 8, 30]
    with pytest.raises(ValueError, match="alpha"):
        ServiceRate(alpha=0)


def test_deadline_aware_refusal_and_retry_after_from_the_queue():
    # 0.2 s per item, measured on one batch. Then the worker is held by a batch of 4 (0.8 s at
    # that rate) and 8 more are queued: 2 batches of 4 after it, so all is done in about 2.4 s.
    release = threading.Event()

    def process(items: list[str]) -> list[str]:
        release.wait(10)
        time.sleep(0.2 * len(items))
        return [f"scored {item}" for item in items]

    async def main():
        batcher = DynamicBatcher(process, max_batch=4, max_wait_ms=0, max_queue=100, workers=1)
        await batcher.start()
        assert batcher.expected_s(1) is None and batcher.retry_after_s(30) == 1  # nothing measured yet
        release.set()
        await batcher.submit_many(["w1", "w2"], deadline_s=10)
        assert batcher.rate.seconds_per_item == pytest.approx(0.2, abs=0.03)
        release.clear()  # the next batch is held until released
        try:
            held = asyncio.create_task(batcher.submit_many(list("abcd"), deadline_s=10))
            await until(lambda: batcher.in_flight == 4)
            queued = asyncio.create_task(batcher.submit_many(list("efghijkl"), deadline_s=10))
            await until(lambda: batcher.queue_depth == 8)
            assert batcher.expected_s(0) == pytest.approx(2.4, abs=0.3)
            assert batcher.retry_after_s(30) == 3 and batcher.retry_after_s(1.5) == 2  # ceil(2.4), capped
            started = time.monotonic()
            with pytest.raises(QueueFull, match="deadline") as refused:  # ~2.6 s expected, over 2/3 x 3 s
                await batcher.submit("m", deadline_s=3)
            assert time.monotonic() - started < 0.05 and refused.value.retry_after_s == 3
            assert batcher.queue_depth == 8  # nothing of it was queued
            with pytest.raises(QueueFull, match="deadline"):  # ~2.8 s over 2/3 x 3.4 s; all or none
                await batcher.submit_many(["n", "o"], deadline_s=3.4)
            assert batcher.queue_depth == 8
            late_ok = asyncio.create_task(batcher.submit("p", deadline_s=10))  # ~2.6 s fits 2/3 x 10 s
            no_deadline = asyncio.create_task(batcher.submit("q"))  # only max_queue bounds it
            await until(lambda: batcher.queue_depth == 10)
        finally:
            release.set()
        results = await asyncio.gather(held, queued, late_ok, no_deadline)
        await batcher.stop()
        return results

    held, _queued, late_ok, no_deadline = run(main())
    assert held == [f"scored {x}" for x in "abcd"] and late_ok == "scored p" and no_deadline == "scored q"


def test_an_idle_batcher_admits_however_slow_the_last_batches_were():
    async def main():
        batcher = DynamicBatcher(lambda items: (time.sleep(0.3), items)[1], max_batch=2, max_wait_ms=0,
                                 max_queue=10, workers=1)
        await batcher.start()
        assert await batcher.submit("slow", deadline_s=1) == "slow"  # 0.3 s per item measured
        # 0.3 s is over 2/3 x 0.2 s, but the worker is free and the item starts at once
        with pytest.raises(DeadlineExceeded):
            await batcher.submit("hurried", deadline_s=0.2)
        await asyncio.sleep(0.2)  # the worker is free again
        busy = asyncio.create_task(batcher.submit("busy", deadline_s=1))
        await until(lambda: batcher.in_flight == 1)
        with pytest.raises(QueueFull, match="deadline"):  # now it would wait for "busy" first
            await batcher.submit("waits", deadline_s=0.5)
        assert await busy == "busy"
        await batcher.stop()

    run(main())


def test_a_burst_gets_results_or_refusals_never_late_answers():
    # 30 ms per item; 2 workers; deadline 0.6 s. A burst of 120 callers: those admitted are done
    # within the deadline, the others are refused at once.
    def process(items: list[int]) -> list[int]:
        time.sleep(0.01 + 0.03 * len(items))
        return items

    async def caller(batcher, item):
        await asyncio.sleep(random.random() * 0.3)
        started = time.monotonic()
        try:
            await batcher.submit(item, deadline_s=0.6)
            return "ok"
        except QueueFull:
            assert time.monotonic() - started < 0.05
            return "refused"
        except DeadlineExceeded:
            return "late"

    async def main():
        batcher = DynamicBatcher(process, max_batch=4, max_wait_ms=5, max_queue=1000, workers=2)
        await batcher.start()
        await batcher.submit_many([0, 1, 2, 3])  # measure the rate first
        outcomes = await asyncio.gather(*(caller(batcher, i) for i in range(120)))
        await batcher.stop()
        return outcomes

    outcomes = run(main())
    assert outcomes.count("late") == 0, outcomes
    assert outcomes.count("ok") > 10 and outcomes.count("refused") > 10


def test_before_any_batch_ends_only_an_idle_batcher_takes_items():
    process = Recorder(hold=True)

    async def main():
        batcher = DynamicBatcher(process, max_batch=2, max_wait_ms=0, max_queue=10, workers=2)
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.submit_many(["a", "b"], deadline_s=5))  # idle: admitted
            await until(lambda: batcher.in_flight == 2)
            with pytest.raises(QueueFull, match="no batch measured yet") as refused:
                await batcher.submit("c", deadline_s=5)  # a worker is free, but how long would "c" take?
            assert refused.value.retry_after_s == 1 and batcher.queue_depth == 0
            unbounded = asyncio.create_task(batcher.submit("d"))  # without a deadline only max_queue bounds it
            await until(lambda: batcher.in_flight == 3)
        finally:
            process.release.set()
        return await asyncio.gather(first, unbounded)

    assert run(main()) == [["scored a", "scored b"], "scored d"]
