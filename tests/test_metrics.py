"""The pure maths: hand-checkable cases and agreement with torch-fidelity."""

import math

import pytest
import torch
from torch_fidelity.metric_isc import isc_features_to_metric

from aigc_eval import columns as col

from aigc_eval.scoring.metrics import (
    clip_score,
    inception_score,
    normalise_clip,
    normalise_kl,
    per_image_kl,
)


@pytest.mark.parametrize("n, classes, splits", [(100, 1000, 10), (37, 10, 3), (500, 1008, 10), (5, 4, 1)])
def test_inception_score_matches_torch_fidelity(n, classes, splits):
    logits = torch.randn(n, classes, generator=torch.Generator().manual_seed(n)) * 3
    ours = inception_score(logits, splits=splits)
    reference = isc_features_to_metric(logits, splits=splits, shuffle=True, rng_seed=2020)
    assert ours[0] == pytest.approx(reference["inception_score_mean"], abs=1e-6)
    assert ours[1] == pytest.approx(reference["inception_score_std"], abs=1e-6)


def test_inception_score_without_shuffle_matches_torch_fidelity():
    logits = torch.randn(40, 20, generator=torch.Generator().manual_seed(1))
    ours = inception_score(logits, splits=4, shuffle=False)
    reference = isc_features_to_metric(logits, splits=4, shuffle=False)
    assert ours == pytest.approx((reference["inception_score_mean"], reference["inception_score_std"]), abs=1e-6)


def test_uniform_predictions_give_one():
    mean, std = inception_score(torch.zeros(50, 1000), splits=5)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_confident_distinct_classes_give_number_of_classes():
    n = 8
    logits = torch.full((n, n), -30.0)
    logits[torch.arange(n), torch.arange(n)] = 30.0
    mean, std = inception_score(logits, splits=1)
    assert mean == pytest.approx(n, rel=1e-6)
    assert std == 0.0


def test_underflowing_probabilities_stay_finite_where_torch_fidelity_gives_nan():
    logits = torch.full((6, 3), -2000.0)
    logits[torch.arange(6), torch.arange(6) % 2] = 0.0  # class 2 has probability exactly 0 everywhere
    reference = isc_features_to_metric(logits, splits=1, shuffle=False)
    assert math.isnan(reference["inception_score_mean"])
    mean, _ = inception_score(logits, splits=1)
    assert mean == pytest.approx(2.0, rel=1e-9)  # two equally used classes, each image certain


def test_per_image_kl_is_the_log_of_one_split_inception_score():
    logits = torch.randn(30, 50, generator=torch.Generator().manual_seed(3)) * 2
    kl = per_image_kl(logits)
    assert kl.shape == (30,)
    assert (kl >= -1e-12).all()
    assert math.exp(kl.mean().item()) == pytest.approx(inception_score(logits, splits=1)[0], rel=1e-9)


def test_inception_score_rejects_bad_splits():
    with pytest.raises(ValueError, match="splits"):
        inception_score(torch.zeros(3, 10), splits=4)
    with pytest.raises(ValueError, match="shape"):
        inception_score(torch.zeros(10), splits=1)


def test_clip_score_is_cosine_similarity():
    image = torch.tensor([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0], [2.0, 0.0]])
    text = torch.tensor([[5.0, 0.0], [-3.0, -4.0], [1.0, -1.0], [1.0, math.sqrt(3.0)]], dtype=torch.float64)
    assert clip_score(image, text).tolist() == pytest.approx([1.0, -1.0, 0.0, 0.5], abs=1e-12)


def test_clip_score_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        clip_score(torch.zeros(2, 4), torch.zeros(3, 4))


def test_normalisation_and_weighting():
    assert normalise_clip(0.3) == pytest.approx(0.5)
    assert normalise_clip(-0.2) == 0.0
    assert normalise_clip(0.9) == 1.0
    assert normalise_kl(math.log(1000) / 2, 1000) == pytest.approx(0.5)
    assert normalise_kl(10.0, 1000) == 1.0

    from aigc_eval.metrics.base import MetricResult
    from aigc_eval.metrics.decide import check_weights_usable, decide, decision_settings
    from aigc_eval.metrics.registry import metric_templates

    metrics = metric_templates(["clip", "inception"])

    def total(clip_norm, is_norm, clip_w, is_w):
        results = {"clip": MetricResult("ok", "", {col.CLIP_SCORE: 0.5, col.CLIP_NORM: clip_norm}),
                   "inception": MetricResult("ok", "", {col.TOP1_CONFIDENCE: 0.5, col.IS_NORM: is_norm})}
        return decide(metrics, results, decision_settings(metrics, {"clip": clip_w, "inception": is_w})).total

    assert total(1.0, 0.0, 0.6, 0.4) == pytest.approx(0.6)
    assert total(0.5, 0.5, 3, 1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="negative"):
        decision_settings(metrics, {"clip": -0.1})
    with pytest.raises(ValueError, match="every weight is 0"):
        check_weights_usable(metrics, decision_settings(metrics, {"clip": 0, "inception": 0}))


def test_bootstrap_interval_brackets_the_score_and_narrows_with_more_images():
    from aigc_eval.scoring.metrics import inception_score_interval

    generator = torch.Generator().manual_seed(5)
    small = torch.randn(40, 20, generator=generator) * 3
    large = torch.randn(400, 20, generator=generator) * 3
    low, high = inception_score_interval(small, splits=1, resamples=300)
    assert low < inception_score(small, splits=1)[0] < high
    low_l, high_l = inception_score_interval(large, splits=1, resamples=300)
    assert high_l - low_l < high - low
    assert inception_score_interval(small, splits=1, resamples=50) == inception_score_interval(small, splits=1, resamples=50)
    uniform = inception_score_interval(torch.zeros(30, 10), splits=3, resamples=20)
    assert uniform == pytest.approx((1.0, 1.0))


@pytest.mark.parametrize("n, splits, resamples", [(40, 1, 30), (53, 10, 7), (300, 10, 200), (7, 3, 500)])
def test_bootstrap_interval_equals_scoring_each_drawn_set(n, splits, resamples):
    """The closed form gives what drawing the rows and running inception_score's chunking on them gives."""
    import numpy as np

    from aigc_eval.scoring.metrics import inception_score_interval

    logits = torch.randn(n, 50, generator=torch.Generator().manual_seed(n)) * 4
    rng = np.random.RandomState(11)
    means = [inception_score(logits[torch.from_numpy(rng.randint(0, n, n))], splits=splits, shuffle=False)[0]
             for _ in range(resamples)]
    expected = np.quantile(means, [0.05, 0.95])
    assert inception_score_interval(logits, splits, resamples, level=0.9, seed=11) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="splits <= images"):
        inception_score_interval(logits, splits=n + 1)
