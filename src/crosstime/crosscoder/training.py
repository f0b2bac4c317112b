"""Crosscoder training: resumable, data-parallel, with per-step metrics.

    model = crosstime.train(acts, TrainConfig(steps=2000, batch_size=1024))   # acts: [N, M, d]
    model = crosstime.train("runs/x/activations", TrainConfig(out="runs/x/crosscoder"))

Recipe (the papers' defaults unless noted): Adam(0.9, 0.999), lr 5e-5 constant then linear
decay to 0 over the last 20% of steps, sparsity coefficient (2 for the L1) warmed up
linearly from 0 over the first 5%, gradient norm clipped to 1, batch 4096, 400M tokens.
The demo (`crosstime demo`, the toy world) uses fewer tokens, smaller batches and a higher
learning rate, since its model is tiny and its data small.

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
``metrics.jsonl`` (one line per step; validation lines carry ``"split": "heldout"``),
``state/`` (resume).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crosstime.crosscoder import losses
from crosstime.crosscoder.data import DataError, make_source
from crosstime.crosscoder.model import Crosscoder, CrosscoderConfig, build, known_variants

STATE_FILE = "trainer.pt"
METRICS_FILE = "metrics.jsonl"

# Settings that do not change the weights; they may differ when resuming.
RESUMABLE_FIELDS = {"out", "progress", "wandb_project", "tensorboard", "log_every", "save_every", "val_every",
                    "val_batches", "device"}


class TrainConfig(BaseModel):
    """Settings of the train stage (shared by ``crosstime train`` and :func:`train`)."""

    model_config = ConfigDict(extra="forbid")

    # architecture
    variant: str = Field("relu", description="relu | topk | batchtopk | jumprelu")
    n_features: int | None = Field(None, description="F, dictionary size (default: expansion × d)")
    expansion: int = Field(8, ge=1, description="F = expansion × d when n_features is not given (paper: 16384 = 8 × 2048)")
    k: int = Field(32, ge=1, description="topk/batchtopk: active features per token")
    l1_norm: Literal["sum", "concat"] = Field("sum", description="relu: Σ_m ‖W_dec[i,m]‖ (sum) or concatenated norm")
    dec_init_norm: float | None = Field(None, gt=0, description="decoder row norm at init (default 0.08; 1.0 for topk/batchtopk)")
    jumprelu_threshold_init: float = Field(
        0.001, gt=0, description="jumprelu: initial θ, in pre-activation units (the JumpReLU paper's 0.001; "
        "raise it with the data's scale)")
    jumprelu_bandwidth: float = Field(0.001, gt=0, description="jumprelu: STE kernel width ε, pre-activation units")
    jumprelu_penalty: Literal["tanh", "step"] = Field("tanh", description="jumprelu sparsity: tanh(c·f·w) or step L0")
    jumprelu_tanh_c: float = Field(4.0, gt=0)
    # optimisation
    lr: float = Field(5e-5, gt=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = Field(4096, ge=1, description="global batch (rows), split across ranks")
    steps: int | None = Field(None, ge=1, description="training steps (default: tokens // batch_size)")
    tokens: int = Field(400_000_000, ge=1, description="training rows when steps is not given")
    lr_decay_frac: float = Field(0.2, ge=0, le=1, description="linear decay to 0 over this final share of steps")
    sparsity_coeff: float = Field(2.0, ge=0, description="λ of the L1 (relu) / L0 (jumprelu) penalty")
    sparsity_warmup_frac: float = Field(0.05, ge=0, le=1, description="λ ramps from 0 over this first share")
    grad_clip: float | None = Field(1.0, gt=0)
    recon_reduce: Literal["sum", "mean"] = Field(
        "sum", description="reconstruction: sum over checkpoints (papers) or mean (keeps λ comparable across M)")
    seed: int = 0
    # topk / batchtopk
    k_init: int | None = Field(None, ge=1, description="anneal k linearly from k_init to k over k_anneal_steps")
    k_anneal_steps: int = Field(0, ge=0)
    auxk_coeff: float = Field(1 / 32, ge=0)
    k_aux: int | None = Field(None, ge=1, description="dead features used by AuxK per token (default d // 2)")
    dead_tokens: int = Field(10_000_000, ge=1, description="a feature is dead after this many rows without firing")
    threshold_start_step: int = Field(1000, ge=0, description="batchtopk: first step of the threshold EMA")
    threshold_beta: float = Field(0.999, ge=0, lt=1)
    # data
    revisions: list[str] | None = Field(None, description="store checkpoints to train on (default: all)")
    normalise: bool = Field(True, description="scale store activations by s_m = sqrt(d)/E‖x_m‖")
    # execution
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: autocast matmuls, fp32 master weights")
    fused: bool = Field(True, description="hand-derived ReLU/L1 step (fp32); off = autograd for every variant")
    device: str = "cpu"
    # outputs
    out: str | None = Field(None, description="output folder (config.json, model.safetensors, metrics.jsonl, state/)")
    save_every: int = Field(500, ge=1, description="steps between resume states")
    log_every: int = Field(1, ge=1)
    val_every: int = Field(100, ge=0, description="steps between held-out validations (0: never)")
    val_batches: int = Field(30, ge=1)
    progress: bool = True
    wandb_project: str | None = Field(None, description="log to Weights & Biases (optional, needs `wandb`)")
    tensorboard: bool = Field(False, description="log to TensorBoard under out/tensorboard (needs `tensorboard`)")

    @field_validator("variant")
    @classmethod
    def _known_variant(cls, v: str) -> str:
        if v not in known_variants():
            raise ValueError(f"unknown crosscoder variant {v!r}; known variants: {', '.join(known_variants())}")
        return v

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.n_features is not None and self.n_features < 1:
            raise ValueError(f"n_features (F) = {self.n_features}: the dictionary needs at least one feature")
        return self

    def total_steps(self) -> int:
        return self.steps if self.steps is not None else max(1, self.tokens // self.batch_size)


# -- schedules -------------------------------------------------------------------------------

def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Constant, then linear decay to 0 over the last ``lr_decay_frac`` of training."""
    start = (1 - cfg.lr_decay_frac) * total
    if step < start or cfg.lr_decay_frac == 0:
        return cfg.lr
    return cfg.lr * max(0.0, (total - step) / (cfg.lr_decay_frac * total))


def sparsity_coeff_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Linear warm-up from 0 over the first ``sparsity_warmup_frac`` of training (as in the reference)."""
    warm = cfg.sparsity_warmup_frac * total
    return cfg.sparsity_coeff if warm <= 0 else cfg.sparsity_coeff * min(1.0, step / warm)


def k_at(cfg: TrainConfig, step: int) -> int:
    if cfg.k_init is None or cfg.k_anneal_steps == 0 or step >= cfg.k_anneal_steps:
        return cfg.k
    return max(1, round(cfg.k_init + (cfg.k - cfg.k_init) * step / cfg.k_anneal_steps))


# -- one step --------------------------------------------------------------------------------

def autograd_step(model: Crosscoder, x: torch.Tensor, cfg: TrainConfig, coeff: float,
                  dead: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Forward + backward of the variant's loss by autograd (every variant; the reference path)."""
    variant = model.config.variant
    B = x.shape[0]
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    with autocast:
        z = model.pre_acts(x)
        sparse = variant in ("topk", "batchtopk")
        if sparse:
            sf = model.activate_sparse(z.float())
            x_hat = model.decode_sparse(sf)
        else:
            f = model.activate(z)
            x_hat = model.decode(f)
    z, x_hat = z.float(), x_hat.float()
    recon = losses.reconstruction_loss(x, x_hat, cfg.recon_reduce)
    w = model.feature_weights()
    aux = x.new_zeros(())
    out: dict[str, torch.Tensor] = {}
    if variant == "relu":
        f = f.float()
        sparsity = losses.l1_penalty(f, w)
        loss = recon + coeff * sparsity
    elif variant == "jumprelu":
        f = f.float()
        sparsity = losses.jumprelu_penalty(model, z, f, w, cfg.jumprelu_penalty, cfg.jumprelu_tanh_c)
        loss = recon + coeff * sparsity
    else:
        sparsity = ((sf.values * w[sf.cols]).sum() / B).detach()  # logged only, as in the reference
        if dead is not None and cfg.auxk_coeff > 0 and bool(dead.any()):
            aux = losses.auxk_loss(model, z, x, x_hat, dead, cfg.k_aux or max(1, model.d_model // 2))
        loss = recon + cfg.auxk_coeff * aux
    loss.backward()
    with torch.no_grad():
        if sparse:
            active = sf.values > 0
            out["l0"] = active.sum().float() / B
            out["fired"] = torch.bincount(sf.cols[active], minlength=model.n_features) > 0
            if variant == "batchtopk" and active.any():
                out["min_kept"] = (sf.values * w[sf.cols])[active].min()
        else:
            active = f.detach().float().sign()  # f >= 0 here; sign() is far cheaper than bool reductions on CPU
            out["l0"] = active.sum() / B
            out["fired"] = active.sum(0) > 0
        out["e2"] = (x_hat - x).pow(2).sum(dim=(0, 2))
    out.update(recon=recon.detach(), sparsity=sparsity.detach(), aux=aux.detach(), loss=loss.detach())
    return out


def _clip_(params: list[torch.Tensor], max_norm: float | None, opt: torch.optim.Optimizer | None = None) -> float:
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


# -- state -----------------------------------------------------------------------------------

def _config_diff(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    keys = sorted((set(saved) | set(now)) - RESUMABLE_FIELDS)
    return [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]


def _save_state(path: Path, step: int, model, opt, tokens_since_fired, cfg_dump, fingerprint) -> None:
    from crosstime.files import atomic_path

    state = {"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "tokens_since_fired": tokens_since_fired, "rng": torch.get_rng_state(),
             "config": cfg_dump, "data": fingerprint}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # a line cut short by a kill
        return None


class _Log:
    """metrics.jsonl (+ optional wandb / TensorBoard, imported only when asked for)."""

    def __init__(self, cfg: TrainConfig, out: Path | None, start_step: int, enabled: bool):
        self.enabled = enabled
        self.file = None
        self.wandb = self.tb = None
        if not enabled:
            return
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            path = out / METRICS_FILE
            if path.exists():  # drop lines past the resumed state (they will be recomputed)
                from crosstime.files import write_text

                write_text(path, "".join(ln + "\n" for ln in path.read_text().splitlines()
                                         if _step_of(ln) is not None and _step_of(ln) <= start_step))
            self.file = open(path, "a", buffering=1)
        if cfg.wandb_project:
            try:
                import wandb
            except ImportError as e:
                raise ImportError("wandb_project is set but wandb is not installed (pip install wandb)") from e
            # a resumed training continues the same W&B run: its id is kept beside the trainer state
            id_file = out / "state" / "wandb-run-id" if out is not None else None
            run_id = id_file.read_text().strip() if id_file is not None and id_file.exists() else None
            self.wandb = wandb.init(project=cfg.wandb_project, config=cfg.model_dump(mode="json"), id=run_id,
                                    resume="allow" if run_id else None, dir=str(out) if out is not None else None)
            if id_file is not None and run_id is None:
                from crosstime.files import write_text

                write_text(id_file, self.wandb.id)
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("tensorboard logging asked for but tensorboard is not installed "
                                  "(pip install tensorboard)") from e
            # purge_step: on resume, TensorBoard hides the events logged past the resumed state
            self.tb = SummaryWriter(str((out or Path(".")) / "tensorboard"),
                                    purge_step=start_step + 1 if start_step else None)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self.file is not None:
            self.file.write(json.dumps(row) + "\n")
        prefix = "val/" if row.get("split") == "heldout" else "train/"
        flat = {}
        for k, v in row.items():
            if isinstance(v, list):  # ev per checkpoint; None (not finite) is left out
                flat.update({f"{prefix}{k}_{i}": x for i, x in enumerate(v) if x is not None})
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
                flat[prefix + k] = v
        if self.wandb is not None:
            self.wandb.log(flat, step=row["step"])
        if self.tb is not None:
            for k, v in flat.items():
                self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.wandb is not None:
            self.wandb.finish()
        if self.tb is not None:
            self.tb.close()


# -- the loop --------------------------------------------------------------------------------

def _allreduce_(t: torch.Tensor, op=None) -> torch.Tensor:
    import torch.distributed as dist

    dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


@torch.no_grad()
def validate(model: Crosscoder, batches, cfg: TrainConfig) -> dict[str, Any] | None:
    """Held-out metrics in eval mode; reads nothing back into the model (no threshold/dead updates)."""
    was = model.training
    model.eval()
    try:
        sums, stats = None, torch.zeros(3, dtype=torch.float64)
        for x in batches:
            x = x.to(cfg.device)
            f = model.encode(x)
            x_hat = model.decode(f)
            s = losses.moment_sums(x, x_hat)
            sums = s if sums is None else sums + s
            stats += torch.tensor([float(losses.reconstruction_loss(x, x_hat, cfg.recon_reduce)) * len(x),
                                   float(f.float().sign().sum()), float(len(x))], dtype=torch.float64)
        if sums is None:
            return None
        ev = losses.explained_variance(sums)
        return {"recon": float(stats[0] / stats[2]), "l0": float(stats[1] / stats[2]),
                "ev": [float(v) for v in ev], "ev_mean": float(ev.mean()), "rows": int(stats[2])}
    finally:
        model.train(was)


def train(data, config: TrainConfig | None = None, heldout: torch.Tensor | None = None, **overrides) -> Crosscoder:
    """Train a crosscoder on ``data``: an in-memory float tensor ``[N, M, d]`` or an activation store path.

    ``heldout``: optional ``[N', M, d]`` tensor for validation of in-memory data (a store
    validates on its held-out split). Returns the trained model (normalised space, scales
    recorded; ``model.folded()`` maps raw activations). With ``config.out`` set, writes the
    outputs described in the module docstring and resumes from ``out/state`` when present.
    """
    from crosstime import distributed as dist_mod

    cfg = config or TrainConfig()
    if overrides:  # train(x, cfg, steps=10): validated like the config itself
        cfg = TrainConfig(**{**cfg.model_dump(), **overrides})
    world = dist_mod.init(cfg.device)
    is_dist = world.size > 1
    source = make_source(data, cfg.batch_size, cfg.seed, world.rank, world.size, revisions=cfg.revisions,
                         normalise=cfg.normalise, heldout=heldout)
    M, d = source.n_checkpoints, source.d_model
    F = cfg.n_features or cfg.expansion * d
    dec_norm = cfg.dec_init_norm or (1.0 if cfg.variant in ("topk", "batchtopk") else 0.08)
    model_cfg = CrosscoderConfig(
        variant=cfg.variant, n_checkpoints=M, d_model=d, n_features=F, dec_init_norm=dec_norm, seed=cfg.seed,
        l1_norm=cfg.l1_norm, k=cfg.k, jumprelu_threshold_init=cfg.jumprelu_threshold_init,
        jumprelu_bandwidth=cfg.jumprelu_bandwidth, revisions=source.revisions, scales=source.scales)
    device = torch.device(cfg.device)
    if cfg.precision == "bf16" and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        # measured on an AVX2 EPYC: bf16 GEMMs 15-20x slower than fp32 (benchmarks/RESULTS.md)
        warnings.warn("precision='bf16' on a CPU without bf16 instructions (AVX512-BF16/AMX) runs the matmuls "
                      "in emulation, many times slower than fp32; use precision='fp32' here and bf16 on a GPU",
                      stacklevel=2)
    model = build(model_cfg).to(device)
    params = list(model.parameters())
    fused_ok = device.type in ("cpu", "cuda")
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.adam_betas, fused=fused_ok or None,
                           foreach=None if fused_ok else True)
    total = cfg.total_steps()
    tokens_since_fired = torch.zeros(F, dtype=torch.int64)
    cfg_dump = cfg.model_dump(mode="json")
    fingerprint = source.fingerprint()

    out = Path(cfg.out) if cfg.out else None
    state_path = out / "state" / STATE_FILE if out else None
    start = 0
    if state_path is not None and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        diff = _config_diff(state["config"], cfg_dump)
        if diff:
            raise ValueError(f"{out} holds a training started with different settings ({'; '.join(diff)}); "
                             f"re-run with the original settings to resume, or use a new output folder")
        saved_M, saved_d = state["model"]["W_dec"].shape[1:]
        if (saved_M, saved_d) != (M, d):
            raise DataError(f"the activations have M = {M} checkpoints of width d = {d}, but the crosscoder being "
                            f"resumed in {out} has M = {saved_M}, d = {saved_d}; train on the same activations "
                            "(same store, revisions and layer) or use a new output folder")
        if state["data"] != fingerprint:
            raise DataError(f"{out} holds a training on different data (saved {state['data']}, now {fingerprint}); "
                            "resume on the same activations or use a new output folder")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        tokens_since_fired = state["tokens_since_fired"]
        torch.set_rng_state(state["rng"])
        start = int(state["step"])

    use_fused = cfg.fused and cfg.variant == "relu" and cfg.precision == "fp32"
    log = _Log(cfg, out, start, world.is_main)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=start, disable=not (cfg.progress and world.is_main), desc="train crosscoder",
               unit="step")
    it = source.iterate(start)
    t0 = time.perf_counter()
    model.train()
    try:
        for step in range(start, total):
            x = next(it).to(device, non_blocking=True)
            lr = lr_at(cfg, step, total)
            for group in opt.param_groups:
                group["lr"] = lr
            coeff = sparsity_coeff_at(cfg, step, total)
            if hasattr(model, "k"):
                model.k = k_at(cfg, step)
            dead = tokens_since_fired >= cfg.dead_tokens
            if use_fused:
                from crosstime.crosscoder.fused import relu_l1_step

                s = relu_l1_step(model, x, coeff, cfg.recon_reduce)
            else:
                opt.zero_grad(set_to_none=False)
                s = autograd_step(model, x, cfg, coeff, dead.to(device))
            # per-rank means -> global means (each rank holds an equal share)
            scal = torch.stack([s["recon"], s["sparsity"], s.get("aux", x.new_zeros(())), s["l0"], s["loss"]]).double()
            # per-checkpoint Σ(x̂−x)², Σ‖x‖², Σx: explained variance of the global batch, about its mean
            moments = torch.cat([s["e2"].double(), x.square().sum(dim=(0, 2)).double(),  # vector_norm: 3x slower
                                 x.sum(0).double().flatten()])
            fired = s["fired"]
            mins = s.get("min_kept")
            if is_dist:
                import torch.distributed as tdist

                flat = torch.cat([p.grad.reshape(-1) for p in params])
                _allreduce_(flat).div_(world.size)
                off = 0
                for p in params:
                    n = p.numel()
                    p.grad.copy_(flat[off : off + n].view_as(p))
                    off += n
                _allreduce_(scal).div_(world.size)
                _allreduce_(moments)
                # collectives on the training device: NCCL reduces GPU tensors only (gloo: the CPU)
                fired = _allreduce_(fired.to(torch.int32), tdist.ReduceOp.MAX).bool()
                if model.config.variant == "batchtopk":
                    m = torch.tensor([float(mins) if mins is not None else float("inf")], dtype=torch.float64,
                                     device=device)
                    mins = _allreduce_(m, tdist.ReduceOp.MIN)[0]
            grad_norm = _clip_(params, cfg.grad_clip, opt)
            opt.step()
            # bookkeeping from this training batch only (never from validation: bug B2)
            tokens_since_fired += cfg.batch_size
            tokens_since_fired[fired.cpu()] = 0
            if model.config.variant == "batchtopk" and step >= cfg.threshold_start_step and mins is not None:
                model.update_threshold(float(mins), cfg.threshold_beta)
            done = step + 1
            if world.is_main and (done % cfg.log_every == 0 or done == total):
                e2, x2, sx = moments[:M], moments[M : 2 * M], moments[2 * M :].view(M, d)
                var = x2 - sx.pow(2).sum(1) / cfg.batch_size
                ev = (1 - e2 / var.clamp_min(1e-30)).tolist()
                row = {"step": done, "lr": lr, "sparsity_coeff": coeff, "loss": float(scal[4]),
                       "recon": float(scal[0]), "sparsity": float(scal[1]), "aux": float(scal[2]),
                       "l0": float(scal[3]), "ev": [_finite(v) for v in ev], "ev_mean": _finite(sum(ev) / len(ev)),
                       "dead_frac": float((tokens_since_fired >= cfg.dead_tokens).float().mean()),
                       "grad_norm": grad_norm, "tokens": done * cfg.batch_size,
                       "seconds": round(time.perf_counter() - t0, 3)}
                if hasattr(model, "k"):
                    row["k"] = model.k
                if model.config.variant == "batchtopk":
                    row["threshold"] = float(model.threshold)
                log.write(row)
                bar.set_postfix(loss=f"{row['loss']:.4g}", l0=f"{row['l0']:.1f}", ev=f"{row['ev_mean'] or 0:.3f}",
                                refresh=False)
            if not math.isfinite(float(scal[4])):
                raise FloatingPointError(f"the training loss became {float(scal[4])} at step {done}; lower --lr "
                                         "(and check the activations' scale)")
            if cfg.val_every and (done % cfg.val_every == 0 or done == total):
                if world.is_main:  # the whole held-out set on one process; the others wait
                    v = validate(model, source.heldout(cfg.val_batches), cfg)
                    if v is not None:
                        log.write({"step": done, "split": "heldout", **v})
                dist_mod.barrier()
            if state_path is not None and (done % cfg.save_every == 0 or done == total):
                if world.is_main:
                    _save_state(state_path, done, model, opt, tokens_since_fired, cfg_dump, fingerprint)
                dist_mod.barrier()
            bar.update(1)
    finally:
        bar.close()
        log.close()
    model.eval()
    if hasattr(model, "k"):
        model.k = cfg.k
    if out is not None and world.is_main:
        if state_path is not None and not state_path.exists():  # total reached before any save point
            _save_state(state_path, total, model, opt, tokens_since_fired, cfg_dump, fingerprint)
        model.save(out, extra={"training": cfg_dump, "data": fingerprint, "steps": total})
    dist_mod.barrier()
    return model
