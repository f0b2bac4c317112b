"""RelIE, feature selection, bootstrap confidence intervals and rank correlations.

RelIE uses the same share functions and classes as RelDec (crosstime's evaluate stage),
so a feature's causal profile and its decoder profile are directly comparable:

    RelIE[i, m] = |IE_m(i)| / Σ_k |IE_k(i)|        (1/M where all are zero; never NaN)
    pairwise[i, (j, k)] = |IE_k(i)| / (|IE_j(i)| + |IE_k(i)|)   (½ where both are zero)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

# Shares and classes: one definition for RelDec and RelIE (the evaluate stage's).
from crosstime.shares import (
    HIGH_SHARE,
    LOW_SHARE,
    NO_EFFECT,
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
    "bootstrap_ie", "resample_effects", "intervals", "class_intervals", "ClassInterval", "Resamples", "spearman",
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


@dataclass
class Resamples:
    """Bootstrap resamples over pairs of some features' effects (R resamples, M checkpoints, K features).

    One resample draws N pairs with replacement, the same pairs for every checkpoint and for the
    joint effect, so a share's numerator and denominator move together.
    """

    means: np.ndarray  # [R, M, K] mean effect over the resampled pairs
    shares: np.ndarray  # [R, K, M] RelIE of those means
    effect_share: np.ndarray | None  # [R, K] Σ_m |mean_m| / Σ_m |joint mean_m| (None without the joint effect)


def resample_effects(per_pair: np.ndarray | torch.Tensor, resamples: int = 1000, seed: int = 0,
                     joint: np.ndarray | torch.Tensor | None = None) -> Resamples:
    """``per_pair [M, N, K]`` per-pair effects, ``joint [M, N]`` the per-pair joint effect (optional):
    ``resamples`` bootstrap draws of N pairs, as an ``[R, N]`` count matrix times the data."""
    x = _np(per_pair)
    N = x.shape[1]
    if N == 0:
        raise ValueError("bootstrap needs at least one pair")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(N, np.full(N, 1.0 / N), size=resamples).astype(np.float64)  # [R, N]
    means = np.einsum("rn,mnk->rmk", counts, x) / N  # [R, M, K]
    shares = np.stack([relative_shares(np.abs(means[r]).T) for r in range(resamples)])  # [R, K, M]
    effect_share = None
    if joint is not None:
        joint_total = np.abs(counts @ _np(joint).T / N).sum(1)  # [R] Σ_m |J_m| of each resample
        # no joint effect: the floor (a share of it) is 0, which every feature reaches: an infinite share
        with np.errstate(divide="ignore", invalid="ignore"):
            effect_share = np.where(joint_total[:, None] > 0, np.abs(means).sum(1) / joint_total[:, None], np.inf)
    return Resamples(means, shares, effect_share)


def bootstrap_ie(per_pair: np.ndarray | torch.Tensor, resamples: int = 1000, ci: float = 0.95,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Percentile bootstrap over pairs for the mean IE and the RelIE of some features.

    per_pair: [M, N, K] per-pair effects (M checkpoints, N pairs, K features).
    Returns ``ie_lo, ie_hi`` [M, K] and ``relie_lo, relie_hi`` [K, M] (:func:`resample_effects`).
    """
    return intervals(resample_effects(per_pair, resamples, seed), ci)


def intervals(res: Resamples, ci: float) -> dict[str, np.ndarray]:
    """The central ``ci`` percentile intervals of :func:`bootstrap_ie` from the resamples."""
    lo_q, hi_q = (1 - ci) / 2, 1 - (1 - ci) / 2
    return {
        "ie_lo": np.quantile(res.means, lo_q, axis=0),
        "ie_hi": np.quantile(res.means, hi_q, axis=0),
        "relie_lo": np.quantile(res.shares, lo_q, axis=0),
        "relie_hi": np.quantile(res.shares, hi_q, axis=0),
    }


@dataclass(frozen=True)
class ClassInterval:
    """The comparison of a feature's class rule that decides how sure the class is.

    ``on``: the quantity compared (``share_REV``, ``max share``, ``effect share``), ``lo``/``hi``
    its bootstrap interval, ``cutoff`` the cut-off it is compared with; ``uncertain``: that
    interval reaches the cut-off (``lo <= cutoff <= hi``): resampling the pairs can change the class.
    """

    on: str
    lo: float
    hi: float
    cutoff: float
    uncertain: bool


def class_intervals(res: Resamples, classes: Sequence[str], revisions: Sequence[str], ci: float,
                    effect_floor: float, high: float = HIGH_SHARE, low: float = LOW_SHARE) -> list[ClassInterval]:
    """One :class:`ClassInterval` per feature (``classes [K]``, from :func:`classify_effects`).

    The comparisons each class rests on (:func:`crosstime.shares.classify_shares`):
    ``"no effect"``: the effect share Σ_m |IE_m| / Σ_m |J_m| below ``effect_floor``; any other
    class: the effect share at or above it, and then a dominant class: its checkpoint's share
    above ``high``; the others: the largest share at most ``high`` and every checkpoint's share
    on its side of ``low`` (present ≥ low, absent below). The reported comparison is the first
    whose interval reaches its cut-off, else the one whose interval comes nearest to its cut-off.
    """
    if res.effect_share is None:
        raise ValueError("class intervals need the joint effect's resamples (resample_effects(..., joint=...))")
    lo_q, hi_q = (1 - ci) / 2, 1 - (1 - ci) / 2
    out = []
    for k, label in enumerate(classes):
        checks = [("effect share", res.effect_share[:, k], effect_floor)]
        if label != NO_EFFECT:
            dominant = [m for m, r in enumerate(revisions) if label in (f"{r}-dominant", f"{r}-specific")]
            if dominant:
                checks.append((f"share_{revisions[dominant[0]]}", res.shares[:, k, dominant[0]], high))
            else:
                checks.append(("max share", res.shares[:, k].max(1), high))
                checks += [(f"share_{r}", res.shares[:, k, m], low) for m, r in enumerate(revisions)]
        found = []
        for on, values, cutoff in checks:
            lo, hi = float(np.quantile(values, lo_q)), float(np.quantile(values, hi_q))
            found.append(ClassInterval(on, lo, hi, cutoff, lo <= cutoff <= hi))
        crossing = [c for c in found if c.uncertain]
        out.append(crossing[0] if crossing else min(found, key=lambda c: min(abs(c.lo - c.cutoff),
                                                                             abs(c.hi - c.cutoff))))
    return out


def spearman(a, b) -> float:
    """Spearman ρ (scipy); NaN when either side is constant or has fewer than 3 values."""
    from scipy.stats import spearmanr  # lazy: start-up time (scipy.stats; the CLI does not load it to start)

    a, b = _np(a).ravel(), _np(b).ravel()
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)
