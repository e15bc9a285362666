"""Product similarity in CLIP space (DreamBooth's CLIP-I, applied to the product).

product_clip_similarity = cos(E(cut-out), E(crop)), where E is the Chinese-CLIP image encoder
already loaded for CLIPScore, the cut-out is the merchant's whole cut-out frame composited on
white (outside its mask), and the crop is the generated image cut to product_crop_box (where
the product check located that frame), both resized as CLIP resizes every image. It catches a
different object of the same colours, which pixel measures tolerate. Opt-in: it runs when
--metrics names it, or a flag uses it (--weight product_clip=W, --threshold product_clip.min=on
or =V), and then whenever the product check found the product; its term (the cosine clipped to
0..1) has weight 0 and its rule is off unless those flags say otherwise.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from aigc_eval import columns as col
from aigc_eval.metrics.base import BatchContext, Column, Metric, MetricResult, Rule, Term
from aigc_eval.metrics.setup import MetricSetup
from aigc_eval.product import names as pn
from aigc_eval.product.cutout import Cutout
from aigc_eval.product.stage import CUTOUT_KEY
from aigc_eval.scoring.image_pipeline import PreparedRow
from aigc_eval.scoring.metrics import clip_score

PRODUCT_CLIP_SIMILARITY = "product_clip_similarity"
PRODUCT_CLIP_NORM = "product_clip_norm"
# Measured on the real-photo case set (docs/product_checks.md#clip-space-similarity): benign cases
# stay above it, a different product below. Off by default until measured against people.
DEFAULT_MIN_SIMILARITY = 0.8


def cutout_on_white(cut: Cutout) -> Image.Image:
    """The merchant's whole cut-out frame (source_size), its product pixels on white."""
    width, height = cut.source_size
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    x0, y0 = cut.origin
    h, w = cut.mask.shape
    region = canvas[y0:y0 + h, x0:x0 + w]
    region[cut.mask] = cut.rgb[cut.mask]
    return Image.fromarray(canvas)


def crop_of(image: Image.Image, box_text: str, canvas_width: int) -> Image.Image | None:
    """The decoded image cut to product_crop_box (canvas pixels "x0 y0 x1 y1", scaled to the
    decoded size); None without a box."""
    parts = box_text.split()
    if len(parts) != 4 or canvas_width <= 0:
        return None
    factor = image.width / canvas_width
    x0, y0, x1, y1 = (float(v) * factor for v in parts)
    box = (int(round(x0)), int(round(y0)), max(int(round(x1)), int(round(x0)) + 1), max(int(round(y1)), int(round(y0)) + 1))
    return image.crop(box)


class ProductClipMetric(Metric):
    name = "product_clip"
    title = "the product's similarity to the cut-out in CLIP space (CLIP-I)"
    columns = (Column(PRODUCT_CLIP_SIMILARITY, "cos(CLIP(cut-out on white), CLIP(generated crop at product_crop_box))",
                      ".6f"),)
    term = Term(PRODUCT_CLIP_NORM, 0.0, "product_clip_similarity clipped to 0..1")
    rules = (Rule("min", PRODUCT_CLIP_SIMILARITY, DEFAULT_MIN_SIMILARITY,
                  "flag images whose product looks unlike the cut-out to CLIP", enabled=False, low=-1.0, high=1.0),)
    required = False
    after_total = (PRODUCT_CLIP_SIMILARITY,)
    needs = ("clip", "product")
    # Two more CLIP image passes a row (the crop, and each cut-out once): with it main.py
    # --input with product checks ran at 41 % of its speed without them, 87 % without it
    # (bench/README.md, fp32 CPU), for a column that decides nothing until it is weighted or
    # its rule is switched on.
    on_by_default = False

    def __init__(self, setup: MetricSetup):
        self.setup = setup
        self.clip: Any = None  # the ClipMetric (its encoder), set by the registry

    def bind(self, metrics: dict[str, Metric]) -> None:
        self.clip = metrics["clip"]
        self.row_check = _CropCheck(self)

    def load(self) -> None:
        pass

    def submit(self, batch: Sequence[PreparedRow], ctx: BatchContext) -> Callable[[], list[MetricResult]]:
        scorer = self.clip.scorer
        key = ("clip_embedding", scorer.model_key)
        crops = [item.extra.get(self.name) for item in batch]  # None: no row checks for this row
        todo = [c for c in crops if c]
        new_cutouts = list({id(c["cut"]): c for c in todo if key not in c["cut"].cache}.values())
        pixels = [c["crop"] for c in todo] + [c["cutout"] for c in new_cutouts]
        encoded = ctx.lanes.split(scorer.encode_images, torch.stack(pixels)) if pixels else None

        def finish() -> list[MetricResult]:
            embeddings = iter(encoded.result() if encoded is not None else [])
            crop_embeddings = [next(embeddings) for _ in todo]
            for c in new_cutouts:
                c["cut"].cache[key] = next(embeddings)
            found = iter(crop_embeddings)
            results = []
            for item, crop in zip(batch, crops):
                if not crop:
                    results.append(MetricResult(col.STATUS_SKIPPED, "the product check did not find the product")
                                   if self.name in item.extra else None)
                    continue
                similarity = float(clip_score(next(found).unsqueeze(0), crop["cut"].cache[key].unsqueeze(0))[0])
                results.append(MetricResult(col.STATUS_OK, "", {PRODUCT_CLIP_SIMILARITY: similarity,
                                                                PRODUCT_CLIP_NORM: min(max(similarity, 0.0), 1.0)}))
            return results

        return finish

    def from_text(self, fields, status, error):  # type: ignore[override]
        result = super().from_text(fields, col.STATUS_OK if fields.get(PRODUCT_CLIP_SIMILARITY) else col.STATUS_SKIPPED, "")
        if result.ok:
            result.values[PRODUCT_CLIP_NORM] = min(max(float(result.values[PRODUCT_CLIP_SIMILARITY]), 0.0), 1.0)  # type: ignore[arg-type]
        return result


class _CropCheck:
    """In the fetch threads, after the product check: the crop and (while not yet embedded) the
    cut-out as CLIP inputs."""

    decode_size = 0
    after = ("product",)

    def __init__(self, metric: ProductClipMetric):
        self.metric = metric

    def __call__(self, row: dict[str, str], image: Image.Image, data: bytes, session: Any,
                 prior: dict[str, dict[str, object]]) -> dict[str, object]:
        product = prior.get("product", {})
        cut = product.get(CUTOUT_KEY)
        if product.get(col.STATUS) != col.STATUS_OK or cut is None:
            return {}
        crop = crop_of(image, str(product.get(pn.PRODUCT_CROP_BOX) or ""), int(product.get(pn.CANVAS_WIDTH) or 0))
        if crop is None:
            return {}
        transform = self.metric.clip.scorer.transform
        key = ("clip_embedding", self.metric.clip.scorer.model_key)
        return {"crop": transform(crop.convert("RGB")), "cut": cut,
                "cutout": transform(cutout_on_white(cut)) if key not in cut.cache else None}

    def failed(self, reason: str) -> dict[str, object]:
        return {}
