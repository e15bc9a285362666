"""The stream worker's batching without models: messages are prepared as they arrive, while the
models run earlier batches; batches fill while the lanes are busy and go at once when they are
idle; nothing is FINished before its rows are on disk; a stop gives back what was not started.

A fake scorer stands in for BatchScorer: its `prepare` records which messages it was given and
when, and each batch's model work waits for the test to release it.
"""

from __future__ import annotations

import asyncio
import json
import threading

import nsq
import pytest

from aigc_eval import columns as col
from aigc_eval.collection.messages import FieldMapping
from aigc_eval.io.append_log import DeadLetterLog
from aigc_eval.scoring.image_pipeline import PreparedRow
from aigc_eval.stream.shards import SHARD_COLUMNS, ShardPaths, ShardStore, read_shard
from aigc_eval.stream.worker import StreamWorker


class FakeScorer:
    """BatchScorer's interface; `release(i)` lets the i-th batch's models finish."""

    def __init__(self) -> None:
        self.prepared: list[list[str]] = []  # request ids of each prepare() call, in order
        self.batches: list[list[str]] = []  # image ids of each submit(), in order
        self.threads: set[str] = set()  # where prepare() and submit() ran
        self.models_done: list[threading.Event] = []
        self.gates: dict[str, threading.Event] = {}  # request id -> its preparation waits for this
        self.lock = threading.Lock()

    def prepare(self, groups, on_ready) -> None:
        with self.lock:
            self.prepared.append([row[col.REQUEST_ID] for group in groups for row in group])
            self.threads.add(threading.current_thread().name)
        for index, group in enumerate(groups):
            gate = self.gates.get(group[0][col.REQUEST_ID])
            assert gate is None or gate.wait(10), "the test never opened this gate"
            on_ready(index, [PreparedRow(row) for row in group])

    def submit(self, prepared: list[PreparedRow]):
        done = threading.Event()
        with self.lock:
            self.batches.append([item.row[col.ID] for item in prepared])
            self.threads.add(threading.current_thread().name)
            self.models_done.append(done)

        def finish():
            assert done.wait(10), "the test never released this batch"
            return [({**{name: "" for name in SHARD_COLUMNS}, **item.row, col.STATUS: col.STATUS_OK}, None)
                    for item in prepared]

        return finish

    def forget_prompts(self) -> None:
        pass

    def release(self, index: int) -> None:
        self.models_done[index].set()


def message(i: int) -> nsq.Message:
    body = json.dumps({"request_id": f"r-{i}", "prompt": "蛋糕", "image_url": f"https://g/{i}.png"}).encode()
    return nsq.Message(f"{i:016x}".encode(), body, 1_700_000_000_000_000_000, 1)


@pytest.fixture
def worker(tmp_path):
    paths = ShardPaths(tmp_path, "w")
    store = ShardStore(paths)
    dead_log, _ = DeadLetterLog.open(paths.dead_letter, col.KEY_DL_MESSAGE_ID)
    scorer = FakeScorer()
    worker = StreamWorker(store, dead_log, set(), scorer, mapping=FieldMapping(), max_in_flight=8, max_tries=5,
                          max_messages=None, batch_size=2, requeue_delay=0)
    yield worker, scorer, paths
    worker.close()
    store.close()
    dead_log.close()


async def until(predicate, timeout: float = 5.0) -> None:
    """Let the loop and the worker's threads run until `predicate()` holds."""
    for _ in range(int(timeout / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out")


def test_messages_are_prepared_while_the_models_run_and_batches_fill(worker):
    worker, scorer, paths = worker
    messages = [message(i) for i in range(6)]

    async def scenario() -> None:
        for m in messages[:2]:
            worker.handle(m)
        await until(lambda: len(scorer.batches) == 1)  # a full batch goes at once
        for m in messages[2:5]:
            worker.handle(m)
        # Prepared while batch 0's models still run; batch 1 queued behind it (full); the fifth
        # message waits to fill batch 2 rather than go alone while the lanes are busy.
        await until(lambda: len(scorer.batches) == 2 and sum(map(len, scorer.prepared)) == 5 and len(worker.ready) == 1)
        await asyncio.sleep(0.05)
        assert len(scorer.batches) == 2 and not any(m.has_responded() for m in messages)
        scorer.release(0)
        await until(lambda: all(m.has_responded() for m in messages[:2]))
        assert [row[col.ID] for row in read_shard(paths.shard)] == ["r-0_0", "r-1_0"]  # FIN only after the write
        assert len(scorer.batches) == 2  # batch 1's models still run: the fifth keeps waiting for a partner
        worker.handle(messages[5])
        await until(lambda: len(scorer.batches) == 3)
        scorer.release(1)
        scorer.release(2)
        await until(lambda: not worker.busy)

    asyncio.run(scenario())
    assert scorer.batches == [["r-0_0", "r-1_0"], ["r-2_0", "r-3_0"], ["r-4_0", "r-5_0"]]
    # Never on the event loop: without model lanes (a GPU, one CPU thread) submit runs the models.
    assert threading.main_thread().name not in scorer.threads
    assert all(m.has_responded() for m in messages) and worker.stats.written == 6 and worker.stats.batches == 3
    assert len(read_shard(paths.shard)) == 6


def test_a_partial_batch_goes_as_soon_as_the_lanes_run_dry(worker):
    worker, scorer, _ = worker
    messages = [message(i) for i in range(4)]

    async def scenario() -> None:
        worker.handle(messages[0])  # alone on an idle worker: scored at once
        await until(lambda: len(scorer.batches) == 1)
        worker.handle(messages[1])
        await until(lambda: len(worker.ready) == 1)
        await asyncio.sleep(0.05)
        assert len(scorer.batches) == 1
        scorer.release(0)  # the lanes run dry: the waiting message goes without a partner
        await until(lambda: len(scorer.batches) == 2)
        scorer.release(1)
        await until(lambda: not worker.busy)

    asyncio.run(scenario())
    assert scorer.batches == [["r-0_0"], ["r-1_0"]]


@pytest.mark.parametrize("slow", [False, True])
def test_idle_lanes_wait_for_messages_in_hand_at_most_fill_wait(worker, slow, monkeypatch):
    """Two messages gathered together, the second slow to fetch: idle lanes wait for it to make a
    full batch, but not longer than FILL_WAIT."""
    monkeypatch.setattr("aigc_eval.stream.worker.FILL_WAIT", 0.3)
    worker, scorer, _ = worker
    messages = [message(i) for i in range(2)]
    scorer.gates["r-1"] = threading.Event()

    async def scenario() -> None:
        for m in messages:
            worker.handle(m)
        await until(lambda: len(worker.ready) == 1 and len(worker.preparing) == 1)
        if slow:
            await until(lambda: len(scorer.batches) == 1, timeout=2)  # FILL_WAIT passed: the first goes alone
        else:
            await asyncio.sleep(0.1)
            assert not scorer.batches
        scorer.gates["r-1"].set()
        while worker.busy:
            for done in list(scorer.models_done):
                done.set()
            await asyncio.sleep(0.005)

    asyncio.run(scenario())
    assert scorer.batches == ([["r-0_0"], ["r-1_0"]] if slow else [["r-0_0", "r-1_0"]])


def test_stopping_gives_back_what_has_not_started_and_finishes_the_rest(worker):
    worker, scorer, paths = worker
    messages = [message(i) for i in range(3)]
    requeued = []
    for m in messages:
        m.on(nsq.event.REQUEUE, lambda message, **_: requeued.append(message.id))

    async def scenario() -> None:
        for m in messages:
            worker.handle(m)
        await until(lambda: len(scorer.batches) == 1 and len(worker.ready) == 1)
        worker.request_stop("test")
        worker.requeue_waiting()
        scorer.release(0)
        await until(lambda: not worker.busy)

    asyncio.run(scenario())
    assert requeued == [messages[2].id] and worker.stats.requeued == 1
    assert [row[col.ID] for row in read_shard(paths.shard)] == ["r-0_0", "r-1_0"]
    assert all(m.has_responded() for m in messages)
