"""The train stage, declared: RUN/activations (or a checkpoint series, streamed) -> RUN/crosscoder.

    from crosstime.stages.train import TrainConfig, train
    model = train(TrainConfig(run="runs/x", steps=2000))                       # on RUN/activations
    model = train(TrainConfig(run="runs/x", series="toy", layer=1, tokens="1M"))  # streamed: no store

Two data sources, one stage: the activation store a harvest wrote (read through the run
reader), or streaming (:mod:`crosstime.crosscoder.streaming`: the checkpoints stay loaded and
refill a shuffled buffer), which with ``keep_store`` also writes RUN/activations — then this
stage's record vouches for the store too. Resumes when re-run; the store training works under
torchrun. The trainer is :mod:`crosstime.crosscoder.training`.
"""

from __future__ import annotations

import typer

from crosstime import distributed, stage
from crosstime.crosscoder import Crosscoder, TrainConfig
from crosstime.crosscoder.logs import heldout_summary
from crosstime.crosscoder.streaming import Harvester, check_streaming, train_streaming
from crosstime.crosscoder.training import make_trainer
from crosstime.runs import ACTIVATIONS, CROSSCODER, open_inputs
from crosstime.stage import Artifact, Stage

__all__ = ["TRAIN", "TrainConfig", "train"]


def train(config: TrainConfig) -> Crosscoder:
    """Train a crosscoder into RUN/crosscoder (resumes when re-run). The store (or the streamed series),
    the settings and a resumed state are checked before the stage's record is cleared."""
    world = distributed.join(distributed.resolve_device(config.device))
    run = open_inputs(config)
    if config.series is not None:
        check_streaming(world)
        harvester = Harvester(config)  # every setting checked before the run's records change
        with stage.writing(config):
            return train_streaming(harvester, config, world)
    run.require(ACTIVATIONS)
    trainer = make_trainer(run.store, config, run.dir.crosscoder, None, world)
    with stage.writing(config):
        return trainer.run()


def streamed_store(config: TrainConfig) -> tuple[Artifact, ...]:
    """Streaming with ``keep_store`` writes RUN/activations besides the crosscoder."""
    return (ACTIVATIONS,) if config.series is not None and config.keep_store else ()


def show(model: Crosscoder, config: TrainConfig) -> None:
    if distributed.world().is_main:
        typer.echo(f"{config.rundir.crosscoder}: {model.config.variant} crosscoder, M={model.n_checkpoints} "
                   f"({', '.join(model.revisions or [])}), d={model.d_model}, F={model.n_features}")
        held = heldout_summary(config.rundir.crosscoder, list(model.revisions or []))
        if held:
            typer.echo(held)


TRAIN = stage.register(Stage(
    name="train", config=TrainConfig, work=train, writes=(CROSSCODER,), writes_also=streamed_store,
    optional_reads=(ACTIVATIONS,),  # required unless streaming (checked in train())
    show=show, help="Train a crosscoder on RUN/activations (or streamed from --series) into RUN/crosscoder (resumes "
                    "when re-run; works under torchrun)."))
