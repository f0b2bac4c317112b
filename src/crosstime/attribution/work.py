"""The ``attribute`` stage's work (declared in :mod:`crosstime.stages.attribute`): IE per checkpoint over a task, RelIE, feature tables, ablation check.

    from crosstime.stages.attribute import AttributeConfig, attribute   # the stage, declared
    result = attribute(AttributeConfig(run="runs/toy", task="simple_agreement"))

Reads ``RUN/activations`` (the layer, the checkpoint series, position 0's treatment) and
``RUN/crosscoder`` (through the run reader, :mod:`crosstime.runs`). The checkpoints
attributed are the crosscoder's (all of them: its features are encoded from all of them),
which may be a subset of the store's. Outputs in ``RUN/attribution/TASK/`` (schema:
:mod:`crosstime.artifacts`):

- ``effects.safetensors``: ``ie [M, F]`` (signed, mean over pairs, by the method), ``ie_abs [M, F]``
  (mean of per-pair |effect|), ``ig [M, F]`` / ``atp [M, F]`` (the estimators computed alongside
  the method, with ``compare``), ``relie [F, M]``,
  ``relie_pairwise [F, P]`` (pairs in metadata), ``reldec [F, M]``, ``task_frequency [F]``,
  ``baseline [F]``, ``error [M]``, ``joint [M]``, ``metric_clean [M, N]``, ``error_per_pair [M, N]``,
  ``pair_index [N]``, ``top_features [K]``, ``ie_top_per_pair [M, N, K]``, ``exact_top [M, K]``
  (single-feature ablation, when run); metadata: revisions, method, estimators, steps, baseline,
  task, relie_pairwise_columns, inference_rule.
- ``features.csv`` (``ATTRIBUTION_FEATURES``): one row per reported feature (union of the
  per-checkpoint top-k by |IE|): signed IE per checkpoint with bootstrap CI, RelIE with CI and
  class, the class's bootstrap interval and whether it is uncertain (the interval of a share the
  class rule compares reaches its cut-off), pairwise RelIE (M ≤ 4), RelDec and class, activation
  frequency on the task, mean |per-pair IE|, exact ablation effect. CI cells are empty without a
  bootstrap, exact cells without the ablation. The same columns for every method.
- ``ablation.csv`` (``ATTRIBUTION_ABLATION``, only with ``ablation``): one row per (feature,
  checkpoint): accuracy and mean log-prob difference clean vs with the feature zeroed (error
  kept), their deltas and the ablation share.
- ``confusion.csv`` (``ATTRIBUTION_CONFUSION``): RelIE class, RelDec class, count over the
  reported features. RelIE classes need a total effect ``Σ_m |IE_m|`` of at least
  ``effect_floor`` (1%) of the summed joint effect ``Σ_m |J_m|``; below it: ``"no effect"``.
- ``joint.csv`` (``ATTRIBUTION_JOINT``, only with ``joint``) and ``joint.png``: per checkpoint,
  LPD and accuracy with the top-k features by signed IE ablated jointly, and restored jointly
  from every feature at its baseline, against random k-sets of active features (mean and
  ``ci`` interval over ``joint_draws`` draws); :mod:`crosstime.attribution.joint`.
- ``summary.json`` (``AttributionSummary``): settings, pairs kept/dropped, clean accuracy and
  accuracy with every feature ablated, error/joint effects, completeness of IG, faithfulness
  (IG/AtP vs exact, per checkpoint, and the better of them), the effect floor, the RelIE class
  counts and how many are uncertain, ablation Spearman ρ, the crosscoder's inference rule, timings.

What IE is, by ``method`` (:mod:`crosstime.attribution.effects`): ``ig`` (default) — feature i's
share of the *joint* effect of moving every feature to its baseline together (the shares sum to
it); with redundant features it is not the effect of removing i alone. ``atp`` — the first-order
estimate of removing i alone (gradient at the clean point × the change of the site; one backward
pass). ``exact`` — removing i alone, one forward per (pair, active feature). RelIE and its classes
are shares of whichever IE the method gives; ``faithfulness`` says per checkpoint how ig and atp
rank and sign against the exact single-feature ablation of the reported features. The default
stays ``ig``: the paper's estimator, and the one whose top-k sets joint.csv tests as groups.

Aggregation: per-token effects are summed over each pair's attributed positions (real
tokens; position 0 is excluded when the activation store excludes it, as in training) and
averaged over pairs. The stage records its settings in ``RUN/config.yaml`` under
``attribute/TASK`` (one entry per task).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import Field, field_validator, model_validator
from rich.console import Console
from rich.table import Table
from safetensors.torch import save_file

from crosstime.artifacts import (
    ATTRIBUTION_ABLATION,
    ATTRIBUTION_CONFUSION,
    ATTRIBUTION_EFFECTS,
    ATTRIBUTION_FEATURES,
    ATTRIBUTION_JOINT,
    ATTRIBUTION_JOINT_PLOT,
    ATTRIBUTION_SUMMARY,
    AttributionSummary,
    write_model,
)
from crosstime.attribution.ablation import ablate_features
from crosstime.attribution.compute import (
    Attribution,
    AttributionError,
    ModelLoader,
    compute_attribution,
    crosscoder_revisions,
)
from crosstime.attribution.effects import IE_MEANING, PairBatch, make_batches
from crosstime.attribution.joint import JOINT_K, JointCurves, joint_curves
from crosstime.attribution.plots import plot_joint
from crosstime.attribution.stats import pairwise_rel_ie, top_features
from crosstime.attribution.tables import Summary, summarise
from crosstime.crosscoder import Crosscoder
from crosstime.files import atomic_path
from crosstime.names import check_name
from crosstime.series import CheckpointSeries, open_series
from crosstime.stage import DEVICE_HELP, Device, StageConfig
from crosstime.store import ActivationStore
from crosstime.tasks import Task, load_task

__all__ = ["AttributeConfig", "AttributeResult", "AttributionError", "print_attribution"]


class AttributeConfig(StageConfig):
    """Settings of the ``attribute`` stage (shared by ``crosstime attribute`` and the Python API)."""

    stage: ClassVar[str] = "attribute"
    # within float tolerance these change how the numbers are computed, not the numbers
    execution: ClassVar[frozenset[str]] = frozenset(
        {"batch_size", "step_chunk", "device", "keep_models_bytes", "skip_early_blocks"})

    task: str = Field(description="task name (toy task, BLiMP paradigm, 'subjectverb') or a .jsonl path")
    method: Literal["ig", "atp", "exact"] = Field(
        "ig", description="IE estimator. ig: integrated gradients, each feature's share of the joint effect of all "
                          "features (not a single-feature effect); atp: attribution patching, first-order estimate "
                          "of ablating a feature alone (one backward pass); exact: ablating each active feature "
                          "alone (one forward per pair and feature)")
    steps: int = Field(10, ge=1, description="integrated-gradient steps (midpoint rule)")
    baseline: Literal["zero", "mean"] = Field(
        "zero", description="value a feature is set to: zero, or its mean on the task")
    threshold: float | None = Field(
        None, ge=0, description="ig/atp: zero per-token effects with |e| <= threshold (paper: 0.1)")
    top_k: int = Field(10, ge=1, description="features reported per checkpoint (by |IE|)")
    batch_size: int = Field(32, ge=1, description="pairs per forward (times steps for IG)")
    step_chunk: int | None = Field(None, ge=1, description="IG steps per forward (default: all at once)")
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples over pairs for CIs (0: none)")
    ci: float = Field(0.95, gt=0, lt=1, description="confidence level of the bootstrap intervals")
    seed: int = Field(0, description="seed of the bootstrap resamples")
    ablation: bool = Field(True, description="exact single-feature ablation of the reported features")
    joint: bool = Field(True, description="joint ablation / restoration curves of the top-k features (joint.csv)")
    joint_k: list[int] = Field(default_factory=lambda: list(JOINT_K),
                               description="numbers of features moved together in the joint curves")
    joint_draws: int = Field(20, ge=0, description="random k-sets per k in the joint curves (0: none)")
    effect_floor: float = Field(
        0.01, ge=0, le=1, description="RelIE classes only for features whose Σ_m |IE_m| reaches this share of "
                                      "the summed joint effect Σ_m |J_m|; the rest: 'no effect'")
    compare: bool = Field(
        True, description="also compute the other estimators of ig / atp besides the method (ig: atp, one more "
                          "gradient; atp: ig; exact: both) for the faithfulness figure")
    skip_early_blocks: bool = Field(True, description="start the forward at the site (blocks 0..L not recomputed)")
    multi_token: Literal["drop", "first"] = Field(
        "drop", description="pairs whose answers are several tokens: drop them, or score the first differing token")
    max_pairs: int | None = Field(None, ge=1, description="use only the first N pairs")
    task_dirs: list[Path] = Field(default_factory=list, description="extra folders to find NAME.jsonl tasks in")
    device: Device = Field("auto", description=DEVICE_HELP)
    model_dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="dtype the models run in")
    keep_models_bytes: int = Field(
        2 << 30, ge=0, description="keep all M models loaded between passes if together they fit in this many bytes")

    @field_validator("task")
    @classmethod
    def _task_name_is_a_folder_name(cls, task: str) -> str:
        # the name becomes RUN/attribution/<task>/: '../../x' would escape the run, '...jsonl' land in its root
        name = task_name(task)
        check_name(name, "task name" + (f" of {task!r}" if name != task else "") + " (it becomes RUN/attribution/<name>/)")
        return task

    @field_validator("joint_k")
    @classmethod
    def _joint_k_positive(cls, ks: list[int]) -> list[int]:
        if not ks or min(ks) < 1:
            raise ValueError("joint_k must be a non-empty list of feature counts >= 1")
        return sorted(set(ks))

    @model_validator(mode="after")
    def _threshold_needs_per_token_effects(self) -> AttributeConfig:
        if self.threshold is not None and self.method == "exact":
            raise ValueError("threshold zeroes per-token effects of ig/atp; method 'exact' has none (it ablates a "
                             "feature at all positions at once): drop the threshold or choose ig/atp")
        return self

    @property
    def task_name(self) -> str:
        """The task's name, as :func:`crosstime.tasks.load_task` names it (a .jsonl path: its stem)."""
        return task_name(self.task)


def task_name(task: str) -> str:
    """The name of a task setting, as :func:`crosstime.tasks.load_task` names it (a .jsonl path: its stem)."""
    path = Path(task).expanduser()
    return path.stem if task.endswith(".jsonl") or path.is_file() else task


@dataclass
class AttributeResult:
    """What :func:`attribute` computed and where it wrote it."""

    out: Path  # RUN/attribution/TASK
    attribution: Attribution
    summary: Summary
    record: AttributionSummary  # what summary.json holds
    joint: JointCurves | None  # the joint ablation / restoration (None without --joint)


# -- inputs ------------------------------------------------------------------------------

@dataclass
class Inputs:
    """Everything checked before any work."""

    store: ActivationStore
    crosscoder: Crosscoder  # normalised space, eval mode, checked against the store
    series: CheckpointSeries  # the crosscoder's checkpoints
    task: Task
    batches: list[PairBatch]
    device: torch.device


def check_inputs(config: AttributeConfig, store: ActivationStore, crosscoder: Crosscoder,
                 device: torch.device) -> Inputs:
    """Check the crosscoder against the settings, open the series and the task (before any work);
    ``crosscoder``: normalised space, eval mode, checked against ``store`` (by the run reader)."""
    F = crosscoder.n_features
    if config.top_k > F:
        raise AttributionError(f"--top-k {config.top_k} is larger than the crosscoder's F = {F} features; "
                               f"choose at most {F}")
    series = open_series(store.manifest["series"]["source"], revisions=crosscoder_revisions(crosscoder))
    tokenizer = series.load_tokenizer(series.revisions[-1])
    task = _load_task(config, series, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0  # right padding: never read
    batches = make_batches(task.prefixes, task.correct, task.wrong, config.batch_size, pad_id=pad_id,
                           exclude_first=store.first_position > 0)
    return Inputs(store, crosscoder, series, task, batches, device)


def _load_task(config: AttributeConfig, series: CheckpointSeries, tokenizer) -> Task:
    """The task's pairs for the series' tokenizer (the first ``max_pairs`` of them)."""
    task_dirs = list(config.task_dirs)
    if series.local_root is not None and (series.local_root / "pairs").is_dir():
        task_dirs.append(series.local_root / "pairs")  # a toy world's own tasks
    task = load_task(config.task, tokenizer, search_dirs=task_dirs, multi_token=config.multi_token)
    if config.max_pairs is not None and config.max_pairs < len(task):
        task = task.subset(list(range(config.max_pairs)))
    return task


def warn_if_batch_dependent(crosscoder: Crosscoder, config: AttributeConfig) -> None:
    if crosscoder.inference_depends_on_batch:
        warnings.warn(
            f"{crosscoder.inference_rule}. Attribution encodes the tokens of {config.batch_size} pairs at a time "
            "(padding included), so the features, and the effects, depend on --batch-size; summary.json records "
            "this rule. Train past threshold_start_step for a BatchTopK threshold (per-token features).",
            stacklevel=4)


def _model_loader(config: AttributeConfig, inputs: Inputs) -> ModelLoader:
    """``load_model(m)`` for the crosscoder's checkpoint m; small models stay loaded between passes."""
    revisions = inputs.series.revisions
    cache: dict[int, torch.nn.Module] = {}

    def load_model(m: int) -> torch.nn.Module:
        # each checkpoint is used in three passes (sites, effects, ablation): keep small models loaded
        if m in cache:
            return cache[m]
        model = inputs.series.load_model(revisions[m], dtype=config.model_dtype, device=inputs.device)
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        if size * len(revisions) <= config.keep_models_bytes:
            cache[m] = model
        return model

    return load_model


# -- the work ----------------------------------------------------------------------------

def work(config: AttributeConfig, inputs: Inputs, t_start: float) -> AttributeResult:
    """The stage's work, inside the run's lock (:mod:`crosstime.stages.attribute` opens the inputs):
    the effects, the ablations, and every output written."""
    att, summary, joint = _work(config, inputs)
    out = config.rundir.attribution(config.task_name)
    _write_joint(out, joint, att)
    att.seconds["total"] = time.perf_counter() - t_start
    record = _record(config, inputs, att, summary)
    _write_outputs(out, att, summary, record)
    return AttributeResult(out, att, summary, record, joint)


def _work(config: AttributeConfig, inputs: Inputs) -> tuple[Attribution, Summary, JointCurves | None]:
    """Effects of every feature, the exact ablation of the reported ones, the joint curves, the summary."""
    load_model = _model_loader(config, inputs)
    layer = inputs.store.layer
    att = compute_attribution(load_model, inputs.crosscoder, inputs.batches, layer, method=config.method,
                              steps=config.steps, baseline=config.baseline, threshold=config.threshold,
                              compare=config.compare, step_chunk=config.step_chunk,
                              skip_early_blocks=config.skip_early_blocks, progress=config.progress)
    abl = None
    if config.ablation:
        t0 = time.perf_counter()
        _, union = top_features(att.ie.double().numpy(), config.top_k)
        abl = ablate_features(load_model, inputs.crosscoder, inputs.batches, layer, union, baseline=att.baseline,
                              skip_early_blocks=config.skip_early_blocks, progress=config.progress)
        att.seconds["ablation"] = time.perf_counter() - t0
    joint = None
    if config.joint:
        t0 = time.perf_counter()
        joint = joint_curves(load_model, inputs.crosscoder, inputs.batches, layer, att.ie, att.task_frequency > 0,
                             baseline=att.baseline, ks=config.joint_k, draws=config.joint_draws, seed=config.seed,
                             ci=config.ci, skip_early_blocks=config.skip_early_blocks, progress=config.progress)
        att.seconds["joint"] = time.perf_counter() - t0
    summary = summarise(att, inputs.crosscoder, config.top_k, abl, bootstrap=config.bootstrap, ci=config.ci,
                        seed=config.seed, effect_floor=config.effect_floor)
    return att, summary, joint


def _record(config: AttributeConfig, inputs: Inputs, att: Attribution, summary: Summary) -> AttributionSummary:
    """The contents of summary.json."""
    task = inputs.task
    return AttributionSummary(
        task=config.task_name, revisions=att.revisions, layer=inputs.store.layer, method=att.method, steps=att.steps,
        quadrature="midpoint" if att.method == "ig" else None, baseline=config.baseline,
        threshold=config.threshold, position_0_attributed=inputs.store.first_position == 0,
        pairs_kept=len(task), pairs_dropped={s.source: s.dropped for s in task.stats if s.dropped},
        inference_rule=inputs.crosscoder.inference_rule, seconds=att.seconds, **summary.metrics)


def _effect_tensors(att: Attribution, summary: Summary,
                    record: AttributionSummary) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of effects.safetensors (see the module docstring)."""
    revisions = att.revisions
    tensors = {
        "ie": att.ie.float().contiguous(), "ie_abs": att.ie_per_pair.abs().mean(1).contiguous(),
        "relie": torch.as_tensor(summary.relie).float().contiguous(),
        "reldec": torch.as_tensor(summary.reldec).float().contiguous(),
        "task_frequency": att.task_frequency.contiguous(), "baseline": att.baseline.contiguous(),
        "error": att.error.mean(1).contiguous(), "joint": att.joint.mean(1).contiguous(),
        "metric_clean": att.clean.contiguous(), "error_per_pair": att.error.contiguous(),
        "pair_index": torch.arange(att.clean.shape[1]),
        "top_features": torch.tensor(summary.features, dtype=torch.long),
        "ie_top_per_pair": att.ie_per_pair[:, :, summary.features].contiguous(),
    }
    pair_relie, pairs = pairwise_rel_ie(att.ie)
    tensors["relie_pairwise"] = torch.as_tensor(pair_relie).float().contiguous()  # [F, P]
    for name, per_pair in att.alongside.items():
        tensors[name] = per_pair.mean(1).contiguous()
    if summary.ablation is not None:
        tensors["exact_top"] = torch.as_tensor(summary.ablation.delta_lpd()).float().contiguous()
    meta = {"revisions": json.dumps(revisions), "method": att.method, "estimators": json.dumps(record.estimators),
            "steps": str(att.steps),
            "baseline": record.baseline, "task": record.task,
            "relie_pairwise_columns": json.dumps([[revisions[a], revisions[b]] for a, b in pairs]),
            "inference_rule": record.inference_rule}
    return tensors, meta


def _write_joint(out: Path, joint: JointCurves | None, att: Attribution) -> None:
    """joint.csv and joint.png (timed), or neither: those of an earlier run would describe other settings."""
    if joint is None:
        (out / ATTRIBUTION_JOINT.file).unlink(missing_ok=True)
        (out / ATTRIBUTION_JOINT_PLOT).unlink(missing_ok=True)
        return

    t0 = time.perf_counter()
    rows = joint.rows()
    ATTRIBUTION_JOINT.write(out, rows, joint.revisions)
    levels = {"lpd": {"clean": (-joint.clean).double().mean(1).tolist(),
                      "all ablated": (-joint.all_ablated).double().mean(1).tolist()},
              "accuracy": {"clean": (joint.clean < 0).double().mean(1).tolist(),
                           "all ablated": (joint.all_ablated < 0).double().mean(1).tolist()}}
    plot_joint(rows, joint.revisions, levels, out / ATTRIBUTION_JOINT_PLOT,
               title=f"{out.name}: features ablated / restored jointly, ranked by signed IE "
                     f"({att.method}: {IE_MEANING[att.method]})")
    att.seconds["joint_plot"] = time.perf_counter() - t0


def _write_outputs(out: Path, att: Attribution, summary: Summary, record: AttributionSummary) -> Path:
    """Every file of RUN/attribution/TASK, each atomically; features.csv (the stage's output) last."""

    revisions = att.revisions
    tensors, meta = _effect_tensors(att, summary, record)
    with atomic_path(out / ATTRIBUTION_EFFECTS) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    if summary.ablation is not None:
        ATTRIBUTION_ABLATION.write(out, summary.ablation.rows(), revisions)
    else:  # an ablation.csv of an earlier run would describe other features
        (out / ATTRIBUTION_ABLATION.file).unlink(missing_ok=True)
    ATTRIBUTION_CONFUSION.write(out, summary.confusion, revisions)
    write_model(record, out / ATTRIBUTION_SUMMARY)
    ATTRIBUTION_FEATURES.write(out, summary.rows, revisions)
    return out


# -- printing ----------------------------------------------------------------------------

def top_features_line(summary: AttributionSummary) -> str:
    """One line of what an attribution found: the top feature by |IE| per checkpoint and the clean accuracy."""
    top = ", ".join(f"{r} #{summary.top_features[r][0]}" for r in summary.revisions if summary.top_features.get(r))
    acc = " / ".join(f"{summary.accuracy_clean[r]:.2f}" for r in summary.revisions)
    return (f"{summary.task}: top feature by |IE| per checkpoint: {top}; clean accuracy {acc} "
            f"({', '.join(summary.revisions)})")


def print_attribution(result: AttributeResult, n: int | None = None) -> None:
    """Top features per checkpoint with signed IE and the RelIE vector (rich tables)."""

    console = Console()
    att, rec = result.attribution, result.record
    for m in range(len(att.revisions)):
        console.print(_top_table(result, m, n))
    revs = att.revisions
    acc = ", ".join(f"{r} {rec.accuracy_clean[r]:.3f}" for r in revs)
    err = ", ".join(f"{r} {rec.error_effect[r]:+.3f}" for r in revs)
    console.print(f"pairs: {rec.n_pairs}; clean accuracy: {acc}; error-term effect: {err}")
    for source, reasons in rec.pairs_dropped.items():
        console.print(f"dropped from {source}: " + ", ".join(f"{k} pairs ({why})" for why, k in reasons.items()))
    console.print(f"IE ({rec.method}): {IE_MEANING[rec.method]}")
    for line in faithfulness_lines(rec):
        console.print(line)
    console.print(relie_classes_line(rec))
    if result.joint is not None:
        console.print(_joint_line(result.joint))
    abl = rec.ablation_spearman
    if abl:
        console.print(f"ablation share vs RelDec ρ = {abl.ratio_vs_reldec_mean:.3f}, "
                      f"vs RelIE ρ = {abl.ratio_vs_relie_mean:.3f} (mean over checkpoints)")
    console.print(f"crosscoder inference: {rec.inference_rule}")
    console.print(f"written to {result.out}")


def faithfulness_lines(rec: AttributionSummary) -> list[str]:
    """Per estimator, its agreement with exact single-feature ablation per checkpoint; then the better one."""
    lines = [f"faithfulness of {name} vs exact single-feature ablation ({rec.n_reported} reported features; "
             "Spearman signed / |magnitude|, sign agreement): "
             + ", ".join(f"{r} {_num(v.spearman)} / {_num(v.spearman_abs)}, {_num(v.sign_agreement, '.0%')}"
                         for r, v in per.items())
             for name, per in (rec.faithfulness or {}).items()]
    if rec.faithfulness_best and len(rec.faithfulness or {}) > 1:
        lines.append("closest to exact ablation (signed Spearman): "
                     + ", ".join(f"{r} {b or 'n/a'}" for r, b in rec.faithfulness_best.items()))
    return lines


def relie_classes_line(rec: AttributionSummary) -> str:
    """The RelIE class counts, with how many of each are uncertain (interval reaches a cut-off)."""
    unsure = rec.relie_class_uncertain
    counts = ", ".join(f"{c} {n}" + (f" ({unsure[c]} uncertain)" if unsure and unsure.get(c) else "")
                       for c, n in rec.relie_class_counts.items())
    tail = "" if unsure is None else f"; {sum(unsure.values())} uncertain in all (bootstrap interval reaches a cut-off)"
    return (f"RelIE classes of the {rec.method} IE (floor Σ|IE| >= {rec.effect_floor:g} × Σ|joint| = "
            f"{rec.effect_floor_value:.3g}): {counts}{tail}")


def _num(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def _joint_line(joint: JointCurves) -> str:
    """Accuracy with the top k ablated jointly vs random k, per checkpoint, at the largest k run up to 20."""
    small = [k for k in joint.ks if k <= 20]
    if not small:
        return "joint ablation: no k run"
    k = small[-1]
    rows = [r for r in joint.rows() if r["k"] == k and r["mode"] == "ablate"]
    parts = []
    for rev in joint.revisions:
        here = {r["ranking"]: r for r in rows if r["checkpoint"] == rev}
        text = f"{rev} {here['signed_ie']['accuracy']:.2f}"
        if "random" in here:
            text += f" vs random {here['random']['accuracy']:.2f}"
        parts.append(text)
    return f"accuracy with the top {k} features by signed IE ablated jointly: " + ", ".join(parts)


def _top_table(result: AttributeResult, m: int, n: int | None):
    """Checkpoint m's top features: IE, RelIE vector, classes."""

    att, s = result.attribution, result.summary
    revs = att.revisions
    ie = att.ie.double().numpy()
    table = Table(title=f"{revs[m]}: top features by |IE| ({att.method}"
                        + (f", {att.steps} steps" if att.method == "ig" else "") + f"; IE = {IE_MEANING[att.method]})")
    table.add_column("feature", justify="right")
    table.add_column("IE", justify="right")
    table.add_column("RelIE [" + ", ".join(revs) + "]")
    table.add_column("RelIE class")
    table.add_column("RelDec class")
    for i in s.per_checkpoint[m][:n]:
        k = s.features.index(i)
        c = s.class_ci[k] if s.class_ci else None
        label = s.relie_class[k] + ("" if c is None else
                                    f" ({'uncertain: ' if c.uncertain else ''}{c.on} [{c.lo:.2f}, {c.hi:.2f}] vs "
                                    f"{c.cutoff:g})")
        table.add_row(str(i), f"{ie[m, i]:+.4f}", "[" + ", ".join(f"{v:.2f}" for v in s.relie[i]) + "]",
                      label, s.reldec_class[k])
    return table
