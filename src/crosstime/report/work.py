"""The report stage's work (declared in :mod:`crosstime.stages.report`): ``crosstime report RUN`` -> ``RUN/report/index.html``.

Reads whatever stages the run has (each optional; what is absent is listed in the report),
picks the reported features, gathers their evidence from the activation store and the
crosscoder, and writes:

    RUN/report/index.html       the self-contained dashboard (open it in any browser, offline)
    RUN/report/data.json        the data embedded in it (artifacts.ReportData; re-rendered by
                                `crosstime annotate --import`); read it with artifacts.read_report_data
    RUN/report/features/        only above 2048 listed features (--all-features on a wide crosscoder):
                                the features in shards the page loads as they are opened (still from
                                a file; or `crosstime serve RUN`), their only copy: data.json then holds
                                the rest and the shards' names and checksums; see dashboard.write_report
    RUN/report/annotations.json (written by `crosstime annotate --import`; read here)

The crosscoder is opened only with :func:`crosstime.crosscoder.load_for_store`, when the run
has both it and the activation store. The report's checkpoints are the crosscoder's
revisions (possibly a subset of the store's), their steps and tokens from the store.

The series. Token text needs the series' tokenizer (so does the logit lens, to leave out its
special tokens) and the logit lens its checkpoints' heads. The series is the one recorded in the
store unless ``series`` names another place; when it cannot be opened here the report stops with
an error naming the fixes (``--series``, or ``--logit-lens none --no-token-text``: the explicit
choice to report without it, shown as token ids).

A reported feature's entry in ``data.json`` (:class:`~crosstime.artifacts.ReportFeature`): ``id``,
``rank``; from evaluation/features.csv the ``EVALUATION_FEATURES`` columns (``frequency``,
``reldec_class``, ``trajectory``, ``onset``, ``peak``, ``offset``, ``reldec [M]``, ``norm [M]``, …);
``norm [M]`` (the crosscoder's decoder norms, normalised space) and, when the evaluation lacks the
feature, ``reldec``, ``reldec_class``, ``trajectory``, ``onset/peak/offset`` computed from them;
``tasks``: ``{task: {ie, ie_lo, ie_hi, relie, relie_lo, relie_hi, ie_abs, exact [M], relie_class,
task_frequency, selected_in, ablation: {metric: [M]}}}``; ``evidence`` (see
:func:`crosstime.evidence.feature_evidence`); ``description`` and ``annotation``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field

from crosstime.artifacts import (
    INTERPRET_ANALYSIS,
    INTERPRET_FIGURE,
    INTERPRET_REPORTED,
    ArtifactError,
    EvidenceMeta,
    FeatureEvidence,
    FeatureExplanation,
    FeatureTables,
    Figure,
    Overview,
    ReportCheckpoint,
    ReportCrosscoder,
    ReportCrosscoderConfig,
    ReportData,
    ReportFeature,
    ReportInterpretation,
    RunDir,
)
from crosstime.checkpoints import format_tokens
from crosstime.crosscoder import Crosscoder
from crosstime.errors import CrosstimeError
from crosstime.evidence import EvidenceConfig, feature_evidence, token_strings
from crosstime.ranking import N_REPORTED, ranked_features, reported_features
from crosstime.report.annotate import apply_annotations, read_annotations
from crosstime.report.dashboard import (
    Collected,
    collect,
    crosscoder_settings,
    now,
    png_data_uri,
    readable,
    write_report,
)
from crosstime.report.evolution import TWO_PHASE_PNG, caption_figures, two_phase_figure
from crosstime.report.findings import evolution_readings, findings, main_task
from crosstime.runs import ACTIVATIONS, CROSSCODER, INTERPRETATION, Interpretation, Run
from crosstime.series import CheckpointSeries, SeriesError, open_series
from crosstime.shares import classify_shares, relative_shares, trajectories
from crosstime.sites import final_norm, unembedding
from crosstime.stage import DEVICE_HELP, Device, StageConfig
from crosstime.store import ActivationStore


class ReportError(CrosstimeError):
    """A report that cannot be made as asked; the message names the input and the fix."""


class ReportConfig(StageConfig):
    """Settings of the report stage (shared by ``crosstime report`` and the Python API)."""

    stage: ClassVar[str] = "report"
    execution: ClassVar[frozenset[str]] = frozenset({"device", "batch_rows"})

    features: list[int] | None = Field(None, description="report exactly these feature ids (default: the top "
                                                         "n_features)")
    n_features: int = Field(N_REPORTED, ge=1, description="how many features to report when `features` is not given: "
                                                   "the largest Σ_m |IE_m| over tasks, else the largest decoder norms")
    all_features: bool = Field(False, description="list every live feature (non-zero decoder norm), the reported ones "
                                                  "first: all their evidence from the same one pass over the store "
                                                  "(memory ∝ (M + 1) × F × (n_top + sample_size)); above 2048 "
                                                  "features the dashboard keeps them in shards (crosstime serve RUN)")
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig, description="what evidence to gather per feature")
    series: str | None = Field(None, description="checkpoint series for the token text and the logit lens "
                                                 "(default: the one recorded in the activation store)")
    token_text: bool = Field(True, description="show tokens as text, with the series' tokenizer (false: token ids; "
                                               "with --logit-lens none the series is then not needed)")
    title: str | None = Field(None, description="title of the dashboard (default: crosstime — RUN's name)")
    device: Device = Field("auto", description=DEVICE_HELP)
    batch_rows: int = Field(2048, ge=1, description="token rows encoded at once (memory: batch_rows × F floats per "
                                                    "encode)")



@dataclass
class Inputs:
    """What the report reads, opened and checked before it writes anything."""

    run: RunDir
    store: ActivationStore | None
    model: Crosscoder | None
    base: Collected
    checkpoints: list[ReportCheckpoint]
    chosen: list[int]
    series: CheckpointSeries | None
    tokenizer: Any  # a transformers tokenizer, or None
    device: torch.device
    missing: list[str]
    crosscoder_record: dict[str, Any] | None  # the settings of the stage that wrote the crosscoder (train or import)
    interpretation: Interpretation | None  # interpret/'s output (None: the run has none)


# -- inputs ----------------------------------------------------------------------------------

def open_store_and_model(run: Run, missing: list[str]) -> tuple[ActivationStore | None, Crosscoder | None]:
    """The store and the crosscoder checked against it (each None when the run lacks it, listed in ``missing``)."""
    store = run.store if run.has(ACTIVATIONS) else None
    if store is not None:
        store.check_tokens()  # before any work
    if store is None:
        missing.append("activations/ (run `crosstime harvest`): no top contexts; the crosscoder is opened only "
                       "with the store it reads")
    if not run.has(CROSSCODER):
        missing.append("crosscoder/ (run `crosstime train`): no decoder norms, no top contexts")
        return store, None
    if store is None:
        return None, None
    model = run.crosscoder
    if model.inference_depends_on_batch:
        warnings.warn(f"{model.inference_rule}. The report encodes {run.root} in batches of whole contexts "
                      "(--batch-rows), so its evidence depends on the batching; data.json records this rule. Train "
                      "past threshold_start_step for a BatchTopK threshold (per-token features).", stacklevel=4)
    return store, model


def report_checkpoints(revisions: list[str], store: ActivationStore | None, base: Collected) -> list[ReportCheckpoint]:
    """``revision, step, tokens, label`` of the report's checkpoints: steps and tokens from the
    store's manifest, else from evaluation.json (a run whose activations were deleted)."""
    harvested = store.manifest["checkpoints"] if store is not None else {}
    evaluated = {c.revision: c for c in base.evaluation.checkpoints} if base.evaluation is not None else {}
    out = []
    for rev in revisions:
        step, tokens = None, None
        if rev in harvested:
            step, tokens = harvested[rev].get("step"), harvested[rev].get("tokens_seen")
        elif rev in evaluated:
            step, tokens = evaluated[rev].step, evaluated[rev].tokens_seen
        out.append(ReportCheckpoint(revision=rev, step=step, tokens=tokens, label=format_tokens(tokens) if tokens else rev))
    labels = [c.label for c in out]
    for c in out:  # two checkpoints with the same token label (e.g. step 0 and 1 both "0") show revisions
        if labels.count(c.label) > 1:
            c.label = c.revision
    return out


def choose_features(config: ReportConfig, run: Run, model: Crosscoder | None) -> list[int]:
    """The listed feature ids: the reported ones (``config.features``, else the default ranking's top
    ``n_features``: :func:`crosstime.ranking.reported_features`), then with ``all_features`` every other live
    feature of the crosscoder (a decoder norm above zero somewhere), by rank."""
    if config.features is not None:
        if model is not None:
            bad = [i for i in config.features if not 0 <= i < model.n_features]
            if bad:
                raise ReportError(f"--features {bad[:5]} out of range: the crosscoder has {model.n_features} features "
                                  f"(0..{model.n_features - 1})")
        reported = list(dict.fromkeys(int(i) for i in config.features))
    else:
        reported = reported_features(run, model, config.n_features)
    if not config.all_features or model is None:
        return reported
    live = (model.decoder_norms().detach().float().cpu().sum(dim=1) > 0).tolist()  # [F]
    shown = set(reported)
    return reported + [i for i in ranked_features(run, model) if live[i] and i not in shown]


def open_series_for(config: ReportConfig, store: ActivationStore, revisions: list[str]) -> tuple[CheckpointSeries | None, Any]:
    """The series and its tokenizer, as far as the settings need them (see the module docstring)."""
    lens, text = config.evidence.logit_lens != "none", config.token_text
    if not (lens or text):
        return None, None
    source = config.series or store.manifest["series"]["source"]
    fix = ("pass --series PATH where the series lives now, or report without it: --logit-lens none "
           "--no-token-text (token ids instead of text, no logit lens)")
    try:
        series = open_series(source, revisions=revisions)
        if lens:  # fail before any work when a checkpoint is not here (its config is cheap to read)
            for rev in revisions:
                series.load_config(rev)
        tokenizer = series.load_tokenizer(revisions[-1])  # token text, and the special tokens the logit lens leaves out
    except (SeriesError, OSError) as err:
        raise ReportError(f"the checkpoint series {source!r} cannot be opened here ({err}); {fix}") from err
    return series, tokenizer


def check_inputs(config: ReportConfig, opened: Run) -> Inputs:
    """Open and check everything the report reads, through the run reader; raises before anything is written."""
    run = opened.dir
    if not run.root.is_dir():
        raise ReportError(f"run directory {run.root} does not exist; run the pipeline first (e.g. `crosstime demo`)")
    missing: list[str] = []
    store, model = open_store_and_model(opened, missing)
    base = collect(opened, model.revisions if model is not None else None)
    checkpoints = report_checkpoints(base.revisions, store, base)
    chosen = choose_features(config, opened, model)
    series, tokenizer = None, None
    if store is not None and model is not None and chosen:
        series, tokenizer = open_series_for(config, store, model.revisions)
    interpretation = read_interpretation(opened, base.revisions, missing)
    return Inputs(run, store, model, base, checkpoints, chosen, series, tokenizer, opened.device,
                  missing + base.missing, opened.record(CROSSCODER), interpretation)


def read_interpretation(run: Run, revisions: list[str], missing: list[str]) -> Interpretation | None:
    """interpret/'s output when a finished ``crosstime interpret`` vouches for it (else None; a run without it
    is not listed in ``missing``: the report without explanations is as it was before the stage existed),
    checked to be of the report's checkpoints."""
    if not readable(run, INTERPRETATION, missing):
        return None
    found = run.read(INTERPRETATION)
    if found.analysis.revisions != revisions:
        raise ArtifactError(f"{run.dir.interpret / INTERPRET_ANALYSIS} interprets checkpoints "
                            f"{found.analysis.revisions}, but the run's crosscoder has {revisions}: it was computed "
                            "for another crosscoder; re-run `crosstime interpret`")
    return found


# -- the work --------------------------------------------------------------------------------

def feature_rows(chosen: list[int], base: Collected, model: Crosscoder | None) -> list[ReportFeature]:
    """One entry per reported feature (see the module docstring), in rank order; not yet annotated."""
    rows = []
    for k, i in enumerate(chosen):
        tables = base.features.get(i) or FeatureTables(id=i, tasks={})
        rows.append(ReportFeature(**{name: v for name, v in tables if name in tables.model_fields_set}, rank=k + 1,
                                  description=None, annotation=None))
    if model is None or not chosen:
        return rows
    norms = model.decoder_norms().detach().float().cpu()[torch.tensor(chosen, dtype=torch.long)]  # [K, M]
    shares = relative_shares(norms)
    classes = classify_shares(shares, model.revisions)
    traj = trajectories(norms)
    for k, entry in enumerate(rows):
        entry.norm = [round(float(v), 6) for v in norms[k]]
        if entry.reldec is None:  # not in evaluation/features.csv: from the crosscoder, with default thresholds
            entry.reldec, entry.reldec_class = [round(float(v), 6) for v in shares[k]], classes[k]
            entry.trajectory, entry.onset = traj.labels[k], int(traj.onset[k])
            entry.peak, entry.offset = int(traj.peak[k]), int(traj.offset[k])
    return rows


def _heads(series: CheckpointSeries):
    def load(revision: str):
        try:
            model = series.load_model(revision)
        except OSError as err:  # its config was there (checked before the work) but not its weights
            raise ReportError(f"checkpoint {revision} of {series.source!r} cannot be loaded here ({err}); pass "
                              "--series PATH where the series lives, or --logit-lens none") from err
        return final_norm(model), unembedding(model)

    return load


def attach_interpretation(rows: list[ReportFeature], overview: Overview, found: Interpretation | None,
                          folder: Path) -> None:
    """Each listed feature's explanations (:class:`~crosstime.artifacts.FeatureExplanation` by view, set only on
    the features interpret explained) and the overview's analysis with complexity.png embedded."""
    if found is None:
        return
    by_feature: dict[int, dict[str, FeatureExplanation]] = {}
    for r in found.explanations:
        by_feature.setdefault(r["feature"], {})[r["view"]] = FeatureExplanation(**{k: r[k] for k in INTERPRET_REPORTED})
    for entry in rows:
        if entry.id in by_feature:
            entry.interpret = by_feature[entry.id]
    path = folder / INTERPRET_FIGURE
    uri = png_data_uri(path) if path.is_file() else None
    figure = Figure(name=f"interpret/{INTERPRET_FIGURE}", group="interpret", src=uri) if uri else None
    overview.interpret = ReportInterpretation(analysis=found.analysis, figure=figure)


def gather_evidence(config: ReportConfig, inputs: Inputs, rows: list[ReportFeature]) -> dict[str, Any]:
    """Evidence of the reported features into ``rows``; returns the data's ``views``, ``vocab``, ``evidence_meta``."""
    if inputs.store is None or inputs.model is None or not inputs.chosen:
        return {"views": [], "vocab": {}, "evidence_meta": None}
    heads = _heads(inputs.series) if inputs.series is not None and config.evidence.logit_lens != "none" else None
    special = inputs.tokenizer.all_special_ids if inputs.tokenizer is not None else []
    ev = feature_evidence(inputs.store, inputs.model, inputs.chosen, config.evidence, device=inputs.device,
                          batch_rows=config.batch_rows, heads=heads, progress=config.progress, excluded_tokens=special)
    for entry in rows:  # feature_evidence's JSON-ready evidence, in the schema of data.json
        found = ev["features"].get(str(entry.id))
        entry.evidence = None if found is None else FeatureEvidence.model_validate(found)
    shows_text = config.token_text and inputs.tokenizer is not None
    vocab = token_strings(inputs.tokenizer, ev["token_ids"]) if shows_text else {}
    meta = EvidenceMeta(**{k: ev[k] for k in ("n_rows", "n_contexts", "contexts", "logit_lens_method", "config")},
                        token_text=shows_text, excluded_tokens=sorted(int(i) for i in special))
    return {"views": ev["views"], "vocab": vocab, "evidence_meta": meta}


def report_data(config: ReportConfig, inputs: Inputs) -> ReportData:
    """Everything the dashboard shows (``artifacts.ReportData``)."""
    rows = feature_rows(inputs.chosen, inputs.base, inputs.model)
    attach_interpretation(rows, inputs.base.overview, inputs.interpretation, inputs.run.interpret)
    evidence = gather_evidence(config, inputs, rows)
    model = inputs.model
    data = ReportData(
        title=config.title or f"crosstime — {inputs.run.root.resolve().name}",
        generated=now(),
        run=str(inputs.run.root.resolve()),
        checkpoints=inputs.checkpoints,
        tasks=inputs.base.tasks,
        main_task=None,  # below, once the features are annotated
        missing=inputs.missing,
        overview=inputs.base.overview,
        crosscoder=None if model is None else ReportCrosscoder(
            config=ReportCrosscoderConfig(**model.config.model_dump()), inference_rule=model.inference_rule,
            inference_depends_on_batch=model.inference_depends_on_batch,
            settings=crosscoder_settings(model.config.model_dump(mode="json"),
                                         inputs.crosscoder_record)),
        features=rows,
        n_features_total=model.n_features if model is not None else None,
        findings=[],  # below
        **evidence,
    )
    apply_annotations(data, read_annotations(inputs.run))
    data.main_task = main_task(data)
    data.findings = findings(data, n=4)
    evolution_figures(data, inputs.run)
    return data


def evolution_figures(data: ReportData, run: RunDir) -> None:
    """Draw ``report/two_phase.png`` (when the scan's dynamics are there) into the figures, and caption the
    Evolution figures with their readings."""
    figures = data.overview.figures
    path = two_phase_figure(data.overview.evolution, run.report / TWO_PHASE_PNG)
    uri = png_data_uri(path) if path is not None else None
    if uri:
        figures.insert(0, Figure(name=f"report/{TWO_PHASE_PNG}", group="report", src=uri))
    caption_figures(figures, evolution_readings(data))


def work(config: ReportConfig, inputs: Inputs, resolved: dict[str, Any]) -> tuple[Path, ReportData]:
    """The stage's work, inside the run's lock (:mod:`crosstime.stages.report` opens the inputs):
    data.json and the dashboard written; returns the HTML's path and the data."""
    data = report_data(config, inputs)
    out = write_report(data, inputs.run.report, progress=config.progress)
    # features that depend on the batch make the batch size part of what was shown: recorded beside the settings
    if inputs.model is not None and inputs.model.inference_depends_on_batch:
        resolved["batch_rows"] = config.batch_rows
    return out, data
