"""Placing a one-colour cut-out with texture (a brushed-steel decal) by its silhouette.

Its texture keeps it off the silhouette path of plain products (silhouette.py), but its grey
correlation barely tells a placement on a part of itself from the right one. So the template
path's placements of such a cut-out are also searched for the two-region silhouette
(`silhouette_fit`): where that is strong (R² >= `SILHOUETTE_STRONG`) it places and finds the
product. That search does not turn the product; when none of the placements gave a strong
silhouette, the best weaker one is searched again turned by `TURNS` degrees (a thin product
turned by 7 deg between two of the template path's turns fits neither)."""

from __future__ import annotations

import numpy as np

from . import geometry as geo
from .cutout import Cutout
from .placement import near
from .silhouette import SILHOUETTE_STRONG, SilhouetteFit, one_colour, silhouette_fit

TURNS = (-8.0, -4.0, 4.0, 8.0)  # deg, about the best weak fit when no fit was strong
_COARSE_GATE = SILHOUETTE_STRONG - 0.1  # coarse R² under which the fine search is skipped


class OneColourSearch:
    """The silhouette searches of one `locate` call: where they started and the best fit."""

    def __init__(self, generated: np.ndarray, cut: Cutout) -> None:
        self.generated, self.cut = generated, cut
        self.applies = one_colour(cut)
        self.starts: list[np.ndarray] = []
        self.best: SilhouetteFit | None = None

    def strong(self, matrix_crop: np.ndarray) -> SilhouetteFit | None:
        """The silhouette fit near the template placement `matrix_crop` (cropped cut-out ->
        canvas px) when strong, else None; not searched again near a start already tried
        (nearby starts end alike)."""
        if not self.applies or any(near(matrix_crop, start, self.cut) for start in self.starts):
            return None
        self.starts.append(matrix_crop)
        return self._keep(silhouette_fit(self.generated, self.cut, matrix_crop, _COARSE_GATE))

    def turned(self) -> SilhouetteFit | None:
        """When no fit was strong: the best one's placement searched again turned by each of
        `TURNS` about the product's centre; the strongest fit if strong, else None."""
        if self.best is None or self.best.r2 >= SILHOUETTE_STRONG:
            return None
        start = self.best.matrix_crop
        h, w = self.cut.mask.shape
        cx, cy = start @ np.array([w / 2.0, h / 2.0, 1.0])
        found = None
        for angle in TURNS:
            turn = geo.compose(geo.translation(cx, cy), geo.similarity(1.0, angle, 0.0, 0.0),
                               geo.translation(-cx, -cy))
            fit = self._keep(silhouette_fit(self.generated, self.cut, geo.compose(turn, start),
                                            _COARSE_GATE))
            if fit is not None and (found is None or fit.r2 > found.r2):
                found = fit
        return found

    def _keep(self, fit: SilhouetteFit | None) -> SilhouetteFit | None:
        if fit is not None and (self.best is None or fit.r2 > self.best.r2):
            self.best = fit
        return fit if fit is not None and fit.r2 >= SILHOUETTE_STRONG else None
