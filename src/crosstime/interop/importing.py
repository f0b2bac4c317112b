"""``crosstime import FORMAT PATH --out RUN``: another codebase's crosscoder as RUN/crosscoder.

The files are read and checked (shapes, config against tensors, scales against the store)
before anything is written: a refused import leaves ``--out`` as it was (not created when it
did not exist). The crosscoder is saved exactly as ``crosstime train`` saves one, with where it
came from under ``imported`` in config.json, and recorded as what it is (the ``import``
section of RUN/config.yaml, which vouches for the crosscoder artifact), so evaluate, attribute
and report read it and re-run when another one is imported. The stage is declared in
:mod:`crosstime.stages.import_`.

Checked before anything is written, beside what each format's reader checks: PATH is a file or
folder (a FIFO or device is named as such); the imported checkpoint names (revisions) are safe
folder names, as harvest's are (:func:`crosstime.names.check_name`: they become folder names
later, e.g. SAELens export's); ``RUN/crosscoder`` is not a symbolic link (``--force`` replaces a
folder, never what a link points to). The new crosscoder is written beside ``RUN/crosscoder``
first and renamed into place, so the old records go only once the new files are complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from crosstime.crosscoder import check_against_store
from crosstime.errors import CrosstimeError
from crosstime.files import not_a_file
from crosstime.interop.formats import Imported, known_formats, read
from crosstime.names import UnsafeName, check_name
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
                                                 "when the run has one); a run without RUN/activations reads "
                                                 "this one from then on")
    revisions: list[str] | None = Field(None, description="checkpoint names, for formats that do not record them")
    scales: list[float] | None = Field(None, description="input scales s_m, for formats that do not record them")
    force: bool = Field(False, description="replace a crosscoder RUN already holds")


def read_import(config: ImportConfig, run_store: ActivationStore | None) -> tuple[Imported, ActivationStore | None]:
    """Read and check the files before anything is written: the crosscoder, and the store it is checked
    against (``--store``, else the run's own ``run_store`` when it has one)."""
    source = Path(config.path)
    if os.path.lexists(source) and not (source.is_file() or source.is_dir()):
        raise InteropError(f"{source} {not_a_file(source)}; point at the saved crosscoder's file or folder")
    target = config.rundir.crosscoder
    if target.is_symlink():
        raise InteropError(f"{target} is a symbolic link (to {os.readlink(target)}); import replaces a folder, never "
                           "what a link points to: remove the link, or import into another --out")
    imported = read(config.format, config.path, config.revisions, config.scales)
    try:
        for revision in imported.model.config.revisions or []:  # they become folder names (exports, stores)
            check_name(revision, f"checkpoint name in {config.path}")
    except UnsafeName as err:
        raise InteropError(f"{err}; pass safe names with --revisions A,B,...") from None
    store = ActivationStore(config.store) if config.store is not None else run_store
    if store is not None:
        check_against_store(imported.model, store, where=f"the crosscoder in {config.path}")
    if target.exists() and any(target.iterdir()) and not config.force:
        raise InteropError(f"{target} already holds a crosscoder; import into another --out, or pass --force to "
                           "replace it")
    return imported, store


@contextlib.contextmanager
def staged_import(config: ImportConfig, imported: Imported, store: ActivationStore | None) -> Iterator[Path]:
    """The new crosscoder saved (as ``crosstime train`` saves one, with where it came from under
    ``imported``) in a hidden sibling of RUN/crosscoder, for :func:`place_import`; removed if not placed."""
    staged = config.rundir.crosscoder.with_name(f".{config.rundir.crosscoder.name}.partial-{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    try:
        record = {**imported.source, "notes": imported.notes, "store": str(store.root) if store else None}
        imported.model.save(staged, extra={"imported": record})
        yield staged
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def place_import(config: ImportConfig, staged: Path) -> None:
    """The staged crosscoder becomes RUN/crosscoder (the old one, a folder, goes only now)."""
    target = config.rundir.crosscoder
    if target.exists():
        shutil.rmtree(target)
    staged.rename(target)
