"""``crosstime export RUN --format FORMAT --out DIR`` and ``crosstime push RUN REPO_ID``.

Every format of :mod:`crosstime.interop.formats` that can be written (``neuronpedia`` among them,
made from the report's evidence). What the formats may state beside the weights (site, series,
training settings, the evaluation per checkpoint, the run itself) comes from the run. A variant
the format cannot hold is refused naming the formats that can.
The files are written into a hidden sibling of DIR and renamed into place when complete, so a
refused or failed export leaves DIR as it was.

What export may touch: DIR must not be the run, lie inside it or contain it (the run is never
overwritten), and a revision that would become a folder name (SAELens' one folder per checkpoint)
must be a safe name (:func:`crosstime.names.check_name`). ``--force`` replaces an existing DIR only
when it is recognisably a previous export of the same kind: a folder (not a link) every file of
which the new export writes again (same relative paths). Anything else in DIR (a file export did
not write, a run, a different export) is refused, naming it, so export never deletes what it did
not write; remove such a folder yourself, or choose another --out.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi
from pydantic import BaseModel, ConfigDict, Field

from crosstime.artifacts import read_json
from crosstime.crosscoder import Crosscoder
from crosstime.crosscoder.model import CONFIG_FILE
from crosstime.hub import hub_offline, hub_unreachable
from crosstime.interop.formats import FORMATS, ExportInfo, known_formats
from crosstime.interop.formats.hub import first_line, network_errors
from crosstime.interop.importing import InteropError
from crosstime.names import check_name
from crosstime.runs import ACTIVATIONS, CROSSCODER, EVALUATION, Run, open_run


class ExportConfig(BaseModel):
    """The settings of :func:`export_run` (``crosstime export``)."""

    model_config = ConfigDict(extra="forbid")

    run: Path = Field(description="Run directory (its crosscoder, and for neuronpedia its report).")
    format: str = Field(description=f"the format: {', '.join(known_formats('write'))}")
    out: Path = Field(description="Folder to write (must not exist or be empty).")
    force: bool = Field(False, description="Replace --out if it exists.")


class PushConfig(BaseModel):
    """The settings of :func:`push_run` (``crosstime push``)."""

    model_config = ConfigDict(extra="forbid")

    run: Path = Field(description="Run directory.")
    repo_id: str = Field(description="Hugging Face repo id, owner/name.")
    private: bool = Field(False, description="Create the repo private.")


def export_info(run: Run) -> ExportInfo:
    """What the run knows beside the weights: the store's site and series, training settings, evaluation."""
    info = ExportInfo(run=run.root)
    if run.has(ACTIVATIONS):
        store = run.store
        site = store.manifest["site"]
        info.layer, info.context_len = store.layer, store.context_len
        info.site = f"layer {store.layer} {site.get('kind', '')}".strip()
        info.hook_name = transformer_lens_hook(store.layer, site)
        source = store.manifest.get("series", {}).get("source")
        info.model_name = str(source) if source else None
    saved = read_json(run.dir.crosscoder / CONFIG_FILE)
    info.training = saved.get("training") or {}
    if run.has(EVALUATION):
        info.evaluation = [row.model_dump() for row in run.evaluation.checkpoints]
    return info


def transformer_lens_hook(layer: int, site: dict) -> str:
    """The TransformerLens/SAELens hook name of a store's site. crosstime's one site, the output of
    block ``layer`` (``hidden_states[layer + 1]``), is TransformerLens's ``blocks.{layer}.hook_resid_post``
    (formats with other conventions derive theirs from ``ExportInfo.layer``: CCT's is
    ``blocks.{layer + 1}.hook_resid_pre``)."""
    if site.get("kind") != "block_output":
        raise InteropError(f"the store's site is {site!r}; export knows hook names only for block outputs")
    return f"blocks.{layer}.hook_resid_post"


def _open_crosscoder(run: Run) -> Crosscoder:
    if not run.has(CROSSCODER):
        raise InteropError(f"{run.root} has no crosscoder (no finished train or import in {run.dir.config_file}); "
                           "train one (`crosstime train RUN`) or import one (`crosstime import FORMAT PATH --out RUN`)")
    return run.crosscoder


def export_run(run: str | Path, format: str, out: str | Path, force: bool = False) -> list[Path]:
    """Write RUN's crosscoder in ``format`` into the folder ``out``; the files written (see the module
    docstring for what ``out`` may be and what ``force`` may replace)."""
    opened, out = open_run(run), Path(out)
    if format not in known_formats("write"):
        raise InteropError(f"unknown export format {format!r}; known formats: {', '.join(known_formats('write'))}")
    _check_out(opened.root, out, force)
    model = _open_crosscoder(opened)
    writer = FORMATS[format]
    writer.check_supports(model)  # before anything is written
    for revision in model.config.revisions or []:  # SAELens makes a folder of each
        check_name(revision, f"revision of the crosscoder in {opened.dir.crosscoder}")
    info = export_info(opened)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        written = writer.write(model, partial, info)
        if out.exists():  # --force: the old export goes only once the new one is complete, and only if it is one
            _check_replaceable(out, {p.relative_to(partial) for p in written}, format)
            shutil.rmtree(out)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return [out / p.relative_to(partial) for p in written]


def _check_out(run: Path, out: Path, force: bool) -> None:
    """``out`` is neither the run, inside it nor around it; an existing one only with ``force``."""
    here, there = run.resolve(), out.resolve()
    if there == here or here in there.parents or there in here.parents:
        relation = "is" if there == here else "is inside" if here in there.parents else "contains"
        raise InteropError(f"--out {out} {relation} the run {run}; export writes a separate folder: choose an --out "
                           "outside the run")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise InteropError(f"--out {out} is {'a symbolic link' if out.is_symlink() else 'a file'}; an export is "
                           "written as a new folder: choose another --out")
    if out.exists() and any(out.iterdir()) and not force:
        raise InteropError(f"{out} already exists and is not empty; choose another --out, or pass --force to replace "
                           "a previous export there")


def _check_replaceable(out: Path, writes: set[Path], format: str) -> None:
    """``out`` holds only files the new export writes again (a previous export of the same kind)."""
    for entry in sorted(out.rglob("*")):
        relative = entry.relative_to(out)
        if entry.is_symlink() or (entry.is_file() and relative not in writes) or not (entry.is_file() or entry.is_dir()):
            raise InteropError(f"--force replaces only a previous {format} export, but {out} holds {relative}, which "
                               "this export does not write; nothing was changed. Remove the folder yourself, or choose "
                               "another --out")


def push_run(run: str | Path, repo_id: str, private: bool = False) -> str:
    """Export RUN as a Hub folder and upload it to ``repo_id``; the repo's URL. Without a Hub (HF_HUB_OFFLINE,
    or no network: asked at once, before the export) one line, never huggingface_hub's retries."""
    unreachable = None if hub_offline() else hub_unreachable()
    if hub_offline() or unreachable is not None:
        why = ("HF_HUB_OFFLINE is set; unset it where the Hub can be reached" if unreachable is None else
               f"no network (cannot reach the Hugging Face Hub: {unreachable}); push where the Hub can be reached")
        raise InteropError(f"cannot push to {repo_id}: {why}, or upload the folder of `crosstime export {run} "
                           "--format hub --out DIR` yourself")

    with tempfile.TemporaryDirectory(prefix="crosstime-push-") as tmp:
        folder = Path(tmp) / "hub"
        export_run(run, "hub", folder)
        api = HfApi()
        try:
            url = api.create_repo(repo_id, exist_ok=True, private=private)
            api.upload_folder(folder_path=str(folder), repo_id=repo_id,
                              commit_message=f"crosstime: crosscoder of {Path(run).name}")
        except network_errors() as err:
            raise InteropError(f"could not push to {repo_id} on the Hugging Face Hub ({first_line(err)}); check the "
                               "repo id, your network and `hf auth login`") from err
    return str(url)
