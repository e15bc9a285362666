"""The mirror check: is the product shown mirrored left to right (`product_mirrored`)?"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import geometry as geo
from .cutout import Cutout
from .locate import correlation_at, locate
from .placement import Placement


def mirrored_cutout(cut: Cutout) -> Cutout:
    """The cut-out mirrored left to right (cached on it): its 'original' is the mirrored
    original cut-out, so a placement of it maps mirrored cut-out pixels to the canvas."""
    if "mirrored" not in cut.cache:
        left, top, right, bottom = cut.touches_border
        width = cut.source_size[0]
        cut.cache["mirrored"] = Cutout(
            rgb=np.ascontiguousarray(cut.rgb[:, ::-1]), mask=np.ascontiguousarray(cut.mask[:, ::-1]),
            origin=(width - cut.origin[0] - cut.mask.shape[1], cut.origin[1]),
            source_size=cut.source_size, touches_border=(right, top, left, bottom))
    return cut.cache["mirrored"]


def mirror_check(image: np.ndarray, cut: Cutout, placement: Placement, search: dict,
                 compare_long_side: int, margin: float) -> tuple[Placement, Cutout, bool]:
    """Is the product shown mirrored? (placement, cut-out to measure against, mirrored).

    Found: the mirrored cut-out laid on the same footprint (the same matrix: the two frames
    are one rectangle) is correlated, and ECC-refined only when it already beats
    the cut-out's correlation; mirrored when it leads by `margin`. A product that is
    symmetric under mirroring correlates alike both ways and is never called mirrored. Not
    found: the search is repeated with the mirrored cut-out (ORB and SIFT descriptors are not
    mirror-invariant, so a mirrored product is usually not found directly)."""
    mirror = mirrored_cutout(cut)
    if placement.found:
        if placement.method == "known":
            return placement, cut, False
        # The mirrored cut-out's frame is the cut-out's frame, so the same matrix lays it on
        # the same footprint.
        start = placement.matrix
        quick, _ = correlation_at(image, mirror, start, compare_long_side)
        if quick <= placement.confidence:
            return placement, cut, False
        confidence, matrix = correlation_at(image, mirror, start, compare_long_side,
                                            refine=True)
        if confidence < placement.confidence + margin:
            return placement, cut, False
        scale, rotation = geo.decompose(matrix)
        return replace(placement, matrix=matrix, scale=scale, rotation_deg=rotation,
                       offset_x=float(matrix[0, 2]), offset_y=float(matrix[1, 2]),
                       confidence=confidence), mirror, True
    flipped = locate(image, mirror, **search)
    if flipped.found:
        return flipped, mirror, True
    return placement, cut, False
