"""Sharing the models' work out to lanes: threads with their share of the CPU threads, fed from one queue.

Each model's batch is split into one slice per lane, and every lane takes the next task in
the queue, whichever model it is for: both cores always work on something, however unequal
the two models are, and as each lane runs its slices single-threaded on 2 cores (about N/2
threads each on N), no operator ends at a barrier where one core spins while a fetch or
decode worker holds the other. Tasks are queued a batch ahead (main.py submits a batch
before it collects the one before), so no lane waits at the end of a batch either.

On the 2-core benchmark machine without native bf16 (fp32 models), the models alone ran at
5.0-5.4 images/s this way, against 4.0-4.4 one after the other with all threads each, and
3.3-3.5 with one model per lane (CLIP, the heavier model, left the other lane idle two
thirds of the time); see README, Speed.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Iterator, Protocol, TypeVar

import torch

T = TypeVar("T")
B = TypeVar("B")


class Pending(Protocol[T]):
    """Work in a lane: `result()` waits for it and returns its value or raises its error."""

    def result(self) -> T: ...


class ModelLanes:
    """`submit(call, ...)` runs a call in the next free lane; `split(call, batch)` runs it on
    one slice of the batch per lane and joins the results.

    With `count` 1, on a CPU with fewer threads than lanes, or on a GPU, the calls run at once
    in the caller's thread, with all threads.
    """

    def __init__(self, device: torch.device, count: int = 2):
        self._total = torch.get_num_threads()
        self.threads: list[int] = []
        self._tasks: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._lanes: list[threading.Thread] = []
        if device.type == "cpu" and 1 < count <= self._total:
            self.threads = [self._total // count + (1 if lane < self._total % count else 0) for lane in range(count)]
            ready = threading.Barrier(count + 1)
            self._lanes = [threading.Thread(target=self._serve, args=(threads, ready), name=f"model-lane-{lane}",
                                            daemon=True) for lane, threads in enumerate(self.threads)]
            for lane in self._lanes:
                lane.start()
            ready.wait()  # every lane has set its thread count before anyone else sets one

    def _serve(self, threads: int, ready: threading.Barrier) -> None:
        _use_threads(threads)
        ready.wait()
        while (task := self._tasks.get()) is not None:
            future, call, args = task
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call(*args))
                except BaseException as exc:  # KeyboardInterrupt too: the caller raises it from result()
                    future.set_exception(exc)

    def submit(self, call: Callable[..., T], *args: Any) -> Future[T]:
        """Queue `call(*args)` for the next free lane; without lanes, run it now."""
        future: Future[T] = Future()
        if self._lanes:
            self._tasks.put((future, call, args))
        else:
            try:
                future.set_result(call(*args))
            except Exception as exc:
                future.set_exception(exc)
        return future

    def split(self, call: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor) -> Pending[torch.Tensor]:
        """`call` on one slice of `batch` (along its first dimension) per lane, all queued now;
        the pending result is their outputs concatenated, as `call(batch)` would return."""
        parts = [part for part in torch.tensor_split(batch, max(1, len(self._lanes))) if len(part)]
        return _Joined([self.submit(call, part) for part in parts])

    def warm_up(self, call: Callable[[], Any]) -> None:
        """Start `call` (loading a model, say) in a lane now, without waiting for it, so that it
        overlaps the fetching of the first batch. Its result and errors are dropped: a model that
        failed to load fails again, with its message, where it is used. Without lanes this does
        nothing and the model loads where it is first used: a thread of its own would keep its
        own malloc arena (640 MiB more at peak when tried)."""
        if self._lanes:
            self.submit(call)

    def close(self) -> None:
        """Cancel what has not started, wait for what has, and give new threads the caller's count again."""
        if not self._lanes:
            return
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task[0].cancel()
        for _ in self._lanes:
            self._tasks.put(None)
        for lane in self._lanes:
            lane.join()
        self._lanes = []
        torch.set_num_threads(self._total)  # also the default of new threads, and MKL's (process-wide)

    def __enter__(self) -> "ModelLanes":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def queued_ahead(batches: Iterable[B], submit: Callable[[B], Callable[[], T]]) -> Iterator[tuple[B, T]]:
    """(batch, result) for each batch, in order. `submit(batch)` queues the batch's work in the
    lanes and returns a function that waits for it and returns its result; each batch is
    submitted before the one before it is collected, so the lanes have the next batch's work
    while the caller writes results and waits for images."""
    in_flight: deque[tuple[B, Callable[[], T]]] = deque()
    for batch in batches:
        in_flight.append((batch, submit(batch)))
        if len(in_flight) > 1:
            done, finish = in_flight.popleft()
            yield done, finish()
    while in_flight:
        done, finish = in_flight.popleft()
        yield done, finish()


class _Joined:
    """The outputs of several pending slices, concatenated in order."""

    def __init__(self, parts: list[Future[torch.Tensor]]):
        self._parts = parts

    def result(self) -> torch.Tensor:
        return torch.cat([part.result() for part in self._parts])


def _use_threads(count: int) -> None:
    """Set this thread's torch thread count. torch gives a thread the last count set anywhere
    when it first asks for its count, and would undo this one: so ask first."""
    torch.get_num_threads()
    torch.set_num_threads(count)
