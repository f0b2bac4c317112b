"""The dashboard data: every stage output of a run, gathered into one JSON document.

:func:`collect` reads what the stages wrote, only through their schemas in
:mod:`crosstime.artifacts` (``Table.read``, ``read_model``, the npz keys, ``RunDir``), and
returns the overview and the features in the schema of ``report/data.json``
(:class:`~crosstime.artifacts.Overview`, :class:`~crosstime.artifacts.FeatureTables`);
:func:`write_report` writes ``data.json`` and the page: :func:`render` embeds the data (a
:class:`~crosstime.artifacts.ReportData`) with the template (``dashboard.html``, ``dashboard.css`` and
``js/*.js``, package data) into one self-contained HTML file: inline CSS and JS, no network, plots drawn
as inline SVG or embedded PNGs. A report of more than ``EMBED_MAX_FEATURES`` features keeps them beside
the page, once, in shards loaded on demand (:func:`write_shards`), which data.json names; every reader
reassembles them with :func:`~crosstime.artifacts.read_report_data`.

A stage that has not run (its output file is absent) is listed in ``missing``; an output
that exists but is not in its stage's schema (a renamed column, a malformed JSON) raises
:class:`~crosstime.artifacts.ArtifactError` naming the file. Inputs:

- ``scan/``: ``SCAN_ACCURACY``, ``SCAN_DYNAMICS``, ``SCAN_SIMILARITY`` (arrays ``revisions`` and
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
import hashlib
import html
import json
import math
import os
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from crosstime.artifacts import (
    ABLATION_METRICS,
    ATTRIBUTION_ABLATION,
    ATTRIBUTION_CONFUSION,
    ATTRIBUTION_FEATURES,
    ATTRIBUTION_SUMMARY,
    EVALUATION_COLUMNS,
    EVALUATION_FEATURES,
    REPORT_DATA,
    REPORT_HTML,
    REPORT_SHARDS,
    SCAN_ACCURACY,
    SCAN_DYNAMICS,
    SCAN_SIMILARITY,
    SIMILARITY_MATRICES,
    TASK_CHECKPOINT_COLUMNS,
    TASK_SCALAR_COLUMNS,
    AblationSpearman,
    AblationTable,
    AccuracyPoint,
    ArtifactError,
    AttributionOverview,
    AttributionSummary,
    CheckpointEvaluation,
    Column,
    Confusion,
    CrosscoderSetting,
    Distributions,
    DynamicsPanel,
    DynamicsSeries,
    Evaluation,
    EvaluationSummary,
    EvaluationTable,
    Faithfulness,
    FeatureAblation,
    FeatureShards,
    FeatureTables,
    Figure,
    Heading,
    JointRow,
    Overview,
    ReportData,
    ReportEmergence,
    ReportFeature,
    SimilarityMatrix,
    Suggestion,
    TaskEntry,
    ValueRow,
    ValuesRow,
    feature_shard_name,
    feature_shard_text,
    write_model,
)
from crosstime.checkpoints import format_tokens
from crosstime.crosscoder import CrosscoderConfig, TrainSettings, variant
from crosstime.crosscoder.model import VARIANT_CONFIG
from crosstime.crosscoder.settings import EXECUTION_FIELDS, VARIANT_SETTINGS
from crosstime.files import write_text
from crosstime.progress import Bar
from crosstime.report.evolution import evolution_overview
from crosstime.runs import ATTRIBUTION, EVALUATION, SCAN, Run, ScanOutputs, TaskAttribution
from crosstime.stage import Artifact

MAX_PNG_BYTES = 3 * 2**20
# Up to this many features the dashboard is one file; above, features are written in shards (see render)
EMBED_MAX_FEATURES = 2048
FEATURES_PER_SHARD = 256  # at most, per shard file; fewer when their evidence passes SHARD_BYTES
SHARD_BYTES = 2**19  # a shard is parsed whenever one of its features is opened: kept small enough to feel instant
SHARD_INDEX = "index.js"
# what the feature list of a sharded dashboard knows of every feature before its shard is loaded
SUMMARY_KEYS = ("id", "rank", "reldec_class", "trajectory", "onset", "peak", "offset", "frequency", "description",
                "scaling_flag")
TASK_SUMMARY_KEYS = ("ie", "relie", "relie_class")
INTERPRET_SUMMARY_KEYS = ("explanation",)  # per view: the list searches the explanations (crosstime interpret)
SHARE_BINS = 10


def word(name: str, source: FieldInfo | Column) -> Heading:
    """A schema field or table column as the dashboard heads it: its title in words (its name with spaces for
    "_" without one), its name and description for the tooltip."""
    return Heading(name=name, label=source.title or name.replace("_", " "), description=source.description or "")


def _applicable(shared: dict[str, FieldInfo], nested: str, own: dict[str, FieldInfo]) -> dict[str, FieldInfo]:
    """The settings of a config that apply to one variant: its shared fields, with the field ``nested``
    (the variant's own settings) replaced in place by ``own``, the fields the registry holds for it."""
    out: dict[str, FieldInfo] = {}
    for name, info in shared.items():
        out.update(own if name == nested else {name: info})
    return out


def crosscoder_settings(config: dict[str, Any], train: dict[str, Any] | None) -> list[CrosscoderSetting]:
    """The settings of a crosscoder that apply to its variant, as the variant registry says: those of
    its ``CrosscoderConfig`` (``group`` "architecture": the shared ones and its variant's own config)
    and, when the run recorded them, the ``TrainSettings`` it was trained with that the config does
    not repeat ("training": the shared ones and its variant's own settings; execution-only ones left
    out). A record of either shape is read: the variant's own nested, or flat (runs trained before)."""
    spec = variant(config["variant"])
    arch = _applicable(CrosscoderConfig.model_fields, VARIANT_CONFIG, spec.config.model_fields)
    training = _applicable(TrainSettings.model_fields, VARIANT_SETTINGS, spec.settings.model_fields)
    out = []
    for group, fields, record, nested in (("architecture", arch, config, VARIANT_CONFIG),
                                          ("training", training, train or {}, VARIANT_SETTINGS)):
        values = {**record, **(record.get(nested) or {})}
        for name, info in fields.items():
            if name not in values or (group == "training" and (name in arch or name in EXECUTION_FIELDS)):
                continue
            out.append(CrosscoderSetting(**dict(word(name, info)), group=group, value=values[name]))
    return out


def png_data_uri(path: Path) -> str | None:
    if path.stat().st_size > MAX_PNG_BYTES:
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figures(folder: Path, group: str) -> list[Figure]:
    out = []
    for path in sorted(folder.glob("*.png")) if folder.is_dir() else []:
        uri = png_data_uri(path)
        if uri:
            out.append(Figure(name=f"{group}/{path.name}", group=group, src=uri))
    return out


def _json_float(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


# ---------------------------------------------------------------------------------------
# scan/
# ---------------------------------------------------------------------------------------
def _accuracy(rows: list[dict]) -> dict[str, list[AccuracyPoint]]:
    out: dict[str, list[AccuracyPoint]] = {}
    for row in rows:
        out.setdefault(row["task"], []).append(AccuracyPoint(
            revision=row["revision"], step=row["step"], tokens=row["tokens"],
            label=format_tokens(row["tokens"]) if row["tokens"] else row["revision"],
            accuracy=_json_float(row["accuracy"]), n=row["n"], mean_m=_json_float(row["mean_m"])))
    for points in out.values():
        points.sort(key=lambda p: p.tokens if p.tokens is not None else p.step or 0)
    return out


def _dynamics(rows: list[dict]) -> DynamicsPanel:
    """Every float column of ``SCAN_DYNAMICS`` against tokens seen."""
    series = []
    for column in SCAN_DYNAMICS.columns:
        if column.type is not float:
            continue
        name = column.name
        points = [(r["tokens"], _json_float(r[name]), r["revision"]) for r in rows if _json_float(r[name]) is not None]
        if points:
            series.append(DynamicsSeries(name=name, label=column.description, points=points))
    ticks = [(r["tokens"], format_tokens(r["tokens"])) for r in rows]
    return DynamicsPanel(series=series, ticks=ticks, xlabel="tokens seen (log)")


def readable(run: Run, artifact: Artifact, missing: list[str], key: str | None = None) -> bool:
    """Whether ``artifact`` may be read: a finished stage wrote it and its files are as it wrote them
    (checked against the recorded checksums: a changed file is an :class:`ArtifactError`). Files without a
    record (a stage killed half-way) are not read; said in ``missing``."""
    if run.has(artifact, key):
        run.require(artifact, key)
        return True
    folder = artifact.where(run.dir, key)
    if folder.exists():
        missing.append(f"{folder.relative_to(run.root)}: `crosstime {artifact.writer}` did not finish there (no "
                       f"record in {run.dir.config_file.name}), so its files are not shown; re-run it")
    return False


@dataclass
class ScanPanels:
    """The overview's panels from ``scan/`` (empty where the scan or its file is absent)."""

    accuracy: dict[str, list[AccuracyPoint]] = field(default_factory=dict)
    similarity: list[SimilarityMatrix] = field(default_factory=list)
    suggestion: Suggestion | None = None
    dynamics: DynamicsPanel | None = None
    figures: list[Figure] = field(default_factory=list)


def scan_overview(run: Run) -> tuple[ScanPanels, ScanOutputs | None, list[str]]:
    """Accuracy curves, similarity matrices, the suggestion and the dynamics of ``scan/`` (and what was read)."""
    out = ScanPanels()
    missing: list[str] = []
    if not readable(run, SCAN, missing):
        missing.append("scan/ (run `crosstime scan`)")
        return out, None, missing
    scan = run.read(SCAN)
    if scan.accuracy is not None:
        out.accuracy = _accuracy(scan.accuracy)
    else:
        missing.append(f"scan/{SCAN_ACCURACY.file} (run `crosstime scan`)")
    if scan.similarity is not None:
        # named by revision, as the findings and the CLI name checkpoints (the page shows tokens seen on hover)
        labels = [str(x) for x in scan.similarity["revisions"].tolist()]
        out.similarity = [SimilarityMatrix(name=k, labels=labels, matrix=[[_json_float(v) for v in row] for row in
                                                                          scan.similarity[k].astype(float).tolist()])
                          for k in SIMILARITY_MATRICES]
    else:
        missing.append(f"scan/{SCAN_SIMILARITY}")
    out.suggestion = scan.suggestion  # the scan's marker: there whenever the scan is readable
    if scan.dynamics is not None:
        out.dynamics = _dynamics(scan.dynamics)
    else:
        missing.append(f"scan/{SCAN_DYNAMICS.file}")
    out.figures = _figures(run.dir.scan, "scan")
    return out, scan, missing


# ---------------------------------------------------------------------------------------
# evaluation.json and evaluation/
# ---------------------------------------------------------------------------------------
def evaluation_table(evaluation: Evaluation) -> EvaluationTable:
    """The per-checkpoint numbers as rows (one per :class:`CheckpointEvaluation` field that has a value
    somewhere, ``values [M]``) and the overall scalars of the summary (``value``)."""
    records = [c.model_dump() for c in evaluation.checkpoints]
    names = [n for n in CheckpointEvaluation.model_fields if n not in ("revision", "step", "tokens_seen")
             and any(r[n] is not None for r in records)]
    rows = [ValuesRow(**dict(word(n, CheckpointEvaluation.model_fields[n])), values=[r[n] for r in records])
            for n in names]
    summary = evaluation.summary.model_dump()
    overall = [ValueRow(**dict(word(k, EvaluationSummary.model_fields[k])), value=v) for k, v in summary.items()
               if not isinstance(v, list) and v is not None]
    return EvaluationTable(checkpoints=[r["revision"] for r in records], rows=rows, overall=overall)


def evaluation_features(rows: list[dict]) -> dict[int, FeatureTables]:
    """``evaluation/features.csv``'s rows as ``{feature: its columns}`` (``EVALUATION_COLUMNS``; no task yet)."""
    return {row["feature"]: FeatureTables(id=row["feature"], **{c: row[c] for c in EVALUATION_COLUMNS}, tasks={})
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


def _agreement(summary: AttributionSummary, revisions: list[str]) -> tuple[list[ValuesRow], list[ValueRow]]:
    """The faithfulness rows per estimator and checkpoint and the ablation correlations: per checkpoint
    (rows over ``revisions``), and pooled (scalars)."""
    per_checkpoint: list[ValuesRow] = []
    for estimator, per_revision in (summary.faithfulness or {}).items():
        for name in FAITHFULNESS_FIELDS:
            heading = word(name, Faithfulness.model_fields[name])
            heading.label = f"{estimator.upper()} vs exact ablation: {heading.label}"
            per_checkpoint.append(ValuesRow(**dict(heading), values=[
                per_revision[r].model_dump()[name] if r in per_revision else None for r in revisions]))
    pooled: list[ValueRow] = []
    ablation = summary.ablation_spearman
    fields = AblationSpearman.model_fields
    if ablation is not None:
        for name, values in (("ratio_vs_reldec", ablation.ratio_vs_reldec), ("ratio_vs_relie", ablation.ratio_vs_relie)):
            if values and set(values) <= set(revisions):
                per_checkpoint.append(ValuesRow(**dict(word(name, fields[name])),
                                                values=[_json_float(values.get(r)) for r in revisions]))
        for name, value in (("ratio_vs_reldec_mean", ablation.ratio_vs_reldec_mean),
                            ("ratio_vs_relie_mean", ablation.ratio_vs_relie_mean)):
            if value is not None:  # None: undefined (fewer than 3 features, or constant shares)
                heading = word(name, fields[name])
                heading.description = f"ablation_spearman.{name}"  # where in summary.json the number is
                pooled.append(ValueRow(**dict(heading), value=value))
    return per_checkpoint, pooled


def _confusion(folder: Path, revisions: list[str]) -> Confusion:
    """``confusion.csv`` as a matrix: ``relie_classes`` × ``reldec_classes`` ``counts``."""
    rows = ATTRIBUTION_CONFUSION.read(folder, revisions)
    relie = list(dict.fromkeys(r["relie_class"] for r in rows))
    reldec = list(dict.fromkeys(r["reldec_class"] for r in rows))
    counts = [[0] * len(reldec) for _ in relie]
    for r in rows:
        counts[relie.index(r["relie_class"])][reldec.index(r["reldec_class"])] += r["count"]
    return Confusion(relie_classes=relie, reldec_classes=reldec, counts=counts)


def attribution_overview(folder: Path, summary: AttributionSummary) -> AttributionOverview:
    """The summary's settings and scalars (``summary``), its per-checkpoint numbers (``per_checkpoint``:
    rows over its revisions; the faithfulness and ablation correlations among them, their pooled scalars
    in ``agreement``) and the confusion table as a matrix (``confusion``)."""
    fields = AttributionSummary.model_fields
    dumped = summary.model_dump(mode="json")
    revisions = summary.revisions
    per_checkpoint, agreement = _agreement(summary, revisions)
    info = AttributionOverview(
        revisions=revisions,
        summary=[ValueRow(**dict(word(k, fields[k])), value=v) for k, v in dumped.items()
                 if k != "task" and not isinstance(v, (dict, list))],
        per_checkpoint=[ValuesRow(**dict(word(k, fields[k])), values=[dumped[k].get(r) for r in revisions])
                        for k in PER_CHECKPOINT_SUMMARY] + per_checkpoint,
        agreement=agreement,
    )
    if (folder / ATTRIBUTION_CONFUSION.file).is_file():
        info.confusion = _confusion(folder, revisions)
    return info


def read_attribution(att: TaskAttribution, revisions: list[str],
                     features: dict[int, FeatureTables]) -> tuple[AttributionOverview, AblationTable | None]:
    """One task's attribution: per-feature values into ``features[i].tasks[task]``; returns its overview and
    its ablation table (None without ablation.csv)."""
    task, folder, summary = att.task, att.folder, att.summary
    _check_covered(folder / ATTRIBUTION_SUMMARY, summary.revisions, revisions)
    place = _placer(summary.revisions, revisions)
    for row in att.features:
        feat = features.setdefault(row["feature"], FeatureTables(id=row["feature"], tasks={}))
        entry = {c: place(row[c]) for c in TASK_CHECKPOINT_COLUMNS}
        entry.update({c: row[c] for c in TASK_SCALAR_COLUMNS})
        feat.tasks[task] = TaskEntry(**{k: v for k, v in entry.items() if v is not None})  # a value it lacks: absent
    info = attribution_overview(folder, summary)
    if att.joint is not None:  # joint ablation / restoration curves (written with --joint)
        info.joint = [JointRow(**row) for row in att.joint]
    ablation = None
    if att.ablation is not None:
        ablation = AblationTable(columns=[word(c.name, c) for c in ATTRIBUTION_ABLATION.columns],
                                 rows=[[r[c.name] for c in ATTRIBUTION_ABLATION.columns] for r in att.ablation])
        _attach_ablation(features, task, att.ablation, revisions, folder / ATTRIBUTION_ABLATION.file)
    return info, ablation


def _attach_ablation(features: dict[int, FeatureTables], task: str, rows: list[dict], revisions: list[str],
                     path: Path) -> None:
    """Per feature, the metrics of ``ablation.csv`` (one row per feature and checkpoint) as lists over ``revisions``."""
    metrics: dict[int, dict[str, list[float | None]]] = {}
    for r in rows:
        if r["checkpoint"] not in revisions:
            raise ArtifactError(f"{path} has a row for checkpoint {r['checkpoint']!r}, not one of the crosscoder's "
                                f"{revisions}; re-run `crosstime attribute`")
        feature = features.get(r["feature"])
        if feature is None or task not in feature.tasks:  # the ablation covers the reported features, features.csv's
            raise ArtifactError(f"{path} ablates feature {r['feature']}, which {ATTRIBUTION_FEATURES.file} beside it "
                                "does not report; re-run `crosstime attribute`")
        lists = metrics.setdefault(r["feature"], {c: [None] * len(revisions) for c in ABLATION_METRICS})
        for c in ABLATION_METRICS:
            lists[c][revisions.index(r["checkpoint"])] = _json_float(r[c])
    for i, lists in metrics.items():
        features[i].tasks[task].ablation = FeatureAblation(**lists)


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


def _distributions(features: dict[int, FeatureTables], tasks: list[str],
                   M: int) -> tuple[Distributions, dict[str, dict[str, int]]]:
    """Share histograms and class counts over every feature of the tables."""
    reldec = [f.reldec for f in features.values() if f.reldec]
    dist = Distributions(reldec=share_histograms(reldec, M) if reldec and M else None, n_reldec=len(reldec), relie={},
                         n_relie={})
    counts = {}
    if any(f.reldec_class for f in features.values()):
        counts["RelDec class"] = class_counts([f.reldec_class for f in features.values()])
    flags = [f.scaling_flag for f in features.values() if f.scaling_flag not in (None, "none")]
    if flags:  # latent scaling (evaluation/features.csv): shrinkage / decoupling
        counts["latent scaling flag"] = class_counts(flags)
    if any(f.trajectory for f in features.values()):
        counts["decoder-norm trajectory"] = class_counts([f.trajectory for f in features.values()])
    for task in tasks:
        rows = [f.tasks[task] for f in features.values() if task in f.tasks]
        relie = [t.relie for t in rows if t.relie]
        if relie and M:
            dist.relie[task] = share_histograms(relie, M)
            dist.n_relie[task] = len(relie)
        labels = [t.relie_class for t in rows]
        if any(labels):
            counts[f"RelIE class ({task})"] = class_counts(labels)
    return dist, counts


# ---------------------------------------------------------------------------------------
# the whole run
# ---------------------------------------------------------------------------------------
@dataclass
class Collected:
    """What :func:`collect` read: the report's ``revisions``, the ``overview`` panels, the
    attributed ``tasks``, every feature of the tables (``features``: id -> its columns) and what is ``missing``."""

    revisions: list[str]
    evaluation: Evaluation | None
    overview: Overview
    tasks: list[str]
    features: dict[int, FeatureTables]
    missing: list[str] = field(default_factory=list)


def _attributions(run: Run, missing: list[str]) -> dict[str, TaskAttribution]:
    """The attributions that finished (checked against their recorded checksums): the tasks with a record,
    and those with a folder but no record named in ``missing``."""
    tasks = sorted(set(run.dir.attribution_tasks()) | set(run.keys(ATTRIBUTION)))
    return {t: run.read(ATTRIBUTION, t) for t in tasks if readable(run, ATTRIBUTION, missing, t)}


def report_revisions(revisions: list[str] | None, evaluation: Evaluation | None,
                     attributions: dict[str, TaskAttribution]) -> list[str]:
    """The crosscoder's revisions: as given (the crosscoder was opened), else as the stages that used it recorded them."""
    if revisions is not None:
        return list(revisions)
    if evaluation is not None:
        return [c.revision for c in evaluation.checkpoints]
    return list(next(iter(attributions.values())).summary.revisions) if attributions else []


@dataclass
class EvaluationPanels:
    """What ``evaluation.json`` and ``evaluation/`` give the overview and the feature list."""

    table: EvaluationTable
    emergence: ReportEmergence
    figures: list[Figure]
    features: dict[int, FeatureTables]


def _evaluation(run: Run, revisions: list[str], missing: list[str]) -> EvaluationPanels:
    """``evaluation.json`` as tables and ``evaluation/features.csv`` as features."""
    evaluation, rows = run.evaluation.evaluation, run.evaluation.features
    covered = [c.revision for c in evaluation.checkpoints]
    if covered != revisions:
        raise ArtifactError(f"{run.dir.evaluation_file} evaluates checkpoints {covered}, but the run's crosscoder has "
                            f"{revisions}: it was computed for another crosscoder; re-run `crosstime evaluate`")
    # what evaluation/emergence.png draws (live features by onset), for the findings and the panel
    emergence = ReportEmergence(**dict(evaluation.decoder.emergence),
                                presence_fraction=evaluation.decoder.presence_fraction)
    panels = EvaluationPanels(evaluation_table(evaluation), emergence, [], {})
    if rows is None:
        missing.append(f"evaluation/{EVALUATION_FEATURES.file}: no RelDec classes or onsets")
        return panels
    panels.figures = _figures(run.dir.evaluation, "evaluation")
    panels.features = evaluation_features(rows)
    return panels


def collect(run: Run, revisions: list[str] | None = None) -> Collected:
    """Everything but the feature evidence (see the module docstring), read through the run reader.

    ``revisions``: the crosscoder's, when the caller opened it; ``None`` takes them from the stages' records.
    """
    checked: list[str] = []
    evaluation = run.evaluation.evaluation if readable(run, EVALUATION, checked) else None
    attributions = _attributions(run, checked)
    revisions = report_revisions(revisions, evaluation, attributions)
    panels_scan, scan, missing = scan_overview(run)
    missing += checked
    panels = _evaluation(run, revisions, missing) if evaluation is not None else None
    if evaluation is None:
        missing.append(f"{run.dir.evaluation_file.name} (run `crosstime evaluate`)")
    features = panels.features if panels is not None else {}
    figures = panels_scan.figures + (panels.figures if panels is not None else [])
    tasks = sorted(attributions)
    if not tasks:
        missing.append(f"attribution/TASK/{ATTRIBUTION_FEATURES.file} (run `crosstime attribute`): no IE or RelIE")
    ablation, attribution = {}, {}
    for task in tasks:
        attribution[task], table = read_attribution(attributions[task], revisions, features)
        if table is not None:
            ablation[task] = table
        figures += _figures(attributions[task].folder, f"attribution/{task}")
    distributions, counts = _distributions(features, tasks, len(revisions))
    # the second paper's analyses (Evolution panel), from what the scan wrote
    evolution = evolution_overview(scan, evaluation, missing)
    overview = Overview(accuracy=panels_scan.accuracy, similarity=panels_scan.similarity,
                        suggestion=panels_scan.suggestion, dynamics=panels_scan.dynamics, figures=figures,
                        ablation=ablation, attribution=attribution, distributions=distributions, class_counts=counts,
                        evolution=evolution)
    if panels is not None:  # absent without an evaluation
        overview.evaluation, overview.emergence = panels.table, panels.emergence
    return Collected(revisions, evaluation, overview, tasks, features, missing)


# ---------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------
def _asset(name: str) -> str:
    return resources.files("crosstime.report").joinpath(name).read_text(encoding="utf-8")


# The page's script is js/*.js (plain scripts, no modules: the page is one self-contained file), in this
# order: each file may use what an earlier one put on the shared namespace ``globalThis.CT`` (CT.format,
# CT.data, …). format.js, data.js and axes.js are pure (no DOM): node's tests (tests/report/js/) load
# them with require(), where each file is a module of its own; here each is wrapped in a function of its
# own, so its top-level names stay its own on the page too.
SCRIPTS = ("format.js", "data.js", "axes.js", "page.js", "dom.js", "charts.js", "shards.js", "overview.js",
           "features.js", "main.js")


def script() -> str:
    """The dashboard's one inline script: the files of ``js/`` in :data:`SCRIPTS` order, each wrapped in
    ``(function () { … })();``."""
    folder = resources.files("crosstime.report").joinpath("js")
    return "".join(f"(function () {{\n{folder.joinpath(name).read_text(encoding='utf-8')}\n}})();\n" for name in SCRIPTS)


def _script_safe(text: str) -> str:
    """JSON text made safe inside ``<script>`` (no ``</``, no U+2028/9 surprises); still the same JSON."""
    return text.replace("</", "<\\/").replace("<!--", "<\\u0021--").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _script_json(data: Any) -> str:
    """JSON-ready ``data`` as JSON safe inside ``<script type="application/json">`` (see :func:`_script_safe`)."""
    return _script_safe(json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False))


def clean(obj: Any) -> Any:
    """Replace NaN/inf by None everywhere (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def feature_json(feature: ReportFeature) -> str:
    """One feature as compact JSON (NaN as null), all its fields: those of the model's serializer, and its
    ``evidence`` (when set) serialized on its own and put last. Why apart: :class:`ReportFeature` is a sparse
    model whose serializer first turns the whole record into Python objects; the evidence, most of a feature's
    bytes, is serialized straight to JSON instead (about 2× faster for the whole report)."""
    if "evidence" not in feature.model_fields_set:
        return feature.model_dump_json()
    head = feature.model_dump_json(exclude={"evidence"})
    evidence = "null" if feature.evidence is None else feature.evidence.model_dump_json()
    return f'{head[:-1]}{"," if len(head) > 2 else ""}"evidence":{evidence}}}'


def feature_summary(feature: ReportFeature) -> dict:
    """What the feature list shows, sorts, filters and searches for one feature (``SUMMARY_KEYS``;
    per task only ``TASK_SUMMARY_KEYS``, per interpreted view ``INTERPRET_SUMMARY_KEYS``): the index of a
    sharded dashboard, small for every feature."""
    out = feature.model_dump(mode="json", include={*SUMMARY_KEYS, "tasks", "interpret"})
    out["tasks"] = {t: {k: v for k, v in values.items() if k in TASK_SUMMARY_KEYS}
                    for t, values in (out.get("tasks") or {}).items()}
    if "interpret" in out:  # set only on the features interpret explained
        out["interpret"] = {view: {k: v for k, v in values.items() if k in INTERPRET_SUMMARY_KEYS}
                            for view, values in (out["interpret"] or {}).items()}
    return clean(out)


def _fsync_all(paths: list[Path]) -> None:
    """Flush ``paths`` to disk, many at once: the file system commits them together (on this machine's ext4,
    2,700 shards in about 2 s instead of 30 s one after another)."""
    def one(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, paths))


def write_shards(features: list[ReportFeature], folder: Path, per_shard: int = FEATURES_PER_SHARD,
                 max_bytes: int = SHARD_BYTES, progress: bool = False) -> FeatureShards:
    """The features of a large dashboard as script files the page loads on demand (``<script src>``
    works from ``file://``, where Chromium blocks ``fetch``; and through ``crosstime serve``):

    - ``folder/index.js`` calls ``crosstimeIndex([summary, …])``: every feature's
      :func:`feature_summary`, in the data's (rank) order, for the list and the search;
    - ``folder/shard-KKKKK.js`` (:func:`~crosstime.artifacts.feature_shard_text`): the whole entries
      (:func:`feature_json`) of a run of consecutive ids, at most ``per_shard`` of them and about ``max_bytes``.

    These files are the features' only copy (data.json names them: :class:`~crosstime.artifacts.FeatureShards`,
    returned): the shards' ``path`` (relative to index.html), ``starts`` (the first id of each: a deep link finds
    its shard before the index is read), ``count`` and each file's ``sha256``. ``folder`` must not exist yet.
    ``progress``: a bar on a terminal only (a log gets nothing: the write takes a minute at most).
    """
    if [f.rank for f in features] != list(range(1, len(features) + 1)):
        raise ValueError("a report's features are in rank order, ranks 1, 2, …: read_report_data relies on it")
    starts: list[int] = []
    digests: list[str] = []
    batch: list[str] = []
    size = 0
    folder.mkdir(parents=True)

    def flush() -> None:
        # written in place, not each through a temporary name and its own fsync (most of the time of a large
        # report): the folder is new, and a shard cut short by a kill is caught by its sha256, which data.json
        # records only after every shard is on disk (_fsync_all)
        k = len(starts) - 1
        raw = feature_shard_text(k, batch).encode("utf-8")
        (folder / feature_shard_name(k)).write_bytes(raw)
        digests.append(hashlib.sha256(raw).hexdigest())

    bar = Bar(total=len(features), desc="writing the report", unit="feature", leave=False,
              disable=not (progress and sys.stderr.isatty()))
    for feature in sorted(features, key=lambda f: f.id):
        bar.update()
        text = _script_safe(feature_json(feature))  # one entry at a time: a large report is not copied whole
        if batch and (len(batch) >= per_shard or size + len(text) > max_bytes):
            flush()
            batch, size = [], 0
        if not batch:
            starts.append(feature.id)
        batch.append(text)
        size += len(text)
    if batch:
        flush()
    bar.close()
    _fsync_all([folder / feature_shard_name(k) for k in range(len(starts))])
    write_text(folder / SHARD_INDEX, f"crosstimeIndex({_script_json([feature_summary(f) for f in features])});\n")
    return FeatureShards(path=folder.name, starts=starts, count=len(features), sha256=digests)


def write_report(data: ReportData, folder: Path, embed_max: int = EMBED_MAX_FEATURES,
                 per_shard: int = FEATURES_PER_SHARD, progress: bool = False) -> Path:
    """Write ``folder/data.json`` and the dashboard ``folder/index.html`` (each atomically); returns the page.

    Up to ``embed_max`` features, data.json holds them all and the page is one self-contained file.
    Above, the features are written once, in shards beside the page (:func:`write_shards`), loaded when
    the list or a feature needs them (the page still opens from a file, no server needed); data.json and
    the page hold everything else and where the shards are (``feature_shards``). Read it back with
    :func:`~crosstime.artifacts.read_report_data`. Shards of an earlier report are removed first.
    ``progress``: a bar over the shards' features, on a terminal only."""
    shards = folder / REPORT_SHARDS
    if shards.exists():  # the shards of an earlier report would contradict this one
        shutil.rmtree(shards)
    if len(data.features) > embed_max:
        data = data.model_copy(update={"features": [],
                                       "feature_shards": write_shards(data.features, shards, per_shard,
                                                                      progress=progress)})
    write_model(data, folder / REPORT_DATA)
    return render(data, folder / REPORT_HTML)


def render(data: ReportData, path: str | Path) -> Path:
    """Write the dashboard page for ``data`` to ``path`` (atomically): the template with the data embedded
    (as data.json holds it: with a large report's ``feature_shards`` in place of its features).

    The template's placeholders are filled in one pass over the template, so a value that
    contains a placeholder's name (a ``--title`` of ``__DATA__``) is inserted as it is.
    The script is :func:`script`: ``js/*.js`` concatenated in :data:`SCRIPTS` order, each file in a
    function scope of its own, sharing the namespace ``globalThis.CT`` (see :data:`SCRIPTS`)."""
    fill = {
        "TITLE": html.escape(data.title or "crosstime report"),
        "CSS": _asset("dashboard.css"),
        "JS": script(),
        "DATA": _script_safe(data.model_dump_json()),
    }
    body = re.sub(r"__(TITLE|CSS|JS|DATA)__", lambda m: fill[m.group(1)], _asset("dashboard.html"))
    return write_text(path, body)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


__all__ = ["Collected", "class_counts", "clean", "collect", "evaluation_table", "feature_json", "feature_summary",
           "now", "render", "report_revisions", "script", "share_histograms", "write_report",
           "write_shards"]
