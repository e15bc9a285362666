"""Product-like content grown outside the product's outline (`product_expansion`).

Generators that paint a new background around a cut-out often extend the product itself: a
second copy behind it, a strap or handle that was never there, a reflection attached to its
base. The object-expansion measure of the background-generation literature (Eshratifar et al.,
"Salient Object-Aware Background Generation using Text-Guided Diffusion Models", CVPR
workshops 2024, arXiv 2404.10157) counts the generated image's foreground outside the input
mask, relative to the mask. They segment the foreground with a salient-object network; without
model weights, this module estimates it from colour: a pixel near the outline is foreground when
its colour is clearly likelier under the product's colours in the generated image than under the
background's colours further out.

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
  Gaussian σ = half the band, on a half-size grid) with a*b* within 6 levels of it. Then a
  3x3 opening.
* `product_expansion` = product-like band pixels 8-connected to that 5 px ring, as a
  share of M's area. NaN when the crop holds fewer than 200 background reference pixels
  (the product fills the frame: there is no background to tell the product from).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from . import geometry as geo
from .cutout import Cutout

EXPANSION_LONG_SIDE = 128  # the product's long side (px) on the measuring grid
BAND_FRACTION = 0.30       # how far out from the outline grown content is looked for
LIKELIHOOD_RATIO = 4.0     # P(colour | product) over P(colour | background) for "product-like"
RING_FRACTION = 0.04       # the ring just outside the outline that is left out, of the long side
SHADOW_CHROMA = 6.0        # OpenCV 8-bit Lab a*b* distance within which darker = a shadow
_BINS = (4, 32, 32)
_RANGES = [0, 256, 0, 256, 0, 256]


def _histogram(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    hist = cv2.calcHist([lab], [0, 1, 2], mask.astype(np.uint8), list(_BINS), _RANGES)
    return hist / max(1.0, float(hist.sum()))


def expansion(generated: np.ndarray, cut: Cutout, matrix: np.ndarray,
              long_side: int = EXPANSION_LONG_SIDE, band_fraction: float = BAND_FRACTION,
              ratio: float = LIKELIHOOD_RATIO) -> float:
    """`product_expansion` of the product placed by `matrix` (original cut-out -> canvas px)
    in the RGB uint8 `generated`; see the module docstring for the definition."""
    matrix_crop = geo.compose(matrix, geo.translation(cut.origin[0], cut.origin[1]))
    scale, _ = geo.decompose(matrix_crop)
    h, w = cut.mask.shape
    product_long = max(h, w) * scale
    k = min(1.0, long_side / product_long)
    band_px = max(3, round(band_fraction * product_long * k))
    box = geo.padded_box(matrix_crop, (w, h), (band_px + 12) / k, generated.shape)
    if box is None:
        return math.nan
    x0, y0, x1, y1 = box
    crop, to_crop = geo.resize_by(generated[y0:y1, x0:x1], k)
    warp = geo.compose(to_crop, geo.translation(-x0, -y0), matrix_crop)
    key = "mask 0/255"
    if key not in cut.cache:
        cut.cache[key] = cut.mask.astype(np.uint8) * 255
    mask = cv2.warpAffine(cut.cache[key], warp, crop.shape[1::-1], flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= 128
    area = int(mask.sum())
    if area < 20:
        return math.nan
    mask8 = mask.astype(np.uint8)
    # Distances to the mask and into it stand for dilations and erosions by discs.
    outside = cv2.distanceTransform(1 - mask8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    inside = cv2.distanceTransform(mask8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    interior = inside > 3
    ring_outer = outside <= max(2, round(RING_FRACTION * long_side))
    band = (outside <= band_px) & ~ring_outer
    background = outside > band_px + 4
    if background.sum() < 200 or interior.sum() < 20:
        return math.nan
    lab = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2LAB)
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
    candidate = cv2.morphologyEx((candidate & ~shadow).astype(np.uint8), cv2.MORPH_OPEN,
                                 np.ones((3, 3), np.uint8)) > 0
    ring = ring_outer & ~mask
    count, labels = cv2.connectedComponents((candidate | ring).astype(np.uint8), connectivity=8)
    if count <= 1:
        return 0.0
    attached = np.zeros(count, bool)
    attached[np.unique(labels[ring])] = True
    attached[0] = False
    return float((attached[labels] & candidate).sum() / area)
