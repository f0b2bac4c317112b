"""Crosscoder activation variants, registered by name (``relu``, ``topk``, ``batchtopk``, ``jumprelu``).

Every variant shares the base :class:`~crosstime.crosscoder.model.Crosscoder` weights and
GEMMs and only changes σ in ``f = σ(z)``. Losses live in :mod:`crosstime.crosscoder.losses`
(models hold no loss code). Rankings and thresholds use the feature's decoder weight
``w_i = Σ_m ‖W_dec[i, m]‖`` in normalised space, so folding never changes which features fire.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crosstime.crosscoder.model import Crosscoder, CrosscoderConfig, register


@dataclass
class SparseFeatures:
    """Active features of a batch in CSR form: row ``b`` owns ``values[offsets[b]:offsets[b+1]]``.

    values [nnz] float, cols [nnz] long (feature ids), offsets [B] long (start of each row).
    """

    values: torch.Tensor
    cols: torch.Tensor
    offsets: torch.Tensor
    batch_size: int

    def to_dense(self, n_features: int) -> torch.Tensor:
        counts = torch.diff(self.offsets, append=self.offsets.new_tensor([self.values.numel()]))
        rows = torch.repeat_interleave(torch.arange(self.batch_size, device=self.values.device), counts)
        out = self.values.new_zeros(self.batch_size, n_features)
        return out.index_put((rows, self.cols), self.values)


@register("relu")
class ReLUCrosscoder(Crosscoder):
    """``f = ReLU(z)``, trained with the decoder-norm-weighted L1 ``Σ_i f_i w_i`` (the papers' crosscoder).

    ``w_i = Σ_m ‖W_dec[i,m]‖`` ("sum", default, the papers') or ``‖W_dec[i]‖`` of the
    concatenated decoder ("concat"); the sum favours features that vanish from some checkpoints.
    """

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z)


class _SparseDecodeMixin:
    """Decode only the active features: ``x̂[b] = Σ_j v_j W_dec[c_j] + b_dec`` via ``embedding_bag``.

    Cost ``O(nnz · M·d)`` instead of ``O(B · F · M·d)``; equal to :meth:`decode` of the dense
    features up to float summation order.
    """

    def decode_sparse(self, sf: SparseFeatures) -> torch.Tensor:
        F, M, d = self.W_dec.shape
        w = self.W_dec.reshape(F, M * d)
        out = torch.nn.functional.embedding_bag(sf.cols, w, sf.offsets, mode="sum", per_sample_weights=sf.values)
        return (out + self.b_dec.reshape(1, -1)).view(sf.batch_size, M, d)


@register("topk")
class TopKCrosscoder(_SparseDecodeMixin, Crosscoder):
    """Keep, per token, the k features with the largest ``ReLU(z_i) · w_i``; f takes ``ReLU(z_i)`` there.

    Trained with reconstruction plus AuxK on dead features (Gao et al. 2024, "Scaling and
    evaluating sparse autoencoders"). Ranking by ``f_i · w_i`` as BatchTopK does (a feature's
    contribution to the reconstruction), so the two variants agree on what "largest" means.
    """

    def __init__(self, config: CrosscoderConfig):
        super().__init__(config)
        self.k = config.k  # the trainer may anneal this; the config holds the final value

    def _scored(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.relu(z)
        return f, f * self.feature_weights().to(f.dtype)

    def encode_sparse(self, x: torch.Tensor) -> SparseFeatures:
        """x [B, M, d] -> the k active features of every token (CSR)."""
        return self.activate_sparse(self.pre_acts(x))

    def activate_sparse(self, z: torch.Tensor) -> SparseFeatures:
        f, scored = self._scored(z)
        k = min(self.k, f.shape[1])
        idx = scored.topk(k, dim=1, sorted=False).indices  # [B, k]
        B = f.shape[0]
        return SparseFeatures(f.gather(1, idx).reshape(-1), idx.reshape(-1),
                              torch.arange(B, device=f.device) * k, B)

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        f, scored = self._scored(z)
        k = min(self.k, f.shape[1])
        idx = scored.topk(k, dim=1, sorted=False).indices
        return torch.zeros_like(f).scatter(1, idx, f.gather(1, idx))


@register("batchtopk")
class BatchTopKCrosscoder(_SparseDecodeMixin, Crosscoder):
    """BatchTopK (Bussmann et al. 2024): in training keep the ``k·B`` largest ``ReLU(z)·w`` over the batch.

    At inference (``model.eval()``) a feature fires where ``ReLU(z_i)·w_i > threshold``, a
    scalar the *trainer* estimates during training steps (EMA of the smallest kept score)
    via :meth:`update_threshold`. Nothing in encode/forward or validation changes it (the
    reference's validation updated it: bug B2). Before any estimate exists (threshold < 0)
    eval mode falls back to the batch top-k.
    """

    def __init__(self, config: CrosscoderConfig):
        super().__init__(config)
        self.k = config.k
        self.register_buffer("threshold", torch.tensor(-1.0))

    def _scored(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.relu(z)
        return f, f * self.feature_weights().to(f.dtype)

    def _use_threshold(self) -> bool:
        return not self.training and float(self.threshold) >= 0

    def _batch_topk_flat(self, scored: torch.Tensor) -> torch.Tensor:
        n = min(self.k * scored.shape[0], scored.numel())
        return scored.reshape(-1).topk(n, sorted=False).indices

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        f, scored = self._scored(z)
        if self._use_threshold():
            return f * (scored > self.threshold)
        flat = self._batch_topk_flat(scored)
        return torch.zeros_like(f).reshape(-1).scatter(0, flat, f.reshape(-1).gather(0, flat)).view_as(f)

    def encode_sparse(self, x: torch.Tensor) -> SparseFeatures:
        """x [B, M, d] -> the active features (CSR): batch top-k in training, threshold in eval."""
        return self.activate_sparse(self.pre_acts(x))

    def activate_sparse(self, z: torch.Tensor) -> SparseFeatures:
        f, scored = self._scored(z)
        B, F = f.shape
        if self._use_threshold():
            flat = (scored > self.threshold).reshape(-1).nonzero().squeeze(1)
        else:
            flat = self._batch_topk_flat(scored).sort().values  # row-major order = CSR
        rows = flat // F
        counts = torch.bincount(rows, minlength=B)
        offsets = torch.cumsum(counts, 0) - counts
        return SparseFeatures(f.reshape(-1)[flat], flat % F, offsets, B)

    @torch.no_grad()
    def update_threshold(self, min_kept_score: float, beta: float) -> None:
        """EMA update (first call sets it) with the smallest score kept in a training batch."""
        if not (min_kept_score == min_kept_score) or min_kept_score == float("inf"):  # nothing fired
            return
        t = float(self.threshold)
        new = min_kept_score if t < 0 else beta * t + (1 - beta) * min_kept_score
        self.threshold.fill_(new)


class _JumpReLUFn(torch.autograd.Function):
    """``z · H(z − θ)`` with the straight-through threshold gradient of Rajamanoharan et al. (2024).

    ∂/∂z = H(z − θ);  ∂/∂θ = −(θ/ε) · K((z − θ)/ε) with K the rectangle kernel 1{|u| < ½}.
    """

    @staticmethod
    def forward(ctx, z, threshold, bandwidth: float):
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return z * (z > threshold)

    @staticmethod
    def backward(ctx, g):
        z, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        gz = g * (z > threshold)
        window = ((z - threshold).abs() < eps / 2).to(g.dtype)
        gt = -(threshold / eps) * (g * window).sum(0)
        return gz, gt, None


class _StepFn(torch.autograd.Function):
    """``H(z − θ)`` with ∂/∂z = 0 and ∂/∂θ = −(1/ε) K((z − θ)/ε) (the JumpReLU paper's L0 estimator)."""

    @staticmethod
    def forward(ctx, z, threshold, bandwidth: float):
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx, g):
        z, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        window = ((z - threshold).abs() < eps / 2).to(g.dtype)
        return None, -(1.0 / eps) * (g * window).sum(0), None


def step_with_ste(z: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """``H(z − θ)`` [B, F] whose gradient reaches θ (straight-through; for the L0 penalty)."""
    return _StepFn.apply(z, threshold, bandwidth)


@register("jumprelu")
class JumpReLUCrosscoder(Crosscoder):
    """JumpReLU: ``f_i = z_i · H(z_i − θ_i)`` with a learned per-feature threshold θ_i > 0.

    Follows Rajamanoharan et al. 2024, "Jumping Ahead: Improving Reconstruction Fidelity
    with JumpReLU Sparse Autoencoders" (arXiv 2407.14435): θ = exp(log_threshold), gradients
    to θ by a straight-through estimator with a rectangle kernel of width ε
    (``jumprelu_bandwidth``); trained with an L0-style penalty (``losses.jumprelu_penalty``:
    the paper's step L0 or the tanh of decoder-norm-weighted activations used for
    crosscoders over many checkpoints by the "Evolution of Concepts" paper).
    """

    def __init__(self, config: CrosscoderConfig):
        super().__init__(config)
        self.log_threshold = torch.nn.Parameter(torch.full((config.n_features,), float(torch.log(torch.tensor(
            config.jumprelu_threshold_init)))))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "log_threshold"):
            self.log_threshold.fill_(float(torch.log(torch.tensor(self.config.jumprelu_threshold_init))))

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        return _JumpReLUFn.apply(z, self.threshold.to(z.dtype), self.config.jumprelu_bandwidth)
