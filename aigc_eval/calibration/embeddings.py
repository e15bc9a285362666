"""The optional head on embeddings (--embeddings CACHE_DIR): a linear probe on the score cache's
Chinese-CLIP image embedding and its element-wise product with the prompt's text embedding,
beside the terms. It costs no model pass: the vectors are read from <cache>/scores.sqlite, the
image by its content digest (from the download cache, or the local file), the text by the sha256
of the scored prompt.

The probe is an L2 logistic regression (C from the same grid, weights of any sign) judged by the
same grouped folds as the terms-only fit, on the rows that have both embeddings. It is kept only
when its out-of-fold ROC AUC beats the terms-only fit's on those rows by at least MARGIN.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from aigc_eval import columns as col
from aigc_eval.calibration import agreement as ag
from aigc_eval.calibration import fit as ft
from aigc_eval.calibration.dataset import Dataset
from aigc_eval.io.image_fetch import ImageCache, content_digest
from aigc_eval.scoring.score_cache import open_cache

MARGIN = 0.01  # out-of-fold ROC AUC the probe must add to be kept
PROBE_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)


def image_digest(source: str, images: ImageCache, base: Path) -> str | None:
    source = source.strip()
    if source.lower().startswith(("http://", "https://")):
        cached = images.get(source)
        return cached[1] if cached else None
    local = Path(source).expanduser()
    local = local if local.is_absolute() else base / local
    return content_digest(local.read_bytes()) if local.is_file() else None


def _best(found: dict[str, dict[str, object]], keys: list[str | None]) -> dict[str, object]:
    if not found:
        return {}
    counts = Counter({model: sum(k in vectors for k in keys if k) for model, vectors in found.items()})
    return found[counts.most_common(1)[0][0]]


def embedding_matrix(data: Dataset, cache_dir: Path, base: Path) -> tuple[np.ndarray, np.ndarray]:
    """(features, has-both mask): per row the unit image embedding and image * text."""
    cache = open_cache(cache_dir)
    if cache is None:
        raise ValueError(f"{cache_dir}: no score cache there (scores.sqlite); score with its --cache-dir first")
    images = ImageCache(cache_dir)
    digests = [image_digest(r.get(col.IMAGE_URL, ""), images, base) for r in data.rows]
    texts = [hashlib.sha256(r.get(col.PROMPT, "").encode("utf-8")).hexdigest() for r in data.rows]
    image_vectors = _best(cache.find("clip_image", [d for d in digests if d]), digests)
    text_vectors = _best(cache.find("clip_text", texts), texts)
    cache.close()
    has = np.array([bool(d) and d in image_vectors and t in text_vectors for d, t in zip(digests, texts)])
    if not has.any():
        return np.zeros((len(data.ids), 0)), has
    dim = len(next(iter(image_vectors.values())))
    out = np.zeros((len(data.ids), 2 * dim))
    for i in np.nonzero(has)[0]:
        a = np.asarray(image_vectors[digests[i]], dtype=float)
        b = np.asarray(text_vectors[texts[i]], dtype=float)
        a, b = a / (np.linalg.norm(a) or 1.0), b / (np.linalg.norm(b) or 1.0)
        out[i] = np.concatenate([a, a * b])
    return out, has


def embedding_probe(data: Dataset, cache_dir: Path, fit, base: Path | None = None) -> dict[str, object]:
    """Fit and judge the probe; the figures (and, when kept, its parameters) for calibration.json."""
    features, has = embedding_matrix(data, Path(cache_dir), base or Path(cache_dir))
    result: dict[str, object] = {"rows": int(has.sum()), "margin": MARGIN, "kept": False}
    y = data.y[has]
    if not ft.enough_classes(y, 10):
        result["reason"] = "too few labelled rows with cached embeddings"
        return result
    terms = np.where(np.isnan(data.X), fit.model.global_model.fills, data.X)[has]
    design = np.hstack([terms, features[has]])
    folds = fit.cv.folds[has]
    best = None
    for C in PROBE_GRID:
        z = np.empty(len(y))
        for k in np.unique(folds):
            train = folds != k
            model = LogisticRegression(C=C, max_iter=2000).fit(design[train], y[train])
            z[~train] = model.decision_function(design[~train])
        loss = ft.log_loss(y, z)
        if best is None or loss < best[0]:
            best = (loss, C, z)
    _, C, z = best
    auc = ag.weighted_auc(y, z)
    terms_auc = ag.weighted_auc(y, fit.cv.z_oof[has])
    kept = bool(auc >= terms_auc + MARGIN)
    result.update({"auc": auc, "terms_auc": terms_auc, "C": C, "kept": kept})
    if kept:
        model = LogisticRegression(C=C, max_iter=2000).fit(design, y)
        result["head"] = {"intercept": float(model.intercept_[0]), "weights": [float(v) for v in model.coef_[0]],
                          "layout": "terms (filled) + unit image embedding + image*text"}
    return result
