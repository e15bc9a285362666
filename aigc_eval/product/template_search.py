"""The locator's last resort: masked multi-scale template matching of the cut-out's grey levels.

Features (ORB, SIFT) fail on smooth or thin products; a template has no keypoints to lose. The
peaks found here carry no geometric verification, so `locate` ECC-refines each one and asks more
of its correlation (`min_template_confidence`) than of a feature fit."""

from __future__ import annotations

import math

import cv2
import numpy as np

from . import geometry as geo
from .cutout import Cutout

TEMPLATE_LONG_SIDE = 128   # the canvas's long side (px) on which templates are matched
MIN_TEMPLATE_PIXELS = 150  # a masked correlation over fewer pixels fits almost anything
TEMPLATE_PEAKS = 3         # best peaks handed to `locate` (beside each size third's best)
FINE_LONG_SIDE = 256       # each peak is re-placed on this finer canvas before ECC
FINE_STEPS = 5             # ... over scales x1.03^-5 .. x1.03^5 around the peak's
FINE_ANGLES = (-10.0, 10.0)  # ... and these turns (deg): ECC converges from within ~9 deg
FINE_TURN_GAIN = 0.05      # ... a turned fit is verified too when it correlates this much better


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _distinct(peak: tuple, chosen: list[tuple]) -> bool:
    """A peak clearly differs from every chosen one: scale off by > 25 % or centre moved by
    > 25 % of the chosen product's size."""
    return all(abs(math.log(peak[1] / other[1])) > math.log(1.25)
               or math.dist(peak[2], other[2]) > 0.25 * other[1] for other in chosen)


def _turned(templ: np.ndarray, templ_mask: np.ndarray, angle: float):
    """The template and its mask turned by `angle` degrees (counter-clockwise as displayed)
    about their centre onto a canvas that holds them whole, and the turning matrix."""
    h, w = templ.shape
    turn = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
    cos, sin = abs(turn[0, 0]), abs(turn[0, 1])
    size = (int(math.ceil(w * cos + h * sin)), int(math.ceil(w * sin + h * cos)))
    turn[0, 2] += (size[0] - w) / 2.0
    turn[1, 2] += (size[1] - h) / 2.0
    return (cv2.warpAffine(templ, turn, size, flags=cv2.INTER_LINEAR),
            cv2.warpAffine(templ_mask, turn, size, flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0), turn)


def _match(canvas: np.ndarray, gray_cut: np.ndarray, mask: np.ndarray, size: float,
           window: tuple[int, int, int, int] | None = None, angle: float = 0.0):
    """(score, centre, template -> canvas matrix) of the best placement of the grey cut-out
    resized so its long side is `size` and turned by `angle` degrees, inside `window` (x0, y0,
    x1, y1) of the canvas or anywhere; None when the template is too small, or larger than the
    canvas or window."""
    templ, to_templ = geo.resize_by(gray_cut, size / max(mask.shape))
    templ_mask = cv2.resize(mask.astype(np.uint8), templ.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    if angle:
        templ, templ_mask, turn = _turned(templ, templ_mask, angle)
        to_templ = geo.compose(turn, to_templ)
    x0, y0, x1, y1 = window or (0, 0, canvas.shape[1], canvas.shape[0])
    if (templ.shape[0] > y1 - y0 or templ.shape[1] > x1 - x0
            or int(templ_mask.sum()) < MIN_TEMPLATE_PIXELS):
        return None
    scores = cv2.matchTemplate(canvas[y0:y1, x0:x1], templ.astype(np.float32), cv2.TM_CCOEFF_NORMED,
                               mask=templ_mask)
    scores = np.nan_to_num(scores, nan=-1.0, posinf=-1.0, neginf=-1.0)
    _, value, _, loc = cv2.minMaxLoc(scores)
    x, y = loc[0] + x0, loc[1] + y0
    centre = (x + templ.shape[1] / 2.0, y + templ.shape[0] / 2.0)
    return value, centre, geo.compose(geo.translation(x, y), to_templ)


def _finer(canvas: np.ndarray, gray_cut: np.ndarray, mask: np.ndarray, size: float,
           centre: tuple[float, float]) -> list[np.ndarray]:
    """The coarse peak (product long side `size` at `centre`, in `canvas` px) re-placed on the
    finer `canvas`: scales within x1.03^±FINE_STEPS, positions within 15 % of the product's
    size (+4 px) of the coarse one. Returned: the template -> canvas matrix of the best
    unturned fit, then that of the best fit turned by one of `FINE_ANGLES` when it correlates
    better by `FINE_TURN_GAIN` (both are verified by `locate`, so a turn can add a placement
    but not lose one; at wrong spots a turn gains 0-0.06, at a turned product 0.09-0.47).
    The coarse search has no rotation (each turn there would add its own chance peaks); a
    turn is tried only where the unturned template peaked, so that ECC, which converges from
    within about 9 deg, also starts near a product turned by up to 15 deg."""
    def best_of(steps, angle: float):
        best = None
        for step in steps:
            here = size * 1.03 ** step
            reach = 0.15 * size + 4
            turned_long = here * (abs(math.cos(math.radians(angle)))
                                  + abs(math.sin(math.radians(angle))))
            half_w = turned_long * mask.shape[1] / max(mask.shape) / 2 + reach
            half_h = turned_long * mask.shape[0] / max(mask.shape) / 2 + reach
            window = (max(0, int(centre[0] - half_w)), max(0, int(centre[1] - half_h)),
                      min(canvas.shape[1], int(math.ceil(centre[0] + half_w)) + 1),
                      min(canvas.shape[0], int(math.ceil(centre[1] + half_h)) + 1))
            found = _match(canvas, gray_cut, mask, here, window, angle)
            if found is not None and (best is None or found[0] > best[0][0]):
                best = found, step
        return best

    unturned = best_of(range(-FINE_STEPS, FINE_STEPS + 1), 0.0)
    if unturned is None:
        return []
    (score, _, matrix), step = unturned
    # ECC settles the scale: turned templates are tried near the unturned one's only.
    fits = [best_of((step - 2, step, step + 2), angle) for angle in FINE_ANGLES]
    turned = max((fit[0] for fit in fits if fit is not None), key=lambda fit: fit[0],
                 default=None)
    if turned is None or turned[0] < score + FINE_TURN_GAIN:
        return [matrix]
    return [matrix, turned[2]]


def _chosen_peaks(found: list[tuple], peaks: int, smallest: float, largest: float) -> list[tuple]:
    """The peaks to verify: the best of each third of the searched sizes (on a log scale), then
    up to `peaks` - 1 of the best others, each clearly different from those before
    (`_distinct`); best first. A masked correlation is higher by chance the fewer pixels a
    template has, so the small sizes' peaks outrank the product's own at its size: without the
    thirds, the three best peaks of a textureless product could all be small spots."""
    ranked = sorted(found, key=lambda peak: -peak[0])
    edges = [smallest * (largest / smallest) ** (k / 3) for k in (1, 2)]
    band = [sum(peak[1] >= edge for edge in edges) for peak in ranked]
    chosen: list[tuple] = []
    for third in range(3):
        best = next((p for p, b in zip(ranked, band) if b == third and _distinct(p, chosen)), None)
        if best is not None:
            chosen.append(best)
    others = 0
    for peak in ranked:
        if others == peaks - 1:
            break
        if _distinct(peak, chosen):
            chosen.append(peak)
            others += 1
    return sorted(chosen, key=lambda peak: -peak[0])


def template_candidates(generated: np.ndarray, cut: Cutout,
                        peaks: int = TEMPLATE_PEAKS) -> list[np.ndarray]:
    """Similarities (cropped cut-out -> canvas px) from masked multi-scale
    TM_CCOEFF_NORMED on a grey canvas of `TEMPLATE_LONG_SIDE` px; the product's long side is
    searched from 8 % to 100 % of the canvas's long side in steps of x1.15. A template whose
    mask would hold fewer than `MIN_TEMPLATE_PIXELS` pixels there (a small or thin product:
    a few dozen pixels correlate at 0.95 with some spot of any busy image) is matched on the
    `FINE_LONG_SIDE` canvas instead, or skipped if still too small. One peak per scale;
    returned: those `_chosen_peaks` picks, best first, each re-placed on the finer canvas
    (`_finer`: unturned, and turned by 10 deg when that fits clearly better).
    `placement_ambiguity` is measured against those rivals."""
    work, to_work = geo.resize_to_long_side(generated, 512, cv2.INTER_LINEAR)
    gray_work = _gray(work)
    grids = []
    for side in (TEMPLATE_LONG_SIDE, FINE_LONG_SIDE):
        canvas, to_canvas = geo.resize_to_long_side(gray_work, side)
        grids.append((canvas.astype(np.float32), geo.compose(to_canvas, to_work)))
    (coarse, to_coarse), (fine, to_fine) = grids
    factor = max(fine.shape) / max(coarse.shape)
    gray_cut = _gray(cut.rgb)
    found: list[tuple[float, float, tuple[float, float], np.ndarray]] = []
    size = 0.08 * max(coarse.shape)
    while size <= max(coarse.shape):
        match = _match(coarse, gray_cut, cut.mask, size)
        if match is not None:
            found.append((match[0], size, match[1], geo.compose(geo.invert(to_coarse), match[2])))
        elif factor > 1 and (match := _match(fine, gray_cut, cut.mask, size * factor)) is not None:
            centre = ((match[1][0] + 0.5) / factor - 0.5, (match[1][1] + 0.5) / factor - 0.5)
            found.append((match[0], size, centre, geo.compose(geo.invert(to_fine), match[2])))
        size *= 1.15
    chosen = _chosen_peaks(found, peaks, 0.08 * max(coarse.shape), max(coarse.shape))
    # The coarse grid's scale steps (x1.15) and pixels are too coarse a start for ECC on thin
    # or smooth products; each peak is re-placed on the finer canvas first.
    out = []
    for _, size, centre, matrix in chosen:
        finer = _finer(fine, gray_cut, cut.mask, size * factor,
                       ((centre[0] + 0.5) * factor - 0.5, (centre[1] + 0.5) * factor - 0.5))
        out.extend([geo.compose(geo.invert(to_fine), fit) for fit in finer] or [matrix])
    return out
