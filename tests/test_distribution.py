"""FID, KID and CMMD maths: agreement with torch-fidelity, closed forms, the CMMD paper's formula,
error messages and the per-category report."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from aigc_eval.scoring import distribution as dist

try:
    from torch_fidelity import metric_fid, metric_kid
except ImportError:  # the test extra installs it; without it only the agreement tests skip
    metric_fid = metric_kid = None
needs_torch_fidelity = pytest.mark.skipif(metric_fid is None, reason="torch-fidelity is not installed")


def _features(seed: int, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d) + shift


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


# --- FID -------------------------------------------------------------------------------------


@needs_torch_fidelity
@pytest.mark.parametrize(("n_a", "n_b", "d", "shift"), [(300, 250, 32, 0.3), (80, 120, 64, 0.0), (50, 40, 8, 2.0)])
def test_fid_matches_torch_fidelity(n_a, n_b, d, shift):
    a, b = _features(1, n_a, d), _features(2, n_b, d, shift)
    stats = [metric_fid.fid_features_to_statistics(torch.from_numpy(x)) for x in (a, b)]
    expected = metric_fid.fid_statistics_to_metric(stats[0], stats[1], verbose=False)[metric_fid.KEY_METRIC_FID]
    assert _rel(dist.frechet_distance(a, b), expected) < 1e-6


@needs_torch_fidelity
def test_fid_float32_input_matches_torch_fidelity_on_float64_copy():
    a, b = _features(3, 200, 16).astype(np.float32), _features(4, 200, 16, 0.5).astype(np.float32)
    stats = [metric_fid.fid_features_to_statistics(torch.from_numpy(x.astype(np.float64))) for x in (a, b)]
    expected = metric_fid.fid_statistics_to_metric(stats[0], stats[1], verbose=False)[metric_fid.KEY_METRIC_FID]
    assert _rel(dist.frechet_distance(a, b), expected) < 1e-12


def test_fid_equals_closed_form_on_sample_statistics():
    rng = np.random.default_rng(5)
    cov_a = np.diag([1.0, 2.0, 0.5, 3.0])
    cov_b = np.array([[2, 0.5, 0, 0], [0.5, 1, 0, 0], [0, 0, 1, 0.2], [0, 0, 0.2, 1.5]])
    a = rng.multivariate_normal([0, 0, 0, 0], cov_a, size=500)
    b = rng.multivariate_normal([1, -1, 0.5, 0], cov_b, size=400)
    mu_a, mu_b, s_a, s_b = a.mean(0), b.mean(0), np.cov(a.T), np.cov(b.T)
    closed = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * scipy.linalg.sqrtm(s_a @ s_b).real)
    assert _rel(dist.frechet_distance(a, b), closed) < 1e-9


def test_fid_near_population_value_with_large_samples():
    rng = np.random.default_rng(6)
    cov_a, cov_b = np.diag([1.0, 4.0, 0.25]), np.diag([4.0, 1.0, 1.0])
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    population = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real)
    a = rng.multivariate_normal(mu_a, cov_a, size=40_000)
    b = rng.multivariate_normal(mu_b, cov_b, size=40_000)
    assert population == pytest.approx(7.25)  # by hand: |dmu|^2 5 + Tr 5.25 + Tr 6 - 2 * Tr diag(2, 2, 0.5)
    assert dist.frechet_distance(a, b) == pytest.approx(population, rel=0.02)


def test_fid_with_equal_covariance_is_squared_mean_difference():
    a = _features(7, 100, 6)
    delta = np.array([0.5, -1.0, 0.0, 2.0, 0.1, 0.0])
    assert dist.frechet_distance(a, a + delta) == pytest.approx(float(delta @ delta), rel=1e-9, abs=1e-9)
    assert abs(dist.frechet_distance(a, a)) < 1e-9


def test_fid_accepts_one_dimensional_features():
    a, b = np.array([[0.0], [1.0], [2.0]]), np.array([[1.0], [2.0], [3.0]])
    assert dist.frechet_distance(a, b) == pytest.approx(1.0)  # equal variances, means 1 apart


# --- KID -------------------------------------------------------------------------------------


@needs_torch_fidelity
@pytest.mark.parametrize(
    ("n_a", "n_b", "d", "size", "subsets", "shift"), [(120, 150, 16, 100, 20, 0.2), (60, 60, 8, 60, 5, 0.0)]
)
def test_kid_matches_torch_fidelity(n_a, n_b, d, size, subsets, shift):
    a, b = _features(8, n_a, d), _features(9, n_b, d, shift)
    expected = metric_kid.kid_features_to_metric(
        torch.from_numpy(a), torch.from_numpy(b), kid_subsets=subsets, kid_subset_size=size, verbose=False
    )
    mean, std = dist.kernel_inception_distance(a, b, subsets=subsets, subset_size=size)
    assert _rel(mean, expected[metric_kid.KEY_METRIC_KID_MEAN]) < 1e-6
    assert _rel(std, expected[metric_kid.KEY_METRIC_KID_STD]) < 1e-6


@needs_torch_fidelity
def test_kid_matches_torch_fidelity_with_other_kernel_and_seed():
    a, b = _features(10, 90, 12), _features(11, 80, 12, 0.4)
    kwargs = dict(kid_subsets=7, kid_subset_size=50, kid_kernel_poly_degree=2, kid_kernel_poly_gamma=0.3,
                  kid_kernel_poly_coef0=0.5, rng_seed=123, verbose=False)  # fmt: skip
    expected = metric_kid.kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), **kwargs)
    got = dist.kernel_inception_distance(a, b, subsets=7, subset_size=50, degree=2, gamma=0.3, coef0=0.5, seed=123)
    assert _rel(got[0], expected[metric_kid.KEY_METRIC_KID_MEAN]) < 1e-6
    assert _rel(got[1], expected[metric_kid.KEY_METRIC_KID_STD]) < 1e-6


@needs_torch_fidelity
def test_kid_caps_subset_size_where_torch_fidelity_raises():
    a, b = _features(12, 40, 8), _features(13, 70, 8, 0.3)
    with pytest.raises(ValueError):
        metric_kid.kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subset_size=100, verbose=False)
    capped = dist.kernel_inception_distance(a, b, subsets=5, subset_size=100)
    assert capped == dist.kernel_inception_distance(a, b, subsets=5, subset_size=40)
    assert all(np.isfinite(capped))


def test_kid_is_deterministic_and_seeded():
    a, b = _features(14, 50, 4), _features(15, 50, 4)
    assert dist.kernel_inception_distance(a, b, subsets=5, subset_size=20) == dist.kernel_inception_distance(
        a, b, subsets=5, subset_size=20
    )
    assert dist.kernel_inception_distance(a, b, subsets=5, subset_size=20, seed=1) != dist.kernel_inception_distance(
        a, b, subsets=5, subset_size=20, seed=2
    )


# --- CMMD ------------------------------------------------------------------------------------


def _cmmd_double_loop(x: np.ndarray, y: np.ndarray, sigma: float = 10.0, scale: float = 1000.0) -> float:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)

    def k_mean(p, q):
        return sum(np.exp(-np.sum((u - v) ** 2) / (2 * sigma**2)) for u in p for v in q) / (len(p) * len(q))

    return scale * (k_mean(x, x) + k_mean(y, y) - 2 * k_mean(x, y))


def test_cmmd_of_identical_sets_is_zero():
    x = _features(20, 30, 16)
    assert abs(dist.cmmd(x, x)) < 1e-12


def test_cmmd_matches_double_loop_of_paper_formula():
    x, y = _features(21, 6, 5), _features(22, 4, 5, 0.7)
    assert _rel(dist.cmmd(x, y), _cmmd_double_loop(x, y)) < 1e-9
    assert _rel(dist.cmmd(x, y, sigma=0.5, scale=1.0), _cmmd_double_loop(x, y, 0.5, 1.0)) < 1e-9


def test_cmmd_block_sums_match_unblocked(monkeypatch):
    x, y = _features(23, 25, 8), _features(24, 19, 8, 0.5)
    whole = dist.cmmd(x, y)
    monkeypatch.setattr(dist, "_CMMD_BLOCK", 4)
    assert _rel(dist.cmmd(x, y), whole) < 1e-9


def test_cmmd_rises_monotonically_with_shift():
    # a set against a shifted copy of itself: 0 at no shift, then strictly rising (two independent
    # samples would not do: their sampling noise can make a small shift lower the value)
    base = _features(25, 60, 16)
    direction = np.eye(16)[0]
    values = [dist.cmmd(base, base + t * direction) for t in (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert values[0] == 0.0
    assert all(lo < hi for lo, hi in zip(values, values[1:])), values


def test_cmmd_is_invariant_to_embedding_scale():
    x, y = _features(27, 20, 8), _features(28, 30, 8, 0.3)
    assert _rel(dist.cmmd(3.0 * x, 0.01 * y), dist.cmmd(x, y)) < 1e-9


def test_cmmd_rejects_zero_rows_and_bad_sigma():
    x = _features(29, 5, 4)
    with pytest.raises(ValueError, match="embeddings_b has 1 all-zero rows"):
        dist.cmmd(x, np.vstack([x, np.zeros((1, 4))]))
    with pytest.raises(ValueError, match="sigma > 0, got 0"):
        dist.cmmd(x, x, sigma=0)


# --- errors ----------------------------------------------------------------------------------

METRICS = [
    ("FID", dist.frechet_distance),
    ("KID", dist.kernel_inception_distance),
    ("CMMD", dist.cmmd),
]


@pytest.mark.parametrize(("name", "fn"), METRICS)
def test_fewer_than_two_images_is_an_error(name, fn):
    with pytest.raises(ValueError, match=f"^{name} needs at least 2 images on each side, got 1 and 40$"):
        fn(_features(30, 1, 4), _features(31, 40, 4))


@pytest.mark.parametrize(("name", "fn"), METRICS)
def test_mismatched_dims_is_an_error(name, fn):
    with pytest.raises(ValueError, match=f"^{name} needs the same feature dims on both sides, got 4 and 5$"):
        fn(_features(32, 10, 4), _features(33, 10, 5))


@pytest.mark.parametrize(("name", "fn"), METRICS)
def test_nan_is_an_error(name, fn):
    bad = _features(34, 10, 4)
    bad[3, 1] = np.nan
    bad[7, 0] = np.inf
    with pytest.raises(ValueError, match="has NaN or infinite values in 2 of 10 rows"):
        fn(_features(35, 10, 4), bad)


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4), (5, 0)])
def test_non_matrix_input_is_an_error(shape):
    with pytest.raises(ValueError, match=r"features_a must be a 2-D \(images, dims\) array"):
        dist.frechet_distance(np.ones(shape), np.ones((5, 3)))


def test_kid_rejects_bad_subset_settings():
    with pytest.raises(ValueError, match="subsets >= 1 and subset_size >= 2, got 0 and 1000"):
        dist.kernel_inception_distance(_features(36, 5, 3), _features(37, 5, 3), subsets=0)


# --- warnings and reports --------------------------------------------------------------------


def test_size_warning_thresholds():
    assert dist.size_warning(5000, 3000) == ""
    assert dist.size_warning(1, 40) == (
        "cannot compute distances from 1 generated and 40 reference images: need at least 2 on each side"
    )
    assert dist.size_warning(300, 5000) == (
        "small sample, 300 generated and 5000 reference images: unreliable FID (<2048)"
    )
    assert dist.size_warning(30, 5000) == (
        "small sample, 30 generated and 5000 reference images: unreliable FID (<2048), KID (<50), CMMD (<50)"
    )
    assert dist.size_warning(300, 5000, metrics=[dist.KEY_CMMD]) == ""


def test_compare_features_keys_and_values():
    gen = {"inception_pool": _features(40, 60, 8), "clip": _features(41, 60, 6)}
    ref = {"inception_pool": _features(42, 70, 8, 0.2), "clip": _features(43, 70, 6, 0.2)}
    out = dist.compare_features(gen, ref, kid_subsets=5, kid_subset_size=30)
    assert set(out) == {"fid", "kid_mean", "kid_std", "cmmd", "n_generated", "n_reference", "warning"}
    assert out["fid"] == dist.frechet_distance(gen["inception_pool"], ref["inception_pool"])
    assert (out["kid_mean"], out["kid_std"]) == dist.kernel_inception_distance(
        gen["inception_pool"], ref["inception_pool"], subsets=5, subset_size=30
    )
    assert out["cmmd"] == dist.cmmd(gen["clip"], ref["clip"])
    assert (out["n_generated"], out["n_reference"]) == (60, 70)
    assert out["warning"] == "small sample, 60 generated and 70 reference images: unreliable FID (<2048)"


def test_compare_features_with_a_missing_backbone():
    ref = {"clip": _features(45, 90, 6), "inception_pool": _features(46, 90, 4)}
    out = dist.compare_features({"clip": _features(44, 80, 6)}, ref)
    assert out["fid"] is None and out["kid_mean"] is None and out["cmmd"] is not None
    assert out["warning"] == "no 'inception_pool' features on the generated side"
    with pytest.raises(ValueError, match="nothing to compare"):
        dist.compare_features({"clip": _features(47, 5, 3)}, {"inception_pool": _features(48, 5, 3)})
    with pytest.raises(ValueError, match="generated backbones disagree on the image count"):
        gen = {"clip": _features(49, 5, 3), "inception_pool": _features(50, 6, 3)}
        dist.compare_features(gen, {"clip": _features(51, 5, 3)})


def test_compare_by_category_reports_sizes_and_one_sided_category():
    gen = {"inception_pool": _features(60, 70, 8), "clip": _features(61, 70, 6)}
    ref = {"inception_pool": _features(62, 90, 8, 0.1), "clip": _features(63, 90, 6, 0.1)}
    gen_cats = ["shoes"] * 40 + ["bags"] * 30
    ref_cats = ["shoes"] * 50 + ["hats"] * 40
    out = dist.compare_by_category(gen, gen_cats, ref, ref_cats, kid_subsets=3, kid_subset_size=20)
    assert list(out) == ["overall", "bags", "hats", "shoes"]
    assert (out["overall"]["n_generated"], out["overall"]["n_reference"]) == (70, 90)
    assert out["overall"]["fid"] == dist.frechet_distance(gen["inception_pool"], ref["inception_pool"])
    assert out["overall"]["warning"].startswith("all images: small sample, 70 generated and 90 reference")
    shoes = out["shoes"]
    assert (shoes["n_generated"], shoes["n_reference"]) == (40, 50)
    assert shoes["cmmd"] == dist.cmmd(gen["clip"][:40], ref["clip"][:50])
    assert shoes["warning"] == (
        "category 'shoes': small sample, 40 generated and 50 reference images: "
        "unreliable FID (<2048), KID (<50), CMMD (<50)"
    )
    for name, sizes in (("bags", (30, 0)), ("hats", (0, 40))):
        entry = out[name]
        assert (entry["n_generated"], entry["n_reference"]) == sizes
        assert entry["fid"] is None and entry["kid_mean"] is None and entry["cmmd"] is None
        assert entry["warning"] == (
            f"category {name!r}: cannot compute distances from {sizes[0]} generated and {sizes[1]} reference images: "
            "need at least 2 on each side"
        )


def test_compare_by_category_rejects_bad_labels():
    gen, ref = {"clip": _features(64, 6, 3)}, {"clip": _features(65, 6, 3)}
    with pytest.raises(ValueError, match="generated has 5 category labels for 6 feature rows"):
        dist.compare_by_category(gen, ["a"] * 5, ref, ["a"] * 6)
    with pytest.raises(ValueError, match="'overall' is reserved"):
        dist.compare_by_category(gen, ["overall"] * 6, ref, ["a"] * 6)
