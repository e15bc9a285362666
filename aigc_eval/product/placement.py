"""`Placement`: where the merchant's cut-out sits in a generated image (what `locate` finds, or
what the generation request fixed)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import geometry as geo
from .cutout import Cutout


@dataclass(frozen=True)
class Placement:
    """Where the cut-out sits in the generated image.

    matrix: 2x3 similarity mapping ORIGINAL cut-out pixel coordinates (before cropping to the
    mask) to canvas pixel coordinates; offset_x/offset_y = where the cut-out's top-left pixel
    lands; rotation_deg counter-clockwise as displayed; stretch: anisotropy of the best affine
    fit (0 = undistorted); method: "features", "template", "known" or "none"."""

    found: bool
    scale: float
    rotation_deg: float
    offset_x: float
    offset_y: float
    confidence: float
    matrix: np.ndarray = field(repr=False)
    stretch: float = 0.0
    method: str = "none"
    outline: float = math.nan  # outline_support, measured when the grey correlation was weak
    tiles: float = math.nan    # tile_agreement, measured for template placements (locate)
    silhouette: float = math.nan  # silhouette R², for textureless products' template placements
    ambiguity: float = 0.0     # placement_ambiguity (see locate)


NOT_FOUND = Placement(False, 0.0, 0.0, 0.0, 0.0, 0.0, np.zeros((2, 3)), 0.0, "none")


def known_placement(scale: float, offset_x: float, offset_y: float,
                    rotation_deg: float = 0.0) -> Placement:
    """A placement given by the generation request (original cut-out's top-left at the offset);
    check_product then skips the search."""
    matrix = geo.similarity(scale, rotation_deg, offset_x, offset_y)
    return Placement(True, float(scale), float(rotation_deg), float(offset_x), float(offset_y),
                     1.0, matrix, 0.0, "known")


def placement_of(matrix_crop: np.ndarray, cut: Cutout, confidence: float, stretch_value: float,
                 method: str, found: bool) -> Placement:
    """The Placement of the cropped cut-out under `matrix_crop` (cropped cut-out -> canvas)."""
    matrix = geo.compose(matrix_crop, geo.translation(-cut.origin[0], -cut.origin[1]))
    scale, rotation = geo.decompose(matrix)
    return Placement(found, scale, rotation, float(matrix[0, 2]), float(matrix[1, 2]),
                     confidence, matrix, stretch_value, method)


def near(a: np.ndarray, b: np.ndarray, cut: Cutout) -> bool:
    """Placement `a` within 10 % of placement `b` in scale and in centre (of `b`'s product
    size); both cropped cut-out -> canvas px."""
    h, w = cut.mask.shape
    centre = np.array([w / 2.0, h / 2.0, 1.0])
    scale_a, scale_b = geo.decompose(a)[0], geo.decompose(b)[0]
    return (abs(scale_a / scale_b - 1.0) <= 0.1
            and float(np.linalg.norm(a @ centre - b @ centre)) <= 0.1 * scale_b * max(h, w))


def placement_ambiguity(best: Placement, evaluated: list[Placement], cut: Cutout) -> float:
    """placement_ambiguity: the highest confidence among the evaluated placements that differ
    clearly from the winner (not `near` it), over the winner's; 0 when none was evaluated.
    Near 1: two placements fit about equally (rotationally symmetric products, repeated
    patterns), so the placement may be wrong."""
    to_crop = geo.translation(cut.origin[0], cut.origin[1])
    here = geo.compose(best.matrix, to_crop)
    rivals = [p.confidence for p in evaluated
              if not near(geo.compose(p.matrix, to_crop), here, cut)]
    return min(1.0, max(rivals) / best.confidence) if rivals and best.confidence > 0 else 0.0
