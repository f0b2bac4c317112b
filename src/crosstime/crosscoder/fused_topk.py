"""Hand-derived forward + backward of the TopK family's loss (topk, batchtopk, matryoshka).

The autograd step (:meth:`~.recipe.Recipe.step` of :class:`~.topk.TopKRecipe`) builds the
scores ``ReLU(z)·w`` with a graph, decodes with ``embedding_bag`` and lets autograd allocate a
dense ``[F, M·d]`` decoder gradient; AuxK gathers ``z`` of the dead features and decodes them
again. Here one step is the encoder GEMM, a selection, and sparse products over the
``nnz = k·B`` active entries only:

    z = X W_enc + b_enc [B, F];  s = ReLU(z)·w;  pick k per token (topk) or k·B per batch (batchtopk)
    S: the picked entries as a CSR matrix whose rows are *bags* (token b, group g), values v = ReLU(z)
    D = S W_dec  [B·(G+A), M·d]: the partial decodes of each bag
    x̂_g = b_dec + Σ_{g' ≤ g} D_{b,g'}  (the reconstruction from the features below prefix p_g)

Groups: matryoshka's nested prefixes ``p_1 < … < p_G = F`` (feature i is in group g when
``p_{g-1} ≤ i < p_g``); topk and batchtopk have G = 1. The loss is ``Σ_g recon(x̂_g)`` (the last
the full reconstruction) plus ``auxk_coeff · AuxK``, whose ``k_aux`` dead features per token are
one more bag per token (A = 1), decoded without b_dec. With ``U`` the upstream gradient of every
bag — for group g, ``Σ_{g' ≥ g} 2 (x̂_g' − x) / (B·r)``; for AuxK, ``−2 c (e − ê) / (B·den)`` —

    ∂v = (U W_decᵀ) sampled at S (``sampled_addmm``);  ∂z = ∂v · 1{v > 0}
    ∂W_dec = Sᵀ U;   ∂b_dec = Σ_b U_{b,1};   ∂W_encᵀ = ∂Zᵀ X;   ∂b_enc = Σ over entries of ∂z

(∂Z: the entries with their token as row). Sᵀ is built once (entries sorted by feature) and
both ``Sᵀ U`` and ``∂Zᵀ X`` run as MKL sparse × dense products into kept buffers; rows of
features nobody picked come out zero, so every gradient is exact, not approximate.
Gradients *overwrite* ``p.grad``. The optimiser (the trainer's fused Adam) stays dense and
exact: skipping untouched rows would skip their moment decay and change the step.

BatchTopK's selection keeps the ``k·B`` largest positive scores of the batch without sorting
the ``B·F`` scores: a threshold below the ``k·B``-th largest is read off a strided sample, the
entries above it (about 2·k·B) are the candidates, and ``topk`` runs over those alone; when
the sample misjudges (fewer candidates than k·B) every positive score is a candidate. Scores
of zero are never kept: their features are zero and pass no gradient, as in the reference,
which counts only positive features active.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crosstime.crosscoder.fused import _buffer, _grad
from crosstime.crosscoder.sparse_products import csr

_SAMPLE_KEPT = 256  # sampled scores above the candidate threshold: about ±1/16 noise on the candidate count


@dataclass
class Picked:
    """The entries one step decodes, ordered by bag: bag, token and feature (long [n]), value ReLU(z)
    (float [n]); ``bags`` = B·(G+A); the first ``main`` entries are the picked ones, the rest AuxK's."""

    bag: torch.Tensor
    token: torch.Tensor
    col: torch.Tensor
    value: torch.Tensor
    bags: int
    main: int


def batch_top(scored: torch.Tensor, n: int) -> torch.Tensor:
    """Flat indices (ascending) of the ``n`` largest positive entries of ``scored`` [B, F] (module docstring)."""
    flat = scored.view(-1)
    N = flat.numel()
    stride = max(1, (2 * n) // _SAMPLE_KEPT) | 1  # odd: with F a power of two the sample visits every feature
    sample = flat[::stride]
    r = min(sample.numel(), max(1, (2 * n) // stride))
    t = float(sample.topk(r, sorted=False).values.min()) if N > n else 0.0
    cand = (flat > t).nonzero().squeeze(1) if t > 0 else None
    if cand is None or cand.numel() < n:
        cand = (flat > 0).nonzero().squeeze(1)
    if cand.numel() > n:  # keep the n largest, in place of a sort: a mask keeps the ascending order
        keep = torch.zeros(cand.numel(), dtype=torch.bool, device=cand.device)
        keep[flat[cand].topk(n, sorted=False).indices] = True
        cand = cand[keep]
    return cand


def pick(model, z: torch.Tensor, scored: torch.Tensor, batch: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(token, feature) long [n] of the active entries, token-major: per token the k largest
    scores (topk) or the batch's k·B largest positive ones (batchtopk)."""
    B, F = scored.shape
    if batch:
        flat = batch_top(scored, min(model.k * B, B * F))
        return flat // F, flat % F
    k = min(model.k, F)
    cols = scored.topk(k, dim=1, sorted=False).indices.reshape(-1)
    return torch.arange(B, device=z.device).repeat_interleave(k), cols


def aux_pick(z: torch.Tensor, w: torch.Tensor, dead: torch.Tensor, k_aux: int) -> tuple[torch.Tensor, ...] | None:
    """AuxK's entries: per token the ``k_aux`` dead features of largest ``ReLU(z)·w`` (token, feature
    long [B·k], value [B·k]); None when nothing is dead."""
    dead_ids = dead.nonzero().squeeze(1)
    k = min(k_aux, dead_ids.numel())
    if k == 0:
        return None
    fz = z[:, dead_ids].clamp_min_(0)  # [B, n_dead]
    top = (fz * w[dead_ids]).topk(k, dim=1, sorted=False).indices
    B = z.shape[0]
    return (torch.arange(B, device=z.device).repeat_interleave(k), dead_ids[top].reshape(-1),
            fz.gather(1, top).reshape(-1))


def bagged(z: torch.Tensor, main: tuple[torch.Tensor, torch.Tensor], aux: tuple[torch.Tensor, ...] | None,
           prefixes: list[int]) -> Picked:
    """The main entries in bags ``token·G + group`` (sorted: no sort at all when G = 1), then AuxK's in
    bags ``B·G + token`` (already in token order)."""
    B, F = z.shape
    G = len(prefixes)
    tok, col = main
    value = z.view(-1)[tok * F + col].clamp_min_(0)
    bag = tok
    if G > 1:
        bag = tok * G + torch.bucketize(col, torch.tensor(prefixes[:-1], device=z.device), right=True)
        order = torch.argsort(bag, stable=True)
        bag, tok, col, value = bag[order], tok[order], col[order], value[order]
    n = col.numel()
    if aux is None:
        return Picked(bag, tok, col, value, B * G, n)
    atok, acol, avalue = aux
    return Picked(torch.cat([bag, atok + B * G]), torch.cat([tok, atok]), torch.cat([col, acol]),
                  torch.cat([value, avalue]), B * (G + 1), n)


@dataclass
class Family:
    """What the step needs of the variant: batch-wide selection (batchtopk, matryoshka), the nested
    prefixes (``[F]`` but for matryoshka), AuxK's weight and ``k_aux``, the reconstruction's reduce."""

    batch: bool
    prefixes: list[int]
    auxk_coeff: float
    k_aux: int
    reduce: str = "sum"


def topk_family_step(model, x: torch.Tensor, family: Family, dead: torch.Tensor) -> dict[str, torch.Tensor]:
    """One forward + backward of the TopK family's loss; gradients *overwrite* ``p.grad``.

    x: [B, M, d] float32; dead: bool [F]. Returns detached ``recon`` (full), ``aux`` (AuxK,
    unweighted), ``loss``, ``sparsity`` (logged), ``l0``, ``fired`` bool [F], ``e2`` [M],
    ``min_kept`` (smallest kept score, inf when none) and ``prefix_recon`` [G]."""
    if model.is_folded:
        raise ValueError("train the crosscoder unfolded (normalised space); fold the scales in afterwards")
    B, M, d = x.shape
    X = x.reshape(B, M * d)
    F = model.n_features
    with torch.no_grad():
        w = model.feature_weights()
        z = torch.addmm(model.b_enc.detach(), X, model.W_enc.detach().view(M * d, F), out=_buffer(model, "z", (B, F), x))
        scored = torch.clamp_min(z, 0, out=_buffer(model, "s", (B, F), x)).mul_(w)
        main = pick(model, z, scored, family.batch)
        aux = aux_pick(z, w, dead, family.k_aux) if family.auxk_coeff > 0 else None
        p = bagged(z, main, aux, family.prefixes)
        S = csr(p.bag, p.col, p.value, (p.bags, F))
        U, out = _upstream(model, X, S, family, aux is not None)
        _backward(model, X, S, p, U)
        out.update(_activity(p, w, B, F))
    out["sparsity"] = out.pop("scores_sum") / B
    return out


def _upstream(model, X: torch.Tensor, S: torch.Tensor, family: Family, has_aux: bool) -> tuple[torch.Tensor, dict]:
    """The bags' decodes -> their upstream gradient U [bags, M·d] and the loss terms (module docstring)."""
    B, Md = X.shape
    G = len(family.prefixes)
    r = 1.0 if family.reduce == "sum" else float(model.n_checkpoints)
    D = torch.sparse.mm(S, model.W_dec.detach().view(-1, Md))  # [B·G (+ B for AuxK), Md]
    E = torch.cumsum(D[: B * G].view(B, G, Md), 1).add_(model.b_dec.detach().view(1, 1, Md)).sub_(X[:, None])  # x̂_g − x [B, G, Md]
    e2 = E[:, G - 1].view(B, model.n_checkpoints, -1).pow(2).sum(dim=(0, 2))
    prefix_recon = torch.einsum("bgm,bgm->g", E, E) / (B * r)  # [G], without an E-sized square
    U = torch.empty_like(D)
    # group g's features serve every prefix from p_g on: the suffix sum of the prefixes' gradients
    Um = U[: B * G].view(B, G, Md)
    torch.mul(E[:, G - 1], 2.0 / (B * r), out=Um[:, G - 1])
    for g in range(G - 2, -1, -1):
        torch.add(Um[:, g + 1], E[:, g], alpha=2.0 / (B * r), out=Um[:, g])
    aux = X.new_zeros(())
    if has_aux:
        res = E[:, G - 1].neg()  # e = x − x̂, a constant of AuxK
        den = float((res - res.mean(0, keepdim=True)).pow(2).sum(1).mean())
        diff = res.sub_(D[B * G :])
        if den == 0.0:
            U[B * G :].zero_()
        else:
            aux = diff.pow(2).sum() / (B * den)
            torch.mul(diff, -2.0 * family.auxk_coeff / (B * den), out=U[B * G :])
    recon = prefix_recon[G - 1]
    loss = prefix_recon.sum() + family.auxk_coeff * aux
    return U.view(-1, Md), {"recon": recon, "aux": aux, "loss": loss, "e2": e2, "prefix_recon": prefix_recon}


def _backward(model, X: torch.Tensor, S: torch.Tensor, p: Picked, U: torch.Tensor) -> None:
    """Every gradient from the bags' upstream U [bags, M·d] (module docstring)."""
    B, Md = X.shape
    F = model.n_features
    Wd = model.W_dec.detach().view(F, Md)
    G = (p.bags // B) - (p.col.numel() > p.main)
    torch.sum(U[: B * G].view(B, G, Md)[:, 0], 0, out=_grad(model.b_dec).view(Md))
    dv = torch.sparse.sampled_addmm(S, U, Wd.t(), beta=0.0).values()
    dz = dv.mul_(p.value > 0)
    order = torch.argsort(p.col, stable=True)  # Sᵀ: the entries by feature
    col = p.col[order]
    torch.addmm(_grad(model.W_dec).view(F, Md), csr(col, p.bag[order], p.value[order], (F, p.bags)), U,
                beta=0.0, out=_grad(model.W_dec).view(F, Md))
    gWeT = _buffer(model, "gWeT", (F, Md), X)
    torch.addmm(gWeT, csr(col, p.token[order], dz[order], (F, B)), X, beta=0.0, out=gWeT)
    _grad(model.W_enc).view(Md, F).copy_(gWeT.t())
    _grad(model.b_enc).zero_().index_add_(0, p.col, dz)


def _activity(p: Picked, w: torch.Tensor, B: int, F: int) -> dict[str, torch.Tensor]:
    """``l0``, ``fired`` [F], the kept scores' sum and minimum, from the picked (not AuxK) entries with a positive value."""
    value = p.value[: p.main]
    active = value > 0
    cols = p.col[: p.main][active]
    scores = value[active] * w[cols]
    return {"l0": active.sum().float() / B, "fired": torch.bincount(cols, minlength=F) > 0,
            "scores_sum": scores.sum(),
            "min_kept": (scores.min() if scores.numel() else scores.new_tensor(float("inf"))).double()}
