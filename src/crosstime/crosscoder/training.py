"""Crosscoder training: resumable, data-parallel, with per-step metrics.

    model = fit(acts, TrainSettings(steps=2000, batch_size=1024))          # acts: [N, M, d] in memory
    model = train(TrainConfig(run="runs/x", steps=2000))                  # the stage: RUN/activations -> RUN/crosscoder

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
uninterrupted run. Resuming with different settings is refused, naming the fields.

Many processes: under ``torchrun`` each rank trains on its share of every global batch and
gradients are averaged across ranks (all-reduce, as DistributedDataParallel does; done by
hand because the fused ReLU step computes gradients without autograd). With the same global
batch the result equals single-process training to float tolerance. BatchTopK ranks within
each rank's share (k · B/world per rank); its threshold estimate is reduced across ranks.

Outputs in ``out``: ``config.json`` + ``model.safetensors`` (normalised-space weights with
``scales`` and ``revisions`` recorded; ``Crosscoder.folded()`` gives the raw-space model),
``metrics.jsonl`` (:mod:`.logs`), ``state/`` (resume).
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from crosstime import distributed, stage
from crosstime.crosscoder import losses
from crosstime.crosscoder.data import DataError, make_source
from crosstime.crosscoder.logs import MetricsLog
from crosstime.crosscoder.model import (
    Crosscoder,
    CrosscoderConfig,
    build,
    variant,
)
from crosstime.crosscoder.recipe import StepContext, StepOutput
from crosstime.crosscoder.settings import TrainConfig, TrainSettings
from crosstime.errors import CrosstimeError
from crosstime.files import atomic_path
from crosstime.store import ActivationStore

STATE_FILE = "trainer.pt"


class TrainingError(CrosstimeError):
    """A training that cannot go on: other settings than the state it would resume, or a loss gone non-finite."""


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


def clip_gradients(params: list[torch.Tensor], max_norm: float | None, opt: torch.optim.Optimizer | None = None) -> float:
    """Gradient-norm clipping as ``clip_grad_norm_`` (factor ``max_norm / (norm + 1e-6)`` when above).

    With a fused Adam the factor is handed to the optimiser's kernel as its ``grad_scale``
    (the divisor GradScaler uses), so clipping costs no extra pass over the gradients;
    otherwise the gradients are rescaled, and only when clipping applies. Returns the norm.
    """
    grads = [p.grad for p in params if p.grad is not None]
    n = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
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
    import torch.distributed as dist

    dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


class Trainer:
    """One training run: the model, its optimiser and the variant's recipe, resumable from ``out/state``."""

    def __init__(self, settings: TrainSettings, source, out: Path | None, world: distributed.World):
        self.settings, self.source, self.out, self.world = settings, source, out, world
        self.device = distributed.resolve_device(settings.device, world.local_rank)
        self.recipe = variant(settings.variant).recipe(settings)
        self.model = build(self._model_config()).to(self.device)
        self.params = list(self.model.parameters())
        fused = self.device.type in ("cpu", "cuda")
        self.opt = torch.optim.Adam(self.params, lr=settings.lr, betas=settings.adam_betas, fused=fused or None,
                                    foreach=None if fused else True)
        self.total = settings.total_steps()
        self.tokens_since_fired = torch.zeros(self.model.n_features, dtype=torch.int64)
        self.step = 0
        self.fingerprint = source.fingerprint()
        self.state_path = out / "state" / STATE_FILE if out is not None else None
        if settings.precision == "bf16" and self.device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            # measured on an AVX2 EPYC: bf16 GEMMs 15-20x slower than fp32 (benchmarks/RESULTS.md)
            warnings.warn("precision='bf16' on a CPU without bf16 instructions (AVX512-BF16/AMX) runs the matmuls "
                          "in emulation, many times slower than fp32; use precision='fp32' here and bf16 on a GPU",
                          stacklevel=3)

    def _model_config(self) -> CrosscoderConfig:
        s, src = self.settings, self.source
        M, d = src.n_checkpoints, src.d_model
        return CrosscoderConfig(
            variant=s.variant, n_checkpoints=M, d_model=d, n_features=s.n_features or s.expansion * d,
            dec_init_norm=s.dec_init_norm or self.recipe.dec_init_norm, seed=s.seed, l1_norm=s.l1_norm, k=s.k,
            jumprelu_threshold_init=s.jumprelu_threshold_init, jumprelu_bandwidth=s.jumprelu_bandwidth,
            revisions=src.revisions, scales=src.scales, normalised=src.normalised)

    # -- resume --------------------------------------------------------------------------
    def resume(self) -> None:
        """Continue from ``out/state/trainer.pt`` when there is one; refuse other settings or data."""
        if self.state_path is None or not self.state_path.exists():
            return
        state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        now = self.settings.weight_settings()
        diff = [f"{k}: {state['settings'].get(k)!r} -> {now.get(k)!r}"
                for k in sorted(set(state["settings"]) | set(now)) if state["settings"].get(k) != now.get(k)]
        if diff:
            raise TrainingError(f"{self.out} holds a training started with different settings ({'; '.join(diff)}); "
                             f"re-run with the original settings to resume, or use a new output folder")
        saved_M, saved_d = state["model"]["W_dec"].shape[1:]
        M, d = self.model.n_checkpoints, self.model.d_model
        if (saved_M, saved_d) != (M, d):
            raise DataError(f"the activations have M = {M} checkpoints of width d = {d}, but the crosscoder being "
                            f"resumed in {self.out} has M = {saved_M}, d = {saved_d}; train on the same activations "
                            "(same store, revisions and layer) or use a new output folder")
        if state["data"] != self.fingerprint:
            raise DataError(f"{self.out} holds a training on different data (saved {state['data']}, now "
                            f"{self.fingerprint}); resume on the same activations or use a new output folder")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.tokens_since_fired = state["tokens_since_fired"]
        torch.set_rng_state(state["rng"])
        self.step = int(state["step"])

    def save_state(self) -> None:
        if self.state_path is None or not self.world.is_main:
            return
        state = {"step": self.step, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                 "tokens_since_fired": self.tokens_since_fired, "rng": torch.get_rng_state(),
                 "settings": self.settings.weight_settings(), "data": self.fingerprint}
        with atomic_path(self.state_path) as tmp:
            torch.save(state, tmp)

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
        moments = torch.cat([out.e2.double(), x.square().sum(dim=(0, 2)).double(),  # vector_norm: 3x slower
                             x.sum(0).double().flatten()])
        if self.world.distributed:
            self._reduce(out, scal, moments)
        grad_norm = clip_gradients(self.params, s.grad_clip, self.opt)
        self.opt.step()
        # bookkeeping from this training batch only (never from validation: bug B2)
        self.tokens_since_fired += s.batch_size
        self.tokens_since_fired[out.fired.cpu()] = 0
        self.recipe.after_step(self.model, out, ctx)
        return out, scal, moments, grad_norm

    def _reduce(self, out: StepOutput, scal: torch.Tensor, moments: torch.Tensor) -> None:
        """Gradients and per-rank means -> global means, sums -> global sums (each rank holds an
        equal share); collectives on the training device (NCCL reduces GPU tensors only)."""
        import torch.distributed as tdist

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

    def metrics_row(self, scal: torch.Tensor, moments: torch.Tensor, grad_norm: float, seconds: float) -> dict[str, Any]:
        s, done = self.settings, self.step
        M, d = self.model.n_checkpoints, self.model.d_model
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
        from tqdm.auto import tqdm

        s, main = self.settings, self.world.is_main
        log = MetricsLog(s, self.out, self.step, main)
        bar = tqdm(total=self.total, initial=self.step, disable=not (s.progress and main), desc="train crosscoder",
                   unit="step")
        batches = self.source.iterate(self.step)
        t0 = time.perf_counter()
        self.model.train()
        try:
            while self.step < self.total:
                out, scal, moments, grad_norm = self.train_step(next(batches).to(self.device, non_blocking=True))
                self.step += 1
                if main and (self.step % s.log_every == 0 or self.step == self.total):
                    row = self.metrics_row(scal, moments, grad_norm, time.perf_counter() - t0)
                    log.write(row)
                    bar.set_postfix(loss=f"{row['loss']:.4g}", l0=f"{row['l0']:.1f}", ev=f"{row['ev_mean'] or 0:.3f}",
                                    refresh=False)
                if not math.isfinite(float(scal[4])):
                    raise TrainingError(f"the training loss became {float(scal[4])} at step {self.step}; lower "
                                             "--lr (and check the activations' scale)")
                self._checkpoint(log)
                bar.update(1)
        finally:
            bar.close()
            log.close()
        return self.finish()

    def _checkpoint(self, log: MetricsLog) -> None:
        """Validation and the resume state, at their intervals and at the last step."""
        s, done, last = self.settings, self.step, self.step == self.total
        if s.val_every and (done % s.val_every == 0 or last):
            if self.world.is_main:  # the whole held-out set on one process; the others wait
                v = validate(self.model, self.source.heldout(s.val_batches), s)
                if v is not None:
                    log.write({"step": done, "split": "heldout", **v})
            distributed.barrier()
        if done % s.save_every == 0 or last:
            self.save_state()
            distributed.barrier()

    def finish(self) -> Crosscoder:
        """Inference state, saved with the settings and data it came from."""
        self.model.eval()
        self.recipe.finish(self.model)
        if self.out is not None and self.world.is_main:
            if self.state_path is not None and not self.state_path.exists():  # total reached before any save point
                self.save_state()
            self.model.save(self.out, extra={"training": self.settings.model_dump(mode="json", exclude={"run"}),
                                             "data": self.fingerprint, "steps": self.total})
        distributed.barrier()
        return self.model


def _trainer(data: torch.Tensor | ActivationStore, settings: TrainSettings, out: Path | None,
             heldout: torch.Tensor | None, world: distributed.World) -> Trainer:
    """A trainer on ``data``, resumed from ``out/state`` when there is one (settings and data checked)."""
    source = make_source(data, settings.batch_size, settings.seed, world.rank, world.size,
                         revisions=settings.revisions, normalise=settings.normalise, heldout=heldout)
    trainer = Trainer(settings, source, out, world)
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
    if overrides:  # fit(x, settings, steps=10): validated like the settings themselves
        settings = type(settings)(**{**settings.model_dump(), **overrides})
    world = distributed.join(distributed.resolve_device(settings.device))
    return _trainer(data, settings, Path(out) if out is not None else None, heldout, world).run()


def train(config: TrainConfig) -> Crosscoder:
    """The train stage: a crosscoder on ``RUN/activations``, written to ``RUN/crosscoder`` (resumes when re-run).

    The store, the settings and a resumed state are checked before the stage's record is cleared."""
    run = config.rundir
    store = ActivationStore(run.activations)
    world = distributed.join(distributed.resolve_device(config.device))
    trainer = _trainer(store, config, run.crosscoder, None, world)
    with stage.writing(config):
        return trainer.run()
