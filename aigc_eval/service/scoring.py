"""The service's side of scoring: request items to rows, rows through the scoring core that
main.py --input uses (ScoringCore), and ScoredRows to results with the one decision function
(metrics.decide) that the batch run and the stream use.

One image has no batch to take an Inception Score against, so its Inception term is
KL(p(y|x) || p_ref(y)) against a reference marginal (metrics.kl_to_marginal); without one the
term is left out of the total. See docs/service.md.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch

from aigc_eval.io.csv_io import finite_or_none
from aigc_eval import columns as col
from aigc_eval.metrics.base import MetricResult
from aigc_eval.metrics.decide import decide, decision_settings, with_calibration
from aigc_eval.metrics.registry import default_metric_names, flagged_metrics, metric_templates
from aigc_eval.metrics.setup import MetricSetup
from aigc_eval.product import names as pn
from aigc_eval.product.stage import ProductOptions
from aigc_eval.scoring.core import ScoredRow, ScoringCore
from aigc_eval.scoring.metrics import DEFAULT_CLIP_CEILING
from aigc_eval.scoring.prompt_cleaning import CleaningOptions, clean_rows
from aigc_eval.scoring.result_files import PRODUCT_METRICS
from aigc_eval.scoring.runtime import RuntimeOptions
from aigc_eval.service.schemas import (
    IS_TERM_OMITTED,
    Components,
    ItemResult,
    MetricOutcome,
    ProductCheck,
    ScoreItem,
)

# Distinct prompts whose text embedding the CLIP scorer keeps in memory; past this the dict is
# emptied between batches (the score cache on disk still has them), so memory stays flat.
TEXT_EMBEDDINGS_KEPT = 20_000
_PRODUCT_FIELDS = {pn.PRODUCT_SCORE, pn.PRODUCT_ISSUES, pn.PRODUCT_CROP_BOX, col.STATUS, col.ERROR}


class BadItem(ValueError):
    """An item the service refuses before scoring (400); `field` names what was wrong."""

    def __init__(self, field_path: str, message: str):
        super().__init__(message)
        self.field = field_path


@dataclass
class ServiceSettings:
    """Everything serve.py's flags decide."""

    model_name: str
    model_dir: Path | None
    weights: Path | None
    runtime: RuntimeOptions
    product: ProductOptions = field(default_factory=ProductOptions)
    cleaning: CleaningOptions = field(default_factory=CleaningOptions)
    metrics: tuple[str, ...] | None = None  # None: every registered metric
    metric_weights: dict[str, float] = field(default_factory=dict)  # --weight NAME=W over the defaults
    thresholds: dict[str, str] = field(default_factory=dict)  # --threshold NAME.RULE=V over the defaults
    clip_ceiling: float = DEFAULT_CLIP_CEILING
    max_wait_ms: float = 10.0
    max_queue: int = 64
    deadline_s: float = 30.0
    max_body_bytes: int = 16 * 1024 * 1024
    token: str | None = None
    reference_marginal: Path | None = None
    allow_private_urls: bool = False
    calibration: Path | None = None  # calibrate.py's file: learned weights, p_accept
    store: str | None = None  # --store: also record every answer in the results store
    generator_version: str = ""

    def __post_init__(self) -> None:
        metrics = metric_templates(self.metric_names())
        settings = decision_settings(metrics, self.metric_weights, self.thresholds)  # checks names and values
        if self.calibration is not None:
            with_calibration(metrics, settings, self.calibration)  # a file that does not fit: one line, now
        if self.reference_marginal is None and not any(settings.weight(n) > 0 for n in metrics if n != "inception"):
            raise ValueError("without --reference-marginal the Inception term is left out: give another metric "
                             "(--clip-weight) a positive weight")
        if self.max_queue < 1 or self.deadline_s <= 0 or self.max_wait_ms < 0 or self.max_body_bytes < 1:
            raise ValueError("--max-queue, --deadline-s and --max-body-mb must be positive, --max-wait-ms not negative")

    def metric_names(self) -> list[str]:
        if self.metrics is not None:
            return list(self.metrics)
        return default_metric_names(flagged_metrics(self.metric_weights, self.thresholds))

    def metric_setup(self, runtime: RuntimeOptions, marginal: torch.Tensor | None) -> MetricSetup:
        """The metrics' setup: cut-outs read from product_image_url, one image's IS term against `marginal`."""
        product = dataclasses.replace(self.product, product_col=col.PRODUCT_IMAGE_URL)
        return MetricSetup(runtime=runtime, model_name=self.model_name, model_dir=self.model_dir, weights=self.weights,
                           clip_ceiling=self.clip_ceiling, product=product, reference_marginal=marginal,
                           category_col=col.CATEGORY)


def load_reference_marginal(path: Path, num_classes: int) -> torch.Tensor:
    """The reference p_ref(y) (float64, sums to 1) in `path`: an .npy of (N, C) logits, as
    evaluate_is.py --save-logits writes (the marginal is their mean softmax), or of C probabilities."""
    try:
        array = np.load(Path(path), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--reference-marginal {path}: not a readable .npy file ({exc})") from None
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise ValueError(f"--reference-marginal {path}: expected finite numbers, got {array.dtype}")
    values = torch.from_numpy(np.asarray(array, dtype=np.float64))
    if values.dim() == 2 and values.shape[0] >= 1 and values.shape[1] == num_classes:
        return values.softmax(dim=1).mean(dim=0)
    if values.dim() == 1 and values.shape[0] == num_classes:
        if (values < 0).any() or not math.isclose(float(values.sum()), 1.0, abs_tol=1e-3):
            raise ValueError(f"--reference-marginal {path}: a {num_classes}-vector must be probabilities summing to 1")
        return values / values.sum()
    raise ValueError(f"--reference-marginal {path}: expected (N, {num_classes}) logits or {num_classes} probabilities, "
                     f"got shape {tuple(array.shape)}")


def _check_url(value: str, where: str) -> str:
    """`value` when it is an http(s) URL with a host; BadItem otherwise (local paths are never read)."""
    parts = urlsplit(value.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise BadItem(where, f"{where} must be an http or https URL, got {value[:100]!r}")
    return value.strip()


def _data_uri(value: str, where: str) -> str:
    """The base64 payload as a data: URI for the fetch path; BadItem when it is not valid base64."""
    payload = value.partition(",")[2] if value.lstrip().lower().startswith("data:") else value
    payload = "".join(payload.split())  # line breaks, as MIME encoders add them, are fine
    try:
        if not payload or not base64.b64decode(payload, validate=True):
            raise ValueError("empty")
    except (binascii.Error, ValueError) as exc:
        raise BadItem(where, f"{where} is not valid base64 ({exc})") from None
    return f"data:;base64,{payload}"


def _finite(value: object) -> object:
    """A JSON-safe measurement: numpy scalars as Python ones, NaN and infinities as null."""
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


_number = finite_or_none  # one parser of number cells (io/csv_io.py)


class ScoringService:
    """Items to rows (`rows_for`), rows to results (`process`, run in the batcher's thread)."""

    def __init__(self, core: ScoringCore, settings: ServiceSettings, marginal: torch.Tensor | None):
        self.core, self.settings, self.marginal = core, settings, marginal
        self.decision = decision_settings(core.metrics, settings.metric_weights, settings.thresholds)
        if settings.calibration is not None:
            self.decision = with_calibration(core.metrics, self.decision, settings.calibration)
        self.cleaning = CleaningOptions(settings.cleaning.enabled, settings.cleaning.rules_path,
                                        settings.cleaning.subjects_path, col.CATEGORY)
        self.is_term = (f"included: KL to the reference marginal {Path(settings.reference_marginal).name}"
                        if marginal is not None else IS_TERM_OMITTED)
        self.recorder: object = None  # with --store: the results store's Recorder (app.py opens it)

    def rows_for(self, items: list[ScoreItem]) -> list[dict[str, str]]:
        """The core's input rows for `items`, prompts cleaned as main.py cleans them; BadItem for an
        image or cut-out reference the service refuses before fetching."""
        rows = []
        for index, item in enumerate(items):
            where = f"items.{index}." if len(items) > 1 else ""
            image = (_check_url(item.image_url, where + "image_url") if item.image_url is not None
                     else _data_uri(item.image_base64 or "", where + "image_base64"))
            product = item.product_image_url
            rows.append({col.ID: item.id or "", col.PROMPT: item.prompt, col.IMAGE_URL: image,
                         col.CATEGORY: item.category or "",
                         col.PRODUCT_IMAGE_URL: _check_url(product, where + "product_image_url") if product else ""})
        return clean_rows(rows, col.PROMPT, self.cleaning, col.RAW_PROMPT)

    def process(self, rows: list[dict[str, str]]) -> list[ItemResult]:
        """Score one batch through the core: rows with a cut-out get the product check (decoded at
        its size, as main.py --input does for inputs with the cut-out column), the others not."""
        core = self.core
        if core.clip is not None and len(core.clip.text_embeddings) > TEXT_EMBEDDINGS_KEPT:
            core.clip.text_embeddings.clear()
        with_cutout = [i for i, row in enumerate(rows) if row[col.PRODUCT_IMAGE_URL]]
        without = [i for i, row in enumerate(rows) if not row[col.PRODUCT_IMAGE_URL]]
        groups = [([rows[i] for i in with_cutout], ()), ([rows[i] for i in without], PRODUCT_METRICS)]
        with ThreadPoolExecutor(2, thread_name_prefix="prepare") as pool:  # both groups fetch at once
            futures = [pool.submit(lambda g: list(core.prepare(g[0], col.IMAGE_URL, None, without=g[1])), group)
                       for group in groups if group[0]]
            prepared = [item for future in futures for item in future.result()]
        order = with_cutout + without
        scored = core.submit(prepared, col.PROMPT)()
        results: list[ItemResult | None] = [None] * len(rows)
        for index, one in zip(order, scored):
            results[index] = self.result(one)
        if self.recorder is not None:  # in the batcher's thread, after the answers are made
            self.recorder.record([self.store_row(rows[i], results[i]) for i in order],  # type: ignore[attr-defined]
                                 [e.numpy() if (e := one.clip_embedding) is not None else None for one in scored])
        return results  # type: ignore[return-value]

    @staticmethod
    def store_row(row: dict[str, str], result: ItemResult | None) -> dict[str, object]:
        """An answer as a results-store row (result_total.csv's names)."""
        answer = result.model_dump() if result is not None else {}
        product = answer.get("product") or {}
        return {col.ID: row.get(col.ID) or answer.get("id") or "", col.IMAGE_URL: "" if row.get(col.IMAGE_URL, "").startswith("data:") else row.get(col.IMAGE_URL, ""),
                col.CATEGORY: row.get(col.CATEGORY) or None, col.STATUS: answer.get("status"),
                col.ERROR: answer.get("error") or "", col.TOTAL_SCORE: answer.get("total_score"),
                col.P_ACCEPT: answer.get("p_accept"), col.CLIP_SCORE: answer.get("clip_score"),
                col.TOP1_LABEL: answer.get("top1_label"), col.TOP1_CONFIDENCE: answer.get("top1_confidence"),
                pn.PRODUCT_SCORE: product.get("product_score"),
                pn.PRODUCT_ISSUES: ";".join(product.get("product_issues") or []),
                col.REGENERATE: "; ".join(answer.get("regenerate") or [])}

    def result(self, scored: ScoredRow) -> ItemResult:
        """One row's result: every metric's values and metrics.decide's total and reasons."""
        row, results = scored.row, scored.results
        clip = results.get("clip", MetricResult()).values
        inception = results.get("inception", MetricResult()).values
        truncated = clip.get(col.PROMPT_TRUNCATED)
        out: dict[str, object] = {
            "id": row.get(col.ID) or None, "prompt": row.get(col.PROMPT, ""), "raw_prompt": row.get(col.RAW_PROMPT, ""),
            "clip_score": _number(clip.get(col.CLIP_SCORE)), "prompt_tokens": clip.get(col.PROMPT_TOKENS),
            "prompt_truncated": str(truncated) == "true" if truncated is not None else None,
            "is_term": self.is_term, "product": self._product(scored) if "product" in results else None,
            "top1_class": inception.get(col.TOP1_CLASS), "top1_label": inception.get(col.TOP1_LABEL),
            "top1_confidence": _number(inception.get(col.TOP1_CONFIDENCE)), "kl": _number(inception.get(col.KL)),
            "metrics": {name: MetricOutcome(status=r.status, error=r.error or None,  # type: ignore[arg-type]
                                            values={k: _finite(v) for k, v in r.values.items()})
                        for name, r in results.items()},
        }
        decision = decide(self.core.metrics, results, self.decision, label=None, category=row.get(col.CATEGORY) or None)
        if decision.status != col.STATUS_OK:
            return ItemResult(**out, status=decision.status, error=decision.error or scored.error or "not scored")
        terms, weights = decision.terms, decision.weights
        components = Components(
            clip_norm=_number(clip.get(col.CLIP_NORM)), is_norm=terms.get("inception"),
            product_score=terms.get("product"), clip_weight=weights.get("clip", 0.0),
            is_weight=weights.get("inception", 0.0), product_weight=weights.get("product", 0.0),
            terms=terms, weights=weights)
        return ItemResult(**out, status="ok", total_score=decision.total, p_accept=decision.p_accept,
                          components=components, regenerate=decision.regenerate)

    @staticmethod
    def _product(scored: ScoredRow) -> ProductCheck:
        fields = scored.fields("product")
        fields.update(scored.results["product_clip"].values if "product_clip" in scored.results else {})
        issues = str(fields.get(pn.PRODUCT_ISSUES) or "")
        box = str(fields.get(pn.PRODUCT_CROP_BOX) or "").split()
        return ProductCheck(
            status=str(fields.get(col.STATUS) or "error"), error=str(fields.get(col.ERROR) or "") or None,  # type: ignore[arg-type]
            product_score=_number(fields.get(pn.PRODUCT_SCORE)),
            product_issues=[issue for issue in issues.split(";") if issue],
            crop_box=[int(float(v)) for v in box] if box else None,
            measurements={k: _finite(v) for k, v in fields.items() if k not in _PRODUCT_FIELDS and v != ""})
