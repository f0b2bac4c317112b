"""What a store folder holds when its manifest is lost or damaged, and which chunks are this plan's.

Never destroy what the command cannot rebuild: a harvest that finds ``manifest.json``
missing or unreadable rebuilds it from the chunk sidecars (each records the store's plan:
see :mod:`crosstime.store.layout`) when they all agree; else it refuses, naming the
settings the user must give (:func:`required_flags`). With a manifest (found, rebuilt, or
from those settings) a chunk file whose sidecar records another plan is not this store's:
the harvest stops naming it (:func:`foreign_chunks`) instead of deleting it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

from crosstime.store.layout import (
    MANIFEST,
    TOKENS,
    ManifestDamaged,
    StoreError,
    chunk_rows,
    itemsize,
    load_sidecar,
    new_manifest,
    plan_of,
    read_manifest,
    summarise,
)

CHUNK_FILE = re.compile(r"^(\d{5})\.(bin|json)$")

# the settings that fix a store's plan, as the harvest command spells them
PLAN_FLAGS = {"tokens": "--tokens", "heldout_tokens": "--heldout-tokens", "context_len": "--context-len",
              "chunk_contexts": "--chunk-contexts", "dtype": "--dtype",
              "keep_first_position": "--keep-first-position/--no-keep-first-position"}


def chunk_files(root: Path) -> dict[str, dict[int, list[Path]]]:
    """``{revision folder: {chunk index: [its .bin / .json files]}}`` for every chunk-named file in ``root``."""
    found: dict[str, dict[int, list[Path]]] = {}
    if not Path(root).is_dir():
        return found
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.iterdir()):
            match = CHUNK_FILE.match(path.name)
            if match:
                found.setdefault(folder.name, {}).setdefault(int(match.group(1)), []).append(path)
    return found


def has_content(root: Path) -> bool:
    """Whether ``root`` holds anything of a store (a manifest, tokens or chunk files)."""
    root = Path(root)
    return (root / MANIFEST).exists() or (root / TOKENS).exists() or bool(chunk_files(root))


class StoreState(NamedTuple):
    """What a store folder holds. ``origin``: ``"found"`` (a readable manifest), ``"recovered"``
    (rebuilt from the sidecars), ``"lost"`` (content whose plan cannot be known: ``why`` says
    why), ``"none"`` (no store)."""

    manifest: dict | None
    why: str | None
    origin: str


def store_state(root: Path) -> StoreState:
    """The store at ``root``: its manifest, else one rebuilt from the chunk sidecars, else why not."""
    try:
        manifest = read_manifest(root)
    except ManifestDamaged as err:
        return recover(root, str(err))
    if manifest is not None:
        return StoreState(manifest, None, "found")
    if not has_content(root):
        return StoreState(None, None, "none")
    return recover(root, f"{Path(root) / MANIFEST} is missing")


def recover(root: Path, what: str) -> StoreState:
    """The manifest rebuilt from the sidecars of ``root`` (checkpoints summarised, no steps yet), or why not."""
    plans: dict[str, list[Path]] = {}  # canonical JSON of a plan -> the sidecars recording it
    first: dict[str, dict] = {}  # ... -> that plan as written (its key order: the manifest's)
    legacy = []
    for rev, chunks in chunk_files(root).items():
        for index in chunks:
            path = Path(root) / rev / f"{index:05d}.json"
            side = load_sidecar(path)
            if side is None:
                continue  # damaged or absent: the chunk is redone once the plan is known
            if "plan" not in side:
                legacy.append(path)
            else:
                text = json.dumps(side["plan"], sort_keys=True)
                plans.setdefault(text, []).append(path)
                first.setdefault(text, side["plan"])
    if legacy:
        return StoreState(None, f"{what}, and {legacy[0]} (written by an older crosstime) does not record the "
                                "store's plan", "lost")
    if not plans:
        return StoreState(None, f"{what}, and no chunk sidecar records the store's plan", "lost")
    if len(plans) > 1:
        a, b = (paths[0] for paths in list(plans.values())[:2])
        return StoreState(None, f"{what}, and the chunk sidecars disagree about the plan ({len(plans)} plans, e.g. "
                                f"{a} and {b})", "lost")
    (text, paths), = plans.items()
    manifest = new_manifest(first[text], None)
    revisions = sorted({p.parent.name for p in paths})
    summarise(root, manifest, revisions, final=False)
    return StoreState(manifest, None, "recovered")


def required_flags(config, why: str) -> None:
    """Refuse a store whose plan cannot be known unless every plan setting is given (then they are the plan)."""
    missing = [flag for field, flag in PLAN_FLAGS.items() if getattr(config, field) is None]
    if missing:
        raise StoreError(
            f"{why}. The harvest will not guess the store's plan (a guess would redo or delete chunks of "
            f"another plan): give {', '.join(missing)} as the store was harvested (and --corpus if it was not "
            f"the default), or move {config.out} away and harvest anew."
        )


def foreign_chunks(root: Path, manifest: dict, vouched: bool) -> None:
    """Stop, naming them, when chunk files in ``root`` were not written for ``manifest``'s plan.

    A sidecar that records a plan says it; one that does not (version 1, damaged, absent) is
    this plan's when the manifest was found readable (``vouched``), else when its ``.bin``
    has the size of that chunk of this plan (a damaged chunk of this plan, redone)."""
    plan, n = plan_of(manifest), len(manifest["chunks"])
    width = manifest["d_model"] * itemsize(manifest["dtype"])
    foreign = []
    for rev, chunks in chunk_files(root).items():
        for index, paths in chunks.items():
            if index >= n:
                foreign.append(f"{paths[0]} (this plan has {n} chunks)")
                continue
            side = load_sidecar(Path(root) / rev / f"{index:05d}.json")
            if side is not None and "plan" in side:
                if side["plan"] != plan:
                    differ = sorted(k for k in plan if side["plan"].get(k) != plan[k])
                    foreign.append(f"{paths[0]} (its sidecar records another plan: {', '.join(differ)})")
                continue
            binary = Path(root) / rev / f"{index:05d}.bin"
            if not vouched and binary.exists() and binary.stat().st_size != chunk_rows(manifest, index) * width:
                foreign.append(f"{binary} (its size does not fit chunk {index} of this plan)")
    if foreign:
        shown = "; ".join(foreign[:5]) + (f"; and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise StoreError(f"chunk files in {root} were not written for this store's plan: {shown}. The harvest does "
                         "not delete them: move them away (or harvest into a new run), then re-run.")
