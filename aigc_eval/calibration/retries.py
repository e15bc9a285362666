"""Merchants' retries as labels, read from the listener's output.csv (collected with
`--map session_id=PATH`).

A request is one NSQ message (its rows share nsq_message_id; without that column, the image id
without its "_<index>"). In each session, requests are ordered by nsq_timestamp (when nsqd
received them; ties and rows without it keep the file's order). A request whose raw prompt's
last user turn is a regenerate command (prompt_cleaning.is_regenerate_request) labels every
image of the session's previous request `reject` (source merchant_retry). With a retry window
of W seconds, each request whose session has no regenerate within W seconds after it, and whose
file reaches at least W seconds past it (else it is too recent to know), labels its images
`accept` (source merchant_no_retry). Rows without a session, and retries with no earlier request
of their session in the file, give no label and are counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from aigc_eval import columns as col
from aigc_eval.calibration.dataset import request_of
from aigc_eval.calibration.labels import LabelRow, read_csv_strict
from aigc_eval.io.csv_io import InputError
from aigc_eval.labelling import format as lf
from aigc_eval.scoring.prompt_cleaning import is_regenerate_request, load_rules

MERCHANT = "merchant"  # the labeler of retry labels


@dataclass
class Request:
    key: str
    session: str
    order: tuple[int, int]  # (nsq_timestamp or 0, first row's position)
    ids: list[str]
    prompt: str

    @property
    def seconds(self) -> float:
        return self.order[0] / 1e9


@dataclass
class RetryStats:
    rows: int = 0
    requests: int = 0
    no_session: int = 0  # rows without a session id
    retries: int = 0  # regenerate requests
    retries_without_previous: int = 0
    labels: Counter = field(default_factory=Counter)  # by source

    def line(self) -> str:
        by = ", ".join(f"{k} {v}" for k, v in sorted(self.labels.items())) or "none"
        return (f"retries: {self.rows} rows, {self.requests} requests, {self.retries} regenerate requests "
                f"({self.retries_without_previous} without an earlier request in their session), "
                f"{self.no_session} rows without a session; labels: {by}")


def _iso(nanoseconds: int) -> str:
    return datetime.fromtimestamp(nanoseconds / 1e9, timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def read_requests(path: Path, stats: RetryStats) -> list[Request]:
    """The requests of output.csv that have a session, in file order."""
    header, rows = read_csv_strict(path, [col.ID, col.PROMPT])
    if col.SESSION_ID not in header:
        raise InputError(f"{path}: no {col.SESSION_ID} column; collect with message_listener.py "
                         f"--map session_id=PATH (the body field holding the merchant's session)")
    requests: dict[str, Request] = {}
    for position, row in enumerate(rows, start=1):
        stats.rows += 1
        session = row.get(col.SESSION_ID, "")
        if not session:
            stats.no_session += 1
            continue
        key = row.get(col.NSQ_MESSAGE_ID) or request_of(row)
        stamp_text = row.get(col.NSQ_TIMESTAMP, "")
        try:
            stamp = int(stamp_text) if stamp_text else 0
        except ValueError:
            raise InputError(f"{path}: row {position}: {col.NSQ_TIMESTAMP} {stamp_text!r} is not a whole number") from None
        found = requests.get(key)
        if found is None:
            requests[key] = Request(key, session, (stamp, position), [row[col.ID]], row.get(col.PROMPT, ""))
        else:
            found.ids.append(row[col.ID])
    return list(requests.values())


def labels_from_retries(path: Path, retry_window: float | None = None) -> tuple[list[LabelRow], RetryStats]:
    """Reject labels from regenerate turns (and accept labels after `retry_window` seconds without
    one, when given); each image at most one label, in the order of the file's requests."""
    stats = RetryStats()
    requests = read_requests(Path(path), stats)
    stats.requests = len(requests)
    rules = load_rules()
    sessions: dict[str, list[Request]] = {}
    for request in requests:
        sessions.setdefault(request.session, []).append(request)
    end = max((r.seconds for r in requests), default=0.0)
    verdicts: dict[str, tuple[int, str, str]] = {}  # id -> (verdict, source, labelled_at)
    for session in sessions.values():
        session.sort(key=lambda r: r.order)
        retry = [is_regenerate_request(r.prompt, rules) for r in session]
        for i, request in enumerate(session):
            if retry[i]:
                stats.retries += 1
                if i == 0:
                    stats.retries_without_previous += 1
                else:
                    for image_id in session[i - 1].ids:
                        verdicts[image_id] = (0, lf.SOURCE_MERCHANT_RETRY, _iso(request.order[0]) if request.order[0] else "")
        if retry_window is None:
            continue
        for i, request in enumerate(session):
            followed = i + 1 < len(session) and retry[i + 1] and session[i + 1].seconds - request.seconds <= retry_window
            if followed or end - request.seconds < retry_window or not request.order[0]:
                continue
            for image_id in request.ids:
                verdicts.setdefault(image_id, (1, lf.SOURCE_MERCHANT_NO_RETRY, _iso(request.order[0] + int(retry_window * 1e9))))
    rows = []
    for request in requests:
        for image_id in request.ids:
            if image_id in verdicts:
                verdict, source, at = verdicts[image_id]
                rows.append(LabelRow(image_id, verdict, None, "", MERCHANT, source, at))
                stats.labels[source] += 1
    return rows, stats


def label_csv_rows(rows: list[LabelRow]) -> list[dict[str, str]]:
    """LabelRows as labels.csv rows (lf.LABEL_COLUMNS)."""
    return [{lf.LABEL_ID: r.image_id, lf.LABEL: lf.ACCEPT if r.verdict == 1 else lf.REJECT, lf.RATING: "",
             lf.REASON: r.reason, lf.LABELER: r.labeler, lf.SOURCE: r.source, lf.LABELLED_AT: r.labelled_at} for r in rows]
