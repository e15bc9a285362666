"""The service's side of scoring: request items to rows, rows through the scoring core that
main.py --input uses (ScoringCore), and ScoredRows to results with the batch merge's decisions.

One image has no batch to take an Inception Score against, so its Inception term is
KL(p(y|x) || p_ref(y)) against a reference marginal (metrics.kl_to_marginal); without one the
term is left out of the total. See docs/service.md.
"""

from __future__ import annotations

import base64
import binascii
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch

from aigc_eval import columns as col
from aigc_eval.decisions.rules import Thresholds, regenerate_reasons
from aigc_eval.product import names as pn
from aigc_eval.product.stage import ProductOptions
from aigc_eval.scoring.core import ScoredRow, ScoringCore
from aigc_eval.scoring.metrics import (
    DEFAULT_CLIP_CEILING,
    kl_to_marginal,
    normalise_clip,
    normalise_kl,
    weighted_total,
)
from aigc_eval.scoring.prompt_cleaning import CleaningOptions, clean_rows
from aigc_eval.scoring.runtime import RuntimeOptions
from aigc_eval.service.schemas import (
    IS_TERM_OMITTED,
    Components,
    ItemResult,
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
    thresholds: Thresholds = field(default_factory=Thresholds)
    clip_weight: float = 0.6
    is_weight: float = 0.4
    product_weight: float = 0.5
    clip_ceiling: float = DEFAULT_CLIP_CEILING
    max_wait_ms: float = 10.0
    max_queue: int = 64
    deadline_s: float = 30.0
    max_body_bytes: int = 16 * 1024 * 1024
    token: str | None = None
    reference_marginal: Path | None = None
    allow_private_urls: bool = False

    def __post_init__(self) -> None:
        weighted_total(0.0, 0.0, self.clip_weight, self.is_weight, 0.0, self.product_weight)  # checks the weights
        if self.reference_marginal is None and self.clip_weight <= 0:
            raise ValueError("--clip-weight must be positive without --reference-marginal (the IS term is left out)")
        if self.max_queue < 1 or self.deadline_s <= 0 or self.max_wait_ms < 0 or self.max_body_bytes < 1:
            raise ValueError("--max-queue, --deadline-s and --max-body-mb must be positive, --max-wait-ms not negative")


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


def _round6(value: float) -> float:
    """As result CSVs write numbers (%.6f), so the service and a batch run give equal values."""
    return float(f"{value:.6f}")


def _finite(value: object) -> object:
    """A JSON-safe measurement: numpy scalars as Python ones, NaN and infinities as null."""
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class ScoringService:
    """Items to rows (`rows_for`), rows to results (`process`, run in the batcher's thread)."""

    def __init__(self, core: ScoringCore, settings: ServiceSettings, marginal: torch.Tensor | None):
        self.core, self.settings, self.marginal = core, settings, marginal
        # One for the service's life: its bounded cache of prepared cut-outs (decoded, keypoints)
        # then serves every request that names a cut-out seen before, not only its own batch.
        self.checker = core.checker(None)
        self.num_classes = len(core.inception.categories)
        self.cleaning = CleaningOptions(settings.cleaning.enabled, settings.cleaning.rules_path,
                                        settings.cleaning.subjects_path, col.CATEGORY)
        self.is_term = (f"included: KL to the reference marginal {Path(settings.reference_marginal).name}"
                        if marginal is not None else IS_TERM_OMITTED)

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
        """Score one batch through the core: rows with a cut-out get the product check (decoded
        at its size, as main.py --input does for inputs with the cut-out column), the others not."""
        core = self.core
        if len(core.clip.text_embeddings) > TEXT_EMBEDDINGS_KEPT:
            core.clip.text_embeddings.clear()
        with_cutout = [i for i, row in enumerate(rows) if row[col.PRODUCT_IMAGE_URL]]
        without = [i for i, row in enumerate(rows) if not row[col.PRODUCT_IMAGE_URL]]
        groups = [([rows[i] for i in with_cutout], self.checker), ([rows[i] for i in without], None)]
        with ThreadPoolExecutor(2, thread_name_prefix="prepare") as pool:  # both groups fetch at once
            futures = [pool.submit(lambda g: list(core.prepare(g[0], col.IMAGE_URL, None, g[1])), group)
                       for group in groups if group[0]]
            prepared = [item for future in futures for item in future.result()]
        order = with_cutout + without
        scored = core.submit(prepared, col.PROMPT)()
        results: list[ItemResult | None] = [None] * len(rows)
        for index, one in zip(order, scored):
            results[index] = self.result(one)
        return results  # type: ignore[return-value]

    def result(self, scored: ScoredRow) -> ItemResult:
        """One row's result: the core's fields, the Inception term, and the batch merge's
        normalisation, weighted total and regenerate reasons."""
        s, row, clip = self.settings, scored.row, scored.clip
        out: dict[str, object] = {
            "id": row.get(col.ID) or None, "prompt": row.get(col.PROMPT, ""), "raw_prompt": row.get(col.RAW_PROMPT, ""),
            "clip_score": _number(clip.get(col.CLIP_SCORE)), "prompt_tokens": clip.get(col.PROMPT_TOKENS),
            "prompt_truncated": (str(clip[col.PROMPT_TRUNCATED]) == "true") if col.PROMPT_TRUNCATED in clip else None,
            "is_term": self.is_term, "product": self._product(scored.product) if scored.product else None,
        }
        if scored.logits is not None:
            probs = scored.logits.unsqueeze(0).double().softmax(dim=1)
            confidence, top1 = probs.max(dim=1)
            cls = int(top1[0])
            out.update(top1_class=cls, top1_label=self.core.inception.categories[cls],
                       top1_confidence=_round6(float(confidence[0])))
            if self.marginal is not None:
                out["kl"] = _round6(float(kl_to_marginal(scored.logits.unsqueeze(0), self.marginal)[0]))
        if scored.logits is None or clip.get(col.STATUS) == col.STATUS_ERROR:
            return ItemResult(**out, status="error", error=str(clip.get(col.ERROR) or scored.error or "not scored"))
        if clip.get(col.STATUS) == col.STATUS_SKIPPED:
            return ItemResult(**out, status="skipped", error=str(clip.get(col.ERROR) or "skipped"))
        # As decisions.merge: norms from the written (6-digit) scores, the product term from the
        # written norms; without a reference marginal the IS term has weight 0.
        is_weight = s.is_weight if self.marginal is not None else 0.0
        clip_norm = normalise_clip(float(out["clip_score"]), s.clip_ceiling)  # type: ignore[arg-type]
        is_norm = normalise_kl(float(out["kl"]), self.num_classes) if self.marginal is not None else 0.0  # type: ignore[arg-type]
        total = weighted_total(clip_norm, is_norm, s.clip_weight, is_weight)
        product = scored.product
        product_score = _number(product.get(pn.PRODUCT_SCORE)) if product.get(col.STATUS) == col.STATUS_OK else None
        if product_score is not None:
            total = weighted_total(_round6(clip_norm), _round6(is_norm), s.clip_weight, is_weight, product_score,
                                   s.product_weight)
        decided = {col.STATUS: col.STATUS_OK, col.CLIP_SCORE: out["clip_score"],
                   col.TOP1_CONFIDENCE: out["top1_confidence"], pn.PRODUCT_ISSUES: product.get(pn.PRODUCT_ISSUES, "")}
        reasons = regenerate_reasons(decided, s.thresholds)
        components = Components(
            clip_norm=_round6(clip_norm), is_norm=_round6(is_norm) if self.marginal is not None else None,
            product_score=product_score, clip_weight=s.clip_weight, is_weight=is_weight,
            product_weight=s.product_weight if product_score is not None else 0.0)
        return ItemResult(**out, status="ok", total_score=_round6(total), components=components,
                          regenerate=reasons.split("; ") if reasons else [])

    @staticmethod
    def _product(fields: dict[str, object]) -> ProductCheck:
        issues = str(fields.get(pn.PRODUCT_ISSUES) or "")
        box = str(fields.get(pn.PRODUCT_CROP_BOX) or "").split()
        return ProductCheck(
            status=str(fields.get(col.STATUS) or "error"), error=str(fields.get(col.ERROR) or "") or None,  # type: ignore[arg-type]
            product_score=_number(fields.get(pn.PRODUCT_SCORE)),
            product_issues=[issue for issue in issues.split(";") if issue],
            crop_box=[int(float(v)) for v in box] if box else None,
            measurements={k: _finite(v) for k, v in fields.items() if k not in _PRODUCT_FIELDS and v != ""})
