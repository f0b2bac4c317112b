"""Geometry of the decoder over checkpoints: feature dimensionality and the direction turn.

Both read the normalised-space decoder ``W_dec [F, M, d]`` (the one RelDec reads).

- **Feature dimensionality** (Elhage et al. 2022, "Toy models of superposition"): at checkpoint
  m, over the set S of live features, with ``W_i = W_dec[i, m]``,
  ``D_i = ‖W_i‖⁴ / Σ_{j∈S} (W_i · W_j)²`` (0 where ‖W_i‖ = 0; the sum includes j = i, so
  D_i ≤ 1: 1 for a feature orthogonal to all others, 1/k for k features sharing a direction),
  and the total ``Σ_{i∈S} D_i / d``: dimensions used per dimension of the space.
  :func:`dimensionality_blocked` never holds the ``|S| × |S|`` Gram matrix: it takes
  ``[block, |S|]`` slices and sums their squares in float64.
- **Direction turn**: the cosine of each feature's decoder at checkpoint m with its decoder at
  the last checkpoint (:func:`cos_final`), summarised over live features per checkpoint
  (:func:`direction_turn`), and the interval where the median cosine rises most (the paper:
  nearly all features turn at about step 1,000, pre- and post-turn directions nearly orthogonal).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from crosstime.artifacts import DirectionTurn
from crosstime.evaluate import plots as P

# rows per Gram slice: the [1024, |S|] float32 dots and their squares take about 330 MiB beyond the
# decoder at |S| = 16384, d = 768 (measured), and the slices are large enough for an efficient matmul
DIMENSIONALITY_BLOCK = 1024
# A decoder vector below 1% of the feature's largest norm is one the sparsity penalty has shrunk
# away: what is left is initialisation and gradient noise, so its direction says nothing about the
# feature. The threshold is far below the presence fraction (0.5) on purpose: the turn is about
# every decoder that exists, including the small early ones of features that are still emerging.
MIN_NORM_FRACTION = 0.01


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


TURN_LEVEL = 0.5  # the turn: where the median cosine with the final direction passes one half


def direction_turn(cos: torch.Tensor, norms: torch.Tensor, alive: torch.Tensor, revisions: Sequence[str],
                   min_fraction: float = MIN_NORM_FRACTION) -> DirectionTurn:
    """The ``direction_turn`` section of ``evaluation.json`` from ``cos [F, M]`` (:func:`cos_final`),
    ``norms [F, M]`` (decoder norms) and ``alive [F]``.

    Per checkpoint m, over the live features whose decoder norm at m and at the last checkpoint
    (the reference direction) is at least ``min_fraction`` × the feature's largest norm: ``n`` and
    the median, 25th and 75th percentile of the cosine (None where n = 0). ``turn_after``: the m
    whose interval m -> m+1 the median crosses one half in (:func:`crossing`): before it most features
    point closer to orthogonal than to where they end, after it closer to their final direction (the
    largest rise would mostly pick the last interval, where the cosine of the final direction with
    itself is 1 by definition).
    """
    cos, norms = cos.double(), norms.double()
    peak = norms.max(1, keepdim=True).values
    kept = (norms >= min_fraction * peak) & (peak > 0) & alive[:, None].bool()
    kept &= kept[:, -1:] & ~cos.isnan()
    n: list[int] = []
    q25: list[float | None] = []
    median: list[float | None] = []
    q75: list[float | None] = []
    for m in range(cos.shape[1]):
        values = cos[kept[:, m], m].numpy()
        n.append(len(values))
        low, mid, high = np.quantile(values, [0.25, 0.5, 0.75]).tolist() if len(values) else (None,) * 3
        q25.append(low)
        median.append(mid)
        q75.append(high)
    return DirectionTurn(median=median, q25=q25, q75=q75, n=n, revisions=list(revisions), min_norm_fraction=min_fraction,
                         turn_after=crossing(median, TURN_LEVEL))


def crossing(values: Sequence[float | None], level: float) -> int | None:
    """The first index m with ``values[m] < level <= values[m+1]`` (intervals with a None end skipped);
    None when the values never cross ``level`` upwards."""
    for m in range(len(values) - 1):
        a, b = values[m], values[m + 1]
        if a is not None and b is not None and a < level <= b:
            return m
    return None


# -- figures (matplotlib is imported only when they are drawn) -----------------------------------

def plot_dimensionality(D: np.ndarray, total: Sequence[float], alive: np.ndarray, tokens: Sequence[int | None],
                        d: int, path: str | Path) -> Path:
    """Left: the total ``Σ_i D_i / d`` per checkpoint; right: median and interquartile range of ``D_i``
    over the live features with a non-zero decoder there. ``D [F, M]``, ``alive [F]``."""

    x, _ = P.token_x(tokens)
    fig, (ax, bx) = P.plt.subplots(1, 2, figsize=(11, 4))
    ax.plot(x, total, marker="o", color=P.PALETTE[0])
    P.log_token_axis(ax, tokens)
    ax.set_ylabel("feature dimensionality Σ D_i / d")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Dimensions used per dimension of the space (d = {d}, {int(alive.sum())} live features)",
                 fontsize=9)
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


def plot_direction_turn(turn: DirectionTurn, tokens: Sequence[int | None], path: str | Path) -> Path:
    """Median (and interquartile band) over live features of the cosine between each checkpoint's
    decoder direction and the last checkpoint's; the largest rise of the median shaded."""

    x, _ = P.token_x(tokens)
    median = [np.nan if v is None else v for v in turn.median]
    q25 = [np.nan if v is None else v for v in turn.q25]
    q75 = [np.nan if v is None else v for v in turn.q75]
    fig, ax = P.plt.subplots(figsize=(8, 4))
    ax.fill_between(x, q25, q75, color=P.PALETTE[0], alpha=0.25, lw=0, label="25th–75th percentile")
    ax.plot(x, median, marker="o", color=P.PALETTE[0], label="median over live features")
    m = turn.turn_after
    if m is not None:
        ax.axvspan(x[m], x[m + 1], color="0.92", zorder=0,
                   label=f"median passes {TURN_LEVEL:g}: {turn.revisions[m]} → {turn.revisions[m + 1]}")
    ax.axhline(0, color="0.4", lw=0.6)
    P.log_token_axis(ax, tokens)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("cos(W_dec[i, m], W_dec[i, last])")
    ax.set_title(f"Direction turn: each feature's decoder against its final direction (live features with a "
                 f"decoder ≥ {turn.min_norm_fraction:.0%} of their peak norm)", fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    fig.tight_layout()
    return P.save_figure(fig, path)
