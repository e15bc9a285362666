"""Collect what the generation service publishes on NSQ into output.csv, each message once.

Subscribes with pynsq's nsq.Reader to --topic (generate_img_data_collect_topic) on
--channel through --nsqd-tcp-address or --lookupd-http-address, and appends one row per
generated image to --output (output.csv): id, prompt, image_url, product_image_url,
category, timestamp, nsq_timestamp, nsq_message_id, the columns the evaluators read.
Messages that cannot become rows go, with the reason, to the dead-letter file
(--dead-letter, default <output stem>.dead_letter.jsonl beside the output).
`--column NAME=PATH` adds columns from the body before nsq_message_id; `--map id=PATH`
makes each message one image with the id found there, deduplicated on that id (for the
stream workers' result messages on generate_img_score_topic, see docs/streaming.md).

Exactly once in the file: rows are appended and fsynced before their message is FINished;
on start the message ids already in the output and the dead-letter file are read, so a
redelivery is FINished without writing it again, and a record torn by a crash is cut off
(its message was never FINished, so it comes back). A failed write REQueues with backoff.

    python message_listener.py                                   # -> output.csv, until SIGTERM/Ctrl-C
    python message_listener.py --output output_sample.csv
    python message_listener.py --idle-timeout 60 --max-messages 5000   # from cron
    python message_listener.py --topic generate_img_score_topic --output scores.csv --map id=id \\
        --column clip_score=scores.clip_score --column total_score=total_score --column regenerate=regenerate
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import nsq

from aigc_eval import exit_codes
from aigc_eval import columns as col
from aigc_eval import log
from aigc_eval.collection.collector import Collector, ListenerStats
from aigc_eval.collection.messages import ExtraColumns, FieldMapping, listener_columns
from aigc_eval.io.append_log import CsvAppendLog, DeadLetterLog, OutputLock, scan_csv_log

EXIT_STOPPED = exit_codes.OK
EXIT_DEAD_LETTERS = exit_codes.NSQ_DEAD_LETTERS
EXIT_LOCKED = exit_codes.NSQ_LOCKED
EXIT_OUTPUT_BROKEN = exit_codes.NSQ_OUTPUT_BROKEN
EXIT_NO_NSQD = exit_codes.NSQ_NO_NSQD


DRAIN_QUIET = 0.2  # on stopping, seconds without a message that mean nothing is still in transit
DRAIN_LIMIT = 3.0  # on stopping, the most seconds spent writing messages still in transit
CLOSE_WAIT_LIMIT = 1.0  # seconds to wait for nsqd's CLOSE_WAIT answer to CLS


def default_dead_letter(output: Path) -> Path:
    """output.csv -> output.dead_letter.jsonl, in the output's folder."""
    return output.with_name(f"{output.stem}.dead_letter.jsonl")


@dataclass(frozen=True)
class ListenerOptions:
    """Everything one listener run needs; main() builds it from the command line."""

    output: Path = Path(col.DEFAULT_LISTENER_OUTPUT)
    dead_letter: Path | None = None  # None: default_dead_letter(output)
    topic: str = col.DEFAULT_NSQ_TOPIC
    channel: str = col.DEFAULT_NSQ_CHANNEL
    nsqd_tcp_addresses: tuple[str, ...] = ()
    lookupd_http_addresses: tuple[str, ...] = ()
    mapping: FieldMapping = field(default_factory=FieldMapping)
    extra: ExtraColumns = ()  # --column NAME=PATH, in order
    max_in_flight: int = 100
    max_tries: int = 10  # 0: never give up
    requeue_delay: int = 90  # seconds, multiplied by the attempt number, for a failed write
    reconnect_delay: float = 15.0
    max_messages: int | None = None
    idle_timeout: float | None = None
    progress_interval: float = 60.0

    def checked(self) -> "ListenerOptions":
        """These options with the dead-letter default filled in; ValueError naming a bad option."""
        if not self.nsqd_tcp_addresses and not self.lookupd_http_addresses:
            raise ValueError("give --nsqd-tcp-address or --lookupd-http-address")
        for address in self.nsqd_tcp_addresses:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"--nsqd-tcp-address {address!r}: expected HOST:PORT, such as 127.0.0.1:4150")
        if not nsq.valid_topic_name(self.topic) or not nsq.valid_channel_name(self.channel):
            raise ValueError(f"--topic {self.topic!r} / --channel {self.channel!r}: NSQ names are 1-64 of . a-z A-Z 0-9 _ -")
        if self.max_in_flight < 1 or self.max_tries < 0 or self.requeue_delay < 0 or self.reconnect_delay <= 0:
            raise ValueError("--max-in-flight must be at least 1, --max-tries and --requeue-delay not negative, --reconnect-delay positive")
        if (self.max_messages is not None and self.max_messages < 1) or (self.idle_timeout is not None and self.idle_timeout <= 0):
            raise ValueError("--max-messages must be at least 1 and --idle-timeout positive")
        if self.progress_interval <= 0:
            raise ValueError("--progress-interval must be positive")
        return self if self.dead_letter else replace(self, dead_letter=default_dead_letter(self.output))


class CollectingReader(nsq.Reader):
    """nsq.Reader that dead-letters what it gives up on and reconnects after --reconnect-delay.

    pynsq reconnects to a lost nsqd after a fixed 15 s and throttles attempts to one per
    10 s; reconnect_delay makes that a choice (the 15 s default is pynsq's).
    """

    def __init__(self, collector: Collector, reconnect_delay: float, **kwargs):
        self.collector = collector
        self.reconnect_delay = reconnect_delay
        self.stopping = False
        super().__init__(message_handler=collector.handle, **kwargs)

    def giving_up(self, message: nsq.Message) -> None:
        self.collector.give_up(message)

    def connect_to_nsqd(self, host: str, port: int):
        conn = super().connect_to_nsqd(host, port)
        if conn is not None:
            conn.on("ready", self._on_ready)
            conn.on("close", self._on_close)
        return conn

    def _on_ready(self, conn, **kwargs) -> None:
        if not self.collector.stats.connected:
            log.info("connected to nsqd %s; subscribing to %s/%s", conn.id, self.topic, self.channel)
        self.collector.stats.connected = True

    def _on_close(self, conn, **kwargs) -> None:
        if not self.stopping and not self.lookupd_http_addresses:
            self.io_loop.call_later(self.reconnect_delay, self._reconnect, conn.host, conn.port)

    def _reconnect(self, host: str, port: int) -> None:
        if not self.stopping and f"{host}:{port}" not in self.conns:
            self.connection_attempts.pop(f"{host}:{port}", None)  # lift pynsq's 10 s throttle
            self.connect_to_nsqd(host, port)


class _ConnectFailureFilter(logging.Filter):
    """pynsq lets a refused connection escape into tornado, which logs a traceback; make it one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__name__ == "StreamClosedError" and "_connect_callback" in str(record.msg) + str(record.args):
            record.msg, record.args, record.exc_info = "could not connect to nsqd (%s); will retry", (exc,), None
        return True


@contextlib.contextmanager
def connect_failures_in_one_line() -> Iterator[None]:
    """While the block runs, a refused nsqd connection logs one line instead of tornado's traceback."""
    connect_filter = _ConnectFailureFilter()
    logging.getLogger("tornado.application").addFilter(connect_filter)
    try:
        yield
    finally:
        logging.getLogger("tornado.application").removeFilter(connect_filter)


async def close_quietly(close: Callable[[], None], role: str) -> None:
    """Run pynsq's `close` for a reader or writer (`role`) and let the loop turn a few times.

    pynsq reports the reads it had pending on a stream it closes itself as errors ("failed to
    unpack size") and plans a reconnect; neither means anything now, so they are muted."""
    quieted = [logging.getLogger(name) for name in ("nsq.client", f"nsq.{role}", "nsq.conn")]
    levels = [logger.level for logger in quieted]
    for logger in quieted:
        logger.setLevel(logging.CRITICAL)
    try:
        close()
        for _ in range(3):
            await asyncio.sleep(0)
    finally:
        for logger, level in zip(quieted, levels):
            logger.setLevel(level)


async def _close_cleanly(reader: CollectingReader) -> None:
    """CLS every connection and wait for CLOSE_WAIT, so the FINs before it have reached nsqd."""
    reader.stopping = True
    waiters = []
    for conn in list(reader.conns.values()):
        answered = asyncio.get_running_loop().create_future()

        def on_response(data=b"", answered=answered, **kwargs) -> None:
            if data == b"CLOSE_WAIT" and not answered.done():
                answered.set_result(True)

        conn.on("response", on_response)
        try:
            conn.send(b"CLS\n")
            waiters.append(answered)
        except Exception:  # a connection closing under us: nsqd redelivers what it did not see FINished
            continue
    if waiters:
        await asyncio.wait(waiters, timeout=CLOSE_WAIT_LIMIT)
    await close_quietly(reader.close, "reader")


async def _watch(collector: Collector, options: ListenerOptions) -> None:
    """Progress lines every --progress-interval and the --idle-timeout check."""
    next_progress = time.monotonic() + options.progress_interval
    while not collector.stop_requested.is_set():
        await asyncio.sleep(0.05)
        now = time.monotonic()
        if now >= next_progress:
            log.info("progress: %s", collector.stats.line())
            next_progress = now + options.progress_interval
        if options.idle_timeout is not None and not collector.batch and now - collector.last_message_at >= options.idle_timeout:
            collector.request_stop(f"no message for {options.idle_timeout:g} s (--idle-timeout)")


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[str], None], enabled: bool = True) -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT call `request_stop(reason)` on the running loop (the
    listener and the stream workers stop the same way: finish what is in flight, then exit)."""
    loop = asyncio.get_running_loop()
    signums = (signal.SIGTERM, signal.SIGINT) if enabled else ()
    for signum in signums:
        loop.add_signal_handler(signum, request_stop, f"{signal.Signals(signum).name} received")
    try:
        yield
    finally:
        for signum in signums:
            loop.remove_signal_handler(signum)


async def _listen(options: ListenerOptions, collector: Collector, handle_signals: bool) -> None:
    with stop_on_signals(collector.request_stop, handle_signals):
        # Built inside the running loop: pynsq takes IOLoop.current() (nsqio/pynsq#255).
        reader = CollectingReader(
            collector, options.reconnect_delay, topic=options.topic, channel=options.channel,
            nsqd_tcp_addresses=list(options.nsqd_tcp_addresses),
            lookupd_http_addresses=list(options.lookupd_http_addresses), max_in_flight=options.max_in_flight,
            max_tries=options.max_tries, requeue_delay=options.requeue_delay,
        )
        watcher = asyncio.create_task(_watch(collector, options))
        try:
            await collector.stop_requested.wait()
            reader.set_max_in_flight(0)  # RDY 0: nsqd sends nothing new; what is in transit is still written
            started = time.monotonic()
            while time.monotonic() - started < DRAIN_LIMIT and not collector.fatal:
                collector.flush()
                if time.monotonic() - collector.last_message_at >= DRAIN_QUIET:
                    break
                await asyncio.sleep(0.02)
            collector.flush()
            await _close_cleanly(reader)
        finally:
            watcher.cancel()


def collect_from_nsq(options: ListenerOptions, handle_signals: bool = True) -> ListenerStats:
    """Listen until a signal, --max-messages or --idle-timeout stops it; returns this run's counts.

    Raises OutputLocked when another listener writes the same output, InputError for an
    output that is not the listener's CSV, ValueError for bad options.
    """
    options = options.checked()
    with OutputLock(options.output):
        fieldnames = listener_columns(options.extra, options.mapping)
        csv_log, csv_ids = CsvAppendLog.open(options.output, fieldnames, col.NSQ_MESSAGE_ID)
        done_rows = None
        if options.mapping.id:  # dedup on the image id too; the file was just repaired, so all of it counts
            done_rows = set(scan_csv_log(options.output.read_bytes(), fieldnames, col.ID, options.output)[1])
        dead_log, dead_ids = DeadLetterLog.open(options.dead_letter, col.KEY_DL_MESSAGE_ID)
        log.info("%s: %d rows from %d messages already there; %s: %d dead letters",
                 options.output, len(csv_ids), len(set(csv_ids)), options.dead_letter, len(dead_ids))
        collector = Collector(csv_log, dead_log, set(csv_ids) | set(dead_ids), mapping=options.mapping,
                              max_in_flight=options.max_in_flight, max_tries=options.max_tries, max_messages=options.max_messages,
                              extra=options.extra, done_rows=done_rows)
        try:
            with connect_failures_in_one_line():
                asyncio.run(_listen(options, collector, handle_signals))
        finally:
            csv_log.close()
            dead_log.close()
    log.info("stopped (%s): %s", collector.stats.stop_reason, collector.stats.line())
    if collector.fatal:
        raise collector.fatal
    return collector.stats


def exit_code_for(stats: ListenerStats, options: ListenerOptions) -> int:
    if not stats.connected and options.idle_timeout is not None:
        return EXIT_NO_NSQD
    return EXIT_DEAD_LETTERS if stats.dead_letters else EXIT_STOPPED
