"""The metric interface: what a metric declares, and the typed result it gives per image.

A metric is one class (one module): its name and definition version, the columns it writes
(with their definitions and how they are formatted), what it needs from an image (a model
input prepared in the fetch threads: `stage`; or the decoded image: `row_check`) and from
the row, its batch scoring (`submit`), an optional summary over the whole run (`summarise`,
for set-level metrics such as the Inception Score), and its part in the decision: how its
values become a 0..1 term (`term`), its default weight, and its regenerate rules.
Values stay typed (floats, ints, strings) until a sink formats them (`format_value`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

from aigc_eval import columns as col

if TYPE_CHECKING:
    from aigc_eval.scoring.image_pipeline import PreparedRow, RowCheck, Stage
    from aigc_eval.scoring.model_lanes import ModelLanes


@dataclass(frozen=True)
class Column:
    """An output column: its name, its definition (for the docs and --help), and how a float is
    written (`fmt`, e.g. ".6f"; None writes str())."""

    name: str
    definition: str
    fmt: str | None = None


@dataclass(frozen=True)
class Rule:
    """A regenerate rule: flag an ok image when `column` is below (or above, `below=False`) the
    threshold. Its key on the command line is `<metric>.<name>` (--threshold clip.min=0.3);
    `alias` is the older flag with the same meaning. `enabled` False: off unless switched on."""

    name: str
    column: str
    default: float
    description: str
    below: bool = True
    alias: str | None = None
    enabled: bool = True
    low: float = -math.inf  # the values a threshold may take
    high: float = math.inf

    def fires(self, value: float, threshold: float) -> bool:
        return value < threshold if self.below else value > threshold

    def reason(self, value: float, threshold: float) -> str:
        return f"{self.column} {value:.3f} {'<' if self.below else '>'} {threshold:g}"


@dataclass(frozen=True)
class Term:
    """A metric's term in the total: the output column holding the 0..1 value, its default
    weight, which way is better, and the older weight flag (`alias`)."""

    column: str
    default_weight: float
    definition: str
    higher_is_better: bool = True
    alias: str | None = None


@dataclass
class MetricResult:
    """One metric's outcome for one image: status (ok, error or skipped), why, its typed values,
    and `features` kept for later steps (embeddings, logits), never written as columns."""

    status: str = col.STATUS_ERROR
    error: str = ""
    values: dict[str, object] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == col.STATUS_OK


@dataclass
class BatchContext:
    """What a metric's batch scoring may use besides its own prepared inputs."""

    prompt_col: str
    lanes: "ModelLanes"
    slot: int | None  # this metric's stage slot in PreparedRow.inputs / cached (None without a stage)
    earlier: dict[str, Callable[[], list[MetricResult]]] = field(default_factory=dict)  # metrics submitted before


class Metric:
    """Base class of every metric; see the module docstring. Subclasses set the class attributes
    and override what they need."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    title: ClassVar[str] = ""  # one line for --help and the docs
    columns: ClassVar[tuple[Column, ...]] = ()  # per-image columns, in their result_total.csv order
    term: ClassVar[Term | None] = None
    rules: ClassVar[tuple[Rule, ...]] = ()
    required: ClassVar[bool] = True  # its failure makes the image an error (else only its own error column)
    needs: ClassVar[tuple[str, ...]] = ()  # metrics whose results its submit reads (run first)
    result_file: ClassVar[str] = ""  # its stage script's output, named in merged error messages
    # False: run only when named by --metrics, or by a --weight/--threshold flag (a costly
    # metric whose default weight is 0 and whose rules are off adds nothing to a decision).
    on_by_default: ClassVar[bool] = True
    # Its columns in result_total.csv: `total_columns` before the terms and the total, `after_total`
    # after them (a term column listed there is not repeated among the terms).
    total_columns: ClassVar[tuple[str, ...]] = ()
    after_total: ClassVar[tuple[str, ...]] = ()
    required_when_ok: ClassVar[tuple[str, ...]] = ()  # columns an ok row must have as finite numbers

    @property
    def error_column(self) -> str:
        """Where result_total.csv says why this (optional) metric failed for an image."""
        return f"{self.name}_error"

    # --- preparing and scoring -------------------------------------------------------------
    stage: "Stage | None" = None  # a model input made in the fetch threads, with cached features
    row_check: "RowCheck | None" = None  # runs on each decoded image in the fetch threads

    def warm_up(self) -> list[Callable[[], object]]:
        """Functions that load this metric's models (called in a lane when first needed)."""
        return []

    def submit(self, batch: Sequence["PreparedRow"], ctx: BatchContext) -> Callable[[], list[MetricResult]]:
        """Queue the batch's work (in ctx.lanes) and return a function that waits for it and
        gives one MetricResult per row of `batch`, in order."""
        raise NotImplementedError

    def summarise(self, rows: Sequence[Mapping[str, str]], results: list[MetricResult]) -> dict[str, object]:
        """Set-level figures over the whole run; may complete the per-image values (IS's KL
        against the run's marginal). Per-image metrics need none."""
        return {}

    # --- deciding --------------------------------------------------------------------------
    def term_value(self, result: MetricResult) -> float | None:
        """The 0..1 term of an ok result (None: no term for this image, left out of the total)."""
        if self.term is None or not result.ok:
            return None
        value = result.values.get(self.term.column)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    def issues(self, result: MetricResult) -> list[str]:
        """Regenerate reasons this metric names by itself, beside its rules (issue codes)."""
        return []

    # --- reading and writing ---------------------------------------------------------------
    @classmethod
    def column_names(cls) -> list[str]:
        return [c.name for c in cls.columns]

    def from_text(self, fields: Mapping[str, str], status: str, error: str) -> MetricResult:
        """A MetricResult from a written row (a result CSV, a stream shard): the one parser of
        this metric's columns. Numbers that are not finite are refused with a ValueError."""
        values: dict[str, object] = {}
        if status == col.STATUS_OK:
            for name in self.required_when_ok:
                if fields.get(name, "") in ("", None):
                    raise ValueError(f"{name} is not a finite number ({fields.get(name, '')!r})")
        for column in self.columns:
            text = fields.get(column.name, "")
            if text in ("", None):
                continue
            values[column.name] = parse_value(column, text) if status == col.STATUS_OK or column.fmt is None \
                else _maybe_number(text)
        return MetricResult(status or col.STATUS_ERROR, error, values)


def format_value(value: object, fmt: str | None) -> str:
    """How a value is written to CSV: floats with the column's format, None as empty."""
    if value is None:
        return ""
    if isinstance(value, float) and fmt:
        return format(value, fmt)
    return str(value)


def parse_value(column: Column, text: str) -> object:
    """A written value back to a number when its column has a number format; ValueError when
    it is not a finite number."""
    if column.fmt is None:
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{column.name} is not a finite number ({text!r})")
    return int(value) if column.fmt == "d" else value


def _maybe_number(text: str) -> object:
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text
