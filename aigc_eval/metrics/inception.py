"""Inception-v3: is each image recognisable (its top-1 ImageNet class and confidence), and are
the images varied (the Inception Score of the run, a set-level summary)?

Each image's term is is_norm = KL(p(y|x) || p(y)) / ln(classes), clipped to 0..1, with p(y) the
mean prediction of the run (a batch run: known once every image is scored), or a reference
marginal (the service's --reference-marginal). Without either (a stream worker) the image has
no Inception term and the total leaves it out.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from aigc_eval import columns as col
from aigc_eval.metrics.base import BatchContext, Column, Metric, MetricResult, Rule, Term
from aigc_eval.metrics.setup import MetricSetup
from aigc_eval.scoring.image_pipeline import PreparedRow
from aigc_eval.scoring.inception import InceptionScorer, inception_summary, top1_fields
from aigc_eval.scoring.metrics import kl_to_marginal, normalise_kl
from aigc_eval.scoring.model_loading import inception_categories

DEFAULT_MIN_CONFIDENCE = 0.15  # Inception top-1 probability; below it the product is rarely recognisable
DEFAULT_NUM_CLASSES = 1000


class InceptionMetric(Metric):
    name = "inception"
    title = "Inception-v3: top-1 class and confidence per image, Inception Score per run"
    columns = (
        Column(col.TOP1_CLASS, "ImageNet class index of the largest probability", "d"),
        Column(col.TOP1_LABEL, "that class's name"),
        Column(col.TOP1_CONFIDENCE, "the largest softmax probability", ".6f"),
        Column(col.KL, "KL(p(y|x) || p(y)) in nats, p(y) the run's (or the reference's) mean prediction", ".6f"),
        Column(col.IS_NORM, "kl / ln(classes), clipped to 0..1", ".6f"),
    )
    term = Term(col.IS_NORM, 0.4, "the image's KL term of the Inception Score, over ln(classes)", alias="is-weight")
    rules = (Rule("min_confidence", col.TOP1_CONFIDENCE, DEFAULT_MIN_CONFIDENCE,
                  "flag images whose Inception top-1 confidence is below this", alias="min-confidence", low=0.0, high=1.0),)
    total_columns = (col.TOP1_LABEL, col.TOP1_CONFIDENCE, col.KL)
    required_when_ok = (col.TOP1_CONFIDENCE,)  # and kl, in a file that has the column (not a stream shard)
    result_file = col.DEFAULT_IS_OUTPUT

    def __init__(self, setup: MetricSetup):
        self.setup = setup
        self.scorer: InceptionScorer | None = None
        self.num_classes = DEFAULT_NUM_CLASSES
        self.marginal = setup.reference_marginal

    def load(self) -> None:
        s = self.setup
        self.scorer = self.stage = InceptionScorer.load(s.weights, s.device, s.runtime.precision, s.cache, s.keep_pool)
        self.num_classes = len(self.scorer.categories)

    @property
    def categories(self) -> list[str]:
        return self.scorer.categories if self.scorer is not None else inception_categories()

    def warm_up(self) -> list[Callable[[], object]]:
        return [self.scorer.model.get]

    def submit(self, batch: Sequence[PreparedRow], ctx: BatchContext) -> Callable[[], list[MetricResult]]:
        done = self.scorer.submit_logits(batch, ctx.lanes, slot=ctx.slot)

        def finish() -> list[MetricResult]:
            features = iter(done())
            return [self.result(*self.scorer.split_features(next(features))) if item.ok
                    else MetricResult(col.STATUS_ERROR, item.error) for item in batch]

        return finish

    def result(self, logits: torch.Tensor, pool: torch.Tensor | None = None) -> MetricResult:
        """One image's result from its logits: top-1 now, KL when a reference marginal is known."""
        values = top1_fields(logits, self.categories)
        if self.marginal is not None:
            self.add_kl(values, float(kl_to_marginal(logits.unsqueeze(0), self.marginal)[0]))
        return MetricResult(col.STATUS_OK, "", values, {"logits": logits, "pool": pool})

    def add_kl(self, values: dict[str, object], kl: float) -> None:
        values[col.KL] = kl
        values[col.IS_NORM] = normalise_kl(kl, self.num_classes)

    def summarise(self, rows: Sequence[Mapping[str, str]], results: list[MetricResult]) -> dict[str, object]:
        """The Inception Score of the run (result_is.json) and each image's KL against its marginal."""
        logits = [r.features["logits"] for r in results if r.ok]
        stacked = torch.stack(logits) if logits else torch.empty(0, len(self.categories))
        fields, summary = inception_summary(stacked, list(rows), [r.error if not r.ok else "" for r in results],
                                            self.categories, self.setup.splits, self.setup.category_col)
        for result, field in zip(results, fields):
            if result.ok:
                self.add_kl(result.values, float(field[col.KL]))  # type: ignore[arg-type]
        return summary

    def with_summary(self, summary: Mapping[str, object]) -> None:
        """Read the class count from a written summary (result_is.json), for merging written results."""
        self.num_classes = int(summary.get(col.KEY_NUM_CLASSES, DEFAULT_NUM_CLASSES))  # type: ignore[arg-type]

    def from_text(self, fields, status, error):  # type: ignore[override]
        if status == col.STATUS_OK and col.KL in fields and not fields[col.KL]:
            raise ValueError(f"{col.KL} is not a finite number ('')")
        result = super().from_text({k: v for k, v in fields.items() if k != col.IS_NORM}, status, error)
        if result.ok and col.KL in result.values:
            self.add_kl(result.values, float(result.values[col.KL]))  # type: ignore[arg-type]
        return result
