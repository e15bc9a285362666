"""Product fidelity and composition (no weights): is the merchant's cut-out intact and placed as
the marketplace asks? Runs on each decoded image in the fetch threads (aigc_eval/product/).

Its term is product_score (0..1, docs/product_checks.md); its issue codes join the regenerate
reasons. A failed check (cut-out missing, unusable) never fails the image: it is said in
product_error and the total leaves the product term out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from aigc_eval import columns as col
from aigc_eval.metrics.base import BatchContext, Column, Metric, MetricResult, Term
from aigc_eval.metrics.setup import MetricSetup
from aigc_eval.product import names as pn
from aigc_eval.product.stage import CUTOUT_KEY, ProductChecker
from aigc_eval.scoring.image_pipeline import PreparedRow

DEFAULT_PRODUCT_WEIGHT = 0.5  # beside clip 0.6 and inception 0.4: a third of the total


class ProductMetric(Metric):
    name = "product"
    title = "product fidelity and composition against the merchant's cut-out (no weights)"
    columns = tuple(Column(name, "see docs/product_checks.md", "s" if name == pn.PRODUCT_SCORE else None)
                    for name in (*pn.PRODUCT_COLUMNS, pn.PRODUCT_CROP_BOX))
    term = Term(pn.PRODUCT_SCORE, DEFAULT_PRODUCT_WEIGHT, "the product check's score, 0..1", alias="product-weight")
    required = False
    after_total = (pn.PRODUCT_SCORE, pn.PRODUCT_ISSUES, col.PRODUCT_ERROR, pn.PRODUCT_CROP_BOX)
    required_when_ok = (pn.PRODUCT_SCORE,)
    error_column = col.PRODUCT_ERROR  # type: ignore[assignment]
    result_file = col.DEFAULT_PRODUCT_OUTPUT

    def __init__(self, setup: MetricSetup):
        self.setup = setup
        self._checkers: dict[Path | None, ProductChecker] = {}

    def load(self) -> None:
        pass

    def checker(self, base_dir: Path | None) -> ProductChecker:
        """The check for rows whose relative paths are read from `base_dir`; one per folder for the
        metric's life, so its cache of prepared cut-outs outlives a batch."""
        if base_dir not in self._checkers:
            self._checkers[base_dir] = ProductChecker(self.setup.product, self.setup.runtime.fetch, base_dir)
        return self._checkers[base_dir]

    def submit(self, batch: Sequence[PreparedRow], ctx: BatchContext) -> Callable[[], list[MetricResult]]:
        results = [self.result(item.extra[self.name]) if self.name in item.extra else None for item in batch]
        return lambda: results

    @staticmethod
    def result(fields: dict[str, object]) -> MetricResult:
        """A MetricResult from the check's fields (ProductChecker's output for one image)."""
        values = {k: v for k, v in fields.items() if k not in (col.STATUS, col.ERROR, CUTOUT_KEY)}
        features = {CUTOUT_KEY: fields[CUTOUT_KEY]} if CUTOUT_KEY in fields else {}
        return MetricResult(str(fields.get(col.STATUS) or col.STATUS_ERROR), str(fields.get(col.ERROR) or ""),
                            values, features)

    def issues(self, result: MetricResult) -> list[str]:
        return [issue for issue in str(result.values.get(pn.PRODUCT_ISSUES) or "").split(";") if issue]
