"""The dashboard data: every stage output of a run, gathered into one JSON document.

:func:`collect` reads what the stages wrote, only through their schemas in
:mod:`crosstime.artifacts` (``Table.read``, ``read_model``, the npz keys, ``RunDir``), and
returns plain JSON-ready data; :func:`render` embeds it with the template
(``dashboard.html/.css/.js``, package data) into one self-contained HTML file: inline CSS
and JS, no network, plots drawn as inline SVG or embedded PNGs. A dashboard of more than
``EMBED_MAX_FEATURES`` features keeps them beside it in shards, loaded on demand (:func:`write_shards`).

A stage that has not run (its output file is absent) is listed in ``missing``; an output
that exists but is not in its stage's schema (a renamed column, a malformed JSON) raises
:class:`~crosstime.artifacts.ArtifactError` naming the file. Inputs:

- ``scan/``: ``SCAN_ACCURACY``, ``SCAN_DYNAMICS``, ``SCAN_SIMILARITY`` (arrays ``labels`` and
  ``SIMILARITY_MATRICES``), ``Suggestion``;
- ``evaluation.json`` (:class:`~crosstime.artifacts.Evaluation`; the per-checkpoint table is
  built from the :class:`~crosstime.artifacts.CheckpointEvaluation` fields, their
  descriptions as tooltips) and ``EVALUATION_FEATURES``;
- ``attribution/TASK/``: ``AttributionSummary`` (its ``revisions`` say which checkpoints the
  tables cover), ``ATTRIBUTION_FEATURES``, ``ATTRIBUTION_ABLATION``, ``ATTRIBUTION_CONFUSION``;
- ``*.png`` under ``scan/``, ``evaluation/``, ``attribution/TASK/``: embedded as data URIs.

Checkpoints. The report's checkpoints are the crosscoder's revisions (``revisions``, given by
the caller that opened the crosscoder); without a crosscoder, those ``evaluation.json`` records,
else those of the first attribution. Every crosscoder-derived output must cover them
(evaluation: exactly; an attribution: a subset, its values placed at its checkpoints and
``None`` elsewhere), else it was computed for another crosscoder: an ``ArtifactError``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from crosstime import stage
from crosstime.artifacts import (
    ATTRIBUTION_ABLATION,
    ATTRIBUTION_CONFUSION,
    ATTRIBUTION_FEATURES,
    ATTRIBUTION_JOINT,
    ATTRIBUTION_SUMMARY,
    EVALUATION_FEATURES,
    SCAN_ACCURACY,
    SCAN_DYNAMICS,
    SCAN_SIMILARITY,
    SCAN_SUGGESTION,
    SIMILARITY_MATRICES,
    ArtifactError,
    AttributionSummary,
    CheckpointEvaluation,
    Evaluation,
    EvaluationSummary,
    Faithfulness,
    RunDir,
    Suggestion,
    read_model,
)
from crosstime.checkpoints import format_tokens
from crosstime.crosscoder import VARIANTS, CrosscoderConfig, TrainSettings
from crosstime.crosscoder.settings import EXECUTION_FIELDS
from crosstime.files import write_text

MAX_PNG_BYTES = 3 * 2**20
# Up to this many features the dashboard is one file; above, features are written in shards (see render)
EMBED_MAX_FEATURES = 2048
FEATURES_PER_SHARD = 256  # at most, per shard file; fewer when their evidence passes SHARD_BYTES
SHARD_BYTES = 2**19  # a shard is parsed whenever one of its features is opened: kept small enough to feel instant
SHARD_DIR = "features"
SHARD_INDEX = "index.js"
# what the feature list of a sharded dashboard knows of every feature before its shard is loaded
SUMMARY_KEYS = ("id", "rank", "reldec_class", "trajectory", "onset", "peak", "offset", "frequency", "description",
                "reldec_disputed", "dispute_kind")
TASK_SUMMARY_KEYS = ("ie", "relie", "relie_class")
SHARE_BINS = 10
# per-task values of attribution/TASK/features.csv shown per feature (one value per checkpoint, or one)
TASK_CHECKPOINT_COLUMNS = ("ie", "ie_lo", "ie_hi", "relie", "relie_lo", "relie_hi", "ie_abs", "exact")
TASK_SCALAR_COLUMNS = ("relie_class", "task_frequency", "selected_in")
# evaluation/features.csv columns shown per feature (all but the pairwise RelDec, unused by the dashboard)
EVALUATION_COLUMNS = tuple(c.name for c in EVALUATION_FEATURES.columns if c.kind != "pair" and c.name != "feature")

# Headings in words for the fields the dashboard tabulates (the field name and its schema
# description become the tooltip). A field not named here is headed by its name, spaces for "_".
LABELS = {
    # evaluation.json
    "scale": "normalisation scale", "mse": "MSE per dimension", "explained_variance": "explained variance",
    "fvu": "unexplained variance", "reldec_mean": "mean RelDec share", "ce_clean": "CE, clean (nats)",
    "ce_spliced": "CE, reconstruction spliced in", "ce_zero": "CE, site zero-ablated", "delta_ce": "ΔCE, spliced − clean",
    "zero_gap": "CE gap, zero − clean", "ce_recovered": "CE recovered", "kl": "KL(clean ‖ spliced)",
    "kl_zero": "KL(clean ‖ zero-ablated)", "predictions": "predictions scored", "l0": "active features per token (L0)",
    "dead": "dead features", "dead_fraction": "dead share", "dead_window_tokens": "tokens watched for dead features",
    "explained_variance_overall": "explained variance", "fvu_overall": "unexplained variance",
    "mse_overall": "MSE per dimension", "delta_ce_max": "largest ΔCE",
    # attribution/TASK/summary.json
    "accuracy_clean": "accuracy", "metric_clean_mean": "mean metric m = log p(wrong) − log p(correct)",
    "error_effect": "effect of the reconstruction error", "joint_effect_exact": "joint effect of all features (exact)",
    "sum_of_feature_ie": "sum of the features' IE", "method": "attribution method", "steps": "integration steps",
    "baseline": "baseline", "threshold": "threshold", "position_0_attributed": "position 0 attributed",
    "n_pairs": "pairs", "pairs_kept": "pairs kept", "n_reported": "features reported", "layer": "layer",
    "inference_rule": "features fire by", "quadrature": "quadrature",
    "ig_vs_exact_spearman": "Spearman, IG vs exact ablation (signed)",
    "ig_vs_exact_spearman_abs": "Spearman, IG vs exact ablation (|·|)",
    "atp_vs_exact_spearman": "Spearman, AtP vs exact ablation (signed)",
    "atp_vs_exact_spearman_abs": "Spearman, AtP vs exact ablation (|·|)",
    "ratio_vs_reldec": "Spearman, ablation share vs RelDec", "ratio_vs_relie": "Spearman, ablation share vs RelIE",
    "ratio_vs_reldec_mean": "Spearman, ablation share vs RelDec (mean)",
    "ratio_vs_relie_mean": "Spearman, ablation share vs RelIE (mean)",
    "spearman": "Spearman (signed)", "spearman_abs": "Spearman (|·|)", "sign_agreement": "same sign",
    "accuracy_all_ablated": "accuracy, every feature ablated", "effect_floor": "effect floor (share of joint effect)",
    "effect_floor_value": "effect floor (metric units)", "reldec_disputed": "RelDec classes disputed by latent scaling",
    "scaling_judged": "features judged by latent scaling",
    # attribution/TASK/ablation.csv
    "acc_clean": "accuracy, clean", "acc_ablated": "accuracy, feature ablated", "delta_acc_pp": "accuracy drop (points)",
    "lpd_clean": "log-prob difference, clean", "lpd_ablated": "log-prob difference, ablated", "delta_lpd": "ΔLPD",
    "ablation_share": "ablation share",
}


def word(name: str, description: str | None) -> dict[str, str]:
    """A field as the dashboard heads it: ``label`` in words, ``name`` and ``description`` for the tooltip."""
    return {"name": name, "label": LABELS.get(name, name.replace("_", " ")), "description": description or ""}


def _applies(name: str, description: str | None, variant: str) -> bool:
    """Whether a crosscoder setting applies to ``variant``, as the setting documents it: a name
    prefixed by a variant (``jumprelu_bandwidth``) or a description opening with the variants it
    serves (``"topk/batchtopk: active features per token"``) limits it to them."""
    for other in VARIANTS:
        if name.startswith(f"{other}_"):
            return other == variant
    head = re.match(r"([\w/]+):\s", description or "")
    served = head.group(1).split("/") if head else []
    if served and all(v in VARIANTS for v in served):
        return variant in served
    return True


TRAINING_LABELS = {"steps": "training steps", "tokens": "training rows", "seed": "seed of the batch order"}


def crosscoder_settings(config: dict[str, Any], train: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The settings of a crosscoder that apply to its variant: those of its ``CrosscoderConfig``
    (``group`` "architecture") and, when the run recorded them, the ``TrainSettings`` it was trained
    with that the config does not repeat ("training"; execution-only ones left out)."""
    variant = config["variant"]
    out = []
    for group, fields, values in (("architecture", CrosscoderConfig.model_fields, config),
                                  ("training", TrainSettings.model_fields, train or {})):
        for name, info in fields.items():
            if name not in values or (group == "training" and (name in CrosscoderConfig.model_fields
                                                               or name in EXECUTION_FIELDS)):
                continue
            if _applies(name, info.description, variant):
                heading = word(name, info.description)
                if group == "training" and name in TRAINING_LABELS:  # "steps" here is not attribution's
                    heading["label"] = TRAINING_LABELS[name]
                out.append({**heading, "group": group, "value": values[name]})
    return out


def png_data_uri(path: Path) -> str | None:
    if path.stat().st_size > MAX_PNG_BYTES:
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figures(folder: Path, group: str) -> list[dict]:
    out = []
    for path in sorted(folder.glob("*.png")) if folder.is_dir() else []:
        uri = png_data_uri(path)
        if uri:
            out.append({"name": f"{group}/{path.name}", "group": group, "src": uri})
    return out


def _json_float(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


# ---------------------------------------------------------------------------------------
# scan/
# ---------------------------------------------------------------------------------------
def read_similarity(path: Path) -> dict[str, np.ndarray]:
    """``scan/similarity.npz``: ``labels [M]`` and the ``SIMILARITY_MATRICES`` ``[M, M]``."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ArtifactError(f"{path} is not a readable .npz file ({err}); re-run `crosstime scan`") from err
    missing = [k for k in ("labels", *SIMILARITY_MATRICES) if k not in arrays]
    if missing:
        raise ArtifactError(f"{path} lacks the arrays {missing} the scan writes (found {sorted(arrays)}); "
                            "re-run `crosstime scan`")
    n = len(arrays["labels"])
    bad = [k for k in SIMILARITY_MATRICES if arrays[k].shape != (n, n)]
    if bad:
        raise ArtifactError(f"{path}: {bad} are not [{n}, {n}] like its labels; re-run `crosstime scan`")
    return arrays


def _accuracy(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["task"], []).append({
            "revision": row["revision"], "step": row["step"], "tokens": row["tokens"],
            "label": format_tokens(row["tokens"]) if row["tokens"] else row["revision"],
            "accuracy": _json_float(row["accuracy"]), "n": row["n"], "mean_m": _json_float(row["mean_m"])})
    for points in out.values():
        points.sort(key=lambda p: p["tokens"] if p["tokens"] is not None else p["step"] or 0)
    return out


def _dynamics(rows: list[dict]) -> dict:
    """Every float column of ``SCAN_DYNAMICS`` against tokens seen."""
    series = []
    for column in SCAN_DYNAMICS.columns:
        if column.type is not float:
            continue
        name = column.name
        points = [[r["tokens"], _json_float(r[name]), r["revision"]] for r in rows if _json_float(r[name]) is not None]
        if points:
            series.append({"name": name, "label": column.description, "points": points})
    ticks = [[r["tokens"], format_tokens(r["tokens"])] for r in rows]
    return {"series": series, "ticks": ticks, "xlabel": "tokens seen (log)"}


def finished_stage(run: RunDir, key: str, folder: Path, missing: list[str]) -> bool:
    """Whether stage ``key``'s outputs may be read: it finished (its record is in config.yaml) and
    its files are as it wrote them (checked against the recorded checksums: a changed file is an
    :class:`ArtifactError`). Outputs without a record (a stage killed half-way) are not read; said
    in ``missing``."""
    if stage.verify_outputs(run, key):
        return True
    if folder.exists():
        missing.append(f"{folder.relative_to(run.root)}: `crosstime {key.split('/')[0]}` did not finish there (no "
                       f"record in {run.config_file.name}), so its files are not shown; re-run it")
    return False


def scan_overview(run: RunDir) -> tuple[dict, list[str]]:
    """Accuracy curves, similarity matrices, the suggestion and the dynamics of ``scan/``."""
    out: dict[str, Any] = {"accuracy": {}, "similarity": [], "suggestion": None, "dynamics": None, "figures": []}
    missing: list[str] = []
    if not finished_stage(run, "scan", run.scan, missing):
        missing.append("scan/ (run `crosstime scan`)")
        return out, missing
    if (run.scan / SCAN_ACCURACY.file).is_file():
        out["accuracy"] = _accuracy(SCAN_ACCURACY.read(run.scan, []))
    else:
        missing.append(f"scan/{SCAN_ACCURACY.file} (run `crosstime scan`)")
    if (run.scan / SCAN_SIMILARITY).is_file():
        arrays = read_similarity(run.scan / SCAN_SIMILARITY)
        labels = [str(x) for x in arrays["labels"].tolist()]
        out["similarity"] = [{"name": k, "labels": labels,
                              "matrix": [[_json_float(v) for v in row] for row in arrays[k].astype(float).tolist()]}
                             for k in SIMILARITY_MATRICES]
    else:
        missing.append(f"scan/{SCAN_SIMILARITY}")
    if (run.scan / SCAN_SUGGESTION).is_file():
        out["suggestion"] = read_model(Suggestion, run.scan / SCAN_SUGGESTION).model_dump(mode="json")
    else:
        missing.append(f"scan/{SCAN_SUGGESTION}")
    if (run.scan / SCAN_DYNAMICS.file).is_file():
        out["dynamics"] = _dynamics(SCAN_DYNAMICS.read(run.scan, []))
    else:
        missing.append(f"scan/{SCAN_DYNAMICS.file}")
    out["figures"] = _figures(run.scan, "scan")
    return out, missing


# ---------------------------------------------------------------------------------------
# evaluation.json and evaluation/
# ---------------------------------------------------------------------------------------
def evaluation_table(evaluation: Evaluation) -> dict:
    """The per-checkpoint numbers as rows (one per :class:`CheckpointEvaluation` field that has a value
    somewhere: ``label``, ``name``, ``description``, ``values [M]``) and the overall scalars of the
    summary (``label``, ``name``, ``description``, ``value``)."""
    records = [c.model_dump() for c in evaluation.checkpoints]
    names = [n for n in CheckpointEvaluation.model_fields if n not in ("revision", "step", "tokens_seen")
             and any(r[n] is not None for r in records)]
    rows = [{**word(n, CheckpointEvaluation.model_fields[n].description), "values": [r[n] for r in records]}
            for n in names]
    summary = evaluation.summary.model_dump()
    overall = [{**word(k, EvaluationSummary.model_fields[k].description), "value": v} for k, v in summary.items()
               if not isinstance(v, list) and v is not None]
    return {"checkpoints": [r["revision"] for r in records], "rows": rows, "overall": overall}


def evaluation_features(run: RunDir, revisions: list[str]) -> dict[int, dict]:
    """``evaluation/features.csv`` as ``{feature: {column: value}}`` (``EVALUATION_COLUMNS``)."""
    rows = EVALUATION_FEATURES.read(run.evaluation, revisions)
    return {row["feature"]: {"id": row["feature"], **{c: row[c] for c in EVALUATION_COLUMNS}, "tasks": {}}
            for row in rows}


# ---------------------------------------------------------------------------------------
# attribution/TASK/
# ---------------------------------------------------------------------------------------
def _placer(covered: list[str], revisions: list[str]):
    """A function placing a list over ``covered`` into one over ``revisions`` (None elsewhere)."""
    at = [revisions.index(r) for r in covered]

    def place(values: list | None) -> list | None:
        if values is None:
            return None
        out: list = [None] * len(revisions)
        for m, v in zip(at, values):
            out[m] = _json_float(v)
        return out

    return place


def _check_covered(path: Path, covered: list[str], revisions: list[str]) -> None:
    if not covered or any(r not in revisions for r in covered) or sorted(covered, key=revisions.index) != covered:
        raise ArtifactError(f"{path} covers checkpoints {covered}, but the run's crosscoder has {revisions}: it was "
                            "computed for another crosscoder; re-run `crosstime attribute` for this task")


# AttributionSummary fields holding one number per checkpoint ({revision: value}), shown as a table
PER_CHECKPOINT_SUMMARY = ("accuracy_clean", "accuracy_all_ablated", "metric_clean_mean", "error_effect",
                          "joint_effect_exact", "sum_of_feature_ie")
# Faithfulness fields shown per estimator and checkpoint
FAITHFULNESS_FIELDS = ("spearman", "spearman_abs", "sign_agreement")


def _per_checkpoint(name: str, description: str | None, values: Any, revisions: list[str]) -> dict | None:
    """A ``{revision: value}`` dict as a row over ``revisions`` (None when ``values`` is not one)."""
    if not isinstance(values, dict) or not values or not set(values) <= set(revisions):
        return None
    return {**word(name, description), "values": [_json_float(values.get(r)) for r in revisions]}


def attribution_overview(folder: Path, summary: AttributionSummary) -> dict:
    """The summary's settings and scalars (``summary``: rows of ``label, name, description, value``),
    its per-checkpoint numbers (``per_checkpoint``: rows with ``values`` over its revisions; the
    faithfulness and ablation correlations among them, their pooled scalars in ``agreement``) and the
    confusion table as a matrix (``confusion``: ``relie_classes`` × ``reldec_classes`` ``counts``)."""
    fields = AttributionSummary.model_fields
    dumped = summary.model_dump(mode="json")
    revisions = summary.revisions
    info: dict[str, Any] = {
        "revisions": revisions,
        "summary": [{**word(k, fields[k].description), "value": v} for k, v in dumped.items()
                    if k != "task" and not isinstance(v, (dict, list))],
        "per_checkpoint": [{**word(k, fields[k].description), "values": [dumped[k].get(r) for r in revisions]}
                           for k in PER_CHECKPOINT_SUMMARY],
        "agreement": [],
    }
    for estimator, per_revision in (dumped["faithfulness"] or {}).items():
        for name in FAITHFULNESS_FIELDS:
            row = {**word(name, Faithfulness.model_fields[name].description),
                   "values": [per_revision[r][name] if r in per_revision else None for r in revisions]}
            row["label"] = f"{estimator.upper()} vs exact ablation: {LABELS.get(name, row['label'])}"
            info["per_checkpoint"].append(row)
    for k, v in (dumped["ablation_spearman"] or {}).items():
        row = _per_checkpoint(k, fields["ablation_spearman"].description, v, revisions)
        if row is not None:
            info["per_checkpoint"].append(row)
        elif isinstance(v, (int, float)):
            info["agreement"].append({**word(k, f"ablation_spearman.{k}"), "value": v})
    if (folder / ATTRIBUTION_CONFUSION.file).is_file():
        rows = ATTRIBUTION_CONFUSION.read(folder, revisions)
        relie = list(dict.fromkeys(r["relie_class"] for r in rows))
        reldec = list(dict.fromkeys(r["reldec_class"] for r in rows))
        counts = [[0] * len(reldec) for _ in relie]
        for r in rows:
            counts[relie.index(r["relie_class"])][reldec.index(r["reldec_class"])] += r["count"]
        info["confusion"] = {"relie_classes": relie, "reldec_classes": reldec, "counts": counts}
    return info


def read_attribution(run: RunDir, task: str, revisions: list[str], features: dict[int, dict]) -> dict:
    """One task's attribution: per-feature values into ``features[i]["tasks"][task]``; returns its overview."""
    folder = run.attribution(task)
    summary = read_model(AttributionSummary, folder / ATTRIBUTION_SUMMARY)
    _check_covered(folder / ATTRIBUTION_SUMMARY, summary.revisions, revisions)
    place = _placer(summary.revisions, revisions)
    for row in ATTRIBUTION_FEATURES.read(folder, summary.revisions):
        feat = features.setdefault(row["feature"], {"id": row["feature"], "tasks": {}})
        entry = {c: place(row[c]) for c in TASK_CHECKPOINT_COLUMNS}
        entry.update({c: row[c] for c in TASK_SCALAR_COLUMNS})
        feat["tasks"][task] = {k: v for k, v in entry.items() if v is not None}
    info = attribution_overview(folder, summary)
    if (folder / ATTRIBUTION_JOINT.file).is_file():  # joint ablation / restoration curves (written with --joint)
        info["joint"] = ATTRIBUTION_JOINT.read(folder, summary.revisions)
    if (folder / ATTRIBUTION_ABLATION.file).is_file():
        rows = ATTRIBUTION_ABLATION.read(folder, summary.revisions)
        info["ablation"] = {"columns": [word(c.name, c.description) for c in ATTRIBUTION_ABLATION.columns],
                            "rows": [[r[c.name] for c in ATTRIBUTION_ABLATION.columns] for r in rows]}
        _attach_ablation(features, task, rows, revisions, folder / ATTRIBUTION_ABLATION.file)
    return info


def _attach_ablation(features: dict[int, dict], task: str, rows: list[dict], revisions: list[str], path: Path) -> None:
    """Per feature, the metrics of ``ablation.csv`` (one row per feature and checkpoint) as lists over ``revisions``."""
    metrics = [c.name for c in ATTRIBUTION_ABLATION.columns if c.name not in ("feature", "checkpoint")]
    for r in rows:
        if r["checkpoint"] not in revisions:
            raise ArtifactError(f"{path} has a row for checkpoint {r['checkpoint']!r}, not one of the crosscoder's "
                                f"{revisions}; re-run `crosstime attribute`")
        task_entry = features.get(r["feature"], {}).get("tasks", {}).get(task)
        if task_entry is None:  # the ablation covers the reported features, those of features.csv
            raise ArtifactError(f"{path} ablates feature {r['feature']}, which {ATTRIBUTION_FEATURES.file} beside it "
                                "does not report; re-run `crosstime attribute`")
        abl = task_entry.setdefault("ablation", {})
        for c in metrics:
            abl.setdefault(c, [None] * len(revisions))[revisions.index(r["checkpoint"])] = _json_float(r[c])


# ---------------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------------
def share_histograms(values: list[list[float | None]], M: int, bins: int = SHARE_BINS) -> list[list[int]]:
    """Per checkpoint, counts of shares in ``bins`` equal bins of [0, 1] (1.0 in the last bin)."""
    counts = [[0] * bins for _ in range(M)]
    for vec in values:
        for m, v in enumerate(vec[:M]):
            if v is None or not math.isfinite(v):  # e.g. the shares of a feature with no decoder norm
                continue
            counts[m][min(bins - 1, max(0, int(v * bins)))] += 1
    return counts


def class_counts(labels: list[str | None]) -> dict[str, int]:
    out: dict[str, int] = {}
    for lab in labels:
        if lab:
            out[lab] = out.get(lab, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def rank_features(features: dict[int, dict], tasks: list[str], norms: dict[int, list] | None = None) -> list[int]:
    """Feature ids, most interesting first: by max over tasks of Σ_m |IE_m|; else decoder norm; else frequency."""

    def ie_score(entry: dict) -> float:
        best = 0.0
        for t in tasks:
            ie = (entry.get("tasks") or {}).get(t, {}).get("ie")
            if ie:
                best = max(best, sum(abs(v) for v in ie if v is not None))
        return best

    if any(ie_score(e) > 0 for e in features.values()):
        key = ie_score
    elif norms:
        key = lambda e: sum(v for v in norms.get(e["id"], []) if v)
    else:
        key = lambda e: e.get("frequency") or 0.0
    return [e["id"] for e in sorted(features.values(), key=lambda e: (-key(e), e["id"]))]


def _distributions(features: dict[int, dict], tasks: list[str], M: int) -> tuple[dict, dict]:
    """Share histograms and class counts over every feature of the tables."""
    reldec = [f["reldec"] for f in features.values() if f.get("reldec")]
    dist: dict[str, Any] = {"reldec": share_histograms(reldec, M) if reldec and M else None, "n_reldec": len(reldec),
                            "relie": {}, "n_relie": {}}
    counts = {}
    if any(f.get("reldec_class") for f in features.values()):
        counts["RelDec class"] = class_counts([f.get("reldec_class") for f in features.values()])
    if any(f.get("reldec_disputed") for f in features.values()):  # latent scaling (evaluation/features.csv)
        counts["RelDec disputed by latent scaling"] = class_counts(
            [f.get("dispute_kind") for f in features.values() if f.get("reldec_disputed")])
    if any(f.get("trajectory") for f in features.values()):
        counts["decoder-norm trajectory"] = class_counts([f.get("trajectory") for f in features.values()])
    for task in tasks:
        rows = [f["tasks"][task] for f in features.values() if task in f["tasks"]]
        relie = [t["relie"] for t in rows if t.get("relie")]
        if relie and M:
            dist["relie"][task] = share_histograms(relie, M)
            dist["n_relie"][task] = len(relie)
        labels = [t.get("relie_class") for t in rows]
        if any(labels):
            counts[f"RelIE class ({task})"] = class_counts(labels)
    return dist, counts


# ---------------------------------------------------------------------------------------
# the whole run
# ---------------------------------------------------------------------------------------
@dataclass
class Collected:
    """What :func:`collect` read: the report's ``revisions``, the ``overview`` panels, the
    attributed ``tasks``, every feature of the tables (``features``: id -> entry) and what is ``missing``."""

    revisions: list[str]
    evaluation: Evaluation | None
    overview: dict
    tasks: list[str]
    features: dict[int, dict]
    missing: list[str] = field(default_factory=list)


def _summaries(run: RunDir, missing: list[str]) -> dict[str, AttributionSummary]:
    """The summaries of the attributions that finished (checked against their recorded checksums):
    the tasks with a folder, and those with a record whose folder is gone (an error, not a silence)."""
    recorded = {key.split("/", 1)[1] for key in stage.read_records(run) if key.startswith("attribute/")}
    tasks = sorted(set(run.attribution_tasks()) | recorded)
    return {t: read_model(AttributionSummary, run.attribution(t) / ATTRIBUTION_SUMMARY) for t in tasks
            if finished_stage(run, f"attribute/{t}", run.attribution(t), missing)}


def report_revisions(revisions: list[str] | None, evaluation: Evaluation | None,
                     summaries: dict[str, AttributionSummary]) -> list[str]:
    """The crosscoder's revisions: as given (the crosscoder was opened), else as the stages that used it recorded them."""
    if revisions is not None:
        return list(revisions)
    if evaluation is not None:
        return [c.revision for c in evaluation.checkpoints]
    return list(next(iter(summaries.values())).revisions) if summaries else []


def _evaluation(run: RunDir, evaluation: Evaluation | None, revisions: list[str], overview: dict,
                missing: list[str]) -> dict[int, dict]:
    """``evaluation.json`` into ``overview`` and ``evaluation/features.csv`` as features."""
    if evaluation is None:
        missing.append(f"{run.evaluation_file.name} (run `crosstime evaluate`)")
    else:
        covered = [c.revision for c in evaluation.checkpoints]
        if covered != revisions:
            raise ArtifactError(f"{run.evaluation_file} evaluates checkpoints {covered}, but the run's crosscoder has "
                                f"{revisions}: it was computed for another crosscoder; re-run `crosstime evaluate`")
        overview["evaluation"] = evaluation_table(evaluation)
        # what evaluation/emergence.png draws (live features by onset), for the findings and the panel
        overview["emergence"] = {**evaluation.decoder["emergence"],
                                 "presence_fraction": evaluation.decoder["presence_fraction"]}
    if not (run.evaluation / EVALUATION_FEATURES.file).is_file():
        missing.append(f"evaluation/{EVALUATION_FEATURES.file}: no RelDec classes or onsets")
        return {}
    overview["figures"] += _figures(run.evaluation, "evaluation")
    return evaluation_features(run, revisions)


def collect(run: RunDir, revisions: list[str] | None = None) -> Collected:
    """Everything but the feature evidence (see the module docstring).

    ``revisions``: the crosscoder's, when the caller opened it; ``None`` takes them from the stages' records.
    """
    checked: list[str] = []
    evaluated = finished_stage(run, "evaluate", run.evaluation_file, checked)
    evaluation = read_model(Evaluation, run.evaluation_file) if evaluated else None
    summaries = _summaries(run, checked)
    revisions = report_revisions(revisions, evaluation, summaries)
    overview, missing = scan_overview(run)
    missing += checked
    features = _evaluation(run, evaluation, revisions, overview, missing) if evaluated else {}
    if not evaluated:
        missing.append(f"{run.evaluation_file.name} (run `crosstime evaluate`)")
    tasks = sorted(summaries)
    if not tasks:
        missing.append(f"attribution/TASK/{ATTRIBUTION_FEATURES.file} (run `crosstime attribute`): no IE or RelIE")
    overview["ablation"], overview["attribution"] = {}, {}
    for task in tasks:
        info = read_attribution(run, task, revisions, features)
        if "ablation" in info:
            overview["ablation"][task] = info.pop("ablation")
        overview["attribution"][task] = info
        overview["figures"] += _figures(run.attribution(task), f"attribution/{task}")
    overview["distributions"], overview["class_counts"] = _distributions(features, tasks, len(revisions))
    return Collected(revisions, evaluation, overview, tasks, features, missing)


# ---------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------
def _asset(name: str) -> str:
    return resources.files("crosstime.report").joinpath(name).read_text(encoding="utf-8")


def _script_json(data: dict) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</``, no U+2028/9 surprises)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\u0021--").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def clean(obj: Any) -> Any:
    """Replace NaN/inf by None everywhere (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def feature_summary(entry: dict) -> dict:
    """What the feature list shows, sorts, filters and searches for one feature (``SUMMARY_KEYS``;
    per task only ``TASK_SUMMARY_KEYS``): the index of a sharded dashboard, small for every feature."""
    out = {k: entry[k] for k in SUMMARY_KEYS if k in entry}
    out["tasks"] = {t: {k: v for k, v in (values or {}).items() if k in TASK_SUMMARY_KEYS}
                    for t, values in (entry.get("tasks") or {}).items()}
    return out


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.js"


def write_shard(folder: Path, k: int, entries: list[str]) -> Path:
    """``folder/shard-KKKKK.js``: a script calling ``crosstimeShard(K, [entry, …])``; ``entries`` as JSON texts."""
    return write_text(folder / shard_name(k), f"crosstimeShard({k},[{','.join(entries)}]);\n")


def write_shards(features: list[dict], folder: Path, per_shard: int = FEATURES_PER_SHARD,
                 max_bytes: int = SHARD_BYTES) -> dict:
    """The features of a large dashboard as script files the page loads on demand (``<script src>``
    works from ``file://``, where Chromium blocks ``fetch``; and through ``crosstime serve``):

    - ``folder/index.js`` calls ``crosstimeIndex([summary, …])``: every feature's
      :func:`feature_summary`, in the data's (rank) order, for the list and the search;
    - ``folder/shard-KKKKK.js`` calls ``crosstimeShard(K, [entry, …])``: the whole entries of a run
      of consecutive ids from ``starts[K]``, at most ``per_shard`` of them and about ``max_bytes``.

    Returns what the page needs to find them: ``path`` (relative to index.html), ``starts`` (the
    first id of each shard: a deep link finds its shard before the index is read), ``count``.
    Shards of an earlier report are removed first.
    """
    if folder.exists():
        shutil.rmtree(folder)
    starts: list[int] = []
    batch: list[str] = []
    size = 0
    for entry in sorted(features, key=lambda e: int(e["id"])):
        text = _script_json(clean(entry))  # one entry at a time: a large report is not copied whole
        if batch and (len(batch) >= per_shard or size + len(text) > max_bytes):
            write_shard(folder, len(starts) - 1, batch)
            batch, size = [], 0
        if not batch:
            starts.append(int(entry["id"]))
        batch.append(text)
        size += len(text)
    if batch:
        write_shard(folder, len(starts) - 1, batch)
    write_text(folder / SHARD_INDEX, f"crosstimeIndex({_script_json([clean(feature_summary(e)) for e in features])});\n")
    return {"path": folder.name, "starts": starts, "count": len(features)}


def render(data: dict, path: str | Path, embed_max: int = EMBED_MAX_FEATURES,
           per_shard: int = FEATURES_PER_SHARD) -> Path:
    """Write the dashboard for ``data`` to ``path`` (atomically).

    Up to ``embed_max`` features it is one self-contained file. Above, the page embeds the
    overview only and its features go to ``features/`` beside it (:func:`write_shards`), loaded
    when the list or a feature needs them; it still opens from a file, no server needed.
    The template's placeholders are filled in one pass over the template, so a value that
    contains a placeholder's name (a ``--title`` of ``__DATA__``) is inserted as it is."""
    folder = Path(path).parent / SHARD_DIR
    features = data.get("features") or []
    if len(features) > embed_max:
        data = clean({**data, "features": [], "feature_shards": write_shards(features, folder, per_shard)})
    else:
        data = clean(data)
        if folder.exists():  # the shards of an earlier, larger report would contradict this one
            shutil.rmtree(folder)
    fill = {
        "TITLE": html.escape(data.get("title") or "crosstime report"),
        "CSS": _asset("dashboard.css"),
        "JS": _asset("dashboard.js"),
        "DATA": _script_json(data),
    }
    body = re.sub(r"__(TITLE|CSS|JS|DATA)__", lambda m: fill[m.group(1)], _asset("dashboard.html"))
    return write_text(path, body)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


__all__ = ["Collected", "class_counts", "clean", "collect", "evaluation_table", "feature_summary", "now",
           "rank_features", "render", "report_revisions", "share_histograms", "write_shards"]
