"""From delivered messages to scored rows in the worker's shard, each FINished after its fsync.

StreamWorker is the listener's Collector (message ids already done are FINished without work,
malformed messages are dead-lettered, --max-messages, the stats), except that a flushed group of
messages is scored before it is written. Each message (a _Job) goes through four lists, all
touched only on the event loop:

- `waiting`: gathered, for the preparing thread's next group;
- `preparing`: being fetched and decoded by the core's worker threads (ScoringCore.prepare, the
  machinery main.py --input uses) as soon as it arrives, while the models run earlier batches;
- `ready`: prepared; cut into a batch of up to --batch-size images and queued in the model
  lanes (ScoringCore.submit) when the batch is full, or when the lanes have nothing left to run
  (after the messages already in hand have joined it, for at most FILL_WAIT). Under load
  batches are full and of one shape; a message alone on an idle worker is scored at once;
- `running`: batches in the lanes or being written. At most PIPELINE_DEPTH have model work
  pending: one running and one queued behind it, as main.py's queued_ahead keeps them.

A batch is queued in the lanes from a thread of its own (without lanes, on a GPU or with one
CPU thread, that runs the models), waited for and written in the writing thread, and only when
its rows and logits are fsynced are its messages FINished, on the IOLoop. A
redelivered copy of a message in progress is FINished with it; an image id already in the
shard is not written again. A failed preparation, scoring or write REQueues the messages with
backoff.
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
from aigc_eval.scoring.image_pipeline import PreparedRow
from aigc_eval.stream.scoring import BatchScorer, Finish, ScoredBatch
from aigc_eval.stream.shards import ShardStore

log = logging.getLogger("aigc_eval")

PIPELINE_DEPTH = 2  # batches with model work pending: one running, one queued behind it
# Seconds idle lanes wait at most for messages already in hand (being fetched and decoded) to
# fill a batch. That takes as long as preparing a batch's images, 0.3-1.5 s on a busy 2-core
# machine; the limit only guards against fetches that hang.
FILL_WAIT = 2.0


@dataclass
class StreamStats(ListenerStats):
    """The listener's counts plus images scored and results published."""

    images: int = 0  # rows written to the shard (`rows` counts the same)
    published: int = 0
    batches: int = 0  # batches queued in the model lanes

    def line(self) -> str:
        return (f"{self.messages} messages: {self.written} scored as {self.images} images in {self.batches} batches, "
                f"{self.duplicates} already done, {self.dead_letters} dead-lettered, {self.requeued} requeued; "
                f"{self.published} results published")


@dataclass(eq=False)
class _Job:
    """One message being scored, with any redelivered copies to FINish with it."""

    message: nsq.Message
    message_id: str
    rows: list[dict[str, str]]
    copies: list[nsq.Message] = field(default_factory=list)
    prepared: list[PreparedRow] = field(default_factory=list)
    ready_at: float = 0.0  # the loop's time when its preparation ended

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
        self.preparing: list[_Job] = []
        self.ready: list[_Job] = []
        self.running: list[list[_Job]] = []
        self.models_pending = 0  # batches in `running` whose model work has not finished
        self._fill_timer: asyncio.TimerHandle | None = None
        self.on_written = lambda rows: None  # set by the runner: publish the results
        self._prepare_pool = ThreadPoolExecutor(1, thread_name_prefix="stream-prepare")
        self._submit_pool = ThreadPoolExecutor(1, thread_name_prefix="stream-submit")
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="stream-write")

    @property
    def busy(self) -> bool:
        """Messages accepted but not yet FINished or REQueued."""
        return bool(self.batch or self.waiting or self.preparing or self.ready or self.running)

    def _jobs(self) -> list[_Job]:
        return self.waiting + self.preparing + self.ready + [job for batch in self.running for job in batch]

    def in_progress(self) -> list[nsq.Message]:
        return [m for job in self._jobs() for m in job.messages()] + [item.message for item in self.batch]

    def handle(self, message: nsq.Message) -> bool | None:
        """pynsq's handler: the Collector's, but a copy of a message being scored joins it."""
        message_id = message.id.decode("ascii", "replace")
        if self.stop_requested.is_set():  # stopping: not ours to start; back to the queue at once
            message.requeue(backoff=False, delay=0)
            return None
        for job in self._jobs():
            if job.message_id == message_id:
                message.enable_async()
                job.copies.append(message)
                self.stats.duplicates += 1
                return None
        return super().handle(message)

    def flush(self) -> None:
        """Move the messages gathered by Collector.handle to `waiting` (their rows are not written
        here: scoring comes first) and move work along."""
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
        """Hand waiting messages to the preparing thread, and queue batches in the lanes when due."""
        if self.fatal:
            return
        if self.waiting and not self.preparing:
            group, self.waiting = self.waiting, []
            self.preparing = list(group)
            asyncio.get_running_loop().create_task(self._prepare(group))
        while self.ready and self.models_pending < PIPELINE_DEPTH and self._batch_due():
            self._start_batch()

    def _batch_due(self) -> bool:
        """Whether the ready messages go to the lanes now: a full batch always; otherwise only
        when the lanes have nothing left to run, and then after the messages already in hand
        (gathered or being prepared) have joined, or FILL_WAIT, whichever comes first."""
        if sum(len(job.rows) for job in self.ready) >= self.batch_size:
            return True
        if self.models_pending:
            return False  # the lanes are busy: the batch fills meanwhile
        if not (self.batch or self.waiting or self.preparing):
            return True
        waited = asyncio.get_running_loop().time() - self.ready[0].ready_at
        if waited >= FILL_WAIT:
            return True
        if self._fill_timer is None:
            self._fill_timer = asyncio.get_running_loop().call_later(FILL_WAIT - waited, self._fill_timeout)
        return False

    def _fill_timeout(self) -> None:
        self._fill_timer = None
        self.schedule()

    def _start_batch(self) -> None:
        """Queue the first ready messages (whole messages, up to --batch-size images) in the lanes."""
        taken, images = 0, 0
        while taken < len(self.ready) and (taken == 0 or images + len(self.ready[taken].rows) <= self.batch_size):
            images += len(self.ready[taken].rows)
            taken += 1
        jobs, self.ready = self.ready[:taken], self.ready[taken:]
        if not self.running:
            self.scorer.forget_prompts()  # safe: no batch uses the text embeddings now
        prepared = [item for job in jobs for item in job.prepared]
        for job in jobs:
            job.prepared = []  # the batch holds the inputs now
        self.running.append(jobs)
        self.models_pending += 1
        self.stats.batches += 1
        asyncio.get_running_loop().create_task(self._run(jobs, prepared))

    async def _prepare(self, group: list[_Job]) -> None:
        """Fetch and decode a group of messages in the preparing thread; each joins `ready` when its rows are done."""
        loop = asyncio.get_running_loop()

        def on_ready(index: int, prepared: list[PreparedRow]) -> None:
            loop.call_soon_threadsafe(self._prepared, group[index], prepared)

        try:
            await loop.run_in_executor(self._prepare_pool, self.scorer.prepare, [job.rows for job in group], on_ready)
        except Exception as exc:  # noqa: BLE001 (the messages not prepared come back)
            left = [job for job in group if job in self.preparing]
            self.preparing = [job for job in self.preparing if job not in left]
            self._give_back(left, exc)
        self.schedule()

    def _prepared(self, job: _Job, prepared: list[PreparedRow]) -> None:
        self.preparing.remove(job)
        if self.stop_requested.is_set():  # stopping: not started, so back to nsqd at once
            self._requeue_now([job])
        else:
            job.prepared, job.ready_at = prepared, asyncio.get_running_loop().time()
            self.ready.append(job)
        self.schedule()

    def _requeue_now(self, jobs: list[_Job]) -> None:
        for job in jobs:
            for message in job.messages():
                if not message.has_responded():
                    message.requeue(backoff=False, delay=0)
            self.accepted -= 1
            self.stats.requeued += 1

    def requeue_waiting(self) -> None:
        """On stopping: what has not started goes back to nsqd at once, for another worker (what is
        being prepared goes back when its preparation ends)."""
        self.flush_gathered_only()
        self._requeue_now(self.waiting + self.ready)
        self.waiting, self.ready = [], []

    def flush_gathered_only(self) -> None:
        gathered, self.batch = self.batch, []
        for item in gathered:
            item.message.requeue(backoff=False, delay=0)
            self.accepted -= 1 if item.rows else 0

    def _give_back(self, jobs: list[_Job], exc: Exception) -> None:
        """REQueue messages whose preparation, scoring or writing failed (with backoff, unless the
        output broke: then at once, as the worker stops)."""
        if isinstance(exc, OutputBroken):
            self._fail(exc)
        elif jobs:
            log.warning("could not score or write %d images (%s); requeued %d messages with backoff",
                        sum(len(job.rows) for job in jobs), getattr(exc, "strerror", None) or exc, len(jobs))
        for job in jobs:
            for message in job.messages():
                if not message.has_responded():
                    message.requeue(backoff=not self.fatal, delay=-1 if not self.fatal else 0)
        self.accepted -= len(jobs)
        self.stats.requeued += len(jobs)

    async def _run(self, jobs: list[_Job], prepared: list[PreparedRow]) -> None:
        loop = asyncio.get_running_loop()
        try:
            try:
                # In a thread of its own: without model lanes (a GPU, or one CPU thread) submitting
                # runs the models there and then, and must neither block the loop nor the preparing.
                finish = await loop.run_in_executor(self._submit_pool, self.scorer.submit, prepared)
            except Exception:
                self._models_done()
                raise
            written = await loop.run_in_executor(self._write_pool, self._score_and_write, finish, loop)
        except Exception as exc:  # noqa: BLE001 (scoring or writing failed: the messages come back)
            self._give_back(jobs, exc)
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

    def _models_done(self) -> None:
        self.models_pending -= 1
        self.schedule()

    def _score_and_write(self, finish: Finish, loop: asyncio.AbstractEventLoop) -> list[dict[str, str]]:
        """In the writing thread: wait for the models (then let the loop queue the next batch),
        append rows and logits with one fsync each. Images already in the shard (a message
        published twice) are not written again."""
        try:
            scored: ScoredBatch = finish()
        finally:
            loop.call_soon_threadsafe(self._models_done)
        fresh = [(row, logits) for row, logits in scored if row[col.ID] not in self.written_ids]
        if len(fresh) < len(scored):
            log.info("%d images already in %s: not written again", len(scored) - len(fresh), self.store.paths.shard)
        self.store.append([row for row, _ in fresh], [(str(row[col.ID]), t) for row, t in fresh if t is not None])
        self.written_ids.update(str(row[col.ID]) for row, _ in fresh)
        return [{k: "" if v is None else str(v) for k, v in row.items()} for row, _ in fresh]

    def close(self) -> None:
        for pool in (self._prepare_pool, self._submit_pool, self._write_pool):
            pool.shutdown(wait=True, cancel_futures=True)
