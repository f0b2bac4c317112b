"""TopK and BatchTopK crosscoders, trained on reconstruction plus AuxK (Gao et al. 2024).

Both rank features by ``ReLU(z_i) · w_i`` (a feature's contribution to the reconstruction,
``w_i`` the decoder weight of :meth:`Crosscoder.feature_weights`) in normalised space, so
folding never changes which features fire, and decode only the active features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import Field

from crosstime.crosscoder import losses
from crosstime.crosscoder.fused_topk import Family, topk_family_step
from crosstime.crosscoder.model import Crosscoder, CrosscoderConfig
from crosstime.crosscoder.parallel import ShardedCrosscoder, ShardedRecipe
from crosstime.crosscoder.recipe import Forward, Loss, Recipe, StepContext, StepOutput
from crosstime.crosscoder.registry import BATCHTOPK, TOPK, CheckpointParallel, Variant, VariantConfig, register
from crosstime.crosscoder.settings import TrainSettings


class TopKConfig(VariantConfig):
    """The TopK family's architecture setting (``CrosscoderConfig.variant_config``)."""

    k: int = Field(32, ge=1, description="topk/batchtopk/matryoshka: active features per token (batch average for "
                                         "batchtopk and matryoshka)")


class TopKSettings(TopKConfig):
    """TopK's training settings (``TrainSettings.variant_settings``)."""

    k: int = Field(32, ge=1, description="topk/batchtopk/matryoshka: active features per token")
    k_init: int | None = Field(None, ge=1, description="topk/batchtopk/matryoshka: anneal k linearly from k_init to k over k_anneal_steps")
    k_anneal_steps: int = Field(0, ge=0, description="topk/batchtopk/matryoshka: steps of the k annealing")
    auxk_coeff: float = Field(1 / 32, ge=0, description="topk/batchtopk/matryoshka: weight of the AuxK loss on dead features")
    k_aux: int | None = Field(None, ge=1, description="topk/batchtopk/matryoshka: dead features used by AuxK per token (default d // 2)")


class BatchTopKSettings(TopKSettings):
    """BatchTopK's training settings: TopK's and the threshold estimate's."""

    threshold_start_step: int = Field(1000, ge=0, description="batchtopk/matryoshka: first step of the threshold EMA")
    threshold_beta: float = Field(0.999, ge=0, lt=1, description="batchtopk/matryoshka: EMA factor of the threshold")


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


def k_at(k: int, k_init: int | None, anneal_steps: int, step: int) -> int:
    """k annealed linearly from ``k_init`` to ``k`` over the first ``anneal_steps`` steps."""
    if k_init is None or anneal_steps == 0 or step >= anneal_steps:
        return k
    return max(1, round(k_init + (k - k_init) * step / anneal_steps))


class TopKRecipe(Recipe):
    """Reconstruction + ``auxk_coeff`` · AuxK on the dead features; k annealed when asked.

    The decoder-weighted activation sum is logged as ``sparsity`` but not penalised. In fp32 on a
    CPU a step is the hand-derived sparse one (:mod:`.fused_topk`); autograd of :meth:`loss` (the
    reference) in bf16, on checkpoint shards and on a GPU (where the sparse step is not yet checked)."""

    dec_init_norm = 1.0
    batch_selection: ClassVar[bool] = False  # the k·B largest scores of the batch rather than k per token

    @property
    def fused_step(self) -> bool:
        """Whether a step is the hand-derived one (fp32) rather than autograd."""
        return self.settings.precision == "fp32"

    def family(self, model: Crosscoder) -> Family:
        s = self.settings.variant_settings
        return Family(self.batch_selection, [model.n_features], s.auxk_coeff, s.k_aux or max(1, model.d_model // 2),
                      self.settings.recon_reduce)

    def step(self, model: Crosscoder, x: torch.Tensor, ctx: StepContext) -> StepOutput:
        if not self.fused_step or x.device.type != "cpu":
            return super().step(model, x, ctx)
        s = topk_family_step(model, x, self.family(model), ctx.dead)
        self._fused_terms(model, s)
        return StepOutput(recon=s["recon"], sparsity=s["sparsity"], aux=s["aux"], loss=s["loss"], l0=s["l0"],
                          fired=s["fired"], e2=s["e2"], reduce_min=self._reduced(s["min_kept"]))

    def _fused_terms(self, model: Crosscoder, terms: dict[str, Any]) -> None:
        """Read what the recipe keeps for its metrics off the fused step's terms (nothing here)."""

    @classmethod
    def settings_problems(cls, settings: TrainSettings, n_features: int | None, d_model: int | None) -> list[str]:
        """k, k_init and k_aux within the dictionary; k_init and k_anneal_steps given together and
        the annealing over before the last step (otherwise a setting would be silently ignored or cut)."""
        s, out = settings.variant_settings, []
        if s.k_init is not None and s.k_anneal_steps == 0:
            out.append(f"k_init = {s.k_init} has no effect without k_anneal_steps > 0 (the steps over which k goes "
                       f"from k_init to k = {s.k}); give both or neither")
        if s.k_init is None and s.k_anneal_steps > 0:
            out.append(f"k_anneal_steps = {s.k_anneal_steps} needs k_init, the k to anneal from; give both or neither")
        if s.k_init is not None and s.k_anneal_steps > settings.total_steps():
            out.append(f"k_anneal_steps = {s.k_anneal_steps} is longer than the training ({settings.total_steps()} steps): "
                       f"k would never reach k = {s.k}; shorten the annealing or train longer")
        if n_features is not None:
            where = "n_features" if settings.n_features is not None else f"expansion {settings.expansion} × d {d_model}"
            for name in ("k", "k_init", "k_aux"):
                value = getattr(s, name)
                if value is not None and value > n_features:
                    out.append(f"{name} = {value} is larger than the dictionary, F = {n_features} ({where}); lower "
                               f"--{name.replace('_', '-')} or raise --n-features")
        return out

    def before_step(self, model: Crosscoder, ctx: StepContext) -> None:
        s = self.settings.variant_settings
        model.k = k_at(s.k, s.k_init, s.k_anneal_steps, ctx.step)

    def forward(self, model: Crosscoder, x: torch.Tensor) -> Forward:
        z = model.pre_acts(x)
        sf = model.activate_sparse(z.float())
        return Forward(z=z, x_hat=model.decode_sparse(sf), sparse=sf)

    def loss(self, model: Crosscoder, x: torch.Tensor, fwd: Forward, ctx: StepContext) -> Loss:
        s, sf, B = self.settings.variant_settings, fwd.sparse, x.shape[0]
        recon = self.reconstruction(x, fwd.x_hat)
        w = model.feature_weights()
        aux = x.new_zeros(())
        if s.auxk_coeff > 0 and bool(ctx.dead.any()):
            aux = losses.auxk_loss(model, fwd.z, x, fwd.x_hat, ctx.dead, s.k_aux or max(1, model.d_model // 2))
        with torch.no_grad():
            active = sf.values > 0
            l0 = active.sum().float() / B
            fired = torch.bincount(sf.cols[active], minlength=model.n_features) > 0
            scores = (sf.values * w[sf.cols])[active]
            smallest = (scores.min() if scores.numel() else scores.new_tensor(float("inf"))).double()
        sparsity = scores.sum() / B  # logged only, as in the reference
        return Loss(recon + s.auxk_coeff * aux, recon, sparsity, aux, l0, fired, self._reduced(smallest))

    def _reduced(self, min_kept: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the trainer reduces by minimum across ranks, from the smallest kept score (nothing here)."""
        return {}

    def metrics(self, model: Crosscoder) -> dict[str, float]:
        return {"k": model.k}

    def finish(self, model: Crosscoder) -> None:
        model.k = model.config.variant_config.k


class BatchTopKRecipe(TopKRecipe):
    """TopK's loss; after every step from ``threshold_start_step`` on, the inference threshold is
    an EMA (``threshold_beta``) of the smallest score the batch kept, reduced over ranks."""

    batch_selection = True

    def _reduced(self, min_kept: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"min_kept": min_kept}

    def after_step(self, model: Crosscoder, out: StepOutput, ctx: StepContext) -> None:
        s = self.settings.variant_settings
        if ctx.step >= s.threshold_start_step:
            model.update_threshold(float(out.reduce_min["min_kept"]), s.threshold_beta)

    def metrics(self, model: Crosscoder) -> dict[str, float]:
        return {"k": model.k, "threshold": float(model.threshold)}


class _SparseDecode:
    """The TopK family's shared parts: k within the dictionary (:meth:`config_problems`), and
    decoding only the active features: ``x̂[b] = Σ_j v_j W_dec[c_j] + b_dec`` via ``embedding_bag``.

    Cost ``O(nnz · M·d)`` instead of ``O(B · F · M·d)``; equal to :meth:`decode` of the dense
    features up to float summation order.
    """

    @classmethod
    def config_problems(cls, config: CrosscoderConfig) -> list[str]:
        k = config.variant_config.k
        if k > config.n_features:  # top-k of F < k features would silently keep all F
            return [(f"k = {k} is larger than the dictionary, n_features (F) = {config.n_features}; lower k "
                     "or raise n_features")]
        return []

    def decode_sparse(self, sf: SparseFeatures) -> torch.Tensor:
        F, M, d = self.W_dec.shape
        w = self.W_dec.reshape(F, M * d)
        values = self.checkpoint_copy(sf.values)  # a shard's decoder reads the replicated features
        out = torch.nn.functional.embedding_bag(sf.cols, w, sf.offsets, mode="sum", per_sample_weights=values)
        return (out + self.b_dec.reshape(1, -1)).view(sf.batch_size, M, d)

    def encode_sparse(self, x: torch.Tensor) -> SparseFeatures:
        """x [B, M, d] -> the active features of every token (CSR)."""
        return self.activate_sparse(self.pre_acts(x))

    def _scored(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.relu(z)
        return f, f * self.feature_weights().to(f.dtype)


class TopKCrosscoder(_SparseDecode, Crosscoder):
    """Keep, per token, the k features with the largest ``ReLU(z_i) · w_i``; f takes ``ReLU(z_i)`` there."""

    def __init__(self, config: CrosscoderConfig):
        super().__init__(config)
        self.k = config.variant_config.k  # the trainer may anneal this; the config holds the final value

    @property
    def inference_rule(self) -> str:
        return f"TopK: per token, the k = {self.k} features with the largest ReLU(z)·w"

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


class BatchTopKCrosscoder(_SparseDecode, Crosscoder):
    """BatchTopK (Bussmann et al. 2024): in training keep the ``k·B`` largest ``ReLU(z)·w`` over the batch.

    At inference (``model.eval()``) a feature fires where ``ReLU(z_i)·w_i > threshold``, a
    scalar the *recipe* estimates during training steps (EMA of the smallest kept score)
    via :meth:`update_threshold`. Nothing in encode/forward or validation changes it (the
    reference's validation updated it: bug B2). A model whose training ended before any
    estimate (threshold < 0) keeps each batch's top k·B in eval mode too, and says so in
    :attr:`inference_rule` (features then depend on the batch).
    """

    def __init__(self, config: CrosscoderConfig):
        super().__init__(config)
        self.k = config.variant_config.k
        self.register_buffer("threshold", torch.tensor(-1.0))

    @property
    def has_threshold(self) -> bool:
        return float(self.threshold) >= 0

    @property
    def inference_rule(self) -> str:
        if self.has_threshold:
            return f"BatchTopK threshold: a feature fires where ReLU(z)·w > {float(self.threshold):.6g}"
        return (f"BatchTopK without a threshold (training ended before threshold_start_step): each batch keeps "
                f"its k·B = {self.k}·B largest ReLU(z)·w, so a token's features depend on its batch")

    @property
    def inference_depends_on_batch(self) -> bool:
        return not self.has_threshold

    def _use_threshold(self) -> bool:
        return not self.training and self.has_threshold

    def _batch_topk_flat(self, scored: torch.Tensor) -> torch.Tensor:
        n = min(self.k * scored.shape[0], scored.numel())
        return scored.reshape(-1).topk(n, sorted=False).indices

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        f, scored = self._scored(z)
        if self._use_threshold():
            return f * (scored > self.threshold)
        flat = self._batch_topk_flat(scored)
        return torch.zeros_like(f).reshape(-1).scatter(0, flat, f.reshape(-1).gather(0, flat)).view_as(f)

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


class ShardedTopKCrosscoder(ShardedCrosscoder, TopKCrosscoder):
    """A checkpoint shard of a TopK crosscoder (:mod:`.parallel`)."""


class ShardedTopKRecipe(ShardedRecipe, TopKRecipe):
    """TopK's recipe on a checkpoint shard (AuxK's norms summed over the group by the model); always
    the autograd step (the fused one computes one shard's gradients without the sums over the group)."""

    @property
    def fused_step(self) -> bool:
        return False


class ShardedBatchTopKCrosscoder(ShardedCrosscoder, BatchTopKCrosscoder):
    """A checkpoint shard of a BatchTopK crosscoder (:mod:`.parallel`)."""


class ShardedBatchTopKRecipe(ShardedRecipe, BatchTopKRecipe):
    """BatchTopK's recipe on a checkpoint shard; the autograd step, as :class:`ShardedTopKRecipe`."""

    @property
    def fused_step(self) -> bool:
        return False


register(Variant("topk", model=TopKCrosscoder, recipe=TopKRecipe, activation=TOPK, config=TopKConfig,
                 settings=TopKSettings,
                 checkpoint_parallel=CheckpointParallel(ShardedTopKCrosscoder, ShardedTopKRecipe)))
register(Variant("batchtopk", model=BatchTopKCrosscoder, recipe=BatchTopKRecipe, activation=BATCHTOPK,
                 config=TopKConfig, settings=BatchTopKSettings,
                 checkpoint_parallel=CheckpointParallel(ShardedBatchTopKCrosscoder, ShardedBatchTopKRecipe)))
