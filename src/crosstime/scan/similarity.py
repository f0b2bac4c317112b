"""Representation similarity between checkpoints: site activations on one fixed token set,
mean per-token cosine and linear CKA.

Every checkpoint is read at the same N token positions (position 0 and padding excluded), so
``acts [M, N, d]`` compares like with like.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from crosstime.sites import read_site
from crosstime.tasks import right_pad


def cosine_matrix(acts: torch.Tensor) -> np.ndarray:
    """Mean per-token cosine similarity between checkpoints.

    acts: [M, N, d], the same N token positions in M checkpoints.
    Returns [M, M] with entry (a, b) = mean_t cos(acts[a, t], acts[b, t]).
    """
    unit = torch.nn.functional.normalize(acts.float(), dim=-1)
    n = unit.shape[1]
    out = torch.einsum("and,bnd->ab", unit, unit) / n
    return out.double().numpy()


def linear_cka_matrix(acts: torch.Tensor) -> np.ndarray:
    """Linear CKA (Kornblith et al., 2019) between checkpoints on the same positions.

    acts: [M, N, d]. CKA(X, Y) = ‖XᶜᵀYᶜ‖²_F / (‖XᶜᵀXᶜ‖_F ‖YᶜᵀYᶜ‖_F), with Xᶜ the
    column-centred X. With d ≤ N the d × d cross-products are formed pair by pair (N d² each);
    with N < d the centred Gram matrices K = XᶜXᶜᵀ [N, N] are, since ‖XᶜᵀYᶜ‖²_F = ⟨K_X, K_Y⟩.
    Float64. Returns [M, M].
    """
    x = acts.double()
    x = x - x.mean(dim=1, keepdim=True)
    m, n, d = x.shape
    if d <= n:
        inner = torch.empty(m, m, dtype=torch.float64)
        for i in range(m):
            for j in range(i, m):
                inner[i, j] = inner[j, i] = (x[i].T @ x[j]).square().sum()
    else:
        grams = (x @ x.transpose(1, 2)).reshape(m, -1)  # [M, N*N]
        inner = grams @ grams.T
    norms = inner.diagonal().sqrt()
    cka = inner / (norms[:, None] * norms[None, :]).clamp_min(1e-300)
    return cka.numpy()


@torch.no_grad()
def site_tokens(model, seqs: Sequence[Sequence[int]], layer: int, budget: int, batch_size: int = 64) -> torch.Tensor:
    """Site activations ``[N, d]`` at all real positions ≥ 1 of ``seqs`` (in order), first ``budget`` kept.

    Right padding (:func:`crosstime.tasks.right_pad`) and the attention mask; padding and position 0 are never
    included.
    """
    device = next(model.parameters()).device
    parts, have = [], 0
    for start in range(0, len(seqs), batch_size):
        ids, mask = right_pad(seqs[start:start + batch_size])
        h = read_site(model, ids.to(device), layer, attention_mask=mask.to(device)).float().cpu()
        keep = mask.bool().clone()
        keep[:, 0] = False
        parts.append(h[keep])
        have += int(keep.sum())
        if have >= budget:
            break
    return torch.cat(parts)[:budget]
