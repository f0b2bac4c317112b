"""The evaluate stage: how well a crosscoder reconstructs each checkpoint, and what its
decoder says about when each feature exists.

    from crosstime.evaluate import EvaluateConfig, evaluate
    result = evaluate(EvaluateConfig(run="runs/toy"))      # also: crosstime evaluate runs/toy

Reads ``RUN/crosscoder`` and ``RUN/activations`` (held-out split only) and writes

    RUN/evaluation.json               every number, per checkpoint, and the settings used
    RUN/evaluation/features.csv       per feature: frequency, norms, RelDec, class, onset/peak/offset
    RUN/evaluation/*.png              RelDec view, trajectories, emergence, ΔCE, frequency

1. Reconstruction (normalised space, as trained; `crosstime.evaluate.metrics`): MSE, explained
   variance about the mean per checkpoint and overall, FVU, L0, dead latents, firing
   frequencies — over ``tokens`` held-out rows.
2. Downstream (raw space): for each checkpoint m, its reconstruction x̂_m — computed from all
   M checkpoints' stored activations of the same tokens, then mapped back to raw space
   (``x̂_m / s_m``, i.e. the crosscoder with the scales folded in) — replaces block L's output
   in checkpoint m's own forward pass at the kept positions (the store's ``first_position``;
   position 0, the attention sink, keeps its clean value by default). Clean, spliced and
   zero-ablated CE, ΔCE, CE recovered and KL(clean ‖ spliced) over the predictions made at
   the replaced positions of ``contexts`` held-out contexts.
3. Decoder space (`crosstime.shares`, normalised-space decoder as in the paper):
   RelDec one-vs-all and pairwise, classes, cosine between checkpoints and rotation between
   consecutive ones, decoder-norm trajectories, onset/peak/offset and the emergence histogram.

The held-out contexts used are a seeded random sample (not the first ones, notes B11).
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from crosstime.shares import (
    class_order,
    classify_shares,
    decoder_cosines,
    decoder_norms,
    emergence_counts,
    pairwise_shares,
    relative_shares,
    rotation_summary,
    trajectories,
)
from crosstime.evaluate.metrics import DownstreamStats, ReconstructionStats
from crosstime.distributed import resolve_device
from crosstime.files import write_json, write_text
from crosstime.rundir import RunDir
from crosstime.series import format_tokens


MIN_ZERO_GAP = 0.05  # nats; below it CE recovered is flagged in the printed table


class EvaluationError(ValueError):
    """An evaluation request that cannot be served (mismatched inputs, too few held-out tokens)."""


class EvaluateConfig(BaseModel):
    """Settings of the evaluate stage (shared by ``crosstime evaluate`` and the Python API)."""

    run: str = Field(description="run directory (reads RUN/crosscoder and RUN/activations, writes RUN/evaluation*)")
    crosscoder: str | None = Field(None, description="crosscoder folder (default: RUN/crosscoder)")
    store: str | None = Field(None, description="activation store (default: RUN/activations)")
    tokens: int | None = Field(None, gt=0, description="held-out activation rows for the reconstruction metrics, "
                                                      "rounded up to whole contexts (default: all held-out rows)")
    contexts: int | None = Field(None, ge=0, description="held-out contexts for the downstream (ΔCE) metrics "
                                                       "(default: all held-out contexts; 0 skips them)")
    batch_rows: int = Field(4096, gt=0, description="activation rows encoded at once")
    context_batch_size: int | None = Field(None, gt=0, description="contexts per forward pass "
                                                                   "(default: about 2048 tokens per forward)")
    dead_tokens: int = Field(100_000, ge=0, description="tokens over which a latent that never fires is dead (and "
                                                        "firing frequencies are counted): the held-out rows, topped up "
                                                        "with train rows when fewer")
    presence: float = Field(0.5, gt=0, le=1, description="trajectory presence threshold: share of a feature's max norm")
    high: float = Field(0.7, gt=0, le=1, description="class threshold: a dominant checkpoint's share exceeds this")
    low: float = Field(0.3, ge=0, lt=1, description="class threshold: a checkpoint with at least this share is shared")
    device: str = Field("auto", description="'auto' (cuda if available, else cpu), 'cpu', 'cuda', …")
    model_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    seed: int = Field(0, description="seed of the held-out context sample and of the plotted sample features")
    plots: bool = True
    progress: bool = True


# ----------------------------------------------------------------------------------------------
# inputs


def _open_inputs(cfg: EvaluateConfig):
    """Open the store and the crosscoder and check they belong together (before any work)."""
    from crosstime.store import ActivationStore, StoreError

    run = RunDir(cfg.run)
    store_path = Path(cfg.store) if cfg.store else run.activations
    cc_path = Path(cfg.crosscoder) if cfg.crosscoder else run.crosscoder
    try:
        store = ActivationStore(store_path)
    except (StoreError, FileNotFoundError) as err:
        raise EvaluationError(f"cannot open the activation store at {store_path}: {err}. "
                              "Harvest it first (`crosstime harvest`) or pass --store.") from err
    if not cc_path.exists():
        raise EvaluationError(f"no crosscoder at {cc_path}; train one first (`crosstime train`) or pass --crosscoder")
    coder = load_normalised_crosscoder(cc_path)
    check_compatible(coder, store, cc_path)
    return run, store, coder


class NormalisedCrosscoder:
    """The crosscoder in *normalised* space (the space it was trained in), plus its metadata.

    ``W_dec [F, M, d]``, ``b_dec [M, d]`` in normalised space; ``encode(x [B, M, d]) -> f [B, F]``
    on normalised activations; ``scales [M]`` (``x_norm = s_m · x_raw``) and the revisions.
    """

    def __init__(self, model, revisions: list[str] | None, scales: list[float] | None, source: str):
        self.model = model
        self.revisions = revisions
        self.scales = scales
        self.source = source

    @property
    def W_dec(self) -> torch.Tensor:
        return self.model.W_dec.detach()

    @property
    def b_dec(self) -> torch.Tensor:
        return self.model.b_dec.detach()

    @property
    def shape(self) -> tuple[int, int, int]:
        F, M, d = self.W_dec.shape
        return F, M, d

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return self.model.decode(f)

    def to(self, device) -> "NormalisedCrosscoder":
        self.model = self.model.to(device)
        return self


def load_normalised_crosscoder(path: str | Path) -> NormalisedCrosscoder:
    """Load ``crosstime.crosscoder.load(path)`` in normalised space (unfolded if saved folded)."""
    from crosstime import crosscoder as cc_module

    model = cc_module.load(path)
    if getattr(model, "is_folded", False):
        model = model.unfold_scales()
    model.eval()
    revisions = getattr(model, "revisions", None)
    scales = getattr(model, "scales", None)
    return NormalisedCrosscoder(model, list(revisions) if revisions else None,
                                [float(v) for v in scales] if scales else None, str(path))


def check_compatible(coder: NormalisedCrosscoder, store, cc_path: Path) -> None:
    """The crosscoder and the store must cover the same checkpoints and width, and the store
    must have a held-out split."""
    F, M, d = coder.shape
    if d != store.d_model:
        raise EvaluationError(f"the crosscoder at {cc_path} has width d={d} but the store at {store.root} has "
                              f"d_model={store.d_model}: they come from different sites or models. Evaluate the "
                              "crosscoder with the store it was trained on (--store).")
    if coder.revisions is not None and list(coder.revisions) != list(store.revisions):
        raise EvaluationError(f"the crosscoder at {cc_path} was trained on checkpoints {coder.revisions} but the store "
                              f"at {store.root} holds {store.revisions}. Evaluate it with the store it was trained on "
                              "(--store), or harvest the missing checkpoints.")
    if M != len(store.revisions):
        raise EvaluationError(f"the crosscoder at {cc_path} has {M} checkpoints but the store at {store.root} holds "
                              f"{len(store.revisions)} ({', '.join(store.revisions)}). Evaluate it with the store it was "
                              "trained on (--store).")
    if coder.scales is not None:
        store_scales = [store.scales[r] for r in store.revisions]
        off = [r for r, a, b in zip(store.revisions, coder.scales, store_scales) if abs(a - b) > 0.01 * b]
        if off:
            raise EvaluationError(f"the crosscoder at {cc_path} was trained with normalisation scales {coder.scales} but "
                                  f"the store at {store.root} has {store_scales} (differ at {off}): it was trained on "
                                  "other activations. Evaluate it with the store it was trained on (--store).")
    if store.n_contexts("heldout") == 0:
        raise EvaluationError(f"the store at {store.root} has no held-out split (0 held-out contexts), so nothing can be "
                              "evaluated on unseen tokens. Harvest a store with held-out tokens (--heldout-tokens > 0).")


def _plan(cfg: EvaluateConfig, store) -> dict[str, Any]:
    """Which held-out contexts serve which metric (a seeded sample, sorted)."""
    n_ctx = store.n_contexts("heldout")
    rpc = store.rows_per_context
    available_rows = n_ctx * rpc
    if cfg.tokens is not None and cfg.tokens > available_rows:
        raise EvaluationError(f"--tokens {cfg.tokens} asks for more held-out activation rows than the store has "
                              f"({available_rows} = {n_ctx} contexts × {rpc} kept positions). Pass --tokens "
                              f"{available_rows} or less, or harvest more held-out tokens.")
    if cfg.contexts is not None and cfg.contexts > n_ctx:
        raise EvaluationError(f"--contexts {cfg.contexts} asks for more held-out contexts than the store has ({n_ctx}). "
                              f"Pass --contexts {n_ctx} or less, or harvest more held-out tokens.")
    n_recon = n_ctx if cfg.tokens is None else math.ceil(cfg.tokens / rpc)
    n_down = n_ctx if cfg.contexts is None else cfg.contexts
    lo, _hi = store.context_range("heldout")
    order = np.random.default_rng(cfg.seed).permutation(n_ctx)
    return {
        "heldout_contexts": n_ctx,
        "rows_per_context": rpc,
        "recon_contexts": np.sort(order[:n_recon]) + lo,
        "down_contexts": np.sort(order[:n_down]) + lo,
    }


# ----------------------------------------------------------------------------------------------
# the stage


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Run the evaluate stage; returns the content written to ``RUN/evaluation.json``."""
    cfg = config
    t0 = time.perf_counter()
    run, store, coder = _open_inputs(cfg)
    plan = _plan(cfg, store)
    revisions = list(store.revisions)
    checkpoints = store.manifest["checkpoints"]
    series = None
    if len(plan["down_contexts"]):
        from crosstime.series import open_series

        series = open_series(store.manifest["series"]["source"], revisions=revisions)
        missing = [r for r in revisions if r not in series.revisions]
        if missing:
            raise EvaluationError(f"the series {series.source} has no checkpoints {missing}; cannot splice into them")
    device = resolve_device(cfg.device)
    coder.to(device)
    # the normalisation the crosscoder was trained with (recorded with it; else the store's)
    scales = torch.tensor(coder.scales or [store.scales[r] for r in revisions], dtype=torch.float32)
    run.save_stage_config("evaluate", cfg)
    timing: dict[str, float] = {}

    # 1. reconstruction (normalised space) + the latents of the downstream contexts
    t = time.perf_counter()
    recon, latents = _encode_pass(cfg, store, coder, plan, scales, device)
    timing["reconstruction_s"] = time.perf_counter() - t

    # 2. downstream, one checkpoint (model) at a time
    t = time.perf_counter()
    downstream: list[dict | None] = [None] * len(revisions)
    if series is not None:
        for m, rev in enumerate(revisions):
            downstream[m] = _downstream_one(cfg, store, series, coder, m, rev, plan, latents, scales, device)
    timing["downstream_s"] = time.perf_counter() - t

    # 3. decoder space (normalised-space decoder, as the paper)
    t = time.perf_counter()
    decoder, features = _decoder_analyses(cfg, coder, revisions, checkpoints, recon["frequency"])
    timing["decoder_s"] = time.perf_counter() - t

    per_ckpt = []
    for m, rev in enumerate(revisions):
        row = {
            "revision": rev,
            "step": checkpoints[rev].get("step"),
            "tokens_seen": checkpoints[rev].get("tokens_seen"),
            "scale": float(scales[m]),
            "mse": recon["mse"][m],
            "explained_variance": recon["explained_variance"][m],
            "fvu": recon["fvu"][m],
            "reldec_mean": decoder["reldec_mean"][m],
        }
        if downstream[m] is not None:
            row.update(downstream[m])
        per_ckpt.append(row)
    F, M, d = coder.shape
    result = {
        "settings": {
            **cfg.model_dump(mode="json"),
            "crosscoder_path": coder.source,
            "store_path": str(store.root),
            "revisions": revisions,
            "layer": store.layer,
            "n_features": F,
            "n_checkpoints": M,
            "d_model": d,
            "first_position": store.first_position,
            "excluded_positions": list(range(store.first_position)),
            "reconstruction_space": "normalised (x · s_m, as trained)",
            "downstream_space": "raw (x̂_m / s_m = crosscoder with scales folded)",
            "reconstruction_tokens": recon["tokens"],
            "reconstruction_contexts": int(len(plan["recon_contexts"])),
            "downstream_contexts": int(len(plan["down_contexts"])),
            "heldout_contexts": plan["heldout_contexts"],
            "context_len": store.context_len,
            "device": str(device),
        },
        "summary": _summary(recon, per_ckpt),
        "checkpoints": per_ckpt,
        "reconstruction": {k: v for k, v in recon.items() if k not in ("frequency", "fired")},
        "decoder": decoder,
        "timing": timing,
    }
    out_dir = run.evaluation
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "features.csv", _features_csv(features))
    if cfg.plots:
        t = time.perf_counter()
        result["plots"] = _plots(out_dir, result, features, cfg)
        timing["plots_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - t0
    write_json(run.evaluation_file, result)
    return result


def _progress(total: int, desc: str, enabled: bool, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, leave=False)


def _raw_rows(store, revisions: list[str], contexts: np.ndarray) -> torch.Tensor:
    """Raw stored activations of whole contexts for all checkpoints: ``[n · rpc, M, d]`` float32."""
    rpc = store.rows_per_context
    parts = []
    for rev in revisions:
        blocks = [store.read_block(rev, int(c) * rpc, rpc) for c in contexts]
        parts.append(torch.cat(blocks))
    return torch.stack(parts, dim=1)


def _encode_pass(cfg: EvaluateConfig, store, coder: NormalisedCrosscoder, plan: dict, scales: torch.Tensor, device):
    """Reconstruction metrics over the reconstruction contexts, and the sparse latents of the
    downstream contexts (kept so each checkpoint's splice decodes without re-encoding)."""
    F, M, d = coder.shape
    revisions = list(store.revisions)
    rpc = store.rows_per_context
    recon_set = set(plan["recon_contexts"].tolist())
    down_set = set(plan["down_contexts"].tolist())
    contexts = np.array(sorted(recon_set | down_set), dtype=np.int64)
    per_batch = max(1, cfg.batch_rows // rpc)
    stats = ReconstructionStats(M, d, F)
    latents: dict[int, torch.Tensor] = {}  # context -> sparse f [rpc, F] (COO, CPU)
    s = scales.to(device).view(1, M, 1)
    bar = _progress(len(contexts) * rpc, "evaluate: encode", cfg.progress, "tok")
    checked = False
    with torch.no_grad():
        for b in range(0, len(contexts), per_batch):
            ctx = contexts[b : b + per_batch]
            x = _raw_rows(store, revisions, ctx).to(device) * s
            f = coder.encode(x)
            x_hat = coder.decode(f)
            if not checked:  # our decode for the splice must be the crosscoder's decode
                mine = torch.einsum("bf,fmd->bmd", f, coder.W_dec) + coder.b_dec
                if not torch.allclose(mine, x_hat, rtol=1e-4, atol=1e-4 * float(x_hat.abs().max()) + 1e-6):
                    raise EvaluationError("the crosscoder's decode is not f · W_dec[:, m] + b_dec[m]; "
                                          "evaluate cannot splice this variant")
                checked = True
            in_recon = torch.tensor([int(c) in recon_set for c in ctx]).repeat_interleave(rpc)
            if in_recon.all():
                stats.update(x, x_hat, f)
            elif in_recon.any():
                keep = in_recon.to(device)
                stats.update(x[keep], x_hat[keep], f[keep])
            for k, c in enumerate(ctx):
                if int(c) in down_set:
                    latents[int(c)] = f[k * rpc : (k + 1) * rpc].to("cpu").to_sparse()
            bar.update(len(ctx) * rpc)
    bar.close()
    _top_up_firing(cfg, store, coder, stats, scales, device)
    out = stats.result(dead_min_tokens=cfg.dead_tokens)
    out["frequency"] = stats.frequency  # [F] tensor, for features.csv (not written to the JSON)
    return out, latents


def _top_up_firing(cfg: EvaluateConfig, store, coder: NormalisedCrosscoder, stats: ReconstructionStats,
                   scales: torch.Tensor, device) -> None:
    """Count firing on train rows until ``dead_tokens`` tokens are counted (dead latents are a
    property of the dictionary, not of generalisation, so train rows serve)."""
    need = cfg.dead_tokens - stats.n_firing
    if need <= 0 or store.n_rows("train") == 0:
        return
    s = scales.to(device).view(1, -1, 1)
    bar = _progress(min(need, store.n_rows("train")), "evaluate: dead-latent window", cfg.progress, "tok")
    with torch.no_grad():
        for x in store.batches(list(store.revisions), batch_size=cfg.batch_rows, split="train", normalise=False,
                               seed=cfg.seed):
            x = x[:need].to(device) * s
            stats.update_firing(coder.encode(x))
            need -= len(x)
            bar.update(len(x))
            if need <= 0:
                break
    bar.close()


def _downstream_one(cfg, store, series, coder: NormalisedCrosscoder, m: int, rev: str, plan: dict,
                    latents: dict, scales: torch.Tensor, device) -> dict:
    """Clean / spliced / zero-ablated CE and KL of checkpoint ``m`` over the downstream contexts."""
    model = series.load_model(rev, dtype=cfg.model_dtype, device=device)
    model.eval()
    rpc, first = store.rows_per_context, store.first_position
    W = (coder.W_dec[:, m] / scales[m]).float().cpu()  # raw-space decoder of checkpoint m: [F, d]
    b = (coder.b_dec[m] / scales[m]).float().cpu()
    stats = DownstreamStats()
    contexts = plan["down_contexts"]
    bs = cfg.context_batch_size or max(1, 2048 // store.context_len)
    bar = _progress(len(contexts), f"evaluate: splice {rev}", cfg.progress, "ctx")
    for i in range(0, len(contexts), bs):
        ctx = contexts[i : i + bs]
        ids = torch.from_numpy(np.asarray(store.tokens[ctx], dtype=np.int64)).to(device)
        # x̂_m (raw) at the kept positions: sparse f [rpc, F] @ W [F, d] + b
        x_hat = torch.stack([torch.sparse.mm(latents[int(c)], W) + b for c in ctx]).to(device)
        stats.update(model, store.layer, ids, x_hat.view(len(ctx), rpc, -1), first)
        bar.update(len(ctx))
    bar.close()
    del model
    return stats.result()


def _decoder_analyses(cfg: EvaluateConfig, coder: NormalisedCrosscoder, revisions: list[str], checkpoints: dict,
                      frequency: torch.Tensor) -> tuple[dict, dict]:
    W_dec = coder.W_dec.float().cpu()
    F, M, d = W_dec.shape
    norms = decoder_norms(W_dec)
    shares = relative_shares(norms)
    labels = classify_shares(shares, revisions, high=cfg.high, low=cfg.low)
    alive = (frequency > 0).cpu()
    traj = trajectories(norms, fraction=cfg.presence)
    tokens = [checkpoints[r].get("tokens_seen") for r in revisions]
    cos = decoder_cosines(W_dec) if M <= 64 else None
    order = class_order(labels, revisions)
    counts_all = Counter(labels)
    counts_alive = Counter(lab for lab, a in zip(labels, alive.tolist()) if a)
    traj_alive = [lab for lab, a in zip(traj.labels, alive.tolist()) if a]
    decoder: dict[str, Any] = {
        "reldec_mean": shares.mean(0).tolist(),
        "reldec_mean_live": shares[alive].mean(0).tolist() if alive.any() else None,
        "classes": {lab: counts_all[lab] for lab in order},
        "classes_live": {lab: counts_alive[lab] for lab in order},
        "class_thresholds": {"high": cfg.high, "low": cfg.low},
        "trajectory_labels_live": dict(Counter(traj_alive)),
        "trajectory_labels": dict(Counter(traj.labels)),
        "presence_fraction": cfg.presence,
        "emergence": {
            "revisions": revisions,
            "tokens_seen": tokens,
            "counts_live": emergence_counts(traj.onset[alive], M),
            "counts": emergence_counts(traj.onset, M),
            "meaning": "entry 0: present at the first checkpoint; entry m: onset in (checkpoint m-1, checkpoint m]",
        },
        "rotation": {"intervals": [f"{a}->{b}" for a, b in zip(revisions[:-1], revisions[1:])],
                     **rotation_summary(W_dec[alive] if alive.any() else W_dec, presence=cfg.presence)},
    }
    if cos is not None:
        live = cos[alive] if alive.any() else cos
        decoder["mean_cosine_live"] = live.mean(0).tolist()  # [M, M]: mean over live features
    if M == 2:
        decoder["reldec_histogram_live"] = {
            "edges": np.linspace(0, 1, 21).tolist(),
            "counts": np.histogram(shares[alive, 1].numpy(), bins=np.linspace(0, 1, 21))[0].tolist(),
        }
    features = {
        "revisions": revisions,
        "tokens": tokens,
        "norms": norms,
        "shares": shares,
        "pairwise": pairwise_shares(norms) if M <= 4 else None,
        "labels": labels,
        "alive": alive,
        "frequency": frequency.cpu(),
        "traj": traj,
        "consecutive_cos": (torch.stack([cos[:, k, k + 1] for k in range(M - 1)], 1) if cos is not None and M > 1
                            else None),
    }
    return decoder, features


def _summary(recon: dict, per_ckpt: list[dict]) -> dict:
    out = {
        "l0": recon["l0"],
        "dead": recon["dead"],
        "dead_fraction": recon["dead_fraction"],
        "dead_window_tokens": recon["dead_window_tokens"],
        "explained_variance_overall": recon["explained_variance_overall"],
        "fvu_overall": recon["fvu_overall"],
        "mse_overall": recon["mse_overall"],
    }
    if all("delta_ce" in r for r in per_ckpt):
        out["delta_ce"] = [r["delta_ce"] for r in per_ckpt]
        out["delta_ce_max"] = max(out["delta_ce"])
        out["ce_recovered"] = [r["ce_recovered"] for r in per_ckpt]
        out["kl"] = [r["kl"] for r in per_ckpt]
    return out


def _features_csv(features: dict) -> str:
    revs = features["revisions"]
    M = len(revs)
    traj = features["traj"]
    header = ["feature", "frequency", "alive", "class", "trajectory", "onset", "onset_revision", "onset_tokens",
              "peak", "peak_revision", "offset", "offset_revision", "max_norm"]
    header += [f"reldec_{r}" for r in revs] + [f"norm_{r}" for r in revs]
    if M == 2:
        header.append("reldec")
    pairs = [(a, b) for a in range(M) for b in range(a + 1, M)] if features["pairwise"] is not None else []
    header += [f"pair_{revs[a]}_{revs[b]}" for a, b in pairs]
    if features["consecutive_cos"] is not None:
        header += [f"cos_{revs[k]}_{revs[k + 1]}" for k in range(M - 1)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    norms = features["norms"].tolist()
    shares = features["shares"].tolist()
    freq = features["frequency"].tolist()
    alive = features["alive"].tolist()
    onset, peak, offset = traj.onset.tolist(), traj.peak.tolist(), traj.offset.tolist()
    pw = features["pairwise"]
    cc = features["consecutive_cos"].tolist() if features["consecutive_cos"] is not None else None
    tok = features["tokens"]

    def at(i: int, seq):
        return seq[i] if i >= 0 else ""

    for i in range(len(norms)):
        row = [i, f"{freq[i]:.6g}", int(alive[i]), features["labels"][i], traj.labels[i], onset[i], at(onset[i], revs),
               at(onset[i], tok), peak[i], at(peak[i], revs), offset[i], at(offset[i], revs), f"{max(norms[i]):.6g}"]
        row += [f"{v:.6g}" for v in shares[i]] + [f"{v:.6g}" for v in norms[i]]
        if M == 2:
            row.append(f"{shares[i][1]:.6g}")
        row += [f"{float(pw[i, a, b]):.6g}" for a, b in pairs]
        if cc is not None:
            row += [f"{v:.6g}" for v in cc[i]]
        w.writerow(row)
    return buf.getvalue()


def _plots(out_dir: Path, result: dict, features: dict, cfg: EvaluateConfig) -> list[str]:
    from crosstime.evaluate import plots as P

    revs = features["revisions"]
    tokens = features["tokens"]
    M = len(revs)
    alive = features["alive"].numpy()
    written = [P.plot_reldec(features["shares"].numpy(), features["labels"], revs, out_dir / "reldec.png", alive=alive,
                             high=cfg.high, low=cfg.low)]
    live = alive if alive.any() else np.ones_like(alive)
    if M > 3:
        written.append(P.plot_trajectories(features["norms"].numpy()[live], np.asarray(features["traj"].labels)[live],
                                           tokens, out_dir / "trajectories.png", seed=cfg.seed))
    if M >= 3:
        written.append(P.plot_emergence(result["decoder"]["emergence"]["counts_live"], tokens, revs,
                                        out_dir / "emergence.png"))
    if all("delta_ce" in r for r in result["checkpoints"]):
        written.append(P.plot_delta_ce(result["checkpoints"], tokens, out_dir / "delta_ce.png"))
    written.append(P.plot_frequency(result["reconstruction"]["frequency_histogram"], out_dir / "frequency.png"))
    return [str(p) for p in written]


# ----------------------------------------------------------------------------------------------
# the table printed by `crosstime evaluate`


def format_table(result: dict) -> "Any":
    """A rich Table in the shape of the paper's (L0, dead, ΔCE per checkpoint) plus details."""
    from rich.table import Table

    s = result["summary"]
    st = result["settings"]
    title = (f"crosscoder F={st['n_features']} over {st['n_checkpoints']} checkpoints, layer {st['layer']} — "
             f"L0 {s['l0']:.1f}, dead {s['dead']} ({s['dead_fraction']:.1%} over {s['dead_window_tokens']:,} tokens), "
             f"EV {s['explained_variance_overall']:.3f}")
    table = Table(title=title)
    for col in ("checkpoint", "tokens", "EV", "MSE", "CE clean", "CE spliced", "ΔCE", "CE recovered", "KL", "RelDec"):
        table.add_column(col, justify="left" if col == "checkpoint" else "right")
    small_gap = False
    for r in result["checkpoints"]:
        def num(key, fmt):
            v = r.get(key)
            return "—" if v is None else format(v, fmt)

        recovered = num("ce_recovered", ".3f")
        if r.get("zero_gap") is not None and abs(r["zero_gap"]) < MIN_ZERO_GAP:
            recovered, small_gap = recovered + "*", True
        table.add_row(r["revision"], format_tokens(r["tokens_seen"]) if r.get("tokens_seen") else "0",
                      num("explained_variance", ".3f"), num("mse", ".4f"), num("ce_clean", ".3f"),
                      num("ce_spliced", ".3f"), num("delta_ce", ".3f"), recovered, num("kl", ".4f"),
                      num("reldec_mean", ".3f"))
    if small_gap:
        table.caption = (f"* zero-ablation raises CE by less than {MIN_ZERO_GAP} nats here, so CE recovered "
                         "(1 − ΔCE / (zero − clean)) is not meaningful")
    return table


def paper_row(result: dict) -> str:
    """One line as in the paper's table: ``L0 | Dead | ΔCE A / B / C``."""
    s = result["summary"]
    dce = " / ".join(f"{v:.2f}" for v in s.get("delta_ce", [])) or "—"
    return f"L0 {s['l0']:.2f} | Dead {s['dead']} | ΔCE {dce}"
