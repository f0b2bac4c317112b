"""JumpReLU crosscoder (Rajamanoharan et al. 2024) with an L0-style penalty.

``f_i = z_i · H(z_i − θ_i)`` with a learned per-feature threshold θ_i; gradients reach θ by a
straight-through estimator (STE) with a rectangle kernel of width ε (the bandwidth).
Penalties: the paper's step L0, or the tanh of decoder-norm-weighted activations used for
crosscoders over many checkpoints ("Evolution of Concepts", 2025).

Parameterisation (why θ learns). θ is stored as ``log_threshold`` = log θ, and Adam moves a
parameter by about ``lr`` per step whatever its gradient's size: log θ moves by ≈ lr, i.e. θ by
the same *relative* amount ≈ lr·θ on data of any scale, and it can follow pre-activations that
grow during training by orders of magnitude (a raw θ moves by lr in absolute units: too slow on
large pre-activations, too coarse on small ones; it also needs a clamp to stay positive). What
made the first version's thresholds stand still was where they started: θ₀ = ε = 0.001 while
the pre-activations were O(0.1–10), so the STE window |z − θ| < ε/2 held almost no
pre-activations (the step penalty had next to no gradient: L0 stayed near F) and θ, moving by
lr·θ, needed thousands of steps for every factor e. Both θ₀ and ε now come from the data.

Initialisation from the data (the default, ``jumprelu_threshold_init`` / ``jumprelu_bandwidth``
= None): on the first training step, from that batch's pre-activations z (pooled over rows
and features, summed over ranks so many processes agree), θ₀ = the mean positive z and
ε = :data:`BANDWIDTH_FRACTION` · std(z): the window then holds a useful share of the
pre-activations, so the step penalty's STE gradient reaches every threshold from the first
step. Explicit values are used as given. The chosen θ₀ and ε are buffers (saved with the
weights and in the resume state, so a resumed run never re-initialises) and recorded in
config.json (``jumprelu_threshold_init``, ``jumprelu_bandwidth``) and metrics.jsonl.

Health: every :data:`CHECK_EVERY` steps the recipe compares the median threshold with the
median over features of each one's largest pre-activation in the batch, and warns once when
they are more than :data:`FAR_FACTOR` apart (thresholds that gate nothing, or everything).
metrics.jsonl gets ``threshold_median``, ``threshold_p10``, ``threshold_p90``,
``threshold_moved`` (median |θ − θ₀| / θ₀), ``threshold_init``, ``bandwidth`` and
``preact_peak_median`` (that reference, from the last check).

Training step: in fp32 the hand-derived step of :mod:`.fused_jumprelu` (``fused``, the default, as
for ReLU); ``fused=False`` (and bf16) take autograd of :meth:`JumpReLURecipe.loss`, the reference
it is tested against (tests/crosscoder/test_fused_jumprelu.py).

Crosscoders saved before θ₀ and ε were buffers (``log_threshold`` alone, the same parameter)
load exactly: their config.json's θ₀ and ε become the buffers.
"""

from __future__ import annotations

import math
import warnings
from typing import ClassVar, Literal

import torch
import torch.distributed as dist
from pydantic import Field

from crosstime.crosscoder.fused_jumprelu import jumprelu_step
from crosstime.crosscoder.model import Crosscoder, CrosscoderConfig, CrosscoderError
from crosstime.crosscoder.recipe import (
    Forward,
    Loss,
    Recipe,
    StepContext,
    StepOutput,
    dense_activity,
)
from crosstime.crosscoder.registry import JUMPRELU, Variant, VariantConfig, register

BANDWIDTH_FRACTION = 0.1  # ε = this · std of the first batch's pre-activations (when not given)
CHECK_EVERY = 100  # steps between the threshold-vs-pre-activation checks
FAR_FACTOR = 100.0  # warn when median θ and the features' median peak z are further apart than this factor


class JumpReLUConfig(VariantConfig):
    """JumpReLU's architecture settings (``CrosscoderConfig.variant_config``): θ₀ and ε as trained."""

    jumprelu_threshold_init: float | None = Field(
        None, gt=0, description="jumprelu: initial threshold θ₀ (None: from the first batch's pre-activations)")
    jumprelu_bandwidth: float | None = Field(
        None, gt=0, description="jumprelu: STE kernel width ε (None: from the first batch's pre-activations)")


class JumpReLUSettings(JumpReLUConfig):
    """JumpReLU's training settings (``TrainSettings.variant_settings``)."""

    jumprelu_threshold_init: float | None = Field(
        None, gt=0, description="jumprelu: initial θ₀ in pre-activation units (default: the mean positive "
        "pre-activation of the first batch)")
    jumprelu_bandwidth: float | None = Field(
        None, gt=0, description="jumprelu: STE kernel width ε in pre-activation units (default: 0.1 × the std of "
        "the first batch's pre-activations)")
    jumprelu_penalty: Literal["tanh", "step"] = Field("tanh", description="jumprelu sparsity: tanh(c·f·w) or step L0")
    jumprelu_tanh_c: float = Field(4.0, gt=0, description="jumprelu: c of the tanh penalty")
    fused: bool = Field(True, description="relu, jumprelu: the hand-derived fp32 step; off = autograd (the "
                        "reference path)")


class _JumpReLUFn(torch.autograd.Function):
    """``z · H(z − θ)``; ∂/∂z = H(z − θ), ∂/∂θ = −(θ/ε) · K((z − θ)/ε), K the rectangle 1{|u| < ½}."""

    @staticmethod
    def forward(ctx, z, threshold, bandwidth):
        ctx.save_for_backward(z, threshold, bandwidth)
        return z * (z > threshold)

    @staticmethod
    def backward(ctx, g):
        z, threshold, eps = ctx.saved_tensors
        gz = g * (z > threshold)
        window = ((z - threshold).abs() < eps / 2).to(g.dtype)
        gt = -(threshold / eps) * (g * window).sum(0)
        return gz, gt, None


class _StepFn(torch.autograd.Function):
    """``H(z − θ)`` with ∂/∂z = 0 and ∂/∂θ = −(1/ε) K((z − θ)/ε) (the JumpReLU paper's L0 estimator)."""

    @staticmethod
    def forward(ctx, z, threshold, bandwidth):
        ctx.save_for_backward(z, threshold, bandwidth)
        return (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx, g):
        z, threshold, eps = ctx.saved_tensors
        window = ((z - threshold).abs() < eps / 2).to(g.dtype)
        return None, -(g * window).sum(0) / eps, None


def step_with_ste(z: torch.Tensor, threshold: torch.Tensor, bandwidth: torch.Tensor) -> torch.Tensor:
    """``H(z − θ)`` [B, F] whose gradient reaches θ (straight-through; for the L0 penalty). bandwidth: 0-d."""
    return _StepFn.apply(z, threshold, bandwidth)


def jumprelu_penalty(model: JumpReLUCrosscoder, z: torch.Tensor, f: torch.Tensor, w: torch.Tensor,
                     kind: str = "tanh", c: float = 4.0) -> torch.Tensor:
    """L0-style sparsity, mean over the batch.

    ``"step"``: ``Σ_i H(z_i − θ_i)``, the plain L0 with the straight-through gradient to θ.
    ``"tanh"``: ``Σ_i tanh(c · f_i · w_i)``, a smooth L0 that includes the decoder norm so
    features cannot dodge the penalty by shrinking f and growing W_dec.
    """
    if kind == "step":
        return step_with_ste(z, model.threshold.to(z.dtype), model.bandwidth.to(z.dtype)).sum(1).mean()
    if kind == "tanh":
        return torch.tanh(c * f * w.to(f.dtype)).sum(1).mean()
    raise ValueError(f"jumprelu penalty must be 'tanh' or 'step', got {kind!r}")


def _check_due(ctx: StepContext) -> bool:
    """Whether this step checks the thresholds against the pre-activations (every CHECK_EVERY and the last)."""
    return ctx.step % CHECK_EVERY == 0 or ctx.step == ctx.total - 1


def _all_ranks_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over the ranks of a multi-process training (unchanged in a single process)."""

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


@torch.no_grad()
def preact_statistics(z: torch.Tensor) -> tuple[float, float]:
    """(mean positive pre-activation, std of all pre-activations) of z [B, F], pooled over every
    rank's rows (sums reduced across ranks, so each rank gets the global batch's numbers)."""
    z = z.double()
    pos = z.clamp_min(0)
    sums = torch.stack([pos.sum(), (z > 0).sum().double(), z.sum(), z.square().sum(), z.new_tensor(z.numel())])
    pos_sum, pos_n, s1, s2, n = _all_ranks_sum(sums).tolist()
    var = max(s2 / n - (s1 / n) ** 2, 0.0)
    return (pos_sum / pos_n if pos_n else 0.0), var ** 0.5


class JumpReLURecipe(Recipe):
    """``loss = recon + λ · penalty`` (``jumprelu_penalty``: tanh or step); θ₀ and ε from the first
    batch unless given; the thresholds' health checked and reported. In fp32 by the hand-derived
    step (:mod:`.fused_jumprelu`) unless ``fused=False`` (then autograd, the reference path)."""

    # Decoder rows start at norm 0.3 (not the L1 recipe's 0.08): pre-activations then start near
    # the scale they train to, the scale θ₀ and the fixed ε are read at. Measured on planted data
    # (tests/crosscoder/test_crosscoder_jumprelu.py setting, 1000 steps, λ = 2, ≈3 planted per row; held-out L0,
    # share recovered): 0.08 → step 8.0, 67% (z grew ~10× past ε's scale; 2000 steps: the same),
    # tanh 3.0, 96%; 0.3 → step 2.9 and tanh 2.9, both 100%; 1.0 → step 2.9, 100%, but
    # tanh(c·f·w) saturates and silences nearly every feature (L0 0.04, 21%).
    dec_init_norm: ClassVar[float] = 0.3

    def __init__(self, settings):
        super().__init__(settings)
        self._ready = False  # thresholds known to be set (checked once: a resumed model has them)
        self._warned = False
        self._preact_peak = float("nan")

    @property
    def fused_step(self) -> bool:
        """Whether a step is the hand-derived one (fp32, ``fused``: :mod:`.fused_jumprelu`) rather than autograd."""
        return self.settings.variant_settings.fused and self.settings.precision == "fp32"

    def step(self, model: Crosscoder, x: torch.Tensor, ctx: StepContext) -> StepOutput:
        if not self._ready:
            if model.needs_data_init:
                self._init_from_data(model, x)
            self._ready = True
        if not self.fused_step:
            return super().step(model, x, ctx)
        s = self.settings.variant_settings
        check = _check_due(ctx)
        out = jumprelu_step(model, x, ctx.coeff, s.jumprelu_penalty, s.jumprelu_tanh_c, self.settings.recon_reduce,
                            peak=check)
        if check:
            self._check_thresholds(model, out["peak"])
        return StepOutput(recon=out["recon"], sparsity=out["sparsity"], aux=x.new_zeros(()), loss=out["loss"],
                          l0=out["l0"], fired=out["fired"], e2=out["e2"])

    @torch.no_grad()
    def _init_from_data(self, model: JumpReLUCrosscoder, x: torch.Tensor) -> None:
        pos_mean, std = preact_statistics(model.pre_acts(x).float())
        if not (pos_mean > 0 and std > 0):
            raise CrosscoderError("jumprelu: the first batch's pre-activations are all ≤ 0 or constant, so no "
                                  "threshold scale can be read from them; give --jumprelu-threshold-init and "
                                  "--jumprelu-bandwidth")
        theta0 = float(model.threshold_init) or pos_mean
        eps = float(model.bandwidth) or BANDWIDTH_FRACTION * std
        model.set_threshold_scale(theta0, eps)

    def loss(self, model: Crosscoder, x: torch.Tensor, fwd: Forward, ctx: StepContext) -> Loss:
        s = self.settings.variant_settings
        recon = self.reconstruction(x, fwd.x_hat)
        sparsity = jumprelu_penalty(model, fwd.z, fwd.f, model.feature_weights(), s.jumprelu_penalty, s.jumprelu_tanh_c)
        l0, fired = dense_activity(fwd.f)
        if _check_due(ctx):
            self._check_thresholds(model, fwd.z.detach().float().max(0).values)
        return Loss(recon + ctx.coeff * sparsity, recon, sparsity, x.new_zeros(()), l0, fired)

    def _check_thresholds(self, model: JumpReLUCrosscoder, peak: torch.Tensor) -> None:
        """Warn (once) when the median θ is more than FAR_FACTOR from the pre-activations it gates:
        the median over features of each one's largest pre-activation in the batch (``peak`` [F]). (The median of
        all positive pre-activations would not do: a trained JumpReLU has many tiny positive ones
        that it rightly gates: in a trained planted-data run that median sat 184× below the thresholds.)"""
        peak = peak[peak > 0]
        if peak.numel() == 0:
            return
        self._preact_peak = float(peak.median())
        theta = float(model.threshold.detach().median())
        ratio = theta / self._preact_peak
        if not self._warned and not 1 / FAR_FACTOR <= ratio <= FAR_FACTOR:
            self._warned = True
            warnings.warn(f"jumprelu: the median threshold θ = {theta:.3g} is {ratio:.3g}× the median of the features' "
                          f"largest pre-activations ({self._preact_peak:.3g}), so the thresholds "
                          f"{'gate nothing' if ratio < 1 else 'gate everything'} and barely learn; leave "
                          "jumprelu_threshold_init and jumprelu_bandwidth unset to take them from the data",
                          stacklevel=2)

    def metrics(self, model: Crosscoder) -> dict[str, float]:
        with torch.no_grad():
            theta = model.threshold.detach().float()
            q = torch.quantile(theta, theta.new_tensor([0.1, 0.5, 0.9])).tolist()
            theta0 = float(model.threshold_init)
            moved = float((theta - theta0).abs().median()) / theta0 if theta0 > 0 else float("nan")
        return {"threshold_median": q[1], "threshold_p10": q[0], "threshold_p90": q[2], "threshold_moved": moved,
                "threshold_init": theta0, "bandwidth": float(model.bandwidth),
                "preact_peak_median": self._preact_peak}

    def finish(self, model: Crosscoder) -> None:
        model.record_threshold_scale()


class JumpReLUCrosscoder(Crosscoder):
    """JumpReLU: ``f_i = z_i · H(z_i − θ_i)`` with a learned per-feature threshold θ_i = exp(log_threshold_i) > 0.

    Parameter ``log_threshold [F]``; buffers (0-d) ``threshold_init`` (θ₀) and ``bandwidth`` (ε),
    0 until set (from the config, or from the data on the first training step).
    """

    def __init__(self, config: CrosscoderConfig):
        super().__init__(config)
        self.log_threshold = torch.nn.Parameter(torch.zeros(config.n_features))
        self.register_buffer("threshold_init", torch.tensor(0.0))
        self.register_buffer("bandwidth", torch.tensor(0.0))
        self._reset_thresholds()

    @torch.no_grad()
    def _reset_thresholds(self) -> None:
        c = self.config.variant_config
        self.log_threshold.fill_(math.log(c.jumprelu_threshold_init) if c.jumprelu_threshold_init else 0.0)
        self.threshold_init.fill_(c.jumprelu_threshold_init or 0.0)
        self.bandwidth.fill_(c.jumprelu_bandwidth or 0.0)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        super().reset_parameters()
        if "log_threshold" in self._parameters:  # not yet during Crosscoder.__init__
            self._reset_thresholds()

    @property
    def needs_data_init(self) -> bool:
        """θ₀ or ε not yet known (config None and no training step taken)."""
        return float(self.threshold_init) == 0.0 or float(self.bandwidth) == 0.0

    @torch.no_grad()
    def set_threshold_scale(self, theta0: float, bandwidth: float) -> None:
        """Every θ_i = θ₀, STE bandwidth ε; the config records both."""
        self.log_threshold.fill_(math.log(theta0))
        self.threshold_init.fill_(theta0)
        self.bandwidth.fill_(bandwidth)
        self.record_threshold_scale()

    def record_threshold_scale(self) -> None:
        """The config (config.json) records the θ₀ and ε the buffers hold."""
        own = self.config.variant_config.model_copy(update={"jumprelu_threshold_init": float(self.threshold_init) or None,
                                                            "jumprelu_bandwidth": float(self.bandwidth) or None})
        self.config = self.config.model_copy(update={"variant_config": own})

    @property
    def threshold(self) -> torch.Tensor:
        """θ [F] in pre-activation units."""
        return self.log_threshold.exp()

    @property
    def inference_rule(self) -> str:
        return "JumpReLU: feature i fires where its pre-activation exceeds its learned threshold θ_i"

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        return _JumpReLUFn.apply(z, self.threshold.to(z.dtype), self.bandwidth.to(z.dtype))

    def upgrade_tensors(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A state saved before θ₀ and ε were buffers: its config's values become them (θ is untouched)."""
        if "log_threshold" not in tensors or "bandwidth" in tensors:
            return tensors
        c = self.config.variant_config
        return {**tensors, "threshold_init": torch.tensor(float(c.jumprelu_threshold_init or 0.0)),
                "bandwidth": torch.tensor(float(c.jumprelu_bandwidth or 0.0))}


register(Variant("jumprelu", model=JumpReLUCrosscoder, recipe=JumpReLURecipe, activation=JUMPRELU,
                 config=JumpReLUConfig, settings=JumpReLUSettings))
