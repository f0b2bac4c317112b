"""The attribute stage, declared: RUN/activations and RUN/crosscoder -> RUN/attribution/TASK/.

    from crosstime.stages.attribute import AttributeConfig, attribute
    result = attribute(AttributeConfig(run="runs/toy", task="simple_agreement"))

The work is :mod:`crosstime.attribution` (its stage module says what is written).
"""

from __future__ import annotations

import time

from crosstime import stage
from crosstime.attribution import AttributeConfig, AttributeResult, print_attribution
from crosstime.attribution.work import check_inputs, warn_if_batch_dependent, work
from crosstime.distributed import resolve_device
from crosstime.runs import ACTIVATIONS, ATTRIBUTION, CROSSCODER, open_inputs
from crosstime.stage import Stage

__all__ = ["ATTRIBUTE", "AttributeConfig", "attribute"]


def attribute(config: AttributeConfig) -> AttributeResult:
    """Run the attribution stage for one task."""
    t_start = time.perf_counter()
    run = open_inputs(config, device=resolve_device(config.device))
    inputs = check_inputs(config, run.store, run.crosscoder, run.device)
    warn_if_batch_dependent(inputs.crosscoder, config)
    with stage.writing(config) as resolved:
        result = work(config, inputs, t_start)
        resolved["revisions"] = result.attribution.revisions
    return result


def show(result: AttributeResult, config: AttributeConfig) -> None:
    print_attribution(result)


ATTRIBUTE = stage.register(Stage(
    name="attribute", config=AttributeConfig, work=attribute, reads=(ACTIVATIONS, CROSSCODER), writes=(ATTRIBUTION,),
    key=lambda config: config.task_name, key_field="task",  # one record and folder per task
    show=show, help="Per-checkpoint indirect effects of the crosscoder's features on a task; RelIE; ablation check."))
