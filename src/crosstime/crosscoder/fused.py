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

Once training has made f sparse (below :data:`~.sparse_products.SPARSE_BELOW` of the entries
active, on the CPU) the decode, ∂W_dec, ∂f and ∂W_enc run over the active entries only
(:mod:`.sparse_products`): ∂z is zero wherever f is, so ∂f is needed only there. The encoder GEMM
stays dense (every pre-activation decides which entries are active).
"""

from __future__ import annotations

import weakref

import torch

from crosstime.crosscoder.sparse_products import Entries, worth_it

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


def relu_l1_step(model, x: torch.Tensor, coeff: float, reduce: str = "sum",
                 sparse: bool | None = None) -> dict[str, torch.Tensor]:
    """One forward + backward of the ReLU/L1 loss; gradients *overwrite* ``p.grad``.

    x: [B, M, d] float32; ``sparse``: the sparse products (True), the dense GEMMs (False) or whichever
    is faster at this step's density (None, see :func:`~.sparse_products.worth_it`). Returns detached
    scalars ``recon``, ``sparsity``, ``loss``, ``l0`` (mean active features per token), ``fired`` bool
    [F] and ``e2`` [M] (Σ squared error per checkpoint) for the metrics. The model must be unfolded
    (training happens in normalised space).
    """
    if model.is_folded:
        raise ValueError("train the crosscoder unfolded (normalised space); fold the scales in afterwards")
    B, M, d = x.shape
    X = x.reshape(B, M * d)
    r = 1.0 if reduce == "sum" else float(M)
    with torch.no_grad():
        fT = _encode(model, X)
        # f >= 0; bool reductions (count_nonzero, (f > 0).sum()) are ~100× slower on CPU
        nnz = torch.sign(fT, out=_buffer(model, "gzT", fT.shape, x)).sum()
        use_sparse = worth_it(nnz, fT.shape) if sparse is None else sparse
        entries = Entries.where(fT, fT) if use_sparse else None
        e = error(model, X, fT, entries)
        norms = model.decoder_norms().detach()  # [F, M], once per step
        w = model.feature_weights(norms)  # [F]
        e2 = e.view(B, M, d).pow(2).sum(dim=(0, 2))  # [M]
        recon = e2.sum() / (B * r)
        colsum = fT.sum(1)  # [F]
        sparsity = colsum @ w / B
        g = e.mul_(2.0 / (B * r))
        decoder_grads(model, fT, entries, g, norms, w, colsum * (coeff / B))  # ∂L/∂w = (λ/B) Σ_b f
        if entries is None:
            _encoder_grads(model, X, fT, g, w, coeff)
        else:
            _sparse_encoder_grads(model, X, entries, g, w, coeff)
    return {"recon": recon, "sparsity": sparsity, "loss": recon + coeff * sparsity, "l0": nnz / B,
            "fired": colsum > 0, "e2": e2}


def _encode(model, X: torch.Tensor) -> torch.Tensor:
    """``fT = ReLU(W_encᵀ Xᵀ + b_enc)`` [F, B] from X [B, M·d]."""
    B, Md = X.shape
    F = model.n_features
    We = model.W_enc.detach().view(Md, F)
    # plain GEMM, then the bias and ReLU in one pass (aten._add_relu_ has a CPU kernel only)
    fT = torch.mm(We.t(), X.t(), out=_buffer(model, "fT", (F, B), X))
    if X.device.type == "cpu":
        _add_relu_(fT, model.b_enc.detach()[:, None])
    else:
        fT.add_(model.b_enc.detach()[:, None]).relu_()
    return fT


def error(model, X: torch.Tensor, fT: torch.Tensor, entries: Entries | None) -> torch.Tensor:
    """``x̂ − x = f W_dec + b_dec − X`` [B, M·d] from fT [F, B]: the dense GEMM, or over ``entries``."""
    Wd = model.W_dec.detach().view(fT.shape[0], -1)
    if entries is None:
        return torch.addmm(model.b_dec.detach().view(1, -1), fT.t(), Wd).sub_(X)
    return entries.error(Wd, model.b_dec.detach().view(-1), X)


def decoder_grads(model, fT: torch.Tensor, entries: Entries | None, g: torch.Tensor, norms: torch.Tensor,
                  w: torch.Tensor, gw: torch.Tensor | None) -> None:
    """∂b_dec = Σ_b g and ∂W_dec = fᵀ g (+ gw ⊙ ∂w/∂W_dec, the penalty's path through the decoder norms
    w [F] of ``norms`` [F, M]; gw = ∂L/∂w [F], None for none), by the dense GEMM or over ``entries``."""
    F, M = norms.shape
    Md = g.shape[1]
    torch.sum(g, 0, out=_grad(model.b_dec).view(Md))
    gWd = _grad(model.W_dec).view(F, Md)
    if gw is not None:  # ∂w/∂W_dec[i,m] = W_dec[i,m]/‖W_dec[i,m]‖ (sum) or W_dec[i]/‖W_dec[i]‖ (concat)
        if model.config.l1_norm == "concat":
            coef = (gw / w.clamp_min(1e-12))[:, None].expand(F, M)
        else:
            coef = gw[:, None] / norms.clamp_min(1e-12)
        torch.mul(model.W_dec.detach(), coef[:, :, None], out=gWd.view(F, M, -1))
    beta = 0.0 if gw is None else 1.0  # nothing to add to (beta 0 ignores gWd's old contents)
    if entries is None:
        torch.addmm(gWd, fT, g, beta=beta, out=gWd)
    else:
        entries.add_decoder_grad_(gWd, g, beta)


def _encoder_grads(model, X: torch.Tensor, fT: torch.Tensor, g: torch.Tensor, w: torch.Tensor, coeff: float) -> None:
    """∂W_enc and ∂b_enc by the dense GEMMs, from ``g = ∂L/∂x̂`` [B, M·d] (module docstring)."""
    B, Md = X.shape
    F = fT.shape[0]
    Wd = model.W_dec.detach().view(F, Md)
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


def _sparse_encoder_grads(model, X: torch.Tensor, entries: Entries, g: torch.Tensor, w: torch.Tensor,
                          coeff: float) -> None:
    """:func:`_encoder_grads` over the active entries: there ∂z = ∂f = g W_decᵀ + (λ/B) w."""
    B, Md = X.shape
    F = model.n_features
    dz = entries.grad_f(model.W_dec.detach().view(F, Md), g).add_(w[entries.feat], alpha=coeff / B)
    entries.encoder_grads(X, dz, _grad(model.W_enc).view(Md, F), _grad(model.b_enc),
                          _buffer(model, "gWeT", (F, Md), X))
