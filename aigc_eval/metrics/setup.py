"""What building a metric may need: the run's models, device, cache and options (one typed bag,
so that a metric's constructor states its needs by the fields it reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from aigc_eval import columns as col
from aigc_eval.product.stage import ProductOptions
from aigc_eval.scoring.metrics import DEFAULT_CLIP_CEILING, DEFAULT_IS_SPLITS
from aigc_eval.scoring.model_loading import CLIP_DEFAULT_MODEL, resolve_device
from aigc_eval.scoring.runtime import RuntimeOptions
from aigc_eval.scoring.score_cache import ScoreCache, open_cache


@dataclass
class MetricSetup:
    """The run's options every metric is built from; models load only when a metric is scored."""

    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    model_name: str = CLIP_DEFAULT_MODEL
    model_dir: Path | None = None
    weights: Path | None = None  # Inception-v3 state_dict
    clip_ceiling: float = DEFAULT_CLIP_CEILING
    product: ProductOptions = field(default_factory=ProductOptions)
    keep_pool: bool = False  # Inception also keeps its pool features (FID, KID)
    reference_marginal: torch.Tensor | None = None  # one image's IS term against it (the service)
    splits: int = DEFAULT_IS_SPLITS
    category_col: str | None = col.CATEGORY

    @cached_property
    def device(self) -> torch.device:
        return resolve_device(self.runtime.device)

    @cached_property
    def cache(self) -> ScoreCache | None:
        return open_cache(self.runtime.fetch.cache_dir)
