"""The ``attribute`` stage: IE per checkpoint over a task, RelIE, feature tables, ablation check.

    cfg = AttributeConfig(run="runs/toy", task="simple_agreement")
    result = attribute(cfg)      # writes runs/toy/attribution/simple_agreement/…

Outputs in ``RUN/attribution/TASK/``:

- ``effects.safetensors``: ``ie [M, F]`` (signed, mean over pairs), ``ie_abs [M, F]`` (mean of
  per-pair |effect|), ``atp [M, F]`` (when computed alongside IG), ``relie [F, M]``,
  ``relie_pairwise [F, P]`` (pairs in metadata), ``reldec [F, M]``, ``freq [F]``, ``baseline [F]``,
  ``error [M]``, ``joint [M]``,
  ``metric_clean [M, N]``, ``top_features [K]``, ``ie_top_per_pair [M, N, K]``,
  ``exact_top [M, K]`` (single-feature ablation), metadata: revisions, method, steps.
- ``features.csv``: one row per reported feature (union of the per-checkpoint top-k by
  |IE|): signed IE per checkpoint with bootstrap CI, RelIE vector with CI and class, pairwise
  RelIE, RelDec vector and class, activation frequency on the task, exact ablation effect.
- ``ablation.csv``: one row per (feature, checkpoint): accuracy and mean log-prob difference
  clean vs with the feature zeroed (error kept), their deltas and the ablation share.
- ``confusion.csv``: RelIE class × RelDec class counts over the reported features.
- ``summary.json``: settings, pairs kept/dropped, clean accuracy, error/joint effects,
  completeness of IG, faithfulness (IG/AtP vs exact), ablation Spearman ρ, timings.

Aggregation: per-token effects are summed over each pair's attributed positions (real
tokens; position 0 is excluded when the activation store excludes it, as in training) and
averaged over pairs.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from crosstime.attribution.effects import METHODS, PairBatch, SiteForward, batch_effects, exact_effects, make_batches
from crosstime.attribution.stats import (
    bootstrap_ie, class_order, classify_shares, decoder_norms, pairwise_rel_ie, rel_ie, relative_shares,
    spearman, top_features,
)


class AttributionError(ValueError):
    """Bad input to the attribution stage (named, with the fix)."""


class AttributeConfig(BaseModel):
    """Settings of the ``attribute`` stage (shared by the CLI and the Python API)."""

    model_config = ConfigDict(extra="forbid")

    run: Path = Field(..., description="run directory (with activations/ and crosscoder/)")
    task: str = Field(..., description="task name (toy task, BLiMP paradigm, 'subjectverb') or a .jsonl path")
    method: Literal["ig", "atp", "exact"] = Field("ig", description="IE estimator")
    steps: int = Field(10, ge=1, description="integrated-gradient steps (midpoint rule)")
    baseline: Literal["zero", "mean"] = Field("zero", description="value a feature is set to: zero, or its mean on the task")
    threshold: float | None = Field(None, ge=0, description="ig/atp: zero per-token effects with |e| <= threshold (paper: 0.1)")
    top_k: int = Field(10, ge=1, description="features reported per checkpoint (by |IE|)")
    batch_size: int = Field(32, ge=1, description="pairs per forward (times steps for IG)")
    step_chunk: int | None = Field(None, ge=1, description="IG steps per forward (default: all at once)")
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples over pairs for CIs (0: none)")
    ci: float = Field(0.95, gt=0, lt=1)
    seed: int = 0
    ablation: bool = Field(True, description="exact single-feature ablation of the reported features")
    compare_atp: bool = Field(True, description="with ig: also compute AtP (one more gradient) for the faithfulness figure")
    skip_early_blocks: bool = Field(True, description="start the forward at the site (blocks 0..L not recomputed)")
    multi_token: Literal["drop", "first"] = Field(
        "drop", description="pairs whose answers are several tokens: drop them, or score the first differing token")
    max_pairs: int | None = Field(None, ge=1, description="use only the first N pairs")
    task_dirs: list[Path] = Field(default_factory=list, description="extra folders to find NAME.jsonl tasks in")
    revisions: list[str] | None = Field(None, description="checkpoints (default: all the crosscoder was trained on)")
    device: str = "cpu"
    dtype: str = "float32"
    keep_models_bytes: int = Field(2 << 30, ge=0, description="keep all M models loaded between passes if they fit in this")
    progress: bool = True


# -- the computation, independent of the run directory -------------------------------------

@dataclass
class CrosscoderView:
    """What attribution needs from a crosscoder, in raw (unnormalised) activation space.

    encode: ``x [B, M, d] -> f [B, F]``; W_dec: ``[F, M, d]``; b_dec: ``[M, d]``;
    W_dec_normalised: ``[F, M, d]`` for RelDec (RelDec is defined on the normalised-space
    decoder, as in the paper; equal to W_dec when the activations were not normalised).
    """

    encode: Callable[[torch.Tensor], torch.Tensor]
    W_dec: torch.Tensor
    b_dec: torch.Tensor
    W_dec_normalised: torch.Tensor | None = None

    @property
    def n_features(self) -> int:
        return int(self.W_dec.shape[0])

    @property
    def n_checkpoints(self) -> int:
        return int(self.W_dec.shape[1])

    @property
    def d_model(self) -> int:
        return int(self.W_dec.shape[2])


@dataclass
class Attribution:
    """Everything computed for one task (M checkpoints, N pairs, F features)."""

    revisions: list[str]
    method: str
    steps: int
    ie_per_pair: torch.Tensor  # [M, N, F]
    error: torch.Tensor  # [M, N] effect of removing ε
    joint: torch.Tensor  # [M, N] effect of all features to baseline at once
    clean: torch.Tensor  # [M, N] clean metric
    freq: torch.Tensor  # [F] share of attributed task tokens where the feature is active
    baseline: torch.Tensor  # [F]
    atp_per_pair: torch.Tensor | None = None  # [M, N, F]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ie(self) -> torch.Tensor:
        """``[M, F]`` signed IE, mean over pairs."""
        return self.ie_per_pair.mean(1)


def _encode_batch(cc: CrosscoderView, xs: list[torch.Tensor]) -> torch.Tensor:
    """xs: M tensors ``[B, T, d]`` -> f ``[B, T, F]``."""
    B, T, d = xs[0].shape
    x = torch.stack(xs, dim=2).reshape(B * T, len(xs), d)
    with torch.no_grad():
        return cc.encode(x).reshape(B, T, -1).float()


def _rows(batches: list[PairBatch]) -> tuple[int, list[torch.Tensor]]:
    """Number of pairs and, per batch, the rows of its pairs in the per-pair arrays (pairs sorted by index)."""
    index = torch.cat([b.index for b in batches])
    order = torch.sort(index).values
    if len(torch.unique(order)) != len(order):
        raise AttributionError("a pair appears in two batches")
    return len(order), [torch.searchsorted(order, b.index) for b in batches]


def compute_attribution(
    load_model: Callable[[int], torch.nn.Module],
    revisions: Sequence[str],
    cc: CrosscoderView,
    batches: list[PairBatch],
    layer: int,
    method: str = "ig",
    steps: int = 10,
    baseline: str = "zero",
    threshold: float | None = None,
    compare_atp: bool = True,
    step_chunk: int | None = None,
    skip_early_blocks: bool = True,
    progress: bool = True,
) -> Attribution:
    """IE of every feature in every checkpoint, per pair.

    ``load_model(m)`` returns checkpoint m's causal LM. Each model is run once over the
    prefixes to read its site activations (all M are needed to encode the shared features),
    then once more for the effects.
    """
    if method not in METHODS:
        raise AttributionError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    M, F = len(revisions), cc.n_features
    N, rows = _rows(batches)
    seconds: dict[str, float] = {}

    # 1. clean site activations of every checkpoint
    t0 = time.perf_counter()
    xs: list[list[torch.Tensor]] = []  # [m][batch] -> [B, T, d]
    device = None
    for m in tqdm(range(M), desc="reading sites", disable=not progress, leave=False):
        model = load_model(m)
        device = next(model.parameters()).device
        runner = SiteForward(model, layer)
        xs.append([runner.read(b.to(device)).float() for b in batches])
    batches = [b.to(device) for b in batches]
    W_dec, b_dec = cc.W_dec.to(device).float(), cc.b_dec.to(device).float()
    seconds["read_sites"] = time.perf_counter() - t0

    # 2. features: activation frequency and (optional) mean baseline over attributed tokens
    t0 = time.perf_counter()
    active = torch.zeros(F, dtype=torch.float64)
    total = torch.zeros(F, dtype=torch.float64)
    n_tok = 0
    for j, b in enumerate(batches):
        f = _encode_batch(cc, [xs[m][j] for m in range(M)])[b.attr_mask]  # [n, F]
        active += (f > 0).sum(0).double().cpu()
        total += f.sum(0).double().cpu()
        n_tok += f.shape[0]
    freq = (active / max(n_tok, 1)).float()
    base = (total / max(n_tok, 1)).float() if baseline == "mean" else torch.zeros(F)
    seconds["encode"] = time.perf_counter() - t0

    # 3. effects, checkpoint by checkpoint
    t0 = time.perf_counter()
    ie = torch.zeros(M, N, F)
    atp = torch.zeros(M, N, F) if (method == "ig" and compare_atp) else None
    error, joint, clean = torch.zeros(M, N), torch.zeros(M, N), torch.zeros(M, N)
    bar = tqdm(total=M * len(batches), desc=f"IE ({method})", disable=not progress, leave=False)
    for m in range(M):
        runner = SiteForward(load_model(m), layer, skip_early_blocks=skip_early_blocks)
        with runner.frozen():
            for j, b in enumerate(batches):
                f = _encode_batch(cc, [xs[k][j] for k in range(M)])
                res = batch_effects(
                    lambda site, rows=None, b=b: runner.metric(site, b, rows), xs[m][j], f, W_dec[:, m], b.attr_mask,
                    b_dec_m=b_dec[m], baseline=base.to(device), method=method, steps=steps, threshold=threshold,
                    with_atp=atp is not None, step_chunk=step_chunk,
                )
                r = rows[j]
                ie[m, r] = res.features.float().cpu()
                error[m, r], joint[m, r], clean[m, r] = res.error.cpu(), res.joint.cpu(), res.clean.cpu()
                if atp is not None:
                    atp[m, r] = res.atp.float().cpu()
                bar.update(1)
    bar.close()
    seconds["effects"] = time.perf_counter() - t0
    return Attribution(list(revisions), method, steps, ie, error, joint, clean, freq, base, atp, seconds)


@dataclass
class Ablation:
    """Exact single-feature ablations of K features (error kept): per pair effects on the metric."""

    features: list[int]
    effects: torch.Tensor  # [M, K, N]: m(ablated) - m(clean)
    clean: torch.Tensor  # [M, N]

    def table(self, revisions: Sequence[str]) -> list[dict]:
        """Rows (feature, checkpoint): accuracy / mean log-prob difference, clean vs ablated."""
        rows = []
        lpd_delta = self.delta_lpd()  # [M, K]
        share = relative_shares(np.abs(lpd_delta.T))  # [K, M]
        for k, feat in enumerate(self.features):
            for m, rev in enumerate(revisions):
                clean = self.clean[m]
                patched = clean + self.effects[m, k]
                acc_c, acc_p = (clean < 0).float().mean().item(), (patched < 0).float().mean().item()
                lpd_c, lpd_p = (-clean).mean().item(), (-patched).mean().item()
                rows.append({
                    "feature": feat, "checkpoint": rev,
                    "acc_clean": acc_c, "acc_ablated": acc_p, "delta_acc_pp": (acc_c - acc_p) * 100,
                    "lpd_clean": lpd_c, "lpd_ablated": lpd_p, "delta_lpd": lpd_c - lpd_p,
                    "ablation_share": float(share[k, m]),
                })
        return rows

    def delta_lpd(self) -> np.ndarray:
        """``[M, K]`` ΔLPD = LPD_clean − LPD_ablated = mean over pairs of the metric's change."""
        return self.effects.mean(-1).double().numpy()


def ablate_features(
    load_model: Callable[[int], torch.nn.Module],
    revisions: Sequence[str],
    cc: CrosscoderView,
    batches: list[PairBatch],
    layer: int,
    features: Sequence[int],
    baseline: torch.Tensor | None = None,
    skip_early_blocks: bool = True,
    progress: bool = True,
) -> Ablation:
    """Set each of ``features`` alone to its baseline (zero by default) in each checkpoint, error kept."""
    M = len(revisions)
    N, rows = _rows(batches)
    feats = torch.as_tensor(list(features), dtype=torch.long)
    K = len(feats)
    effects = torch.zeros(M, K, N)
    clean = torch.zeros(M, N)
    F = cc.n_features
    base = torch.zeros(F) if baseline is None else baseline
    runners = []
    xs: list[list[torch.Tensor]] = []
    for m in range(M):
        model = load_model(m)
        device = next(model.parameters()).device
        runner = SiteForward(model, layer, skip_early_blocks=skip_early_blocks)
        runners.append(runner)
        xs.append([runner.read(b.to(device)).float() for b in batches])
    batches = [b.to(device) for b in batches]
    base = base.to(device)
    bar = tqdm(total=M * len(batches), desc="ablation", disable=not progress, leave=False)
    for m in range(M):
        runner = runners[m]
        W = cc.W_dec[:, m].float().to(device)
        for j, b in enumerate(batches):
            f = _encode_batch(cc, [xs[k][j] for k in range(M)])
            delta = (base - f) * b.attr_mask.unsqueeze(-1).float()
            with torch.no_grad():
                c = runner.metric(xs[m][j], b)
            clean[m, rows[j]] = c.float().cpu()
            if K:
                effects[m, :, rows[j]] = exact_effects(lambda s, rows=None, b=b: runner.metric(s, b, rows), xs[m][j], delta, W, feats,
                                                       c).T.float().cpu()
            bar.update(1)
    bar.close()
    return Ablation([int(i) for i in feats], effects, clean)


# -- tables ------------------------------------------------------------------------------

def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


@dataclass
class Summary:
    """The reported features and the numbers about them."""

    revisions: list[str]
    per_checkpoint: list[list[int]]
    features: list[int]
    relie: np.ndarray  # [F, M]
    reldec: np.ndarray  # [F, M]
    relie_class: list[str]  # for `features`
    reldec_class: list[str]
    rows: list[dict]
    confusion: dict[str, dict[str, int]]
    ci: dict[str, np.ndarray] | None
    ablation: Ablation | None
    metrics: dict


def summarise(att: Attribution, W_dec_for_reldec: torch.Tensor, top_k: int, ablation: Ablation | None = None,
              bootstrap: int = 1000, ci: float = 0.95, seed: int = 0) -> Summary:
    revs = att.revisions
    M = len(revs)
    ie = att.ie.double().numpy()  # [M, F]
    per, union = top_features(ie, top_k)
    relie = rel_ie(ie)  # [F, M]
    pair_relie, pairs = pairwise_rel_ie(ie)
    reldec = relative_shares(decoder_norms(W_dec_for_reldec.detach()).numpy())  # [F, M]
    relie_cls = classify_shares(torch.as_tensor(relie[union]), revs) if union else []
    reldec_cls = classify_shares(torch.as_tensor(reldec[union]), revs) if union else []
    boot = None
    if bootstrap and union:
        boot = bootstrap_ie(att.ie_per_pair[:, :, union], resamples=bootstrap, ci=ci, seed=seed)
    ie_abs = att.ie_per_pair.abs().mean(1).double().numpy()
    exact = ablation.delta_lpd() if ablation is not None else None  # [M, K] in union order
    rows = []
    for k, i in enumerate(union):
        row: dict = {"feature": i, "selected_in": ";".join(revs[m] for m in range(M) if i in per[m])}
        for m, r in enumerate(revs):
            row[f"ie_{r}"] = float(ie[m, i])
            if boot is not None:
                row[f"ie_{r}_lo"], row[f"ie_{r}_hi"] = float(boot["ie_lo"][m, k]), float(boot["ie_hi"][m, k])
        for m, r in enumerate(revs):
            row[f"relie_{r}"] = float(relie[i, m])
            if boot is not None:
                row[f"relie_{r}_lo"], row[f"relie_{r}_hi"] = float(boot["relie_lo"][k, m]), float(boot["relie_hi"][k, m])
        row["relie_class"] = relie_cls[k]
        for p, (a, b) in enumerate(pairs):
            row[f"relie_{revs[a]}_vs_{revs[b]}"] = float(pair_relie[i, p])
        for m, r in enumerate(revs):
            row[f"reldec_{r}"] = float(reldec[i, m])
        row["reldec_class"] = reldec_cls[k]
        row["freq"] = float(att.freq[i])
        for m, r in enumerate(revs):
            row[f"ie_abs_{r}"] = float(ie_abs[m, i])
        if exact is not None:
            for m, r in enumerate(revs):
                row[f"exact_{r}"] = float(exact[m, k])
        rows.append(row)

    confusion: dict[str, dict[str, int]] = {}
    for a in class_order(relie_cls, revs):
        confusion[a] = {b: 0 for b in class_order(reldec_cls, revs)}
    for a, b in zip(relie_cls, reldec_cls):
        confusion[a][b] += 1

    clean = att.clean
    metrics: dict = {
        "n_pairs": int(clean.shape[1]),
        "accuracy_clean": {r: float((clean[m] < 0).float().mean()) for m, r in enumerate(revs)},
        "metric_clean_mean": {r: float(clean[m].mean()) for m, r in enumerate(revs)},
        "error_effect": {r: float(att.error[m].mean()) for m, r in enumerate(revs)},
        "joint_effect_exact": {r: float(att.joint[m].mean()) for m, r in enumerate(revs)},
        "sum_of_feature_ie": {r: float(ie[m].sum()) for m, r in enumerate(revs)},
        "top_features": {r: per[m] for m, r in enumerate(revs)},
        "n_reported": len(union),
    }
    if ablation is not None and union:
        ex = exact  # [M, K]
        est = ie[:, union]
        # signed, and on magnitudes (what RelIE and the ablation share use): with redundant
        # features IG's joint path can credit a feature whose lone ablation slightly helps
        faith: dict = {}
        estimates = {att.method: est}
        if att.atp_per_pair is not None:
            estimates["atp"] = att.atp_per_pair.mean(1).double().numpy()[:, union]
        for name, e in estimates.items():
            faith[f"{name}_vs_exact_spearman"] = {r: spearman(e[m], ex[m]) for m, r in enumerate(revs)}
            faith[f"{name}_vs_exact_spearman_pooled"] = spearman(e, ex)
            faith[f"{name}_vs_exact_spearman_abs"] = {r: spearman(np.abs(e[m]), np.abs(ex[m])) for m, r in enumerate(revs)}
            faith[f"{name}_vs_exact_spearman_abs_pooled"] = spearman(np.abs(e), np.abs(ex))
        metrics["faithfulness"] = faith
        share = relative_shares(np.abs(ex.T))  # [K, M]
        rho_dec = {r: spearman(share[:, m], reldec[union, m]) for m, r in enumerate(revs)}
        rho_ie = {r: spearman(share[:, m], relie[union, m]) for m, r in enumerate(revs)}
        metrics["ablation_spearman"] = {
            "ratio_vs_reldec": rho_dec, "ratio_vs_relie": rho_ie,
            "ratio_vs_reldec_mean": float(np.nanmean(list(rho_dec.values()))) if M else float("nan"),
            "ratio_vs_relie_mean": float(np.nanmean(list(rho_ie.values()))) if M else float("nan"),
            "note": "ablation share |ΔLPD_m| / Σ_k |ΔLPD_k| per feature (for M = 2 it ranks like the paper's "
                    "|ΔLPD_B| / |ΔLPD_A|), correlated across the reported features with RelDec_m and RelIE_m",
        }
    return Summary(revs, per, union, relie, reldec, relie_cls, reldec_cls, rows, confusion, boot, ablation, metrics)


# -- the stage ---------------------------------------------------------------------------

@dataclass
class AttributeResult:
    out: Path
    attribution: Attribution
    summary: Summary


def _view_from_run(run, revisions: list[str] | None, store, device: str = "cpu") -> tuple[CrosscoderView, list[str]]:
    """The run's crosscoder in raw space, checked against the store's checkpoints."""
    try:
        from crosstime.crosscoder import load
    except ImportError:  # the package's __init__ not there yet: the module that defines it
        from crosstime.crosscoder.model import load

    model = load(run.crosscoder, device=device)
    return crosscoder_view(model, store, revisions)


def crosscoder_view(model, store, revisions: list[str] | None = None) -> tuple[CrosscoderView, list[str]]:
    """Check a loaded crosscoder against the activation store it should have been trained on."""
    W_dec = model.W_dec.detach()
    F, M, d = W_dec.shape
    store_revs = list(store.revisions)
    cc_revs = list(getattr(model, "revisions", None) or getattr(getattr(model, "config", None), "revisions", None) or store_revs)
    if d != store.d_model:
        raise AttributionError(
            f"the crosscoder has d = {d} but the activation store's checkpoints have d_model = {store.d_model}; "
            "it was not trained on this series. Train one on this run's store (`crosstime train`).")
    if M != len(cc_revs) or any(r not in store_revs for r in cc_revs):
        raise AttributionError(
            f"the crosscoder was trained on checkpoints {cc_revs} (M = {M}) but this run's store has {store_revs}; "
            "it was not trained on this series. Train one on this run's store (`crosstime train`).")
    if revisions is not None and list(revisions) != cc_revs:
        raise AttributionError(
            f"--revisions {revisions} differ from the crosscoder's checkpoints {cc_revs}; attribution needs all of "
            "the crosscoder's checkpoints (its features are encoded from all of them).")
    view = _raw_space_view(model, store, cc_revs)
    return view, cc_revs


def _raw_space_view(model, store, revisions: list[str]) -> CrosscoderView:
    """Adapter to the crosscoder package: raw-space encode/decode and the normalised decoder for RelDec.

    A crosscoder trained on normalised activations records its scales; ``folded()`` folds
    them in (and returns an unchanged copy for one trained on raw activations). The store's
    scales must be the recorded ones, else the crosscoder was trained on other data.
    """
    recorded = getattr(model, "scales", None)
    if recorded is not None and hasattr(store, "scales"):
        mine = [store.scales[r] for r in revisions]
        if not np.allclose(recorded, mine, rtol=1e-4):
            raise AttributionError(
                f"the crosscoder's recorded normalisation scales {recorded} differ from this run's store {mine}; "
                "it was not trained on this store. Train one on this run's store (`crosstime train`).")
    if getattr(model, "is_folded", False):
        raw = model
        normalised = model.unfolded() if hasattr(model, "unfolded") else model
    else:
        raw = model.folded() if hasattr(model, "folded") else model
        normalised = model
    raw.eval()
    return CrosscoderView(encode=raw.encode, W_dec=raw.W_dec.detach().float(), b_dec=raw.b_dec.detach().float(),
                          W_dec_normalised=normalised.W_dec.detach().float())


def attribute(config: AttributeConfig) -> AttributeResult:
    """Run the attribution stage for one task (see the module docstring for the outputs)."""
    from safetensors.torch import save_file

    from crosstime.files import atomic_path, write_json, write_text
    from crosstime.rundir import RunDir
    from crosstime.series import open_series
    from crosstime.store import ActivationStore
    from crosstime.tasks import load_task

    t_start = time.perf_counter()
    run = RunDir(config.run)
    if not run.activations.exists():
        raise AttributionError(f"{run.root} has no activations/ (run `crosstime harvest` first)")
    if not run.crosscoder.exists():
        raise AttributionError(f"{run.root} has no crosscoder/ (run `crosstime train` first)")
    store = ActivationStore(run.activations)
    view, revisions = _view_from_run(run, config.revisions, store, device=config.device)
    if config.top_k > view.n_features:
        raise AttributionError(
            f"--top-k {config.top_k} is larger than the crosscoder's F = {view.n_features} features; "
            f"choose at most {view.n_features}")
    series = open_series(store.manifest["series"]["source"], revisions=revisions)
    tokenizer = series.load_tokenizer(revisions[-1])
    task_dirs = list(config.task_dirs)
    if series.local_root is not None and (series.local_root / "pairs").is_dir():
        task_dirs.append(series.local_root / "pairs")
    task = load_task(config.task, tokenizer, search_dirs=task_dirs, multi_token=config.multi_token)
    if config.max_pairs is not None and config.max_pairs < len(task):
        task = task.subset(list(range(config.max_pairs)))
    dropped = {s.source: s.dropped for s in task.stats if s.dropped}
    task_name = getattr(task, "name", None) or Path(config.task).stem
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = make_batches(task.prefixes, task.correct, task.wrong, config.batch_size, pad_id=pad_id,
                           exclude_first=store.first_position > 0)
    dtype = getattr(torch, config.dtype)

    cache: dict[int, torch.nn.Module] = {}

    def load_model(m: int):
        # each checkpoint is used in three passes (sites, effects, ablation): keep small models loaded
        if m in cache:
            return cache[m]
        model = series.load_model(revisions[m], dtype=dtype, device=config.device)
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        if size * len(revisions) <= config.keep_models_bytes:
            cache[m] = model
        return model

    att = compute_attribution(load_model, revisions, view, batches, store.layer, method=config.method,
                              steps=config.steps, baseline=config.baseline, threshold=config.threshold,
                              compare_atp=config.compare_atp, step_chunk=config.step_chunk,
                              skip_early_blocks=config.skip_early_blocks, progress=config.progress)
    _, union = top_features(att.ie.double().numpy(), config.top_k)
    abl = None
    if config.ablation:
        t0 = time.perf_counter()
        abl = ablate_features(load_model, revisions, view, batches, store.layer, union, baseline=att.baseline,
                              skip_early_blocks=config.skip_early_blocks, progress=config.progress)
        att.seconds["ablation"] = time.perf_counter() - t0
    summary = summarise(att, view.W_dec_normalised if view.W_dec_normalised is not None else view.W_dec,
                        config.top_k, abl, bootstrap=config.bootstrap, ci=config.ci, seed=config.seed)
    att.seconds["total"] = time.perf_counter() - t_start
    summary.metrics["pairs_kept"] = len(task)
    summary.metrics["pairs_dropped"] = dropped

    out = run.attribution(task_name)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        "ie": att.ie.float().contiguous(), "ie_abs": att.ie_per_pair.abs().mean(1).contiguous(),
        "relie": torch.as_tensor(summary.relie).float().contiguous(),
        "reldec": torch.as_tensor(summary.reldec).float().contiguous(),
        "freq": att.freq.contiguous(), "baseline": att.baseline.contiguous(),
        "error": att.error.mean(1).contiguous(), "joint": att.joint.mean(1).contiguous(),
        "metric_clean": att.clean.contiguous(), "error_per_pair": att.error.contiguous(),
        "pair_index": torch.arange(att.clean.shape[1]),
        "top_features": torch.tensor(summary.features, dtype=torch.long),
        "ie_top_per_pair": att.ie_per_pair[:, :, summary.features].contiguous(),
    }
    pair_relie, pairs = pairwise_rel_ie(att.ie)
    tensors["relie_pairwise"] = torch.as_tensor(pair_relie).float().contiguous()  # [F, P]
    if att.atp_per_pair is not None:
        tensors["atp"] = att.atp_per_pair.mean(1).contiguous()
    if abl is not None:
        tensors["exact_top"] = torch.as_tensor(abl.delta_lpd()).float().contiguous()
    meta = {"revisions": json.dumps(revisions), "method": att.method, "steps": str(att.steps),
            "baseline": config.baseline, "task": task_name,
            "relie_pairwise_columns": json.dumps([[revisions[a], revisions[b]] for a, b in pairs])}
    with atomic_path(out / "effects.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    write_text(out / "features.csv", _csv(summary.rows))
    if abl is not None:
        write_text(out / "ablation.csv", _csv(abl.table(revisions)))
    conf_rows = [{"relie_class \\ reldec_class": a, **counts} for a, counts in summary.confusion.items()]
    write_text(out / "confusion.csv", _csv(conf_rows))
    write_json(out / "summary.json", {
        "task": task_name, "revisions": revisions, "layer": store.layer, "method": att.method, "steps": att.steps,
        "quadrature": "midpoint" if att.method == "ig" else None, "baseline": config.baseline,
        "threshold": config.threshold, "position_0_attributed": store.first_position == 0, **summary.metrics,
        "seconds": att.seconds,
    })
    run.save_stage_config(f"attribute/{task_name}", config)  # one entry per task: two tasks do not overwrite
    return AttributeResult(out, att, summary)


def print_attribution(result: AttributeResult, n: int | None = None) -> None:
    """Top features per checkpoint with signed IE and the RelIE vector (rich tables)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    att, s = result.attribution, result.summary
    revs = att.revisions
    ie = att.ie.double().numpy()
    metrics = s.metrics
    for m, rev in enumerate(revs):
        table = Table(title=f"{rev}: top features by |IE| ({att.method}"
                            + (f", {att.steps} steps" if att.method == "ig" else "") + ")")
        table.add_column("feature", justify="right")
        table.add_column("IE", justify="right")
        table.add_column("RelIE [" + ", ".join(revs) + "]")
        table.add_column("RelIE class")
        table.add_column("RelDec class")
        for i in s.per_checkpoint[m][:n]:
            k = s.features.index(i)
            table.add_row(str(i), f"{ie[m, i]:+.4f}", "[" + ", ".join(f"{v:.2f}" for v in s.relie[i]) + "]",
                          s.relie_class[k], s.reldec_class[k])
        console.print(table)
    acc = ", ".join(f"{r} {metrics['accuracy_clean'][r]:.3f}" for r in revs)
    err = ", ".join(f"{r} {metrics['error_effect'][r]:+.3f}" for r in revs)
    console.print(f"pairs: {metrics['n_pairs']}; clean accuracy: {acc}; error-term effect: {err}")
    for source, reasons in (metrics.get("pairs_dropped") or {}).items():
        console.print(f"dropped from {source}: " + ", ".join(f"{n} pairs ({why})" for why, n in reasons.items()))
    faith = metrics.get("faithfulness")
    if faith:
        console.print("faithfulness (Spearman vs exact single-feature ablation, pooled over checkpoints; "
                      "signed / |magnitude|): "
                      + ", ".join(f"{k.replace('_vs_exact_spearman_pooled', '')} {v:.3f} / "
                                  f"{faith[k.replace('_pooled', '_abs_pooled')]:.3f}"
                                  for k, v in faith.items() if k.endswith("_spearman_pooled")))
    abl = metrics.get("ablation_spearman")
    if abl:
        console.print(f"ablation share vs RelDec ρ = {abl['ratio_vs_reldec_mean']:.3f}, "
                      f"vs RelIE ρ = {abl['ratio_vs_relie_mean']:.3f} (mean over checkpoints)")
    console.print(f"written to {result.out}")
