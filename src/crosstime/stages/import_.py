"""The import stage, declared: another codebase's saved crosscoder -> RUN/crosscoder.

    from crosstime.stages.import_ import ImportConfig, import_crosscoder
    imported, store = import_crosscoder(ImportConfig(run="runs/x", format="cct", path="cc.pt"))

The files are read and checked (shapes, config against tensors, scales against the store: ``--store``,
else the run's own when it has one) before anything is written: a refused import leaves the run as
it was. The stage records itself as ``import`` and vouches for the crosscoder artifact, which
evaluate, attribute and report read. A ``--store`` outside the run is recorded (its absolute path
and manifest checksum, :func:`crosstime.runs.external_store_record`), so a run without
RUN/activations reads that store from then on. The formats are :mod:`crosstime.interop`'s.
"""

from __future__ import annotations

import typer

from crosstime import stage
from crosstime.interop import ImportConfig, place_import, read_import, staged_import
from crosstime.interop.formats import Imported
from crosstime.runs import (
    ACTIVATIONS,
    CROSSCODER,
    EXTERNAL_STORE,
    external_store_record,
    open_inputs,
)
from crosstime.stage import Stage
from crosstime.store import ActivationStore

__all__ = ["IMPORT", "ImportConfig", "import_crosscoder"]


def import_crosscoder(config: ImportConfig) -> tuple[Imported, ActivationStore | None]:
    """Read, check, then write RUN/crosscoder; returns what was imported and the store it was checked against."""
    run = open_inputs(config)
    # with --store the run's own is not looked up: a recorded store that moved is what --store NEW replaces
    imported, store = read_import(config, run.store if config.store is None and run.has(ACTIVATIONS) else None)
    external = external_store_record(config.rundir, store)
    # the new files first: the old records go (stage.writing) only once they are complete
    with staged_import(config, imported, store) as staged, stage.writing(config) as resolved:
        place_import(config, staged)
        if external is not None:  # the run reads this store from now on (crosstime.runs.Run.store_root)
            resolved[EXTERNAL_STORE] = external
    return imported, store


def show(result: tuple[Imported, ActivationStore | None], config: ImportConfig) -> None:
    imported, checked = result
    m = imported.model
    typer.echo(f"{config.rundir.crosscoder}: {m.config.variant} crosscoder from {config.format} {config.path}, "
               f"M={m.n_checkpoints} ({', '.join(m.revisions or [])}), d={m.d_model}, F={m.n_features}")
    for note in imported.notes:
        typer.echo(f"  {note}")
    if checked is None:
        typer.echo("  not checked against a store (give --store, or import into a run with RUN/activations)")
    elif external_store_record(config.rundir, checked) is None:  # the run reads its own
        typer.echo(f"  checked against the store at {checked.root}")
    else:
        typer.echo(f"  checked against the store at {checked.root}; the run reads it there from now on (keep it "
                   f"there, or copy it into {config.rundir.activations})")


IMPORT = stage.register(Stage(
    name="import", config=ImportConfig, work=import_crosscoder, writes=(CROSSCODER,), optional_reads=(ACTIVATIONS,),
    positional=("format", "path"), options={"run": "out"}, resumable=False, show=show,
    help="Import a crosscoder saved by another codebase into RUN/crosscoder (every later stage reads it)."))
