"""Pure metric maths: embeddings to CLIPScore, logits to Inception Score, scores to 0..1 terms.

No model loading and no I/O here; every function states the exact definition it computes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

IS_SHUFFLE_SEED = 2020  # torch-fidelity's default rng_seed
DEFAULT_IS_SPLITS = 10
DEFAULT_CLIP_CEILING = 0.6  # the article: cosine scores concentrate in 0..0.6


def clip_score(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """CLIPScore as the article uses it: cos(image_i, text_i) for each row i.

    Both inputs are (N, D); each row is L2-normalised in float64 before the dot product,
    so the result lies in -1..1. This is neither Hessel et al.'s 2.5 * max(cos, 0) nor
    torchmetrics' 100 * cos: multiply by those factors to compare.
    """
    if image_emb.shape != text_emb.shape or image_emb.dim() != 2:
        raise ValueError(
            f"expected two (N, D) embeddings of the same shape, got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    image = torch.nn.functional.normalize(image_emb.double(), dim=1)
    text = torch.nn.functional.normalize(text_emb.double(), dim=1)
    return (image * text).sum(dim=1)


def _log_marginal(log_p: torch.Tensor) -> torch.Tensor:
    """log of the mean of exp(log_p) over rows, without leaving log space."""
    return torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])


def _mean_kl(log_p: torch.Tensor) -> torch.Tensor:
    """Per-row KL(p || mean p) for one chunk of log-probabilities."""
    kl = log_p.exp() * (log_p - _log_marginal(log_p))
    return kl.sum(dim=1)


def _is_from_log_p(log_p: torch.Tensor, splits: int) -> list[float]:
    n = log_p.shape[0]
    return [_mean_kl(log_p[i * n // splits : (i + 1) * n // splits]).mean().exp().item() for i in range(splits)]


def inception_score(
    logits: torch.Tensor, splits: int = DEFAULT_IS_SPLITS, shuffle: bool = True, seed: int = IS_SHUFFLE_SEED
) -> tuple[float, float]:
    """Inception Score of (N, C) logits, exactly as torch_fidelity.metric_isc defines it.

    Rows are permuted with numpy.random.RandomState(seed).permutation(N) when `shuffle`,
    cast to float64 and cut into `splits` chunks [i*N//splits, (i+1)*N//splits). For each
    chunk, IS_k = exp(mean_i KL(p(y|x_i) || p_k(y))) with p_k the chunk's mean prediction.
    Returns (mean of IS_k, population std of IS_k). Computed from log-softmax, so
    probabilities that underflow to 0 give a finite score where torch-fidelity gives NaN.
    """
    if logits.dim() != 2:
        raise ValueError(f"expected logits of shape (N, C), got {tuple(logits.shape)}")
    n = logits.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be between 1 and the number of images ({n}), got {splits}")
    if shuffle:
        logits = logits[np.random.RandomState(seed).permutation(n), :]
    scores = _is_from_log_p(logits.double().log_softmax(dim=1), splits)
    return float(np.mean(scores)), float(np.std(scores))


def inception_score_interval(
    logits: torch.Tensor, splits: int = DEFAULT_IS_SPLITS, resamples: int = 200, level: float = 0.95,
    seed: int = IS_SHUFFLE_SEED,
) -> tuple[float, float]:
    """Bootstrap percentile interval of the Inception Score.

    Each of `resamples` draws N rows with replacement (numpy RandomState(seed)) and computes
    the mean IS over `splits` chunks, as inception_score does; returns the (1-level)/2 and
    (1+level)/2 quantiles of those means.
    """
    n = logits.shape[0]
    if n < 2 or resamples < 1 or not 0 < level < 1 or not 1 <= splits <= n:
        raise ValueError(f"a bootstrap interval needs 2+ images, 1+ resamples, 0<level<1 and 1 <= splits <= images "
                         f"(got {n}, {resamples}, {level}, {splits})")
    log_p = logits.double().log_softmax(dim=1)
    p = log_p.exp()
    # A chunk's mean KL(p_i || p_k) is mean_i(sum p_i log p_i) - sum p_k log p_k, and p_k is a
    # count-weighted sum of rows: one matrix product per group of draws instead of a copy of
    # the drawn rows per draw.
    row_terms = torch.cat([(p * log_p).sum(dim=1, keepdim=True), p], dim=1)
    bounds = [i * n // splits for i in range(splits + 1)]
    sizes = torch.tensor(np.diff(bounds), dtype=torch.float64)
    chunk_of_position = torch.repeat_interleave(torch.arange(splits), sizes.long())
    rng = np.random.RandomState(seed)
    group = max(1, 4_000_000 // (splits * n))  # draws per product: bounds the count matrix's memory
    means: list[float] = []
    for start in range(0, resamples, group):
        draws = min(group, resamples - start)
        counts = torch.zeros(draws * splits, n, dtype=torch.float64)
        for d in range(draws):
            rows = torch.from_numpy(rng.randint(0, n, n))
            counts.index_put_((chunk_of_position + d * splits, rows), torch.ones(n, dtype=torch.float64), accumulate=True)
        sums = (counts @ row_terms) / sizes.repeat(draws).unsqueeze(1)
        marginal = sums[:, 1:]
        chunk_is = (sums[:, 0] - torch.special.xlogy(marginal, marginal).sum(dim=1)).exp()
        means += chunk_is.view(draws, splits).mean(dim=1).tolist()
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def per_image_kl(logits: torch.Tensor) -> torch.Tensor:
    """KL(p(y|x_i) || p(y)) in nats for each row, p(y) being the mean prediction of all rows.

    exp of the mean of these is the one-split Inception Score of the whole batch.
    """
    return _mean_kl(logits.double().log_softmax(dim=1))


def normalise_clip(score: float, ceiling: float = DEFAULT_CLIP_CEILING) -> float:
    """Map a cosine CLIPScore to 0..1: clip to [0, ceiling], then divide by ceiling."""
    return min(max(score, 0.0), ceiling) / ceiling


def normalise_kl(kl: float, num_classes: int) -> float:
    """Map a per-image KL to 0..1: divide by ln(num_classes) and clip to [0, 1].

    ln(num_classes) is the largest mean KL a batch can reach (IS is at most num_classes);
    a single image can exceed it slightly, hence the clip.
    """
    return min(max(kl / math.log(num_classes), 0.0), 1.0)


def kl_to_marginal(logits: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """KL(p(y|x_i) || p_ref(y)) in nats for each row of (N, C) `logits`, against a fixed
    reference marginal `marginal` (C probabilities), in float64.

    The single-image Inception term the HTTP service uses: IS is defined against a batch's own
    mean prediction (per_image_kl); one image has no batch, so a reference batch's mean softmax
    stands in for it. With that batch's own marginal this equals per_image_kl of that batch.
    Reference probabilities that are 0 are floored at 1e-300 so the result stays finite.
    """
    if logits.dim() != 2 or marginal.dim() != 1 or logits.shape[1] != marginal.shape[0]:
        raise ValueError(f"expected (N, C) logits and a C-vector marginal, got {tuple(logits.shape)} and "
                         f"{tuple(marginal.shape)}")
    log_p = logits.double().log_softmax(dim=1)
    log_ref = marginal.double().clamp_min(1e-300).log()
    return (log_p.exp() * (log_p - log_ref)).sum(dim=1)
