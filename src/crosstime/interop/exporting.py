"""``crosstime export RUN --format FORMAT --out DIR`` and ``crosstime push RUN REPO_ID``.

Every format of :mod:`crosstime.interop.formats` that can be written (``neuronpedia`` among them,
made from the report's evidence). What the formats may state beside the weights (site, series,
training settings, the evaluation per checkpoint, the run itself) comes from the run. A variant
the format cannot hold is refused naming the formats that can.
The files are written into a hidden sibling of DIR and renamed into place when complete, so a
refused or failed export leaves DIR as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from crosstime.artifacts import Evaluation, RunDir, read_json, read_model
from crosstime.crosscoder import Crosscoder, load
from crosstime.crosscoder.model import CONFIG_FILE
from crosstime.interop.formats import FORMATS, ExportInfo, known_formats
from crosstime.interop.formats.hub import first_line, hub_offline, network_errors
from crosstime.interop.importing import InteropError
from crosstime.store import ActivationStore


def export_info(run: RunDir) -> ExportInfo:
    """What the run knows beside the weights: the store's site and series, training settings, evaluation."""
    info = ExportInfo(run=run.root)
    if (run.activations / "manifest.json").is_file():
        store = ActivationStore(run.activations)
        site = store.manifest["site"]
        info.layer, info.context_len = store.layer, store.context_len
        info.site = f"layer {store.layer} {site.get('kind', '')}".strip()
        info.hook_name = f"blocks.{store.layer}.{site.get('kind', 'hook')}"
        source = store.manifest.get("series", {}).get("source")
        info.model_name = str(source) if source else None
    saved = read_json(run.crosscoder / CONFIG_FILE)
    info.training = saved.get("training") or {}
    if run.evaluation_file.is_file():
        info.evaluation = [row.model_dump() for row in read_model(Evaluation, run.evaluation_file).checkpoints]
    return info


def _open_crosscoder(run: RunDir) -> Crosscoder:
    if not (run.crosscoder / CONFIG_FILE).is_file():
        raise InteropError(f"{run.root} has no crosscoder ({run.crosscoder / CONFIG_FILE} is missing); train one "
                           "(`crosstime train RUN`) or import one (`crosstime import FORMAT PATH --out RUN`)")
    return load(run.crosscoder).unfold_scales().eval()


def export_run(run: str | Path, format: str, out: str | Path, force: bool = False) -> list[Path]:
    """Write RUN's crosscoder in ``format`` into the folder ``out``; the files written."""
    rundir, out = RunDir(run), Path(out)
    if format not in known_formats("write"):
        raise InteropError(f"unknown export format {format!r}; known formats: {', '.join(known_formats('write'))}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise InteropError(f"{out} already exists and is not empty; choose another --out, or pass --force to replace it")
    model = _open_crosscoder(rundir)
    writer = FORMATS[format]
    writer.check_supports(model)  # before anything is written
    info = export_info(rundir)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        written = writer.write(model, partial, info)
        if out.is_dir():  # --force: the old export goes only once the new one is complete
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return [out / p.relative_to(partial) for p in written]


def push_run(run: str | Path, repo_id: str, private: bool = False) -> str:
    """Export RUN as a Hub folder and upload it to ``repo_id``; the repo's URL."""
    if hub_offline():
        raise InteropError(f"cannot push to {repo_id}: HF_HUB_OFFLINE is set; unset it where the Hub can be reached, "
                           f"or upload the folder of `crosstime export {run} --format hub --out DIR` yourself")
    from huggingface_hub import HfApi

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
