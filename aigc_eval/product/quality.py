"""Whole-image quality, weight-free. These produce warnings only, never product issues: a soft
or noisy backdrop is the generator's style choice, the product checks judge the product."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .geometry import resize_to_long_side

BLUR_LONG_SIDE = 512
BLUR_WARN_BELOW = 15.0     # variance of Laplacian at 512 px; see docs/product_checks.md
CLIPPED_WARN_ABOVE = 0.50  # pure-white studio backdrops alone clip 30-50 % of a main image
NOISE_WARN_ABOVE = 6.0     # grey levels (0..255); JPEG q85 of a clean photo estimates ~1-3

# Immerkær's noise-estimation kernel: the difference of two Laplacians, blind to edges and
# linear ramps, so what it responds to is noise.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def _gray(image: np.ndarray) -> np.ndarray:
    """Grey of an RGB image; a grey (2-D) image as it is, so a caller measuring all three
    converts once."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def blur_measure(image: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian of the grey image (RGB or grey uint8 input) shrunk
    (pyramid) to a 512 px long side, so the value does not depend on the image's size. Lower =
    softer. Large flat backdrops lower it too, hence the conservative warning threshold."""
    gray, _ = resize_to_long_side(_gray(image), BLUR_LONG_SIDE)
    _, std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_32F, ksize=3))
    return float(std[0, 0] ** 2)


def clipped_share(image: np.ndarray) -> float:
    """Share of pixels whose grey level is <= 2 or >= 253 (crushed shadows or blown highlights);
    RGB or grey uint8 input."""
    gray = _gray(image)
    kept = cv2.countNonZero(cv2.inRange(gray, 3, 252))
    return float(1.0 - kept / gray.size)


def noise_sigma(image: np.ndarray) -> float:
    """Noise standard deviation in grey levels by Immerkær's method (1996, 'Fast noise variance
    estimation'): sqrt(pi/2) / (6 (W-2)(H-2)) * sum |gray * N| over the interior, N the 3x3
    kernel above, on an RGB or grey uint8 image. Measured at full resolution (noise is a
    per-pixel property)."""
    gray = _gray(image)
    height, width = gray.shape
    if height < 3 or width < 3:
        return 0.0
    response = cv2.filter2D(gray, cv2.CV_16S, _NOISE_KERNEL)[1:-1, 1:-1]
    total = cv2.norm(response, cv2.NORM_L1)
    return float(math.sqrt(math.pi / 2.0) * total / (6.0 * (width - 2) * (height - 2)))


def quality_warnings(blur: float, clipped: float, noise: float) -> list[str]:
    """Warning texts for the whole image; empty when none."""
    warnings = []
    if blur < BLUR_WARN_BELOW:
        warnings.append(f"image looks blurred (Laplacian variance {blur:.1f} < {BLUR_WARN_BELOW:g})")
    if clipped > CLIPPED_WARN_ABOVE:
        warnings.append(f"{clipped:.0%} of pixels clipped to black or white")
    if noise > NOISE_WARN_ABOVE:
        warnings.append(f"image looks noisy (sigma {noise:.1f} grey levels)")
    return warnings
