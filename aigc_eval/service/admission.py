"""Deadline-aware admission: how long would new items take, from the service rate measured on recent batches?

The batcher admits a request only when its items are expected to be done within the request's
deadline, with headroom; otherwise it answers 503 at once (QueueFull) with a Retry-After
computed from the expected drain time. The expectation is a small simulation of the batcher
itself (`expected_finish`): each running batch ends when its items are done at the measured
seconds per item, queued items leave in batches of up to max_batch as workers free up, and the
new items are in the last batch. The rate is measured, not assumed, so it follows the machine
when it slows down (a flood of rejected requests takes CPU from the models; so do neighbours).
"""

from __future__ import annotations

import heapq
import math
from typing import Sequence

# Admit when the expected finish is within two thirds of the deadline: under a 256-connection
# flood on 2 busy cores, batches of the same size took from 10 to 18.5 s (bench_service).
DEFAULT_HEADROOM = 1 / 3
DEFAULT_ALPHA = 0.3  # weight of the newest batch in the moving average


class ServiceRate:
    """An exponentially weighted moving average of a batch's wall seconds per item, with every
    worker busy (the batcher scales a batch that ran with fewer batches beside it).

    A batch's seconds include its fetches, decodes and both models, and whatever slowed them
    (other load on the machine, a flood of requests to refuse), which is what a queued item
    will meet too."""

    def __init__(self, alpha: float = DEFAULT_ALPHA):
        """Raises ValueError unless 0 < alpha <= 1."""
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        self.alpha = alpha
        self.seconds_per_item: float | None = None  # None until a batch has been measured

    def record(self, items: int, seconds: float) -> None:
        """Add one finished batch of `items` items that took `seconds` (ignored when empty)."""
        if items < 1 or not math.isfinite(seconds) or seconds < 0:
            return
        sample = seconds / items
        previous = self.seconds_per_item
        self.seconds_per_item = sample if previous is None else previous + self.alpha * (sample - previous)

    def current(self, running: Sequence[tuple[int, float]]) -> float | None:
        """Seconds per item now: the average, raised to what a running batch has already shown
        when it is slower (it has been running `elapsed` seconds for its `items` items), so a
        slowdown counts before the batch that shows it ends. None when nothing is known yet."""
        shown = [elapsed / items for items, elapsed in running if items > 0]
        known = [value for value in (self.seconds_per_item, *shown) if value is not None]
        return max(known) if known else None


def expected_finish(seconds_per_item: float, running: Sequence[tuple[int, float]], queued: int, new: int,
                    max_batch: int, workers: int, max_wait_s: float = 0.0) -> float:
    """Seconds from now until the last of `new` items, queued behind `queued` others, is done.

    Each of the `running` batches (items, seconds elapsed) holds a worker until its items are
    done at `seconds_per_item`; the other workers are free now. Queued items, then the new ones,
    leave in batches of up to `max_batch` on the first free worker, each batch taking
    items x seconds_per_item (plus `max_wait_s` for a batch to form): the seconds per item of a
    busy service, so the estimate errs long when workers are idle. With `new` 0, the time
    until the work now queued and running is done: the drain time."""
    free = [max(0.0, items * seconds_per_item - elapsed) for items, elapsed in running][:workers]
    free += [0.0] * (workers - len(free))
    heapq.heapify(free)
    finish = max(free, default=0.0)
    left = queued + new
    while left > 0:
        size = min(max_batch, left)
        left -= size
        finish = heapq.heappop(free) + max_wait_s + size * seconds_per_item
        heapq.heappush(free, finish)
    return finish if new > 0 else max(free, default=0.0)


def retry_after_s(drain_s: float | None, ceiling_s: float) -> int:
    """Retry-After in whole seconds: the drain time rounded up, at least 1, at most `ceiling_s`
    rounded up (a stalled estimate must not send callers away for minutes); 1 when unknown."""
    if drain_s is None or not math.isfinite(drain_s):
        return 1
    return int(max(1, min(math.ceil(drain_s), math.ceil(ceiling_s))))
