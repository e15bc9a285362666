"""Grey comparison of the cut-out with the generated image under a placement.

`correlation` is `match_confidence`: one Pearson correlation over the whole product. Damage
lowers it, and so does a wrong placement, so on its own it cannot tell a damaged product from
an absent one. `tile_agreement` asks where the product still matches: the product is cut into
tiles, and it is the share of its textured tiles whose own correlation is high. A product 30 %
painted over still matches on most of the rest; a template laid on unrelated texture matches on
few tiles, even where its overall correlation is as high as a damaged product's."""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

TILE_GRID = 6            # tiles across the template's long side (at most half its short side)
TILE_CORRELATION = 0.7   # a tile whose grey correlation reaches this still matches
TILE_MIN_STD = 4.0       # grey levels: flatter tiles cannot be judged (any flat patch fits)
TILE_FILL = 0.6          # a tile is judged when this share of it is compared product
TILE_MIN_MATCHED = 3     # fewer matching tiles are no evidence, whatever their share
TILE_MIN_JUDGED = 10     # with fewer judged tiles (thin or smooth products) a share is too coarse


class Tiles(NamedTuple):
    """`tile_agreement`'s result: the share of judged tiles that match, and the counts."""

    share: float
    matched: int
    judged: int


def sampled_under(templ: np.ndarray, templ_mask: np.ndarray, crop: np.ndarray,
                  warp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`crop` sampled at the template's pixels, where `warp` maps template coordinates into
    `crop`, and the compared pixels: nonzero in `templ_mask` and landing inside the crop."""
    size = templ.shape[1::-1]
    sampled = cv2.warpAffine(crop, warp, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    valid = templ_mask > 0
    h, w = templ.shape
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]]) @ warp.T
    # Usually the whole template lands well inside the crop (a parallelogram is inside when
    # its corners are); only otherwise is the part that fell outside found pixel by pixel.
    if not ((corners >= 0.01).all() and (corners[:, 0] <= crop.shape[1] - 1.01).all()
            and (corners[:, 1] <= crop.shape[0] - 1.01).all()):
        inside = cv2.warpAffine(np.ones_like(crop), warp, size,
                                flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        valid &= inside > 0
    return sampled, valid


def correlation(templ: np.ndarray, templ_mask: np.ndarray, crop: np.ndarray,
                warp: np.ndarray) -> float:
    """Pearson correlation of grey levels over the template mask (nonzero = compared; callers
    pass the product mask eroded by 2 px), where `warp` maps template coordinates into `crop`;
    pixels that land outside the crop are left out."""
    sampled, valid = sampled_under(templ, templ_mask, crop, warp)
    if valid.sum() < 30:
        return 0.0
    a = templ[valid].astype(np.float64)
    b = sampled[valid].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def _tile_sums(values: np.ndarray, cell: int, rows: int, cols: int) -> np.ndarray:
    """Sums of `values` (zero-padded to rows x cols cells of `cell` px) per cell."""
    padded = np.zeros((rows * cell, cols * cell))
    h, w = values.shape
    padded[:min(h, rows * cell), :min(w, cols * cell)] = values[:rows * cell, :cols * cell]
    return padded.reshape(rows, cell, cols, cell).sum(axis=(1, 3))


def tile_agreement(templ: np.ndarray, templ_mask: np.ndarray, crop: np.ndarray,
                   warp: np.ndarray, grid: int = TILE_GRID) -> Tiles:
    """`tile_agreement`: the template (as `correlation` takes it) is cut into square tiles,
    `grid` across its long side but none wider than half its short side (so that a thin
    product has tiles too) and none under 6 px; a tile is judged when `TILE_FILL` of it is
    compared product and its grey levels spread by `TILE_MIN_STD` or more; the result is the
    share of judged tiles whose Pearson correlation with the crop reaches `TILE_CORRELATION`
    (0 when no tile can be judged), with the matching and judged tiles' counts."""
    sampled, valid = sampled_under(templ, templ_mask, crop, warp)
    h, w = templ.shape
    cell = max(6, round(min(max(h, w) / grid, min(h, w) / 2)))
    # A tile starts every `cell` px; a last sliver under half a cell starts none.
    rows, cols = (max(1, math.ceil((side - cell // 2) / cell)) for side in (h, w))
    keep = valid.astype(np.float64)
    a = templ.astype(np.float64) * keep
    b = sampled.astype(np.float64) * keep
    n, sa, sb, saa, sbb, sab = (_tile_sums(v, cell, rows, cols)
                                for v in (keep, a, b, a * a, b * b, a * b))
    count = np.maximum(n, 1.0)
    var_a = np.maximum(saa - sa * sa / count, 0.0)
    var_b = np.maximum(sbb - sb * sb / count, 0.0)
    judged = (n >= TILE_FILL * cell * cell) & (var_a >= TILE_MIN_STD ** 2 * count)
    if not judged.any():
        return Tiles(0.0, 0, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (sab - sa * sb / count) / np.sqrt(var_a * var_b)
    matched = judged & (var_b > 1e-9) & (r >= TILE_CORRELATION)
    return Tiles(float(matched.sum() / judged.sum()), int(matched.sum()), int(judged.sum()))
