"""Result messages on --result-topic: one JSON object per scored image, at least once.

A result is built from the image's shard row alone, so a restart can publish again exactly
what it would have published. Results are published (MPUB through pynsq's Writer) only after
the rows are fsynced and their messages FINished; nsqd's OK marks them in the published log.
A failed or unanswered MPUB is retried with backoff (1 s doubling to 60 s) while the worker
runs; what is still unmarked when it stops (or dies) is published again when a worker with
the same --worker-name starts. Downstream dedups on `id` (a result may come twice).

The total and the reasons come from metrics.decide, as the batch run's and the service's do.
The Inception term needs the batch's marginal, which a stream does not have, so the published
total leaves it out, as the service does without a reference marginal: (clip_weight *
clip_norm [+ product_weight * product_score]) / (clip_weight [+ product_weight]). main.py
--shards gives the batch total with the IS term.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Sequence

import nsq

from aigc_eval import columns as col
from aigc_eval.collection.listener import close_quietly
from aigc_eval.metrics.base import Metric, MetricResult
from aigc_eval.metrics.decide import DecisionSettings, decide, decision_settings
from aigc_eval.metrics.registry import create_metrics, default_metric_names
from aigc_eval.metrics.setup import MetricSetup
from aigc_eval.product import names as pn
from aigc_eval.scoring.metrics import DEFAULT_CLIP_CEILING

log = logging.getLogger("aigc_eval")

IS_TERM_OMITTED = "omitted: a stream has no batch marginal; main.py --shards adds it"
RETRY_FIRST, RETRY_MAX = 1.0, 60.0  # seconds between publish retries, doubling
MPUB_CHUNK = 100  # results per MPUB


SHARD_METRICS = ("clip", "inception", "product")  # the metrics a shard row has columns for


@dataclass(frozen=True)
class ResultSettings:
    """How a result message's total and regenerate reasons are computed (main.py's decision flags)."""

    weights: dict[str, float] = field(default_factory=dict)  # --weight NAME=W over the defaults
    thresholds: dict[str, str] = field(default_factory=dict)  # --threshold NAME.RULE=V over the defaults
    metrics: tuple[str, ...] | None = None
    clip_ceiling: float = DEFAULT_CLIP_CEILING

    def __post_init__(self) -> None:
        self.decision  # checks the names and values now, not at the first message

    @cached_property
    def templates(self) -> dict[str, Metric]:
        names = [n for n in (self.metrics or default_metric_names()) if n in SHARD_METRICS]
        return create_metrics(names, MetricSetup(clip_ceiling=self.clip_ceiling))

    @cached_property
    def decision(self) -> DecisionSettings:
        return decision_settings(self.templates, self.weights, self.thresholds)


def _integer(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float)) else None


def shard_results(row: dict[str, str], metrics: dict[str, Metric]) -> dict[str, MetricResult]:
    """The metrics' results of one shard row, each parsed by its metric: CLIP's status is the
    row's, Inception's ok unless the image failed, the product check's its own columns'. A cell
    that does not parse makes that metric's result an error (a message is still published)."""
    image_error = row.get(col.IMAGE_ERROR, "")
    sources = {"clip": (col.STATUS_ERROR, image_error) if image_error else (row.get(col.STATUS, ""), row.get(col.ERROR, "")),
               "inception": (col.STATUS_ERROR, image_error) if image_error else (col.STATUS_OK, ""),
               "product": (row.get(col.PRODUCT_STATUS, ""), row.get(col.PRODUCT_ERROR, ""))}
    results = {}
    for name, metric in metrics.items():
        if name not in sources or not sources[name][0]:
            continue
        try:
            results[name] = metric.from_text(row, *sources[name])
        except ValueError as exc:
            results[name] = MetricResult(col.STATUS_ERROR, f"unreadable shard row: {exc}")
    return results


def result_message(row: dict[str, str], settings: ResultSettings) -> dict[str, object]:
    """The JSON object published for one shard row; it carries the image URL (and category), so
    message_listener.py --map id=id can collect the result topic into a CSV (docs/streaming.md)."""
    results = shard_results(row, settings.templates)
    decision = decide(settings.templates, results, settings.decision, label=None)
    clip, inception = (results.get(n, MetricResult()).values for n in ("clip", "inception"))
    product = results.get("product")
    scores = {
        col.CLIP_SCORE: clip.get(col.CLIP_SCORE), col.PROMPT_TOKENS: _integer(clip.get(col.PROMPT_TOKENS)),
        col.TOP1_CLASS: _integer(inception.get(col.TOP1_CLASS)), col.TOP1_LABEL: inception.get(col.TOP1_LABEL) or None,
        col.TOP1_CONFIDENCE: inception.get(col.TOP1_CONFIDENCE),
        pn.PRODUCT_SCORE: product.values.get(pn.PRODUCT_SCORE) if product is not None and product.ok else None,
        pn.PRODUCT_ISSUES: [i for i in (row.get(pn.PRODUCT_ISSUES) or "").split(";") if i],
        col.PRODUCT_STATUS: row.get(col.PRODUCT_STATUS) or None,
    }
    return {
        col.KEY_RESULT_ID: row[col.ID], col.KEY_RESULT_REQUEST_ID: row.get(col.REQUEST_ID, ""),
        col.KEY_RESULT_IMAGE_URL: row.get(col.IMAGE_URL, ""), col.KEY_RESULT_CATEGORY: row.get(col.CATEGORY) or None,
        col.KEY_RESULT_WORKER: row.get(col.WORKER, ""), col.KEY_RESULT_STATUS: decision.status,
        col.KEY_RESULT_ERROR: decision.error, col.KEY_RESULT_SCORES: scores, col.KEY_RESULT_TOTAL: decision.total,
        col.KEY_RESULT_IS_TERM: IS_TERM_OMITTED, col.KEY_RESULT_REGENERATE: decision.regenerate,
        col.KEY_RESULT_NSQ_MESSAGE_ID: row.get(col.NSQ_MESSAGE_ID, ""), col.KEY_RESULT_SCORED_AT: row.get(col.SCORED_AT, ""),
    }


class Publisher:
    """Publishes result rows through an nsq.Writer on the IOLoop; calls `on_published(ids)` once
    nsqd acknowledged them. Create it inside the running loop (pynsq takes IOLoop.current())."""

    def __init__(self, addresses: Sequence[str], topic: str, settings: ResultSettings,
                 on_published: Callable[[list[str]], None], reconnect_delay: float = 15.0):
        self.topic, self.settings, self.on_published = topic, settings, on_published
        self.writer = nsq.Writer(list(addresses), reconnect_interval=reconnect_delay)
        self.queue: list[tuple[str, bytes]] = []
        self.sending = 0  # results in an MPUB not yet answered
        self.published = self.failures = 0
        self._retry_delay = RETRY_FIRST
        self._next_try = 0.0

    def add(self, rows: Sequence[dict[str, str]]) -> None:
        for row in rows:
            body = json.dumps(result_message(row, self.settings), ensure_ascii=False).encode("utf-8")
            self.queue.append((row[col.ID], body))
        self.pump()

    @property
    def pending(self) -> int:
        return len(self.queue) + self.sending

    def pump(self) -> None:
        """Send what is queued, unless a retry is waiting for its backoff; called again by a timer."""
        if self.sending or not self.queue or time.monotonic() < self._next_try:
            return
        chunk, self.queue = self.queue[:MPUB_CHUNK], self.queue[MPUB_CHUNK:]
        self.sending = len(chunk)
        self.writer.mpub(self.topic, [body for _, body in chunk], callback=lambda conn, data: self._done(chunk, data))

    def _done(self, chunk: list[tuple[str, bytes]], data: object) -> None:
        self.sending = 0
        if isinstance(data, nsq.Error) or data != b"OK":
            self.failures += 1
            self.queue[:0] = chunk  # first in line again, in order
            self._next_try = time.monotonic() + self._retry_delay
            log.warning("could not publish %d results to %s (%s); retrying in %.0f s", len(chunk), self.topic,
                        data, self._retry_delay)
            self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
            return
        self._retry_delay, self._next_try = RETRY_FIRST, 0.0
        self.published += len(chunk)
        self.on_published([image_id for image_id, _ in chunk])
        self.pump()

    async def close(self) -> None:
        """Close the writer's connections; pynsq's complaints about reads it had pending and the
        reconnect it plans mean nothing now."""
        def close_all() -> None:
            for conn in list(self.writer.conns.values()):
                conn.close()

        await close_quietly(close_all, "writer")
