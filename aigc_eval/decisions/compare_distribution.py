"""The distribution distance between two scored runs' images (`main.py --compare A.csv B.csv`):
KID on torchvision Inception's pool features (which every `--reference` run caches, whatever its
`--fid-features`) and CMMD on the CLIP image embeddings, read back from the score cache where a run
with `--reference` left them; no model runs here.

Each run's ok rows are matched to their image content through the download cache (URLs) or the
files themselves (local paths, relative to the CSV's folder); a run whose images or features are
not in the cache is reported as such, not guessed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from aigc_eval import columns as col
from aigc_eval.io.csv_io import read_rows
from aigc_eval.io.image_fetch import FetchConfig, ImageCache, content_digest
from aigc_eval.scoring.distribution import (
    BACKBONE_CLIP,
    BACKBONE_INCEPTION,
    KEY_CMMD,
    KEY_KID_MEAN,
    KEY_KID_STD,
    compare_features,
)
from aigc_eval.scoring.score_cache import open_cache

POOL_DIMS = 2048  # the cached Inception vectors are the logits followed by these pool features
KINDS = {BACKBONE_INCEPTION: "inception_logits_pool", BACKBONE_CLIP: "clip_image"}


def image_digests(path: Path, id_col: str, image_col: str, cache_dir: Path) -> list[str]:
    """The content digests of a scored run's ok images that can be known without fetching them."""
    header, rows = read_rows(path, [id_col])
    if image_col not in header:  # a scored CSV without its images: nothing to look up
        return []
    images = ImageCache(cache_dir)
    digests = []
    for row in rows:
        if row.get(col.STATUS, col.STATUS_OK) != col.STATUS_OK:
            continue
        source = row[image_col].strip()
        if source.lower().startswith(("http://", "https://")):
            cached = images.get(source)
            if cached is not None:
                digests.append(cached[1])
        else:
            local = Path(source).expanduser()
            local = local if local.is_absolute() else path.parent / local
            if local.is_file():
                digests.append(content_digest(local.read_bytes()))
    return digests


def _features(found: dict[str, dict[str, object]], digests: list[str], kind: str) -> np.ndarray | None:
    """The vectors of `digests` under the model key that has the most of them (one model per run)."""
    if not found:
        return None
    counts = Counter({key: sum(d in vectors for d in digests) for key, vectors in found.items()})
    key, hits = counts.most_common(1)[0]
    if hits < 2:
        return None
    vectors = [found[key][d].double().numpy() for d in digests if d in found[key]]
    array = np.stack(vectors)
    return array[:, -POOL_DIMS:] if kind == KINDS[BACKBONE_INCEPTION] else array


def compare_run_images(path_a: Path, path_b: Path, id_col: str, image_col: str,
                       fetch: FetchConfig) -> dict[str, object] | None:
    """KID (mean, std) and CMMD between runs A and B, with their sizes; None when the cache is off
    or lacks the features (a run scored without --reference keeps no pool features)."""
    cache = open_cache(fetch.cache_dir)
    if cache is None or fetch.cache_dir is None:
        return None
    sides = [image_digests(path, id_col, image_col, fetch.cache_dir) for path in (path_a, path_b)]
    arrays: list[dict[str, np.ndarray]] = [{}, {}]
    for backbone, kind in KINDS.items():
        for side, digests in enumerate(sides):
            array = _features(cache.find(kind, digests), digests, kind)
            if array is not None:
                arrays[side][backbone] = array
    cache.close()
    if not any(b in arrays[0] and b in arrays[1] for b in KINDS):
        return None
    result = compare_features(arrays[0], arrays[1])
    return {key: result.get(key) for key in (KEY_KID_MEAN, KEY_KID_STD, KEY_CMMD, "n_generated", "n_reference", "warning")}


def format_run_distance(result: dict[str, object] | None, name_a: str, name_b: str) -> str:
    """One line for stderr."""
    if result is None:
        return (f"no distribution distance between {name_a} and {name_b}: their images' features are not in the "
                "score cache (score both with --reference to keep them)")
    def num(key: str) -> str:
        value = result.get(key)
        return "n/a" if value is None else f"{value:.4f}"
    return (f"distance between the runs' images: KID (torchvision Inception) {num(KEY_KID_MEAN)} ± {num(KEY_KID_STD)}, CMMD {num(KEY_CMMD)} "
            f"({result.get('n_generated')} / {result.get('n_reference')} images)"
            + (f"; warning: {result['warning']}" if result.get("warning") else ""))
