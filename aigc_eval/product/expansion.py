"""Product-like content grown outside the product's outline (`product_expansion`).

Generators that paint a new background around a cut-out often extend the product itself: a
second copy behind it, a strap or handle that was never there, a reflection attached to its
base. The object-expansion measure of the background-generation literature (Eshratifar et al.,
"Salient Object-Aware Background Generation using Text-Guided Diffusion Models", CVPR
workshops 2024, arXiv 2404.10157) counts the generated image's foreground outside the input
mask, relative to the mask. They segment the foreground with a salient-object network; without
model weights, this module proposes it by colour (a pixel near the outline whose colour is
clearly likelier under the product's colours than under the background's further out) and keeps
what looks like a part of the product (structure).

Definition (on a grid where the product's long side is <= 128 px):

* M = the cut-out's mask under the placement; interior = M eroded by 3 px; the band = M dilated
  by 30 % of the product's long side, minus M dilated by 4 % of it (5 px: the outline's own
  blend, and a mask drawn slightly inside the product's visible edge); the background
  reference = the crop outside M dilated by that band + 4 px. Dilations and the erosion are by
  discs, taken as Euclidean distances to and into M (`cv2.distanceTransform`, precise mask).
* Colour histograms in CIELAB (OpenCV's 8-bit Lab; 4 lightness x 32 x 32 chroma bins, so
  shading and soft shadows, which mostly change lightness, weigh little): P from the interior,
  B from the background reference, each normalised to sum 1.
* A band pixel is product-like when P(c) > 4 B(c) + 1e-3 at its colour c (back-projection)
  and it is not a shadow: a shadow pixel is darker (by > 3 levels of OpenCV's 8-bit L) than
  the background extrapolated into the band (normalised convolution of the reference area,
  Gaussian σ = half the band, on a half-size grid) with a*b* within 6 levels of it, and no
  more textured than the background (L's spread in a 5x5 window at most 1.5 x its 90th
  percentile over the reference, + 2 levels). Then a 3x3 opening.
* The product-like band pixels 8-connected to that 5 px ring form groups joined through the
  ring, so the pixels around one closed outline are one group (verified piece by piece,
  chance pieces of busy backgrounds passed). Each is then
  verified by structure: it counts only when it looks like a part of the product, that is when
  its pixels (as a masked template, CIELAB, `cv2.matchTemplate` TM_CCOEFF_NORMED) correlate
  above 0.6 with the generated image at some shift where at least 70 % of them fall inside M
  (not all: a strap over a narrow top carries texture from beside it as well as from it).
  Groups under 15 px, or flat (no channel's spread over 3 levels), cannot be verified and do
  not count. A second copy, or a part that continues the product's own pattern, passes; a
  background that only shares the product's colours (a gradient, a blurred photo) does not.
* A group that fails that test still counts when it is shaped like a handle: with the product
  (M dilated by the ring) it encloses background, after a 5x5 closing (which bridges a thin
  part broken by JPEG), that M with the ring does not enclose alone, at least 3 % of M's area
  and at least 0.42 x the group's own area (the dev set's straps enclose 0.47 x theirs and
  more; a patch of the product's colours around the product with a few holes in it encloses
  less: a saucer in the background photo around a pasted cup, 0.07-0.37). So a strap with a
  structure of its own is caught when it is proposed whole; one broken by colours unlike the
  product's, or on a background in the product's colours, is missed.
* `product_expansion` = the verified pixels' count as a share of M's area. NaN when the crop
  holds fewer than 200 background reference pixels (the product fills the frame: there is no
  background to tell the product from).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from . import geometry as geo
from .cutout import Cutout

EXPANSION_LONG_SIDE = 128  # the product's long side (px) on the measuring grid
BAND_FRACTION = 0.30       # how far out from the outline grown content is looked for
LIKELIHOOD_RATIO = 4.0     # P(colour | product) over P(colour | background) for "product-like"
RING_FRACTION = 0.04       # the ring just outside the outline that is left out, of the long side
SHADOW_CHROMA = 6.0        # OpenCV 8-bit Lab a*b* distance within which darker = a shadow
SHADOW_TEXTURE = 1.5       # ... unless its local spread of L exceeds this x the background's
VERIFY_CORRELATION = 0.6   # a grown group's correlation with a part of the product
VERIFY_INSIDE = 0.7        # ... at a shift where this share of it falls inside the outline
                           # (0.8 until session 18: the tuned astronaut's strap lies 73 % inside
                           # at its source, the rest of its texture is the gravel beside the head)
VERIFY_MIN_PX = 15         # smaller groups cannot be verified
ENCLOSED_MIN = 0.03        # background newly enclosed by grown content, of the product's area
ENCLOSED_RATIO = 0.42      # ... and of the grown group's own area
_BINS = (4, 32, 32)
_RANGES = [0, 256, 0, 256, 0, 256]


def _local_spread(channel: np.ndarray) -> np.ndarray:
    """Standard deviation of `channel` in the 5x5 window around each pixel."""
    values = channel.astype(np.float32)
    mean = cv2.blur(values, (5, 5))
    return np.sqrt(np.maximum(cv2.blur(values * values, (5, 5)) - mean * mean, 0.0))


def _histogram(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    hist = cv2.calcHist([lab], [0, 1, 2], mask.astype(np.uint8), list(_BINS), _RANGES)
    return hist / max(1.0, float(hist.sum()))


@dataclass(frozen=True)
class MeasuringCrop:
    """The generated image around the placed product on the measuring grid: `lab` (OpenCV
    8-bit CIELAB), the placed `mask`, Euclidean distances `outside` it and `inside` it, and
    `band_px`, the band's width. Shared by the expansion and the reflection measures."""

    lab: np.ndarray
    mask: np.ndarray
    outside: np.ndarray
    inside: np.ndarray
    band_px: int


def measuring_crop(generated: np.ndarray, cut: Cutout, matrix: np.ndarray,
                   long_side: int = EXPANSION_LONG_SIDE,
                   band_fraction: float = BAND_FRACTION) -> MeasuringCrop | None:
    """The crop of the RGB uint8 `generated` around the product placed by `matrix` (original
    cut-out -> canvas px); None when it lies outside the frame or covers under 20 px."""
    matrix_crop = geo.compose(matrix, geo.translation(cut.origin[0], cut.origin[1]))
    scale, _ = geo.decompose(matrix_crop)
    h, w = cut.mask.shape
    product_long = max(h, w) * scale
    k = min(1.0, long_side / product_long)
    band_px = max(3, round(band_fraction * product_long * k))
    box = geo.padded_box(matrix_crop, (w, h), (band_px + 12) / k, generated.shape)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    crop, to_crop = geo.resize_by(generated[y0:y1, x0:x1], k)
    warp = geo.compose(to_crop, geo.translation(-x0, -y0), matrix_crop)
    key = "mask 0/255"
    if key not in cut.cache:
        cut.cache[key] = cut.mask.astype(np.uint8) * 255
    mask = cv2.warpAffine(cut.cache[key], warp, crop.shape[1::-1], flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= 128
    if mask.sum() < 20:
        return None
    mask8 = mask.astype(np.uint8)
    # Distances to the mask and into it stand for dilations and erosions by discs.
    return MeasuringCrop(
        lab=cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2LAB), mask=mask,
        outside=cv2.distanceTransform(1 - mask8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE),
        inside=cv2.distanceTransform(mask8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE),
        band_px=band_px)


def expansion(generated: np.ndarray, cut: Cutout, matrix: np.ndarray,
              ratio: float = LIKELIHOOD_RATIO) -> float:
    """`product_expansion` of the product placed by `matrix` (original cut-out -> canvas px)
    in the RGB uint8 `generated`; see the module docstring for the definition."""
    m = measuring_crop(generated, cut, matrix)
    return math.nan if m is None else expansion_in(m, ratio)


def expansion_in(m: MeasuringCrop, ratio: float = LIKELIHOOD_RATIO) -> float:
    """`product_expansion` measured on a prepared crop."""
    mask, band_px, lab = m.mask, m.band_px, m.lab
    area = int(mask.sum())
    interior = m.inside > 3
    ring_outer = m.outside <= max(2, round(RING_FRACTION * EXPANSION_LONG_SIDE))
    band = (m.outside <= band_px) & ~ring_outer
    background = m.outside > band_px + 4
    if background.sum() < 200 or interior.sum() < 20:
        return math.nan
    likely = _histogram(lab, interior) > ratio * _histogram(lab, background) + 1e-3
    product_like = likely[lab[..., 0] // (256 // _BINS[0]), lab[..., 1] // (256 // _BINS[1]),
                          lab[..., 2] // (256 // _BINS[2])]
    candidate = product_like & band
    if not candidate.any():
        return 0.0
    sigma = max(2.0, band_px / 2.0)
    # The background's local colour, extrapolated into the band by normalised convolution on a
    # half-size grid (sigma is at least a few pixels there, so nothing is lost).
    small_bg = cv2.resize(background.astype(np.float32), None, fx=0.5, fy=0.5,
                          interpolation=cv2.INTER_AREA)
    small_lab = cv2.resize(lab.astype(np.float32), None, fx=0.5, fy=0.5,
                           interpolation=cv2.INTER_AREA)
    weight = cv2.GaussianBlur(small_bg, (0, 0), sigma / 2) + 1e-6
    local = cv2.GaussianBlur(small_lab * small_bg[..., None], (0, 0),
                             sigma / 2) / weight[..., None]
    local = cv2.resize(local, lab.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    diff = lab.astype(np.float32) - local
    shadow = (diff[..., 0] < -3.0) & (np.hypot(diff[..., 1], diff[..., 2]) <= SHADOW_CHROMA)
    # A shadow darkens what lies under it; it brings no texture of its own. Darker, greyer
    # content textured beyond the background's own (a strap of a grey-brown product on a pale
    # studio wall) is no shadow.
    texture = _local_spread(lab[..., 0])
    shadow &= texture <= SHADOW_TEXTURE * float(np.quantile(texture[background], 0.9)) + 2.0
    candidate = cv2.morphologyEx((candidate & ~shadow).astype(np.uint8), cv2.MORPH_OPEN,
                                 np.ones((3, 3), np.uint8)) > 0
    ring = ring_outer & ~mask
    count, labels = cv2.connectedComponents((candidate | ring).astype(np.uint8), connectivity=8)
    if count <= 1:
        return 0.0
    attached = np.zeros(count, bool)
    attached[np.unique(labels[ring])] = True
    attached[0] = False
    grown = attached[labels] & candidate
    # Converted once for every group's template searches.
    lab_float, mask_float = lab.astype(np.float32), mask.astype(np.float32)
    base = _enclosed(_closed(ring_outer))  # what the outline encloses by itself
    verified = 0
    for i in np.unique(labels[grown]):
        group = grown & (labels == i)
        verified += (_looks_like_product(lab_float, mask_float, group)
                     or _encloses(group, ring_outer, base, area))
    return float(verified / area)


def _enclosed(solid: np.ndarray) -> np.ndarray:
    """The pixels outside the boolean `solid` that no 4-connected path joins to the border."""
    count, labels = cv2.connectedComponents((~solid).astype(np.uint8), connectivity=4)
    keep = np.ones(count, bool)
    keep[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = False
    keep[0] = False  # the solid itself
    return keep[labels]


_DISC5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def _closed(solid: np.ndarray) -> np.ndarray:
    """`solid` after a 5x5 closing, which bridges the JPEG-broken pixels of a thin part."""
    return cv2.morphologyEx(solid.astype(np.uint8), cv2.MORPH_CLOSE, _DISC5) > 0


def _encloses(group: np.ndarray, ring_outer: np.ndarray, base: np.ndarray, area: int) -> int:
    """The pixel count of `group` when, with the product (its outline's ring), it encloses
    background that the outline alone (`base`) does not, at least ENCLOSED_MIN of the product's
    `area` and ENCLOSED_RATIO of its own: a strap or handle whose ends stand on the product,
    not a wide patch of the product's colours with a few holes in it. Else 0."""
    size = int(group.sum())
    enclosed = int((_enclosed(_closed(ring_outer | group)) & ~base & ~ring_outer).sum())
    return size if enclosed >= max(ENCLOSED_MIN * area, ENCLOSED_RATIO * size) else 0


def _looks_like_product(lab: np.ndarray, mask: np.ndarray, group: np.ndarray) -> int:
    """The pixel count of `group` when, as a masked template, it correlates with the float32
    CIELAB image `lab` above VERIFY_CORRELATION at a shift that lays VERIFY_INSIDE of it
    inside the float32 0/1 `mask`; else 0."""
    size = int(group.sum())
    if size < VERIFY_MIN_PX:
        return 0
    ys, xs = np.nonzero(group)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    template = lab[y0:y1, x0:x1]
    weights = group[y0:y1, x0:x1].astype(np.float32)
    if template[weights > 0].std(axis=0).max() < 3.0:
        return 0  # flat: its colour is all there is, and colour was the proposal
    allowed = cv2.matchTemplate(mask, weights, cv2.TM_CCORR) >= VERIFY_INSIDE * size
    if not allowed.any():
        return 0
    # The correlation only where the shift is allowed (the window of the image those shifts
    # reach): the same answer at a fraction of the cost of the whole crop.
    rows, cols = np.nonzero(allowed.any(axis=1))[0], np.nonzero(allowed.any(axis=0))[0]
    v0, v1, u0, u1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    window = lab[v0:v1 + y1 - y0 - 1, u0:u1 + x1 - x0 - 1]
    score = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED, mask=weights)
    score = np.nan_to_num(score, nan=-1.0, posinf=-1.0, neginf=-1.0)
    score[~allowed[v0:v1, u0:u1]] = -1.0
    return size if float(score.max()) > VERIFY_CORRELATION else 0
