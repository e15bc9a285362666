"""A third, fresh set-aside part of the product case set (part "fresh"): products and backgrounds
that neither the tuned part nor the held-out part of tests/product_cases.py uses anywhere, with
every case kind of product_cases.KINDS. No threshold may be tuned on it.

Products (cut-outs with real, object-shaped masks):
- "dahlia": the dahlia of scikit-learn's sample photo flower.jpg, segmented with cv2.grabCut.
  CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/); sklearn/datasets/images/README.txt
  credits it "Some rights reserved by danielbuechele" and links the photo to vultilion
  (https://www.flickr.com/photos/vultilion/6056698931/); retrieved by Robert Layton.
- "pagoda": the pagoda-style tower of scikit-learn's china.jpg, segmented with grabCut.
  CC BY 2.0, attribution: "Some rights reserved by danielbuechele"
  (https://www.flickr.com/photos/danielbuechele/6061409035/), retrieved by Robert Layton.
- "pagoda_sym": the pagoda's right half and its mirror image about the finial's axis: a
  mirror-symmetric product (same licence and attribution).
- "horse": scikit-image's horse silhouette (openclipart, CC0 by Andreas Preuss (marauder)),
  enlarged 2.5x and given a seeded brushed-steel texture, as a metal wall decal on plain white
  WITHOUT alpha (the checker's uniform-background segmentation path). Grey: no hue case.
Backgrounds: a crop of china.jpg without the pagoda (the lake and trees), a crop of flower.jpg
without the dahlia (the leaves' bokeh), scikit-image's "text" (public domain, Wikipedia's
File:Corner.png) and "microaneurysms" (CC0 by Andreas Maier, HRF fundus database), and two new
studio gradients (sage, dusk). Paint-over patches: scikit-image's "camera" (CC0 by Lav
Varshney), "text" and the flower.jpg crop (heavy paint: the case's own background). Canvases
832-1024 px (1200, 800 and 640 px for the profiles), JPEG 85-95 or PNG. Everything random is
seeded (20250917; the steel texture 9)."""

from __future__ import annotations

import cv2
import numpy as np
import skimage.data as skdata
from sklearn.datasets import load_sample_image

import product_cases as pc
from product_cases import Case

FRESH = "fresh"
FRESH_PRODUCTS: tuple[str, ...] = ("dahlia", "pagoda", "pagoda_sym", "horse")
GREY_PRODUCTS = {"horse"}                # a hue rotation leaves them as they were
SYMMETRIC = {"dahlia", "pagoda_sym"}     # rotation- or mirror-symmetric: symmetric_cut_off
MIRROR_SYMMETRIC = {"pagoda_sym"}        # mirrored_symmetric (must pass) instead of mirrored
NEAR_MIRROR_SYMMETRIC = {"dahlia"}       # mirroring changes nothing a shopper sees: no mirror case
# Two backgrounds per product; the kinds alternate between them.
FRESH_BACKGROUNDS: dict[str, tuple[str, str]] = {
    "dahlia": ("china_lake", "text"), "pagoda": ("flower_bokeh", "studio_sage"),
    "pagoda_sym": ("microaneurysms", "studio_dusk"), "horse": ("studio_dusk", "china_lake")}
FRESH_CANVASES = ((960, 960), (1024, 832), (880, 880), (832, 1024), (1000, 1000))
STUDIOS = {"studio_sage": ((234, 241, 230), (178, 194, 176)),
           "studio_dusk": ((84, 88, 102), (34, 36, 46))}


def _pagoda(photo: np.ndarray) -> np.ndarray:
    """The pagoda of china.jpg as an RGBA cut-out (the rectangle stops above the trees)."""
    return pc._grabcut(photo, (55, 22, 320, 368), iterations=5)


def _mirrored_right_half(rgba: np.ndarray, axis_x: int) -> np.ndarray:
    """The product's part right of `axis_x` and its mirror image, with a transparent margin."""
    x0, y0, w, h = pc.product_box(rgba)
    right = rgba[y0:y0 + h, axis_x:x0 + w]
    return cv2.copyMakeBorder(np.hstack([right[:, ::-1], right]), 8, 8, 8, 8,
                              cv2.BORDER_CONSTANT, value=(0, 0, 0, 0))


def _trimmed(rgba: np.ndarray, pixels: int) -> np.ndarray:
    """The cut-out with its alpha eroded by `pixels` (drops grabCut's rim of dark background)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return np.dstack([rgba[..., :3], cv2.erode(rgba[..., 3], kernel)])


def _horse() -> np.ndarray:
    """The horse silhouette as a brushed-steel decal on plain white, RGB without alpha."""
    silhouette = (~skdata.horse()).astype(np.float32)
    big = cv2.resize(silhouette, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_LINEAR)
    return steel_decal(np.clip((big - 0.5) * 3 + 0.5, 0, 1), seed=9)


def steel_decal(coverage: np.ndarray, seed: int) -> np.ndarray:
    """A silhouette (`coverage` 0..1) as a brushed-steel decal on plain white with a 30 px
    margin, RGB without alpha: horizontal streaks (seeded), a diagonal sheen, darker below."""
    alpha = cv2.GaussianBlur(coverage.astype(np.float32), (0, 0), 0.8)
    height, width = alpha.shape
    rng = np.random.default_rng(seed)
    streaks = cv2.GaussianBlur(rng.normal(size=(height, width)).astype(np.float32), (0, 0),
                               sigmaX=30, sigmaY=0.7)
    streaks /= streaks.std()
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    sheen = 35.0 * np.exp(-(((xs - 0.6 * ys) - 0.35 * width) / (0.18 * width)) ** 2)
    grey = 150.0 - 50.0 * ys / height + sheen + 9.0 * streaks
    steel = np.clip(grey[..., None] * np.array([0.98, 1.0, 1.03]), 0, 255)
    rgb = steel * alpha[..., None] + 255.0 * (1 - alpha[..., None])
    rgb = np.clip(rgb, 0, 255).round().astype(np.uint8)
    return cv2.copyMakeBorder(rgb, 30, 30, 30, 30, cv2.BORDER_CONSTANT, value=(255, 255, 255))


def build_fresh_products() -> dict[str, np.ndarray]:
    """name -> cut-out: RGBA for the dahlia and the pagodas, RGB on white for the horse."""
    flower = load_sample_image("flower.jpg")
    pagoda = _pagoda(load_sample_image("china.jpg"))
    return {
        "dahlia": _trimmed(pc._grabcut(flower, (160, 75, 300, 292)), 2),
        "pagoda": pagoda,
        # The finial's column (x = 205 in the photo) is the axis; the right half carries the
        # lowest roof, so its mirror image looks like a whole tower.
        "pagoda_sym": _mirrored_right_half(pagoda, 205),
        "horse": _horse(),
    }


def fresh_background(name: str, width: int, height: int) -> np.ndarray:
    """A fresh photo covering the canvas (resized and centre-cropped), or a studio gradient."""
    if name in STUDIOS:
        return pc.studio_gradient(*STUDIOS[name], width, height, bow=8.0)
    return pc.cover(_fresh_photo(name), width, height)


def _fresh_photo(name: str) -> np.ndarray:
    """The fresh photos as RGB: backgrounds and paint-over sources."""
    image = {"china_lake": lambda: load_sample_image("china.jpg")[:, 380:],
             "flower_bokeh": lambda: load_sample_image("flower.jpg")[:, :160],
             "china": lambda: load_sample_image("china.jpg"),
             "flower": lambda: load_sample_image("flower.jpg"),
             "text": skdata.text, "microaneurysms": skdata.microaneurysms,
             "camera": skdata.camera}[name]()
    return np.ascontiguousarray(np.dstack([image] * 3) if image.ndim == 2 else image)


def compositing_cutouts(products: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """RGBA versions to composite with: a cut-out without alpha gets the checker's own
    segmentation of its uniform background (product_cases' `_alpha` reads black surrounds)."""
    return {name: pc._with_segmented_alpha(image) if image.shape[2] == 3 else image
            for name, image in products.items() if name in FRESH_PRODUCTS}


def _place(cutouts: dict[str, np.ndarray], name: str, fill: float, bg: str,
           canvas: tuple[int, int], centre: tuple[float, float] = (0.5, 0.5),
           min_outside: float = 0.0, **paste_args):
    """product_cases.place_on a fresh background: the product's long side is `fill` x the
    canvas's matching side; pushed out of the frame until `min_outside` of it is outside."""
    width, height = canvas
    return pc.place_on(fresh_background(bg, width, height), cutouts[name], fill, centre,
                       min_outside, **paste_args)


def build_fresh_cases(products: dict[str, np.ndarray]) -> list[Case]:
    """Every kind of KINDS on the fresh products (103 cases, part FRESH). skimage's lab2rgb
    warns when a cast clips out of gamut: callers silence it as test_product_cases does."""
    cutouts = compositing_cutouts(products)
    rng = np.random.default_rng(20250917)
    cases: list[Case] = []

    def add(kind, name, i, image, fmt, truth=None, profile="default", **notes):
        cases.append(Case(f"{FRESH}/{kind}/{name}/{i}", kind, name, pc.encode(image, fmt),
                          profile, truth, notes, FRESH))

    for i, name in enumerate(FRESH_PRODUCTS):
        _kind_cases(cutouts, name, i, rng, add)
    _profile_cases(cutouts, add)
    return cases


def _kind_cases(cutouts, name: str, i: int, rng: np.random.Generator, add) -> None:
    """All default-profile kinds for product `name` (index i), on its two backgrounds."""
    bgs = FRESH_BACKGROUNDS[name]
    canvas = FRESH_CANVASES[i]

    def place(k, fill, centre=(0.5, 0.5), **kw):
        kw.setdefault("bg", bgs[k % 2])
        kw.setdefault("canvas", FRESH_CANVASES[(i + k) % len(FRESH_CANVASES)])
        return _place(cutouts, name, fill, centre=centre, **kw)

    # --- must pass ---------------------------------------------------------------------
    image, _, truth, _ = place(0, 0.6)
    add("exact", name, i, image, "png", truth)
    image, _, truth, _ = place(1, (0.42, 0.8, 0.5, 0.7)[i], ((0.45, 0.55), (0.54, 0.47),
                                                             (0.56, 0.44), (0.46, 0.52))[i])
    add("scaled_moved", name, i, image, ("jpg95", "jpg90")[i % 2], truth)
    image, _, truth, _ = place(2, 0.6, rotation_deg=(-11.0, 9.0, 13.0, -7.0)[i])
    add("rotated", name, i, image, "jpg92", truth)
    image, _, truth, _ = place(3, 0.55, (0.49, 0.52))
    add("jpeg85", name, i, image, "jpg85", truth)
    image, _, truth, _ = place(4, 0.6)
    gains = np.array([(1.04, 1.0, 0.96), (0.96, 0.98, 1.04), (1.05, 1.05, 1.05),
                      (0.95, 0.96, 0.95)][i])
    add("colour_grade", name, i, np.clip(image * gains, 0, 255).round().astype(np.uint8),
        "jpg90", truth)
    image, _, truth, _ = place(5, 0.6, (0.5, 0.48), shadow=True, bg="studio_sage")
    add("soft_shadow", name, i, image, "jpg90", truth)
    if name in MIRROR_SYMMETRIC:
        flipped = {name: np.ascontiguousarray(cutouts[name][:, ::-1])}
        image, _, _, _ = _place(flipped, name, 0.6, bgs[0], canvas)
        add("mirrored_symmetric", name, i, image, "jpg90")

    # --- must flag: the first kinds ----------------------------------------------------
    if name not in GREY_PRODUCTS:
        image, alpha, truth, _ = place(1, 0.6)
        add("hue_rotated", name, i, pc.hue_rotate(image, alpha, (70, 45, 50, 0)[i]), "jpg90",
            truth)
    image, alpha, truth, _ = place(0, 0.6)
    cast, de = pc.colour_cast(image, alpha, *((-10, 10), (8, -12), (-12, -6), (5, 4))[i])
    add("colour_cast", name, i, cast, "jpg90", truth, cast_delta_e=de)
    sigma = (3.5, 3.0, 3.0, 4.0)[i]
    image, alpha, truth, _ = place(1, 0.6)
    add("blurred", name, i, pc.blur_product(image, alpha, sigma), "jpg90", truth, sigma=sigma)
    image, alpha, truth, _ = place(0, 0.6)
    source = _fresh_photo(("camera", "camera", "text", "flower_bokeh")[i])
    painted, share = pc.paint_over(image, alpha, (0.24, 0.28, 0.22, 0.26)[i], source, rng)
    add("painted_over", name, i, painted, "jpg90", truth, covered=share)
    image, _, truth, _ = place(1, 0.55, stretch_x=(1.18, 1 / 1.16, 1.2, 1 / 1.18)[i])
    add("stretched", name, i, image, "jpg90", truth)
    image, _, truth, _ = place(0, 0.6, eat_outline=0.025)
    add("outline_painted", name, i, image, "jpg90", truth)
    centre = ((0.74, 0.5), (0.5, 0.27), (0.26, 0.5), (0.5, 0.74))[i]
    image, _, truth, outside = place(1, 0.85, centre, min_outside=0.2)
    add("cut_off", name, i, image, "jpg90", truth, outside=outside)
    image, _, truth, _ = place(0, (0.12, 0.14, 0.11, 0.15)[i])
    add("too_small", name, i, image, "jpg90", truth)
    centre = ((0.8, 0.21), (0.21, 0.79), (0.79, 0.8), (0.2, 0.22))[i]
    image, _, truth, _ = place(1, 0.3, centre)
    add("off_centre", name, i, image, "jpg90", truth)
    # Absent: the background alone, or another fresh product (never the same tower).
    other = (None, "dahlia", None, "pagoda")[i]
    if other is None:
        image = fresh_background(bgs[i % 2], *canvas)
    else:
        image, _, _, _ = _place(cutouts, other, 0.6, bgs[0], canvas)
    add("absent", name, i, image, "jpg90", other=other)
    _new_kind_cases(cutouts, name, i, bgs, canvas, rng, add)


def _new_kind_cases(cutouts, name: str, i: int, bgs: tuple[str, str], canvas: tuple[int, int],
                    rng: np.random.Generator, add) -> None:
    """Issue 27's kinds: strong cast, heavy paint with the background, grown content, mirroring
    and symmetric products cut off, as product_cases._new_kind_cases builds them."""
    if name not in MIRROR_SYMMETRIC | NEAR_MIRROR_SYMMETRIC:
        flipped = {name: np.ascontiguousarray(cutouts[name][:, ::-1])}
        image, _, _, _ = _place(flipped, name, 0.6, bgs[1], canvas)
        add("mirrored", name, i, image, "jpg90")
    image, alpha, truth, _ = _place(cutouts, name, 0.6, bgs[0], canvas)
    for direction in ((-9, 15), (15, 6), (6, -15), (-15, -6)):
        try:
            cast, de = pc.colour_cast(image, alpha, *direction, min_delta_e=11.0)
            break
        except RuntimeError:
            continue
    else:
        raise RuntimeError(f"no strong cast reached ΔE 11 on {name}")
    add("strong_cast", name, i, cast, "jpg90", truth, cast_delta_e=de)
    image, alpha, truth, _ = _place(cutouts, name, 0.6, bgs[1], canvas)
    painted, share = pc.paint_over(image, alpha, (0.32, 0.33, 0.3, 0.33)[i],
                                   fresh_background(bgs[1], *canvas), rng)
    add("heavy_paint", name, i, painted, "jpg90", truth, covered=share)
    for j, variant in enumerate(("copy", "strap", "reflection")):
        image, alpha, truth, _ = _place(cutouts, name, 0.5, bgs[j % 2], canvas,
                                        centre=(0.5, 0.45 if variant == "reflection" else 0.5))
        grown, share = pc.grow_outside(image, alpha, variant)
        add("grown", name, 10 * j + i, grown, "jpg90", truth, variant=variant, grown=share)
    if name in SYMMETRIC:
        centre = ((0.22, 0.5), (0.5, 0.78), (0.78, 0.5), (0.5, 0.22))[i]
        image, _, truth, outside = _place(cutouts, name, 0.8, bgs[0], canvas, centre=centre,
                                          min_outside=0.22)
        add("symmetric_cut_off", name, i, image, "jpg90", truth, outside=outside)


def _profile_cases(cutouts, add) -> None:
    """Amazon (fill >= 85 %, long side >= 1000 px) and CN main image (800x800, 1:1) cases:
    fits, too small for Amazon, and too low a resolution for each, on the fresh studios."""
    for i, name in enumerate(("dahlia", "pagoda", "horse")):
        studio = ("studio_sage", "studio_dusk", "studio_sage")[i]
        image, _, truth, _ = _place(cutouts, name, 0.9, studio, (1200, 1200))
        add("profile_fit", name, i, image, "jpg92", truth, profile="amazon")
        image, _, truth, _ = _place(cutouts, name, 0.75, studio, (800, 800))
        add("profile_fit", name, 10 + i, image, "jpg92", truth, profile="cn_main")
        image, _, truth, _ = _place(cutouts, name, 0.7, studio, (1200, 1200))
        add("too_small", name, 10 + i, image, "jpg92", truth, profile="amazon")
        image, _, truth, _ = _place(cutouts, name, 0.9, studio, (800, 800))
        add("low_resolution", name, 10 + i, image, "jpg92", truth, profile="amazon")
        image, _, truth, _ = _place(cutouts, name, 0.75, studio, (640, 640))
        add("low_resolution", name, 20 + i, image, "jpg92", truth, profile="cn_main")
