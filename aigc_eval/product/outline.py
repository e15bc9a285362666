"""`outline_support`: how well the cut-out's outline, under a placement, lies on edges of the
generated image, whatever their colours (what damage to the product does not change)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from . import geometry as geo
from .cutout import Cutout

OUTLINE_LONG_SIDE = 128  # the product's long side (px) when its outline is compared


def outline_support(generated: np.ndarray, cut: Cutout, matrix_crop: np.ndarray,
                    long_side: int = OUTLINE_LONG_SIDE) -> float:
    """How well the mask's outline under `matrix_crop` (cropped cut-out -> canvas px) lies on
    edges of the generated image, whatever their colours: on a grid where the product is
    <= `long_side` px, the grey image's Sobel gradient g and the outline's normal n (the Sobel
    gradient of the mask blurred with σ 1.5) give

        support = Σ |g · n̂| w / Σ |g| w   over pixels where |∇mask| is high (w = |∇mask|),

    rescaled so that gradients of random orientation (mean |cos| = 2/π) give 0 and gradients
    all across the outline give 1. Colour changes, over-painting of part of the product and
    blur keep most of the outline (what damage does not change); a placement on unrelated
    texture scores near 0. Grey levels are used only through the gradient's direction, so the
    measure is invariant to any monotone or inverting change of brightness along the edge."""
    scale, _ = geo.decompose(matrix_crop)
    h, w = cut.mask.shape
    k = min(1.0, long_side / (max(h, w) * scale))
    box = geo.padded_box(matrix_crop, (w, h), 6.0 / k, generated.shape)
    if box is None:
        return 0.0
    x0, y0, x1, y1 = box
    crop, to_crop = geo.resize_by(cv2.cvtColor(generated[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY), k)
    warp = geo.compose(to_crop, geo.translation(-x0, -y0), matrix_crop)
    key = "mask float"
    if key not in cut.cache:
        cut.cache[key] = cut.mask.astype(np.float32)
    mask = cv2.warpAffine(cut.cache[key], warp, crop.shape[1::-1], flags=cv2.INTER_AREA
                          if k < 0.5 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.5)
    gray = cv2.GaussianBlur(crop.astype(np.float32), (0, 0), 1.0)
    mx, my = cv2.Sobel(mask, cv2.CV_32F, 1, 0), cv2.Sobel(mask, cv2.CV_32F, 0, 1)
    gx, gy = cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    weight = np.hypot(mx, my)
    # The canvas's own frame is no outline: a product cut off there has no edge to support it.
    inside = np.zeros(weight.shape, bool)
    inside[2:-2, 2:-2] = True
    edge = (weight > 0.25 * max(1e-6, float(weight.max()))) & inside
    if edge.sum() < 20:
        return 0.0
    wn = weight[edge]
    across = np.abs(gx[edge] * mx[edge] + gy[edge] * my[edge]) / wn
    magnitude = np.hypot(gx[edge], gy[edge])
    total = float((magnitude * wn).sum())
    if total <= 1e-6:
        return 0.0
    mean_cos = float((across * wn).sum()) / total
    return max(0.0, (mean_cos - 2.0 / math.pi) / (1.0 - 2.0 / math.pi))
