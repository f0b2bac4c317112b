"""The harvest stage, declared: a checkpoint series -> RUN/activations (the activation store).

    from crosstime.stages.harvest import HarvestConfig, harvest
    store = harvest(HarvestConfig(run="runs/x", series="toy", revisions=["step0", "step512"], layer=1))

Works alone or under ``torchrun`` (every rank calls it with the same config). The work is
:mod:`crosstime.store.harvesting` (its module docstring gives the order of work).
"""

from __future__ import annotations

import typer

from crosstime import distributed, stage
from crosstime.runs import ACTIVATIONS
from crosstime.stage import Stage
from crosstime.store import ActivationStore, HarvestConfig, resolve_config
from crosstime.store.harvesting import check_request, harvest_store

__all__ = ["HARVEST", "HarvestConfig", "harvest"]


def harvest(config: HarvestConfig) -> ActivationStore:
    """Harvest the site activations of ``config.revisions`` into RUN/activations; return the store.
    Everything that can fail without work is checked first; then the main rank holds the run's lock."""
    w = distributed.join(distributed.resolve_device(config.device))
    checked = check_request(resolve_config(config))
    with stage.writing(config) as resolved:
        store = harvest_store(resolve_config(config), w, checked)
        resolved["revisions"] = store.revisions  # every checkpoint the store now holds
    return store


def show(store: ActivationStore, config: HarvestConfig) -> None:
    if distributed.world().is_main:
        typer.echo(store.summary())


HARVEST = stage.register(Stage(
    name="harvest", config=HarvestConfig, work=harvest, writes=(ACTIVATIONS,), positional=("run", "series"),
    show=show, help="Harvest site activations of checkpoints into RUN/activations (resumable; works under torchrun)."))
