"""Gathering concurrent requests into model batches, with a bounded queue and deadlines.

Callers `await submit(item)` from the event loop; one collector task takes up to `max_batch`
queued items once a worker thread is free, waiting at most `max_wait_ms` after the first of
them for more, and runs the blocking `process(items)` in a thread. The queue is bounded
(`QueueFull` at once beyond `max_queue`), so overload turns into fast 503s rather than memory
growth and ever-later answers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue holds max_queue items already; the service answers 503 with Retry-After."""


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
    same order) run in `workers` threads. `on_batch(size, seconds)` is called after each batch."""

    def __init__(self, process: Callable[[list[T]], list[R]], max_batch: int, max_wait_ms: float,
                 max_queue: int, workers: int = 1, on_batch: Callable[[int, float], None] | None = None):
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
        self._process, self._on_batch = process, on_batch
        self.max_batch, self.max_wait, self.max_queue, self.workers = max_batch, max_wait_ms / 1000, max_queue, workers
        self._queue: deque[_Entry] = deque()
        self._in_flight = 0
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

    async def submit(self, item: T, deadline_s: float | None = None) -> R:
        """The result of `process` for `item`, waiting at most `deadline_s` seconds from now.

        Raises QueueFull when max_queue items wait already, ShuttingDown when not started or
        stopping, DeadlineExceeded when the deadline passes first (a queued item is dropped
        unprocessed; a result that comes later is discarded), or whatever `process` raised."""
        if not self._accepting:
            raise ShuttingDown("the batcher is not accepting items (not started, or stopping)")
        if len(self._queue) >= self.max_queue:
            raise QueueFull(f"{len(self._queue)} items are queued already (max_queue {self.max_queue})")
        now = time.monotonic()
        if deadline_s is not None and deadline_s <= 0:
            raise DeadlineExceeded("the deadline had passed before the item was queued")
        entry = _Entry(item, asyncio.get_running_loop().create_future(), now,
                       None if deadline_s is None else now + deadline_s)
        self._queue.append(entry)
        self._wakeup.set()  # type: ignore[union-attr]
        try:
            # shield: a timeout or cancellation of this caller must not cancel the shared batch
            return await asyncio.wait_for(asyncio.shield(entry.future), deadline_s)
        except TimeoutError:
            raise DeadlineExceeded(f"no result within {deadline_s:g}s") from None
        finally:
            if not entry.future.done():  # timed out or cancelled: free its queue slot now
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
            self._free.release()  # type: ignore[union-attr]
            self._wakeup.set()  # type: ignore[union-attr]
        seconds = time.perf_counter() - started
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
