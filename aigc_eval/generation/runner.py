"""Batch-generate images through the Dubbo image-generation service, one call per CSV row.

Reads data.csv (--input): id, prompt, product_image_url, category (any other columns may be
used by the request template). Writes output.csv (--output), one row per generated image:
id (the input id, "_" and the image's 0-based index), prompt, image_url, category,
product_image_url, source_id (the input id), then the input's other columns; the evaluators
read it as it is. Writes error.csv (--error), one row per input row that did not generate:
the input's columns, error_type, error_message, attempts, failed_at (UTC).

Every input row ends in exactly one of the two files. A rerun with the same arguments skips
rows already in the output and tries the others again; --retry-errors reruns only the rows
of the error file. Finished rows are journalled (fsynced) as they complete, so a crash or
kill -9 loses none of them, and a lock stops two runs writing the same files.

    python generate_request.py                       # data.csv -> output.csv, error.csv
    python generate_request.py --input data_sample.csv --error error_sample.csv
    python generate_request.py --transport telnet --provider 10.0.0.5:20880 --interface com.foo.ImageService --method generate

Service settings can come from the environment (AIGC_DUBBO_ZOOKEEPER, AIGC_DUBBO_INTERFACE,
...; see the flags' help), so the article's bare command runs from cron.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from aigc_eval import exit_codes
from aigc_eval import columns as col
from aigc_eval import log
from aigc_eval.generation.dubbo import DubboCallError
from aigc_eval.generation.request_template import (
    DEFAULT_RESPONSE_PATH,
    RequestTemplate,
    ResponseShapeError,
    extract_image_urls,
)
from aigc_eval.generation.state import (
    ERROR_COLUMNS,
    Journal,
    RunLock,
    RunState,
    journal_path,
    load_state,
    save_state,
)
from aigc_eval.io.csv_io import InputError, read_rows

EXIT_OK = exit_codes.OK
EXIT_ROW_ERRORS = exit_codes.GENERATE_ROW_ERRORS
EXIT_USAGE = exit_codes.USAGE
EXIT_SERVICE = exit_codes.GENERATE_SERVICE  # rows done so far are kept
EXIT_LOCKED = exit_codes.GENERATE_LOCKED
EXIT_INTERRUPTED = exit_codes.INTERRUPTED


@dataclass(frozen=True)
class CallPolicy:
    """How calls are made: threads, rate, timeout, retries of transient failures, backoff base."""

    workers: int = 4
    qps: float = 0.0
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 1.0

    def check(self) -> "CallPolicy":
        if self.workers < 1 or self.qps < 0 or self.timeout <= 0 or self.retries < 0 or self.backoff < 0:
            raise ValueError("--workers must be at least 1, --timeout positive, and --qps, --retries, --backoff not negative")
        return self


@dataclass
class RunSummary:
    """Counts of one run; `error_rows` is the size of the error file after it."""

    input_rows: int = 0
    skipped: int = 0
    attempted: int = 0
    generated: int = 0
    images: int = 0
    failed: int = 0
    invalid: int = 0
    retries: int = 0
    error_rows: int = 0
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_ROW_ERRORS if self.error_rows else EXIT_OK


class RateLimiter:
    """At most `qps` call starts per second across all threads (0: no limit)."""

    def __init__(self, qps: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], Any] = time.sleep):
        self.interval = 1.0 / qps if qps > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


def backoff_delay(attempt: int, base: float, rng: random.Random, cap: float = 30.0) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): base * 2^(attempt-1), capped,
    times a random factor in [0.5, 1) so that workers failing together do not retry together."""
    return min(cap, base * 2 ** (attempt - 1)) * rng.uniform(0.5, 1.0)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _input_fields(row: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in row.items() if key not in ERROR_COLUMNS}


def error_row(row: dict[str, str], kind: str, message: str, attempts: int) -> dict[str, str]:
    """The error-file row: the input's cells, then why, how many calls and when."""
    return {**_input_fields(row), col.ERROR_TYPE: kind, col.ERROR_MESSAGE: " ".join(message.split()),
            col.ATTEMPTS: str(attempts), col.FAILED_AT: _utc_now()}


def output_rows(key: str, row: dict[str, str], urls: Sequence[str]) -> list[dict[str, str]]:
    """One output row per image URL, id = `key`_index."""
    base = _input_fields(row)
    return [{**base, col.ID: f"{key}_{index}", col.IMAGE_URL: url, col.SOURCE_ID: key} for index, url in enumerate(urls)]


def select_pending(rows: list[dict[str, str]], source: Path, template: RequestTemplate, required: Sequence[str],
                   state: RunState, retry_errors: bool) -> tuple[list[tuple[str, dict, list]], list[str], int]:
    """(rows to call as (id, row, arguments), every valid id in input order, rows skipped as done).

    Rows with no id, a duplicate id, an empty required cell or a cell a typed placeholder cannot
    convert are added to state.invalid with the reason and line.
    """
    pending, order, skipped, seen = [], [], 0, {}
    for index, row in enumerate(rows):
        line = index + 2  # the header is line 1
        key = row.get(col.ID, "").strip()
        if retry_errors and row.get(col.ERROR_TYPE) == col.ERROR_TYPE_INVALID_ROW:
            continue  # kept as it is: only editing the input can fix it
        reason = None
        if not key:
            reason = f"{source.name} line {line}: missing id"
        elif key in seen:
            reason = f"{source.name} line {line}: duplicate id {key} (first on line {seen[key]})"
        else:
            seen[key] = line
            order.append(key)
            if key in state.done:
                skipped += 1
                continue
            empty = [name for name in required if not row.get(name, "").strip()]
            try:
                args = template.render(row)
            except ValueError as exc:
                args, empty = None, empty or [str(exc)]
            if empty:
                reason = f"{source.name} line {line}: empty or unusable {', '.join(empty)}"
                state.errors.pop(key, None)
            else:
                pending.append((key, row, args))
        if reason:
            state.invalid.append(error_row(row, col.ERROR_TYPE_INVALID_ROW, reason, 0))
    return pending, order, skipped


class _Stopped(Exception):
    """The run is ending (interrupt or SetupError); a row not yet called stays pending."""


def call_row(key: str, row: dict[str, str], args: list, transport, response_path: str, policy: CallPolicy,
             limiter: RateLimiter, stop: threading.Event, rng: random.Random) -> dict:
    """Call the service for one row, retrying transient failures; returns its journal record.

    SetupError (nothing can work) propagates and ends the run.
    """
    attempts = 0
    while True:
        attempts += 1
        limiter.wait()
        if stop.is_set():
            raise _Stopped()
        try:
            urls = extract_image_urls(transport.call(args), response_path)
            return {"key": key, "rows": output_rows(key, row, urls), "attempts": attempts}
        except ResponseShapeError as exc:
            return {"key": key, "error": error_row(row, "BadResponse", str(exc), attempts), "attempts": attempts}
        except DubboCallError as exc:
            if exc.retryable and attempts <= policy.retries and not stop.is_set():
                stop.wait(backoff_delay(attempts, policy.backoff, rng))
                continue
            return {"key": key, "error": error_row(row, exc.kind, str(exc), attempts), "attempts": attempts}


def _call_all(pending, transport, response_path: str, policy: CallPolicy, journal: Journal, state: RunState,
              summary: RunSummary, quiet: bool, rng: random.Random) -> None:
    limiter = RateLimiter(policy.qps)
    stop = threading.Event()
    # Outside a terminal (cron's log), a line every 30 s instead of ten a second.
    progress = tqdm(total=len(pending), desc="generate", unit="row", disable=quiet, file=sys.stderr,
                    mininterval=0.1 if sys.stderr.isatty() else 30.0)
    pool = ThreadPoolExecutor(max_workers=policy.workers, thread_name_prefix="dubbo")
    recorded: set = set()

    def record(future) -> None:
        outcome = future.result()
        journal.append(outcome)  # fsynced: from here on the row survives a crash
        recorded.add(future)
        state.apply(outcome)
        summary.retries += outcome["attempts"] - 1
        if "rows" in outcome:
            summary.generated += 1
            summary.images += len(outcome["rows"])
        else:
            summary.failed += 1
        progress.update()
        progress.set_postfix(errors=summary.failed, retries=summary.retries, refresh=False)

    futures = [pool.submit(call_row, key, row, args, transport, response_path, policy, limiter, stop, rng)
               for key, row, args in pending]
    try:
        for future in as_completed(futures):
            record(future)
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        # Calls that were in flight when the run was stopped still count: images cost money.
        for future in futures:
            if future not in recorded and future.done() and not future.cancelled() and future.exception() is None:
                record(future)
        progress.close()


def generate_requests(input_path: Path, output_path: Path, error_path: Path, connect: Callable[[], Any],
                      template: RequestTemplate, response_path: str = DEFAULT_RESPONSE_PATH,
                      policy: CallPolicy = CallPolicy(), *, retry_errors: bool = False, quiet: bool = False,
                      seed: int | None = None) -> RunSummary:
    """Generate images for every pending row of `input_path` (or of `error_path` with retry_errors).

    `connect()` opens the transport, only when some row needs a call. Raises InputError for
    an unusable input, LockHeldError, and SetupError when the service cannot be used; the
    rows finished before that are saved in every case.
    """
    started = time.monotonic()
    source = Path(error_path if retry_errors else input_path)
    if retry_errors and not source.exists():
        raise InputError(f"{source}: no such file; --retry-errors reruns the rows of the error file named by --error")
    required = list(dict.fromkeys([col.ID, col.PROMPT, *template.columns]))
    header, rows = read_rows(source, required)
    summary = RunSummary(input_rows=len(rows))
    with RunLock([output_path, error_path]):
        journal = Journal(journal_path(output_path))
        state = load_state(output_path, error_path, keep_invalid=retry_errors)
        state.widen_headers(header)
        pending, order, summary.skipped = select_pending(rows, source, template, required, state, retry_errors)
        summary.invalid, summary.attempted = len(state.invalid), len(pending)
        save_state(state, output_path, error_path, order, journal)
        if pending:
            try:
                transport = connect()
                log.info("calling %s for %d rows (%d already generated)", transport.describe(), len(pending), summary.skipped)
                try:
                    _call_all(pending, transport, response_path, policy, journal, state, summary, quiet, random.Random(seed))
                finally:
                    transport.close()
            finally:
                save_state(state, output_path, error_path, order, journal)
        summary.error_rows = len(state.errors) + len(state.invalid)
    summary.seconds = time.monotonic() - started
    called = summary.generated + summary.failed
    log.info("%d input rows: %d already generated, %d generated now (%d images), %d failed now, %d invalid, "
             "%d retries, %.1f rows/s; %d rows in %s, %d in %s",
             summary.input_rows, summary.skipped, summary.generated, summary.images, summary.failed, summary.invalid,
             summary.retries, called / summary.seconds if summary.seconds else 0.0,
             sum(len(v) for v in state.done.values()), output_path, summary.error_rows, error_path)
    return summary
