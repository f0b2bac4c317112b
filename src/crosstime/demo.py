"""The demo: the whole pipeline on the toy world, in one call.

    toy world ─► scan ─► pick checkpoints ─► harvest ─► train ─► evaluate ─► attribute ─► interpret ─► report
                                         └─► first paper's crosscoder: harvest ─► train ─► attribute (agreement)

Two crosscoders, because one cannot tell both papers' stories. The main one (RUN) spans seven
checkpoints from initialisation on, which the second paper's readings need (direction turn,
dimensionality, typed emergence); with its width it learns mostly single-noun and copy-marker
features, so the agreement tasks' top features after the transition are rarely number features.
The first paper's crosscoder (RUN/first, :data:`FIRST_RUN`) is a small dictionary over three
checkpoints around the agreement transition, trained briefly: too few features for one per noun,
so more of them carry the nouns' number. ``benchmarks/check_number_features.py`` measures it; on
the demo of 2026-12-07 (this toy world), of the agreement tasks' distinct top-10 features after the
transition, 7 of 30 fire selectively for the subject's number at its head noun (1 of 31 task-active
controls; the main crosscoder: 2 of 40). That is short of the half #24 asks for: pp_attractor's
and rc_attractor's top features act elsewhere than the head noun.

Every stage writes into one run directory and records its settings there once it has
finished (:mod:`crosstime.stage`). A stage that finished with this run's settings, on the
upstream outputs there are now, is reused, so re-running the demo only redoes what changed
or never finished (harvest and training also resume mid-way on their own).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from rich.console import Console

from crosstime import stage
from crosstime.artifacts import RunDir
from crosstime.attribution import top_features_line
from crosstime.crosscoder.logs import heldout_summary
from crosstime.evaluate import paper_row
from crosstime.report import evolution_lines, findings
from crosstime.runs import ATTRIBUTION, INTERPRETATION, SCAN, open_run
from crosstime.scan import phases_line, suggestion_line
from crosstime.stage import StageConfig
from crosstime.stages.attribute import AttributeConfig
from crosstime.stages.evaluate import EvaluateConfig
from crosstime.stages.harvest import HarvestConfig
from crosstime.stages.interpret import InterpretConfig
from crosstime.stages.report import ReportConfig
from crosstime.stages.scan import ScanConfig
from crosstime.stages.train import TrainConfig
from crosstime.tasks import TOY_TASKS
from crosstime.toy import PAIR_TYPES, ToyConfig, read_build, toy_world, toy_world_cached
from crosstime.toy.pretrain import CACHE_ENV

# The crosscoder's checkpoints by default: initialisation and one checkpoint per phase of the toy world
# (n-gram statistics by step128, previous-token copying and simple agreement by step384, induction by
# step640, agreement across attractors by step768-896: benchmarks/toy_phase_order.py), so rotation,
# dimensionality and typed emergence show.
EVOLUTION_REVISIONS = ("step0", "step64", "step128", "step384", "step640", "step768", "step1000")
# The first paper's crosscoder: the checkpoints around the agreement transition (simple agreement learned
# by step384; agreement across attractors below chance there and learned by step768-896), its run folder
# inside RUN, and the tasks it attributes (the agreement tasks: its story is their number features).
FIRST_REVISIONS = ("step384", "step768", "step1000")
FIRST_RUN = "first"
FIRST_TASKS = PAIR_TYPES


# The words of the numbers the demo prints, said once, where they first appear
GLOSSARY = {
    "evaluate": "  (L0: features active per token; Dead: features that never fired; ΔCE: how much the next-token "
                "loss rises when the crosscoder's reconstruction replaces the activations, per checkpoint)",
    "attribute": "  (IE: a feature's indirect effect on the task's metric, log p(wrong) − log p(right); |IE| its "
                 "size; #N is the feature's id)",
}


class DemoConfig(BaseModel):
    """Settings of ``crosstime demo`` (small enough for 2 CPU cores in a few minutes)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a typo or an inf is an error, not a setting

    run: Path = Field(Path("runs/demo"), description="run directory (re-running reuses finished stages)")
    layer: int = Field(0, ge=0, description="site: output of this decoder block (the toy model has 2; block 0 is mid-depth)")
    tokens: int = Field(200_000, gt=0, description="activation rows harvested per checkpoint for training")
    heldout_tokens: int = Field(20_000, gt=0, description="held-out activation rows per checkpoint (evaluation, "
                                                         "typed emergence)")
    n_features: int = Field(1024, gt=0, description="crosscoder dictionary size F (8 × d for the toy's d = 128)")
    train_steps: int = Field(1000, gt=0, description="crosscoder training steps")
    batch_size: int = Field(1024, gt=0, description="crosscoder training batch (rows)")
    lr: float = Field(1e-3, gt=0, description="crosscoder learning rate (the paper's 5e-5 is for 100k steps)")
    sparsity_coeff: float = Field(1.0, ge=0, description="L1 coefficient λ")
    revisions: list[str] = Field(default_factory=lambda: list(EVOLUTION_REVISIONS),
                                 description="checkpoints of the crosscoder (default: a spread over the toy world's "
                                             "phases, enough for the second paper's figures); an empty list takes the "
                                             "scan's suggested triplet")
    first_revisions: list[str] = Field(default_factory=lambda: list(FIRST_REVISIONS),
                                       description=f"checkpoints of the first paper's crosscoder (RUN/{FIRST_RUN}: "
                                                   "around the agreement transition, attributed on the agreement "
                                                   "tasks); an empty list trains none")
    first_n_features: int = Field(128, gt=0, description="the first paper's crosscoder's F (= d, fewer features than the "
                                                         "grammar's 196 noun forms, so it learns their number)")
    first_train_steps: int = Field(300, gt=0, description="the first paper's crosscoder's training steps (longer "
                                                          "training splits its number features into noun detectors)")
    tasks: list[str] = Field(default_factory=lambda: list(TOY_TASKS), description="toy tasks to attribute "
                                                                                  f"({', '.join(TOY_TASKS)})")
    attribution_pairs: int | None = Field(100, ge=1, description="pairs per task for attribution (None: all 300)")
    top_k: int = Field(10, ge=1, description="features reported per checkpoint and task")
    n_report_features: int = Field(60, ge=1, description="features shown in the dashboard")
    seed: int = Field(0, description="seed of every stage")
    progress: bool = Field(True, description="show progress bars")


    @field_validator("revisions", "first_revisions")
    @classmethod
    def _toy_revisions(cls, revisions: list[str]) -> list[str]:
        known = [f"step{s}" for s in ToyConfig().checkpoint_steps()]
        unknown = [r for r in revisions if r not in known]
        if unknown or len(set(revisions)) != len(revisions) or len(revisions) == 1:
            raise ValueError(f"the demo's crosscoder needs two or more distinct checkpoints of the toy world "
                             f"({', '.join(known)}), or none for the scan's suggestion")  # the error adds what was given
        return revisions

    @field_validator("tasks")
    @classmethod
    def _toy_tasks(cls, tasks: list[str]) -> list[str]:
        unknown = [t for t in tasks if t not in TOY_TASKS]
        if unknown or not tasks:  # checked now, not after minutes of scanning and training
            raise ValueError(f"the demo attributes the toy world's tasks: {', '.join(TOY_TASKS)}")  # the error adds what was given
        return tasks


class DemoResult(BaseModel):
    run: Path
    dashboard: Path
    toy_world: Path = Field(description="the toy world's folder (in the cache)")
    toy_built: bool = Field(description="whether this call built the toy world (else it was reused from the cache)")
    revisions: list[str]
    first_run: Path | None = Field(description=f"the first paper's crosscoder's run (RUN/{FIRST_RUN}; None: not trained)")
    first_revisions: list[str]
    timings: dict[str, float]
    reused: list[str]
    summaries: dict[str, list[str]] = Field(description="per stage, the lines printed after it: what it found")
    findings: list[str]


class _Stages:
    """Runs the demo's stages in order, timing each, reusing the finished ones, and saying after
    each what it found (read from the run, so a reused stage says it too)."""

    def __init__(self, console: Any, names: list[str]):
        self.console, self.names = console, names
        self.timings: dict[str, float] = {}
        self.reused: list[str] = []
        self.summaries: dict[str, list[str]] = {}

    def __call__(self, name: str, work: Callable[[Any], Any] | None, config: StageConfig | None = None,
                 say: Callable[[], list[str]] | None = None) -> Any:
        """Run step ``name``: ``work(config)``, or for a stage (``work`` None) its declared work."""
        work = work if work is not None else stage.declaration(config).work
        done = config is not None and stage.finished(config)
        self.console.rule(f"[bold]{self.names.index(name) + 1}/{len(self.names)} {name}" + (" (reused)" if done else ""))
        start = time.perf_counter()
        value = None if done else work(config)
        self.timings[name] = time.perf_counter() - start
        if done:
            self.reused.append(name)
        if say is not None:
            self.summaries[name] = say()
            for line in self.summaries[name]:
                self.console.print(line, markup=False, highlight=False)
        return value


def _toy_lines(path: Path, built: bool) -> list[str]:
    seconds = read_build(path)["timing"]["total_s"]
    how = f"built now in {seconds:.0f} s" if built else f"reused from the cache (built once in {seconds:.0f} s)"
    return [f"toy world: {path} ({how}; ${CACHE_ENV} sets where the cache is)"]


def _attribution_line(run: RunDir, task: str) -> list[str]:
    """The attribution stage's own one-line finding (from summary.json, so a reused stage says it too)."""
    return [top_features_line(open_run(run.root).read(ATTRIBUTION, task).summary)]


def _first_tasks(config: DemoConfig) -> list[str]:
    """The tasks the first paper's crosscoder attributes: the demo's agreement tasks (none without it)."""
    return [t for t in config.tasks if t in FIRST_TASKS] if config.first_revisions else []


def _first_paper(step: _Stages, config: DemoConfig, series: str) -> Path | None:
    """The first paper's crosscoder in RUN/first: harvest its checkpoints, train, attribute the agreement tasks."""
    if not config.first_revisions:
        return None
    run = RunDir(config.run / FIRST_RUN)
    run.root.mkdir(parents=True, exist_ok=True)
    common = {"run": run.root, "progress": config.progress}
    revisions = config.first_revisions
    step("first: harvest", None, HarvestConfig(**common, series=series, revisions=revisions, layer=config.layer,
                                                 tokens=config.tokens, heldout_tokens=config.heldout_tokens),
         lambda: [open_run(run.root).store.summary()])
    step("first: train", None, TrainConfig(**common, n_features=config.first_n_features, steps=config.first_train_steps,
                                            batch_size=config.batch_size, lr=config.lr,
                                            sparsity_coeff=config.sparsity_coeff, seed=config.seed,
                                            revisions=revisions, val_every=250, save_every=250),
         lambda: [line for line in [heldout_summary(run.crosscoder, revisions)] if line])
    for task in _first_tasks(config):
        step(f"first: attribute {task}", None,
             AttributeConfig(**common, task=task, top_k=config.top_k, seed=config.seed,
                             max_pairs=config.attribution_pairs),
             lambda task=task: _attribution_line(run, task))
    return run.root


def demo(config: DemoConfig | None = None, console: Any = None) -> DemoResult:
    """Run (or resume) the whole pipeline on the toy world; return where the dashboard is."""

    config = config or DemoConfig()
    console = console or Console()
    run = RunDir(config.run)
    run.root.mkdir(parents=True, exist_ok=True)
    common = {"run": run.root, "progress": config.progress}
    names = ["toy world", "scan", "harvest", "train", "evaluate", *[f"attribute {t}" for t in config.tasks], "interpret", "report",
             *(["first: harvest", "first: train"] if config.first_revisions else []),
             *[f"first: attribute {t}" for t in _first_tasks(config)]]
    step = _Stages(console, names)

    cached = toy_world_cached()
    world = step("toy world", lambda _: toy_world(progress=config.progress))
    step.summaries["toy world"] = _toy_lines(world, built=not cached)
    console.print(step.summaries["toy world"][0], markup=False, highlight=False)
    series = str(world)
    step("scan", None, ScanConfig(**common, series=series, layer=config.layer, seed=config.seed),
         lambda: [phases_line(open_run(run.root).read(SCAN).phases),
                  suggestion_line(open_run(run.root).read(SCAN).suggestion)])
    revisions = config.revisions or open_run(run.root).read(SCAN).suggestion.revisions
    step("harvest", None, HarvestConfig(**common, series=series, revisions=revisions, layer=config.layer,
                                          tokens=config.tokens, heldout_tokens=config.heldout_tokens),
         lambda: [open_run(run.root).store.summary()])
    step("train", None, TrainConfig(**common, n_features=config.n_features, steps=config.train_steps,
                                     batch_size=config.batch_size, lr=config.lr, sparsity_coeff=config.sparsity_coeff,
                                     seed=config.seed, revisions=revisions, val_every=250, save_every=250),
         lambda: [line for line in [heldout_summary(run.crosscoder, revisions)] if line])
    step("evaluate", None, EvaluateConfig(**common, seed=config.seed),
         lambda: [f"{', '.join(revisions)}: " + paper_row(open_run(run.root).evaluation.evaluation), GLOSSARY["evaluate"]])
    for task in config.tasks:
        step(f"attribute {task}", None, AttributeConfig(**common, task=task, top_k=config.top_k, seed=config.seed,
                                                            max_pairs=config.attribution_pairs),
             lambda task=task: _attribution_line(run, task) + ([GLOSSARY["attribute"]] if task == config.tasks[0] else []))
    # explanations from the toy world's own types (no LLM): complexity against emergence, the scores' baseline;
    # before the report, which shows them
    step("interpret", None, InterpretConfig(**common, features="all-live", explainer="rules", seed=config.seed),
         lambda: [open_run(run.root).read(INTERPRETATION).analysis.reading])
    report_cfg = ReportConfig(**common, n_features=config.n_report_features, title="crosstime demo: toy world")
    step("report", None, report_cfg, lambda: evolution_lines(run.root))
    first = _first_paper(step, config, series)
    return DemoResult(run=run.root, dashboard=report_cfg.output(), toy_world=world, toy_built=not cached,
                      revisions=revisions, first_run=first, first_revisions=config.first_revisions,
                      timings=step.timings, reused=step.reused, summaries=step.summaries,
                      findings=findings(run.root))
