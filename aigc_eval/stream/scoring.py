"""A batch of delivered rows through the scoring core main.py --input uses, to shard rows.

`prepare` runs in the worker's preparing thread, never on the IOLoop: it cleans the prompts (as
main.py does) and fetches and decodes the images through the core's worker threads (with the
product check when enabled: every row then goes through it, as main.py runs it on every row of
an input with the cut-out column), handing each message's rows back as soon as they are done.
`submit` queues a batch's model work in the core's lanes, in the worker's submitting thread
(quick with lanes: it stacks the inputs; without them, on a GPU or one CPU thread, the models
run there and then); the function it returns waits for the models and builds the shard rows,
in the writing thread.
"""

from __future__ import annotations

import contextlib
import itertools
from datetime import datetime, timezone
from typing import Callable, Sequence

import torch

from aigc_eval import columns as col
from aigc_eval.collection.messages import LISTENER_COLUMNS
from aigc_eval.metrics.base import format_value
from aigc_eval.product import names as pn
from aigc_eval.product.stage import RESULT_COLUMNS as PRODUCT_RESULT_COLUMNS
from aigc_eval.scoring.clipscore import CLIP_RESULT_COLUMNS
from aigc_eval.scoring.core import ScoredRow, ScoringCore
from aigc_eval.scoring.image_pipeline import PreparedRow
from aigc_eval.scoring.prompt_cleaning import CleaningOptions, clean_rows

# Distinct prompts whose text embedding stays in memory; past this the dict is emptied between
# batches (the score cache on disk keeps them), so a long-running worker's memory stays flat.
TEXT_EMBEDDINGS_KEPT = 20_000
TOP1_COLUMNS = (col.TOP1_CLASS, col.TOP1_LABEL, col.TOP1_CONFIDENCE)
ScoredBatch = list[tuple[dict[str, object], "torch.Tensor | None"]]
Finish = Callable[[], ScoredBatch]


class BatchScorer:
    """Delivered rows -> (shard row, logits) pairs through a ScoringCore; see the module docstring."""

    def __init__(self, core: ScoringCore, cleaning: CleaningOptions, worker: str):
        self.core, self.cleaning, self.worker = core, cleaning, worker
        self.formats = {c.name: c.fmt for m in core.metrics.values() for c in m.columns}

    def warm_up(self) -> None:
        """Load the models now, in their lanes, so missing weights stop the worker before it subscribes."""
        for metric in self.core.metrics.values():
            for load in metric.warm_up():
                self.core.lanes.submit(load).result()

    def forget_prompts(self) -> None:
        """Empty the in-memory text embeddings when they grew large; only while no batch is in flight."""
        if self.core.clip is not None and len(self.core.clip.text_embeddings) > TEXT_EMBEDDINGS_KEPT:
            self.core.clip.text_embeddings.clear()

    def prepare(self, groups: Sequence[list[dict[str, str]]],
                on_ready: Callable[[int, list[PreparedRow]], None]) -> None:
        """Clean, fetch and decode the rows of every group (one message's rows each) through the
        core's worker threads, all at once and in order; `on_ready(i, prepared)` as soon as the
        i-th group's rows are done."""
        cleaned = clean_rows([row for group in groups for row in group], col.PROMPT, self.cleaning, col.RAW_PROMPT)
        with contextlib.closing(self.core.prepare(cleaned, col.IMAGE_URL, None)) as prepared:
            for index, group in enumerate(groups):
                on_ready(index, list(itertools.islice(prepared, len(group))))

    def submit(self, prepared: list[PreparedRow]) -> Finish:
        """Queue the prepared rows' model work in the lanes; the returned function waits for it."""
        finish = self.core.submit(prepared, col.PROMPT)
        return lambda: [(self.shard_row(scored), scored.logits) for scored in finish()]

    def _text(self, name: str, value: object) -> object:
        return format_value(value, self.formats.get(name)) if isinstance(value, float) else value

    def shard_row(self, scored: ScoredRow) -> dict[str, object]:
        """One image's shard row (shards.SHARD_COLUMNS) from the core's result."""
        row = scored.row
        out: dict[str, object] = {name: row.get(name, "") for name in (*LISTENER_COLUMNS, col.RAW_PROMPT, col.REQUEST_ID)}
        out[col.WORKER] = self.worker
        clip = scored.fields("clip")
        out.update({name: self._text(name, clip.get(name, "")) for name in CLIP_RESULT_COLUMNS})
        if scored.logits is not None:
            inception = scored.fields("inception")
            out.update({name: self._text(name, inception[name]) for name in TOP1_COLUMNS})
        else:
            out[col.IMAGE_ERROR] = scored.error or "not scored"
        product = scored.fields("product")
        out.update({name: product.get(name, "") for name in PRODUCT_RESULT_COLUMNS if name not in (col.STATUS, col.ERROR)})
        out[col.PRODUCT_STATUS] = product.get(col.STATUS, "")
        out[col.PRODUCT_ERROR] = product.get(col.ERROR, "")
        out[col.SCORED_AT] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        return out


def product_row(shard_row: dict[str, str]) -> dict[str, str]:
    """The product fields of a shard row under result_product.csv's names (status, error)."""
    fields = {name: shard_row.get(name, "") for name in (*pn.PRODUCT_COLUMNS, pn.PRODUCT_CROP_BOX)}
    return {**fields, col.STATUS: shard_row.get(col.PRODUCT_STATUS, ""), col.ERROR: shard_row.get(col.PRODUCT_ERROR, "")}
