"""Where the product sits on the canvas, and what the marketplace asks of a main image.

Measured from the cut-out's mask mapped onto the canvas by the placement (each mask pixel's
centre transformed by the 2x3 matrix; a similarity scales area uniformly, so counting mapped
points counts area)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .cutout import Cutout

SAMPLE_LONG_SIDE = 256  # mask points sampled on this grid: composition needs % accuracy only


@dataclass(frozen=True)
class Profile:
    """A marketplace's main-image requirements. None = no requirement.

    min_long_side_px: the image's long side; min_width/min_height: the image's size;
    aspect: width / height required (within aspect_tolerance); min_fill: coverage_long_side;
    max_centre_offset: centre_offset; max_cut_off: cut_off_share."""

    name: str
    min_long_side_px: int | None
    min_width: int | None
    min_height: int | None
    aspect: float | None
    aspect_tolerance: float
    min_fill: float
    max_centre_offset: float
    max_cut_off: float
    source: str

    @property
    def summary(self) -> str:
        """One line of the profile's limits, e.g. for a CLI's help."""
        parts = []
        if self.min_long_side_px:
            parts.append(f"long side >= {self.min_long_side_px} px")
        if self.min_width or self.min_height:
            parts.append(f">= {self.min_width or 0}x{self.min_height or 0} px")
        if self.aspect is not None:
            parts.append(f"aspect {self.aspect:g}")
        parts.append(f"product fills >= {self.min_fill:.0%}")
        parts.append(f"centre offset <= {self.max_centre_offset:g}")
        parts.append(f"cut off <= {self.max_cut_off:.0%}")
        return ", ".join(parts)


PROFILES: dict[str, Profile] = {
    "default": Profile(
        name="default", min_long_side_px=512, min_width=None, min_height=None, aspect=None,
        aspect_tolerance=0.02, min_fill=0.20, max_centre_offset=0.50, max_cut_off=0.10,
        source="Our lenient choice, no marketplace rule: product visible (long side >= 20 % of "
               "the frame), its centre within half-way from the frame centre to the edge, at "
               "most 10 % cut off, image long side >= 512 px."),
    "amazon": Profile(
        name="amazon", min_long_side_px=1000, min_width=None, min_height=None, aspect=None,
        aspect_tolerance=0.02, min_fill=0.85, max_centre_offset=0.20, max_cut_off=0.01,
        source="Amazon product image requirements (Seller Central help 'Product image "
               "requirements'): main image product 'must fill 85% or more of the image "
               "frame'; for zoom the longest side should be at least 1000 px; the full product "
               "must be in frame (no cut-off; 1 % is our slack for the sampled mask). Rules. "
               "Reading 'fill' as the product's long side over the frame's side, and the 0.20 "
               "centre limit, are our choices."),
    "cn_main": Profile(
        name="cn_main", min_long_side_px=None, min_width=800, min_height=800, aspect=1.0,
        aspect_tolerance=0.02, min_fill=0.60, max_centre_offset=0.25, max_cut_off=0.05,
        source="Tmall/Taobao main image (主图) as commonly published in their seller rules: "
               "square 1:1, at least 800x800 px (which enables zoom). Rules. The 60 % fill, "
               "0.25 centre and 5 % cut-off limits are our choices, not published rules."),
}
PROFILES["tmall"] = PROFILES["cn_main"]


@dataclass(frozen=True)
class Composition:
    """See each field's function for its definition."""

    coverage_area: float
    coverage_long_side: float
    centre_offset: float
    cut_off_share: float
    canvas_width: int
    canvas_height: int
    aspect_ratio: float


def _mask_samples(cut: Cutout) -> tuple[np.ndarray, float]:
    """The mask's sample points (N, 3) homogeneous, in original cut-out coordinates, and
    1 / (fx fy), the cut-out pixels one sample stands for; cached on the cut-out."""
    if "mask samples" not in cut.cache:
        h, w = cut.mask.shape
        step = max(1.0, max(h, w) / SAMPLE_LONG_SIDE)
        small = cv2.resize(cut.mask.astype(np.uint8), (max(1, round(w / step)), max(1, round(h / step))),
                           interpolation=cv2.INTER_NEAREST)
        ys, xs = np.nonzero(small)
        # Sample centres back in cut-out pixels, then into original cut-out coordinates.
        fx, fy = small.shape[1] / w, small.shape[0] / h
        u = (xs + 0.5) / fx - 0.5 + cut.origin[0]
        v = (ys + 0.5) / fy - 0.5 + cut.origin[1]
        cut.cache["mask samples"] = (np.stack([u, v, np.ones_like(u)], axis=1), 1.0 / (fx * fy))
    return cut.cache["mask samples"]


def mapped_points(cut: Cutout, matrix: np.ndarray) -> tuple[np.ndarray, float]:
    """Canvas coordinates (N, 2) of the cut-out's mask pixels (sampled at <= 256 px long side)
    under `matrix` (original cut-out -> canvas), and the canvas area one sample stands for."""
    samples, per_sample = _mask_samples(cut)
    matrix = np.asarray(matrix, np.float64)
    area = abs(np.linalg.det(matrix[:, :2])) * per_sample
    return samples @ matrix.T, float(area)


def _beyond(points: np.ndarray, canvas_size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Which canvas points (N, 2) lie beyond the left, top, right and bottom sides of a
    (width, height) canvas (pixel centres, so half a pixel out)."""
    width, height = canvas_size
    x, y = points[:, 0], points[:, 1]
    return x < -0.5, y < -0.5, x > width - 0.5, y > height - 0.5


def visible_share(cut: Cutout, matrix: np.ndarray, canvas_size: tuple[int, int]) -> float:
    """Share of the product under `matrix` (original cut-out -> canvas) inside the canvas,
    whatever the cut-out's own borders (cut_off_share excuses those)."""
    left, top, right, bottom = _beyond(mapped_points(cut, matrix)[0], canvas_size)
    return float(1.0 - (left | top | right | bottom).mean())


def composition(cut: Cutout, matrix: np.ndarray, canvas_size: tuple[int, int]) -> Composition:
    """Composition measurements of the placed product on a (width, height) canvas.

    coverage_area: product pixels inside the canvas / canvas pixels.
    coverage_long_side: max(bbox_w / W, bbox_h / H) of the product's visible bounding box, i.e.
      how much of the frame the product spans along its dominant direction (how "fills 85 %
      of the frame" is measured in practice).
    centre_offset: max(|cx - W/2| / (W/2), |cy - H/2| / (H/2)) of the visible bbox centre;
      0 = centred, 1 = centre on the frame's edge.
    cut_off_share: share of the product's area mapped outside the canvas, leaving out what
      lies beyond a canvas side where the cut-out itself was already cut (see Cutout)."""
    width, height = canvas_size
    points, pixel_area = mapped_points(cut, matrix)
    x, y = points[:, 0], points[:, 1]
    left, top, right, bottom = _beyond(points, canvas_size)
    inside = ~(left | top | right | bottom)
    t_left, t_top, t_right, t_bottom = cut.touches_border
    excused = (left & t_left) | (top & t_top) | (right & t_right) | (bottom & t_bottom)
    cut_off = float((~inside & ~excused).mean())
    if inside.any():
        xi, yi = np.clip(x[inside], 0, width), np.clip(y[inside], 0, height)
        # A sample stands for a pixel-sized square: add half a sample to each side.
        half = 0.5 * math.sqrt(pixel_area)
        bx0, bx1 = xi.min() - half, xi.max() + half
        by0, by1 = yi.min() - half, yi.max() + half
        bx0, by0, bx1, by1 = max(0, bx0), max(0, by0), min(width, bx1), min(height, by1)
        long_side = max((bx1 - bx0) / width, (by1 - by0) / height)
        cx, cy = (bx0 + bx1) / 2.0, (by0 + by1) / 2.0
        offset = max(abs(cx - width / 2.0) / (width / 2.0), abs(cy - height / 2.0) / (height / 2.0))
        area = min(1.0, inside.sum() * pixel_area / (width * height))
    else:
        long_side, offset, area = 0.0, 1.0, 0.0
    return Composition(coverage_area=float(area), coverage_long_side=float(long_side),
                       centre_offset=float(offset), cut_off_share=cut_off,
                       canvas_width=int(width), canvas_height=int(height),
                       aspect_ratio=float(width / height))
