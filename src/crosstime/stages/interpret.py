"""The interpret stage, declared: RUN/activations, RUN/crosscoder, RUN/evaluation -> RUN/interpret/.

    from crosstime.stages.interpret import InterpretConfig, interpret
    interpret(InterpretConfig(run="runs/toy", features="all-live"))   # also: crosstime interpret runs/toy

Explanations of features (``--explainer rules``: the toy world's ground truth; ``llm``: any
OpenAI-compatible endpoint), their detection and fuzzing scores, and complexity against emergence.
The work is :mod:`crosstime.interpret` (docs/interpret.md).
"""

from __future__ import annotations

from rich.console import Console

from crosstime import stage
from crosstime.artifacts import InterpretAnalysis
from crosstime.distributed import resolve_device
from crosstime.interpret.config import InterpretConfig
from crosstime.interpret.work import check_inputs, work
from crosstime.runs import (
    ACTIVATIONS,
    ATTRIBUTION,
    CROSSCODER,
    EVALUATION,
    INTERPRETATION,
    open_inputs,
)
from crosstime.stage import Stage

__all__ = ["INTERPRET", "InterpretConfig", "interpret"]


def interpret(config: InterpretConfig) -> InterpretAnalysis:
    """Run the interpret stage; returns what it wrote to ``RUN/interpret/analysis.json``."""
    inputs = check_inputs(config, open_inputs(config, device=resolve_device(config.device)))
    with stage.writing(config):
        return work(config, inputs)


def show(result: InterpretAnalysis, config: InterpretConfig) -> None:
    console = Console()
    console.print(result.reading)
    for row in result.table:
        console.print(f"complexity {row.complexity}: {row.n} features, onset mean {row.onset_mean} median "
                      f"{row.onset_median}, detection {row.detection_mean} (shuffled {row.detection_shuffled_mean})")
    console.print(f"wrote {config.rundir.interpret}/")


INTERPRET = stage.register(Stage(
    name="interpret", config=InterpretConfig, work=interpret, reads=(ACTIVATIONS, CROSSCODER, EVALUATION),
    optional_reads=(ATTRIBUTION,), writes=(INTERPRETATION,), show=show,
    help="Explain features (rules from the toy world's ground truth, or an LLM), score the explanations (detection, "
         "fuzzing) and relate their complexity to emergence."))
