"""Distances between a generated image set and a reference set: FID, KID and CMMD.

Pure maths from (N, D) feature arrays to numbers; no models and no I/O. FID and KID follow
torch-fidelity 0.4.0 (``metric_fid.py``, ``metric_kid.py``, ``defaults.py``) step for step;
CMMD follows the paper's code (google-research ``cmmd/distance.py``). Everything runs in float64.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

KEY_FID = "fid"
KEY_KID_MEAN = "kid_mean"
KEY_KID_STD = "kid_std"
KEY_CMMD = "cmmd"
KEY_N_GENERATED = "n_generated"
KEY_N_REFERENCE = "n_reference"
KEY_WARNING = "warning"  # one line, "" when there is nothing to say
KEY_OVERALL = "overall"
BACKBONE_INCEPTION = "inception_pool"  # torchvision Inception pool features: FID and KID by default
BACKBONE_FIDELITY = "fidelity_inception_pool"  # torch-fidelity's TF-compatible Inception (--fid-features)
BACKBONE_CLIP = "clip"  # embeddings for CMMD

# torch-fidelity 0.4.0 defaults
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_DEGREE = 3
KID_GAMMA = None  # None means 1 / D
KID_COEF0 = 1.0
KID_SEED = 2020  # torch-fidelity's rng_seed
# the CMMD paper's _SIGMA and _SCALE
CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0

MIN_SAMPLES = 2  # below this, every metric raises
FID_MIN_RELIABLE = 2048  # Inception pool features are 2048-d
KID_MIN_RELIABLE = 50
CMMD_MIN_RELIABLE = 50
_CMMD_BLOCK = 2048  # rows per block of the kernel sums, to bound memory


def _features(name: str, x: object) -> np.ndarray:
    """x as float64 (N, D) with D >= 1 and every value finite, else ValueError naming `name`."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be a 2-D (images, dims) array with dims >= 1, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr).all(axis=1)))
        raise ValueError(f"{name} has NaN or infinite values in {bad} of {arr.shape[0]} rows")
    return arr


def _pair(metric: str, a: object, b: object, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as float64 (N, D), checked: finite, same D, at least MIN_SAMPLES rows each."""
    fa, fb = _features(names[0], a), _features(names[1], b)
    (na, da), (nb, db) = fa.shape, fb.shape
    if da != db:
        raise ValueError(f"{metric} needs the same feature dims on both sides, got {da} and {db}")
    if min(na, nb) < MIN_SAMPLES:
        raise ValueError(f"{metric} needs at least {MIN_SAMPLES} images on each side, got {na} and {nb}")
    return fa, fb


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two (N, D) feature sets, as torch-fidelity 0.4.0 computes it, in float64.

    mu = mean over rows; S = np.cov(rowvar=False) (unbiased, divides by N - 1);
    FID = ||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 * sum_i Re(sqrt(lambda_i)),
    where lambda_i are the eigenvalues of S_a @ S_b (np.linalg.eigvals, cast to complex128
    before the square root, so a rounding-negative eigenvalue adds 0, not NaN); the sum is
    Tr((S_a S_b)^{1/2}). pytorch-fid/TTUR's scipy.linalg.sqrtm route (with a 1e-6 diagonal
    offset when the product is singular) gives the same number where both are well defined;
    torch-fidelity 0.4.0 does not use it. Not clipped at 0: identical sets can give a tiny
    negative value. D = 1 is allowed (S is kept 2-D, where torch-fidelity would assert).

    With fewer images than dimensions on a side (the usual case per category: 2048-d features),
    the same trace comes from an N_a x N_b matrix instead of a D x D eigenproblem: with A, B the
    centred features divided by sqrt(N - 1), S_a S_b = A'A B'B has the nonzero eigenvalues of
    (AB')(AB')', so Tr((S_a S_b)^{1/2}) is the sum of the singular values of AB' (exact, and a
    2048 x 2048 eigvals takes seconds where this takes milliseconds).

    Raises ValueError for non-2-D input, NaN/inf, different D, or fewer than 2 rows a side.
    """
    fa, fb = _pair("FID", features_a, features_b, ("features_a", "features_b"))
    mu_a, mu_b = np.mean(fa, axis=0), np.mean(fb, axis=0)
    diff = mu_a - mu_b
    if min(len(fa), len(fb)) < fa.shape[1]:
        a = (fa - mu_a) / np.sqrt(len(fa) - 1)
        b = (fb - mu_b) / np.sqrt(len(fb) - 1)
        tr_covmean = np.linalg.svd(a @ b.T, compute_uv=False).sum()
        return float(diff.dot(diff) + np.sum(a * a) + np.sum(b * b) - 2 * tr_covmean)
    s_a = np.atleast_2d(np.cov(fa, rowvar=False))
    s_b = np.atleast_2d(np.cov(fb, rowvar=False))
    tr_covmean = np.sum(np.sqrt(np.linalg.eigvals(s_a.dot(s_b)).astype("complex128")).real)
    return float(diff.dot(diff) + np.trace(s_a) + np.trace(s_b) - 2 * tr_covmean)


def _kid_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    """torch-fidelity's mmd2(..., mmd_est="unbiased") on k(u, v) = (gamma u.v + coef0)^degree."""
    m = len(x)
    k_xx = (x @ x.T * gamma + coef0) ** degree
    k_yy = (y @ y.T * gamma + coef0) ** degree
    k_xy = (x @ y.T * gamma + coef0) ** degree
    kt_xx = (k_xx.sum(axis=1) - np.diagonal(k_xx)).sum()
    kt_yy = (k_yy.sum(axis=1) - np.diagonal(k_yy)).sum()
    return float((kt_xx + kt_yy) / (m * (m - 1)) - 2 * k_xy.sum(axis=0).sum() / (m * m))


def kernel_inception_distance(
    features_a: np.ndarray, features_b: np.ndarray, *, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
    degree: int = KID_DEGREE, gamma: float | None = KID_GAMMA, coef0: float = KID_COEF0, seed: int = KID_SEED,
) -> tuple[float, float]:  # fmt: skip
    """KID (mean, std) as torch-fidelity 0.4.0's kid_features_to_metric, in float64.

    rng = np.random.RandomState(seed); for each of `subsets` rounds, m rows of A then m rows
    of B are drawn with rng.choice(n, m, replace=False), and with k(u, v) = (gamma u.v + coef0)
    ** degree (gamma None -> 1 / D) the round's value is
    MMD^2 = sum_{i!=j} [k(a_i,a_j) + k(b_i,b_j)] / (m (m - 1)) - 2 sum_{i,j} k(a_i,b_j) / m^2
    (within-set sums drop the diagonal, the cross sum keeps it: torch-fidelity's "unbiased").
    Returns (np.mean, np.std with ddof 0) over rounds. Values slightly below 0 are valid.
    torch-fidelity computes in the input dtype (float32 from its extractors); we use float64,
    which on float32 features moves the mean by ~1e-7 and the std by up to ~1e-3 relative.

    Subset size: m = min(subset_size, N_a, N_b). torch-fidelity instead raises ValueError when
    either side has fewer than subset_size rows; we cap, so small sets still get a (noisier)
    number, and equal the library's result whenever both sides have >= subset_size rows.

    Raises ValueError for bad features (see frechet_distance), subsets < 1 or subset_size < 2.
    """
    fa, fb = _pair("KID", features_a, features_b, ("features_a", "features_b"))
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"KID needs subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(subset_size, len(fa), len(fb))
    g = 1.0 / fa.shape[1] if gamma is None else float(gamma)
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        xa = fa[rng.choice(len(fa), m, replace=False)]
        xb = fb[rng.choice(len(fb), m, replace=False)]
        mmds[i] = _kid_mmd2(xa, xb, degree, g, coef0)
    return float(np.mean(mmds)), float(np.std(mmds))


def _rbf_mean(x: np.ndarray, y: np.ndarray, gamma: float) -> float:
    """mean_{i,j} exp(-gamma (||x_i||^2 + ||y_j||^2 - 2 x_i.y_j)), summed in row blocks."""
    x_sq, y_sq = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
    total = 0.0
    for start in range(0, len(x), _CMMD_BLOCK):
        xs = x[start : start + _CMMD_BLOCK]
        d2 = -2 * xs @ y.T + x_sq[start : start + _CMMD_BLOCK, None] + y_sq[None, :]
        total += float(np.exp(-gamma * d2).sum())
    return total / (len(x) * len(y))


def cmmd(
    embeddings_a: np.ndarray, embeddings_b: np.ndarray, *, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE
) -> float:
    """CMMD (Jayasumana et al. 2024) between two (N, D) CLIP embedding sets, in float64.

    Each row is first L2-normalised here (the paper's CLIP model returns unit-norm embeddings,
    scenic's CLIP ``normalize=True``; its distance.mmd does not renormalise), so the result does
    not depend on the embeddings' scale. With k(u, v) = exp(-||u - v||^2 / (2 sigma^2)):
    CMMD = scale * (mean_{i,j} k(a_i,a_j) + mean_{i,j} k(b_i,b_j) - 2 mean_{i,j} k(a_i,b_j)),
    the biased (V-statistic, minimum-variance) MMD^2 of Gretton et al. 2012 Eq. 5, exactly as
    the reference: all means include the diagonal, so it is >= 0 (up to rounding) and exactly 0
    for identical sets. ||u - v||^2 is expanded as ||u||^2 + ||v||^2 - 2 u.v, like the
    reference; kernel sums run in blocks of 2048 rows (memory 2048 x N_other float64).

    Raises ValueError for bad features (see frechet_distance), a zero row, or sigma <= 0.
    """
    ea, eb = _pair("CMMD", embeddings_a, embeddings_b, ("embeddings_a", "embeddings_b"))
    if sigma <= 0:
        raise ValueError(f"CMMD needs sigma > 0, got {sigma}")
    norms = [np.linalg.norm(e, axis=1, keepdims=True) for e in (ea, eb)]
    for name, n in zip(("embeddings_a", "embeddings_b"), norms):
        if (n == 0).any():
            raise ValueError(f"{name} has {int((n == 0).sum())} all-zero rows, which cannot be L2-normalised")
    ea, eb = ea / norms[0], eb / norms[1]
    gamma = 1.0 / (2 * sigma**2)
    k_aa, k_bb, k_ab = _rbf_mean(ea, ea, gamma), _rbf_mean(eb, eb, gamma), _rbf_mean(ea, eb, gamma)
    return float(scale * (k_aa + k_bb - 2 * k_ab))


def size_warning(
    n_generated: int, n_reference: int, *, metrics: Iterable[str] = (KEY_FID, KEY_KID_MEAN, KEY_CMMD)
) -> str:
    """One line naming the sizes when either side is too small for `metrics`; "" otherwise.

    Fewer than MIN_SAMPLES (2) a side: nothing can be computed (the metric functions raise).
    FID below FID_MIN_RELIABLE (2048) a side: the covariance of N points has rank <= N - 1, so
    for 2048-d Inception pool features it is singular below 2049 points (2048 is the usual
    convention, pytorch-fid's), and FID is biased upward by O(1/N) for N up to several thousand,
    so it only compares runs of equal size. KID below KID_MIN_RELIABLE (50): unbiased, but its
    spread grows quickly at small N. CMMD below CMMD_MIN_RELIABLE (50): sample-efficient and
    nearly unbiased (the V-statistic's bias is O(1/N)), but noisy at a few dozen images.
    """
    small = min(n_generated, n_reference)
    sizes = f"{n_generated} generated and {n_reference} reference images"
    if small < MIN_SAMPLES:
        return f"cannot compute distances from {sizes}: need at least {MIN_SAMPLES} on each side"
    limits = {KEY_FID: ("FID", FID_MIN_RELIABLE), KEY_KID_MEAN: ("KID", KID_MIN_RELIABLE),
              KEY_CMMD: ("CMMD", CMMD_MIN_RELIABLE)}  # fmt: skip
    low = [f"{limits[m][0]} (<{limits[m][1]})" for m in metrics if m in limits and small < limits[m][1]]
    return f"small sample, {sizes}: unreliable {', '.join(low)}" if low else ""


def _rows(side: str, feats: Mapping[str, np.ndarray]) -> int:
    counts = {k: len(np.asarray(v)) for k, v in feats.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(f"{side} backbones disagree on the image count: {counts}")
    return next(iter(counts.values()), 0)


def _entry(n_gen: int, n_ref: int, warning: str) -> dict[str, object]:
    return {KEY_FID: None, KEY_KID_MEAN: None, KEY_KID_STD: None, KEY_CMMD: None,
            KEY_N_GENERATED: n_gen, KEY_N_REFERENCE: n_ref, KEY_WARNING: warning}  # fmt: skip


def compare_features(
    gen: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], *, fid_backbone: str = BACKBONE_INCEPTION,
    kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE, seed: int = KID_SEED,
) -> dict[str, object]:  # fmt: skip
    """FID, KID and CMMD of one generated set against one reference set.

    `gen` and `ref` map backbone -> (N, D) features: `fid_backbone` (BACKBONE_INCEPTION,
    "inception_pool", or BACKBONE_FIDELITY) gives FID and KID, BACKBONE_CLIP ("clip") gives
    CMMD; other backbones are ignored. Returns {fid, kid_mean, kid_std, cmmd,
    n_generated, n_reference, warning}; a metric whose backbone is missing on either side is
    None and the warning says so; the warning also carries size_warning for the computed ones.

    Raises ValueError when no backbone is on both sides, when one side's backbones differ in
    row count, or as the metric functions do (fewer than 2 rows, NaN, dims mismatch).
    """
    n_gen, n_ref = _rows("generated", gen), _rows("reference", ref)
    wanted = {fid_backbone, BACKBONE_CLIP}
    common = set(gen) & set(ref) & wanted
    if not common:
        raise ValueError(f"nothing to compare: generated has {sorted(gen)}, reference has {sorted(ref)}")
    out, notes, computed = _entry(n_gen, n_ref, ""), [], []
    if fid_backbone in common:
        a, b = gen[fid_backbone], ref[fid_backbone]
        out[KEY_FID] = frechet_distance(a, b)
        out[KEY_KID_MEAN], out[KEY_KID_STD] = kernel_inception_distance(
            a, b, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
        )
        computed += [KEY_FID, KEY_KID_MEAN]
    if BACKBONE_CLIP in common:
        out[KEY_CMMD] = cmmd(gen[BACKBONE_CLIP], ref[BACKBONE_CLIP])
        computed.append(KEY_CMMD)
    for backbone in sorted(wanted - common):
        sides = [s for s, f in (("generated", gen), ("reference", ref)) if backbone not in f]
        notes.append(f"no {backbone!r} features on the {' and '.join(sides)} side")
    notes.append(size_warning(n_gen, n_ref, metrics=computed))
    out[KEY_WARNING] = "; ".join(n for n in notes if n)
    return out


def compare_by_category(
    gen_feats: Mapping[str, np.ndarray], gen_categories: Sequence[str],
    ref_feats: Mapping[str, np.ndarray], ref_categories: Sequence[str], **options: Any,
) -> dict[str, dict[str, object]]:  # fmt: skip
    """compare_features overall and per category; `options` are passed on to it.

    `*_categories` give one label per feature row. Returns {"overall": ..., category: ...}
    with categories sorted. A category (or the whole set) with fewer than 2 images on either
    side, including one absent from a side, gets None metrics, its sizes and a warning
    instead of an error. Raises ValueError when a label list's length differs from its
    feature rows, when a category is named "overall", or as compare_features does.
    """
    sides = [(np.asarray([str(c) for c in gen_categories]), gen_feats),
             (np.asarray([str(c) for c in ref_categories]), ref_feats)]  # fmt: skip
    for side, (labels, feats) in zip(("generated", "reference"), sides):
        if len(labels) != _rows(side, feats):
            raise ValueError(f"{side} has {len(labels)} category labels for {_rows(side, feats)} feature rows")
    names = sorted({str(c) for labels, _ in sides for c in labels})
    if KEY_OVERALL in names:
        raise ValueError(f"category name {KEY_OVERALL!r} is reserved for the whole set")
    out: dict[str, dict[str, object]] = {}
    for name in [KEY_OVERALL, *names]:
        whole = name == KEY_OVERALL
        picked = [{k: v if whole else np.asarray(v)[lab == name] for k, v in f.items()} for lab, f in sides]
        n_gen, n_ref = (_rows(s, p) for s, p in zip(("generated", "reference"), picked))
        label = "all images" if whole else f"category {name!r}"
        if min(n_gen, n_ref) < MIN_SAMPLES:
            out[name] = _entry(n_gen, n_ref, f"{label}: {size_warning(n_gen, n_ref)}")
            continue
        out[name] = compare_features(picked[0], picked[1], **options)
        if out[name][KEY_WARNING]:
            out[name][KEY_WARNING] = f"{label}: {out[name][KEY_WARNING]}"
    return out
