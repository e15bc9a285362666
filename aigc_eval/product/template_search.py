"""The locator's last resort: masked multi-scale template matching of the cut-out's grey levels.

Features (ORB, SIFT) fail on smooth or thin products; a template has no keypoints to lose. The
peaks found here carry no geometric verification, so `locate` ECC-refines each one and asks more
of it than of a feature fit: a higher correlation (`min_template_confidence`) and agreement tile by
tile (`tile_agreement`). Templates may hang over the frame's edge (`visible_ncc`), so a product
cut off by the frame is placed where it is, not shrunk to fit inside."""

from __future__ import annotations

import math

import cv2
import numpy as np

from . import geometry as geo
from .cutout import Cutout

TEMPLATE_LONG_SIDE = 128   # the canvas's long side (px) on which templates are matched
MIN_TEMPLATE_PIXELS = 150  # a masked correlation over fewer pixels fits almost anything
TEMPLATE_PEAKS = 3         # best peaks handed to `locate` (beside each size third's best)
PEAKS_PER_THIRD = 2        # ... and the best distinct peaks of each third of the sizes (1 until
                           # session 21: a thin, smooth product's own peak is often not its
                           # third's best; thin-silhouette dev set placed 5/20 with 1, 13 with 2)
FINE_LONG_SIDE = 256       # each peak is re-placed on this finer canvas before ECC
FINE_STEPS = 5             # ... over scales x1.03^-5 .. x1.03^5 around the peak's
FINE_ANGLES = (-10.0, 10.0)  # ... and these turns (deg): ECC converges from within ~9 deg
FINE_TURN_GAIN = 0.05      # ... a turned fit is verified too when it correlates this much better,
FINE_TURN_RESIDUAL = 0.5   # ... or leaves at most this share of the unturned fit's 1 - r
FRAME_PAD = 0.45           # a template may hang this share of its size over the frame's edge
                           # (0.3 until session 22: thin decals with their legs cut off,
                           # 20-26 % of their area, named cut off in 4 of 24 dev cases, 11 now)
MIN_VISIBLE = 0.7          # ... keeping at least this share of its mask inside the frame
EDGE_PEAKS = 1             # ... over its edge: the best of each size third, and this many - 1 others


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


def _box_sums(maps: np.ndarray, box: tuple[int, int, int, int],
              out_shape: tuple[int, int]) -> np.ndarray:
    """At every offset (y, x) of a template over an image, the sums of the template's `maps`
    (h, w, k) over the template pixels that land inside `box` (x0, y0, x1, y1) of the image:
    the TM_CCORR of the box's indicator with each map, from a summed-area table; (H, W, k)."""
    table = cv2.integral(maps, sdepth=cv2.CV_64F).reshape(maps.shape[0] + 1, maps.shape[1] + 1, -1)
    th, tw = maps.shape[:2]
    x0, y0, x1, y1 = box
    xs, ys = np.arange(out_shape[1]), np.arange(out_shape[0])
    rows = table[np.clip(y1 - ys, 0, th)] - table[np.clip(y0 - ys, 0, th)]  # (H, w + 1, k)
    return (np.take(rows, np.clip(x1 - xs, 0, tw), axis=1)
            - np.take(rows, np.clip(x0 - xs, 0, tw), axis=1))


def visible_ncc(image: np.ndarray, box: tuple[int, int, int, int], templ: np.ndarray,
                weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masked TM_CCOEFF_NORMED of `templ` (weights `weights`) over `image` at every offset, as
    cv2.matchTemplate computes it with a mask, but counting only the template pixels that land
    inside `box` (x0, y0, x1, y1; the frame, the rest of `image` being padding, which must be
    0); and the share of the template's weight that lands inside. float32 arrays; where the
    image is flat under the template (spread under 0.5 grey levels) the score is -1."""
    weights = weights.astype(np.float32)
    templ = templ.astype(np.float32)
    templ = templ - float((templ * weights).sum() / weights.sum())  # less cancellation below
    s_i, s_ii, s_ti = (np.asarray(cv2.matchTemplate(a, b, cv2.TM_CCORR), np.float64)
                       for a, b in ((image, weights), (image * image, weights),
                                    (image, weights * templ)))
    maps = np.dstack([weights, weights * templ, weights * templ * templ]).astype(np.float64)
    if box == (0, 0, image.shape[1], image.shape[0]):  # no padding: the same at every offset
        n, s_t, s_tt = maps.sum(axis=(0, 1))
    else:
        n, s_t, s_tt = np.moveaxis(_box_sums(maps, box, s_i.shape), -1, 0)
    count = np.maximum(n, 1.0)
    var_t = s_tt - s_t * s_t / count
    var_i = s_ii - s_i * s_i / count
    score = (s_ti - s_t * s_i / count) / np.sqrt(np.maximum(var_t * var_i, 1e-12))
    score[(var_i < 0.25 * count) | (var_t <= 0)] = -1.0
    return score, np.broadcast_to(n / float(weights.sum()), score.shape)


def _match(canvas: np.ndarray, gray_cut: np.ndarray, mask: np.ndarray, size: float,
           window: tuple[int, int, int, int] | None = None, angle: float = 0.0,
           over_edge: bool = False):
    """(score, centre, template -> canvas matrix) of the best placement of the grey cut-out
    resized so its long side is `size` and turned by `angle` degrees, inside `window` (x0, y0,
    x1, y1) of the canvas or anywhere; None when the template is too small or larger than the
    canvas or window. With `over_edge`, the best placement whose template hangs over the
    frame's edge instead: by up to `FRAME_PAD` of its size, with `MIN_VISIBLE` of its mask
    left inside (`visible_ncc`), so that a product cut off by the frame can be placed where
    it is rather than shrunk to fit inside."""
    templ, to_templ = geo.resize_by(gray_cut, size / max(mask.shape))
    templ_mask = cv2.resize(mask.astype(np.uint8), templ.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    if angle:
        templ, templ_mask, turn = _turned(templ, templ_mask, angle)
        to_templ = geo.compose(turn, to_templ)
    if (templ.shape[0] > canvas.shape[0] or templ.shape[1] > canvas.shape[1]
            or int(templ_mask.sum()) < MIN_TEMPLATE_PIXELS):
        return None
    pad_x, pad_y = ((math.ceil(FRAME_PAD * side) for side in templ.shape[1::-1]) if over_edge
                    else (0, 0))
    x0, y0, x1, y1 = window or (-pad_x, -pad_y, canvas.shape[1] + pad_x, canvas.shape[0] + pad_y)
    x0, y0 = max(x0, -pad_x), max(y0, -pad_y)
    x1, y1 = min(x1, canvas.shape[1] + pad_x), min(y1, canvas.shape[0] + pad_y)
    if templ.shape[0] > y1 - y0 or templ.shape[1] > x1 - x0:
        return None
    if not over_edge:
        scores = cv2.matchTemplate(canvas[y0:y1, x0:x1], templ.astype(np.float32),
                                   cv2.TM_CCOEFF_NORMED, mask=templ_mask)
        scores = np.nan_to_num(scores, nan=-1.0, posinf=-1.0, neginf=-1.0)
    else:
        inside = (max(0, x0), max(0, y0), min(canvas.shape[1], x1), min(canvas.shape[0], y1))
        crop = canvas[inside[1]:inside[3], inside[0]:inside[2]]
        crop = crop - float(crop.mean())  # less cancellation in visible_ncc's sums
        border = (inside[1] - y0, y1 - inside[3], inside[0] - x0, x1 - inside[2])
        image = cv2.copyMakeBorder(crop, *border, cv2.BORDER_CONSTANT, value=0)
        frame = (border[2], border[0], border[2] + crop.shape[1], border[0] + crop.shape[0])
        scores, share = visible_ncc(image, frame, templ, templ_mask)
        scores = np.where((share >= MIN_VISIBLE) & (share < 1.0 - 1e-6), scores, -1.0)
        if float(scores.max()) <= -1.0:
            return None
    _, value, _, loc = cv2.minMaxLoc(scores.astype(np.float32))
    x, y = loc[0] + x0, loc[1] + y0
    centre = (x + templ.shape[1] / 2.0, y + templ.shape[0] / 2.0)
    return value, centre, geo.compose(geo.translation(x, y), to_templ)


def _finer(canvas: np.ndarray, gray_cut: np.ndarray, mask: np.ndarray, size: float,
           centre: tuple[float, float], over_edge: bool = False) -> list[np.ndarray]:
    """The coarse peak (product long side `size` at `centre`, in `canvas` px) re-placed on the
    finer `canvas`: scales within x1.03^±FINE_STEPS, positions within 15 % of the product's
    size (+4 px) of the coarse one. Returned: the template -> canvas matrix of the best
    unturned fit, then that of the best fit turned by one of `FINE_ANGLES` when it correlates
    better by `FINE_TURN_GAIN` or leaves at most `FINE_TURN_RESIDUAL` of the unturned fit's
    1 - r (a product whose grey levels barely change when turned, such as a colour wheel).
    Both are verified by `locate`, so a turn can add a placement but not lose one; at wrong
    spots a turn gains 0-0.06, at a turned product 0.09-0.47.
    The coarse search has no rotation (each turn there would add its own chance peaks); a
    turn is tried only where the unturned template peaked, so that ECC, which converges from
    within about 9 deg, also starts near a product turned by up to 15 deg. With `over_edge`,
    a peak hanging over the frame's edge is re-placed among such placements (`_match`)."""
    def best_of(steps, angle: float):
        best = None
        for step in steps:
            here = size * 1.03 ** step
            reach = 0.15 * size + 4
            turned_long = here * (abs(math.cos(math.radians(angle)))
                                  + abs(math.sin(math.radians(angle))))
            half_w = turned_long * mask.shape[1] / max(mask.shape) / 2 + reach
            half_h = turned_long * mask.shape[0] / max(mask.shape) / 2 + reach
            # `_match` clips the window to the frame, or to the frame's padding over_edge.
            window = (math.floor(centre[0] - half_w), math.floor(centre[1] - half_h),
                      math.ceil(centre[0] + half_w) + 1, math.ceil(centre[1] + half_h) + 1)
            found = _match(canvas, gray_cut, mask, here, window, angle, over_edge)
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
    # Near r = 1 a turn cannot gain 0.05; halving what the unturned fit leaves counts as much.
    if turned is None or turned[0] < score + min(FINE_TURN_GAIN, FINE_TURN_RESIDUAL * (1 - score)):
        return [matrix]
    return [matrix, turned[2]]


def _chosen_peaks(found: list[tuple], peaks: int, smallest: float, largest: float) -> list[tuple]:
    """The peaks to verify: the `PEAKS_PER_THIRD` best of each third of the searched sizes (on a
    log scale), then up to `peaks` - 1 of the best others, each clearly different from those
    before (`_distinct`); best first. A masked correlation is higher by chance the fewer pixels a
    template has, so the small sizes' peaks outrank the product's own at its size: without the
    thirds, the three best peaks of a textureless product could all be small spots."""
    ranked = sorted(found, key=lambda peak: -peak[0])
    edges = [smallest * (largest / smallest) ** (k / 3) for k in (1, 2)]
    band = [sum(peak[1] >= edge for edge in edges) for peak in ranked]
    chosen: list[tuple] = []
    for third in range(3):
        for _ in range(PEAKS_PER_THIRD):
            best = next((p for p, b in zip(ranked, band) if b == third and _distinct(p, chosen)),
                        None)
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
    (`_finer`: unturned, and turned by 10 deg when that fits clearly better); then the
    `EDGE_PEAKS` best distinct placements whose template hangs over the frame's edge (by up
    to `FRAME_PAD` of its size, `MIN_VISIBLE` of its mask inside), re-placed the same way.
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

    def peaks_of(over_edge: bool) -> list[tuple]:
        """One peak per searched size: (score, size, coarse centre, cut-out -> work matrix)."""
        found = []
        size = 0.08 * max(coarse.shape)
        while size <= max(coarse.shape):
            match = _match(coarse, gray_cut, cut.mask, size, over_edge=over_edge)
            if match is not None:
                found.append((match[0], size, match[1],
                              geo.compose(geo.invert(to_coarse), match[2])))
            elif factor > 1 and (match := _match(fine, gray_cut, cut.mask, size * factor,
                                                 over_edge=over_edge)) is not None:
                centre = ((match[1][0] + 0.5) / factor - 0.5, (match[1][1] + 0.5) / factor - 0.5)
                found.append((match[0], size, centre, geo.compose(geo.invert(to_fine), match[2])))
            size *= 1.15
        return found

    chosen = [(peak, False) for peak in
              _chosen_peaks(peaks_of(False), peaks, 0.08 * max(coarse.shape), max(coarse.shape))]
    # Placements over the frame's edge are extra candidates: they do not displace the ones
    # inside it, whose chance peaks they would outnumber (every edge offers its own).
    chosen += [(peak, True) for peak in _chosen_peaks(
        peaks_of(True), EDGE_PEAKS, 0.08 * max(coarse.shape), max(coarse.shape))]
    # The coarse grid's scale steps (x1.15) and pixels are too coarse a start for ECC on thin
    # or smooth products; each peak is re-placed on the finer canvas first.
    out = []
    for (_, size, centre, matrix), over_edge in chosen:
        finer = _finer(fine, gray_cut, cut.mask, size * factor,
                       ((centre[0] + 0.5) * factor - 0.5, (centre[1] + 0.5) * factor - 0.5),
                       over_edge)
        out.extend([geo.compose(geo.invert(to_fine), fit) for fit in finer] or [matrix])
    return out
