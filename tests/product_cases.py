"""The case set for the product checks, built at test time from real photographs.

Products (cut-outs with real, object-shaped masks): the coffee cup and the astronaut and the
cat's face segmented with cv2.grabCut from scikit-image's sample photos (CC0 / public domain),
samples/images/coffee_cutout.png (CC0, elliptical alpha), and scikit-image's retina photo used as
a cut-out WITHOUT alpha (the fundus on its black surround: the uniform-background path).
Backgrounds: other real photos (Hubble deep field, IHC slide, rocket launch, gravel, grass,
brick) and studio-style gradients. Generated images are composited, edited as each case kind
says, and saved and re-read as JPEG (quality 85-95) or PNG. Everything random is seeded."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import skimage.data as skdata
from skimage.color import deltaE_ciede2000, lab2rgb, rgb2lab

from aigc_eval.product.cutout import product_mask

ROOT = Path(__file__).resolve().parent.parent

# Expected issue per kind (None = must pass with no issue).
KINDS: dict[str, str | None] = {
    "exact": None, "scaled_moved": None, "rotated": None, "jpeg85": None, "colour_grade": None,
    "soft_shadow": None, "profile_fit": None,
    "hue_rotated": "product_recoloured", "colour_cast": "product_recoloured",
    "blurred": "product_blurred", "painted_over": "product_altered",
    "stretched": "product_altered", "outline_painted": "product_altered",
    "cut_off": "product_cut_off",
    "too_small": "product_too_small", "off_centre": "product_off_centre",
    "absent": "product_not_found", "low_resolution": "low_resolution",
    # Added with issue 27: strong damage, content grown outside the outline, mirroring.
    "mirrored_symmetric": None,
    "strong_cast": "product_recoloured", "heavy_paint": "product_altered",
    "grown": "product_altered", "mirrored": "product_altered",
    "symmetric_cut_off": "product_cut_off",
}
# The new kinds, each with the measure that names the damage (for the docs' table).
TUNED, HELD_OUT = "tuned", "held_out"


@dataclass
class Case:
    name: str
    kind: str
    product: str
    generated: np.ndarray
    profile: str = "default"
    truth: tuple[float, float, float] | None = None   # scale, offset_x, offset_y (if known)
    notes: dict = field(default_factory=dict)
    part: str = TUNED  # HELD_OUT: products and backgrounds that no threshold was tuned on

    @property
    def expected(self) -> str | None:
        return KINDS[self.kind]


def _grabcut(rgb: np.ndarray, rect: tuple[int, int, int, int], iterations: int = 3) -> np.ndarray:
    """Largest grabCut foreground component with holes filled, as an RGBA cut-out."""
    mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(rgb[..., ::-1]), mask, rect, np.zeros((1, 65)),
                np.zeros((1, 65)), iterations, cv2.GC_INIT_WITH_RECT)
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    fg = (labels == 1 + np.argmax(stats[1:, cv2.CC_STAT_AREA])).astype(np.uint8)
    _, holes = cv2.connectedComponents(1 - fg, connectivity=4)
    outer = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    alpha = np.where(np.isin(holes, outer) & (fg == 0), 0, 255).astype(np.uint8)
    return np.dstack([rgb, alpha])


def _symmetrised(rgba: np.ndarray) -> np.ndarray:
    """The product's left half and its mirror image side by side: a mirror-symmetric product."""
    x0, y0, w, h = product_box(rgba)
    left = rgba[y0:y0 + h, x0:x0 + w // 2]
    # A transparent margin, so the product does not touch the cut-out's frame (which would
    # excuse its cut-off parts, see composition.cut_off_share).
    return cv2.copyMakeBorder(np.hstack([left, left[:, ::-1]]), 8, 8, 8, 8,
                              cv2.BORDER_CONSTANT, value=(0, 0, 0, 0))


def _with_segmented_alpha(rgb: np.ndarray) -> np.ndarray:
    """RGBA whose alpha is the checker's own segmentation of a uniform background."""
    _, mask = product_mask(rgb)
    return np.dstack([rgb, np.where(mask, 255, 0).astype(np.uint8)])


def build_products() -> dict[str, np.ndarray]:
    """name -> cut-out (RGBA, or RGB for the retina and the colour wheel). PRODUCT_NAMES and
    cat_sym are the tuned part's products, HELD_OUT_PRODUCTS the set-aside part's. Built once
    per process (the grabCuts take seconds; several test modules use them) and read-only: each
    call returns a new dict of the same arrays."""
    return dict(_built_products())


@functools.cache
def _built_products() -> dict[str, np.ndarray]:
    products = _segment_products()
    for image in products.values():
        image.setflags(write=False)
    return products


def _segment_products() -> dict[str, np.ndarray]:
    coffee_png = cv2.imread(str(ROOT / "samples/images/coffee_cutout.png"), cv2.IMREAD_UNCHANGED)
    retina = cv2.resize(skdata.retina(), (600, 600), interpolation=cv2.INTER_AREA)
    cat = _grabcut(skdata.chelsea(), (60, 10, 330, 280))
    # One coin of the Pompeii coins photo (no known copyright restrictions), enlarged 4x.
    coin_photo = cv2.resize(skdata.coins()[5:75, 305:380], None, fx=4, fy=4,
                            interpolation=cv2.INTER_CUBIC)
    coin = _grabcut(np.dstack([coin_photo] * 3), (8, 8, 284, 264))
    rocket = _grabcut(skdata.rocket(), (285, 100, 60, 320))
    x0, y0, w, h = product_box(rocket)
    return {
        "cup": _grabcut(skdata.coffee(), (15, 15, 440, 370)),
        "astronaut": _grabcut(skdata.astronaut(), (70, 15, 330, 470)),
        "cat": cat,
        "cup_ellipse": cv2.cvtColor(coffee_png, cv2.COLOR_BGRA2RGBA),
        "retina": retina,
        "cat_sym": _symmetrised(cat),
        # Set aside: scikit-image's logo on white (segmented by the checker's own rule), its
        # colour wheel on black (no alpha), the coin, the coin made mirror-symmetric, and the
        # DSCOVR rocket (public domain), cropped with a margin and enlarged 2x.
        "logo": _with_segmented_alpha(np.ascontiguousarray(skdata.logo()[..., :3])),
        # The wheel fills its image: a black margin, so that it does not touch the cut-out's
        # frame (which would excuse its cut-off parts, as for coin_sym).
        "colorwheel": cv2.copyMakeBorder(skdata.colorwheel(), 8, 8, 8, 8, cv2.BORDER_CONSTANT,
                                         value=(0, 0, 0)),
        "coin": coin,
        "coin_sym": _symmetrised(coin),
        "rocket": cv2.resize(rocket[max(0, y0 - 10):y0 + h + 10, max(0, x0 - 10):x0 + w + 10],
                             None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC),
    }


def _alpha(cutout: np.ndarray) -> np.ndarray:
    if cutout.shape[2] == 4:
        return cutout[..., 3]
    # The retina's and the colour wheel's black surround (near-black is outside).
    return np.where(cutout.max(axis=2) > 20, 255, 0).astype(np.uint8)


def _photo(name: str) -> np.ndarray:
    image = {"hubble": skdata.hubble_deep_field, "ihc": skdata.immunohistochemistry,
             "rocket": skdata.rocket, "gravel": skdata.gravel, "grass": skdata.grass,
             "brick": skdata.brick, "coffee": skdata.coffee, "moon": skdata.moon,
             "page": skdata.page, "cell": skdata.cell, "camera": skdata.camera}[name]()
    return np.dstack([image] * 3) if image.ndim == 2 else image


def studio_gradient(top, bottom, width: int, height: int, bow: float = 10.0) -> np.ndarray:
    """A studio backdrop: `top` to `bottom` (RGB) down the canvas, darker by up to `bow` grey
    levels towards the sides."""
    top, bottom = np.array(top, np.float64), np.array(bottom, np.float64)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    xs = np.linspace(-1.0, 1.0, width)[None, :, None]
    image = top + (bottom - top) * ramp - bow * xs ** 2
    return np.clip(image, 0, 255).round().astype(np.uint8)


def cover(photo: np.ndarray, width: int, height: int) -> np.ndarray:
    """`photo` resized (bicubic) to cover a width x height canvas and centre-cropped to it."""
    factor = max(width / photo.shape[1], height / photo.shape[0])
    big = cv2.resize(photo, (math.ceil(photo.shape[1] * factor), math.ceil(photo.shape[0] * factor)),
                     interpolation=cv2.INTER_CUBIC)
    y0, x0 = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return np.ascontiguousarray(big[y0:y0 + height, x0:x0 + width])


def background(name: str, width: int, height: int) -> np.ndarray:
    """A real photo covering the canvas (resized and centre-cropped), or a studio gradient."""
    if name.startswith("studio"):
        top, bottom = {"studio": ((246, 246, 248), (206, 210, 218)),
                       "studio_warm": ((250, 238, 226), (214, 196, 180)),
                       "studio_cool": ((226, 236, 246), (170, 186, 204))}[name]
        return studio_gradient(top, bottom, width, height)
    return cover(_photo(name), width, height)


def product_box(cutout: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, width, height) of the product inside the cut-out."""
    ys, xs = np.nonzero(_alpha(cutout) >= 128)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def paste(canvas: np.ndarray, cutout: np.ndarray, scale: float, centre: tuple[float, float],
          stretch_x: float = 1.0, rotation_deg: float = 0.0, shadow: bool = False,
          eat_outline: float = 0.0):
    """Composite the cut-out so its product box centre lands at `centre` (canvas px).
    `eat_outline`: the background replaces a band of this fraction of the product's long side
    inside its outline. Returns (image, alpha on the canvas 0..1, truth (scale, offset_x,
    offset_y), share of the product's area that landed outside the canvas)."""
    rgba = np.dstack([cutout[..., :3], _alpha(cutout)])
    h, w = rgba.shape[:2]
    new_w, new_h = max(1, round(w * scale * stretch_x)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(rgba, (new_w, new_h), interpolation=interp).astype(np.float32)
    if eat_outline:
        radius = max(1, round(eat_outline * max(new_w, new_h)))
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        small[..., 3] = cv2.erode(small[..., 3], disc, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    fx, fy = new_w / w, new_h / h
    bx, by, bw, bh = product_box(cutout)
    # Product box centre in resized coordinates, then the integer shift that puts it at centre.
    pcx, pcy = (bx + bw / 2.0) * fx - 0.5, (by + bh / 2.0) * fy - 0.5
    ox, oy = round(centre[0] - pcx), round(centre[1] - pcy)
    matrix = np.array([[1.0, 0.0, ox], [0.0, 1.0, oy]])
    if rotation_deg:
        rot = cv2.getRotationMatrix2D((pcx, pcy), rotation_deg, 1.0)
        matrix = np.vstack([matrix, [0, 0, 1]]) @ np.vstack([rot, [0, 0, 1]])
        matrix = matrix[:2]
    height, width = canvas.shape[:2]
    layer = cv2.warpAffine(small, matrix, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = layer[..., 3:4] / 255.0
    out = canvas.astype(np.float32)
    if shadow:
        soft = cv2.GaussianBlur(alpha[..., 0], (0, 0), 0.03 * max(new_w, new_h))
        soft = np.roll(soft, (int(0.02 * new_h), int(0.02 * new_w)), axis=(0, 1))
        out *= 1.0 - 0.45 * soft[..., None]
    out = out * (1 - alpha) + layer[..., :3] * alpha
    full = np.vstack([matrix, [0, 0, 1]]) @ np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]])
    truth = (float(scale), float(full[0, 2]), float(full[1, 2]))
    outside = 1.0 - float(alpha.sum()) / float(small[..., 3].sum() / 255.0)
    return np.clip(out, 0, 255).round().astype(np.uint8), alpha[..., 0], truth, outside


def smooth_bottle() -> np.ndarray:
    """A textureless product (analytic): a red bottle silhouette (body, shoulder, neck) shaded
    only by a horizontal cosine, as a plain plastic bottle or a white mug is lit in a studio."""
    h, w = 400, 160
    xx = np.mgrid[0:h, 0:w][1].astype(np.float32)
    shade = 0.75 + 0.25 * np.cos((xx / w - 0.35) * np.pi)
    rgb = np.clip(np.float32([200, 40, 40]) * shade[..., None], 0, 255).astype(np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    cv2.rectangle(alpha, (w // 6, h // 5), (w - w // 6, h - 2), 255, -1)
    cv2.ellipse(alpha, (w // 2, h // 5), (w // 3, h // 10), 0, 0, 360, 255, -1)
    cv2.rectangle(alpha, (w // 2 - w // 10, 2), (w // 2 + w // 10, h // 5), 255, -1)
    return np.dstack([rgb, cv2.GaussianBlur(alpha, (3, 3), 0)])


def encode(image: np.ndarray, fmt: str) -> np.ndarray:
    """Save and re-read: 'png' or 'jpgNN' (quality NN)."""
    if fmt == "png":
        ok, data = cv2.imencode(".png", image[..., ::-1])
    else:
        ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(fmt[3:])])
    if not ok:
        raise RuntimeError("encode failed")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy()


def _on_product(image: np.ndarray, edited: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return (image * (1 - a) + edited * a).round().clip(0, 255).astype(np.uint8)


def hue_rotate(image: np.ndarray, alpha: np.ndarray, degrees: float) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(np.int32)
    hsv[..., 0] = (hsv[..., 0] + round(degrees * 256 / 360)) % 256
    edited = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)
    return _on_product(image.astype(np.float32), edited.astype(np.float32), alpha)


def colour_cast(image: np.ndarray, alpha: np.ndarray, da: float, db: float,
                min_delta_e: float = 10.5) -> tuple[np.ndarray, float]:
    """Shift a*, b* on the product, growing the shift until the cast's mean CIEDE2000 over the
    product is at least `min_delta_e`; returns the image and that mean."""
    # Only the product's bounding box is converted (per-pixel maths, the same result).
    x0, y0, w, h = cv2.boundingRect((alpha > 0).astype(np.uint8))
    box = (slice(y0, y0 + h), slice(x0, x0 + w))
    crop, crop_alpha = image[box], alpha[box]
    lab = rgb2lab(crop)
    inside = crop_alpha > 0.99
    for gain in np.arange(1.0, 10.01, 0.25):
        shifted = lab.copy()
        shifted[..., 1] += gain * da
        shifted[..., 2] += gain * db
        edited = (lab2rgb(shifted) * 255).astype(np.float32)
        out_crop = _on_product(crop.astype(np.float32), edited, crop_alpha)
        de = deltaE_ciede2000(rgb2lab(crop[inside][:, None]),
                              rgb2lab(out_crop[inside][:, None])).mean()
        if de >= min_delta_e:
            out = image.copy()
            out[box] = out_crop
            return out, float(de)
    raise RuntimeError(f"colour cast reached only ΔE {de:.1f}")


def blur_product(image: np.ndarray, alpha: np.ndarray, sigma: float) -> np.ndarray:
    blurred = cv2.GaussianBlur(image, (0, 0), sigma).astype(np.float32)
    return _on_product(image.astype(np.float32), blurred, alpha)


def paint_over(image: np.ndarray, alpha: np.ndarray, share: float, patch_source: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Paint other content (a patch of another photo) over a disc covering `share` of the
    product's area; returns the image and the share actually covered."""
    inside = alpha > 0.5
    area = inside.sum()
    radius = math.sqrt(share * area / math.pi)
    depth = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5)
    ys, xs = np.nonzero(depth >= min(0.7 * radius, 0.8 * depth.max()))
    i = rng.integers(len(xs))
    while True:
        disc = np.zeros(alpha.shape, np.uint8)
        cv2.circle(disc, (int(xs[i]), int(ys[i])), int(round(radius)), 1, -1)
        covered = (disc.astype(bool) & inside).sum() / area
        if covered >= share:
            break
        radius *= 1.03
    patch = cv2.resize(patch_source, image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    soft = cv2.GaussianBlur(disc.astype(np.float32), (0, 0), 1.0) * alpha
    return _on_product(image.astype(np.float32), patch.astype(np.float32), soft), float(covered)


PRODUCT_NAMES = ("cup", "astronaut", "cat", "cup_ellipse", "retina")
BACKGROUNDS = ("hubble", "studio", "rocket", "gravel", "studio_warm", "ihc", "grass", "brick")
CANVASES = ((1024, 1024), (800, 800), (1000, 1000), (1024, 768), (900, 900))


def _place(products, name, kind, i, fill, centre=(0.5, 0.5), fmt="jpg90", canvas=None,
           bg=None, min_outside=0.0, **paste_args):
    """Composite product `name` with its long side = `fill` x the canvas's matching side."""
    width, height = canvas or CANVASES[i % len(CANVASES)]
    base = background(bg or BACKGROUNDS[i % len(BACKGROUNDS)], width, height)
    return place_on(base, products[name], fill, centre, min_outside, **paste_args)


def place_on(base: np.ndarray, cutout: np.ndarray, fill: float, centre=(0.5, 0.5),
             min_outside: float = 0.0, **paste_args):
    """Composite `cutout` on the canvas `base` with its long side = `fill` x the canvas's
    matching side, centred at `centre` (fractions); pushed out of the frame until at least
    `min_outside` of it lies outside. Returns what `paste` returns."""
    height, width = base.shape[:2]
    _, _, bw, bh = product_box(cutout)
    scale = fill * (width / bw if bw / width >= bh / height else height / bh)
    cx, cy = centre
    for _ in range(30):
        image, alpha, truth, outside = paste(base, cutout, scale, (cx * width, cy * height),
                                             **paste_args)
        if min_outside <= 0 or outside >= min_outside:
            return image, alpha, truth, outside
        # Push further out of the frame, away from the centre.
        cx += 0.02 * np.sign(cx - 0.5)
        cy += 0.02 * np.sign(cy - 0.5)
    raise RuntimeError(f"could not push the product {min_outside:.0%} out of the frame")


def build_cases(products: dict[str, np.ndarray]) -> list[Case]:
    """The whole case set (about 70 cases)."""
    rng = np.random.default_rng(20240611)
    cases: list[Case] = []

    def add(kind, name, i, image, fmt, truth=None, profile="default", part=TUNED, **notes):
        cases.append(Case(f"{part}/{kind}/{name}/{i}" if part != TUNED else f"{kind}/{name}/{i}",
                          kind, name, encode(image, fmt), profile, truth, notes, part))

    for i, name in enumerate(PRODUCT_NAMES):
        # --- must pass -----------------------------------------------------------------
        image, _, truth, _ = _place(products, name, "exact", i, 0.6, fmt="png")
        add("exact", name, i, image, "png", truth)
        scale_fill = (0.35, 0.8, 0.5, 0.9, 0.45)[i]
        centre = ((0.42, 0.55), (0.55, 0.45), (0.6, 0.6), (0.5, 0.45), (0.4, 0.42))[i]
        image, _, truth, _ = _place(products, name, "scaled_moved", i + 1, scale_fill, centre)
        add("scaled_moved", name, i, image, ("jpg90", "jpg95")[i % 2], truth)
        image, _, truth, _ = _place(products, name, "rotated", i + 2, 0.6,
                                    rotation_deg=(8.0, -12.0, 5.0, -6.0, 14.0)[i])
        add("rotated", name, i, image, "jpg92", truth)
        image, _, truth, _ = _place(products, name, "jpeg85", i + 3, 0.55, (0.52, 0.48))
        add("jpeg85", name, i, image, "jpg85", truth)
        image, _, truth, _ = _place(products, name, "colour_grade", i + 4, 0.6)
        gains = np.array([(1.05, 1.0, 0.95), (0.95, 0.97, 1.05), (1.05, 1.05, 1.05),
                          (0.95, 0.95, 0.95), (1.04, 0.96, 1.0)][i])
        graded = np.clip(image * gains, 0, 255).round().astype(np.uint8)
        add("colour_grade", name, i, graded, "jpg90", truth)
        image, _, truth, _ = _place(products, name, "soft_shadow", i + 5, 0.6, (0.5, 0.48),
                                    shadow=True, bg=("studio", "studio_warm")[i % 2])
        add("soft_shadow", name, i, image, "jpg90", truth)

        # --- must flag -----------------------------------------------------------------
        image, alpha, truth, _ = _place(products, name, "hue", i + 1, 0.6)
        add("hue_rotated", name, i, hue_rotate(image, alpha, (30, 40, 60, 35, 45)[i]), "jpg90",
            truth)
        image, alpha, truth, _ = _place(products, name, "cast", i + 2, 0.6)
        cast, de = colour_cast(image, alpha, *((6, 12), (-8, 10), (10, -6), (14, -10), (12, 8))[i])
        add("colour_cast", name, i, cast, "jpg90", truth, cast_delta_e=de)
        image, alpha, truth, _ = _place(products, name, "blur", i + 3, 0.6)
        sigma = (2.0, 2.5, 3.0, 2.0, 2.0)[i]
        add("blurred", name, i, blur_product(image, alpha, sigma), "jpg90", truth, sigma=sigma)
        image, alpha, truth, _ = _place(products, name, "paint", i + 4, 0.6)
        source = _photo(("rocket", "coffee", "hubble", "ihc", "rocket")[i])
        painted, share = paint_over(image, alpha, (0.2, 0.25, 0.3, 0.2, 0.22)[i], source, rng)
        add("painted_over", name, i, painted, "jpg90", truth, covered=share)
        image, _, truth, _ = _place(products, name, "stretch", i + 5, 0.55,
                                    stretch_x=(1.15, 1.2, 1 / 1.15, 1.15, 1 / 1.2)[i])
        add("stretched", name, i, image, "jpg90", truth)
        # Cut off: a large product pushed over one side so 20-35 % of it leaves the frame.
        centre = ((0.75, 0.5), (0.5, 0.72), (0.28, 0.5), (0.5, 0.3), (0.72, 0.5))[i]
        image, _, truth, outside = _place(products, name, "cut", i + 6, 0.85, centre,
                                          min_outside=0.2)
        add("cut_off", name, i, image, "jpg90", truth, outside=outside)
        image, _, truth, _ = _place(products, name, "outline", i + 7, 0.6, eat_outline=0.025)
        add("outline_painted", name, i, image, "jpg90", truth)
        image, _, truth, _ = _place(products, name, "small", i + 7, (0.12, 0.15, 0.1, 0.14, 0.16)[i])
        add("too_small", name, i, image, "jpg90", truth)
        centre = ((0.2, 0.2), (0.8, 0.78), (0.8, 0.22), (0.2, 0.8), (0.5, 0.82))[i]
        image, _, truth, _ = _place(products, name, "offc", i + 8, 0.3, centre)
        add("off_centre", name, i, image, "jpg90", truth)
        other = PRODUCT_NAMES[(i + 2) % len(PRODUCT_NAMES)]
        if other == "cup_ellipse" and name == "cup" or other == "cup" and name == "cup_ellipse":
            other = "cat"
        if i % 2 == 0:
            image = background(BACKGROUNDS[i % len(BACKGROUNDS)], *CANVASES[i % len(CANVASES)])
        else:  # a different product in the frame
            image, _, _, _ = _place(products, other, "absent", i, 0.6)
        add("absent", name, i, image, "jpg90", other=other if i % 2 else None)

    # Profiles: Amazon wants >= 85 % fill and >= 1000 px, the CN main image 800x800 at 1:1.
    for i, name in enumerate(("cup", "astronaut", "retina")):
        image, _, truth, _ = _place(products, name, "amazon", i, 0.9, canvas=(1200, 1200), bg="studio")
        add("profile_fit", name, i, image, "jpg92", truth, profile="amazon")
        image, _, truth, _ = _place(products, name, "cn", i, 0.75, canvas=(800, 800), bg="studio_warm")
        add("profile_fit", name, 10 + i, image, "jpg92", truth, profile="cn_main")
        image, _, truth, _ = _place(products, name, "amz_small", i, 0.7, canvas=(1200, 1200), bg="studio")
        add("too_small", name, 10 + i, image, "jpg92", truth, profile="amazon")
        image, _, truth, _ = _place(products, name, "lowres", i, 0.9, canvas=(800, 800), bg="studio")
        add("low_resolution", name, 10 + i, image, "jpg92", truth, profile="amazon")
        image, _, truth, _ = _place(products, name, "lowres", i, 0.75, canvas=(640, 640), bg="studio_warm")
        add("low_resolution", name, 20 + i, image, "jpg92", truth, profile="cn_main")

    # Issue 27's kinds on the tuned products (a separate seed keeps the cases above as they were).
    rng_new = np.random.default_rng(20261206)
    image, _, truth, _ = _place(products, "cat_sym", "exact", 0, 0.6, fmt="png", bg="brick")
    add("exact", "cat_sym", 0, image, "png", truth)
    image, _, truth, _ = _place(products, "cat_sym", "rotated", 1, 0.55, bg="grass",
                                rotation_deg=-7.0)
    add("rotated", "cat_sym", 0, image, "jpg90", truth)
    _new_kind_cases(products, (*PRODUCT_NAMES, "cat_sym"), BACKGROUNDS, TUNED, rng_new, add)
    _held_out_cases(products, np.random.default_rng(27), add)
    return cases


# --- issue 27: strong damage, grown content, mirroring, and the set-aside part -------------

def grow_outside(image: np.ndarray, alpha: np.ndarray, variant: str) -> tuple[np.ndarray, float]:
    """Add product-like content attached to the outline, outside it, as generators do:
    "copy" (a second copy of the product behind it, shifted by a third of its size), "strap"
    (a thick arc over its top, both ends on the product, half its median colour and half its
    own texture), "reflection" (the product mirrored below its bottom edge, fading from 70 %
    opacity over 40 % of its height).
    Returns the image and the grown area as a share of the product's area."""
    inside = alpha > 0.5
    x0, y0, w, h = cv2.boundingRect(inside.astype(np.uint8))
    layer_rgb = image.astype(np.float32)
    layer_a = np.zeros_like(alpha)
    if variant == "copy":
        dx, dy = round(0.33 * w), round(0.12 * h)
        layer_a = np.roll(alpha, (dy, dx), axis=(0, 1))
        layer_rgb = np.roll(image, (dy, dx), axis=(0, 1)).astype(np.float32)
    elif variant == "strap":
        colour = np.median(image[inside], axis=0)
        thick = max(2, round(0.06 * max(w, h)))
        # Its ends stand on the product, 30 % of its width either side of the middle (closer in
        # where those columns hold no product), a thickness below the outline there, so the
        # strap is attached however narrow the product's top; its top is 25 % of the product's
        # height above the product's.
        cx = x0 + w // 2
        columns = inside.any(axis=0)
        half = round(0.3 * w)
        while half > 1 and not (columns[cx - half] and columns[cx + half]):
            half -= 1
        ends = [int(np.argmax(inside[:, cx + side * half])) for side in (-1, 1)]
        base = max(ends) + thick
        top = y0 - round(0.25 * h)
        arc = np.zeros(alpha.shape, np.uint8)
        cv2.ellipse(arc, (cx, base), (max(2, half), max(2, base - top)), 0, 180, 360, 1, thick)
        layer_a = cv2.GaussianBlur(arc.astype(np.float32), (0, 0), 1.0)
        # The product's own texture (the image shifted up, so product lies under the strap).
        texture = np.roll(image, (-round(0.35 * h), 0), axis=(0, 1)).astype(np.float32)
        layer_rgb = 0.5 * colour + 0.5 * texture
    else:  # reflection
        length = round(0.4 * h)
        bottom = y0 + h
        rows = np.arange(bottom, min(alpha.shape[0], bottom + length))
        source = np.clip(2 * bottom - 1 - rows, 0, alpha.shape[0] - 1)
        fade = 0.7 * (1.0 - (rows - bottom) / length)
        layer_a[rows] = alpha[source] * fade[:, None]
        layer_rgb[rows] = image[source]
    grown = layer_a * (1.0 - alpha)
    out = _on_product(image.astype(np.float32), layer_rgb, grown)
    return out, float(((grown > 0.5) & ~inside).sum() / inside.sum())


def _new_kind_cases(products, names, backgrounds, part, rng, add):
    """Strong casts, heavy over-painting with background, grown content, mirroring and
    symmetric products cut off, for `names` on `backgrounds` (two per product, alternating)."""
    symmetric = {"cat_sym", "coin_sym", "coin", "cup_ellipse"}  # mirror- or rotation-symmetric
    mirror_symmetric = {"cat_sym", "coin_sym"}
    for i, name in enumerate(names):
        bgs = (backgrounds[(2 * i) % len(backgrounds)], backgrounds[(2 * i + 1) % len(backgrounds)])
        canvas = CANVASES[(i + 1) % len(CANVASES)]
        if name in mirror_symmetric:
            flipped = dict(products, **{name: np.ascontiguousarray(products[name][:, ::-1])})
            image, _, _, _ = _place(flipped, name, "msym", i, 0.6, bg=bgs[0], canvas=canvas)
            add("mirrored_symmetric", name, i, image, "jpg90", part=part)
        else:
            flipped = dict(products, **{name: np.ascontiguousarray(products[name][:, ::-1])})
            image, _, _, _ = _place(flipped, name, "mirror", i, 0.6, bg=bgs[1], canvas=canvas)
            add("mirrored", name, i, image, "jpg90", part=part)
        image, alpha, truth, _ = _place(products, name, "scast", i, 0.6, bg=bgs[0], canvas=canvas)
        for direction in ((9, 15), (15, 6), (-6, 15)):  # warm first; saturated ones clip
            try:
                cast, de = colour_cast(image, alpha, *direction, min_delta_e=11.0)
                break
            except RuntimeError:
                continue
        add("strong_cast", name, i, cast, "jpg90", truth, part=part, cast_delta_e=de)
        image, alpha, truth, _ = _place(products, name, "hpaint", i, 0.6, bg=bgs[1], canvas=canvas)
        painted, share = paint_over(image, alpha, (0.3, 0.35)[i % 2],
                                    background(bgs[1], *canvas), rng)
        add("heavy_paint", name, i, painted, "jpg90", truth, part=part, covered=share)
        for j, variant in enumerate(("copy", "strap", "reflection")):
            image, alpha, truth, _ = _place(products, name, "grow", i + j, 0.5,
                                            bg=bgs[j % 2], canvas=canvas)
            grown, share = grow_outside(image, alpha, variant)
            add("grown", name, 10 * j + i, grown, "jpg90", truth, part=part, variant=variant,
                grown=share)
        if name in symmetric:
            centre = ((0.78, 0.5), (0.5, 0.25), (0.22, 0.5), (0.5, 0.78))[i % 4]
            image, _, truth, outside = _place(products, name, "scut", i, 0.8, centre, bg=bgs[0],
                                              canvas=canvas, min_outside=0.22)
            add("symmetric_cut_off", name, i, image, "jpg90", truth, part=part, outside=outside)


HELD_OUT_PRODUCTS = ("logo", "colorwheel", "coin", "coin_sym", "rocket")
GREY_PRODUCTS = {"coin", "coin_sym"}
HELD_OUT_BACKGROUNDS = ("moon", "studio_cool", "page", "cell", "studio_cool", "moon",
                        "cell", "page", "studio_cool", "page")


def _held_out_cases(products, rng, add) -> None:
    """Every kind, on products and backgrounds that no threshold was tuned on: each product on
    two backgrounds (kinds alternate between them), canvases 800-1024 px, JPEG or PNG."""
    for i, name in enumerate(HELD_OUT_PRODUCTS):
        bgs = (HELD_OUT_BACKGROUNDS[2 * i], HELD_OUT_BACKGROUNDS[2 * i + 1])
        canvas = CANVASES[(i + 2) % len(CANVASES)]

        def place(kind, k, fill, centre=(0.5, 0.5), **kw):
            kw.setdefault("bg", bgs[k % 2])
            return _place(products, name, kind, i, fill, centre, canvas=canvas, **kw)

        image, _, truth, _ = place("exact", 0, 0.6)
        add("exact", name, i, image, "png", truth, part=HELD_OUT)
        image, _, truth, _ = place("sm", 1, (0.4, 0.8, 0.5, 0.7, 0.45)[i], (0.44, 0.56))
        add("scaled_moved", name, i, image, "jpg92", truth, part=HELD_OUT)
        image, _, truth, _ = place("rot", 0, 0.6, rotation_deg=(-9.0, 11.0, 6.0, -13.0, 4.0)[i])
        add("rotated", name, i, image, "jpg92", truth, part=HELD_OUT)
        image, _, truth, _ = place("j85", 1, 0.55, (0.48, 0.52))
        add("jpeg85", name, i, image, "jpg85", truth, part=HELD_OUT)
        image, _, truth, _ = place("grade", 0, 0.6)
        gains = np.array([(1.04, 1.0, 0.96), (0.96, 1.0, 1.04), (0.95, 0.95, 0.95),
                          (1.05, 1.05, 1.05), (1.0, 0.96, 1.03)][i])
        add("colour_grade", name, i, np.clip(image * gains, 0, 255).round().astype(np.uint8),
            "jpg90", truth, part=HELD_OUT)
        image, _, truth, _ = place("shadow", 0, 0.6, shadow=True, bg="studio_cool")
        add("soft_shadow", name, i, image, "jpg90", truth, part=HELD_OUT)
        if name not in GREY_PRODUCTS:  # a hue rotation leaves a grey product as it was
            image, alpha, truth, _ = place("hue", 1, 0.6)
            add("hue_rotated", name, i, hue_rotate(image, alpha, (50, 40, 45, 35, 60)[i]),
                "jpg90", truth, part=HELD_OUT)
        image, alpha, truth, _ = place("cast", 0, 0.6)
        cast, de = colour_cast(image, alpha, *((-10, 8), (8, -12), (12, 10), (-6, -14), (10, 4))[i])
        add("colour_cast", name, i, cast, "jpg90", truth, part=HELD_OUT, cast_delta_e=de)
        if name != "colorwheel":  # smooth all over: blurring it changes nothing visible
            # The coins are a 4x enlargement, already soft: σ 4 px is what shows on them.
            image, alpha, truth, _ = place("blur", 1, 0.6)
            add("blurred", name, i, blur_product(image, alpha, (2.0, 2.5, 4.0, 4.0, 2.0)[i]),
                "jpg90", truth, part=HELD_OUT)
        image, alpha, truth, _ = place("paint", 0, 0.6)
        source = _photo(("coffee", "rocket", "hubble", "coffee", "ihc")[i])
        painted, share = paint_over(image, alpha, (0.22, 0.25, 0.2, 0.3, 0.25)[i], source, rng)
        add("painted_over", name, i, painted, "jpg90", truth, part=HELD_OUT, covered=share)
        image, _, truth, _ = place("stretch", 1, 0.55,
                                   stretch_x=(1.18, 1 / 1.15, 1.2, 1 / 1.2, 1.15)[i])
        add("stretched", name, i, image, "jpg90", truth, part=HELD_OUT)
        image, _, truth, _ = place("outline", 0, 0.6, eat_outline=0.025)
        add("outline_painted", name, i, image, "jpg90", truth, part=HELD_OUT)
        centre = ((0.26, 0.5), (0.5, 0.74), (0.74, 0.5), (0.5, 0.26), (0.5, 0.75))[i]
        image, _, truth, outside = place("cut", 1, 0.85, centre, min_outside=0.2)
        add("cut_off", name, i, image, "jpg90", truth, part=HELD_OUT, outside=outside)
        image, _, truth, _ = place("small", 0, (0.13, 0.11, 0.15, 0.12, 0.16)[i])
        add("too_small", name, i, image, "jpg90", truth, part=HELD_OUT)
        centre = ((0.78, 0.2), (0.2, 0.22), (0.2, 0.8), (0.8, 0.8), (0.18, 0.5))[i]
        image, _, truth, _ = place("offc", 1, 0.3, centre)
        add("off_centre", name, i, image, "jpg90", truth, part=HELD_OUT)
        if i % 2 == 0:
            image = background(bgs[0], *canvas)
        else:
            image, _, _, _ = _place(products, "coin" if name != "coin" else "logo", "absent", i,
                                    0.6, canvas=canvas, bg=bgs[0])
        if name == "coin_sym":  # its source coin in the frame is the same product, not another
            image = background(bgs[1], *canvas)
        add("absent", name, i, image, "jpg90", part=HELD_OUT)
    _new_kind_cases(products, HELD_OUT_PRODUCTS, HELD_OUT_BACKGROUNDS, HELD_OUT, rng, add)
