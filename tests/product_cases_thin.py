"""A development set for locating thin, smooth products (part "thin"): drawn silhouettes with thin
legs, stems and rails (two animals, a chair, a lamp) as brushed-steel decals on white without
alpha, made as the fresh part's horse is (product_cases_fresh.steel_decal, other seeds), so
that the horse itself stays set aside. Thresholds may be tried on it; docs/product_checks.md
reports it.

Each silhouette is pasted at 60 % of the canvas, turned by -13, -7, 0, 7 and 11 degrees, on the
tuned part's backgrounds (scikit-image's data and studio gradients, tests/product_cases.py),
JPEG 92: 20 benign cases, the true placement known; and each is looked for in four frames
without it (three empty backgrounds, one holding another product): 16 absent cases. Cut off
(`build_thin_cut_off_cases`): each at 75 % of the canvas, low in the frame so that its legs,
20-26 % of its area, lie below the frame's edge, on six backgrounds: 24 cases."""

from __future__ import annotations

import cv2
import numpy as np

import product_cases as pc
from product_cases_fresh import steel_decal

THIN = "thin"
SILHOUETTES = ("animal1", "animal2", "chair3", "lamp4")
TURNS = (-13.0, -7.0, 0.0, 7.0, 11.0)
BACKGROUNDS = ("studio_warm", "gravel", "grass", "studio", "brick", "rocket")


def silhouette(name: str) -> np.ndarray:
    """The coverage (0/1 float32, 420 x 520) of a drawn silhouette; the digit seeds its shape."""
    kind, seed = name[:-1], int(name[-1])
    rng = np.random.default_rng(seed)
    m = np.zeros((420, 520), np.uint8)
    if kind == "animal":  # body, four thin legs, neck, head, tail
        bx, by = 250 + int(rng.integers(-20, 20)), 180
        cv2.ellipse(m, (bx, by), (int(rng.integers(110, 150)), int(rng.integers(45, 60))), 0, 0,
                    360, 255, -1)
        leg = int(rng.integers(9, 16))
        for dx in (-100, -70, 70, 100):
            x0 = bx + dx + int(rng.integers(-8, 8))
            cv2.line(m, (x0, by + 30), (x0 + int(rng.integers(-25, 25)), 390), 255, leg)
        nx = bx + 140
        cv2.line(m, (nx - 20, by - 10), (nx + 30, by - 110), 255, int(rng.integers(22, 32)))
        cv2.ellipse(m, (nx + 50, by - 120), (38, 20), -20, 0, 360, 255, -1)
        cv2.line(m, (bx - 140, by - 10), (bx - 185, by + 60), 255, 7)
    elif kind == "chair":  # seat, back post and rail, two legs
        cv2.rectangle(m, (150, 200), (370, 225), 255, -1)
        cv2.rectangle(m, (150, 40), (175, 225), 255, -1)
        cv2.rectangle(m, (150, 40), (300, 62), 255, -1)
        for x in (155, 345):
            cv2.line(m, (x, 225), (x + int(rng.integers(-20, 20)), 400), 255,
                     int(rng.integers(10, 16)))
    else:  # lamp: base, thin stem and arm, shade
        cv2.ellipse(m, (260, 395), (90, 14), 0, 0, 360, 255, -1)
        cv2.line(m, (260, 390), (220 + int(rng.integers(-20, 20)), 160), 255, 10)
        cv2.line(m, (220, 160), (330, 90), 255, 9)
        cv2.fillPoly(m, [np.array([[300, 60], [390, 60], [420, 150], [270, 150]])], 255)
    return (m > 0).astype(np.float32)


def build_thin_products() -> dict[str, np.ndarray]:
    """name -> the decal (RGB on white, no alpha)."""
    return {name: steel_decal(silhouette(name), seed=100 + int(name[-1])) for name in SILHOUETTES}


def build_thin_cases(products: dict[str, np.ndarray]) -> list[pc.Case]:
    """The 20 turned pastes (kind "rotated", truth and notes["turn"] set) and 16 absent cases."""
    cases = []
    for k, name in enumerate(SILHOUETTES, 1):
        composite = pc._with_segmented_alpha(products[name])
        for j, turn in enumerate(TURNS):
            bg = BACKGROUNDS[(k + j) % len(BACKGROUNDS)]
            base = pc.background(bg, *pc.CANVASES[(k + j) % len(pc.CANVASES)])
            image, _, truth, _ = pc.place_on(base, composite, 0.6, rotation_deg=turn)
            cases.append(pc.Case(f"{THIN}/rotated/{name}/{bg}/{turn:+.0f}", "rotated", name,
                                 pc.encode(image, "jpg92"), truth=truth, part=THIN,
                                 notes={"turn": turn}))
        for j in range(4):
            bg = BACKGROUNDS[(k + 2 * j + 1) % len(BACKGROUNDS)]
            image = pc.background(bg, *pc.CANVASES[(k + j) % len(pc.CANVASES)])
            if j == 3:  # another product in the frame
                other = SILHOUETTES[k % len(SILHOUETTES)]
                image, *_ = pc.place_on(image, pc._with_segmented_alpha(products[other]), 0.5)
            cases.append(pc.Case(f"{THIN}/absent/{name}/{bg}/{j}", "absent", name,
                                 pc.encode(image, "jpg90"), part=THIN))
    return cases


CUT_OFF_BACKGROUNDS = ("studio", "gravel", "brick", "studio_warm", "grass", "rocket")


def build_thin_cut_off_cases(products: dict[str, np.ndarray]) -> list[pc.Case]:
    """The 24 cut-off cases (kind "cut_off", notes["outside"] the share out of the frame)."""
    cases = []
    for k, name in enumerate(SILHOUETTES):
        composite = pc._with_segmented_alpha(products[name])
        for j, bg in enumerate(CUT_OFF_BACKGROUNDS):
            base = pc.background(bg, *pc.CANVASES[(k + j) % len(pc.CANVASES)])
            image, _, truth, outside = pc.place_on(base, composite, 0.75, (0.5, 0.78),
                                                   min_outside=0.2)
            cases.append(pc.Case(f"{THIN}/cut_off/{name}/{bg}", "cut_off", name,
                                 pc.encode(image, "jpg90"), truth=truth, part=THIN,
                                 notes={"outside": outside}))
    return cases
