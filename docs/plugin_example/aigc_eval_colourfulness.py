"""Colourfulness (Hasler and Suesstrunk, 2003) as an aigc-image-eval metric plugin.

colourfulness = sqrt(std(rg)^2 + std(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2), with
rg = R - G and yb = (R + G) / 2 - B over the decoded image's pixels (0..255); its term divides
it by 150 (about the most a photo reaches) and clips to 0..1.
"""

from __future__ import annotations

import numpy as np

from aigc_eval import columns as col
from aigc_eval.metrics.base import Column, Metric, MetricResult, Rule, Term


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk's M3 of an (H, W, 3) uint8 image."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, (r + g) / 2 - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


class _Check:
    """Runs on each decoded image in the fetch threads."""

    decode_size = 0  # any size the pipeline decodes to will do

    def __call__(self, row, image, data, session):
        value = colourfulness(np.asarray(image.convert("RGB")))
        return {col.STATUS: col.STATUS_OK, "colourfulness": value, "colourfulness_norm": min(value / 150.0, 1.0)}

    def failed(self, reason):
        return {col.STATUS: col.STATUS_ERROR, col.ERROR: reason}


class ColourfulnessMetric(Metric):
    name = "colourfulness"
    title = "Hasler and Suesstrunk's colourfulness of the whole image"
    columns = (Column("colourfulness", "Hasler and Suesstrunk's M3, 0..~150", ".4f"),
               Column("colourfulness_norm", "colourfulness / 150, clipped to 1", ".6f"))
    term = Term("colourfulness_norm", 0.0, "colourfulness / 150")  # weight 0 unless --weight colourfulness=W
    rules = (Rule("min", "colourfulness", 15.0, "flag dull, nearly grey images", enabled=False),)
    required = False
    total_columns = ("colourfulness",)

    def __init__(self, setup):
        self.row_check = _Check()

    def load(self):
        pass

    def submit(self, batch, ctx):
        results = []
        for item in batch:
            fields = item.extra.get(self.name)
            if fields is None:
                results.append(None)  # the row checks did not run for this row
                continue
            values = {k: v for k, v in fields.items() if k not in (col.STATUS, col.ERROR)}
            results.append(MetricResult(fields[col.STATUS], fields.get(col.ERROR, ""), values))
        return lambda: results
