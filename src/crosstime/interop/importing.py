"""``crosstime import FORMAT PATH --out RUN``: another codebase's crosscoder as RUN/crosscoder.

The files are read and checked (shapes, config against tensors, scales against the store)
before anything is written: a refused import leaves ``--out`` as it was (not created when it
did not exist). The crosscoder is saved exactly as ``crosstime train`` saves one, with where it
came from under ``imported`` in config.json, and recorded as what it is (the ``import``
section of RUN/config.yaml, which vouches for the crosscoder artifact), so evaluate, attribute
and report read it and re-run when another one is imported. The stage is declared in
:mod:`crosstime.stages.import_`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from crosstime.crosscoder import check_against_store
from crosstime.errors import CrosstimeError
from crosstime.interop.formats import Imported, known_formats, read
from crosstime.stage import StageConfig
from crosstime.store import ActivationStore


class InteropError(CrosstimeError):
    """An import, export or push that cannot be done as asked; the message names the input and the fix."""


class ImportConfig(StageConfig):
    """Import a crosscoder saved by another codebase into RUN/crosscoder."""

    stage: ClassVar[str] = "import"
    execution: ClassVar[frozenset[str]] = frozenset({"force"})

    format: str = Field(description=f"the files' format: {', '.join(known_formats('read'))}")
    path: str = Field(description="the saved crosscoder: its file or folder (hub: also owner/name[:folder])")
    store: Path | None = Field(None, description="activation store to check it against (default: RUN/activations "
                                                 "when the run has one)")
    revisions: list[str] | None = Field(None, description="checkpoint names, for formats that do not record them")
    scales: list[float] | None = Field(None, description="input scales s_m, for formats that do not record them")
    force: bool = Field(False, description="replace a crosscoder RUN already holds")


def read_import(config: ImportConfig, run_store: ActivationStore | None) -> tuple[Imported, ActivationStore | None]:
    """Read and check the files before anything is written: the crosscoder, and the store it is checked
    against (``--store``, else the run's own ``run_store`` when it has one)."""
    imported = read(config.format, config.path, config.revisions, config.scales)
    store = ActivationStore(config.store) if config.store is not None else run_store
    if store is not None:
        check_against_store(imported.model, store, where=f"the crosscoder in {config.path}")
    target = config.rundir.crosscoder
    if target.exists() and any(target.iterdir()) and not config.force:
        raise InteropError(f"{target} already holds a crosscoder; import into another --out, or pass --force to "
                           "replace it")
    return imported, store


def write_import(config: ImportConfig, imported: Imported, store: ActivationStore | None) -> None:
    """RUN/crosscoder, saved as ``crosstime train`` saves one, with where it came from under ``imported``."""
    target = config.rundir.crosscoder
    if target.exists():
        shutil.rmtree(target)
    record = {**imported.source, "notes": imported.notes, "store": str(store.root) if store else None}
    imported.model.save(target, extra={"imported": record})
