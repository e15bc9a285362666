"""A development set for content grown outside the outline (part "lookalike"): the tuned part's
products on backgrounds made of their own colours, where a colour proposal has the least to go
on. Thresholds may be tried on it (it is not set aside); docs/product_checks.md reports it.

Each tuned product (tests/product_cases.py: cup, astronaut, cat, cup_ellipse, retina, cat_sym)
sits on four backgrounds: three of the tuned part's photos (scikit-image's data, the licences
listed there) colour-transferred to the product's own colours (Reinhard et al. 2001: each
CIELAB channel moved to the product's mean and 0.8 x its spread), and a studio gradient in the
product's median colour. On each: a grown copy, strap and reflection (product_cases.grow_outside)
and two benign pastes (plain, and with a soft shadow): 72 grown and 48 benign cases, JPEG 90,
the true placement known."""

from __future__ import annotations

import cv2
import numpy as np

import product_cases as pc

PRODUCTS = (*pc.PRODUCT_NAMES, "cat_sym")
PHOTOS = ("hubble", "rocket", "gravel", "ihc", "grass", "brick")
LOOKALIKE = "lookalike"


def colour_transfer(photo: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """`photo` (RGB uint8) with each OpenCV 8-bit CIELAB channel moved to `mean` and `spread`."""
    lab = cv2.cvtColor(photo, cv2.COLOR_RGB2LAB).astype(np.float32).reshape(-1, 3)
    moved = (lab - lab.mean(axis=0)) / (lab.std(axis=0) + 1e-3) * spread + mean
    moved = np.clip(moved, 0, 255).astype(np.uint8).reshape(photo.shape)
    return cv2.cvtColor(moved, cv2.COLOR_LAB2RGB)


def lookalike_backgrounds(cutout: np.ndarray, index: int,
                          canvas: tuple[int, int]) -> list[tuple[str, np.ndarray]]:
    """(name, background) x 4 for the `index`-th product: three photos in its colours, and a
    studio in its median colour."""
    inside = pc._alpha(cutout) >= 128
    rgb = np.ascontiguousarray(cutout[..., :3])
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)[inside]
    mean, spread = lab.mean(axis=0), lab.std(axis=0)
    median = np.median(rgb[inside], axis=0)
    out = []
    for k in range(3):
        name = PHOTOS[(index + 2 * k) % len(PHOTOS)]
        out.append((name, pc.cover(colour_transfer(pc._photo(name), mean, 0.8 * spread), *canvas)))
    out.append(("studio_like", pc.studio_gradient(np.clip(median * 1.1 + 10, 0, 255),
                                                  np.clip(median * 0.9, 0, 255), *canvas)))
    return out


def build_lookalike_cases(products: dict[str, np.ndarray]) -> list[pc.Case]:
    """The 120 cases: kind "grown" (notes: variant, grown share) or a benign kind ("exact",
    "soft_shadow"), each with its true placement."""
    cases = []
    for i, name in enumerate(PRODUCTS):
        cutout = products[name]
        canvas = pc.CANVASES[i % len(pc.CANVASES)]
        for bg_name, base in lookalike_backgrounds(cutout, i, canvas):
            tag = f"{LOOKALIKE}/{name}/{bg_name}"
            for variant in ("copy", "strap", "reflection"):
                image, alpha, truth, _ = pc.place_on(base, cutout, 0.5)
                grown, share = pc.grow_outside(image, alpha, variant)
                cases.append(pc.Case(f"{tag}/{variant}", "grown", name, pc.encode(grown, "jpg90"),
                                     truth=truth, part=LOOKALIKE,
                                     notes={"variant": variant, "grown": share}))
            image, _, truth, _ = pc.place_on(base, cutout, 0.55, (0.48, 0.52))
            cases.append(pc.Case(f"{tag}/exact", "exact", name, pc.encode(image, "jpg90"),
                                 truth=truth, part=LOOKALIKE))
            image, _, truth, _ = pc.place_on(base, cutout, 0.6, shadow=True)
            cases.append(pc.Case(f"{tag}/shadow", "soft_shadow", name, pc.encode(image, "jpg90"),
                                 truth=truth, part=LOOKALIKE))
    return cases
