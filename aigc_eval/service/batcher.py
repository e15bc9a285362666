"""Gathering concurrent requests into model batches, with a bounded queue and deadlines.

Callers `await submit_many(items)` (or `submit(item)`) from the event loop; one collector task
takes up to `max_batch` queued items once a worker thread is free, waiting at most
`max_wait_ms` after the first of them for more, and runs the blocking `process(items)` in a
thread. Admission is bounded twice, and refused at once with `QueueFull`: by `max_queue`
items waiting, and by the deadline, when the items are not expected to be done within it
(admission.py: the measured seconds per item, the work queued ahead and running). So overload
turns into fast 503s rather than memory growth and late answers (504s).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Sequence, TypeVar

from aigc_eval.service.admission import (
    DEFAULT_HEADROOM,
    ServiceRate,
    expected_finish,
    retry_after_s,
)

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


class QueueFull(Exception):
    """No room: max_queue items wait already, or the items would not be done within their
    deadline. The service answers 503 with Retry-After: `retry_after_s`, whole seconds."""

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ShuttingDown(QueueFull):
    """The batcher is stopping (or was never started) and takes no new items; also a 503."""


class DeadlineExceeded(Exception):
    """The item's deadline passed before its result was ready; the service answers 504."""


@dataclass(eq=False)  # identity equality: deque.remove must find this very entry
class _Entry:
    item: Any
    future: asyncio.Future
    enqueued: float
    deadline: float | None = field(default=None)


class DynamicBatcher(Generic[T, R]):
    """Batches `submit`ted items for `process`, a blocking list -> list function (same length,
    same order) run in `workers` threads. `on_batch(size, seconds)` is called after each batch.
    A submission with a deadline is admitted only when its items are expected to be done within
    (1 - `headroom`) of it, at the seconds per item measured on recent batches."""

    def __init__(self, process: Callable[[list[T]], list[R]], max_batch: int, max_wait_ms: float,
                 max_queue: int, workers: int = 1, on_batch: Callable[[int, float], None] | None = None,
                 headroom: float = DEFAULT_HEADROOM):
        """Raises ValueError for a non-callable process or a size/time out of range."""
        if not callable(process):
            raise ValueError(f"process must be callable, got {type(process).__name__}")
        for name, value in (("max_batch", max_batch), ("max_queue", max_queue), ("workers", workers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, (int, float)) \
                or not math.isfinite(max_wait_ms) or max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be a finite number >= 0, got {max_wait_ms!r}")
        if on_batch is not None and not callable(on_batch):
            raise ValueError("on_batch must be callable or None")
        if isinstance(headroom, bool) or not isinstance(headroom, (int, float)) or not 0 <= headroom < 1:
            raise ValueError(f"headroom must be a fraction in [0, 1), got {headroom!r}")
        self._process, self._on_batch = process, on_batch
        self.max_batch, self.max_wait, self.max_queue, self.workers = max_batch, max_wait_ms / 1000, max_queue, workers
        self.headroom, self.rate = headroom, ServiceRate()
        self._queue: deque[_Entry] = deque()
        self._in_flight = 0
        self._running: dict[int, tuple[int, float]] = {}  # id(batch) -> (items, monotonic start)
        self._accepting = False
        self._wakeup: asyncio.Event | None = None
        self._free: asyncio.Semaphore | None = None
        self._collector: asyncio.Task | None = None
        self._batches: set[asyncio.Task] = set()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def queue_depth(self) -> int:
        """Items waiting for a batch (never more than max_queue)."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Items inside a running `process` call."""
        return self._in_flight

    async def start(self) -> None:
        """Start the collector in the running loop; raises RuntimeError if already started."""
        if self._collector is not None:
            raise RuntimeError("DynamicBatcher.start() called twice")
        self._wakeup, self._free = asyncio.Event(), asyncio.Semaphore(self.workers)
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="batcher")
        self._accepting = True
        self._collector = asyncio.create_task(self._collect(), name="batcher-collector")

    def _running_batches(self) -> list[tuple[int, float]]:
        now = time.monotonic()
        return [(items, now - started) for items, started in self._running.values()]

    def expected_s(self, count: int) -> float | None:
        """Seconds until `count` items submitted now would be done (0: until the work queued
        and running is done); None before any batch has run to measure the rate."""
        running = self._running_batches()
        per_item = self.rate.current(running)
        if per_item is None:
            return None
        return expected_finish(per_item, running, len(self._queue), count, self.max_batch, self.workers, self.max_wait)

    def retry_after_s(self, ceiling_s: float) -> int:
        """Whole seconds until the work now queued and running is expected done (at least 1,
        at most `ceiling_s` rounded up; 1 before the rate is known): the 503's Retry-After."""
        return retry_after_s(self.expected_s(0), ceiling_s)

    def check(self, count: int, deadline_s: float | None = None) -> None:
        """Raise what `submit_many` would raise for `count` items before queueing them:
        ShuttingDown, or QueueFull (its retry_after_s set) when they would pass max_queue or
        are not expected to be done within (1 - headroom) x `deadline_s`. Cheap: the service
        calls it before reading a request's body. Items that would be the only work (nothing
        running, and they fit in one batch with what is queued) are always admitted: however
        slow recent batches were, an idle service must try, and its batches keep the rate current.
        Before any batch has ended, only such items are admitted: the first batches of a service
        started into a flood run several times slower than usual, and nobody knows how much."""
        if not self._accepting:
            raise ShuttingDown("the batcher is not accepting items (not started, or stopping)")
        ceiling = deadline_s if deadline_s is not None else 60.0
        if len(self._queue) + count > self.max_queue:
            raise QueueFull(f"{len(self._queue)} items are queued already (max_queue {self.max_queue})",
                            self.retry_after_s(ceiling))
        if deadline_s is None or deadline_s <= 0:
            return
        if not self._running and len(self._queue) + count <= self.max_batch:
            return  # nothing else to wait for: refusing them would only leave the workers idle
        if self.rate.seconds_per_item is None:  # no batch has ended: nothing to estimate from
            raise QueueFull(f"no batch measured yet, and {self._in_flight} items are running", 1)
        expected = self.expected_s(count)
        if expected is not None and expected > (1 - self.headroom) * deadline_s:
            raise QueueFull(f"{count} more items would take about {expected:.1f}s, more than the deadline allows "
                            f"({len(self._queue)} queued, {self._in_flight} running)", self.retry_after_s(ceiling))

    async def submit(self, item: T, deadline_s: float | None = None) -> R:
        """`submit_many([item], deadline_s)`'s one result."""
        return (await self.submit_many([item], deadline_s))[0]

    async def submit_many(self, items: Sequence[T], deadline_s: float | None = None) -> list[R]:
        """The results of `process` for `items` (queued together, all or none), waiting at most
        `deadline_s` seconds from now.

        Raises ShuttingDown when not started or stopping, QueueFull as `check` does,
        DeadlineExceeded when the deadline passes first (queued items are dropped unprocessed;
        results that come later are discarded), or the first error `process` raised."""
        if not items:
            return []
        if deadline_s is not None and deadline_s <= 0:
            self.check(len(items))
            raise DeadlineExceeded("the deadline had passed before the items were queued")
        self.check(len(items), deadline_s)
        loop, now = asyncio.get_running_loop(), time.monotonic()
        entries = [_Entry(item, loop.create_future(), now, None if deadline_s is None else now + deadline_s)
                   for item in items]
        self._queue.extend(entries)  # no await since check(): nobody else was admitted meanwhile
        self._wakeup.set()  # type: ignore[union-attr]
        futures = [entry.future for entry in entries]
        try:
            # asyncio.wait cancels nothing on a timeout or when this caller is cancelled: the
            # shared batch goes on, and the finally below takes this caller's items out
            await asyncio.wait(futures, timeout=deadline_s, return_when=asyncio.FIRST_EXCEPTION)
            errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception()]
            if errors:
                raise errors[0]
            if not all(f.done() for f in futures):
                raise DeadlineExceeded(f"no result within {deadline_s:g}s")
            return [f.result() for f in futures]
        finally:
            for entry in entries:
                if not entry.future.done():  # timed out, cancelled or failed: free its queue slot now
                    entry.future.cancel()
                    self._drop(entry)

    def _drop(self, entry: _Entry) -> None:
        try:
            self._queue.remove(entry)
        except ValueError:
            pass  # already taken into a batch; the batch skips done futures

    async def stop(self, drain: bool = True) -> None:
        """Stop accepting items (submit raises ShuttingDown) and wait for the collector to end.

        With `drain`, queued items are still processed; without, they fail with ShuttingDown.
        Batches already in `process` always finish (a thread cannot be interrupted)."""
        self._accepting = False
        if self._collector is None:
            return
        if not drain:
            while self._queue:
                entry = self._queue.popleft()
                if not entry.future.done():
                    entry.future.set_exception(ShuttingDown("the batcher stopped before this item was processed"))
        self._wakeup.set()  # type: ignore[union-attr]
        await self._collector
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        self._executor.shutdown(wait=False)  # type: ignore[union-attr]

    async def _wait(self, timeout: float | None) -> None:
        """Sleep until something is submitted or stop() is called, or `timeout` passes."""
        self._wakeup.clear()  # type: ignore[union-attr]
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)  # type: ignore[union-attr]
        except TimeoutError:
            pass

    async def _collect(self) -> None:
        """Form batches while running; after stop(), dispatch what is queued without waiting."""
        while True:
            await self._free.acquire()  # type: ignore[union-attr]
            # Wait for a worker first: items that queued while all were busy then leave together.
            while not self._queue and self._accepting:
                await self._wait(None)
            if not self._queue:
                self._free.release()  # type: ignore[union-attr]
                return
            while len(self._queue) < self.max_batch and self._accepting:
                remaining = self._queue[0].enqueued + self.max_wait - time.monotonic() if self._queue else 0
                if remaining <= 0:
                    break
                await self._wait(remaining)
            batch = self._take_batch()
            if not batch:
                self._free.release()  # type: ignore[union-attr]
                continue
            task = asyncio.create_task(self._run(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    def _take_batch(self) -> list[_Entry]:
        """Up to max_batch live entries; those past their deadline fail with DeadlineExceeded."""
        batch: list[_Entry] = []
        now = time.monotonic()
        while self._queue and len(batch) < self.max_batch:
            entry = self._queue.popleft()
            if entry.future.done():
                continue
            if entry.deadline is not None and entry.deadline <= now:
                entry.future.set_exception(DeadlineExceeded("the deadline passed while the item was queued"))
                continue
            batch.append(entry)
        return batch

    async def _run(self, batch: list[_Entry]) -> None:
        """Run one batch in a worker thread and hand each caller its result or the error."""
        self._in_flight += len(batch)
        self._running[id(batch)] = (len(batch), time.monotonic())
        sharing = len(self._running)  # batches running side by side, this one included
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            results = await loop.run_in_executor(self._executor, self._process, [e.item for e in batch])
            if not isinstance(results, (list, tuple)) or len(results) != len(batch):
                count = len(results) if isinstance(results, (list, tuple)) else type(results).__name__
                raise ValueError(f"process returned {count} results for {len(batch)} items")
            outcomes: list[tuple[Any, BaseException | None]] = [(r, None) for r in results]
        except Exception as exc:  # every caller of the batch gets the error, and the loop goes on
            outcomes = [(None, exc)] * len(batch)
        finally:
            self._in_flight -= len(batch)
            sharing = max(sharing, len(self._running))
            del self._running[id(batch)]
            self._free.release()  # type: ignore[union-attr]
            self._wakeup.set()  # type: ignore[union-attr]
        seconds = time.perf_counter() - started
        # As if every worker had been busy: batches side by side share the cores (and the model
        # lanes), so one that ran alone took about workers/sharing times less than under load.
        self.rate.record(len(batch), seconds * self.workers / sharing)
        for entry, (result, error) in zip(batch, outcomes):
            if entry.future.done():  # the caller's deadline passed meanwhile: result discarded
                continue
            if error is not None:
                entry.future.set_exception(error)
            else:
                entry.future.set_result(result)
        if self._on_batch is not None:
            try:
                self._on_batch(len(batch), seconds)
            except Exception:  # a metrics hook must not break scoring
                log.exception("on_batch hook failed")
