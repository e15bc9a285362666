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
  blend, and a mask drawn slightly inside the product's visible edge); the
  background reference = the crop outside M dilated by that band + 4 px.
* Colour histograms in CIELAB (OpenCV's 8-bit Lab; 4 lightness x 32 x 32 chroma bins, so
  shading and soft shadows, which mostly change lightness, weigh little): P from the interior,
  B from the background reference, each normalised to sum 1.
* A band pixel is product-like when P(c) > 4 B(c) + 1e-3 at its colour c (back-projection)
  and it is not a shadow: a shadow pixel is darker (by > 3 levels of OpenCV's 8-bit L) than
  the background extrapolated into the band (normalised convolution of the reference area,
  Gaussian σ = half the band) with a*b* within 6 levels of it. Then a 3x3 opening.
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


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


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
    interior = cv2.erode(mask8, _disc(3)) > 0
    # The outline's blend, and a mask drawn a little inside the product's visible edge (soft
    # edges, a rim the merchant's cut-out left out), are not grown content.
    ring_outer = cv2.dilate(mask8, _disc(max(2, round(RING_FRACTION * long_side)))) > 0
    reach = cv2.dilate(mask8, _disc(band_px)) > 0
    background = ~(cv2.dilate(mask8, _disc(band_px + 4)) > 0)
    if background.sum() < 200 or interior.sum() < 20:
        return math.nan
    lab = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2LAB)
    product_hist = _histogram(lab, interior)
    background_hist = _histogram(lab, background)
    likely = product_hist > ratio * background_hist + 1e-3
    # Back-projection: each pixel's bin (cv2.calcHist's uniform bins over 0..255).
    product_like = likely[lab[..., 0] // (256 // _BINS[0]), lab[..., 1] // (256 // _BINS[1]),
                          lab[..., 2] // (256 // _BINS[2])]
    band = reach & ~ring_outer
    # A shadow is the background darkened: darker than the background extrapolated into the
    # band (normalised convolution from the reference area) with about its chroma. It is
    # product-like in colour when the product is dark, and it is not grown content.
    sigma = max(2.0, band_px / 2.0)
    weight = cv2.GaussianBlur(background.astype(np.float32), (0, 0), sigma) + 1e-6
    local = cv2.GaussianBlur(lab.astype(np.float32) * background[..., None], (0, 0),
                             sigma) / weight[..., None]
    diff = lab.astype(np.float32) - local
    shadow = (diff[..., 0] < -3.0) & (np.hypot(diff[..., 1], diff[..., 2]) <= SHADOW_CHROMA)
    candidate = cv2.morphologyEx((product_like & band & ~shadow).astype(np.uint8), cv2.MORPH_OPEN,
                                 np.ones((3, 3), np.uint8)) > 0
    # Connected to the outline: components of (candidate + the outline's ring) that hold
    # ring pixels; the ring itself is not counted.
    ring = ring_outer & ~mask
    count, labels = cv2.connectedComponents((candidate | ring).astype(np.uint8), connectivity=8)
    if count <= 1:
        return 0.0
    attached = np.zeros(count, bool)
    attached[np.unique(labels[ring])] = True
    attached[0] = False
    return float((attached[labels] & candidate).sum() / area)
