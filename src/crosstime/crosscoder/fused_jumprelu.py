"""Hand-derived forward + backward of the JumpReLU training loss (tanh or step penalty).

The same loss as :class:`~crosstime.crosscoder.jumprelu.JumpReLURecipe` under autograd::

    z = X W_enc + b_enc;  θ = exp(log θ);  f = z ⊙ 1{z > θ};  x̂ = f W_dec + b_dec;  g = 2 (x̂ − x) / (B·r)
    tanh: P = (1/B) Σ_b Σ_i tanh(c f_bi w_i)        step: P = (1/B) Σ_b Σ_i 1{z_bi > θ_i}
    ∂f = g W_decᵀ + (λ c/B) w ⊙ (1 − tanh²(c f w))   (step: g W_decᵀ; the step has no z-gradient)
    ∂z = ∂f ⊙ 1{z > θ};  ∂W_enc = Xᵀ ∂z;  ∂b_enc = Σ_b ∂z
    ∂θ_i = −(1/ε) Σ_b 1{|z_bi − θ_i| < ε/2} (θ_i ∂f_bi + [step] λ/B);   ∂log θ = θ ⊙ ∂θ
    ∂W_dec = fᵀ g + (λ c/B) Σ_b f (1 − tanh²) ⊙ ∂w/∂W_dec  (tanh; step: fᵀ g);   ∂b_dec = Σ_b g

(the straight-through rectangle kernel of width ε, as :class:`~.jumprelu._JumpReLUFn` and
:class:`~.jumprelu._StepFn`; w the decoder-norm weights of :meth:`~.model.Crosscoder.feature_weights`).

Why in row blocks: the elementwise work (threshold, tanh, its derivative, the STE window, the
masked gradient) is a dozen operations over the ``[F, B]`` activations, each one trip through
memory as a whole-tensor aten op. Here the encoder GEMM and the ∂f / ∂W_enc GEMMs run per block of
:data:`BLOCK_BYTES` of rows, so each block's elementwise operations run on data still in (L3)
cache right after the GEMM wrote it, and ∂f never exists whole (64 MB at F = 16384). Kept whole
between the forward and the backward: f, z − θ (both ``[F, B]``, feature-major as in
:mod:`.fused`) and, for tanh, ``1 − tanh²`` (also ``[F, B]``).

Once few entries are active (below :data:`~.sparse_products.SPARSE_BELOW`, on the CPU) the
decode, ∂W_dec, ∂f and ∂W_enc run over the entries with ``z − θ > −ε/2`` only (:mod:`.sparse_products`):
the active ones (∂z is zero elsewhere) and those in the STE window below θ (∂θ needs ∂f there).
When the window holds so many that the union is not sparse, the step keeps its dense GEMMs.
"""

from __future__ import annotations

import torch

from crosstime.crosscoder.fused import _buffer, _grad, decoder_grads, error
from crosstime.crosscoder.sparse_products import Entries, worth_it

BLOCK_BYTES = 16 << 20  # one block of [rows, B] fp32 (half of this CPU's 32 MB L3). Measured at F = 4096,
# B = 1024 (one thread, CPU time): 1, 4 and 16 MB equal within noise; with two threads on a loaded machine each
# aten op's thread barrier costs, and 16 MB (fewer ops) was 1.47× ReLU against 1.80× for 4 MB

_threshold_backward_ = torch.ops.aten.threshold_backward.grad_input  # g · 1{s > t}, one pass
_window_ = torch.ops.aten.hardtanh_backward.grad_input  # g · 1{lo < s < hi}: the STE rectangle, one pass


def jumprelu_step(model, x: torch.Tensor, coeff: float, penalty: str, tanh_c: float, reduce: str = "sum",
                  peak: bool = False, sparse: bool | None = None) -> dict[str, torch.Tensor]:
    """One forward + backward of the JumpReLU loss; gradients *overwrite* ``p.grad``.

    x: [B, M, d] float32; penalty "tanh" (``tanh_c`` its c) or "step"; ``sparse``: the sparse products
    (True), the dense GEMMs (False) or whichever is faster at this step's density (None). Returns detached scalars
    ``recon``, ``sparsity``, ``loss``, ``l0``, ``fired`` bool [F], ``e2`` [M] (Σ squared error per
    checkpoint) and, when ``peak``, ``peak`` [F] (each feature's largest pre-activation in the batch).
    The model must be unfolded and its θ₀, ε set (the recipe does both).
    """
    if model.is_folded:
        raise ValueError("train the crosscoder unfolded (normalised space); fold the scales in afterwards")
    if penalty not in ("tanh", "step"):
        raise ValueError(f"jumprelu penalty must be 'tanh' or 'step', got {penalty!r}")
    B, M, d = x.shape
    X = x.reshape(B, M * d)
    r = 1.0 if reduce == "sum" else float(M)
    with torch.no_grad():
        theta = model.threshold.detach()  # [F]
        norms = model.decoder_norms().detach()  # [F, M]
        w = model.feature_weights(norms)  # [F]
        cw = tanh_c * w if penalty == "tanh" else None
        fT, yT, q, rows = _forward(model, X, theta, cw)
        entries = _entries(fT, yT, rows["count"].sum(), float(model.bandwidth) / 2, sparse)
        e = error(model, X, fT, entries)  # x̂ − x [B, M·d]
        e2 = e.view(B, M, d).pow(2).sum(dim=(0, 2))  # [M]
        recon = e2.sum() / (B * r)
        g = e.mul_(2.0 / (B * r))
        sparsity = (rows["tanh"] if penalty == "tanh" else rows["count"]).sum() / B
        gw = rows["fq"] * (coeff * tanh_c / B) if penalty == "tanh" else None  # ∂L/∂w [F]
        decoder_grads(model, fT, entries, g, norms, w, gw)
        kw = coeff * cw / B if penalty == "tanh" else None  # ∂P/∂f = kw ⊙ (1 − tanh²)
        step_k = 0.0 if penalty == "tanh" else coeff / B
        if entries is None:
            _encoder_grads(model, X, g, yT, fT, q, theta, kw, step_k)
        else:
            _sparse_encoder_grads(model, X, g, entries, yT, q, theta, kw, step_k)
        out = {"recon": recon, "sparsity": sparsity, "loss": recon + coeff * sparsity,
               "l0": rows["count"].sum() / B, "fired": rows["count"] > 0, "e2": e2}
        if peak:
            out["peak"] = yT.amax(1).add_(theta)
    return out


def _rows(F: int, B: int) -> int:
    """Rows per block: :data:`BLOCK_BYTES` of a [rows, B] fp32 block, at least one."""
    return max(1, min(F, BLOCK_BYTES // (4 * B)))


def _forward(model, X: torch.Tensor, theta: torch.Tensor, cw: torch.Tensor | None):
    """``fT`` = f [F, B], ``yT`` = z − θ [F, B], ``q`` = 1 − tanh²(c f w) [F, B] (tanh; None for step) and
    the per-feature sums ``count`` = Σ_b 1{f > 0}, ``tanh`` = Σ_b tanh(c f w), ``fq`` = Σ_b f q (each [F])."""
    B, Md = X.shape
    F = model.n_features
    We = model.W_enc.detach().view(Md, F)
    be = model.b_enc.detach()
    fT, yT = _buffer(model, "jr_f", (F, B), X), _buffer(model, "jr_y", (F, B), X)
    q = _buffer(model, "jr_q", (F, B), X) if cw is not None else None
    n = _rows(F, B)
    s = _buffer(model, "jr_s", (n, B), X)
    one, minus_one = X.new_ones(()), -X.new_ones(())
    rows = {"count": X.new_empty(F), "tanh": X.new_empty(F), "fq": X.new_empty(F)}
    for a in range(0, F, n):
        sl = slice(a, min(a + n, F))
        k = sl.stop - a
        z = torch.addmm(be[sl, None], We[:, sl].t(), X.t(), out=fT[sl])
        # f = z · 1{z − θ > 0}, in place: z − θ > 0 exactly when z > θ (float subtraction keeps the sign)
        f = _threshold_backward_(z, torch.sub(z, theta[sl, None], out=yT[sl]), 0, grad_input=z)
        torch.sum(torch.sign(f, out=s[:k]), 1, out=rows["count"][sl])  # f ≥ θ > 0 where active
        if cw is None:
            continue
        # tanh(a) = 2σ(2a) − 1: aten's sigmoid is vectorised, its tanh ≈ 6× slower on this CPU
        t = torch.mul(f, 2 * cw[sl, None], out=s[:k]).sigmoid_()
        t = torch.add(minus_one, t, alpha=2, out=t)
        torch.sum(t, 1, out=rows["tanh"][sl])
        qk = torch.addcmul(one, t, t, value=-1.0, out=q[sl])  # 1 − tanh², = 1 where f = 0
        torch.sum(torch.mul(f, qk, out=s[:k]), 1, out=rows["fq"][sl])
    return fT, yT, q, rows


def _entries(fT: torch.Tensor, yT: torch.Tensor, active: torch.Tensor, half: float,
             sparse: bool | None) -> Entries | None:
    """The entries the sparse products run over (``z − θ > −ε/2``: active or in the STE window), or None
    for the dense GEMMs: ``sparse`` False, or None and either the ``active`` count [] or the union too dense."""
    if sparse is False or (sparse is None and not worth_it(active, fT.shape)):
        return None
    entries = Entries.where(yT > -half, fT)
    if sparse is None and not worth_it(active.new_tensor(entries.feat.numel()), fT.shape):
        return None  # a wide window: the union is not sparse
    return entries


def _encoder_grads(model, X: torch.Tensor, g: torch.Tensor, yT: torch.Tensor, fT: torch.Tensor,
                   q: torch.Tensor | None, theta: torch.Tensor, kw: torch.Tensor | None, step_k: float) -> None:
    """∂W_enc, ∂b_enc and ∂log θ from g [B, M·d], block by block (∂f never whole; module docstring).

    kw [F]: the tanh penalty's ∂P/∂f = kw ⊙ q (None: step); step_k = λ/B, the step penalty's
    weight in ∂θ (0 for tanh)."""
    B, Md = X.shape
    F = fT.shape[0]
    Wd = model.W_dec.detach().view(F, Md)
    gWe, gbe = _grad(model.W_enc).view(Md, F), _grad(model.b_enc)
    half = float(model.bandwidth) / 2
    win = X.new_empty(F)  # Σ_b 1{|z − θ| < ε/2} ∂f (tanh) or … (θ ∂f + step_k) (step)
    n = _rows(F, B)
    s, u = _buffer(model, "jr_s", (n, B), X), _buffer(model, "jr_u", (n, B), X)
    wT = _buffer(model, "jr_we", (n, Md), X)
    step = X.new_tensor(step_k)
    for a in range(0, F, n):
        sl = slice(a, min(a + n, F))
        k = sl.stop - a
        gf = torch.mm(Wd[sl], g.t(), out=s[:k])  # ∂f [k, B] of the reconstruction
        if q is not None:
            gf.addcmul_(q[sl], kw[sl, None])
        # tanh: Σ_b window · ∂f (θ applied per feature below); step: Σ_b window · (θ ∂f + λ/B)
        v = gf if q is not None else torch.addcmul(step, gf, theta[sl, None], out=u[:k])
        torch.sum(_window_(v, yT[sl], -half, half, grad_input=u[:k]), 1, out=win[sl])
        gz = _threshold_backward_(gf, fT[sl], 0, grad_input=gf)  # ∂z = ∂f · 1{f > 0}
        torch.sum(gz, 1, out=gbe[sl])
        gWe[:, sl].copy_(torch.mm(gz, X, out=wT[:k]).t())
    _threshold_grad(model, win, theta, q is not None)


def _sparse_encoder_grads(model, X: torch.Tensor, g: torch.Tensor, entries: Entries, yT: torch.Tensor,
                          q: torch.Tensor | None, theta: torch.Tensor, kw: torch.Tensor | None, step_k: float) -> None:
    """:func:`_encoder_grads` over the entries only: ∂f where ``z − θ > −ε/2``, the rest of ∂f is never needed."""
    F = yT.shape[0]
    feat, tok = entries.feat, entries.tok
    gf = entries.grad_f(model.W_dec.detach().view(F, -1), g)  # ∂f [n] of the reconstruction
    if q is not None:
        gf.addcmul_(q[feat, tok], kw[feat])
    half = float(model.bandwidth) / 2
    v = gf if q is not None else torch.addcmul(gf.new_tensor(step_k), gf, theta[feat])
    win = X.new_zeros(F).index_add_(0, feat, v * (yT[feat, tok] < half))  # every entry is above −ε/2
    dz = gf.mul_(entries.value > 0)  # ∂z = ∂f · 1{f > 0}
    entries.encoder_grads(X, dz, _grad(model.W_enc).view(-1, F), _grad(model.b_enc),
                          _buffer(model, "gWeT", (F, X.shape[1]), X))
    _threshold_grad(model, win, theta, q is not None)


def _threshold_grad(model, win: torch.Tensor, theta: torch.Tensor, tanh: bool) -> None:
    """∂log θ = θ ∂θ from ``win`` [F], the window sums (module docstring)."""
    scale = theta * (-1.0 / float(model.bandwidth))
    torch.mul(win, scale * theta if tanh else scale, out=_grad(model.log_threshold))
