"""From delivered messages to scored rows in the worker's shard, each FINished after its fsync.

StreamWorker is the listener's Collector (message ids already done are FINished without work,
malformed messages are dead-lettered, --max-messages, the stats), except that a flushed group of
messages is scored before it is written: the group waits in `waiting`, at most PIPELINE_DEPTH
batches are in the threads at once (one preparing images while the models work on the other),
and only when a batch's rows and logits are fsynced are its messages FINished, on the IOLoop.
A redelivered copy of a message in progress is FINished with it; an image id already in the
shard is not written again. A failed write or scoring REQueues the batch with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import nsq

from aigc_eval import columns as col
from aigc_eval.collection.collector import Collector, ListenerStats
from aigc_eval.collection.messages import FieldMapping
from aigc_eval.io.append_log import DeadLetterLog, OutputBroken
from aigc_eval.stream.scoring import BatchScorer, ScoredBatch
from aigc_eval.stream.shards import ShardStore

log = logging.getLogger("aigc_eval")

PIPELINE_DEPTH = 2  # batches in the threads at once: one being prepared while the models run the other


@dataclass
class StreamStats(ListenerStats):
    """The listener's counts plus images scored and results published."""

    images: int = 0  # rows written to the shard (`rows` counts the same)
    published: int = 0

    def line(self) -> str:
        return (f"{self.messages} messages: {self.written} scored as {self.images} images, {self.duplicates} already "
                f"done, {self.dead_letters} dead-lettered, {self.requeued} requeued; {self.published} results published")


@dataclass
class _Job:
    """One message being scored, with any redelivered copies to FINish with it."""

    message: nsq.Message
    message_id: str
    rows: list[dict[str, str]]
    copies: list[nsq.Message] = field(default_factory=list)

    def messages(self) -> list[nsq.Message]:
        return [self.message, *self.copies]


class StreamWorker(Collector):
    """See the module docstring. Every method but `_score_and_write` runs on the event loop."""

    def __init__(self, store: ShardStore, dead_log: DeadLetterLog, done_ids: set[str], scorer: BatchScorer, *,
                 mapping: FieldMapping, max_in_flight: int, max_tries: int, max_messages: int | None,
                 batch_size: int, requeue_delay: int):
        super().__init__(store.csv_log, dead_log, done_ids, mapping=mapping, max_in_flight=max_in_flight,
                         max_tries=max_tries, max_messages=max_messages)
        self.store, self.scorer, self.batch_size, self.requeue_delay = store, scorer, batch_size, requeue_delay
        self.stats = StreamStats()
        self.written_ids = store.done_image_ids()  # touched only by the writing thread
        self.waiting: list[_Job] = []
        self.running: list[list[_Job]] = []
        self.on_written = lambda rows: None  # set by the runner: publish the results
        self._prepare_pool = ThreadPoolExecutor(1, thread_name_prefix="stream-prepare")
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="stream-write")

    @property
    def busy(self) -> bool:
        """Messages accepted but not yet FINished or REQueued."""
        return bool(self.batch or self.waiting or self.running)

    def in_progress(self) -> list[nsq.Message]:
        jobs = self.waiting + [job for batch in self.running for job in batch]
        return [m for job in jobs for m in job.messages()] + [item.message for item in self.batch]

    def handle(self, message: nsq.Message) -> bool | None:
        """pynsq's handler: the Collector's, but a copy of a message being scored joins it."""
        message_id = message.id.decode("ascii", "replace")
        if self.stop_requested.is_set():  # stopping: not ours to start; back to the queue at once
            message.requeue(backoff=False, delay=0)
            return None
        for job in self.waiting + [job for batch in self.running for job in batch]:
            if job.message_id == message_id:
                message.enable_async()
                job.copies.append(message)
                self.stats.duplicates += 1
                return None
        return super().handle(message)

    def flush(self) -> None:
        """Move the messages gathered by Collector.handle to `waiting` (their rows are not written
        here: scoring comes first) and start batches."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        gathered, self.batch = self.batch, []
        for item in gathered:
            if not item.rows:  # a copy of a message gathered with it (Collector.handle)
                next(job for job in self.waiting if job.message_id == item.message_id).copies.append(item.message)
                continue
            for row in item.rows:
                row[col.REQUEST_ID] = row[col.ID].rsplit("_", 1)[0]
            self.waiting.append(_Job(item.message, item.message_id, item.rows))
        self.schedule()

    def schedule(self) -> None:
        """Start batches (whole messages, up to --batch-size images) while fewer than PIPELINE_DEPTH run."""
        while self.waiting and len(self.running) < PIPELINE_DEPTH and not self.fatal:
            if not self.running:
                self.scorer.forget_prompts()  # safe: no batch uses the text embeddings now
            taken, images = 0, 0
            while taken < len(self.waiting) and (taken == 0 or images + len(self.waiting[taken].rows) <= self.batch_size):
                images += len(self.waiting[taken].rows)
                taken += 1
            jobs, self.waiting = self.waiting[:taken], self.waiting[taken:]
            self.running.append(jobs)
            asyncio.get_running_loop().create_task(self._run(jobs))

    def requeue_waiting(self) -> None:
        """On stopping: what has not started goes back to nsqd at once, for another worker."""
        self.flush_gathered_only()
        for job in self.waiting:
            for message in job.messages():
                message.requeue(backoff=False, delay=0)
            self.accepted -= 1
            self.stats.requeued += 1
        self.waiting = []

    def flush_gathered_only(self) -> None:
        gathered, self.batch = self.batch, []
        for item in gathered:
            item.message.requeue(backoff=False, delay=0)
            self.accepted -= 1 if item.rows else 0

    async def _run(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        rows = [row for job in jobs for row in job.rows]
        try:
            finish = await loop.run_in_executor(self._prepare_pool, self.scorer.submit, rows)
            written = await loop.run_in_executor(self._write_pool, self._score_and_write, finish)
        except Exception as exc:  # noqa: BLE001 (scoring or writing failed: the messages come back)
            if isinstance(exc, OutputBroken):
                self._fail(exc)
            else:
                log.warning("could not score or write %d images (%s); requeued %d messages with backoff",
                            len(rows), getattr(exc, "strerror", None) or exc, len(jobs))
            for job in jobs:
                for message in job.messages():
                    if not message.has_responded():
                        message.requeue(backoff=not self.fatal, delay=-1 if not self.fatal else 0)
            self.accepted -= len(jobs)
            self.stats.requeued += len(jobs)
        else:
            for job in jobs:
                for message in job.messages():
                    if not message.has_responded():
                        message.finish()
                self.done_ids.add(job.message_id)
                self.stats.written += 1
                self._acknowledged(already_accepted=True)
            self.stats.images += len(written)
            self.stats.rows += len(written)
            self.on_written(written)
        finally:
            self.running.remove(jobs)
            self.schedule()

    def _score_and_write(self, finish) -> list[dict[str, str]]:
        """In the writing thread: wait for the models, then append rows and logits with one fsync each.
        Images already in the shard (a message published twice) are not written again."""
        scored: ScoredBatch = finish()
        fresh = [(row, logits) for row, logits in scored if row[col.ID] not in self.written_ids]
        if len(fresh) < len(scored):
            log.info("%d images already in %s: not written again", len(scored) - len(fresh), self.store.paths.shard)
        self.store.append([row for row, _ in fresh], [(str(row[col.ID]), t) for row, t in fresh if t is not None])
        self.written_ids.update(str(row[col.ID]) for row, _ in fresh)
        return [{k: "" if v is None else str(v) for k, v in row.items()} for row, _ in fresh]

    def close(self) -> None:
        self._prepare_pool.shutdown(wait=True, cancel_futures=True)
        self._write_pool.shutdown(wait=True, cancel_futures=True)
