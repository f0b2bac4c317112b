"""ReLU crosscoder with the decoder-norm-weighted L1 penalty (the papers' crosscoder)."""

from __future__ import annotations

import torch
from pydantic import Field

from crosstime.crosscoder import losses
from crosstime.crosscoder.fused import relu_l1_step
from crosstime.crosscoder.model import Crosscoder
from crosstime.crosscoder.parallel import ShardedCrosscoder, ShardedRecipe
from crosstime.crosscoder.recipe import (
    Forward,
    Loss,
    Recipe,
    StepContext,
    StepOutput,
    dense_activity,
)
from crosstime.crosscoder.registry import RELU, CheckpointParallel, Variant, VariantConfig, register


class ReLUSettings(VariantConfig):
    """ReLU's own training settings."""

    fused: bool = Field(True, description="relu: the hand-derived fp32 step; off = autograd for every variant")


class ReLURecipe(Recipe):
    """``loss = recon + λ · mean_b Σ_i f_i w_i``; in fp32 by the hand-derived fused step (:mod:`.fused`)
    unless ``fused=False`` (then autograd, the reference path)."""

    @property
    def fused_step(self) -> bool:
        """Whether a step is the hand-derived one (fp32, ``fused``) rather than autograd."""
        return self.settings.variant_settings.fused and self.settings.precision == "fp32"

    def loss(self, model: Crosscoder, x: torch.Tensor, fwd: Forward, ctx: StepContext) -> Loss:
        recon = self.reconstruction(x, fwd.x_hat)
        sparsity = losses.l1_penalty(fwd.f, model.feature_weights())
        l0, fired = dense_activity(fwd.f)
        return Loss(recon + ctx.coeff * sparsity, recon, sparsity, x.new_zeros(()), l0, fired)

    def step(self, model: Crosscoder, x: torch.Tensor, ctx: StepContext) -> StepOutput:
        if not self.fused_step:
            return super().step(model, x, ctx)
        s = relu_l1_step(model, x, ctx.coeff, self.settings.recon_reduce)
        return StepOutput(recon=s["recon"], sparsity=s["sparsity"], aux=x.new_zeros(()), loss=s["loss"], l0=s["l0"],
                          fired=s["fired"], e2=s["e2"])


class ReLUCrosscoder(Crosscoder):
    """``f = ReLU(z)``, trained with the decoder-norm-weighted L1 ``Σ_i f_i w_i``.

    ``w_i = Σ_m ‖W_dec[i,m]‖`` ("sum", default, the papers') or ``‖W_dec[i]‖`` of the
    concatenated decoder ("concat"); the sum favours features that vanish from some checkpoints.
    """

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z)

    @property
    def inference_rule(self) -> str:
        return "ReLU: every feature with a positive pre-activation fires"


class ShardedReLUCrosscoder(ShardedCrosscoder, ReLUCrosscoder):
    """A checkpoint shard of a ReLU crosscoder (:mod:`.parallel`)."""


class ShardedReLURecipe(ShardedRecipe, ReLURecipe):
    """ReLU's recipe on a checkpoint shard: always the autograd step (the fused step computes one
    shard's gradients only, without the sums over the group)."""

    @property
    def fused_step(self) -> bool:
        return False


register(Variant("relu", model=ReLUCrosscoder, recipe=ReLURecipe, activation=RELU, settings=ReLUSettings,
                 checkpoint_parallel=CheckpointParallel(ShardedReLUCrosscoder, ShardedReLURecipe)))
