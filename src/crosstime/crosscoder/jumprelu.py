"""JumpReLU crosscoder (Rajamanoharan et al. 2024) with an L0-style penalty.

``f_i = z_i · H(z_i − θ_i)`` with a learned per-feature threshold θ_i = exp(log_threshold_i);
gradients reach θ by a straight-through estimator with a rectangle kernel of width ε
(``jumprelu_bandwidth``). Penalties: the paper's step L0, or the tanh of decoder-norm-weighted
activations used for crosscoders over many checkpoints ("Evolution of Concepts", 2025).
"""

from __future__ import annotations

import torch

from crosstime.crosscoder.model import Crosscoder, CrosscoderConfig, register
from crosstime.crosscoder.recipe import (
    Forward,
    Loss,
    Recipe,
    StepContext,
    dense_activity,
)


class _JumpReLUFn(torch.autograd.Function):
    """``z · H(z − θ)``; ∂/∂z = H(z − θ), ∂/∂θ = −(θ/ε) · K((z − θ)/ε), K the rectangle 1{|u| < ½}."""

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


def jumprelu_penalty(model: JumpReLUCrosscoder, z: torch.Tensor, f: torch.Tensor, w: torch.Tensor,
                     kind: str = "tanh", c: float = 4.0) -> torch.Tensor:
    """L0-style sparsity, mean over the batch.

    ``"step"``: ``Σ_i H(z_i − θ_i)``, the plain L0 with the straight-through gradient to θ.
    ``"tanh"``: ``Σ_i tanh(c · f_i · w_i)``, a smooth L0 that includes the decoder norm so
    features cannot dodge the penalty by shrinking f and growing W_dec.
    """
    if kind == "step":
        return step_with_ste(z, model.threshold.to(z.dtype), model.config.jumprelu_bandwidth).sum(1).mean()
    if kind == "tanh":
        return torch.tanh(c * f * w.to(f.dtype)).sum(1).mean()
    raise ValueError(f"jumprelu penalty must be 'tanh' or 'step', got {kind!r}")


class JumpReLURecipe(Recipe):
    """``loss = recon + λ · penalty`` (``jumprelu_penalty``: tanh or step)."""

    def loss(self, model: Crosscoder, x: torch.Tensor, fwd: Forward, ctx: StepContext) -> Loss:
        s = self.settings
        recon = self.reconstruction(x, fwd.x_hat)
        sparsity = jumprelu_penalty(model, fwd.z, fwd.f, model.feature_weights(), s.jumprelu_penalty, s.jumprelu_tanh_c)
        l0, fired = dense_activity(fwd.f)
        return Loss(recon + ctx.coeff * sparsity, recon, sparsity, x.new_zeros(()), l0, fired)


@register("jumprelu", recipe=JumpReLURecipe)
class JumpReLUCrosscoder(Crosscoder):
    """JumpReLU: ``f_i = z_i · H(z_i − θ_i)`` with a learned per-feature threshold θ_i > 0."""

    def __init__(self, config: CrosscoderConfig):
        super().__init__(config)
        self.log_threshold = torch.nn.Parameter(torch.full((config.n_features,), self._log_theta0()))

    def _log_theta0(self) -> float:
        return float(torch.log(torch.tensor(self.config.jumprelu_threshold_init)))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        super().reset_parameters()
        if "log_threshold" in self._parameters:  # not yet during Crosscoder.__init__
            self.log_threshold.fill_(self._log_theta0())

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    @property
    def inference_rule(self) -> str:
        return "JumpReLU: feature i fires where its pre-activation exceeds its learned threshold θ_i"

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        return _JumpReLUFn.apply(z, self.threshold.to(z.dtype), self.config.jumprelu_bandwidth)
