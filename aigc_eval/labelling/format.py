"""The labels CSV (labels.csv): one verdict per row, written by the review page (label.py),
by Label Studio imports and by merchants' retries, and read by calibrate.py.

Columns: `id` (the scored image's id), `label` (accept / reject; 1 / 0 are read too), and the
optional `rating` (1-5), `reason` (one of REASONS), `labeler`, `source` (SOURCES) and
`labelled_at` (UTC, ISO 8601). Several rows per image are allowed, one per labeler; for the
same (id, labeler) the last row wins, which is how the page's undo works: it appends an
`undone` row (and a skip appends `skip`), and a last row of either means that labeler gives
that image no verdict.
"""

from __future__ import annotations

from aigc_eval import columns as col
from aigc_eval.product.names import ISSUE_CODES

LABEL_ID = "id"
LABEL = "label"
RATING = "rating"
REASON = "reason"
LABELER = "labeler"
SOURCE = "source"
LABELLED_AT = "labelled_at"
LABEL_COLUMNS: tuple[str, ...] = (LABEL_ID, LABEL, RATING, REASON, LABELER, SOURCE, LABELLED_AT)
REQUIRED_COLUMNS: tuple[str, ...] = (LABEL_ID, LABEL)

ACCEPT = "accept"
REJECT = "reject"
UNDONE = "undone"  # withdraws this labeler's earlier verdict on the image
SKIP = "skip"  # seen and skipped: no verdict
# What `label` may hold: the verdict it means (1 accept, 0 reject, None no verdict).
LABEL_VALUES: dict[str, int | None] = {ACCEPT: 1, REJECT: 0, "1": 1, "0": 0, UNDONE: None, SKIP: None}

RATING_MIN, RATING_MAX = 1, 5

# Reasons: the product check's issue codes, then what only a person sees.
PROMPT_MISMATCH = "prompt_mismatch"
BACKGROUND = "background"
ARTEFACT = "artefact"
OTHER = "other"
REASONS: tuple[str, ...] = ISSUE_CODES + (PROMPT_MISMATCH, BACKGROUND, ARTEFACT, OTHER)

SOURCE_QA = "qa"
SOURCE_MERCHANT_RETRY = "merchant_retry"
SOURCE_MERCHANT_NO_RETRY = "merchant_no_retry"
SOURCES: tuple[str, ...] = (SOURCE_QA, SOURCE_MERCHANT_RETRY, SOURCE_MERCHANT_NO_RETRY)

DEFAULT_LABELS = "labels.csv"

# What the review page reads from calibrate.py's outputs for uncertainty order (label.py
# --calibration): a `p_accept` column in the scores CSV, and the top-level "threshold" key of
# calibration.json. Kept to these two names so the stages stay loosely coupled.
P_ACCEPT = col.P_ACCEPT
CALIBRATION_THRESHOLD = "threshold"
DEFAULT_THRESHOLD = 0.5
