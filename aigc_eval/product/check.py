"""check_product: one generated image against the merchant's cut-out -> one result row."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from . import composition as comp
from . import fidelity as fid
from . import geometry as geo
from . import names as n
from . import quality as qual
from .cutout import Cutout, ProductInputError, prepare_cutout
from .expansion import expansion_in, measuring_crop
from .locate import locate
from .placement import Placement
from .mirror import mirror_check
from .reflection import reflection_in


@dataclass(frozen=True)
class ProductThresholds:
    """Every decision threshold of the product check, with the reason for its default in
    docs/product_checks.md. An issue is raised when a measurement passes its threshold."""

    match_confidence_min: float = 0.3  # locate: grey correlation under a feature placement
    template_confidence_min: float = 0.8  # ... under a template placement (no RANSAC check)
    max_rotation_deg: float = 15.0     # locate: larger rotations are not searched
    compare_long_side: int = 192       # product's long side (px) when comparing content
    sharpness_long_side: int = 384     # ... when comparing sharpness (blur shows at this scale)
    delta_e_max: float = 6.0           # mean CIEDE2000 over the product -> product_recoloured
    sharpness_ratio_min: float = 0.5   # Laplacian energy ratio -> product_blurred
    blur_sigma_max: float = 1.0        # ... or a blur this wide (px, sharpness grid) explains it
    soft_ratio_max: float = 0.8        # ... measured when the energy ratio is under this
    altered_ssim_tolerance: float = 0.5  # structure SSIM below this marks a pixel altered
    altered_share_max: float = 0.05    # altered pixels' share -> product_altered
    stretch_max: float = 0.05          # affine anisotropy -> product_altered
    edge_tolerance: float = 20.0       # CIEDE2000 for a rim pixel to count as intact
    edge_score_min: float = 0.85       # intact rim share -> product_altered
    outline_support_min: float = 0.5   # locate: outline on edges that finds a damaged product
    damaged_confidence_min: float = 0.1  # ... with at least this grey correlation
    tile_agreement_min: float = 0.3    # locate: a template placement's tiles that still match
    expansion_max: float = 0.06        # verified grown content's share -> product_altered
    reflection_max: float = 0.015      # a mirrored copy below the product -> product_altered
    mirror_margin: float = 0.1         # mirrored cut-out's correlation lead -> product_altered


THRESHOLD_HELP: dict[str, str] = {
    "match_confidence_min": "grey-level correlation under a feature (ORB/SIFT + RANSAC) placement "
                      "below which the product counts as not found",
    "template_confidence_min": "the same for a template-matching placement, which has no "
                               "geometric verification",
    "max_rotation_deg": "largest rotation of the product searched, degrees",
    "compare_long_side": "product's long side (px) at which content and colour are compared",
    "sharpness_long_side": "product's long side (px) at which sharpness is compared",
    "delta_e_max": "mean CIEDE2000 over the product above which it is product_recoloured",
    "sharpness_ratio_min": "generated/cut-out Laplacian energy below which it is "
                           "product_blurred",
    "blur_sigma_max": "Gaussian blur (px, with the product at sharpness_long_side) beyond which a "
                      "product that lost detail is product_blurred, however soft it was",
    "soft_ratio_max": "Laplacian energy ratio under which blur_sigma is measured (and must be, "
                      "with blur_sigma_max, for product_blurred)",
    "altered_ssim_tolerance": "smoothed grey SSIM below which a product pixel counts as altered",
    "altered_share_max": "share of altered product pixels above which it is product_altered",
    "stretch_max": "affine anisotropy (largest/smallest singular value - 1) above which it is "
                   "product_altered",
    "edge_tolerance": "CIEDE2000 within which a rim pixel counts as intact",
    "edge_score_min": "share of intact rim pixels below which it is product_altered",
    "outline_support_min": "outline-on-edges support (0..1) at which a product with a weak "
                           "grey correlation still counts as found (damaged, not absent)",
    "damaged_confidence_min": "grey correlation a product found by its outline needs at least",
    "tile_agreement_min": "share of the product's textured tiles that must still match on their "
                          "own (3 at least) for a template-matching placement to count as "
                          "found (asked when 10 tiles can be judged, and always over the "
                          "frame's edge)",
    "expansion_max": "product-like content attached outside the outline (verified to look "
                     "like a part of the product), as a share of the product's area, above "
                     "which it is product_altered",
    "reflection_max": "a reflection of the product below it, as a share of the product's "
                      "area, above which it is product_altered (inf when the prompt asks for a "
                      "glossy floor)",
    "mirror_margin": "lead of the mirrored cut-out's correlation over the cut-out's at which "
                     "the product counts as mirrored (product_altered)",
}


@dataclass(frozen=True)
class ProductResult:
    """All measurements of one check; `as_row()` gives the output columns."""

    placement: Placement
    masked_ssim: float = math.nan
    delta_e_mean: float = math.nan
    sharpness_ratio: float = math.nan
    blur_sigma: float = math.nan
    altered_share: float = math.nan
    edge_score: float = math.nan
    expansion: float = math.nan
    reflection: float = math.nan
    mirrored: bool = False
    composition: comp.Composition | None = None
    cutout_touches_border: bool = False
    image_blur: float = math.nan
    clipped_share: float = math.nan
    noise_sigma: float = math.nan
    quality_warnings: tuple[str, ...] = ()
    product_score: float = 0.0
    issues: tuple[str, ...] = field(default=())

    def as_row(self) -> dict[str, object]:
        """Output columns keyed by the names in `names`, floats rounded."""
        p, c = self.placement, self.composition

        def r(value: float | None, digits: int = 4) -> float:
            return math.nan if value is None or not math.isfinite(value) else round(value, digits)

        row: dict[str, object] = {
            n.PRODUCT_FOUND: bool(p.found),
            n.PRODUCT_SCALE: r(p.scale if p.found else None),
            n.PRODUCT_OFFSET_X: r(p.offset_x if p.found else None, 1),
            n.PRODUCT_OFFSET_Y: r(p.offset_y if p.found else None, 1),
            n.PRODUCT_ROTATION: r(p.rotation_deg if p.found else None, 2),
            n.PRODUCT_STRETCH: r(p.stretch if p.found else None),
            n.MATCH_CONFIDENCE: r(p.confidence),
            n.MATCH_METHOD: p.method,
            n.OUTLINE_SUPPORT: r(p.outline if p.found else None),
            n.TILE_AGREEMENT: r(p.tiles if p.found else None),
            n.SILHOUETTE_CONTRAST: r(p.silhouette if p.found else None),
            n.PLACEMENT_AMBIGUITY: r(p.ambiguity if p.found else None),
            n.PRODUCT_MIRRORED: bool(self.mirrored),
            n.MASKED_SSIM: r(self.masked_ssim),
            n.DELTA_E_MEAN: r(self.delta_e_mean, 3),
            n.SHARPNESS_RATIO: r(self.sharpness_ratio),
            n.BLUR_SIGMA: r(self.blur_sigma, 2),
            n.ALTERED_SHARE: r(self.altered_share),
            n.EDGE_SCORE: r(self.edge_score),
            n.PRODUCT_EXPANSION: r(self.expansion),
            n.PRODUCT_REFLECTION: r(self.reflection),
            n.COVERAGE_AREA: r(c.coverage_area if c else None),
            n.COVERAGE_LONG_SIDE: r(c.coverage_long_side if c else None),
            n.CENTRE_OFFSET: r(c.centre_offset if c else None),
            n.CUT_OFF_SHARE: r(c.cut_off_share if c else None),
            n.CUTOUT_TOUCHES_BORDER: bool(self.cutout_touches_border),
            n.CANVAS_WIDTH: c.canvas_width if c else None,
            n.CANVAS_HEIGHT: c.canvas_height if c else None,
            n.ASPECT_RATIO: r(c.aspect_ratio if c else None),
            n.IMAGE_BLUR: r(self.image_blur, 2),
            n.CLIPPED_SHARE: r(self.clipped_share),
            n.NOISE_SIGMA: r(self.noise_sigma, 3),
            n.QUALITY_WARNINGS: "; ".join(self.quality_warnings),
            n.PRODUCT_SCORE: r(self.product_score),
            n.PRODUCT_ISSUES: ";".join(self.issues),
        }
        return {name: row[name] for name in n.PRODUCT_COLUMNS}


def _ramp(badness: float) -> float:
    """1 when perfect, 0.5 at the issue threshold (badness 1), 0 at twice it."""
    return min(1.0, max(0.0, 1.0 - 0.5 * badness))


def _resolution_ok(size: tuple[int, int], profile: comp.Profile) -> float:
    """Worst ratio of the image's size to the profile's minimum (>= 1 = fine)."""
    width, height = size
    ratios = [1.0]
    if profile.min_long_side_px:
        ratios.append(max(width, height) / profile.min_long_side_px)
    if profile.min_width:
        ratios.append(width / profile.min_width)
    if profile.min_height:
        ratios.append(height / profile.min_height)
    return min(ratios)


def _blur_badness(sharpness: float, sigma: float, t: ProductThresholds) -> float:
    """The blur factor's badness: the lost Laplacian energy, (1 - min(1, ratio)) / (1 -
    sharpness_ratio_min), or blur_sigma / blur_sigma_max when worse and the ratio is under
    soft_ratio_max (a soft product blurred further keeps much of its little energy)."""
    badness = (1.0 - min(1.0, sharpness)) / (1.0 - t.sharpness_ratio_min)
    if math.isfinite(sigma) and sharpness < t.soft_ratio_max:
        badness = max(badness, sigma / t.blur_sigma_max)
    return badness


def _past(badness: float) -> float:
    """`badness` when over its threshold (> 1), else 0."""
    return badness if badness > 1.0 else 0.0


def _score_and_issues(result: dict, t: ProductThresholds, profile: comp.Profile,
                      resolution: float, cut_counts: bool) -> tuple[float, list[str]]:
    """product_score = fidelity x composition (docs/product_checks.md has the formula)."""
    c: comp.Composition = result["composition"]
    sharp = result["sharpness_ratio"]
    fidelity_terms = {
        n.PRODUCT_RECOLOURED: result["delta_e_mean"] / t.delta_e_max,
        n.PRODUCT_BLURRED: _blur_badness(sharp, result["blur_sigma"], t),
        "altered_area": result["altered_share"] / t.altered_share_max,
        "stretch": result["stretch"] / t.stretch_max,
        "edge": (1.0 - result["edge_score"]) / (1.0 - t.edge_score_min),
        # Detections, not grades: under their bars these two are the measures' noise.
        "expansion": _past(result["expansion"] / t.expansion_max),
        "reflection": _past(result["reflection"] / t.reflection_max),
        "mirrored": 2.0 if result["mirrored"] else 0.0,  # a mirrored product scores 0
    }
    issues = []
    fidelity = 1.0
    for name, badness in fidelity_terms.items():
        if not math.isfinite(badness):
            continue
        fidelity *= _ramp(badness)
        if badness > 1.0:
            issues.append(n.PRODUCT_ALTERED if name in ("altered_area", "stretch", "edge",
                                                        "expansion", "reflection", "mirrored")
                          else name)
    cut_off = c.cut_off_share if cut_counts else 0.0
    if cut_off > profile.max_cut_off:
        issues.append(n.PRODUCT_CUT_OFF)
    if c.coverage_long_side < profile.min_fill:
        issues.append(n.PRODUCT_TOO_SMALL)
    if c.centre_offset > profile.max_centre_offset:
        issues.append(n.PRODUCT_OFF_CENTRE)
    if resolution < 1.0:
        issues.append(n.LOW_RESOLUTION)
    over = max(0.0, c.centre_offset - profile.max_centre_offset)
    composition = (min(1.0, c.coverage_long_side / profile.min_fill if profile.min_fill else 1.0)
                   * max(0.0, 1.0 - over / max(1e-9, 1.0 - profile.max_centre_offset))
                   * (1.0 - cut_off) * min(1.0, resolution))
    ordered = [code for code in n.ISSUE_CODES if code in issues]  # each code once
    return fidelity * composition, ordered


def _fidelity(image: np.ndarray, cut: Cutout, placement: Placement,
              t: ProductThresholds) -> dict[str, float]:
    """Fidelity measurements (NaN where the product lies almost wholly outside the frame)."""
    pair = fid.align(image, cut, placement.matrix, t.compare_long_side)
    sharp_pair = fid.align(image, cut, placement.matrix, t.sharpness_long_side,
                           mimic_upscale=True)
    nan = math.nan
    if pair is None or sharp_pair is None:
        return dict(masked_ssim=nan, delta_e_mean=nan, sharpness_ratio=nan, blur_sigma=nan,
                    altered_share=nan, edge_score=nan)
    band = fid.erode_px(pair.mask)
    eroded = fid.erode(pair.mask, band)
    inner = eroded if eroded.sum() >= 20 else pair.mask
    # Outside the mask the reference takes the generated pixels, so the smoothing and SSIM
    # windows near the outline see the same new background on both sides.
    composite = np.where(pair.mask[..., None], pair.reference, pair.generated)
    structure = fid.structure_map(pair.generated, composite)
    altered = fid.altered_mask(structure, inner, t.altered_ssim_tolerance)
    # Colour is judged where the content is still the product's: painted-over area is counted
    # once, as altered, not again as recoloured.
    colour_mask = fid.sample_mask(inner & ~altered)
    if colour_mask.sum() < 20:
        colour_mask = fid.sample_mask(inner)
    rim_mask = fid.rim_mask(pair.mask, band, eroded)
    colour, rim = fid.delta_e_at(pair.generated, pair.reference, colour_mask, rim_mask)
    sharp_inner = fid.erode(sharp_pair.mask, fid.erode_px(sharp_pair.mask))
    sharp_inner = sharp_inner if sharp_inner.any() else sharp_pair.mask
    sharpness = fid.sharpness_ratio(sharp_pair.generated, sharp_pair.reference, sharp_inner)
    # Measured only when detail was lost: the usual product keeps its energy and skips the cost.
    sigma = (fid.blur_sigma(sharp_pair.generated, sharp_pair.reference, sharp_inner)
             if sharpness < t.soft_ratio_max else math.nan)
    return dict(
        masked_ssim=fid.masked_ssim(pair.generated, pair.reference, inner),
        delta_e_mean=float(colour.mean()),
        sharpness_ratio=sharpness, blur_sigma=sigma,
        altered_share=float(altered.sum() / inner.sum()),
        # A rim painted with a background of its own colour keeps its ΔE; its structure goes.
        edge_score=fid.edge_share(rim, t.edge_tolerance, float(np.median(colour)),
                                  structure[rim_mask], t.altered_ssim_tolerance))


def _to_canvas(placement: Placement, image_size: tuple[int, int],
               canvas_size: tuple[int, int]) -> Placement:
    """A placement in the (downscaled) image's pixels -> the original canvas's pixels."""
    to_image = geo.resize_matrix(image_size[0] / canvas_size[0], image_size[1] / canvas_size[1])
    matrix = geo.compose(geo.invert(to_image), placement.matrix)
    scale, rotation = geo.decompose(matrix)
    return replace(placement, matrix=matrix, scale=scale, rotation_deg=rotation,
                   offset_x=float(matrix[0, 2]), offset_y=float(matrix[1, 2]))


def check_product(generated: np.ndarray, cutout: np.ndarray | Cutout, *,
                  thresholds: ProductThresholds = ProductThresholds(),
                  profile: comp.Profile = comp.PROFILES["default"],
                  placement: Placement | None = None,
                  canvas_size: tuple[int, int] | None = None) -> ProductResult:
    """Check one generated RGB uint8 image against the cut-out (RGBA/RGB array, or a Cutout
    already prepared with prepare_cutout, which saves its cost when one cut-out has many
    generated images). `placement` (e.g. known_placement(...), in `generated`'s pixels) skips
    the search. `canvas_size` = (width, height) of the original image when `generated` is a
    downscaled decode of it: the result's placement, canvas size and resolution are then in the
    original's pixels (the other measurements are ratios and do not depend on it)."""
    image = np.asarray(generated)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ProductInputError(f"generated image must be uint8 (H, W, 3) RGB, got "
                                f"{image.dtype} {image.shape}")
    cut = cutout if isinstance(cutout, Cutout) else prepare_cutout(cutout)
    t = thresholds
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)  # once for the three quality measures
    blur, clipped, noise = qual.blur_measure(gray), qual.clipped_share(gray), qual.noise_sigma(gray)
    image_size = (image.shape[1], image.shape[0])
    size = tuple(int(v) for v in canvas_size) if canvas_size else image_size
    warnings = qual.quality_warnings(blur, clipped, noise)
    if profile.aspect is not None and abs(size[0] / size[1] / profile.aspect - 1) > profile.aspect_tolerance:
        warnings.append(f"aspect {size[0] / size[1]:.3f}, profile {profile.name} wants "
                        f"{profile.aspect:.3f}")
    resolution = _resolution_ok(size, profile)
    common = dict(cutout_touches_border=cut.cut_at_source, image_blur=blur,
                  clipped_share=clipped, noise_sigma=noise, quality_warnings=tuple(warnings))
    mirrored = False
    if placement is None:
        search = dict(min_confidence=t.match_confidence_min,
                      min_template_confidence=t.template_confidence_min,
                      max_rotation_deg=t.max_rotation_deg,
                      min_outline_support=t.outline_support_min,
                      min_damaged_confidence=t.damaged_confidence_min,
                      min_tile_agreement=t.tile_agreement_min)
        placement = locate(image, cut, **search)
        placement, cut, mirrored = mirror_check(image, cut, placement, search,
                                                t.compare_long_side, t.mirror_margin)
    if not placement.found:
        issues = [n.PRODUCT_NOT_FOUND] + ([n.LOW_RESOLUTION] if resolution < 1.0 else [])
        return ProductResult(placement=placement, issues=tuple(issues), **common)
    around = measuring_crop(image, cut, placement.matrix)
    measured: dict = {"stretch": placement.stretch, "mirrored": mirrored,
                      "expansion": expansion_in(around) if around else math.nan,
                      "reflection": reflection_in(around) if around else math.nan}
    measured.update(_fidelity(image, cut, placement, t))
    if size != image_size:
        placement = _to_canvas(placement, image_size, size)
    measured["composition"] = comp.composition(cut, placement.matrix, size)
    score, issues = _score_and_issues(measured, t, profile, resolution,
                                      cut_counts=True)
    return ProductResult(placement=placement, masked_ssim=measured["masked_ssim"],
                         delta_e_mean=measured["delta_e_mean"],
                         sharpness_ratio=measured["sharpness_ratio"],
                         blur_sigma=measured["blur_sigma"],
                         altered_share=measured["altered_share"],
                         edge_score=measured["edge_score"], expansion=measured["expansion"],
                         reflection=measured["reflection"], mirrored=mirrored,
                         composition=measured["composition"],
                         product_score=score, issues=tuple(issues), **common)


def crop_box(placement: Placement, cutout_size: tuple[int, int],
             canvas_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), end-exclusive, of where the whole original cut-out's frame
    (cutout_size = (width, height)) landed on a (width, height) canvas, clipped to it; None
    when not found or wholly outside."""
    if not placement.found:
        return None
    w, h = cutout_size
    # Pixel centres sit at integers, so the frame's outer edges are at -0.5 and w - 0.5.
    corners = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [-0.5, h - 0.5, 1],
                        [w - 0.5, h - 0.5, 1]], dtype=np.float64)
    mapped = corners @ placement.matrix.T + 0.5
    width, height = canvas_size
    x0 = int(max(0, round(mapped[:, 0].min())))
    y0 = int(max(0, round(mapped[:, 1].min())))
    x1 = int(min(width, round(mapped[:, 0].max())))
    y1 = int(min(height, round(mapped[:, 1].max())))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def crop_for_report(generated: np.ndarray, placement: Placement,
                    cutout_shape: tuple[int, ...]) -> np.ndarray | None:
    """The part of the generated image where the whole (original) cut-out's frame landed,
    clipped to the canvas, for showing side by side with the cut-out; None when not found.
    `cutout_shape` is the original cut-out array's shape."""
    box = crop_box(placement, (cutout_shape[1], cutout_shape[0]),
                   (generated.shape[1], generated.shape[0]))
    if box is None:
        return None
    x0, y0, x1, y1 = box
    return generated[y0:y1, x0:x1].copy()
