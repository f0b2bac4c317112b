"""Hand-derived forward + backward of the ReLU / decoder-norm-L1 training loss.

Autograd for ``loss = mean_b Σ (x̂ − x)² + λ · mean_b Σ_i f_i w_i`` records every
elementwise op over the ``[B, F]`` activations and replays it backwards, computes the decoder
norms in two graphs, and allocates fresh gradients each step. Here the same gradients are
written straight into the parameters' ``.grad`` with the step's five GEMMs (``addmm``
carries the biases and the L1 terms, so they cost no extra pass) and a single fused
ReLU-backward over the ``[F, B]`` activations:

    z = X W_enc + b_enc;  f = ReLU(z);  x̂ = f W_dec + b_dec;  g = ∂L/∂x̂ = 2 (x̂ − x) / (B·r)
    ∂W_dec = fᵀ g + (λ/B) (Σ_b f) ⊙ ∂w/∂W_dec        ∂b_dec = Σ_b g
    ∂f = g W_decᵀ + (λ/B) w;   ∂z = ∂f ⊙ 1{f > 0}      ∂W_enc = Xᵀ ∂z;   ∂b_enc = Σ_b ∂z

The ``[B, F]`` activations f and ∂z are kept feature-major (``fT``, ``gzT``: ``[F, B]``
contiguous) and ∂W_enc is computed transposed. On this CPU's MKL these layouts run the
encoder, ∂W_dec, ∂f and ∂W_enc GEMMs at 176–186 GFLOP/s instead of 153–176 (the decode loses
a little): 2–5 ms of a ≈100 ms step (``benchmarks/RESULTS.md``).

with X = x as [B, M·d] and r = 1 (sum over checkpoints) or M (mean). ``tests`` check it
against autograd on :class:`~crosstime.crosscoder.variants.ReLUCrosscoder`.
"""

from __future__ import annotations

import weakref

import torch

_threshold_backward_ = torch.ops.aten.threshold_backward.grad_input
_add_relu_ = torch.ops.aten._add_relu_.Tensor  # relu(a + b) in place, one pass (CPU only)
_WORKSPACE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _buffer(model, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A scratch tensor (here [F, B]) kept between steps: no fresh 16 MB allocation (and page faults) per step."""
    ws = _WORKSPACE.setdefault(model, {})
    t = ws.get(name)
    if t is None or t.shape != shape or t.dtype != like.dtype or t.device != like.device:
        t = ws[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
    return t


def _grad(p: torch.nn.Parameter) -> torch.Tensor:
    if p.grad is None or p.grad.shape != p.shape:
        p.grad = torch.empty_like(p)
    return p.grad


def relu_l1_step(model, x: torch.Tensor, coeff: float, reduce: str = "sum") -> dict[str, torch.Tensor]:
    """One forward + backward of the ReLU/L1 loss; gradients *overwrite* ``p.grad``.

    x: [B, M, d] float32. Returns detached scalars ``recon``, ``sparsity``, ``loss``, ``l0``
    (mean active features per token), ``fired`` bool [F] and ``e2`` [M] (Σ squared error per
    checkpoint) for the metrics. The model must be unfolded (training happens in normalised space).
    """
    if model.is_folded:
        raise ValueError("train the crosscoder unfolded (normalised space); fold the scales in afterwards")
    B, M, d = x.shape
    X = x.reshape(B, M * d)
    r = 1.0 if reduce == "sum" else float(M)
    with torch.no_grad():
        fT, e, norms, w = _forward(model, X)
        e2 = e.view(B, M, d).pow(2).sum(dim=(0, 2))  # [M]
        recon = e2.sum() / (B * r)
        colsum = fT.sum(1)  # [F]
        sparsity = colsum @ w / B
        # f >= 0; bool reductions (count_nonzero, (f > 0).sum()) are ~100× slower on CPU
        l0 = torch.sign(fT, out=_buffer(model, "gzT", fT.shape, x)).sum() / B
        _backward(model, X, fT, e.mul_(2.0 / (B * r)), norms, w, colsum, coeff)
    return {"recon": recon, "sparsity": sparsity, "loss": recon + coeff * sparsity, "l0": l0,
            "fired": colsum > 0, "e2": e2}


def _forward(model, X: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``fT = ReLU(W_encᵀ Xᵀ + b_enc)`` [F, B], the error ``x̂ − x`` [B, M·d] (in x̂'s memory), the decoder
    norms [F, M] and the per-feature L1 weights ``w`` [F]."""
    B, Md = X.shape
    F = model.n_features
    We = model.W_enc.detach().view(Md, F)
    Wd = model.W_dec.detach().view(F, Md)
    # plain GEMM, then the bias and ReLU in one pass (aten._add_relu_ has a CPU kernel only)
    fT = torch.mm(We.t(), X.t(), out=_buffer(model, "fT", (F, B), X))
    if X.device.type == "cpu":
        _add_relu_(fT, model.b_enc.detach()[:, None])
    else:
        fT.add_(model.b_enc.detach()[:, None]).relu_()
    e = torch.addmm(model.b_dec.detach().view(1, Md), fT.t(), Wd).sub_(X)  # x̂ − x [B, Md]
    norms = model.decoder_norms().detach()  # [F, M], once per step
    w = norms.pow(2).sum(1).sqrt() if model.config.l1_norm == "concat" else norms.sum(1)
    return fT, e, norms, w


def _backward(model, X: torch.Tensor, fT: torch.Tensor, g: torch.Tensor, norms: torch.Tensor, w: torch.Tensor,
              colsum: torch.Tensor, coeff: float) -> None:
    """Write every gradient from ``g = ∂L/∂x̂`` [B, M·d] (see the module docstring)."""
    B, Md = X.shape
    F, M = norms.shape
    Wd = model.W_dec.detach().view(F, Md)
    torch.sum(g, 0, out=_grad(model.b_dec).view(Md))
    # ∂w/∂W_dec[i,m] = W_dec[i,m]/‖W_dec[i,m]‖ (sum) or W_dec[i]/‖W_dec[i]‖ (concat)
    if model.config.l1_norm == "concat":
        coef = (colsum * (coeff / B) / w.clamp_min(1e-12))[:, None].expand(F, M)
    else:
        coef = colsum[:, None] * (coeff / B) / norms.clamp_min(1e-12)
    gWd = _grad(model.W_dec)
    torch.mul(model.W_dec.detach(), coef[:, :, None], out=gWd)
    gWd.view(F, Md).addmm_(fT, g)
    gzT = torch.addmm((w * (coeff / B))[:, None], Wd, g.t(), out=_buffer(model, "gzT", (F, B), X))  # ∂fᵀ [F, B]
    _threshold_backward_(gzT, fT, 0, grad_input=gzT)  # ∂zᵀ = ∂fᵀ · 1{f > 0}, in place
    gWe = _grad(model.W_enc).view(Md, F)
    if X.device.type == "cpu":
        # MKL: ∂W_encᵀ = ∂zᵀ X [F, Md] runs at full GEMM speed, Xᵀ ∂z straight into [Md, F]
        # does not (≈150 GFLOP/s with ∂z feature-major); the transposing copy costs ≈1 ms
        gWe.copy_(torch.mm(gzT, X, out=_buffer(model, "gWeT", (F, Md), X)).t())
    else:  # no W_enc-sized scratch on a GPU (0.4 GB at F = 16384, M·d = 6144)
        torch.mm(X.t(), gzT.t(), out=gWe)
    torch.sum(gzT, 1, out=_grad(model.b_enc))
