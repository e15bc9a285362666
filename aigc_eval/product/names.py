"""Output column names and the issue vocabulary of the product check, each defined once.

The pipeline writes one row per generated image; these names are its columns. Issue codes are
`;`-joined in `PRODUCT_ISSUES` (empty string when the product is fine)."""

from __future__ import annotations

# Placement of the merchant's cut-out inside the generated image.
PRODUCT_FOUND = "product_found"
PRODUCT_SCALE = "product_scale"
PRODUCT_OFFSET_X = "product_offset_x"
PRODUCT_OFFSET_Y = "product_offset_y"
PRODUCT_ROTATION = "product_rotation_deg"
PRODUCT_STRETCH = "product_stretch"
MATCH_CONFIDENCE = "match_confidence"
MATCH_METHOD = "match_method"
OUTLINE_SUPPORT = "outline_support"          # outline on edges, when the correlation was weak
TILE_AGREEMENT = "tile_agreement"            # share of tiles still matching (template placements)
SILHOUETTE_CONTRAST = "silhouette_contrast"  # silhouette R² (textureless products' placements)
PLACEMENT_AMBIGUITY = "placement_ambiguity"  # runner-up placement's confidence / the winner's
PRODUCT_MIRRORED = "product_mirrored"        # the mirrored cut-out fits clearly better

# Fidelity: is the product the merchant's, unchanged?
MASKED_SSIM = "masked_ssim"
DELTA_E_MEAN = "delta_e_mean"
SHARPNESS_RATIO = "sharpness_ratio"
BLUR_SIGMA = "blur_sigma"                    # Gaussian σ explaining the product, when it is softer
ALTERED_SHARE = "altered_share"
EDGE_SCORE = "edge_score"
PRODUCT_EXPANSION = "product_expansion"      # product-like content outside the outline / area
PRODUCT_REFLECTION = "product_reflection"    # a mirrored copy below the product / area

# Composition on the canvas.
COVERAGE_AREA = "coverage_area"
COVERAGE_LONG_SIDE = "coverage_long_side"
CENTRE_OFFSET = "centre_offset"
CUT_OFF_SHARE = "cut_off_share"
CUTOUT_TOUCHES_BORDER = "cutout_touches_border"
CANVAS_WIDTH = "canvas_width"
CANVAS_HEIGHT = "canvas_height"
ASPECT_RATIO = "aspect_ratio"

# Whole-image quality (warnings only, never product issues).
IMAGE_BLUR = "image_blur"
CLIPPED_SHARE = "clipped_share"
NOISE_SIGMA = "noise_sigma"
QUALITY_WARNINGS = "quality_warnings"

PRODUCT_SCORE = "product_score"
PRODUCT_ISSUES = "product_issues"

PRODUCT_COLUMNS: tuple[str, ...] = (
    PRODUCT_FOUND,
    PRODUCT_SCALE,
    PRODUCT_OFFSET_X,
    PRODUCT_OFFSET_Y,
    PRODUCT_ROTATION,
    PRODUCT_STRETCH,
    MATCH_CONFIDENCE,
    MATCH_METHOD,
    OUTLINE_SUPPORT,
    TILE_AGREEMENT,
    SILHOUETTE_CONTRAST,
    PLACEMENT_AMBIGUITY,
    PRODUCT_MIRRORED,
    MASKED_SSIM,
    DELTA_E_MEAN,
    SHARPNESS_RATIO,
    BLUR_SIGMA,
    ALTERED_SHARE,
    EDGE_SCORE,
    PRODUCT_EXPANSION,
    PRODUCT_REFLECTION,
    COVERAGE_AREA,
    COVERAGE_LONG_SIDE,
    CENTRE_OFFSET,
    CUT_OFF_SHARE,
    CUTOUT_TOUCHES_BORDER,
    CANVAS_WIDTH,
    CANVAS_HEIGHT,
    ASPECT_RATIO,
    IMAGE_BLUR,
    CLIPPED_SHARE,
    NOISE_SIGMA,
    QUALITY_WARNINGS,
    PRODUCT_SCORE,
    PRODUCT_ISSUES,
)

# Not in PRODUCT_COLUMNS: "x0 y0 x1 y1" of check.crop_box, for the report's side-by-side crop.
PRODUCT_CROP_BOX = "product_crop_box"

# Issue vocabulary (fixed: downstream reports group by these strings).
PRODUCT_NOT_FOUND = "product_not_found"
PRODUCT_ALTERED = "product_altered"
PRODUCT_RECOLOURED = "product_recoloured"
PRODUCT_BLURRED = "product_blurred"
PRODUCT_CUT_OFF = "product_cut_off"
PRODUCT_TOO_SMALL = "product_too_small"
PRODUCT_OFF_CENTRE = "product_off_centre"
LOW_RESOLUTION = "low_resolution"

ISSUE_CODES: tuple[str, ...] = (
    PRODUCT_NOT_FOUND,
    PRODUCT_ALTERED,
    PRODUCT_RECOLOURED,
    PRODUCT_BLURRED,
    PRODUCT_CUT_OFF,
    PRODUCT_TOO_SMALL,
    PRODUCT_OFF_CENTRE,
    LOW_RESOLUTION,
)
