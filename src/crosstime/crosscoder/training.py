"""Crosscoder training: resumable, data-parallel, with per-step metrics.

    model = fit(acts, TrainSettings(steps=2000, batch_size=1024))          # acts: [N, M, d] in memory
    model = train(TrainConfig(run="runs/x", steps=2000))                  # the stage (crosstime.stages.train)

Recipe (the papers' defaults unless noted): Adam(0.9, 0.999), lr 5e-5 constant then linear
decay to 0 over the last 20% of steps, sparsity coefficient (2 for the L1) warmed up
linearly from 0 over the first 5%, gradient norm clipped to 1, batch 4096, 400M tokens.
The demo (`crosstime demo`, the toy world) uses fewer tokens, smaller batches and a higher
learning rate, since its model is tiny and its data small. What a step does beyond that —
loss, gradients, thresholds, k annealing — is the variant's :class:`~.recipe.Recipe`.

Resume: every ``save_every`` steps the model, optimiser, dead-feature counters, RNG and
step are written to ``out/state/trainer.pt`` (write-then-rename). Batches are a pure
function of (seed, epoch, batch index), so a run killed at any moment and re-run with the
same command continues where the last state left off and ends with the same weights as an
uninterrupted run. Resuming with different settings is refused, naming the fields. The
state is checked before it is used (every record's CRC-32, which torch writes into its
archive; then the entries and shapes the trainer needs): a damaged one is a
:class:`TrainingError` naming it and the fix. Temporary files a killed save left behind
(``.trainer.pt.tmp-PID``) are removed when the next run starts. A write that fails (a full
disk) is a :class:`TrainingError` saying which file, and which resume state (step) was kept.

Divergence: the loss of the first step (the initial weights', about the loss of
reconstructing nothing) is the reference. A step whose loss is not finite, or more than
:data:`DIVERGENCE_FACTOR` (1000) times the reference, stops the training with a
:class:`TrainingError` naming the step and suggesting a smaller learning rate; the step is
not saved, nor is any model (``metrics.jsonl`` ends with a ``"event": "diverged"`` line), and
the resume state saved before is kept. Healthy trainings stay far below the limit (their loss
falls from the reference); a learning rate of 1 already exceeds it on the toy data.

Settings the variant cannot train with (TopK's k larger than F, …) are refused before any
work: when the settings are made, and once the data's width gives F
(:meth:`~.settings.TrainSettings.problems`).

Many processes: under ``torchrun`` each rank trains on its share of every global batch and
gradients are averaged across ranks (all-reduce, as DistributedDataParallel does; done by
hand because the fused ReLU step computes gradients without autograd). With the same global
batch the result equals single-process training to float tolerance. BatchTopK ranks within
each rank's share (k · B/world per rank); its threshold estimate is reduced across ranks.
With ``checkpoint_parallel`` P > 1 the ranks form a data × checkpoint mesh and each holds only
M/P checkpoints' weights and optimiser state (:mod:`.parallel`; relu, topk, batchtopk).

Outputs in ``out``: ``config.json`` + ``model.safetensors`` (normalised-space weights with
``scales`` and ``revisions`` recorded; ``Crosscoder.folded()`` gives the raw-space model),
``metrics.jsonl`` (:mod:`.logs`), ``state/`` (resume).
"""

from __future__ import annotations

import contextlib
import errno
import math
import pickle
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed as tdist

from crosstime import distributed
from crosstime.crosscoder import losses, parallel
from crosstime.crosscoder.data import DataError, make_source
from crosstime.crosscoder.logs import METRICS_FILE, MetricsLog
from crosstime.crosscoder.model import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Crosscoder,
    CrosscoderConfig,
    build,
)
from crosstime.crosscoder.recipe import StepContext, StepOutput
from crosstime.crosscoder.registry import variant
from crosstime.crosscoder.settings import TrainSettings, flat_settings
from crosstime.errors import CrosstimeError
from crosstime.files import atomic_path, remove_stale_temps
from crosstime.progress import Bar
from crosstime.store import ActivationStore

STATE_FILE = "trainer.pt"
STATE_KEYS = ("step", "model", "optimizer", "tokens_since_fired", "rng", "settings", "data")  # + loss_ref, metrics_rows
DIVERGENCE_FACTOR = 1000.0  # a loss this many times the first step's is divergence (module docstring)


class TrainingError(CrosstimeError):
    """A training that cannot go on: settings it cannot train with or that differ from the state it
    would resume, a damaged resume state, a failed write, a loss that diverged."""


# -- schedules -------------------------------------------------------------------------------

def lr_at(cfg: TrainSettings, step: int, total: int) -> float:
    """Constant, then linear decay to 0 over the last ``lr_decay_frac`` of training."""
    start = (1 - cfg.lr_decay_frac) * total
    if step < start or cfg.lr_decay_frac == 0:
        return cfg.lr
    return cfg.lr * max(0.0, (total - step) / (cfg.lr_decay_frac * total))


def sparsity_coeff_at(cfg: TrainSettings, step: int, total: int) -> float:
    """Linear warm-up from 0 over the first ``sparsity_warmup_frac`` of training (as in the reference)."""
    warm = cfg.sparsity_warmup_frac * total
    return cfg.sparsity_coeff if warm <= 0 else cfg.sparsity_coeff * min(1.0, step / warm)


def clip_gradients(params: list[torch.Tensor], max_norm: float | None, opt: torch.optim.Optimizer | None = None,
                   norm: float | None = None) -> float:
    """Gradient-norm clipping as ``clip_grad_norm_`` (factor ``max_norm / (norm + 1e-6)`` when above).

    ``norm``: the norm when ``params`` are a shard of the model (checkpoint parallelism), else computed.

    With a fused Adam the factor is handed to the optimiser's kernel as its ``grad_scale``
    (the divisor GradScaler uses), so clipping costs no extra pass over the gradients;
    otherwise the gradients are rescaled, and only when clipping applies. Returns the norm.
    """
    grads = [p.grad for p in params if p.grad is not None]
    n = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))) if norm is None else norm
    clip = max_norm is not None and n > max_norm
    fused = opt is not None and all(g.get("fused") for g in opt.param_groups)
    if fused:
        opt.grad_scale = torch.tensor((n + 1e-6) / max_norm, device=grads[0].device) if clip else None
    elif clip:
        torch._foreach_mul_(grads, max_norm / (n + 1e-6))
    return n


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


@torch.no_grad()
def validate(model: Crosscoder, batches, settings: TrainSettings) -> dict[str, Any] | None:
    """Held-out metrics in eval mode; reads nothing back into the model (no threshold/dead updates)."""
    was = model.training
    model.eval()
    device = model.W_dec.device
    try:
        sums, stats = None, torch.zeros(3, dtype=torch.float64)
        for x in batches:
            x = x.to(device)
            f = model.encode(x)
            x_hat = model.decode(f)
            s = losses.moment_sums(x, x_hat)
            sums = s if sums is None else sums + s
            stats += torch.tensor([float(losses.reconstruction_loss(x, x_hat, settings.recon_reduce)) * len(x),
                                   float(f.float().sign().sum()), float(len(x))], dtype=torch.float64)
        if sums is None:
            return None
        ev = losses.explained_variance(sums)
        return {"recon": float(stats[0] / stats[2]), "l0": float(stats[1] / stats[2]),
                "ev": [float(v) for v in ev], "ev_mean": float(ev.mean()), "rows": int(stats[2])}
    finally:
        model.train(was)


# -- the trainer -------------------------------------------------------------------------------

def _allreduce_(t: torch.Tensor, op=None) -> torch.Tensor:

    dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


# -- the resume state --------------------------------------------------------------------------

def _state_fix(path: Path) -> str:
    return f"delete {path.parent} to start the training over, or restore {path.name} from a copy"


def read_state(path: Path) -> dict[str, Any]:
    """The resume state at ``path``, checked before anything in it is used.

    torch writes a zip archive with a CRC-32 per record; every record is checked against it
    (torch.load itself does not: a flipped byte in a weight loads silently), then the state is
    unpickled weights-only and its entries checked. Damage is a :class:`TrainingError`."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError, OSError, ValueError) as err:
        raise TrainingError(f"{path} is damaged (not a complete archive: {err}); {_state_fix(path)}") from err
    if bad is not None:
        raise TrainingError(f"{path} is damaged (its record {bad} fails its CRC-32 check); {_state_fix(path)}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise TrainingError(f"{path} is not a trainer state this crosstime can read ({str(err).splitlines()[0]}); "
                            f"{_state_fix(path)}") from err
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise TrainingError(f"{path} is not a trainer state (it lacks {missing}); {_state_fix(path)}")
    kinds = {"step": int, "model": dict, "optimizer": dict, "tokens_since_fired": torch.Tensor,
             "rng": torch.Tensor, "settings": dict, "data": dict}
    wrong = [k for k, kind in kinds.items() if not isinstance(state[k], kind) or isinstance(state[k], bool)]
    if wrong:
        raise TrainingError(f"{path} holds entries of the wrong kind ({wrong}); {_state_fix(path)}")
    return state


class _KeepsWriteError:
    """A file whose ``write`` keeps the OSError it raised: torch.save reports a failed write only as
    ``RuntimeError: unexpected pos …``, which would hide a full disk (errno 28)."""

    def __init__(self, handle):
        self.handle, self.error = handle, None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.handle.flush()


def save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically; a failed write raises its OSError (``atomic_path`` names ``path``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        out = _KeepsWriteError(handle)
        try:
            torch.save(obj, out)
        except RuntimeError:
            if out.error is None:
                raise
            raise out.error from None


class Trainer:
    """One training run: the model, its optimiser and the variant's recipe, resumable from ``out/state``."""

    def __init__(self, settings: TrainSettings, source, out: Path | None, world: distributed.World,
                 mesh: distributed.Mesh | None = None, whole=None):
        """``mesh``/``whole`` (checkpoint parallelism, :mod:`.parallel`): the ranks' layout and the source
        of every checkpoint (its M, revisions and scales); ``source`` then serves this shard's checkpoints."""
        self.settings, self.source, self.out, self.world = settings, source, out, world
        self.mesh = mesh or distributed.Mesh(world)
        if settings.checkpoint_parallel != self.mesh.checkpoint_size:
            raise TrainingError(f"checkpoint_parallel = {settings.checkpoint_parallel} but the trainer was given a mesh "
                                f"of {self.mesh.checkpoint_size}; train through fit() or train(), which lay it out")
        self.whole = whole or source
        self.device = distributed.resolve_device(settings.device, world.local_rank)
        self._check_sizes()
        if self.sharded:
            lo, hi = parallel.shard_range(self.whole.n_checkpoints, self.mesh.checkpoint_size, self.mesh.checkpoint_rank)
            group = self.mesh.checkpoint_group
            self.recipe = parallel.shard_recipe(settings, group, self.whole.n_checkpoints)
            self.model = parallel.build_shard(self._model_config(), lo, hi, group).to(self.device)
        else:
            self.recipe = variant(settings.variant).recipe(settings)
            self.model = build(self._model_config()).to(self.device)
        self.params = list(self.model.parameters())
        fused = self.device.type in ("cpu", "cuda")
        self.opt = torch.optim.Adam(self.params, lr=settings.lr, betas=settings.adam_betas, fused=fused or None,
                                    foreach=None if fused else True)
        self.total = settings.total_steps()
        self.tokens_since_fired = torch.zeros(self.model.n_features, dtype=torch.int64)
        self.step = 0
        self.saved_step: int | None = None  # the step of the resume state on disk
        self.loss_ref: float | None = None  # the first step's loss: the divergence reference
        self.logged: int | None = None  # metrics.jsonl rows the resumed state had logged
        self.fingerprint = source.fingerprint()
        self.state_path = out / "state" / self._state_name() if out is not None else None
        if settings.precision == "bf16" and self.device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            # measured on an AVX2 EPYC: bf16 GEMMs 15-20x slower than fp32 (benchmarks/RESULTS.md)
            warnings.warn("precision='bf16' on a CPU without bf16 instructions (AVX512-BF16/AMX) runs the matmuls "
                          "in emulation, many times slower than fp32; use precision='fp32' here and bf16 on a GPU",
                          stacklevel=3)

    @property
    def sharded(self) -> bool:
        """Whether this rank holds a checkpoint shard (checkpoint parallelism, :mod:`.parallel`)."""
        return self.mesh.checkpoint_size > 1

    @property
    def saves(self) -> bool:
        """Whether this rank writes a resume state: the first data share's ranks, one per checkpoint shard."""
        return self.mesh.data_rank == 0

    def _state_name(self) -> str:
        return STATE_FILE if not self.sharded else f"trainer-cp{self.mesh.checkpoint_rank}of{self.mesh.checkpoint_size}.pt"

    def _check_sizes(self) -> None:
        """The settings against the data's width (F = expansion × d when not given), before any work."""
        s, d = self.settings, self.source.d_model
        problems = s.problems(s.n_features or s.expansion * d, d)
        if problems:
            raise TrainingError(f"cannot train on activations of width d = {d}: {'; '.join(problems)}")

    def _model_config(self) -> CrosscoderConfig:
        s, src = self.settings, self.whole
        M, d = src.n_checkpoints, src.d_model
        return CrosscoderConfig(
            variant=s.variant, n_checkpoints=M, d_model=d, n_features=s.n_features or s.expansion * d,
            dec_init_norm=s.dec_init_norm or self.recipe.dec_init_norm, seed=s.seed, l1_norm=s.l1_norm,
            variant_config=variant(s.variant).config_from(s.variant_settings),
            revisions=src.revisions, scales=src.scales, normalised=src.normalised)

    # -- resume --------------------------------------------------------------------------
    def resume(self) -> None:
        """Continue from ``out/state/trainer.pt`` when there is one; refuse other settings or data."""
        state = self._agreed_state() if self.state_path is not None else None
        if state is None:
            return
        now = flat_settings(self.settings.weight_settings())
        then = {k: v for k, v in flat_settings(state["settings"]).items() if k in now or k in TrainSettings.model_fields}
        diff = [f"{k}: {then.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(then) | set(now)) if then.get(k) != now.get(k)]
        if diff:
            raise TrainingError(f"{self.out} holds a training started with different settings ({'; '.join(diff)}); "
                             f"re-run with the original settings to resume, or use a new output folder")
        w_dec = state["model"].get("W_dec")
        if not isinstance(w_dec, torch.Tensor) or w_dec.dim() != 3:
            raise TrainingError(f"{self.state_path} holds no decoder weights W_dec [F, M, d]; "
                                f"{_state_fix(self.state_path)}")
        saved_M, saved_d = w_dec.shape[1:]
        M, d = self.model.n_checkpoints, self.model.d_model
        if (saved_M, saved_d) != (M, d):
            raise DataError(f"the activations have M = {M} checkpoints of width d = {d}, but the crosscoder being "
                            f"resumed in {self.out} has M = {saved_M}, d = {saved_d}; train on the same activations "
                            "(same store, revisions and layer) or use a new output folder")
        if state["data"] != self.fingerprint:
            raise DataError(f"{self.out} holds a training on different data (saved {state['data']}, now "
                            f"{self.fingerprint}); resume on the same activations or use a new output folder")
        self._check_state(state)
        self.model.load_state_dict(state["model"])
        try:
            self.opt.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as err:  # torch's complaints about a state of other parameters
            raise TrainingError(f"{self.state_path}: its optimiser state does not fit the model ({err}); "
                                f"{_state_fix(self.state_path)}") from err
        self.tokens_since_fired = state["tokens_since_fired"]
        torch.set_rng_state(state["rng"])
        self.step = self.saved_step = int(state["step"])
        self.loss_ref, self.logged = state.get("loss_ref"), state.get("metrics_rows")

    def _agreed_state(self) -> dict[str, Any] | None:
        """The state to resume (:func:`read_state`), or None; on a mesh every shard's state must exist and hold the same
        step (a kill between two shards' saves leaves them apart), and none of another layout may lie there."""
        folder = self.state_path.parent
        P = self.mesh.checkpoint_size
        mine = {STATE_FILE} if P == 1 else {f"trainer-cp{c}of{P}.pt" for c in range(P)}
        other = sorted(p.name for p in folder.glob("trainer*.pt") if p.name not in mine) if folder.is_dir() else []
        if other:
            raise TrainingError(f"{folder} holds resume states {other} of another checkpoint_parallel than "
                                f"{P}; resume with the checkpoint_parallel they were saved with, or use a new output folder")
        state = read_state(self.state_path) if self.state_path.exists() else None
        if not self.sharded:
            return state

        step = torch.tensor([int(state["step"]) if state is not None else -1])
        low, high = step.clone(), step.clone()
        tdist.all_reduce(low, op=tdist.ReduceOp.MIN)
        tdist.all_reduce(high, op=tdist.ReduceOp.MAX)
        if int(low) != int(high):
            raise TrainingError(f"the checkpoint shards' resume states in {folder} are at different steps ({int(low)} "
                                f"to {int(high)}; -1: missing): the training was killed while saving them; delete "
                                f"{folder} to start over")
        return state

    def _check_state(self, state: dict[str, Any]) -> None:
        """The state's step, tensors and counters fit this training (settings and data were compared)."""
        path, fix = self.state_path, _state_fix(self.state_path)
        if not 0 <= state["step"] <= self.total:
            raise TrainingError(f"{path} says step {state['step']} of a {self.total}-step training; {fix}")
        want = {k: list(v.shape) for k, v in self.model.state_dict().items()}
        got = {k: list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__ for k, v in state["model"].items()}
        if got != want:
            diff = [f"{k}: {got.get(k)} vs {want.get(k)}" for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
            raise TrainingError(f"{path} holds weights of other shapes ({'; '.join(diff)}, saved vs now); {fix}")
        counts, rng = state["tokens_since_fired"], state["rng"]
        if list(counts.shape) != [self.model.n_features] or counts.dtype != torch.int64 or rng.dtype != torch.uint8:
            raise TrainingError(f"{path} holds dead-feature counters or an RNG state of the wrong kind; {fix}")
        if not all(bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point()):
            raise TrainingError(f"{path} holds NaN/inf weights; {fix}")

    def save_state(self, metrics_rows: int | None = None) -> None:
        """Write the resume state (``metrics_rows``: the lines metrics.jsonl holds now, checked on resume)."""
        if self.state_path is None or not self.saves:
            return
        state = {"step": self.step, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                 "tokens_since_fired": self.tokens_since_fired, "rng": torch.get_rng_state(),
                 "settings": self.settings.weight_settings(), "data": self.fingerprint,
                 "loss_ref": self.loss_ref, "metrics_rows": metrics_rows}
        with self._writes(self.state_path):
            save_torch(state, self.state_path)
        self.saved_step = self.step

    @contextlib.contextmanager
    def _writes(self, path: Path | None) -> Iterator[None]:
        """A failed write of ``path`` (a full disk, …) as a TrainingError saying what was kept."""
        try:
            yield
        except OSError as err:
            why = "no space left on the device" if err.errno == errno.ENOSPC else (err.strerror or str(err))
            if self.saved_step is None:
                kept = "no resume state had been saved yet, so re-running starts the training over"
            else:
                kept = (f"the last good resume state, {self.state_path} at step {self.saved_step}, is kept: re-running "
                        "the same command resumes from there")
            raise TrainingError(f"could not write {path} ({why}) at step {self.step}; {kept}. Free space (or fix the "
                                "folder) first") from err

    # -- one step ------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor) -> tuple[StepOutput, torch.Tensor, torch.Tensor, float]:
        """Forward, backward, reduction over ranks, clipping and the optimiser step.

        Returns the recipe's output (fired and reduce_min reduced over ranks), the scalars
        ``[recon, sparsity, aux, l0, loss]`` (global means), the EV moments and the gradient norm."""
        s, step = self.settings, self.step
        lr = lr_at(s, step, self.total)
        for group in self.opt.param_groups:
            group["lr"] = lr
        dead = (self.tokens_since_fired >= s.dead_tokens).to(self.device)
        ctx = StepContext(s, step, self.total, sparsity_coeff_at(s, step, self.total), dead)
        self.recipe.before_step(self.model, ctx)
        out = self.recipe.step(self.model, x, ctx)
        scal = torch.stack([out.recon, out.sparsity, out.aux, out.l0, out.loss]).double()
        # per-checkpoint Σ(x̂−x)², Σ‖x‖², Σx: explained variance of the global batch, about its mean
        if self.sharded:
            moments = parallel.step_moments(out.e2, x, self.mesh)
            self._reduce_sharded(out, scal, moments)
        else:
            moments = torch.cat([out.e2.double(), x.square().sum(dim=(0, 2)).double(),  # vector_norm: 3x slower
                                 x.sum(0).double().flatten()])
            if self.world.distributed:
                self._reduce(out, scal, moments)
        norm = parallel.grad_norm(self.model, self.mesh) if self.sharded else None
        grad_norm = clip_gradients(self.params, s.grad_clip, self.opt, norm)
        self.opt.step()
        # bookkeeping from this training batch only (never from validation: bug B2)
        self.tokens_since_fired += s.batch_size
        self.tokens_since_fired[out.fired.cpu()] = 0
        self.recipe.after_step(self.model, out, ctx)
        return out, scal, moments, grad_norm

    def _reduce(self, out: StepOutput, scal: torch.Tensor, moments: torch.Tensor) -> None:
        """Gradients and per-rank means -> global means, sums -> global sums (each rank holds an
        equal share); collectives on the training device (NCCL reduces GPU tensors only)."""

        flat = torch.cat([p.grad.reshape(-1) for p in self.params])
        _allreduce_(flat).div_(self.world.size)
        off = 0
        for p in self.params:
            p.grad.copy_(flat[off : off + p.numel()].view_as(p))
            off += p.numel()
        _allreduce_(scal).div_(self.world.size)
        _allreduce_(moments)
        out.fired = _allreduce_(out.fired.to(torch.int32), tdist.ReduceOp.MAX).bool()
        for value in out.reduce_min.values():
            _allreduce_(value, tdist.ReduceOp.MIN)

    def _reduce_sharded(self, out: StepOutput, scal: torch.Tensor, moments: torch.Tensor) -> None:
        """:meth:`_reduce` on a mesh: the step's values are whole over checkpoints already (the losses
        and ``moments`` are reduced in the step); the data group averages and sums them."""

        parallel.reduce_gradients(self.model, self.mesh)
        group = self.mesh.data_group
        if group is None:
            return
        tdist.all_reduce(scal, group=group)
        scal.div_(self.mesh.data_size)
        tdist.all_reduce(moments, group=group)
        fired = out.fired.to(torch.int32)
        tdist.all_reduce(fired, op=tdist.ReduceOp.MAX, group=group)
        out.fired = fired.bool()
        for value in out.reduce_min.values():
            tdist.all_reduce(value, op=tdist.ReduceOp.MIN, group=group)

    def metrics_row(self, scal: torch.Tensor, moments: torch.Tensor, grad_norm: float, seconds: float) -> dict[str, Any]:
        s, done = self.settings, self.step
        M, d = self.whole.n_checkpoints, self.model.d_model
        e2, x2, sx = moments[:M], moments[M : 2 * M], moments[2 * M :].view(M, d)
        var = x2 - sx.pow(2).sum(1) / s.batch_size
        ev = (1 - e2 / var.clamp_min(1e-30)).tolist()
        return {"step": done, "lr": lr_at(s, done - 1, self.total), "sparsity_coeff": sparsity_coeff_at(s, done - 1, self.total),
                "loss": float(scal[4]), "recon": float(scal[0]), "sparsity": float(scal[1]), "aux": float(scal[2]),
                "l0": float(scal[3]), "ev": [_finite(v) for v in ev], "ev_mean": _finite(sum(ev) / len(ev)),
                "dead_frac": float((self.tokens_since_fired >= s.dead_tokens).float().mean()),
                "grad_norm": grad_norm, "tokens": done * s.batch_size, "seconds": round(seconds, 3),
                **self.recipe.metrics(self.model)}

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> Crosscoder:
        """Train from the current step to the last, logging, validating and saving states on the way."""

        s, main = self.settings, self.world.is_main
        if main and self.out is not None:  # leftovers of a killed save: nothing will ever rename them
            remove_stale_temps(self.out)
            remove_stale_temps(self.out / "state")
        metrics = self.out / METRICS_FILE if self.out is not None else None
        with self._writes(metrics):
            log = MetricsLog(s, self.out, self.step, main, self.logged)
        bar = Bar(total=self.total, initial=self.step, disable=not (s.progress and main), desc="train crosscoder",
                   unit="step")
        try:
            self._loop(log, bar)
        finally:
            bar.close()
            with self._writes(metrics):
                log.close()
        return self.finish()

    def _loop(self, log: MetricsLog, bar) -> None:
        s, main = self.settings, self.world.is_main
        batches = self.source.iterate(self.step)
        t0 = time.perf_counter()
        self.model.train()
        while self.step < self.total:
            out, scal, moments, grad_norm = self.train_step(next(batches).to(self.device, non_blocking=True))
            self.step += 1
            if main and (self.step % s.log_every == 0 or self.step == self.total):
                row = self.metrics_row(scal, moments, grad_norm, time.perf_counter() - t0)
                with self._writes(log.path):
                    log.write(row)
                bar.set_postfix(loss=f"{row['loss']:.4g}", l0=f"{row['l0']:.1f}", ev=f"{row['ev_mean'] or 0:.3f}",
                                refresh=False)
            self._check_divergence(float(scal[4]), log)
            self._checkpoint(log)
            bar.update(1)

    def _check_divergence(self, loss: float, log: MetricsLog) -> None:
        """Stop at a loss that is not finite or beyond DIVERGENCE_FACTOR × the first step's (the module
        docstring); ``loss`` is the global mean, so every rank decides alike."""
        if self.loss_ref is None and math.isfinite(loss):
            self.loss_ref = loss
        limit = DIVERGENCE_FACTOR * self.loss_ref if self.loss_ref is not None else math.inf
        if math.isfinite(loss) and (loss <= limit or limit <= 0):
            return
        why = (f"became {loss}" if not math.isfinite(loss) else
               f"reached {loss:.4g}, more than {DIVERGENCE_FACTOR:g}× the first step's loss ({self.loss_ref:.4g})")
        with self._writes(log.path):
            log.note({"step": self.step, "event": "diverged", "loss": _finite(loss), "limit": _finite(limit),
                      "reason": why})
        kept = (f"the resume state of step {self.saved_step} (saved before) is kept in {self.state_path.parent}"
                if self.saved_step is not None and self.state_path is not None else "no resume state was saved")
        raise TrainingError(
            f"training diverged at step {self.step}: the loss {why}. Lower the learning rate (--lr {self.settings.lr:g}; "
            f"try {self.settings.lr / 10:g}) and check the activations' scale. Nothing was saved as a trained "
            f"crosscoder; {kept}, but a resume needs the same settings: to train with another --lr, delete "
            f"{self.state_path.parent if self.state_path is not None else 'the state'} or use a new run")

    def _checkpoint(self, log: MetricsLog) -> None:
        """Validation and the resume state, at their intervals and at the last step."""
        s, done, last = self.settings, self.step, self.step == self.total
        if s.val_every and (done % s.val_every == 0 or last):
            if self.sharded and self.saves:  # the whole held-out set on the first checkpoint group
                v = parallel.validate(self.model, self.source.heldout(s.val_batches), s, self.mesh)
                if v is not None and self.world.is_main:
                    with self._writes(log.path):
                        log.write({"step": done, "split": "heldout", **v})
            elif self.world.is_main and not self.sharded:  # the whole held-out set on one process; the others wait
                v = validate(self.model, self.source.heldout(s.val_batches), s)
                if v is not None:
                    with self._writes(log.path):
                        log.write({"step": done, "split": "heldout", **v})
            distributed.barrier()
        if done % s.save_every == 0 or last:
            self.save_state(log.rows)
            distributed.barrier()

    def finish(self) -> Crosscoder:
        """Inference state, saved with the settings and data it came from."""
        self.model.eval()
        self.recipe.finish(self.model)
        if self.out is not None and self.saves and self.state_path is not None and not self.state_path.exists():
            self.save_state()  # total reached before any save point
        model = self.model
        if self.sharded:  # every shard into the whole crosscoder on rank 0 (None elsewhere: ranks return shards)
            whole = parallel.gather_model(self.model, self._model_config(), self.mesh) if self.saves else None
            model = whole.eval() if whole is not None else self.model
        if self.out is not None and self.world.is_main:
            with self._writes(self.out / f"{{{CONFIG_FILE}, {WEIGHTS_FILE}}}"):
                model.save(self.out, extra={"training": self.settings.model_dump(mode="json", exclude={"run"}),
                                                 "data": self.whole.fingerprint(), "steps": self.total})
        distributed.barrier()
        return model


def make_trainer(data: torch.Tensor | ActivationStore, settings: TrainSettings, out: Path | None,
             heldout: torch.Tensor | None, world: distributed.World) -> Trainer:
    """A trainer on ``data``, resumed from ``out/state`` when there is one (settings and data checked).

    With ``checkpoint_parallel`` P > 1 the world is laid out as data × checkpoint (:mod:`.parallel`)
    and this rank's source serves its share of the rows for its block of checkpoints only."""
    P = settings.checkpoint_parallel
    parallel.check_settings(settings, world.size)
    mesh = distributed.mesh(world, P)
    source = make_source(data, settings.batch_size, settings.seed, mesh.data_rank, mesh.data_size,
                         revisions=settings.revisions, normalise=settings.normalise, heldout=heldout)
    if P == 1:
        trainer = Trainer(settings, source, out, world, mesh)
        trainer.resume()
        return trainer
    lo, hi = parallel.shard_range(source.n_checkpoints, P, mesh.checkpoint_rank)
    if isinstance(data, torch.Tensor):
        shard = make_source(data[:, lo:hi], settings.batch_size, settings.seed, mesh.data_rank, mesh.data_size,
                            revisions=source.revisions[lo:hi],
                            heldout=heldout[:, lo:hi] if heldout is not None else None)
    else:
        shard = parallel.StoreShardSource(data, source.revisions, lo, hi, settings.batch_size, settings.seed,
                                          settings.normalise, mesh.data_rank, mesh.data_size)
    trainer = Trainer(settings, shard, out, world, mesh, whole=source)
    trainer.resume()
    return trainer


def fit(data: torch.Tensor | ActivationStore, settings: TrainSettings | None = None, out: str | Path | None = None,
        heldout: torch.Tensor | None = None, **overrides: Any) -> Crosscoder:
    """Train a crosscoder on ``data``: a float tensor ``[N, M, d]`` in memory, or an activation store.

    ``heldout``: optional ``[N', M, d]`` tensor for validation of in-memory data (a store
    validates on its held-out split). With ``out``, writes the outputs described in the
    module docstring and resumes from ``out/state`` when present. Returns the trained model
    (normalised space, scales recorded; ``model.folded()`` maps raw activations).
    """
    settings = settings or TrainSettings()
    if overrides:  # fit(x, settings, steps=10): validated like the settings themselves (what was not set stays
        # unset, so another variant= starts from its own defaults)
        settings = type(settings)(**{**settings.model_dump(exclude_unset=True), **overrides})
    world = distributed.join(distributed.resolve_device(settings.device))
    return make_trainer(data, settings, Path(out) if out is not None else None, heldout, world).run()
