"""CLIPScore with Chinese-CLIP: does the image show what the prompt says?

clip_score is cos(image embedding, text embedding) of the cleaned prompt, -1..1 (mostly 0..0.6);
its term clip_norm = min(max(clip_score, 0), ceiling) / ceiling with ceiling 0.6 (--clip-ceiling).
"""

from __future__ import annotations

from typing import Callable, Sequence

from aigc_eval import columns as col
from aigc_eval.metrics.base import BatchContext, Column, Metric, MetricResult, Rule, Term
from aigc_eval.metrics.setup import MetricSetup
from aigc_eval.scoring.clipscore import ClipScorer
from aigc_eval.scoring.image_pipeline import PreparedRow
from aigc_eval.scoring.metrics import normalise_clip

DEFAULT_MIN_CLIP = 0.3  # the article's threshold for re-generation


class ClipMetric(Metric):
    name = "clip"
    title = "CLIPScore (Chinese-CLIP): cosine of the image and prompt embeddings"
    columns = (
        Column(col.CLIP_SCORE, "cos(image embedding, text embedding), -1..1", ".6f"),
        Column(col.PROMPT_TOKENS, "tokens of the scored prompt, [CLS] and [SEP] included", "d"),
        Column(col.PROMPT_TRUNCATED, "true when the prompt is longer than the 52-token context"),
        Column(col.CLIP_NORM, "min(max(clip_score, 0), ceiling) / ceiling", ".6f"),
    )
    term = Term(col.CLIP_NORM, 0.6, "clip_score mapped to 0..1 by the ceiling (0.6)", alias="clip-weight")
    rules = (Rule("min", col.CLIP_SCORE, DEFAULT_MIN_CLIP, "flag images whose clip_score is below this",
                  alias="min-clip", low=-1.0, high=1.0),)
    total_columns = (col.CLIP_SCORE,)
    required_when_ok = (col.CLIP_SCORE,)
    result_file = col.DEFAULT_CLIP_OUTPUT

    def __init__(self, setup: MetricSetup):
        if not 0 < setup.clip_ceiling <= 1:
            raise ValueError(f"--clip-ceiling must be in (0, 1], got {setup.clip_ceiling}")
        self.setup, self.ceiling = setup, setup.clip_ceiling
        self.scorer: ClipScorer | None = None

    def load(self) -> None:
        s = self.setup
        self.scorer = self.stage = ClipScorer.load(s.model_name, s.model_dir, s.device, s.runtime.precision, s.cache)

    def warm_up(self) -> list[Callable[[], object]]:
        return [self.scorer.model.get]

    def submit(self, batch: Sequence[PreparedRow], ctx: BatchContext) -> Callable[[], list[MetricResult]]:
        embeddings: list = []
        done = self.scorer.submit_batch(batch, ctx.prompt_col, ctx.lanes, slot=ctx.slot, embeddings=embeddings)

        def finish() -> list[MetricResult]:
            return [self.result(fields, embedding) for fields, embedding in zip(done(), embeddings)]

        return finish

    def result(self, fields: dict[str, object], embedding: object = None) -> MetricResult:
        """A MetricResult from ClipScorer's fields for one row (clip_norm added when scored)."""
        values = {k: v for k, v in fields.items() if k not in (col.STATUS, col.ERROR)}
        if isinstance(values.get(col.CLIP_SCORE), float):
            values[col.CLIP_NORM] = normalise_clip(values[col.CLIP_SCORE], self.ceiling)  # type: ignore[arg-type]
        return MetricResult(str(fields[col.STATUS]), str(fields.get(col.ERROR) or ""), values,
                            {"embedding": embedding} if embedding is not None else {})

    def from_text(self, fields, status, error):  # type: ignore[override]
        result = super().from_text({k: v for k, v in fields.items() if k != col.CLIP_NORM}, status, error)
        if result.ok:
            result.values[col.CLIP_NORM] = normalise_clip(float(result.values[col.CLIP_SCORE]), self.ceiling)  # type: ignore[arg-type]
        return result
