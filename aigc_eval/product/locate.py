"""Find the merchant's cut-out inside the generated image: scale, shift, small rotation.

Search, at a bounded resolution (canvas long side <= 512 px, cut-out <= 256 px):
1. ORB features detected inside the (eroded) product mask, matched to the whole canvas with
   Lowe's ratio test, and a RANSAC affine fit (cv2.estimateAffine2D) whose nearest similarity
   is the candidate. ORB rather than SIFT because SIFT costs ~90 ms on a 512 px canvas on one
   core, over this check's whole budget; ORB costs ~5 ms. A quick search with 1000 canvas
   keypoints goes first; its fit stands when it has >= 30 inliers, otherwise (and when it does
   not verify) the full search with 3000 runs.
   If ORB fails (a smooth product on a busy background), SIFT (cv2.SIFT_create) on a 384 px
   canvas, same matching and RANSAC.
2. If features fail (a textureless or thin product), masked multi-scale template matching
   (template_search.py: cv2.matchTemplate, TM_CCOEFF_NORMED, grey) on a coarse canvas (long side
   128 px); its best peaks (up to 5, across sizes; each also turned by 10 deg when that fits
   clearly better) are each refined and verified. A plain (textureless, one-colour) cut-out's
   placements are then re-placed and judged by its silhouette (silhouette.py); a one-colour
   cut-out with texture (brushed steel) is re-placed and found by it where it is strong, turned
   by a few degrees when no placement's is (one_colour.py).
3. ECC refinement (cv2.findTransformECCWithMask, affine motion, template mask = product) at the
   product's comparison size (<= 192 px long side), kept only if it raises the correlation.

Confidence = Pearson correlation of grey levels between the cut-out and the canvas sampled
under the final placement, over the eroded product mask, clipped to 0..1. The product counts as
found when confidence >= `min_confidence` (0.3) for a feature match, which RANSAC has already
verified geometrically, or >= `min_template_confidence` (0.8) for a template match."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterator

import cv2
import numpy as np

from . import geometry as geo
from .comparison import TILE_MIN_JUDGED, TILE_MIN_MATCHED, Tiles, correlation, tile_agreement
from .composition import visible_share
from .cutout import Cutout
from .one_colour import OneColourSearch
from .outline import outline_support
from .placement import NOT_FOUND, Placement, placement_ambiguity, placement_of
from .silhouette import (SilhouetteFit, found_by_silhouette, plain_product, silhouette_at,
                         silhouette_fit)
from .template_search import template_candidates


ONE_COLOUR_MIN_CORRELATION = 0.3  # a textured one-colour product's template placement that
                                  # is also placed by its silhouette (when strong)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _eroded(mask: np.ndarray, pixels: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)


def _cutout_keypoints(cut: Cutout, detector: str):
    """(points (N, 2) in the shrunk cut-out, descriptors, cut-out -> shrunk mapping)."""
    small, to_small = geo.resize_to_long_side(cut.rgb, 256)
    small_mask = cv2.resize(cut.mask.astype(np.uint8), small.shape[1::-1],
                            interpolation=cv2.INTER_NEAREST)
    pad = 32  # ORB ignores keypoints within its patch size of the border
    padded = cv2.copyMakeBorder(_gray(small), pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    padded_mask = cv2.copyMakeBorder(_eroded(small_mask, 2) * 255, pad, pad, pad, pad,
                                     cv2.BORDER_CONSTANT, value=0)
    keypoints, descriptors = _detector(detector, 500).detectAndCompute(padded, padded_mask)
    points = np.float32([kp.pt for kp in keypoints]).reshape(-1, 2) - pad
    return points, descriptors, to_small


QUICK_KEYPOINTS = 1000    # canvas ORB keypoints of the quick search (the full one keeps 3000)
QUICK_MIN_INLIERS = 30    # RANSAC inliers for the quick search's fit to stand on its own


def _detector(detector: str, nfeatures: int) -> cv2.Feature2D:
    """The keypoint detector ("orb" or "sift") with this module's settings."""
    if detector == "orb":
        return cv2.ORB_create(nfeatures=nfeatures, scaleFactor=1.2, nlevels=10,
                              edgeThreshold=31, fastThreshold=12, patchSize=31)
    return cv2.SIFT_create(nfeatures=nfeatures, contrastThreshold=0.03)


def _knn2(queries: np.ndarray, train: np.ndarray, norm: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force two nearest neighbours, as cv2.BFMatcher(norm).knnMatch(k=2) finds them
    (cv2.batchDistance is what it calls), as arrays: (train indices (Q, 2), distances (Q, 2));
    a missing second neighbour (one train row) has distance inf."""
    dtype = cv2.CV_32S if norm == cv2.NORM_HAMMING else cv2.CV_32F
    dist, index = cv2.batchDistance(queries, train, dtype, normType=norm, K=2)
    dist = dist.astype(np.float64)
    if dist.shape[1] < 2:
        dist = np.concatenate([dist, np.full_like(dist, np.inf)], axis=1)
        index = np.concatenate([index, np.zeros_like(index)], axis=1)
    return index.astype(np.int64), dist


def _fit(src: np.ndarray, dst: np.ndarray, min_inliers: int) -> tuple[np.ndarray, int] | None:
    """RANSAC affine (src -> dst), or a similarity when the affine is sheared; with its inlier
    count, or None under `min_inliers`."""
    cv2.setRNGSeed(12345)  # RANSAC sampling, so results repeat run to run
    affine, inliers = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0,
                                           maxIters=2000, confidence=0.995, refineIters=10)
    if affine is None or int(inliers.sum()) < min_inliers or geo.stretch(affine) > 0.35:
        # Few, clustered inliers can give a wildly sheared affine; a similarity (4 degrees of
        # freedom instead of 6) is the sturdier fit then.
        affine, inliers = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0, maxIters=2000,
            confidence=0.995, refineIters=10)
        if affine is None or int(inliers.sum()) < min_inliers:
            return None
    return affine, int(inliers.sum())


def _feature_candidates(generated: np.ndarray, cut: Cutout, work_long_side: int,
                        min_inliers: int, detector: str = "orb") -> Iterator[np.ndarray]:
    """Affines (cropped cut-out -> canvas px) from ORB or SIFT features + RANSAC, first the
    quick one, then the full one. Cut-out keypoints are detected inside the mask eroded by 2 px,
    so they describe the product rather than its old background; the canvas is searched whole.

    Brute-force matching costs as much as detecting, and grows with the canvas's keypoints, so
    ORB first tries `QUICK_KEYPOINTS` of them and yields that fit only when RANSAC kept at least
    `QUICK_MIN_INLIERS` (no chance fit has that many; 99 of the benchmark's 100 images do).
    When it has fewer, or the caller asks for more (the fit did not verify), the full search
    runs: 3000 keypoints, as if the quick one had not been tried."""
    canvas, to_canvas = geo.resize_to_long_side(generated, work_long_side, cv2.INTER_LINEAR)
    key = ("keypoints", detector)
    if key not in cut.cache:  # one cut-out is checked against many generated images
        cut.cache[key] = _cutout_keypoints(cut, detector)
    pts_cut, des_cut, to_small = cut.cache[key]
    if des_cut is None or len(pts_cut) < min_inliers:
        return
    gray = _gray(canvas)
    norm = cv2.NORM_HAMMING if detector == "orb" else cv2.NORM_L2
    to_generated = geo.invert(to_canvas)

    def candidate(keypoints: int, strong: int) -> np.ndarray | None:
        kp_canvas, des_canvas = _detector(detector, keypoints).detectAndCompute(gray, None)
        if des_canvas is None or len(kp_canvas) < 2:
            return None
        index, dist = _knn2(des_cut, des_canvas, norm)
        # Lowe's ratio test; a query without a second neighbour cannot pass it.
        good = np.flatnonzero((dist[:, 0] < 0.8 * dist[:, 1]) & np.isfinite(dist[:, 1]))
        if len(good) < strong:
            return None
        pts_canvas = cv2.KeyPoint_convert(kp_canvas).reshape(-1, 2)
        fit = _fit(pts_cut[good], pts_canvas[index[good, 0]], min_inliers)
        if fit is None or fit[1] < strong:
            return None
        return geo.compose(to_generated, fit[0], to_small)

    if detector == "orb":
        affine = candidate(QUICK_KEYPOINTS, QUICK_MIN_INLIERS)
        if affine is not None:
            yield affine
    # Busy backgrounds (gravel, foliage, star fields) win ORB's keypoint ranking, so the full
    # search keeps many; with 1500 a smooth product on gravel kept too few to match.
    affine = candidate(3000, min_inliers)
    if affine is not None:
        yield affine


def _refine_space(generated: np.ndarray, cut: Cutout, matrix: np.ndarray, long_side: int):
    """Cut-out and canvas crop resampled so the product is about `long_side` px in both.
    Returns (template grey, template mask eroded by 2 px (0/255), canvas grey crop,
    cut->template, canvas->crop)."""
    scale, _ = geo.decompose(matrix)
    product_long = max(cut.mask.shape)
    target = min(long_side, product_long, scale * product_long)
    key = ("refine template", target)
    template = cut.cache.get(key) or _template(cut, target / product_long)
    if target == long_side:  # the usual case, the same for every image of this cut-out
        cut.cache[key] = template
    templ, templ_mask, to_templ = template
    h, w = cut.mask.shape
    box = geo.padded_box(matrix, (w, h), 0.15 * scale * product_long + 8, generated.shape)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    crop, to_crop = geo.resize_by(generated[y0:y1, x0:x1], target / (scale * product_long))
    to_crop = geo.compose(to_crop, geo.translation(-x0, -y0))
    return templ, templ_mask, _gray(crop), to_templ, to_crop


def _template(cut: Cutout, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cut-out resized by `factor` for ECC: (grey, mask eroded by 2 px as 0/255 uint8,
    cut-out -> template mapping). The erosion keeps the old background out of the comparison."""
    templ, _, to_templ = cut.shrunk(factor)
    # The mask resampled as floats: ECC is sensitive to its outline on the hardest cases (with
    # the comparison's 0/255 mask the recoloured retina on grass landed 4 % off in scale).
    templ_mask = (cut.mask if templ is cut.rgb else
                  geo.resize_to(cut.mask.astype(np.float32), templ.shape[1::-1])[0] >= 0.5)
    return _gray(templ), _eroded(templ_mask, 2) * 255, to_templ


def _refine(generated: np.ndarray, cut: Cutout, matrix: np.ndarray,
            long_side: int) -> tuple[np.ndarray, float, float]:
    """ECC-refine; returns (affine cut->canvas, confidence, stretch)."""
    space = _refine_space(generated, cut, matrix, long_side)
    if space is None:
        return matrix, 0.0, geo.stretch(matrix)
    templ, templ_mask, crop, to_templ, to_crop = space
    start = geo.compose(to_crop, matrix, geo.invert(to_templ))
    before = correlation(templ, templ_mask, crop, start)
    warp = start.astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-4)
    try:
        _, warp = cv2.findTransformECCWithMask(
            templ.astype(np.float32), crop.astype(np.float32), templ_mask, None, warp,
            cv2.MOTION_AFFINE, criteria, 5)
    except cv2.error:  # ECC throws when it diverges; the unrefined estimate stands
        return matrix, max(0.0, before), geo.stretch(matrix)
    after = correlation(templ, templ_mask, crop, warp.astype(np.float64))
    refined = geo.compose(geo.invert(to_crop), warp.astype(np.float64), to_templ)
    if after <= before or _drifted(matrix, refined, cut):
        return matrix, max(0.0, before), geo.stretch(matrix)
    return refined, max(0.0, after), geo.stretch(refined)


def _drifted(start: np.ndarray, refined: np.ndarray, cut: Cutout) -> bool:
    """ECC is a local refinement: a result far from its start (scale changed > 25 %, centre
    moved > 25 % of the product's size, turned > 10°, or stretched > 35 %) is the correlation
    fitting whatever lies there, not the product, so it is not trusted. (A hue rotation of a
    colour wheel is a rotation of its grey levels: ECC turned it by the hue angle.)"""
    h, w = cut.mask.shape
    centre = np.array([w / 2.0, h / 2.0, 1.0])
    scale_start, rotation_start = geo.decompose(start)
    scale_refined, rotation_refined = geo.decompose(refined)
    moved = float(np.linalg.norm(refined @ centre - start @ centre))
    turned = abs((rotation_refined - rotation_start + 180.0) % 360.0 - 180.0)
    return (abs(scale_refined / scale_start - 1.0) > 0.25 or turned > 10.0
            or moved > 0.25 * scale_start * max(h, w) or geo.stretch(refined) > 0.35)


def correlation_at(generated: np.ndarray, cut: Cutout, matrix: np.ndarray,
                   long_side: int = 192, refine: bool = False) -> tuple[float, np.ndarray]:
    """Grey correlation (as `match_confidence`) of the cut-out under `matrix` (ORIGINAL
    cut-out -> canvas px), and the matrix; with `refine`, after the ECC refinement."""
    matrix_crop = geo.compose(matrix, geo.translation(cut.origin[0], cut.origin[1]))
    if refine:
        refined, confidence, _ = _refine(generated, cut, matrix_crop, long_side)
        return confidence, geo.compose(refined, geo.translation(-cut.origin[0], -cut.origin[1]))
    space = _refine_space(generated, cut, matrix_crop, long_side)
    if space is None:
        return 0.0, matrix
    templ, templ_mask, crop, to_templ, to_crop = space
    start = geo.compose(to_crop, matrix_crop, geo.invert(to_templ))
    return max(0.0, correlation(templ, templ_mask, crop, start)), matrix


def tile_agreement_at(generated: np.ndarray, cut: Cutout, matrix_crop: np.ndarray,
                      long_side: int = 192) -> Tiles:
    """`tile_agreement` (comparison.py) of the cut-out under `matrix_crop` (cropped cut-out ->
    canvas px), on `_refine`'s grid."""
    space = _refine_space(generated, cut, matrix_crop, long_side)
    if space is None:
        return Tiles(0.0, 0, 0)
    templ, templ_mask, crop, to_templ, to_crop = space
    return tile_agreement(templ, templ_mask, crop,
                          geo.compose(to_crop, matrix_crop, geo.invert(to_templ)))


def locate(generated: np.ndarray, cut: Cutout, *, min_confidence: float = 0.3,
           min_template_confidence: float = 0.8,
           max_rotation_deg: float = 15.0, work_long_side: int = 512,
           refine_long_side: int = 192, sift_long_side: int = 384, min_inliers: int = 6,
           method: str = "auto", min_outline_support: float = 0.5,
           min_damaged_confidence: float = 0.1, min_tile_agreement: float = 0.3) -> Placement:
    """Estimate the cut-out's placement in `generated` (RGB uint8); see the module docstring.
    `method`: "auto" (ORB, then SIFT, then template), "features" (ORB), "sift" or "template".

    A candidate whose grey correlation is under its bar is still found when the outline fits
    (`outline_support` >= `min_outline_support`) and the correlation is at least
    `min_damaged_confidence`: damage lowers the correlation, not the outline. A template
    placement, which nothing has verified geometrically, is found only when the product also
    still matches part by part (`tile_agreement` >= `min_tile_agreement`, on at least
    `TILE_MIN_MATCHED` tiles): a template laid on unrelated texture can reach the outline's
    bar, or the correlation's by chance or over a corner, but matches on few of the product's
    tiles. With fewer than `TILE_MIN_JUDGED` judged tiles (thin and smooth products, which are
    what reaches the template path most), the tiles are no evidence and the correlation's or
    the outline's rule stands, except over the frame's edge. A plain (textureless, one-colour)
    cut-out's template placements are re-placed and found by their silhouette (silhouette.py)."""
    def candidates():
        if method in ("auto", "features"):
            for affine in _feature_candidates(generated, cut, work_long_side, min_inliers):
                yield "features", affine
        if method in ("auto", "sift"):
            # ~5x ORB's cost, only reached when ORB failed (smooth product, busy background).
            for affine in _feature_candidates(generated, cut, sift_long_side, min_inliers, "sift"):
                yield "sift", affine
        if method in ("auto", "template"):
            for affine in template_candidates(generated, cut):
                yield "template", affine

    best: Placement = NOT_FOUND
    centre = (cut.mask.shape[1] / 2.0, cut.mask.shape[0] / 2.0)

    def placed_by(fit: SilhouetteFit) -> tuple[np.ndarray, float]:
        """A silhouette fit's nearest similarity and its grey correlation."""
        sim = geo.nearest_similarity(fit.matrix_crop, centre)
        confidence, _ = correlation_at(generated, cut, geo.compose(
            sim, geo.translation(-cut.origin[0], -cut.origin[1])), refine_long_side)
        return sim, confidence

    evaluated: list[Placement] = []
    one_colour = OneColourSearch(generated, cut)
    for name, affine in candidates():
        if affine is None:
            continue
        if best.found and name != "template":
            break
        sim = geo.nearest_similarity(affine, centre)
        scale, rotation = geo.decompose(sim)
        if not (abs(rotation) <= max_rotation_deg and 0.02 <= scale <= 50.0):
            continue
        refined, confidence, stretch_value = _refine(generated, cut, affine, refine_long_side)
        sim = geo.nearest_similarity(refined, centre)
        scale, rotation = geo.decompose(sim)
        plausible = abs(rotation) <= max_rotation_deg and 0.02 <= scale <= 50.0
        # A template peak has no geometric verification (RANSAC inliers give features theirs),
        # so it needs stronger photometric evidence.
        needed = min_template_confidence if name == "template" else min_confidence
        found = plausible and confidence >= needed
        outline = tiles = contrast = math.nan
        if name == "template" and plausible and plain_product(cut):
            # A plain product: its silhouette places and finds it (silhouette.py); over the
            # frame's edge it is only measured where the template path put it.
            fit = None if _over_edge(cut, refined, generated) else silhouette_fit(
                generated, cut, refined)
            if fit is not None:
                refined = fit.matrix_crop
                sim, confidence = placed_by(fit)
            contrast = fit.r2 if fit is not None else silhouette_at(generated, cut, refined)
            found = (confidence >= min_damaged_confidence
                     and found_by_silhouette(generated, cut, refined, contrast, confidence))
        elif (name == "template" and plausible and confidence >= ONE_COLOUR_MIN_CORRELATION
              and not _over_edge(cut, refined, generated)
              and (fit := one_colour.strong(refined)) is not None):
            refined, contrast = fit.matrix_crop, fit.r2
            sim, confidence = placed_by(fit)
            found = confidence >= min_damaged_confidence
        elif plausible and not found:
            outline = outline_support(generated, cut, refined)
            found = outline >= min_outline_support and confidence >= min_damaged_confidence
        if name == "template" and found and math.isnan(contrast):
            share, matched, judged = tile_agreement_at(generated, cut, refined, refine_long_side)
            tiles = share
            # Too few judged tiles are no evidence: the correlation's or the outline's rule
            # stands for them, but a placement over the edge, with fewer pixels and more
            # freedom, needs the tiles.
            if judged >= TILE_MIN_JUDGED or _over_edge(cut, refined, generated):
                found = share >= min_tile_agreement and matched >= TILE_MIN_MATCHED
        placement = replace(placement_of(sim, cut, confidence, stretch_value, name, found),
                            outline=outline, tiles=tiles, silhouette=contrast)
        evaluated.append(placement)
        if placement.found and name != "template":
            best = placement
            break
        if name == "template" and best.found:
            # Every template peak is evaluated: the best score on the coarse grid is not always
            # the product. A rival replaces the standing placement when it fits clearly better
            # (by > 0.02, or leaving under half of 1 - r near r = 1), or as well (within 0.02)
            # and is larger: the placement consistent with the frame (a product cut off at the
            # edge rather than shrunk to fit inside).
            lead = min(0.02, 0.5 * (1.0 - best.confidence))
            if math.isnan(placement.silhouette) != math.isnan(best.silhouette):
                # A strong silhouette outranks any correlation without one.
                if placement.found and not math.isnan(placement.silhouette):
                    best = placement
            elif placement.found and not math.isnan(placement.silhouette):
                # A textureless product correlates about as well anywhere inside it: the
                # silhouette decides, with the correlation.
                if (placement.silhouette * placement.confidence
                        > best.silhouette * best.confidence):
                    best = placement
            elif placement.found and (
                    placement.confidence > best.confidence + lead
                    or (placement.confidence >= best.confidence - 0.02
                        and placement.scale > 1.1 * best.scale)):
                best = placement
            continue
        if placement.found or placement.confidence > best.confidence:
            best = placement
    if math.isnan(best.silhouette) and (fit := one_colour.turned()) is not None:
        # No placement had a strong silhouette, one turned by a few degrees has: it outranks
        # every placement without one.
        sim, confidence = placed_by(fit)
        placement = replace(placement_of(sim, cut, confidence, geo.stretch(fit.matrix_crop),
                                         "template", confidence >= min_damaged_confidence),
                            silhouette=fit.r2)
        evaluated.append(placement)
        if placement.found:
            best = placement
    if not best.found:
        return best
    return replace(best, ambiguity=placement_ambiguity(best, evaluated, cut))


def _over_edge(cut: Cutout, matrix_crop: np.ndarray, generated: np.ndarray) -> bool:
    """More than 1 % of the product under `matrix_crop` (cropped cut-out -> canvas px) lies
    outside the frame."""
    matrix = geo.compose(matrix_crop, geo.translation(-cut.origin[0], -cut.origin[1]))
    return visible_share(cut, matrix, (generated.shape[1], generated.shape[0])) < 0.99
