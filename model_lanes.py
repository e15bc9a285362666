"""Running the two models side by side, each in a lane (a thread) with its share of the CPU threads.

With both models on all cores, one after the other, every operator ends at a barrier where
the model's threads wait for each other; when a fetch or decode worker takes a core, the
other model thread spins at that barrier. In lanes, each model runs single-threaded on 2
cores (on N cores with about N/2 threads), nothing waits inside a batch, and the time the
faster lane leaves idle at the end of a batch goes to the workers. On the benchmark's
2-core machine, scoring 300 images in four alternating pairs took 18% less CPU time per image
this way and ran 9% faster; the models alone ran -2% to +11% faster (see README, Speed).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import torch


class ModelLanes:
    """`run(call_a, call_b)` runs each call in its own lane and returns their results in order.

    With `count` 1, on a CPU with fewer threads than lanes, or on a GPU, the calls run one
    after the other in the caller's thread, each with all threads.
    """

    def __init__(self, device: torch.device, count: int = 2):
        self._total = torch.get_num_threads()
        self.threads: list[int] = []
        self._lanes: list[ThreadPoolExecutor] = []
        if device.type == "cpu" and 1 < count <= self._total:
            # The first lane gets the odd thread: main.py puts CLIP, the heavier model, there.
            self.threads = [self._total // count + (1 if lane < self._total % count else 0) for lane in range(count)]
            self._lanes = [ThreadPoolExecutor(1, thread_name_prefix=f"model-lane-{lane}") for lane in range(count)]
            for lane, threads in zip(self._lanes, self.threads):
                lane.submit(_use_threads, threads).result()

    def run(self, *calls: Callable[[], Any]) -> list[Any]:
        """Each call's result, in order; the first exception raised by a call is raised here."""
        if not self._lanes:
            return [call() for call in calls]
        if len(calls) > len(self._lanes):
            raise ValueError(f"{len(calls)} calls for {len(self._lanes)} lanes")
        futures = [lane.submit(call) for lane, call in zip(self._lanes, calls)]
        return [future.result() for future in futures]

    def warm_up(self, lane: int, call: Callable[[], Any]) -> None:
        """Start `call` (loading lane `lane`'s model, say) in that lane now, without waiting for
        it, so that it overlaps the fetching of the first batch; the lane's later calls run
        after it. Its result and errors are dropped: a model that failed to load fails again,
        with its message, where it is used. Without lanes this does nothing and the model
        loads where it is first used: a thread of its own would keep its own malloc arena
        (640 MiB more at peak when tried)."""
        if self._lanes:
            self._lanes[lane].submit(call)

    def close(self) -> None:
        for lane in self._lanes:
            lane.shutdown(wait=True, cancel_futures=True)
        if self._lanes:
            torch.set_num_threads(self._total)  # also the default of new threads, and MKL's (process-wide)

    def __enter__(self) -> "ModelLanes":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _use_threads(count: int) -> None:
    """Set this thread's torch thread count. torch gives a thread the last count set anywhere
    when it first asks for its count, and would undo this one: so ask first."""
    torch.get_num_threads()
    torch.set_num_threads(count)
