"""The scoring core that main.py --input, the HTTP service and the stream workers share.

It runs a list of registered metrics (aigc_eval/metrics/). Rows are fetched, decoded and
transformed in worker threads (prepare: one model input per metric with a `stage`, and each
metric's `row_check` on the decoded image), and each batch's work is queued in the model lanes
metric by metric (submit), with the score cache serving what an earlier run computed. A batch
gives back one ScoredRow per input row: each metric's typed MetricResult. Set-level summaries
(the Inception Score) and decisions are the caller's (metrics.decide).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping, Sequence

import torch
from PIL import Image

from aigc_eval import columns as col
from aigc_eval.metrics.base import BatchContext, Metric, MetricResult
from aigc_eval.scoring.image_pipeline import (
    FetchPool,
    PreparedRow,
    batched,
    prepare_rows,
    warm_up_when_needed,
)
from aigc_eval.scoring.model_lanes import ModelLanes, queued_ahead
from aigc_eval.scoring.model_loading import resolve_device
from aigc_eval.scoring.runtime import RuntimeOptions


@dataclass
class ScoredRow:
    """One input row's outcome: `results` by metric name (a metric that did not run for this
    row is absent), `error` why the image could not be prepared."""

    row: dict[str, str]
    results: dict[str, MetricResult] = field(default_factory=dict)
    error: str = ""

    def feature(self, metric: str, key: str) -> Any:
        result = self.results.get(metric)
        return result.features.get(key) if result is not None else None

    @property
    def logits(self) -> torch.Tensor | None:
        return self.feature("inception", "logits")

    @property
    def pool(self) -> torch.Tensor | None:  # Inception's 2048-d pool features, with keep_pool
        return self.feature("inception", "pool")

    @property
    def clip_embedding(self) -> torch.Tensor | None:  # the image's CLIP embedding (None when it failed)
        return self.feature("clip", "embedding")

    def fields(self, metric: str) -> dict[str, object]:
        """A metric's values with its status and error ({} when it did not run)."""
        result = self.results.get(metric)
        return {} if result is None else {**result.values, col.STATUS: result.status, col.ERROR: result.error}


class RowChecks:
    """The metrics' row checks as one image_pipeline.RowCheck, run in order on each decoded image;
    gives {metric name: its fields}. A check with `after` gets the earlier checks' fields."""

    def __init__(self, checks: Mapping[str, Any]):
        self.checks = dict(checks)
        self.decode_size = max((getattr(c, "decode_size", 0) for c in self.checks.values()), default=0)

    def __call__(self, row: dict[str, str], image: Image.Image, data: bytes, session: Any) -> dict[str, object]:
        done: dict[str, dict[str, object]] = {}
        for name, check in self.checks.items():
            done[name] = check(row, image, data, session, done) if getattr(check, "after", None) else \
                check(row, image, data, session)
        return done  # type: ignore[return-value]

    def failed(self, reason: str) -> dict[str, object]:
        return {name: check.failed(reason) for name, check in self.checks.items()}


class ScoringCore:
    """The run's metrics, their lanes and the run's options; see the module docstring."""

    def __init__(self, metrics: Mapping[str, Metric], lanes: ModelLanes, runtime: RuntimeOptions,
                 fetch_pool: FetchPool | None = None):
        self.metrics, self.lanes, self.runtime = dict(metrics), lanes, runtime
        self.fetch_pool = fetch_pool  # None: each prepare() call has threads and sessions of its own
        self.staged = [m for m in self.metrics.values() if m.stage is not None]

    @classmethod
    @contextlib.contextmanager
    def open(cls, metrics: Mapping[str, Metric], runtime: RuntimeOptions) -> Iterator["ScoringCore"]:
        """Prepare the metrics' models on the runtime's device (they load when first needed, in a
        lane) and their lanes, for the duration of the block."""
        for metric in metrics.values():
            metric.load()
        # One fetch pool for the core's life: the service and stream workers call prepare() once
        # a batch, and keep-alive connections to the image hosts then outlive the batch.
        with ModelLanes(resolve_device(runtime.device)) as lanes, FetchPool(runtime.fetch, runtime.workers) as pool:
            yield cls(metrics, lanes, runtime, pool)

    @classmethod
    @contextlib.contextmanager
    def with_models(cls, *, model_name: str, model_dir: Path | None, weights: Path | None, runtime: RuntimeOptions,
                    product: Any = None, keep_pool: bool = False,
                    names: Sequence[str] = ("clip", "inception")) -> Iterator["ScoringCore"]:
        """open() on the metrics `names` (with the product check when `product` options are
        given; add "product_clip" to `names` for the CLIP-space product similarity), built from
        these options."""
        from aigc_eval.metrics.registry import create_metrics
        from aigc_eval.metrics.setup import MetricSetup

        setup = MetricSetup(runtime=runtime, model_name=model_name, model_dir=model_dir, weights=weights,
                            keep_pool=keep_pool, **({"product": product} if product is not None else {}))
        chosen = list(names) + (["product"] if product is not None else [])
        with cls.open(create_metrics(chosen, setup), runtime) as core:
            yield core

    @property
    def clip(self) -> Any:
        """The CLIP scorer (ClipScorer), when CLIP is in the run."""
        return self.metrics["clip"].scorer if "clip" in self.metrics else None  # type: ignore[attr-defined]

    @property
    def inception(self) -> Any:
        """The Inception scorer (InceptionScorer), when Inception is in the run."""
        return self.metrics["inception"].scorer if "inception" in self.metrics else None  # type: ignore[attr-defined]

    def row_checks(self, base_dir: Path | None, without: Collection[str] = ()) -> RowChecks | None:
        """The metrics' checks on decoded images (but those of the metrics `without`), relative
        paths read from `base_dir`."""
        checks = {}
        for name, metric in self.metrics.items():
            if name in without:
                continue
            checker = getattr(metric, "checker", None)
            check = checker(base_dir) if checker is not None else metric.row_check
            if check is not None:
                checks[name] = check
        return RowChecks(checks) if checks else None

    def prepare(self, rows: Iterable[dict[str, str]], image_col: str, base_dir: Path | None = None,
                checks: bool = True, without: Collection[str] = ()) -> Iterator[PreparedRow]:
        """Rows fetched, decoded and transformed in worker threads, two batches ahead, in order
        (with the row checks, unless `checks` is False or the metric is in `without`); each model
        starts loading in its lane when the first row that needs it goes by."""
        prepared = prepare_rows(rows, image_col, [m.stage for m in self.staged], self.runtime.fetch,
                                self.runtime.workers, base_dir, ahead=2 * self.runtime.batch_size,
                                extra=self.row_checks(base_dir, without) if checks else None, pool=self.fetch_pool)
        return warm_up_when_needed(prepared, [partial(self.lanes.warm_up, m.warm_up()[0]) for m in self.staged])

    def submit(self, batch: Sequence[PreparedRow], prompt_col: str) -> Callable[[], list[ScoredRow]]:
        """Queue a batch's work in the lanes now, metric by metric; the returned function waits for it."""
        finishes: dict[str, Callable[[], list[MetricResult | None]]] = {}
        for name, metric in self.metrics.items():
            slot = self.staged.index(metric) if metric in self.staged else None
            finishes[name] = metric.submit(batch, BatchContext(prompt_col, self.lanes, slot, dict(finishes)))

        def finish() -> list[ScoredRow]:
            # Last submitted first: Inception's logits reach the score cache before CLIP's embeddings,
            # so a killed run never has CLIP results recorded that Inception lacks.
            done = {name: finishes[name]() for name in reversed(finishes)}
            return [ScoredRow(item.row, {name: results[i] for name, results in done.items() if results[i] is not None},
                              item.error) for i, item in enumerate(batch)]

        return finish

    def score(self, prepared: Iterable[PreparedRow], prompt_col: str) -> Iterator[tuple[list[PreparedRow], list[ScoredRow]]]:
        """(batch, its ScoredRows) for each batch of `runtime.batch_size` prepared rows, in order,
        each batch queued before the one before it is collected."""
        yield from queued_ahead(batched(prepared, self.runtime.batch_size), partial(self.submit, prompt_col=prompt_col))
