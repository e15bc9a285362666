"""One stream worker's run: lock, open and repair its files, load the models, subscribe, score,
publish, and stop cleanly on a signal, --max-messages or --idle-timeout.

The NSQ side is the listener's (ListenerOptions, CollectingReader, the clean close); messages in
progress are TOUCHed every --msg-timeout / 3 so nsqd does not hand them to another worker while
the models work. On stopping: RDY 0, messages not yet started go back to nsqd at once, the
batches being scored are written and FINished, results are given a moment to be acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from aigc_eval import columns as col
from aigc_eval import log
from aigc_eval.collection.listener import (
    CollectingReader,
    ListenerOptions,
    _close_cleanly,
    connect_failures_in_one_line,
    stop_on_signals,
)
from aigc_eval.io.append_log import DeadLetterLog, OutputLock
from aigc_eval.scoring.core import ScoringCore
from aigc_eval.scoring.prompt_cleaning import CleaningOptions
from aigc_eval.stream.publish import SHARD_METRICS, Publisher, ResultSettings
from aigc_eval.stream.scoring import BatchScorer
from aigc_eval.stream.shards import ShardPaths, ShardStore
from aigc_eval.stream.worker import StreamStats, StreamWorker

PUBLISH_DRAIN_LIMIT = 3.0  # on stopping, seconds to wait for nsqd to acknowledge results in transit
PUMP_INTERVAL = 0.05


@dataclass(frozen=True)
class ScoringSettings:
    """What the scoring core is opened with (main.py's scoring flags)."""

    model_name: str
    model_dir: Path | None
    weights: Path | None
    runtime: object  # RuntimeOptions
    product: object | None = None  # ProductOptions; None: no product checks
    cleaning: CleaningOptions = field(default_factory=CleaningOptions)
    metrics: tuple[str, ...] | None = None  # None: every registered metric a shard carries

    def create_metrics(self) -> dict:
        """The metrics a worker runs: the chosen ones that a shard has columns for (CLIP, Inception
        and, with product checks, the product check), built for scoring."""
        from aigc_eval.metrics.registry import create_metrics, default_metric_names
        from aigc_eval.metrics.setup import MetricSetup

        names = [n for n in (self.metrics or default_metric_names()) if n in SHARD_METRICS
                 and (self.product is not None or n != "product")]
        setup = MetricSetup(runtime=self.runtime, model_name=self.model_name, model_dir=self.model_dir,  # type: ignore[arg-type]
                            weights=self.weights, product=self.product or MetricSetup().product)  # type: ignore[arg-type]
        return create_metrics(names, setup, explicit=self.metrics is not None)


@dataclass(frozen=True)
class StreamOptions:
    """Everything one worker run needs; the CLI builds it."""

    nsq: ListenerOptions  # output and dead_letter are filled in from `paths`
    paths: ShardPaths
    scoring: ScoringSettings
    results: ResultSettings = field(default_factory=ResultSettings)
    result_topic: str | None = None  # None: publish nothing
    result_addresses: tuple[str, ...] = ()
    msg_timeout: float = 60.0  # seconds, negotiated with nsqd; in-progress messages are TOUCHed at a third of it

    def checked(self) -> "StreamOptions":
        """These options with the NSQ ones checked and the shard's paths filled in; ValueError naming a bad one."""
        paths = self.paths
        nsq_options = replace(self.nsq, output=paths.shard, dead_letter=self.nsq.dead_letter or paths.dead_letter).checked()
        if self.result_topic is not None and not self.result_addresses:
            raise ValueError("publishing results needs an nsqd TCP address: give --result-nsqd-tcp-address "
                             "(or --nsqd-tcp-address), or --no-publish")
        if not 1.0 <= self.msg_timeout <= 900.0:
            raise ValueError(f"--msg-timeout must be between 1 and 900 seconds (nsqd's range), got {self.msg_timeout:g}")
        return replace(self, nsq=nsq_options)


async def _watch(worker: StreamWorker, options: StreamOptions, publisher: Publisher | None) -> None:
    """Progress lines, TOUCHes, publish retries and the --idle-timeout check."""
    nsq_options = options.nsq
    next_progress = time.monotonic() + nsq_options.progress_interval
    next_touch = time.monotonic() + options.msg_timeout / 3
    while True:
        await asyncio.sleep(PUMP_INTERVAL)
        now = time.monotonic()
        if publisher is not None:
            publisher.pump()
            worker.stats.published = publisher.published
        if now >= next_touch:
            for message in worker.in_progress():
                if not message.has_responded():
                    message.touch()
            next_touch = now + options.msg_timeout / 3
        if now >= next_progress:
            log.info("progress: %s", worker.stats.line())
            next_progress = now + nsq_options.progress_interval
        idle = nsq_options.idle_timeout
        if idle is not None and not worker.busy and now - worker.last_message_at >= idle:
            worker.request_stop(f"no message for {idle:g} s (--idle-timeout)")


async def _serve(options: StreamOptions, worker: StreamWorker, store: ShardStore, handle_signals: bool) -> None:
    with stop_on_signals(worker.request_stop, handle_signals):
        await _serve_until_stopped(options, worker, store)


async def _serve_until_stopped(options: StreamOptions, worker: StreamWorker, store: ShardStore) -> None:
    n = options.nsq
    publisher = None
    if options.result_topic is not None:
        publisher = Publisher(options.result_addresses, options.result_topic, options.results, store.mark_published,
                              reconnect_delay=n.reconnect_delay)
        worker.on_written = publisher.add
        unpublished = store.unpublished()
        if unpublished:
            log.info("%d results on disk were never acknowledged by nsqd: publishing them again", len(unpublished))
            publisher.add(unpublished)
    # Built inside the running loop: pynsq takes IOLoop.current() (nsqio/pynsq#255).
    reader = CollectingReader(
        worker, n.reconnect_delay, topic=n.topic, channel=n.channel, nsqd_tcp_addresses=list(n.nsqd_tcp_addresses),
        lookupd_http_addresses=list(n.lookupd_http_addresses), max_in_flight=n.max_in_flight, max_tries=n.max_tries,
        requeue_delay=n.requeue_delay, msg_timeout=options.msg_timeout,
    )
    watcher = asyncio.create_task(_watch(worker, options, publisher))
    try:
        await worker.stop_requested.wait()
        reader.set_max_in_flight(0)  # RDY 0: nsqd sends nothing new
        await asyncio.sleep(0.05)  # what was in transit arrives and is requeued by handle()
        worker.requeue_waiting()
        while worker.busy:  # batches being scored are written and FINished; what is being prepared goes back
            await asyncio.sleep(0.02)
        if publisher is not None:
            started = time.monotonic()
            while publisher.pending and time.monotonic() - started < PUBLISH_DRAIN_LIMIT:
                await asyncio.sleep(0.02)
            if publisher.pending:
                log.warning("%d results not acknowledged yet: published again at the next start", publisher.pending)
        if publisher is not None:
            worker.stats.published = publisher.published
            await publisher.close()
        await _close_cleanly(reader)
    finally:
        watcher.cancel()


def run_stream(options: StreamOptions, handle_signals: bool = True) -> StreamStats:
    """Score until a signal, --max-messages or --idle-timeout stops it; returns this run's counts.

    Raises OutputLocked when another worker of this name writes the same folder, InputError for
    a shard that is not a stream shard, WeightsMissingError, ValueError for bad options.
    """
    options = options.checked()
    s = options.scoring
    with OutputLock(options.paths.shard):
        store = ShardStore(options.paths)
        dead_log, dead_ids = DeadLetterLog.open(options.nsq.dead_letter, col.KEY_DL_MESSAGE_ID)
        try:
            log.info("%s: %d images from %d messages already there; %d dead letters", options.paths.shard,
                     len(store.rows), len(store.done_message_ids()), len(dead_ids))
            if options.nsq.max_in_flight < 2 * s.runtime.batch_size:
                log.warning("--max-in-flight %d is under twice --batch-size %d: a batch cannot fill while the models "
                            "run the one before it", options.nsq.max_in_flight, s.runtime.batch_size)
            with ScoringCore.open(s.create_metrics(), s.runtime) as core:  # type: ignore[arg-type]
                scorer = BatchScorer(core, s.cleaning, options.paths.worker)
                scorer.warm_up()
                worker = StreamWorker(store, dead_log, store.done_message_ids() | set(dead_ids), scorer,
                                      mapping=options.nsq.mapping, max_in_flight=options.nsq.max_in_flight,
                                      max_tries=options.nsq.max_tries, max_messages=options.nsq.max_messages,
                                      batch_size=s.runtime.batch_size, requeue_delay=options.nsq.requeue_delay)
                try:
                    with connect_failures_in_one_line():
                        asyncio.run(_serve(options, worker, store, handle_signals))
                finally:
                    worker.close()
        finally:
            store.close()
            dead_log.close()
    log.info("stopped (%s): %s", worker.stats.stop_reason, worker.stats.line())
    if worker.fatal:
        raise worker.fatal
    return worker.stats
