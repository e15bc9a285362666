"""From delivered NSQ messages to rows on disk: the listener's group commit, dedupe and dead letters.

A Collector gets each message pynsq delivers. Rows of messages that arrive together are
appended with one write and one fsync, and only then are the messages FINished; a
message whose id is already in the output or the dead-letter file is FINished without
writing; one that cannot become rows goes to the dead-letter file and is FINished; a
failed write REQueues the whole batch with backoff. With an `id` mapping (one image per
message, such as the stream workers' result messages, published at least once) a message
whose image id is already written or waiting to be is FINished without writing too. Used by
message_listener.py.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import nsq

from aigc_eval import columns as col
from aigc_eval.collection.messages import (
    ExtraColumns,
    FieldMapping,
    MalformedMessage,
    message_to_rows,
)
from aigc_eval.io.append_log import CsvAppendLog, DeadLetterLog, OutputBroken

log = logging.getLogger("aigc_eval")

COMMIT_DELAY = 0.005  # seconds a row batch waits for more messages before one write + fsync


@dataclass
class ListenerStats:
    """Counts for this run, reported in the progress lines and the last line."""

    messages: int = 0  # FINished: written + duplicates + dead letters
    written: int = 0
    rows: int = 0
    duplicates: int = 0  # redeliveries of messages already in the output or dead-letter file
    dead_letters: int = 0
    requeued: int = 0
    connected: bool = False
    stop_reason: str = ""

    def line(self) -> str:
        return (f"{self.messages} messages: {self.written} written as {self.rows} rows, "
                f"{self.duplicates} already there, {self.dead_letters} dead-lettered, {self.requeued} requeued")


@dataclass
class _Pending:
    message: nsq.Message
    message_id: str
    rows: list[dict[str, str]]


class Collector:
    """Turns delivered messages into appended rows; FINishes each only once it is on disk.

    Rows of messages that arrive together are written with one write and one fsync (group
    commit). All methods run on the event loop's thread.
    """

    def __init__(self, csv_log: CsvAppendLog, dead_log: DeadLetterLog, done_ids: set[str], *, mapping: FieldMapping,
                 max_in_flight: int, max_tries: int, max_messages: int | None,
                 extra: ExtraColumns = (), done_rows: set[str] | None = None):
        self.csv_log, self.dead_log, self.mapping, self.extra = csv_log, dead_log, mapping, extra
        self.max_in_flight, self.max_tries, self.max_messages = max_in_flight, max_tries, max_messages
        self.done_ids = done_ids  # in the output or the dead-letter file: FIN, never write again
        # Row ids in the output, when rows are deduplicated on their id (an `id` mapping): a
        # second message for the same image is FINished without writing. None: not deduplicated.
        self.done_rows = done_rows
        self.stats = ListenerStats()
        self.batch: list[_Pending] = []
        self.accepted = 0  # FINished plus waiting in the batch, for --max-messages
        self.last_message_at = time.monotonic()
        self.fatal: OutputBroken | None = None
        self.stop_requested = asyncio.Event()
        self._flush_handle: asyncio.TimerHandle | None = None

    def request_stop(self, reason: str) -> None:
        if not self.stop_requested.is_set():
            self.stats.stop_reason = reason
            log.info("stopping: %s", reason)
            self.stop_requested.set()

    def handle(self, message: nsq.Message) -> bool | None:
        """pynsq's message handler: True FINishes now, None leaves it to flush()."""
        self.last_message_at = time.monotonic()
        message_id = message.id.decode("ascii", "replace")
        limit = self.max_messages
        if self.fatal or (limit is not None and self.accepted >= limit):
            message.requeue(backoff=False, delay=0)  # not ours to take: back to the queue at once
            return None
        if message_id in self.done_ids:
            self.stats.duplicates += 1
            self._acknowledged()
            return True
        if any(item.message_id == message_id for item in self.batch):
            # nsqd redelivered a message still waiting for its fsync: FIN this copy with the batch
            message.enable_async()
            self.batch.append(_Pending(message, message_id, []))
            self.stats.duplicates += 1
            return None
        try:
            rows = message_to_rows(message.body, message_id, message.timestamp, self.mapping, self.extra)
        except MalformedMessage as exc:
            self.dead_letter(message, message_id, str(exc))
            self.stats.dead_letters += 1
            self._acknowledged()
            return True
        if self.done_rows is not None:
            waiting = {row[col.ID] for item in self.batch for row in item.rows}
            rows = [row for row in rows if row[col.ID] not in self.done_rows and row[col.ID] not in waiting]
            if not rows:
                # Every image is on disk, or waiting in a batch whose message is FINished only
                # after its fsync (and comes back if that fails): this copy can go at once.
                self.stats.duplicates += 1
                self._acknowledged()
                return True
        message.enable_async()
        self.batch.append(_Pending(message, message_id, rows))
        self.accepted += 1
        if len(self.batch) >= self.max_in_flight:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(COMMIT_DELAY, self.flush)
        return None

    def dead_letter(self, message: nsq.Message, message_id: str, reason: str) -> None:
        """Append the raw message and the reason to the dead-letter file (fsynced); OSError propagates."""
        record: dict[str, object] = {col.KEY_DL_MESSAGE_ID: message_id, col.KEY_DL_REASON: reason}
        try:
            record[col.KEY_DL_BODY] = message.body.decode("utf-8")
        except UnicodeDecodeError:
            record[col.KEY_DL_BODY_BASE64] = base64.b64encode(message.body).decode("ascii")
        record.update({
            col.KEY_DL_ATTEMPTS: message.attempts,
            col.KEY_DL_NSQ_TIMESTAMP: message.timestamp,
            col.KEY_DL_AT: datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })
        try:
            self.dead_log.append(record)
        except OutputBroken as exc:
            self._fail(exc)
            raise
        self.done_ids.add(message_id)
        log.warning("dead letter %s: %s", message_id, reason)

    def give_up(self, message: nsq.Message) -> None:
        """pynsq calls this (then FINishes) when attempts exceed --max-tries."""
        message_id = message.id.decode("ascii", "replace")
        self.last_message_at = time.monotonic()
        if message_id in self.done_ids:
            self.stats.duplicates += 1
        else:
            reason = f"gave up after {message.attempts} attempts (--max-tries {self.max_tries})"
            self.dead_letter(message, message_id, reason)
            self.stats.dead_letters += 1
        self._acknowledged()

    def flush(self) -> None:
        """Write the batch's rows with one append + fsync, then FIN its messages (or REQ them all)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        batch, self.batch = self.batch, []
        if not batch:
            return
        fresh = [item for item in batch if item.rows]
        try:
            if fresh:
                self.csv_log.append([row for item in fresh for row in item.rows])
        except OSError as exc:
            if isinstance(exc, OutputBroken):
                self._fail(exc)
            else:
                log.warning("%s: could not write %d rows (%s); requeued %d messages with backoff",
                            self.csv_log.path, sum(len(i.rows) for i in fresh), exc.strerror or exc, len(batch))
            for item in batch:
                item.message.requeue(backoff=not self.fatal)
            self.accepted -= len(fresh)
            self.stats.requeued += len(batch)
            return
        for item in batch:
            item.message.finish()
            if item.rows:
                self.done_ids.add(item.message_id)
                if self.done_rows is not None:
                    self.done_rows.update(row[col.ID] for row in item.rows)
                self.stats.written += 1
                self.stats.rows += len(item.rows)
                self._acknowledged(already_accepted=True)

    def _acknowledged(self, already_accepted: bool = False) -> None:
        self.stats.messages += 1
        self.accepted += 0 if already_accepted else 1
        if self.max_messages is not None and self.stats.messages >= self.max_messages:
            self.request_stop(f"--max-messages {self.max_messages} reached")

    def _fail(self, exc: OutputBroken) -> None:
        self.fatal = exc
        log.error("error: %s: %s; stopping (a restart repairs the file)", exc.filename, exc.strerror)
        self.request_stop("the output could not be written")
