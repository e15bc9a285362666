"""DynamicBatcher without HTTP: batch forming, waiting, bounded queue, deadlines, errors, shutdown."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from aigc_eval.service.batcher import DeadlineExceeded, DynamicBatcher, QueueFull, ShuttingDown


class Recorder:
    """A process function that records its batches and can be held on a threading.Event."""

    def __init__(self, hold: bool = False, fail_on: object = None, sleep: float = 0.0):
        self.batches: list[list] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.fail_on, self.sleep = fail_on, sleep

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        if not self.release.wait(10):  # never hang the test run if a test forgets to release
            raise RuntimeError("held too long")
        time.sleep(self.sleep)
        if self.fail_on in items:
            raise RuntimeError(f"model failed on {self.fail_on}")
        return [f"scored {item}" for item in items]


async def until(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.002)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 10))


def test_batches_form_up_to_max_batch_and_results_keep_order():
    process, sizes = Recorder(), []

    async def main():
        batcher = DynamicBatcher(process, max_batch=4, max_wait_ms=200, max_queue=100,
                                 on_batch=lambda size, seconds: sizes.append(size))
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.stop()
        return results

    assert run(main()) == [f"scored {i}" for i in range(10)]
    assert process.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert sizes == [4, 4, 2]


def test_lone_item_waits_about_max_wait_for_company():
    process, hook = Recorder(), []

    async def main():
        batcher = DynamicBatcher(process, 8, max_wait_ms=100, max_queue=10, on_batch=lambda *a: hook.append(a))
        await batcher.start()
        started = time.monotonic()
        result = await batcher.submit("a")
        waited = time.monotonic() - started
        await batcher.stop()
        return result, waited

    result, waited = run(main())
    assert result == "scored a" and waited >= 0.09
    assert len(hook) == 1 and hook[0][0] == 1 and hook[0][1] >= 0


def test_queue_full_is_immediate_and_bounded():
    process = Recorder(hold=True)

    async def main():
        batcher = DynamicBatcher(process, max_batch=1, max_wait_ms=0, max_queue=2)
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.submit("first"))
            await until(lambda: batcher.in_flight == 1)
            queued = [asyncio.create_task(batcher.submit(n)) for n in ("q1", "q2")]
            await until(lambda: batcher.queue_depth == 2)
            started = time.monotonic()
            with pytest.raises(QueueFull):
                await batcher.submit("one too many")
            assert time.monotonic() - started < 0.05 and batcher.queue_depth == 2
        finally:
            process.release.set()
        results = await asyncio.gather(first, *queued)
        await batcher.stop()
        return results

    assert run(main()) == ["scored first", "scored q1", "scored q2"]


def test_deadline_passing_in_the_queue_drops_the_item_unprocessed():
    process = Recorder()

    async def main():
        batcher = DynamicBatcher(process, max_batch=4, max_wait_ms=0, max_queue=10)
        await batcher.start()
        await batcher.submit("warm")  # a measured rate (fast): "late" below is admitted behind "first"
        process.release.clear()
        try:
            first = asyncio.create_task(batcher.submit("first"))
            await until(lambda: batcher.in_flight == 1)
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                await batcher.submit("late", deadline_s=0.3)
            assert time.monotonic() - started >= 0.29
            assert batcher.queue_depth == 0  # its slot is free again
            with pytest.raises(DeadlineExceeded):
                await batcher.submit("expired", deadline_s=0)
        finally:
            process.release.set()
        assert await first == "scored first"
        assert await batcher.submit("next") == "scored next"
        await batcher.stop()

    run(main())
    assert process.batches == [["warm"], ["first"], ["next"]]


def test_deadline_passing_during_processing_discards_the_result():
    process = Recorder(sleep=0.3)

    async def main():
        batcher = DynamicBatcher(process, max_batch=2, max_wait_ms=50, max_queue=10)
        await batcher.start()
        hurried = asyncio.create_task(batcher.submit("hurried", deadline_s=0.15))
        patient = asyncio.create_task(batcher.submit("patient"))
        with pytest.raises(DeadlineExceeded):
            await hurried
        assert batcher.in_flight == 2  # raised while process was still running
        assert await patient == "scored patient"
        await batcher.stop()

    run(main())
    assert process.batches == [["hurried", "patient"]]


def test_an_error_in_process_reaches_every_caller_of_the_batch():
    process = Recorder(fail_on="bad")

    async def main():
        batcher = DynamicBatcher(process, max_batch=3, max_wait_ms=100, max_queue=10)
        await batcher.start()
        outcomes = await asyncio.gather(*(batcher.submit(x) for x in ("ok", "bad", "fine")), return_exceptions=True)
        after = await batcher.submit("after")  # the batcher survives the failure
        await batcher.stop()
        return outcomes, after

    outcomes, after = run(main())
    assert all(isinstance(o, RuntimeError) and str(o) == "model failed on bad" for o in outcomes)
    assert after == "scored after"


def test_wrong_number_of_results_is_an_error_for_each_caller():
    async def main():
        batcher = DynamicBatcher(lambda items: items[:1], max_batch=2, max_wait_ms=100, max_queue=10)
        await batcher.start()
        outcomes = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
        await batcher.stop()
        return outcomes

    assert [str(o) for o in run(main())] == ["process returned 1 results for 2 items"] * 2


def test_stop_with_drain_finishes_queued_work_and_refuses_new():
    process = Recorder(hold=True)

    async def main():
        batcher = DynamicBatcher(process, max_batch=2, max_wait_ms=0, max_queue=10)
        await batcher.start()
        try:
            tasks = [asyncio.create_task(batcher.submit("first"))]
            await until(lambda: batcher.in_flight == 1)
            tasks += [asyncio.create_task(batcher.submit(n)) for n in ("a", "b", "c")]
            await until(lambda: batcher.queue_depth == 3)
            stopping = asyncio.create_task(batcher.stop(drain=True))
            await asyncio.sleep(0.01)
            with pytest.raises(ShuttingDown):
                await batcher.submit("too late")
            assert issubclass(ShuttingDown, QueueFull)  # the service answers 503 either way
            assert not stopping.done()
        finally:
            process.release.set()
        await stopping
        assert batcher.queue_depth == 0 and batcher.in_flight == 0
        return await asyncio.gather(*tasks)

    assert run(main()) == ["scored first", "scored a", "scored b", "scored c"]
    assert process.batches == [["first"], ["a", "b"], ["c"]]


def test_stop_without_drain_fails_queued_items_but_finishes_running_ones():
    process = Recorder(hold=True)

    async def main():
        batcher = DynamicBatcher(process, max_batch=1, max_wait_ms=0, max_queue=10)
        await batcher.start()
        try:
            running = asyncio.create_task(batcher.submit("running"))
            await until(lambda: batcher.in_flight == 1)
            queued = asyncio.create_task(batcher.submit("queued"))
            await until(lambda: batcher.queue_depth == 1)
            stopping = asyncio.create_task(batcher.stop(drain=False))
            with pytest.raises(ShuttingDown):
                await queued
        finally:
            process.release.set()
        await stopping
        assert await running == "scored running"

    run(main())
    assert process.batches == [["running"]]


def test_many_concurrent_callers_each_get_their_own_result():
    def process(items: list[int]) -> list[int]:
        time.sleep(0.002)
        return [item * item + 1 for item in items]

    sizes: list[int] = []

    async def caller(batcher, item):
        await asyncio.sleep(random.random() * 0.05)
        return item, await batcher.submit(item, deadline_s=5)

    async def main():
        batcher = DynamicBatcher(process, max_batch=8, max_wait_ms=5, max_queue=500, workers=2,
                                 on_batch=lambda size, seconds: sizes.append(size))
        await batcher.start()
        await batcher.submit(0)  # measures the rate: before that, nothing queues behind a running batch
        sizes.clear()
        pairs = await asyncio.gather(*(caller(batcher, i) for i in range(300)))
        await batcher.stop()
        return pairs

    pairs = run(main())
    assert all(result == item * item + 1 for item, result in pairs) and len(pairs) == 300
    assert sum(sizes) == 300 and max(sizes) <= 8 and max(sizes) > 1


def test_a_cancelled_caller_frees_its_queue_slot():
    process = Recorder(hold=True)

    async def main():
        batcher = DynamicBatcher(process, max_batch=1, max_wait_ms=0, max_queue=1)
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.submit("first"))
            await until(lambda: batcher.in_flight == 1)
            gone = asyncio.create_task(batcher.submit("gone"))
            await until(lambda: batcher.queue_depth == 1)
            gone.cancel()
            await asyncio.sleep(0)
            await until(lambda: batcher.queue_depth == 0)
            kept = asyncio.create_task(batcher.submit("kept"))  # room again
            await until(lambda: batcher.queue_depth == 1)
        finally:
            process.release.set()
        assert await asyncio.gather(first, kept) == ["scored first", "scored kept"]
        await batcher.stop()

    run(main())
    assert process.batches == [["first"], ["kept"]]


def test_submit_before_start_and_a_failing_hook():
    def broken_hook(size, seconds):
        raise ZeroDivisionError

    async def main():
        batcher = DynamicBatcher(Recorder(), 2, 0, 4, on_batch=broken_hook)
        with pytest.raises(ShuttingDown):
            await batcher.submit(1)
        await batcher.start()
        with pytest.raises(RuntimeError):
            await batcher.start()
        assert await batcher.submit(1) == "scored 1"  # the hook's error is logged, not raised
        await batcher.stop()
        await batcher.stop()  # twice is harmless

    run(main())


@pytest.mark.parametrize("kwargs, word", [
    ({"process": None}, "process"), ({"max_batch": 0}, "max_batch"), ({"max_batch": 2.5}, "max_batch"),
    ({"max_batch": True}, "max_batch"), ({"max_queue": 0}, "max_queue"), ({"workers": 0}, "workers"),
    ({"max_wait_ms": -1}, "max_wait_ms"), ({"max_wait_ms": float("nan")}, "max_wait_ms"),
    ({"max_wait_ms": float("inf")}, "max_wait_ms"), ({"on_batch": 3}, "on_batch"),
    ({"headroom": 1}, "headroom"), ({"headroom": -0.1}, "headroom"),
])
def test_constructor_rejects_bad_arguments(kwargs, word):
    args = {"process": Recorder(), "max_batch": 4, "max_wait_ms": 5, "max_queue": 10, **kwargs}
    with pytest.raises(ValueError, match=word):
        DynamicBatcher(**args)

