"""Loss terms and metrics of crosscoder training: small pure functions of tensors.

Shapes: x, x̂ ``[B, M, d]``; z (pre-activations), f (features) ``[B, F]``; w (per-feature
decoder weight) ``[F]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from crosstime.crosscoder.model import Crosscoder


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
    """Squared error per token, mean over the batch.

    ``reduce="sum"`` (the papers'): ``mean_b Σ_m Σ_j (x̂ − x)²``, summed over checkpoints.
    ``reduce="mean"``: divided by M. With the sum, the reconstruction term grows with M while
    the sparsity penalty does not, so the same sparsity coefficient means a much weaker
    penalty at M = 32 than at M = 3 (bug B13 in the reference notes); the mean keeps the
    balance, and therefore a tuned coefficient, comparable across M.
    """
    se = (x_hat - x).pow(2).sum(dim=(1, 2)).mean()
    if reduce == "mean":
        return se / x.shape[1]
    if reduce != "sum":
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    return se


def l1_penalty(f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Decoder-norm-weighted L1: ``mean_b Σ_i f_i · w_i``."""
    return (f @ w.to(f.dtype)).mean()


def auxk_loss(model: Crosscoder, z: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor, dead: torch.Tensor,
              k_aux: int) -> torch.Tensor:
    """AuxK (Gao et al. 2024): dead features learn to reconstruct the residual ``e = x − x̂``.

    The ``k_aux`` dead features with the largest ``ReLU(z)·w`` per token decode (without
    b_dec) to ``ê``; loss ``mean_b ‖e − ê‖² / mean_b ‖e − mean_b e‖²``. ``e`` is detached, so
    only dead features move. The sign matters: the reference passed ``x̂ − x`` (bug B1),
    which teaches dead features to make the error worse. Zero when nothing is dead.
    dead: bool ``[F]``. On a checkpoint shard (``z``, ``dead`` replicated; ``x``, ``x̂`` its
    checkpoints) every shard picks the same dead features and both norms are summed over the
    shards (``model.checkpoint_sum``): the loss of the whole crosscoder.
    """
    n_dead = int(dead.sum())
    k = min(k_aux, n_dead)
    if k == 0:
        return z.new_zeros(())
    e = (x - x_hat).detach().reshape(x.shape[0], -1)  # [B, M·d]
    dead_ids = dead.nonzero().squeeze(1)
    w = model.feature_weights()[dead_ids].detach()
    fz = torch.relu(z[:, dead_ids])  # [B, n_dead]
    top = (fz * w.to(fz.dtype)).topk(k, dim=1, sorted=False).indices
    vals = model.checkpoint_copy(fz.gather(1, top))  # [B, k]
    w_dead = model.W_dec[dead_ids].reshape(n_dead, -1)
    e_hat = torch.nn.functional.embedding_bag(top, w_dead, mode="sum", per_sample_weights=vals.to(w_dead.dtype))
    num = model.checkpoint_sum((e - e_hat).pow(2).sum(1).mean())
    den = model.checkpoint_sum((e - e.mean(0, keepdim=True)).pow(2).sum(1).mean())
    if float(den) == 0.0:
        return z.new_zeros(())
    return num / den


@torch.no_grad()
def moment_sums(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-checkpoint sums for explained variance, mergeable across ranks and batches.

    Returns float64 ``[M, 3 + d]``: column 0 Σ(x̂−x)², 1 Σ‖x‖², 2 row count, 3: Σ x (per dim).
    """
    e2 = (x_hat - x).double().pow(2).sum(dim=(0, 2))
    x2 = x.double().pow(2).sum(dim=(0, 2))
    n = torch.full_like(e2, x.shape[0])
    sx = x.double().sum(0)
    return torch.cat([e2[:, None], x2[:, None], n[:, None], sx], dim=1)


def explained_variance(sums: torch.Tensor) -> torch.Tensor:
    """EV per checkpoint ``[M]`` = ``1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²`` about the (pooled) mean x̄.

    Pooled over every row summed into ``sums`` (see :func:`moment_sums`), rather than the
    reference's mean of per-token ratios, which a few low-variance tokens can dominate.
    """
    e2, x2, n, sx = sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3:]
    var = x2 - sx.pow(2).sum(1) / n
    return 1 - e2 / var.clamp_min(1e-30)
