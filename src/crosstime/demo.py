"""The demo: the whole pipeline on the toy world, in one call.

    toy world ─► scan ─► pick checkpoints ─► harvest ─► train ─► evaluate ─► attribute ─► report

Every stage writes into one run directory. A stage whose output exists and whose recorded
settings (``config.yaml``) equal this run's is reused, so re-running the demo only redoes
what changed or never finished (harvest and training also resume mid-way on their own).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from crosstime.rundir import RunDir

TOY_TASKS = ["simple_agreement", "pp_attractor", "rc_attractor", "irregular_plural"]


class DemoConfig(BaseModel):
    """Settings of ``crosstime demo`` (small enough for 2 CPU cores in a few minutes)."""

    out: Path = Field(Path("runs/demo"), description="run directory")
    layer: int = Field(0, ge=0, description="site: output of this decoder block (the toy model has 2; block 0 is mid-depth)")
    tokens: int = Field(400_000, gt=0, description="activation rows harvested per checkpoint (plus 5% held out)")
    n_features: int = Field(1024, gt=0, description="crosscoder dictionary size F (8 × d for the toy's d = 128)")
    train_steps: int = Field(1500, gt=0, description="crosscoder training steps")
    batch_size: int = Field(1024, gt=0, description="crosscoder training batch (rows)")
    lr: float = Field(1e-3, gt=0, description="crosscoder learning rate (the paper's 5e-5 is for 100k steps)")
    sparsity_coeff: float = Field(1.0, ge=0, description="L1 coefficient λ")
    tasks: list[str] = Field(default_factory=lambda: list(TOY_TASKS), description="tasks to attribute")
    attribution_pairs: int | None = Field(None, ge=1, description="pairs per task for attribution (default: all)")
    top_k: int = Field(10, ge=1, description="features reported per checkpoint and task")
    n_report_features: int = Field(60, ge=1, description="features shown in the dashboard")
    seed: int = 0
    progress: bool = True


class DemoResult(BaseModel):
    run: Path
    dashboard: Path
    revisions: list[str]
    timings: dict[str, float]
    reused: list[str]
    findings: list[str]


def _same_settings(run: RunDir, stage: str, config: BaseModel) -> bool:
    return run.read_config().get(stage) == config.model_dump(mode="json")


def demo(config: DemoConfig | None = None, console: Any = None) -> DemoResult:
    """Run (or resume) the whole pipeline on the toy world; return where the dashboard is."""
    from rich.console import Console

    from crosstime.attribution.stage import AttributeConfig, attribute
    from crosstime.crosscoder import TrainConfig
    from crosstime.crosscoder import train as train_crosscoder
    from crosstime.evaluate import EvaluateConfig, evaluate
    from crosstime.report import ReportConfig, report
    from crosstime.report.findings import findings
    from crosstime.scan import ScanConfig, scan
    from crosstime.store import HarvestConfig, harvest
    from crosstime.toy import toy_world

    config = config or DemoConfig()
    console = console or Console()
    run = RunDir(config.out)
    run.root.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    reused: list[str] = []
    stages = ["toy world", "scan", "harvest", "train", "evaluate", *[f"attribute {t}" for t in config.tasks], "report"]

    def stage(name: str, work: Callable[[], Any], key: str | None = None, settings: BaseModel | None = None,
              output: Path | None = None) -> Any:
        """Run one stage, or reuse it when its output exists and was made with these settings."""
        done = output is not None and output.exists() and settings is not None and _same_settings(run, key, settings)
        index = stages.index(name) + 1
        console.rule(f"[bold]{index}/{len(stages)} {name}" + (" (reused)" if done else ""))
        start = time.perf_counter()
        value = None if done else work()
        timings[name] = time.perf_counter() - start
        if done:
            reused.append(name)
        elif settings is not None:
            run.save_stage_config(key, settings)  # only once the stage has finished
        return value

    series_path = stage("toy world", toy_world)

    scan_cfg = ScanConfig(series=str(series_path), out=run.root, layer=config.layer, seed=config.seed,
                          progress=config.progress)
    stage("scan", lambda: scan(scan_cfg), "scan", scan_cfg, run.scan / "suggestion.json")

    revisions = json.loads((run.scan / "suggestion.json").read_text())["revisions"]
    console.print(f"checkpoints chosen from the scan's suggestion: [bold]{', '.join(revisions)}[/bold]")

    harvest_cfg = HarvestConfig(series=str(series_path), revisions=revisions, layer=config.layer,
                                tokens=config.tokens, out=str(run.activations), progress=config.progress)
    # harvest resumes on its own (a finished store is checked, not redone)
    stage("harvest", lambda: harvest(harvest_cfg), "harvest", harvest_cfg)

    train_cfg = TrainConfig(n_features=config.n_features, steps=config.train_steps, batch_size=config.batch_size,
                            lr=config.lr, sparsity_coeff=config.sparsity_coeff, seed=config.seed,
                            out=str(run.crosscoder), revisions=revisions, val_every=250, save_every=250,
                            progress=config.progress)
    stage("train", lambda: train_crosscoder(str(run.activations), train_cfg), "train", train_cfg,
          run.crosscoder / "model.safetensors")

    eval_cfg = EvaluateConfig(run=str(run.root), seed=config.seed, progress=config.progress)
    stage("evaluate", lambda: evaluate(eval_cfg), "evaluate", eval_cfg, run.evaluation_file)

    for task in config.tasks:
        att_cfg = AttributeConfig(run=run.root, task=task, top_k=config.top_k, max_pairs=config.attribution_pairs,
                                  seed=config.seed, progress=config.progress)
        stage(f"attribute {task}", lambda c=att_cfg: attribute(c), f"attribute/{task}", att_cfg,
              run.attribution(task) / "features.csv")

    report_cfg = ReportConfig(run=str(run.root), n_features=config.n_report_features, title="crosstime demo: toy world",
                              progress=config.progress)
    dashboard = stage("report", lambda: report(report_cfg))
    dashboard = Path(dashboard) if dashboard else run.report / "index.html"
    return DemoResult(run=run.root, dashboard=dashboard, revisions=revisions, timings=timings, reused=reused,
                      findings=findings(run.root))
