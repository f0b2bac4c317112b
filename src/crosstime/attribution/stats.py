"""RelIE, feature selection, bootstrap confidence intervals and rank correlations.

RelIE uses the same share functions and classes as RelDec (crosstime's evaluate stage),
so a feature's causal profile and its decoder profile are directly comparable:

    RelIE[i, m] = |IE_m(i)| / Σ_k |IE_k(i)|        (1/M where all are zero; never NaN)
    pairwise[i, (j, k)] = |IE_k(i)| / (|IE_j(i)| + |IE_k(i)|)   (½ where both are zero)
"""

from __future__ import annotations

import numpy as np
import torch

# Shares and classes: one definition for RelDec and RelIE (the evaluate stage's).
from crosstime.shares import (
    class_order,
    classify_effects,
    classify_shares,
    decoder_norms,
    pairwise_shares,
)
from crosstime.shares import relative_shares as _relative_shares

__all__ = [
    "relative_shares", "pairwise_shares", "classify_shares", "classify_effects", "class_order", "decoder_norms", "rel_ie",
    "pairwise_rel_ie", "top_features",
    "bootstrap_ie", "spearman",
]


def _np(a) -> np.ndarray:
    return a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)


def relative_shares(values) -> np.ndarray:
    """``[F, M]`` numpy wrapper of :func:`crosstime.shares.relative_shares`."""
    return _relative_shares(torch.as_tensor(_np(values))).numpy()


def rel_ie(ie: np.ndarray | torch.Tensor) -> np.ndarray:
    """One-vs-all RelIE ``[F, M]`` from signed IE ``[M, F]`` (shares of ``|IE|``)."""
    return relative_shares(np.abs(_np(ie)).T)


def pairwise_rel_ie(ie: np.ndarray | torch.Tensor) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Pairwise RelIE ``[F, P]`` for the pairs ``(j, k)``, ``j < k``: ``|IE_k| / (|IE_j| + |IE_k|)``, ½ if both 0."""
    full = pairwise_shares(torch.as_tensor(np.abs(_np(ie)).T)).numpy()  # [F, M, M]
    M = full.shape[1]
    pairs = [(j, k) for j in range(M) for k in range(j + 1, M)]
    return np.stack([full[:, j, k] for j, k in pairs], axis=1) if pairs else np.zeros((full.shape[0], 0)), pairs


def top_features(ie: np.ndarray | torch.Tensor, k: int) -> tuple[list[list[int]], list[int]]:
    """Top-``k`` features by ``|IE_m|`` per checkpoint (zero-effect features never selected), and their union.

    ie: [M, F]. Returns (per-checkpoint lists, union sorted by the largest |IE| anywhere).
    """
    a = np.abs(_np(ie))
    M, F = a.shape
    if not 1 <= k <= F:
        raise ValueError(f"top-k = {k} but the crosscoder has F = {F} features; choose --top-k between 1 and {F}")
    per = []
    for m in range(M):
        order = np.argsort(-a[m], kind="stable")[:k]
        per.append([int(i) for i in order if a[m, i] > 0])
    union = sorted({i for lst in per for i in lst}, key=lambda i: (-a[:, i].max(), i))
    return per, union


def bootstrap_ie(per_pair: np.ndarray | torch.Tensor, resamples: int = 1000, ci: float = 0.95,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Percentile bootstrap over pairs for the mean IE and the RelIE of some features.

    per_pair: [M, N, K] per-pair effects (M checkpoints, N pairs, K features).
    Returns ``ie_lo, ie_hi`` [M, K] and ``relie_lo, relie_hi`` [K, M]. One resample draws N
    pairs with replacement (the same pairs for every checkpoint, so RelIE's numerator and
    denominator move together); done as a ``[R, N]`` count matrix times the data.
    """
    x = _np(per_pair)
    M, N, K = x.shape
    if N == 0:
        raise ValueError("bootstrap needs at least one pair")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(N, np.full(N, 1.0 / N), size=resamples).astype(np.float64)  # [R, N]
    means = np.einsum("rn,mnk->rmk", counts, x) / N  # [R, M, K]
    lo_q, hi_q = (1 - ci) / 2, 1 - (1 - ci) / 2
    shares = np.stack([relative_shares(np.abs(means[r]).T) for r in range(resamples)])  # [R, K, M]
    return {
        "ie_lo": np.quantile(means, lo_q, axis=0),
        "ie_hi": np.quantile(means, hi_q, axis=0),
        "relie_lo": np.quantile(shares, lo_q, axis=0),
        "relie_hi": np.quantile(shares, hi_q, axis=0),
    }


def spearman(a, b) -> float:
    """Spearman ρ (scipy); NaN when either side is constant or has fewer than 3 values."""
    from scipy.stats import spearmanr  # lazy: start-up time (scipy.stats; the CLI does not load it to start)

    a, b = _np(a).ravel(), _np(b).ravel()
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)
