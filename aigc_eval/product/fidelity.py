"""Is the product in the generated image the merchant's, unchanged?

The cut-out is warped onto the canvas with the found placement and both are compared on a common
grid where the product's long side is at most `long_side` px (192 by default; 384 for
sharpness). The mask is eroded by `erode_px(...)` (2 % of the product's long side, at least 5 px:
the radius of SSIM's Gaussian window, so no SSIM window reaches the new background), and the rim
between the mask and its erosion is judged separately by `edge_score`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.color import deltaE_ciede2000, xyz2lab
from skimage.color.colorconv import xyz_from_rgb
from skimage.util import img_as_float

from . import geometry as geo
from .cutout import Cutout

ERODE_FRACTION = 0.02
ERODE_MIN_PX = 5


@dataclass(frozen=True)
class Aligned:
    """Generated crop and warped cut-out on one grid: `generated`, `reference` (h, w, 3) uint8,
    `mask` (h, w) bool = the warped product mask inside the canvas."""

    generated: np.ndarray
    reference: np.ndarray
    mask: np.ndarray


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the mask's nonzero pixels; width 0 when there are none."""
    return cv2.boundingRect(mask.astype(np.uint8))


def erode_px(mask: np.ndarray) -> int:
    """Erosion radius for a mask: max(5, round(2 % of its bounding box's long side))."""
    _, _, w, h = _bbox(mask)
    if w == 0:
        return ERODE_MIN_PX
    return max(ERODE_MIN_PX, round(ERODE_FRACTION * max(w, h)))


def erode(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Binary erosion with a (2 pixels + 1) square, the shape of skimage's SSIM window (radius 5
    for σ=1.5), so no window centred on the eroded mask reaches outside the mask; outside the
    array counts as background."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * pixels + 1, 2 * pixels + 1))
    out = cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.astype(bool)


def align(generated: np.ndarray, cut: Cutout, matrix: np.ndarray, long_side: float = 192,
          mimic_upscale: bool = False) -> Aligned | None:
    """Warp the cut-out (and its mask) under `matrix` (original cut-out -> canvas px) onto the
    canvas crop around the product, both resampled so the product's long side <= `long_side`.
    The cut-out is first shrunk by a pyramid (as the canvas crop is) so that neither side of
    the comparison is aliased; the residual rotation and sub-pixel shift use INTER_LINEAR.
    With `mimic_upscale`, a cut-out that the generator enlarged is enlarged to canvas scale
    first and then shrunk with the canvas, so both sides went through the same two resamplings
    (otherwise the reference is sharper than any upscale-then-shrink and detail looks lost)."""
    matrix_crop = geo.compose(matrix, geo.translation(cut.origin[0], cut.origin[1]))
    scale, _ = geo.decompose(matrix_crop)
    product_long = max(cut.mask.shape) * scale
    k = min(1.0, long_side / product_long)
    if mimic_upscale and scale > 1.0 and k < 1.0:
        full = align(generated, cut, matrix, math.inf)
        if full is None:
            return None
        gen, _ = geo.resize_by(full.generated, k)
        ref, _ = geo.resize_to(full.reference, gen.shape[1::-1])
        mask = geo.resize_to(full.mask.astype(np.uint8) * 255, gen.shape[1::-1])[0] >= 128
        return Aligned(np.ascontiguousarray(gen), ref, mask) if mask.any() else None
    # The mask travels as 0/255 uint8 and is thresholded at half way, like a 0/1 float mask at
    # 0.5 to within a grey level, at a fraction of a float warp's cost.
    reference, mask_small, to_ref = cut.shrunk(scale * k)
    h, w = cut.mask.shape
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float64)
    mapped = corners @ matrix_crop.T
    margin = 0.05 * product_long + 8 / k
    height, width = generated.shape[:2]
    x0 = int(max(0, math.floor(mapped[:, 0].min() - margin)))
    y0 = int(max(0, math.floor(mapped[:, 1].min() - margin)))
    x1 = int(min(width, math.ceil(mapped[:, 0].max() + margin)))
    y1 = int(min(height, math.ceil(mapped[:, 1].max() + margin)))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    crop, to_crop = geo.resize_by(generated[y0:y1, x0:x1], k)
    warp = geo.compose(to_crop, geo.translation(-x0, -y0), matrix_crop, geo.invert(to_ref))
    size = crop.shape[1::-1]
    warped = cv2.warpAffine(reference, warp, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    warped_mask = cv2.warpAffine(mask_small, warp, size, flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= 128
    if not warped_mask.any():
        return None
    return Aligned(np.ascontiguousarray(crop), warped, warped_mask)


def sample_mask(mask: np.ndarray, stride: int = 2) -> np.ndarray:
    """The mask's pixels on every `stride`-th row and column: the sample the colour mean is
    taken over (colour varies slowly; this quarters the cost of CIEDE2000)."""
    out = np.zeros_like(mask)
    out[::stride, ::stride] = mask[::stride, ::stride]
    return out


SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # skimage's Gaussian window: int(3.5 * 1.5 + 0.5)
SSIM_C1, SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2  # skimage's K1, K2 at data range 255
_TAPS = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
# scipy.ndimage's Gaussian kernel (what skimage's SSIM filters with): exp(-x² / 2σ²), normalised.
_SSIM_KERNEL = np.exp(-0.5 * (_TAPS / SSIM_SIGMA) ** 2)
_SSIM_KERNEL /= _SSIM_KERNEL.sum()


def _gauss(image: np.ndarray) -> np.ndarray:
    """skimage's SSIM window: Gaussian σ 1.5 truncated at 3.5 σ, 'reflect' border, float64."""
    return cv2.sepFilter2D(image, cv2.CV_64F, _SSIM_KERNEL, _SSIM_KERNEL,
                           borderType=cv2.BORDER_REFLECT)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """skimage's full SSIM map, `structural_similarity(a, b, channel_axis=-1,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
    full=True)[1]` for (h, w, 3) (per channel) or (h, w) images, computed with OpenCV's
    separable filter in float64: the same 11 Gaussian taps, the same border (scipy's
    'reflect' is cv2.BORDER_REFLECT), the same formula. Equal to skimage's to ~1e-12
    (tests/test_product_measures.py checks), at under half its cost."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    mu_x, mu_y = _gauss(x), _gauss(y)
    var_x = _gauss(x * x) - mu_x * mu_x
    var_y = _gauss(y * y) - mu_y * mu_y
    cov = _gauss(x * y) - mu_x * mu_y
    return (((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2))
            / ((mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)))


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean of skimage's full SSIM map (Gaussian window σ=1.5, population covariance, data
    range 255, all three channels) over the mask's pixels. 1 = identical. The map is computed
    on the mask's bounding box plus the window's radius (+1), which gives the same values at
    the mask's pixels as the whole image does, at a fraction of the cost."""
    bx, by, bw, bh = _bbox(mask)
    if bw == 0:
        return math.nan
    pad = SSIM_RADIUS + 1
    y0, y1 = max(0, by - pad), min(mask.shape[0], by + bh + pad)
    x0, x1 = max(0, bx - pad), min(mask.shape[1], bx + bw + pad)
    window = (slice(y0, y1), slice(x0, x1))
    return float(ssim_map(a[window], b[window])[mask[window]].mean())


# skimage's rgb2xyz linearises sRGB per channel value; a uint8 channel has 256 values, so the
# same formula is evaluated once here instead of a power per pixel.
_LEVELS = img_as_float(np.arange(256, dtype=np.uint8))
_LINEAR = np.where(_LEVELS > 0.04045, np.power((_LEVELS + 0.055) / 1.055, 2.4), _LEVELS / 12.92)


def lab_at(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """skimage's rgb2lab (sRGB, D65, 2° observer) of an RGB uint8 image at the mask's pixels,
    (N, 3) float64: rgb2xyz's linearisation looked up per channel value, its matrix, then
    skimage's own xyz2lab. Equal to rgb2lab(rgb)[mask] to float64 rounding."""
    return xyz2lab(_LINEAR[rgb[mask]] @ xyz_from_rgb.T)


def delta_e(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 between two RGB uint8 images (sRGB, D65), at the mask's pixels only:
    deltaE_ciede2000(rgb2lab(a), rgb2lab(b))[mask], with Lab computed for those pixels alone."""
    return deltaE_ciede2000(lab_at(a, mask), lab_at(b, mask))


def delta_e_at(a: np.ndarray, b: np.ndarray, *masks: np.ndarray) -> list[np.ndarray]:
    """delta_e(a, b, mask) for each mask, from one Lab conversion and one CIEDE2000 call over
    their union (the per-call overhead is a good part of the cost at a few thousand pixels)."""
    union = np.logical_or.reduce(masks)
    values = delta_e(a, b, union)
    position = np.zeros(union.shape, np.int64)
    position[union] = np.arange(len(values))
    return [values[position[mask]] for mask in masks]


def mean_delta_e(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean CIEDE2000 over the mask: deltaE_ciede2000(rgb2lab(a), rgb2lab(b))[mask].mean()."""
    return float(delta_e(a, b, mask).mean())


def laplacian_energy(rgb: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared response of the 3x3 Laplacian of the grey image (0..255) over the mask."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    response = cv2.Laplacian(gray, cv2.CV_32F, ksize=3, borderType=cv2.BORDER_REFLECT)
    return float(np.square(response[mask], dtype=np.float64).mean())


def sharpness_ratio(generated: np.ndarray, reference: np.ndarray, mask: np.ndarray,
                    floor: float = 4.0) -> float:
    """Detail kept: laplacian_energy(generated) / laplacian_energy(reference) over the mask, on
    the same grid. ~1 unchanged, < 1 softer (Gaussian σ=2 px leaves ~0.1 on textured products),
    > 1 crisper or noisier. A reference with energy under `floor` (a flat product, nothing to
    lose) gives 1."""
    reference_energy = laplacian_energy(reference, mask)
    if reference_energy < floor:
        return 1.0
    return laplacian_energy(generated, mask) / reference_energy


BLUR_SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)  # px on the sharpness grid


def blur_sigma(generated: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """The Gaussian σ (px on this grid) that best explains the generated product as a blurred
    reference: for each σ of `BLUR_SIGMAS`, the least-squares residual of the generated grey
    levels against gain × (reference blurred by σ) + offset over the mask (every 2nd row and
    column; the gain and offset take brightness and contrast changes out); the best σ, refined by
    a parabola through it and its neighbours. Unlike the Laplacian energy ratio it does not
    depend on how much fine detail the product had: an already soft product blurred further is
    still explained by its blur."""
    y = cv2.cvtColor(generated, cv2.COLOR_RGB2GRAY).astype(np.float32)
    ref = cv2.cvtColor(reference, cv2.COLOR_RGB2GRAY).astype(np.float32)
    sample = mask.copy()
    sample[1::2] = False
    sample[:, 1::2] = False
    if sample.sum() < 20:
        return math.nan
    target = y[sample].astype(np.float64)
    target -= target.mean()
    total = float(target @ target)
    residuals = []
    for sigma in BLUR_SIGMAS:
        x = (cv2.GaussianBlur(ref, (0, 0), sigma) if sigma else ref)[sample].astype(np.float64)
        x -= x.mean()
        var = float(x @ x)
        residuals.append(total - float(x @ target) ** 2 / var if var > 1e-9 else total)
    i = int(np.argmin(residuals))
    if 0 < i < len(BLUR_SIGMAS) - 1:
        (s0, s1, s2), (r0, r1, r2) = BLUR_SIGMAS[i - 1:i + 2], residuals[i - 1:i + 2]
        # The vertex of the parabola through the three points (unequal spacing).
        denom = (s0 - s1) * (s0 - s2) * (s1 - s2)
        a = (s2 * (r1 - r0) + s1 * (r0 - r2) + s0 * (r2 - r1)) / denom
        b = (s2 * s2 * (r0 - r1) + s1 * s1 * (r2 - r0) + s0 * s0 * (r1 - r2)) / denom
        if a > 0:
            return float(min(s2, max(s0, -b / (2 * a))))
    return float(BLUR_SIGMAS[i])


def structure_map(a: np.ndarray, b: np.ndarray, smooth_sigma: float = 2.0) -> np.ndarray:
    """Content agreement per pixel: SSIM map (skimage, Gaussian window σ=1.5) of the grey images
    after a Gaussian blur of σ=`smooth_sigma` px and a 2x shrink (INTER_AREA) of both, resized
    back (INTER_LINEAR) to the input grid. The blur takes sharpness and JPEG noise out, so what
    stays low is different content; working at half size quarters the cost."""
    def prepare(rgb: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gray = cv2.GaussianBlur(gray, (0, 0), smooth_sigma)
        half = (max(1, gray.shape[1] // 2), max(1, gray.shape[0] // 2))
        return cv2.resize(gray, half, interpolation=cv2.INTER_AREA)

    small_a, small_b = prepare(a), prepare(b)
    if min(small_a.shape) < 7:  # too small to hold a structure
        return np.ones(a.shape[:2])
    return cv2.resize(ssim_map(small_a, small_b).astype(np.float32), a.shape[1::-1], interpolation=cv2.INTER_LINEAR)


def altered_mask(structure: np.ndarray, mask: np.ndarray, ssim_tolerance: float = 0.5) -> np.ndarray:
    """Pixels of the mask whose structure agreement is below `ssim_tolerance`."""
    return mask & (structure < ssim_tolerance)


def altered_share(structure: np.ndarray, mask: np.ndarray, ssim_tolerance: float = 0.5) -> float:
    """Share of the mask where structure_map < `ssim_tolerance`: product area painted over,
    hallucinated, or displaced by a distortion."""
    return float(altered_mask(structure, mask, ssim_tolerance).sum() / max(1, mask.sum()))


def rim_mask(mask: np.ndarray, band_px: int, eroded: np.ndarray | None = None) -> np.ndarray:
    """The product's rim: inside the outline, from 1 px to `band_px` px deep (`eroded` =
    erode(mask, band_px) when the caller has it). The outermost pixel is left out: it is a blend
    of product and background by construction."""
    inner = erode(mask, band_px) if eroded is None else eroded
    return erode(mask, 1) & ~inner


def edge_share(rim_delta_e: np.ndarray, tolerance: float = 20.0,
               interior_delta_e: float = 0.0, rim_structure: np.ndarray | None = None,
               ssim_tolerance: float = 0.5) -> float:
    """Share of rim pixels whose CIEDE2000 is within max(`tolerance`, 2 x `interior_delta_e`)
    and, when `rim_structure` (structure_map at the same pixels) is given, whose structure
    agreement is at least `ssim_tolerance`; 1 for an empty rim."""
    if rim_delta_e.size == 0:
        return 1.0
    intact = rim_delta_e <= max(tolerance, 2.0 * interior_delta_e)
    if rim_structure is not None:
        intact &= rim_structure >= ssim_tolerance
    return float(intact.mean())
