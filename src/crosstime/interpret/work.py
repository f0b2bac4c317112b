"""The interpret stage's work: features -> evidence -> explanations -> scores -> analysis, into RUN/interpret/.

1. The features (``--features``): the report's default list (:func:`crosstime.ranking.reported_features`,
   its top ``n_features``, else the report's default 100; the report's own output is not read: the report
   reads this stage's), the attribution's top
   ones by Σ_m |IE_m| summed over tasks, every feature alive in evaluation/features.csv, or ids.
2. Their views: the joint one, and (``per_checkpoint``) each checkpoint where features.csv calls the
   feature ``present``.
3. Evidence per (feature, view) (:mod:`crosstime.interpret.evidence`), an explanation per item by
   the explainer (``rules``: :mod:`crosstime.interpret.rules`; ``llm``: :mod:`crosstime.interpret.llm`),
   detection and fuzzing scores by the judge on held-out contexts, and the same for a shuffled
   explanation of another feature of the view (the chance baseline: :mod:`crosstime.interpret.scoring`).
4. explanations.csv (one row per feature and view), analysis.json (:mod:`crosstime.interpret.analysis`)
   and complexity.png.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crosstime.artifacts import (
    INTERPRET_ANALYSIS,
    INTERPRET_EXPLANATIONS,
    INTERPRET_FIGURE,
    INTERPRET_LLM_CACHE,
    LLMIssue,
    LLMUsage,
    write_model,
)
from crosstime.crosscoder import Crosscoder
from crosstime.errors import CrosstimeError
from crosstime.evidence import ALL, token_strings
from crosstime.interpret.analysis import analyse
from crosstime.interpret.backends import Backend, OpenAICompatible, TransformersChat
from crosstime.interpret.cache import Prices
from crosstime.interpret.config import InterpretConfig
from crosstime.interpret.contracts import Explainer, FeatureEvidence, Judge
from crosstime.interpret.evidence import Source, gather
from crosstime.interpret.llm import LLMExplainer, LLMJudge, pair_for
from crosstime.interpret.plots import plot_complexity
from crosstime.interpret.rules import RuleExplainer, RuleJudge
from crosstime.interpret.scoring import score, shuffled
from crosstime.ranking import N_REPORTED, reported_features
from crosstime.runs import ATTRIBUTION, Run
from crosstime.series import SeriesError, open_series
from crosstime.store import ActivationStore


class InterpretError(CrosstimeError):
    """Features that cannot be interpreted as asked."""


@dataclass
class Inputs:
    """Everything checked before any work."""

    store: ActivationStore
    model: Crosscoder
    features: dict[int, dict[str, Any]]  # evaluation/features.csv rows by id
    chosen: list[int]
    peaks: dict[int, int] | None  # feature -> RelIE peak checkpoint index (None: no attribution)
    revisions: list[str]
    source: Source
    boundary: str | None
    device: Any
    backend: Backend | None  # --explainer llm: the endpoint or local model, made (and its key checked) up front


def top_ie(run: Run) -> list[int]:
    """Every feature an attribution lists, by Σ over tasks and checkpoints of |IE|, largest first."""
    total: dict[int, float] = {}
    for task in run.tasks:
        for row in run.attributions[task].features:
            total[row["feature"]] = total.get(row["feature"], 0.0) + sum(abs(v) for v in row["ie"] if v is not None)
    return sorted(total, key=lambda i: (-total[i], i))


def relie_peaks(run: Run, revisions: Sequence[str]) -> dict[int, int] | None:
    """Feature -> index (in ``revisions``) of the checkpoint where its RelIE is largest, in the task where
    its Σ|IE| is largest; None without an attribution."""
    if not run.tasks:
        return None
    best: dict[int, tuple[float, int]] = {}
    for task in run.tasks:
        found = run.attributions[task]
        for row in found.features:
            relie = [-1.0 if v is None else v for v in row["relie"]]
            mass = sum(abs(v) for v in row["ie"] if v is not None)
            rev = found.summary.revisions[int(np.argmax(relie))]
            if rev in revisions and mass > best.get(row["feature"], (-1.0, 0))[0]:
                best[row["feature"]] = (mass, list(revisions).index(rev))
    return {i: at for i, (_, at) in best.items()}


def choose(config: InterpretConfig, run: Run, features: dict[int, dict[str, Any]], n_total: int) -> list[int]:
    """The feature ids ``--features`` names, at most ``n_features``."""
    ids = config.feature_ids()
    if ids is None and config.features == "reported":  # the report's default list, n as the report's default
        return reported_features(run, run.crosscoder, config.n_features or N_REPORTED)
    if ids is None and config.features == "top-ie":
        if not run.tasks:
            run.require(ATTRIBUTION, "TASK")
        ids = top_ie(run)
    elif ids is None:
        ids = [i for i, row in sorted(features.items()) if row["alive"]]
    bad = [i for i in ids if not 0 <= i < n_total]
    if bad:
        raise InterpretError(f"--features {bad[:5]} out of range: the crosscoder has {n_total} features")
    return ids[: config.n_features] if config.n_features is not None else ids


def open_source(store: ActivationStore, revisions: list[str]) -> tuple[Source, str | None]:
    """The series' tokenizer and labeller, and the text of the context-start token (None: no common one)."""
    where = store.manifest["series"]["source"]
    try:
        series = open_series(where, revisions=revisions)
        tokenizer = series.load_tokenizer(revisions[-1])
        labeller = series.labeller()
    except (SeriesError, OSError) as err:
        raise InterpretError(f"the checkpoint series {where!r} cannot be opened here ({err}); its tokenizer "
                             "writes the contexts' text") from err
    starts = np.unique(np.asarray(store.tokens[:, 0]))
    boundary = token_strings(tokenizer, [int(starts[0])])[str(int(starts[0]))] if len(starts) == 1 else None
    return Source(tokenizer, labeller), boundary


def check_inputs(config: InterpretConfig, run: Run) -> Inputs:
    """Every input checked before any work (the run reader checked the required artifacts)."""
    store, model = run.store, run.crosscoder
    evaluation = run.evaluation
    if evaluation.features is None:
        raise InterpretError(f"{run.dir.evaluation} has no features.csv; re-run `crosstime evaluate {config.run}`")
    features = {row["feature"]: row for row in evaluation.features}
    revisions = [c.revision for c in evaluation.evaluation.checkpoints]
    chosen = choose(config, run, features, model.n_features)
    source, boundary = open_source(store, list(model.revisions))
    backend = llm_backend(config, run.device) if config.explainer == "llm" else None
    return Inputs(store, model, features, chosen, relie_peaks(run, revisions), revisions, source, boundary,
                  run.device, backend)


def views_of(config: InterpretConfig, inputs: Inputs) -> dict[int, list[str]]:
    """Feature -> its views: the joint one, then the checkpoints where it is present."""
    out = {}
    for i in inputs.chosen:
        row = inputs.features.get(i)
        present = [] if row is None or not config.per_checkpoint else [
            rev for rev, p in zip(inputs.revisions, row["presence"]) if p == "present"]
        out[i] = [ALL, *present]
    return out


def explainer_and_judge(config: InterpretConfig, inputs: Inputs) -> tuple[Explainer, Judge]:
    if config.explainer == "rules":
        types = {i: row["feature_type"] for i, row in inputs.features.items() if row["feature_type"]}
        return RuleExplainer(types), RuleJudge(inputs.boundary)
    return pair_for(inputs.backend, config.rundir.interpret / INTERPRET_LLM_CACHE, concurrency=config.llm_concurrency)


def llm_backend(config: InterpretConfig, device: Any) -> Backend:
    """The endpoint (its key variable checked), or the local chat model loaded on the stage's device."""
    if config.llm_backend == "transformers":
        return TransformersChat(config.llm_model, device=str(device))
    return OpenAICompatible(config.llm_url, config.llm_model, api_key_env=config.llm_key_env,
                            timeout=config.llm_timeout)


def llm_usage(config: InterpretConfig, explainer: LLMExplainer, judge: LLMJudge) -> LLMUsage:
    """Tokens, cost and unparsed replies of ``--explainer llm``: every cached reply of this backend's model
    (earlier runs' too: what these explanations cost), none of another model's that shares the cache."""
    prices = Prices(config.llm_price_prompt, config.llm_price_completion)
    summary = explainer.client.summary(prices)
    row = summary["models"].get(explainer.client.backend.model_id, {
        "replies": 0, "prompt_tokens": 0, "completion_tokens": 0, "replies_without_usage": 0, "served_by": []})
    issues = [LLMIssue(task="explain", **i) for i in explainer.issues] + [LLMIssue(**i) for i in judge.issues]
    return LLMUsage(url=config.llm_url, model=config.llm_model, served_by=row["served_by"], replies=row["replies"],
                    replies_without_usage=row["replies_without_usage"], prompt_tokens=row["prompt_tokens"],
                    completion_tokens=row["completion_tokens"],
                    cost_usd=prices.cost(row["prompt_tokens"], row["completion_tokens"]), cost_known=prices.known,
                    sent=summary["session"]["sent"], cached=summary["session"]["cached"],
                    retries=summary["session"]["retries"], corrupt_entries=summary["corrupt_entries"], issues=issues)


def rows_of(evidence: list[FeatureEvidence], explainer: Explainer, judge: Judge, inputs: Inputs,
            seed: int) -> list[dict[str, Any]]:
    """One explanations.csv row per evidence item: its explanation, and the scores of it and of a shuffled one."""
    explanations = explainer.explain(evidence)
    baseline = shuffled(explanations, seed)
    rows = []
    for ev, e, other in zip(evidence, explanations, baseline, strict=True):
        own = score(judge, e, ev) if e.text else None
        chance = score(judge, other, ev) if other.text else None
        row = inputs.features.get(ev.feature)
        rows.append({
            "feature": ev.feature, "view": ev.checkpoint or ALL, "feature_type": row["feature_type"] if row else None,
            "explanation": e.text, "complexity": e.complexity, "source": e.source,
            "detection": own.detection if own else None, "fuzzing": own.fuzzing if own else None,
            "detection_shuffled": chance.detection if chance else None,
            "fuzzing_shuffled": chance.fuzzing if chance else None,
            "n_positive": own.n_positive if own else None, "n_negative": own.n_negative if own else None,
            "n_unanswered": own.n_unanswered if own else None})
    return rows


def work(config: InterpretConfig, inputs: Inputs) -> Any:
    """Write RUN/interpret/ (see the module docstring); returns the analysis."""
    evidence = gather(inputs.store, inputs.model, views_of(config, inputs), config, inputs.source, inputs.device)
    explainer, judge = explainer_and_judge(config, inputs)
    rows = rows_of(evidence, explainer, judge, inputs, config.seed)
    onsets = {i: row["onset"] for i, row in inputs.features.items() if row["onset"] is not None}
    analysis = analyse(rows, onsets, inputs.peaks, inputs.revisions, config.explainer, config.n_boot, config.seed)
    if config.explainer == "llm":  # explainer_and_judge made an LLMExplainer and LLMJudge
        analysis = analysis.model_copy(update={"llm": llm_usage(config, explainer, judge)})
    folder = config.rundir.interpret
    folder.mkdir(parents=True, exist_ok=True)
    INTERPRET_EXPLANATIONS.write(folder, rows, [])
    joint = [r for r in rows if r["view"] == ALL and r["complexity"] is not None]
    plot_complexity(analysis, [(r["complexity"], onsets[r["feature"]]) for r in joint if r["feature"] in onsets],
                    [(r["complexity"], inputs.peaks[r["feature"]]) for r in joint
                     if inputs.peaks and r["feature"] in inputs.peaks], folder / INTERPRET_FIGURE)
    write_model(analysis, folder / INTERPRET_ANALYSIS)  # last: the marker
    return analysis
