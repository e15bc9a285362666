"""The order in which the page shows a run's images, and which images every labeler sees.

- `stratified` (the default): strata are category x score bin (quantile bins of total_score,
  plus one for rows without a score); the page takes one image from each stratum in turn, each
  stratum shuffled with a fixed seed, so the first labels already span every category and the
  whole score range.
- `uncertainty` (--calibration): images whose p_accept is nearest the threshold first; those
  without p_accept last, in file order.
- `input`: the file's order.

Pure functions of the rows and a seed: a restarted server computes the same order, which is what
lets it resume where each labeler was.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from typing import Sequence

STRATIFIED, UNCERTAINTY, INPUT = "stratified", "uncertainty", "input"
ORDERS = (STRATIFIED, UNCERTAINTY, INPUT)
DEFAULT_SEED = 0
DEFAULT_SCORE_BINS = 5


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def score_bins(scores: Sequence[float | None], bins: int) -> list[int]:
    """Each score's quantile bin, 0..bins-1, by the share of known scores below it (ties share a
    bin); -1 where there is no score."""
    known = sorted(s for s in scores if s is not None)
    return [-1 if s is None else min(bins - 1, bisect.bisect_left(known, s) * bins // len(known)) for s in scores]


def stratified_order(categories: Sequence[str], scores: Sequence[float | None], bins: int = DEFAULT_SCORE_BINS,
                     seed: int = DEFAULT_SEED) -> list[int]:
    """Row indices taking one from each (category, score bin) stratum in turn, each stratum and the
    order of the strata shuffled with `seed`."""
    rng = random.Random(seed)
    strata: dict[tuple[str, int], list[int]] = {}
    for index, key in enumerate(zip(categories, score_bins(scores, bins))):
        strata.setdefault(key, []).append(index)
    keys = sorted(strata)
    rng.shuffle(keys)
    for key in keys:
        rng.shuffle(strata[key])
    order: list[int] = []
    for depth in range(max((len(v) for v in strata.values()), default=0)):
        order += [strata[key][depth] for key in keys if depth < len(strata[key])]
    return order


def uncertainty_order(p_accept: Sequence[float | None], threshold: float) -> list[int]:
    """Row indices by |p_accept - threshold|, nearest first (ties in file order); rows without p_accept last."""
    known = [i for i, p in enumerate(p_accept) if p is not None]
    unknown = [i for i, p in enumerate(p_accept) if p is None]
    return sorted(known, key=lambda i: (abs(p_accept[i] - threshold), i)) + unknown


def in_overlap(image_id: str, overlap: float, seed: int = DEFAULT_SEED) -> bool:
    """Whether every labeler sees this image: a stable hash of (seed, id) below `overlap`, so the
    shared tenth is the same on every restart and independent of the order."""
    if overlap <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{image_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < overlap


def parse_number(text: str | None) -> float | None:
    """A CSV cell as a finite float, or None."""
    return _number(text)
