"""The evaluate stage, declared: RUN/activations and RUN/crosscoder -> RUN/evaluation.json and RUN/evaluation/.

    from crosstime.stages.evaluate import EvaluateConfig, evaluate
    result = evaluate(EvaluateConfig(run="runs/toy"))      # also: crosstime evaluate runs/toy

The work is :mod:`crosstime.evaluate` (its module docstring says what is measured).
"""

from __future__ import annotations

import time

from rich.console import Console

from crosstime import stage
from crosstime.artifacts import Evaluation
from crosstime.distributed import resolve_device
from crosstime.evaluate import EvaluateConfig, format_table, paper_row
from crosstime.evaluate.work import Inputs, check_store, make_plan, warn_if_batch_dependent, work
from crosstime.runs import ACTIVATIONS, CROSSCODER, EVALUATION, Run, open_inputs
from crosstime.series import open_series
from crosstime.stage import Stage

__all__ = ["EVALUATE", "EvaluateConfig", "evaluate"]


def checked_inputs(config: EvaluateConfig, run: Run) -> Inputs:
    """Every input checked before any work: the store (with a held-out split), the plan, the crosscoder
    (checked against the store by the run reader) and, when contexts are spliced, the series holding
    the crosscoder's checkpoints."""
    store = run.store
    check_store(store)
    plan = make_plan(config, store)
    model = run.crosscoder
    series = None
    if len(plan.down_contexts):
        series = open_series(store.manifest["series"]["source"], revisions=model.revisions)
    return Inputs(store, model, plan, series, run.device)


def evaluate(config: EvaluateConfig) -> Evaluation:
    """Run the evaluate stage; returns what it wrote to ``RUN/evaluation.json``."""
    start = time.perf_counter()
    inputs = checked_inputs(config, open_inputs(config, device=resolve_device(config.device)))
    warn_if_batch_dependent(config, inputs.model)
    with stage.writing(config) as resolved:
        result = work(config, inputs, start)
        resolved.update(revisions=result.settings.revisions, inference_rule=result.settings.inference_rule)
    return result


def show(result: Evaluation, config: EvaluateConfig) -> None:
    console = Console()
    console.print(format_table(result))
    console.print(paper_row(result))
    if result.summary.dead_window_tokens < config.dead_tokens:
        console.print(f"[yellow]note: the store has only {result.summary.dead_window_tokens:,} tokens to count dead "
                      f"latents over (--dead-tokens {config.dead_tokens:,})[/yellow]")
    console.print(f"wrote {config.rundir.evaluation_file} and {config.rundir.evaluation}/")


EVALUATE = stage.register(Stage(
    name="evaluate", config=EvaluateConfig, work=evaluate, reads=(ACTIVATIONS, CROSSCODER), writes=(EVALUATION,),
    show=show, help="Reconstruction (EV, L0, dead), splicing (ΔCE, KL) per checkpoint, RelDec classes and emergence; "
                    "feature dimensionality, the direction turn, emergence by feature type."))
