"""Placing and finding a textureless product by its silhouette.

A product without inner detail (a plain bottle, a mug, a smooth colour wheel) gives the
template path's interior-only grey correlation nothing to pin: a smaller placement inside it
correlates as well, and so does any smooth gradient of the background where it is absent. What
such a product does have is its silhouette against the background. `silhouette_fit` measures it
as a two-region model, and searches the scale and shift where it is strongest:

    R² = Σ_c SSB_c / Σ_c SST_c

over the product's interior A (the placed mask eroded by 1 px) and a ring B just outside it
(1 px to 1 px + 8 % of the product's long side), pooled over the channels c of OpenCV's 8-bit
CIELAB and a texture channel (2 x the 3x3 spread of L, so a smooth product on gravel of its own
grey still stands out); SSB_c is channel c's between-region sum of squares, SST_c its total
over A ∪ B (one-way ANOVA with two groups). R² is near 1 when inside and outside differ and
each is uniform, near 0 when the ring carries the same content as the interior: a placement
that is too small (its ring still on the product) or a silhouette laid on background.

The search (`cv2.matchTemplate` TM_CCORR of each channel, its square and the region masks, on a
grid where the product is 64 px long, then 128 px around the best): every scale x1.04^-4 ..
x1.04^9 of the starting placement, every shift within a quarter of its size, then x1.01^-3 ..
x1.01^3 and a few pixels. Only shifts whose interior grey correlation (masked TM_CCOEFF_NORMED,
as the template path's) stays within `CORRELATION_SLACK` of the best found compete, so the
product's shading still decides where it can lie and the silhouette decides its extent.

`locate` asks this of template placements of plain cut-outs (`plain_product`: under
`TEXTURED_SHARE_MIN` textured, `textured_share`, and of one colour, `colour_spread` at most
`COLOUR_SPREAD_MAX`: the model's interior is one colour; a smooth colour wheel is not, and keeps
the template path's rules), and finds such a product only on R² >= `SILHOUETTE_STRONG`, or on
R² >= `SILHOUETTE_MIN` where its shading is the cut-out's (grey correlation >= `SHADING_AGREE`)
or its colours are (median CIEDE2000 under the placement <= `COLOUR_AGREE_DE`): without texture,
shape, shading and colour are all there is to recognise. A smooth gradient of the background
correlates with the shading of an absent product up to about 0.95 (dev set), a present one,
recoloured or not, from 0.97. A one-colour cut-out with texture (`one_colour`, a brushed-steel
decal) keeps the template path's rules, but its template placements correlating >= 0.3 are
re-placed and found by its silhouette where that is strong (one_colour.py)."""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

from . import fidelity
from . import geometry as geo
from .cutout import Cutout

TEXTURED_LONG_SIDE = 192     # the cut-out's long side (px) when its texture is measured
TEXTURED_LEVEL = 2.0         # |Laplacian| (grey levels, after a σ 1 blur) of a textured pixel
TEXTURED_SHARE_MIN = 0.1     # a cut-out with fewer textured interior pixels is textureless
COLOUR_SPREAD_MAX = 15.0     # ... and of one colour when its CIELAB spread is at most this
RING_FRACTION = 0.08         # the ring outside the outline, of the product's long side
TEXTURE_WEIGHT = 2.0         # the texture channel's weight against CIELAB's
CORRELATION_SLACK = 0.03     # shifts within this of the best interior correlation compete
SILHOUETTE_STRONG = 0.6      # R² that finds a textureless product whatever its colours
SILHOUETTE_MIN = 0.15        # R² that finds it where its shading or colours agree
COLOUR_AGREE_DE = 5.0        # median CIEDE2000 under which the colours agree
SHADING_AGREE = 0.97         # grey correlation at which the shading agrees (whatever the colour)
COARSE = (64, 1.04 ** np.arange(-4, 10), 0.25)   # (long side px, scales, shift of the size)
FINE = (128, 1.01 ** np.arange(-3, 4), 0.03)


class SilhouetteFit(NamedTuple):
    """The best placement found (cropped cut-out -> canvas px) and its R² and interior grey
    correlation on the search grid."""

    matrix_crop: np.ndarray
    r2: float
    correlation: float


def textured_share(cut: Cutout) -> float:
    """The share of the cut-out's interior (mask eroded by 2 px, long side <= 192 px) whose
    |Laplacian| after a σ 1 px blur exceeds `TEXTURED_LEVEL` grey levels."""
    return _interior_measures(cut)[0]


def colour_spread(cut: Cutout) -> float:
    """The cut-out's colour spread: the root mean of its interior's variances of OpenCV's 8-bit
    L, a* and b* (same grid as `textured_share`)."""
    return _interior_measures(cut)[1]


def one_colour(cut: Cutout) -> bool:
    """Of one colour, shading and texture aside (`colour_spread` <= `COLOUR_SPREAD_MAX`)."""
    return colour_spread(cut) <= COLOUR_SPREAD_MAX


def plain_product(cut: Cutout) -> bool:
    """Textureless and of one colour, shading aside: the products the two-region model fits."""
    return textured_share(cut) < TEXTURED_SHARE_MIN and one_colour(cut)


def _interior_measures(cut: Cutout) -> tuple[float, float]:
    key = "silhouette interior"
    if key not in cut.cache:  # once per cut-out
        rgb, _ = geo.resize_to_long_side(cut.rgb, TEXTURED_LONG_SIDE)
        mask = cv2.resize(cut.mask.astype(np.uint8), rgb.shape[1::-1],
                          interpolation=cv2.INTER_NEAREST)
        inner = fidelity.erode(mask > 0, 2)
        if not inner.any():
            cut.cache[key] = (0.0, math.inf)
            return cut.cache[key]
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        lap = cv2.Laplacian(cv2.GaussianBlur(grey, (0, 0), 1.0), cv2.CV_32F)
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float64)[inner]
        cut.cache[key] = (float((np.abs(lap[inner]) > TEXTURED_LEVEL).mean()),
                          float(np.sqrt(lab.var(axis=0).mean())))
    return cut.cache[key]


def _channels(crop: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """CIELAB channels and the texture channel of an RGB crop (float32), and its grey."""
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).astype(np.float32)
    light = lab[..., 0]
    mean = cv2.blur(light, (3, 3))
    spread = np.sqrt(np.maximum(cv2.blur(light * light, (3, 3)) - mean * mean, 0.0))
    channels = [np.ascontiguousarray(lab[..., c]) for c in range(3)] + [TEXTURE_WEIGHT * spread]
    return channels, cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _regions(cut: Cutout, matrix: np.ndarray, ring: float):
    """The cut-out's grey, its interior and interior-plus-ring masks (float32) warped by
    `matrix` (cropped cut-out -> search grid) onto their own box, and the box's corner."""
    h, w = cut.mask.shape
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], float) @ matrix.T
    x0, y0 = np.floor(corners.min(axis=0) - ring - 3).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0) + ring + 3).astype(int)
    warp = geo.compose(geo.translation(-x0, -y0), matrix)
    size = (int(x1 - x0), int(y1 - y0))
    # "mask float" is outline.py's copy of the mask, the same array.
    if "mask float" not in cut.cache:
        cut.cache["mask float"] = cut.mask.astype(np.float32)
    if "grey float" not in cut.cache:
        cut.cache["grey float"] = cv2.cvtColor(cut.rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mask_float, grey = cut.cache["mask float"], cut.cache["grey float"]
    mask8 = (cv2.warpAffine(mask_float, warp, size, flags=cv2.INTER_AREA) >= 0.5).astype(np.uint8)
    inside = cv2.distanceTransform(mask8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) > 1
    outside = cv2.distanceTransform(1 - mask8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    region_a = inside.astype(np.float32)
    both = (inside | ((outside > 1) & (outside <= 1 + ring))).astype(np.float32)
    return cv2.warpAffine(grey, warp, size, flags=cv2.INTER_AREA), region_a, both, (x0, y0)


def _r2(channels: list[np.ndarray], squares: list[np.ndarray], region_a: np.ndarray,
        both: np.ndarray) -> np.ndarray | None:
    """R² of the two-region model at every offset of the regions over the channels (their
    squares given); None when either region has under 10 pixels."""
    n_a, n = float(region_a.sum()), float(both.sum())
    if n_a < 10 or n - n_a < 10:
        return None
    between, total = 0.0, 0.0
    for channel, square in zip(channels, squares):
        sum_all = cv2.matchTemplate(channel, both, cv2.TM_CCORR)
        covariance = cv2.matchTemplate(channel, region_a, cv2.TM_CCORR) - n_a * sum_all / n
        between = between + covariance * covariance * n / (n_a * (n - n_a))
        total = total + np.maximum(cv2.matchTemplate(square, both, cv2.TM_CCORR)
                                   - sum_all * sum_all / n, 1e-3)
    return between / total


def silhouette_at(generated: np.ndarray, cut: Cutout, matrix_crop: np.ndarray,
                  long_side: int = FINE[0]) -> float:
    """R² of the silhouette under `matrix_crop` (cropped cut-out -> canvas px) as it stands,
    over the part of the regions inside the frame (a product over the frame's edge); 0 when
    too little of it is."""
    scale, _ = geo.decompose(matrix_crop)
    k = long_side / (max(cut.mask.shape) * scale)
    to_grid = geo.resize_matrix(k, k)
    _, region_a, both, (bx, by) = _regions(cut, geo.compose(to_grid, matrix_crop),
                                           max(2.0, RING_FRACTION * long_side))
    h, w = both.shape
    height, width = generated.shape[:2]
    box = (max(0, math.floor(bx / k)), max(0, math.floor(by / k)),
           min(width, math.ceil((bx + w) / k)), min(height, math.ceil((by + h) / k)))
    if box[2] - box[0] < 8 or box[3] - box[1] < 8:
        return 0.0
    crop, to_crop = geo.resize_by(generated[box[1]:box[3], box[0]:box[2]], k)
    # The crop laid on the regions' box: what falls outside the frame is left out of both.
    place = geo.compose(geo.translation(-bx, -by), to_grid,
                        geo.translation(box[0], box[1]), geo.invert(to_crop))
    frame = cv2.warpAffine(np.ones(crop.shape[:2], np.float32), place, (w, h),
                           flags=cv2.INTER_NEAREST) > 0
    # Channels are computed on the frame's pixels alone, then laid on the box.
    channels = [cv2.warpAffine(c, place, (w, h), flags=cv2.INTER_LINEAR)
                for c in _channels(np.ascontiguousarray(crop))[0]]
    r2 = _r2(channels, [c * c for c in channels], region_a * frame, both * frame)
    return 0.0 if r2 is None else max(0.0, float(r2[0, 0]))


def _search(generated: np.ndarray, cut: Cutout, matrix_crop: np.ndarray, long_side: int,
            factors: np.ndarray, shift: float) -> SilhouetteFit | None:
    scale, _ = geo.decompose(matrix_crop)
    h, w = cut.mask.shape
    size = max(h, w) * scale
    k = long_side / size
    # Room for the shifts, the largest scale and its ring, so every offset searched fits.
    reach = (shift + (float(factors.max()) - 1.0) / 2.0
             + RING_FRACTION * float(factors.max())) * size + 6.0 / k
    box = geo.padded_box(matrix_crop, (w, h), reach, generated.shape)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    crop, to_crop = geo.resize_by(generated[y0:y1, x0:x1], k)
    channels, grey = _channels(np.ascontiguousarray(crop))
    squares = [c * c for c in channels]
    to_grid = geo.compose(to_crop, geo.translation(-x0, -y0))
    start = geo.compose(to_grid, matrix_crop)
    cx, cy = start @ np.array([w / 2.0, h / 2.0, 1.0])
    maps = []
    for factor in factors:
        matrix = geo.compose(geo.translation(cx, cy), geo.similarity(float(factor), 0.0, 0.0, 0.0),
                             geo.translation(-cx, -cy), start)
        templ, region_a, both, (bx, by) = _regions(cut, matrix,
                                                   max(2.0, RING_FRACTION * long_side * factor))
        if templ.shape[0] >= grey.shape[0] or templ.shape[1] >= grey.shape[1]:
            continue
        r2 = _r2(channels, squares, region_a, both)
        if r2 is None:
            continue
        correlation = np.nan_to_num(cv2.matchTemplate(grey, templ, cv2.TM_CCOEFF_NORMED,
                                                      mask=region_a), nan=-1.0, posinf=-1.0,
                                    neginf=-1.0)
        maps.append((r2, correlation, matrix, bx, by))
    if not maps:
        return None
    top = max(float(correlation.max()) for _, correlation, _, _, _ in maps)
    best = None
    for r2, correlation, matrix, bx, by in maps:
        r2 = np.where(correlation >= top - CORRELATION_SLACK, r2, -1.0)
        y, x = np.unravel_index(int(np.argmax(r2)), r2.shape)
        if best is None or r2[y, x] > best.r2:
            placed = geo.compose(geo.invert(to_grid), geo.translation(x - bx, y - by), matrix)
            best = SilhouetteFit(placed, float(r2[y, x]), float(correlation[y, x]))
    return best


def silhouette_fit(generated: np.ndarray, cut: Cutout, matrix_crop: np.ndarray,
                   min_coarse: float = 0.0) -> SilhouetteFit | None:
    """The placement near `matrix_crop` (cropped cut-out -> canvas px) of the RGB uint8
    `generated` where the product's silhouette is strongest (see the module docstring); None
    when no placement fits the frame. The coarse grid's fit is returned as it is when its R² is
    under `min_coarse` (a caller that needs a strong silhouette saves the fine search)."""
    coarse = _search(generated, cut, matrix_crop, *COARSE)
    if coarse is None or coarse.r2 < min_coarse:
        return coarse
    return _search(generated, cut, coarse.matrix_crop, *FINE) or coarse


def colour_difference(generated: np.ndarray, cut: Cutout, matrix_crop: np.ndarray) -> float:
    """Median CIEDE2000 between the cut-out and the generated image under `matrix_crop`
    (cropped cut-out -> canvas px), over the mask eroded by 1 px at <= 96 px; inf when nothing
    can be compared."""
    matrix = geo.compose(matrix_crop, geo.translation(-cut.origin[0], -cut.origin[1]))
    aligned = fidelity.align(generated, cut, matrix, 96)
    if aligned is None:
        return math.inf
    inner = fidelity.erode(aligned.mask, 1)
    if not inner.any():
        return math.inf
    return float(np.median(fidelity.delta_e(aligned.generated, aligned.reference, inner)))


def found_by_silhouette(generated: np.ndarray, cut: Cutout, matrix_crop: np.ndarray,
                        r2: float, correlation: float) -> bool:
    """A textureless product is found on a strong silhouette (R² `r2` under `matrix_crop`), or
    on a weaker one where its shading (grey `correlation`) or its colours agree with the
    cut-out's."""
    return r2 >= SILHOUETTE_STRONG or (r2 >= SILHOUETTE_MIN and (
        correlation >= SHADING_AGREE
        or colour_difference(generated, cut, matrix_crop) <= COLOUR_AGREE_DE))
