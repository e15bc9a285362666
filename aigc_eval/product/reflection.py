"""A reflection of the product painted below it (`product_reflection`).

Generators asked for a glossy floor often mirror the product below its base, fading downwards.
That is content grown outside the outline, but its colours are blends of the product's and the
floor's, so the colour test of `expansion.py` rarely sees it. What a blend keeps is the
product's structure, mirrored: this module looks for it.

Definition (on the measuring grid of `expansion.py`, the product's long side <= 128 px):

* b = the lowest row of the placed mask M (the image's vertical: a floor is horizontal);
  the rows b+1 ... b+n below it, n = the band's width (30 % of the product's long side), are
  compared with their mirror images about b, the rows b, b-1, ...: the mirrored source.
* A pixel is counted when its mirrored source lies more than 1.5 px inside M and it lies
  outside M, more than 2 px from it. It is compared also when its source lies up to 4 px
  outside M, so that the windows see the mirrored outline: a flat product has no other
  structure, and its reflection is verified by the shape of its edge.
* In a 9 x 9 window around each counted pixel (over compared pixels only), the CIELAB values
  of the image and of its mirrored source are correlated (Pearson, the three channels pooled:
  a blend a*product + (1-a)*floor keeps a correlation of 1 whatever a is), with the slope a of
  image on source. A pixel reflects when the correlation exceeds 0.5 and the source window
  has structure (its variance summed over the channels exceeds 48, about 4 levels a channel).
* After a 3x3 opening, only reflecting pixels 8-connected to the base count (to the first
  counted rows of their column: an eighth of the rows, at least 3; a base is rarely straight),
  each weighted by a clipped to [0, 1] (a faded reflection counts as the part of a product
  it is).
* `product_reflection` = that weighted count as a share of M's area; 0 when no row lies below
  the product in the frame. Inside the reflection of a flat product the windows are flat and
  do not count: only a strip along its mirrored edge is measured.

A reflection can be what the prompt asked for ("on a glossy black table"): then switch the
rule off (`--reflection-max inf`).
"""

from __future__ import annotations

import cv2
import numpy as np

from .expansion import MeasuringCrop

WINDOW = 9                  # px, the correlation window
MIN_CORRELATION = 0.5       # image against its mirrored source, per window
MIN_SOURCE_VARIANCE = 48.0  # summed over L, a, b: a flat source cannot be verified
SOURCE_DEPTH = 1.5          # px inside the outline a mirrored source must lie
GAP = 2.0                   # px outside the outline a compared pixel must lie
OUTLINE_REACH = 4.0         # px outside the outline a compared pixel's source may lie


def reflection_in(m: MeasuringCrop) -> float:
    """`product_reflection` on a prepared crop; see the module docstring."""
    height = m.mask.shape[0]
    bottom = int(np.nonzero(m.mask.any(axis=1))[0].max())
    rows = min(height - bottom - 1, m.band_px, bottom + 1)
    if rows < 3:
        return 0.0
    below = slice(bottom + 1, bottom + 1 + rows)
    mirror = slice(bottom, bottom - rows if bottom - rows >= 0 else None, -1)
    image = m.lab[below].astype(np.float32)
    source = m.lab[mirror].astype(np.float32)
    clear = m.outside[below] > GAP
    counted = (m.inside[mirror] > SOURCE_DEPTH) & clear
    compared = (counted | (m.outside[mirror] <= OUTLINE_REACH)) & clear
    if not counted.any():
        return 0.0
    weight = compared.astype(np.float32)
    total = _box(weight) + 1e-6

    def mean(values: np.ndarray) -> np.ndarray:
        return _box(values * weight[..., None]) / total[..., None]

    mean_i, mean_s = mean(image), mean(source)
    var_i = (mean(image * image) - mean_i * mean_i).sum(axis=-1)
    var_s = (mean(source * source) - mean_s * mean_s).sum(axis=-1)
    cov = (mean(image * source) - mean_i * mean_s).sum(axis=-1)
    correlation = cov / np.sqrt(np.maximum(var_i * var_s, 1e-6))
    reflects = (counted & (total > 0.5) & (var_s > MIN_SOURCE_VARIANCE)
                & (correlation > MIN_CORRELATION))
    reflects = cv2.morphologyEx(reflects.astype(np.uint8), cv2.MORPH_OPEN,
                                np.ones((3, 3), np.uint8))
    count, labels = cv2.connectedComponents(reflects, connectivity=8)
    # Near the base: within the first rows counted in each column (the base is not straight).
    first = np.where(counted.any(axis=0), counted.argmax(axis=0), rows)
    near_base = np.arange(rows)[:, None] < first[None, :] + max(3, rows // 8)
    attached = np.zeros(count, bool)
    attached[np.unique(labels[near_base])] = True
    attached[0] = False
    slope = np.clip(cov / np.maximum(var_s, 1e-6), 0.0, 1.0)
    return float((slope * attached[labels]).sum() / m.mask.sum())


def _box(values: np.ndarray) -> np.ndarray:
    return cv2.boxFilter(values, -1, (WINDOW, WINDOW), normalize=True,
                         borderType=cv2.BORDER_REFLECT)
