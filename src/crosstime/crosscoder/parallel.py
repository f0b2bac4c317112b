"""Checkpoint-parallel training: the crosscoder sharded along its checkpoint axis.

With ``checkpoint_parallel = P`` (``TrainSettings``) the ranks of one checkpoint group own
disjoint, contiguous blocks of ``M / P`` checkpoints ``m ∈ [lo, hi)``: each holds
``W_enc[lo:hi]``, ``W_dec[:, lo:hi]``, ``b_dec[lo:hi]`` and reads only those checkpoints'
activations of the same rows. ``b_enc`` (and any other per-feature parameter) is replicated.
It composes with data parallelism: ``world = D × P`` (:func:`crosstime.distributed.mesh`).

One step, in the convention of tensor-parallel training (Megatron-LM's): every rank of a
checkpoint group computes the same replicated quantities, and two autograd operations
carry the sums over checkpoints::

    z   = AllReduce(Σ_{m local} x_m W_enc[m]) + b_enc      encoder pre-activations   [B, F]
    w_i = AllReduce(Σ_{m local} ‖W_dec[i, m]‖)             feature weights (L1)      [F]
    x̂_m = Copy(f) W_dec[:, m] + b_dec[m]                   local decoder             [B, M/P, d]
    recon = AllReduce(mean_b Σ_{m local} ‖x̂_m − x_m‖²)     the loss, replicated

``AllReduce``: forward a SUM over the checkpoint group, backward the identity (the
gradient of a replicated value is already whole on every rank); ``Copy``: forward the
identity, backward a SUM (every rank's decoder contributes to ``∂L/∂f``). So each rank ends
with the exact gradient of the global loss for its own shard, and the replicated
parameters' gradients are whole (averaged over the group only to keep them bit-equal).
Gradients are then averaged over the data group as plain data parallelism does; the
gradient norm for clipping sums the shards' squares over the checkpoint group.

The sums over checkpoints are the model's :meth:`~.model.Crosscoder.checkpoint_sum` (every
feature weight, AuxK's residual norms) and :meth:`~.model.Crosscoder.checkpoint_copy` (the
features every decoder reads): the identity on a whole crosscoder, the two collectives on a
shard (:class:`ShardedCrosscoder`), so the variants' code is the same in both. A variant
supports checkpoint parallelism by registering its sharded model and recipe
(``Variant.checkpoint_parallel``, :mod:`.registry`): relu (by autograd: the fused ReLU step is
single-shard), topk and batchtopk (their ranking ``ReLU(z)·w`` is replicated, so every shard
keeps the same features); the others are refused, naming those that can.
Saving gathers the shards into the usual single-folder format on rank 0; each checkpoint
shard keeps its own resume state (``state/trainer-cp{c}of{P}.pt``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from crosstime import distributed
from crosstime.crosscoder import losses
from crosstime.crosscoder.data import StoreSource
from crosstime.crosscoder.model import Crosscoder, CrosscoderConfig, build, initial_decoder
from crosstime.crosscoder.recipe import Recipe
from crosstime.crosscoder.registry import VARIANTS, variant
from crosstime.errors import CrosstimeError

SHARDED_PARAMETERS = ("W_enc", "W_dec", "b_dec")  # checkpoint axis: W_enc dim 0, W_dec dim 1, b_dec dim 0


class CheckpointParallelError(CrosstimeError):
    """Settings or a launch that checkpoint-parallel training cannot run with."""


# -- the two autograd collectives ------------------------------------------------------------

class _AllReduce(torch.autograd.Function):
    """Forward: SUM over ``group``; backward: identity (the result is replicated)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y, group=group)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class _Copy(torch.autograd.Function):
    """Forward: identity; backward: SUM of the gradients over ``group``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def all_reduce(x: torch.Tensor, group) -> torch.Tensor:
    return _AllReduce.apply(x, group)


def copy_to_group(x: torch.Tensor, group) -> torch.Tensor:
    return _Copy.apply(x, group)


# -- the layout --------------------------------------------------------------------------------

def shard_range(n_checkpoints: int, parts: int, index: int) -> tuple[int, int]:
    """Checkpoints ``[lo, hi)`` of shard ``index`` of ``parts`` (M divisible by P)."""
    if n_checkpoints % parts:
        raise CheckpointParallelError(
            f"checkpoint_parallel = {parts} does not divide the M = {n_checkpoints} checkpoints; choose a divisor of "
            f"{n_checkpoints} (or train on a multiple of {parts} revisions)")
    size = n_checkpoints // parts
    return index * size, (index + 1) * size


def check_settings(settings, world_size: int) -> None:
    """What checkpoint parallelism cannot train with, refused before any work."""
    P = settings.checkpoint_parallel
    if world_size % P:
        raise CheckpointParallelError(f"checkpoint_parallel = {P} does not divide the {world_size} processes; launch a "
                                      f"multiple of {P} processes (torchrun --nproc_per_node) or change it")
    if P > 1 and variant(settings.variant).checkpoint_parallel is None:
        raise CheckpointParallelError(f"checkpoint_parallel = {P} supports the variants {supported_variants()}, "
                                      f"not {settings.variant!r}; train it with checkpoint_parallel = 1")


def supported_variants() -> list[str]:
    """The registered variants that train checkpoint-parallel."""
    return [name for name, spec in sorted(VARIANTS.items()) if spec.checkpoint_parallel is not None]


# -- the sharded model and recipe ------------------------------------------------------------------

class ShardedCrosscoder:
    """First base of a variant's sharded model class (``Variant.checkpoint_parallel.model``): the sums
    over checkpoints reach across the group (``checkpoint_group``, set by :func:`build_shard`)."""

    checkpoint_group: Any

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, M/P, d] (this shard's checkpoints) -> z [B, F], summed over every shard."""
        self.check_input(x)
        partial = x.reshape(x.shape[0], -1) @ self.W_enc.reshape(-1, self.n_features).to(x.dtype)
        # summed in fp32 whatever the matmul's precision (bf16 autocast): one GEMM would accumulate in fp32 too
        return all_reduce(partial.float(), self.checkpoint_group) + self.b_enc.float()

    def checkpoint_sum(self, t: torch.Tensor) -> torch.Tensor:
        """This shard's sum over its checkpoints -> the sum over every checkpoint (replicated)."""
        return all_reduce(t, self.checkpoint_group)

    def checkpoint_copy(self, t: torch.Tensor) -> torch.Tensor:
        """A replicated value this shard's decoder reads; its gradient sums every shard's."""
        return copy_to_group(t, self.checkpoint_group)


class ShardedRecipe:
    """First base of a variant's sharded recipe class (``Variant.checkpoint_parallel.recipe``): the
    reconstruction over every shard (``checkpoint_group``, ``n_checkpoints``: set by :func:`shard_recipe`)."""

    checkpoint_group: Any
    n_checkpoints: int  # M of the whole crosscoder

    def reconstruction(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        se = all_reduce((x_hat - x).pow(2).sum(dim=(1, 2)).mean(), self.checkpoint_group)
        return se / self.n_checkpoints if self.settings.recon_reduce == "mean" else se


def shard_config(full: CrosscoderConfig, lo: int, hi: int) -> CrosscoderConfig:
    """The config of checkpoints ``[lo, hi)`` of ``full``."""
    return full.model_copy(update={"n_checkpoints": hi - lo,
                                   "revisions": full.revisions[lo:hi] if full.revisions else None,
                                   "scales": full.scales[lo:hi] if full.scales else None})


@torch.no_grad()
def build_shard(full: CrosscoderConfig, lo: int, hi: int, group) -> Crosscoder:
    """Shard ``[lo, hi)`` of the crosscoder ``build(full)`` would make, initialised to equal its slice
    (:func:`~.model.initial_decoder`: drawn whole, once; a transient ``F·M·d`` floats at start)."""
    model = variant(full.variant).checkpoint_parallel.model(shard_config(full, lo, hi))
    model.checkpoint_group = group
    model.init_decoder(initial_decoder(full, slice(lo, hi)))
    return model


def shard_recipe(settings, group, n_checkpoints: int) -> Recipe:
    """The variant's sharded recipe for this group (``n_checkpoints``: M of the whole crosscoder)."""
    recipe = variant(settings.variant).checkpoint_parallel.recipe(settings)
    recipe.checkpoint_group, recipe.n_checkpoints = group, n_checkpoints
    return recipe


class StoreShardSource(StoreSource):
    """A store read for some of its checkpoints, in the row order of reading them all: the read
    window (which sets the shuffle) is the one of the whole set of ``all_revisions``."""

    def __init__(self, store, all_revisions: list[str], lo: int, hi: int, batch_size: int, seed: int,
                 normalise: bool, rank: int, world_size: int):
        super().__init__(store, all_revisions[lo:hi], batch_size, seed, normalise, rank, world_size)
        self.buffer_rows = store.default_buffer_rows(len(all_revisions))

    def iterate(self, start_step: int):
        epoch, b = divmod(start_step, self._bpe)
        while True:
            for x in self.store.batches(self.revisions, self.local, "train", self.normalise, self.seed, epoch,
                                        self.rank, self.world_size, skip_batches=b, drop_last=True,
                                        buffer_rows=self.buffer_rows):
                yield self._checked(x)
            epoch, b = epoch + 1, 0


# -- reductions of one step ------------------------------------------------------------------------

def reduce_gradients(model: Crosscoder, mesh: distributed.Mesh) -> None:
    """Gradients averaged over the data group; replicated ones also over the checkpoint group."""
    params = [p for p in model.parameters() if p.grad is not None]
    if mesh.data_group is not None:
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat, group=mesh.data_group)
        flat.div_(mesh.data_size)
        off = 0
        for p in params:
            p.grad.copy_(flat[off : off + p.numel()].view_as(p))
            off += p.numel()
    if mesh.checkpoint_group is not None:
        for name, p in model.named_parameters():
            if name not in SHARDED_PARAMETERS and p.grad is not None:
                dist.all_reduce(p.grad, group=mesh.checkpoint_group)
                p.grad.div_(mesh.checkpoint_size)


def grad_norm(model: Crosscoder, mesh: distributed.Mesh) -> float:
    """‖∇‖ of the whole crosscoder: the shards' squares summed over the group, replicated ones once."""
    sharded, replicated = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        sq = p.grad.detach().double().pow(2).sum().cpu()
        if name in SHARDED_PARAMETERS:
            sharded += sq
        else:
            replicated += sq
    if mesh.checkpoint_group is not None:
        sharded = sharded.to(model.W_dec.device)
        dist.all_reduce(sharded, group=mesh.checkpoint_group)
    return float((sharded.cpu() + replicated).sqrt())


def gather_checkpoints(local: torch.Tensor, mesh: distributed.Mesh) -> torch.Tensor:
    """``[M/P, …]`` of every shard -> ``[M, …]`` in checkpoint order, on every rank of the group."""
    if mesh.checkpoint_group is None:
        return local
    parts = [torch.empty_like(local) for _ in range(mesh.checkpoint_size)]
    dist.all_gather(parts, local.contiguous(), group=mesh.checkpoint_group)
    return torch.cat(parts)


def step_moments(e2: torch.Tensor, x: torch.Tensor, mesh: distributed.Mesh) -> torch.Tensor:
    """The trainer's EV moments ``[e2 [M], Σ‖x‖² [M], Σx [M·d]]`` of this rank's rows, all checkpoints."""
    per_checkpoint = torch.cat([e2.double()[:, None], x.square().sum(dim=(0, 2)).double()[:, None],
                                x.sum(0).double()], dim=1)  # [M/P, 2 + d]
    whole = gather_checkpoints(per_checkpoint, mesh)
    return torch.cat([whole[:, 0], whole[:, 1], whole[:, 2:].flatten()])


# -- validation, saving, memory ------------------------------------------------------------------

@torch.no_grad()
def validate(model: Crosscoder, batches, settings, mesh: distributed.Mesh) -> dict[str, Any] | None:
    """:func:`.training.validate` on a checkpoint group: every rank of it calls this with its
    shard of the same held-out rows."""
    was = model.training
    model.eval()
    try:
        sums, stats = None, torch.zeros(3, dtype=torch.float64)
        for x in batches:
            x = x.to(model.W_dec.device)
            f = model.encode(x)
            x_hat = model.decode(f)
            s = losses.moment_sums(x, x_hat)
            sums = s if sums is None else sums + s
            recon = (x_hat - x).pow(2).sum(dim=(1, 2)).mean()
            stats += torch.tensor([float(recon) * len(x), float(f.float().sign().sum()), float(len(x))],
                                  dtype=torch.float64)
        if sums is None:
            return None
        sums = gather_checkpoints(sums, mesh)
        recon_sum = gather_checkpoints(stats[:1].clone(), mesh).sum()  # Σ over shards of each one's share
        if settings.recon_reduce == "mean":
            recon_sum = recon_sum / sums.shape[0]
        ev = losses.explained_variance(sums)
        return {"recon": float(recon_sum / stats[2]), "l0": float(stats[1] / stats[2]),
                "ev": [float(v) for v in ev], "ev_mean": float(ev.mean()), "rows": int(stats[2])}
    finally:
        model.train(was)


@torch.no_grad()
def gather_model(shard: Crosscoder, full: CrosscoderConfig, mesh: distributed.Mesh) -> Crosscoder | None:
    """The whole crosscoder on the group's first rank (None on the others): every shard's tensors
    gathered along the checkpoint axis; replicated ones from the first rank."""
    tensors = shard.state_dict()
    whole: dict[str, torch.Tensor] = {}
    first = mesh.checkpoint_rank == 0
    dst = mesh.world.rank - mesh.checkpoint_rank  # the group's first rank, as a global rank
    for name, t in tensors.items():
        axis = 1 if name == "W_dec" else 0
        if name not in (*SHARDED_PARAMETERS, "fold"):
            whole[name] = t
            continue
        t = t.movedim(axis, 0).contiguous()
        parts = [torch.empty_like(t) for _ in range(mesh.checkpoint_size)] if first else None
        dist.gather(t, parts, dst=dst, group=mesh.checkpoint_group)
        if first:
            whole[name] = torch.cat(parts).movedim(0, axis).contiguous()
    if not first:
        return None
    with torch.device("meta"):  # no initialisation of weights that the gathered ones replace
        model = build(full)
    model.load_state_dict({k: v.cpu() for k, v in whole.items()}, strict=True, assign=True)
    return model


def state_bytes(model: Crosscoder, opt: torch.optim.Optimizer | None = None) -> int:
    """Bytes of this rank's parameters plus its optimiser state (Adam: exp_avg, exp_avg_sq, step)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    if opt is not None:
        for state in opt.state.values():
            total += sum(v.numel() * v.element_size() for v in state.values() if isinstance(v, torch.Tensor))
    return total


def expected_state_bytes(n_checkpoints: int, d_model: int, n_features: int, parts: int, itemsize: int = 4) -> int:
    """:func:`state_bytes` of one rank by formula (relu, Adam, fp32): 3 × (sharded + replicated) floats."""
    sharded = (2 * n_features * d_model + d_model) * (n_checkpoints // parts)
    return 3 * itemsize * (sharded + n_features)  # (Adam's 0-d step counters, 16 bytes, left out)
