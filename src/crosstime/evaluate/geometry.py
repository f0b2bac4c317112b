"""Geometry of the decoder over checkpoints: feature dimensionality beside its baselines, and rotation.

Both read the normalised-space decoder ``W_dec [F, M, d]`` (the one RelDec reads).

- **Feature dimensionality** (Elhage et al. 2022, "Toy models of superposition"): at checkpoint
  m, over the set S of live features, with ``W_i = W_dec[i, m]``,
  ``D_i = ‖W_i‖⁴ / Σ_{j∈S} (W_i · W_j)²`` (0 where ‖W_i‖ = 0; the sum includes j = i, so
  D_i ≤ 1: 1 for a feature orthogonal to all others, 1/k for k features sharing a direction),
  and the total ``Σ_{i∈S} D_i / d``: dimensions used per dimension of the space.
  :func:`dimensionality_blocked` never holds the ``|S| × |S|`` Gram matrix: it takes
  ``[block, |S|]`` slices and sums their squares in float64.
  Its baselines (:class:`SpectrumStats`): the effective rank of the same checkpoints' activations
  (held-out reconstruction rows, normalised space, centred covariance with eigenvalues λ): the
  participation ratio ``(Σ λ)² / Σ λ²`` and the principal components for 90% of the variance;
  and the count of present features (:mod:`crosstime.evaluate.decoder`). Dimensionality that
  falls with the activations' rank is rank collapse, not a change in superposition.
- **Rotation** (:func:`rotation`): over the live features present at both checkpoints compared
  (decoder norm >= the presence fraction of its largest; a direction at a near-zero norm is
  noise), the median and quartiles of the cosine between consecutive checkpoints' directions, and
  of the cosine with the last checkpoint's direction. A *turn* (the paper: nearly all features
  turn at about step 1,000, pre- and post-turn directions nearly orthogonal) is called only where a
  consecutive median cosine drops below ``bound`` (default 0.5, 60°); steady rotation (0.7 per
  interval, say) drives the cosine with the final direction down without any turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from crosstime.artifacts import Rotation
from crosstime.evaluate import plots as P
from crosstime.shares import consecutive_cosines

# rows per Gram slice: the [1024, |S|] float32 dots and their squares take about 330 MiB beyond the
# decoder at |S| = 16384, d = 768 (measured), and the slices are large enough for an efficient matmul
DIMENSIONALITY_BLOCK = 1024
TURN_BOUND = 0.5  # a turn: a consecutive median cosine below this (60°)
VARIANCE_FRACTION = 0.9  # effective rank: principal components for this share of the variance


def dimensionality(W: torch.Tensor) -> torch.Tensor:
    """Feature dimensionality, textbook form (the reference for small inputs): ``W [n, d]`` -> ``D [n]``
    float64, ``D_i = ‖W_i‖⁴ / Σ_j (W_i · W_j)²``, 0 where ‖W_i‖ = 0. Holds the full ``[n, n]`` Gram matrix."""
    W = W.double()
    gram = W @ W.T
    numerator = gram.diagonal() ** 2
    denominator = (gram**2).sum(1)
    return torch.where(numerator > 0, numerator / torch.where(numerator > 0, denominator, 1.0), 0.0)


def dimensionality_blocked(W: torch.Tensor, block: int = DIMENSIONALITY_BLOCK) -> torch.Tensor:
    """:func:`dimensionality` in ``[block, n]`` Gram slices: ``W [n, d]`` -> ``D [n]`` float64.

    The dot products are taken in ``W``'s dtype (float32 in the evaluate stage: float64 would
    double the cost of the one expensive step), their squares summed in float64.
    """
    if block < 1:
        raise ValueError(f"block must be at least 1, got {block}")
    n = W.shape[0]
    numerator = torch.empty(n, dtype=torch.float64)
    denominator = torch.empty(n, dtype=torch.float64)
    for start in range(0, n, block):
        dots = W[start : start + block] @ W.T  # [b, n]
        rows = torch.arange(dots.shape[0])
        # ‖W_i‖² from the same dot products as the sum: its square is one term of the sum, so D_i ≤ 1 exactly
        numerator[start : start + block] = dots[rows, start + rows].double() ** 2
        denominator[start : start + block] = dots.square().sum(1, dtype=torch.float64)
    # a norm whose float32 dots underflow to 0 counts as a zero vector (0, not 0 / 0)
    usable = (numerator > 0) & (denominator > 0)
    return torch.where(usable, numerator / torch.where(usable, denominator, 1.0), 0.0)


def dimensionality_by_checkpoint(W_dec: torch.Tensor, alive: torch.Tensor,
                                 block: int = DIMENSIONALITY_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """Per checkpoint, over the live features only: ``W_dec [F, M, d]``, ``alive [F]`` bool ->
    ``(D [F, M] float64, 0 for features not alive; total [M] = Σ_i D_i / d)``."""
    F, M, d = W_dec.shape
    live = alive.nonzero().squeeze(1)
    D = torch.zeros(F, M, dtype=torch.float64)
    for m in range(M):
        D[live, m] = dimensionality_blocked(W_dec[live, m].contiguous(), block)
    return D, D.sum(0) / d


def cos_final(W_dec: torch.Tensor) -> torch.Tensor:
    """``W_dec [F, M, d]`` -> ``[F, M]`` float64: cosine of ``W_dec[i, m]`` with ``W_dec[i, M-1]``;
    NaN where either vector is zero (no direction to compare)."""
    # in W_dec's dtype, reduced to [F, M] before the float64 cast: no [F, M, d] temporary
    norms = torch.linalg.vector_norm(W_dec, dim=-1).double()  # [F, M]
    dots = torch.einsum("fmd,fd->fm", W_dec, W_dec[:, -1]).double()
    both = norms * norms[:, -1:]
    return torch.where(both > 0, dots / torch.where(both > 0, both, 1.0), torch.nan).clamp(-1.0, 1.0)


def _quartiles(values: torch.Tensor) -> tuple[int, float | None, float | None, float | None]:
    """``(n, q25, median, q75)`` of a 1-D tensor (Nones when empty)."""
    if not values.numel():
        return 0, None, None, None
    q25, mid, q75 = np.quantile(values.double().numpy(), [0.25, 0.5, 0.75]).tolist()
    return int(values.numel()), q25, mid, q75


def rotation(W_dec: torch.Tensor, cos_last: torch.Tensor, present: torch.Tensor, alive: torch.Tensor,
             revisions: Sequence[str], *, presence: float, bound: float = TURN_BOUND) -> Rotation:
    """The ``rotation`` section of ``evaluation.json`` (module docstring): ``W_dec [F, M, d]``, ``cos_last [F, M]``
    (:func:`cos_final`), ``present [F, M]`` bool (decoder norm >= ``presence`` × the feature's largest),
    ``alive [F]`` bool. ``turns``: the intervals whose median consecutive cosine is below ``bound``."""
    kept = present & alive[:, None].bool()
    consecutive = consecutive_cosines(W_dec).clamp(-1.0, 1.0)  # [F, M - 1]
    inter = [_quartiles(consecutive[kept[:, m] & kept[:, m + 1], m]) for m in range(len(revisions) - 1)]
    final = [_quartiles(cos_last[kept[:, m] & kept[:, -1], m]) for m in range(len(revisions))]
    median = [q[2] for q in inter]
    return Rotation(
        intervals=[f"{a}->{b}" for a, b in pairwise(revisions)],
        n_features=[q[0] for q in inter], median_cosine=median, q25_cosine=[q[1] for q in inter],
        q75_cosine=[q[3] for q in inter],
        median_angle_deg=[None if c is None else float(np.degrees(np.arccos(c))) for c in median],
        final_n=[q[0] for q in final], final_median=[q[2] for q in final], final_q25=[q[1] for q in final],
        final_q75=[q[3] for q in final], revisions=list(revisions), presence_fraction=presence, turn_bound=bound,
        turns=[m for m, c in enumerate(median) if c is not None and c < bound])


def effective_rank(eigenvalues: torch.Tensor, fraction: float = VARIANCE_FRACTION) -> tuple[float, int]:
    """``(participation ratio (Σ λ)² / Σ λ², principal components for ``fraction`` of Σ λ)`` of one spectrum
    ``eigenvalues [d]`` (negative round-off clipped to 0); ``(0.0, 0)`` for an all-zero spectrum."""
    lam = eigenvalues.double().clamp(min=0).sort(descending=True).values
    total = float(lam.sum())
    if total <= 0:
        return 0.0, 0
    ratio = total**2 / float((lam**2).sum())
    # the smallest k whose top-k eigenvalues hold the fraction (a small tolerance: exact ties at the fraction count)
    k = int((lam.cumsum(0) < fraction * total * (1 - 1e-12)).sum()) + 1
    return ratio, min(k, len(lam))


@dataclass
class Spectrum:
    """The activations' effective rank per checkpoint: ``participation_ratio [M]``, ``pcs_90 [M]``, over ``rows``."""

    participation_ratio: list[float]
    pcs_90: list[int]
    rows: int

    def fields(self) -> dict:
        """Its fields of :class:`~crosstime.artifacts.Dimensionality`."""
        return {"participation_ratio": self.participation_ratio, "pcs_90": self.pcs_90, "spectrum_rows": self.rows}


class SpectrumStats:
    """Streaming first and second moments of each checkpoint's activations (float64): ``update(x [B, M, d])``;
    :meth:`result` the centred covariance's effective rank (:func:`effective_rank`) per checkpoint."""

    def __init__(self, M: int, d: int):
        self.n = 0
        self.sum = torch.zeros(M, d, dtype=torch.float64)
        self.outer = torch.zeros(M, d, d, dtype=torch.float64)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.double()
        self.n += x.shape[0]
        self.sum += x.sum(0).cpu()
        for m in range(x.shape[1]):  # one [d, d] Gram per checkpoint: no [B, M, d, d] intermediate
            self.outer[m] += (x[:, m].T @ x[:, m]).cpu()

    def result(self) -> Spectrum:
        if self.n < 2:
            raise ValueError(f"the activation spectrum needs at least 2 rows, got {self.n}")
        mean = self.sum / self.n
        cov = self.outer / self.n - torch.einsum("md,me->mde", mean, mean)
        ranks = [effective_rank(torch.linalg.eigvalsh(c)) for c in cov]
        return Spectrum([r[0] for r in ranks], [r[1] for r in ranks], self.n)


# -- figures (matplotlib is imported only when they are drawn) -----------------------------------

def plot_dimensionality(D: np.ndarray, total: Sequence[float], alive: np.ndarray, tokens: Sequence[int | None],
                        d: int, path: str | Path, baseline: tuple[Sequence[float], Sequence[int], int] | None,
                        present: Sequence[int]) -> Path:
    """Left: the total ``Σ_i D_i / d`` per checkpoint beside its baselines (``baseline``: the activations'
    participation ratio and PCs for 90% of the variance, each / d, over that many rows; ``present``: present
    features / live features); right: median and interquartile range of ``D_i`` over the live features with a
    non-zero decoder there. ``D [F, M]``, ``alive [F]``."""

    x, _ = P.token_x(tokens)
    fig, (ax, bx) = P.plt.subplots(1, 2, figsize=(12, 4.4))
    live_n = int(alive.sum())
    ax.plot(x, total, marker="o", color=P.PALETTE[0], label="feature dimensionality Σ D_i / d")
    if baseline is not None:
        ratio, pcs, rows = baseline
        ax.plot(x, np.asarray(ratio) / d, marker="s", ls="--", color=P.PALETTE[2],
                label=f"activations: participation ratio / d ({rows:,} rows)")
        ax.plot(x, np.asarray(pcs) / d, marker="^", ls="--", color=P.PALETTE[3], label="activations: PCs for 90% / d")
    ax.plot(x, np.asarray(present) / max(live_n, 1), marker="v", ls=":", color=P.PALETTE[4],
            label="present features / live features")
    P.log_token_axis(ax, tokens)
    ax.set_ylabel("share (see legend)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(f"Dimensionality beside the activations' rank and the present features (d = {d}, {live_n} live "
                 "features)", fontsize=9)
    live = D[alive]
    stats = [np.quantile(col[col > 0], [0.25, 0.5, 0.75]) if (col > 0).any() else [np.nan] * 3 for col in live.T]
    q25, med, q75 = np.asarray(stats, dtype=float).T
    bx.fill_between(x, q25, q75, color=P.PALETTE[1], alpha=0.25, lw=0, label="25th–75th percentile")
    bx.plot(x, med, marker="o", color=P.PALETTE[1], label="median")
    P.log_token_axis(bx, tokens)
    if np.isfinite(q25).any():  # in superposition most D_i sit far below 1: a linear axis flattens them to 0
        bx.set_yscale("log")
        bx.set_ylim(top=1.5)
    bx.set_ylabel("D_i = ‖W_i‖⁴ / Σ_j (W_i · W_j)²")
    bx.set_title("Per-feature dimensionality (1: a direction of its own; 1/k: shared by k features)", fontsize=9)
    bx.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return P.save_figure(fig, path)


def _band(values: Sequence[float | None]) -> list[float]:
    return [np.nan if v is None else v for v in values]


def plot_rotation(rot: Rotation, tokens: Sequence[int | None], path: str | Path) -> Path:
    """Left: median and interquartile band of the cosine between consecutive checkpoints' directions, drawn at
    each interval's later checkpoint, with the turn bound; right: the cosine with the last checkpoint's direction.
    Both over the live features present at both checkpoints compared."""

    x, _ = P.token_x(tokens)
    fig, (ax, bx) = P.plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    ax.fill_between(x[1:], _band(rot.q25_cosine), _band(rot.q75_cosine), color=P.PALETTE[0], alpha=0.25, lw=0,
                    label="25th–75th percentile")
    ax.plot(x[1:], _band(rot.median_cosine), marker="o", color=P.PALETTE[0], label="median")
    ax.axhline(rot.turn_bound, color=P.PALETTE[3], ls="--", lw=0.8, label=f"turn bound {rot.turn_bound:g}")
    for m in rot.turns:
        ax.axvspan(x[m], x[m + 1], color="0.9", zorder=0)
    verdict = ("turn: " + ", ".join(rot.intervals[m] for m in rot.turns)) if rot.turns else "no turn"
    ax.set_title(f"cos(W_dec[i, m−1], W_dec[i, m]) — {verdict}", fontsize=9)
    bx.fill_between(x, _band(rot.final_q25), _band(rot.final_q75), color=P.PALETTE[1], alpha=0.25, lw=0,
                    label="25th–75th percentile")
    bx.plot(x, _band(rot.final_median), marker="o", color=P.PALETTE[1], label="median")
    bx.set_title("cos(W_dec[i, m], W_dec[i, last]) (1 at the last by definition)", fontsize=9)
    for a in (ax, bx):
        a.axhline(0, color="0.4", lw=0.6)
        P.log_token_axis(a, tokens)
        a.set_ylim(-1.05, 1.05)
        a.legend(fontsize=8, frameon=False, loc="lower right")
    ax.set_ylabel("cosine")
    fig.suptitle(f"Rotation of decoder directions (live features present at both checkpoints: norm ≥ "
                 f"{rot.presence_fraction:.0%} of their peak)", fontsize=10)
    fig.tight_layout()
    return P.save_figure(fig, path)
