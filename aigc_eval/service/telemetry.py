"""The service's Prometheus metrics, in a registry of its own (one per app, so tests can run several)."""

from __future__ import annotations

from typing import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """Requests by status, latency, batch sizes, queue depth, score-cache hits."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("aigc_eval_http_requests", "HTTP requests answered, by path and status",
                                ["path", "status"], registry=r)
        self.latency = Histogram("aigc_eval_http_request_seconds", "time to answer a request, by path",
                                 ["path"], buckets=LATENCY_BUCKETS, registry=r)
        self.items = Counter("aigc_eval_items", "items scored, by result status", ["status"], registry=r)
        self.batch_size = Histogram("aigc_eval_batch_size", "items per model batch", buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("aigc_eval_batch_seconds", "time to fetch, decode and score one batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("aigc_eval_queue_depth", "items waiting for a batch", registry=r)
        self.in_flight = Gauge("aigc_eval_items_in_flight", "items inside a running batch", registry=r)
        self.drain = Gauge("aigc_eval_drain_seconds", "expected seconds until the queued and running items are "
                           "done, at the measured rate (a 503's Retry-After, before rounding up)", registry=r)
        self.cache = Counter("aigc_eval_score_cache", "image features by model: reused from the score cache "
                             "or computed", ["model", "outcome"], registry=r)
        self._seen: dict[tuple[str, str], int] = {}

    def watch_queue(self, depth: Callable[[], int], in_flight: Callable[[], int], drain: Callable[[], float]) -> None:
        """Read the batcher's queue depth, in-flight count and expected drain time at each scrape."""
        self.queue_depth.set_function(depth)
        self.in_flight.set_function(in_flight)
        self.drain.set_function(drain)

    def count_cache(self, model: str, reused: int, computed: int) -> None:
        """Add what a scorer's running counters grew by since the last call."""
        for outcome, total in (("reused", reused), ("computed", computed)):
            grown = total - self._seen.get((model, outcome), 0)
            if grown > 0:
                self.cache.labels(model, outcome).inc(grown)
            self._seen[(model, outcome)] = total

    def exposition(self) -> bytes:
        """The text format for GET /metrics."""
        return generate_latest(self.registry)
