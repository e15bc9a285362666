"""The scoring core that main.py --input, the HTTP service and the stream workers share.

Both models (and the product check) are loaded once; rows are fetched, decoded and transformed
in worker threads (prepare), and each batch's model work is shared out to the model lanes
(submit), with the score cache serving what an earlier run computed. What a batch gives back is
one ScoredRow per input row: the CLIP result fields, the Inception logits, the product check.
Turning logits into IS (a batch run) or into one image's term (the service) is the caller's.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch

from aigc_eval.product.stage import ProductChecker, ProductOptions
from aigc_eval.scoring.clipscore import ClipScorer
from aigc_eval.scoring.image_pipeline import (
    FetchPool,
    PreparedRow,
    batched,
    prepare_rows,
    warm_up_when_needed,
)
from aigc_eval.scoring.inception import InceptionScorer
from aigc_eval.scoring.model_lanes import ModelLanes, queued_ahead
from aigc_eval.scoring.model_loading import resolve_device
from aigc_eval.scoring.runtime import RuntimeOptions
from aigc_eval.scoring.score_cache import open_cache


@dataclass
class ScoredRow:
    """One input row's outcome: `clip` holds the CLIP result fields (with status and error),
    `logits` the Inception logits (None when the image could not be prepared), `product` the
    product check's fields ({} when not checked), `error` why the image could not be prepared;
    `pool` and `clip_embedding` are the features the distribution metrics compare."""

    row: dict[str, str]
    clip: dict[str, object]
    logits: torch.Tensor | None
    product: dict[str, object] = field(default_factory=dict)
    error: str = ""
    pool: torch.Tensor | None = None  # Inception's 2048-d pool features, with keep_pool
    clip_embedding: torch.Tensor | None = None  # the image's CLIP embedding (None when it failed)


class ScoringCore:
    """Both scorers, their lanes and the run's options; see the module docstring."""

    def __init__(self, clip: ClipScorer, inception: InceptionScorer, lanes: ModelLanes, runtime: RuntimeOptions,
                 product: ProductOptions | None = None, fetch_pool: FetchPool | None = None):
        self.clip, self.inception, self.lanes = clip, inception, lanes
        self.runtime = runtime
        self.product = product
        self.fetch_pool = fetch_pool  # None: each prepare() call has threads and sessions of its own

    @classmethod
    @contextlib.contextmanager
    def open(cls, *, model_name: str, model_dir: Path | None, weights: Path | None, runtime: RuntimeOptions,
             product: ProductOptions | None = None, keep_pool: bool = False) -> Iterator["ScoringCore"]:
        """Prepare both models on the runtime's device (they load when first needed, in a lane)
        and their lanes, for the duration of the block. `keep_pool` also keeps (and caches)
        Inception's pool features, for FID and KID."""
        device = resolve_device(runtime.device)
        cache = open_cache(runtime.fetch.cache_dir)
        clip = ClipScorer.load(model_name, model_dir, device, runtime.precision, cache)
        inception = InceptionScorer.load(weights, device, runtime.precision, cache, keep_pool)
        # One fetch pool for the core's life: the service and stream workers call prepare() once
        # a batch, and keep-alive connections to the image hosts then outlive the batch.
        with ModelLanes(device) as lanes, FetchPool(runtime.fetch, runtime.workers) as fetch_pool:
            yield cls(clip, inception, lanes, runtime, product, fetch_pool)

    def checker(self, base_dir: Path | None) -> ProductChecker | None:
        """The product check for rows whose relative paths are read from `base_dir`, when enabled."""
        return ProductChecker(self.product, self.runtime.fetch, base_dir) if self.product is not None else None

    def prepare(self, rows: Iterable[dict[str, str]], image_col: str, base_dir: Path | None = None,
                checker: ProductChecker | None = None) -> Iterator[PreparedRow]:
        """Rows fetched, decoded and transformed in worker threads, two batches ahead, in order;
        each model starts loading in its lane when the first row that needs it goes by."""
        prepared = prepare_rows(rows, image_col, [self.clip, self.inception], self.runtime.fetch, self.runtime.workers,
                                base_dir, ahead=2 * self.runtime.batch_size, extra=checker, pool=self.fetch_pool)
        return warm_up_when_needed(prepared, [partial(self.lanes.warm_up, self.clip.model.get),
                                              partial(self.lanes.warm_up, self.inception.model.get)])

    def submit(self, batch: Sequence[PreparedRow], prompt_col: str) -> Callable[[], list[ScoredRow]]:
        """Queue a batch's model work in the lanes now; the returned function waits for it."""
        embeddings: list[torch.Tensor | None] = []
        clip_done = self.clip.submit_batch(batch, prompt_col, self.lanes, slot=0, embeddings=embeddings)
        features_done = self.inception.submit_logits(batch, self.lanes, slot=1)

        def finish() -> list[ScoredRow]:
            features = iter(features_done())
            clip_results = clip_done()
            scored = []
            for item, result, embedding in zip(batch, clip_results, embeddings):
                logits, pool = self.inception.split_features(next(features)) if item.ok else (None, None)
                scored.append(ScoredRow(item.row, result, logits, item.extra, item.error, pool, embedding))
            return scored

        return finish

    def score(self, prepared: Iterable[PreparedRow], prompt_col: str) -> Iterator[tuple[list[PreparedRow], list[ScoredRow]]]:
        """(batch, its ScoredRows) for each batch of `runtime.batch_size` prepared rows, in order,
        each batch queued before the one before it is collected."""
        yield from queued_ahead(batched(prepared, self.runtime.batch_size), partial(self.submit, prompt_col=prompt_col))
