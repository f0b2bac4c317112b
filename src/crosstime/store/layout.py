"""On-disk layout of an activation store, its manifest, and the storage dtype.

    STORE/                     (RUN/activations/ or any folder)
      manifest.json            what the store holds (see :func:`new_manifest`), sealed
      tokens.npy               int32 [n_contexts, context_len], written once
      <revision>/00000.bin     raw activations of one chunk of contexts, [rows, d] in the storage dtype
      <revision>/00000.json    that chunk's sidecar (see :func:`sidecar`), sealed
      .verified.json           readers' record of files they hashed (a cache; see crosstime.store.integrity)

Rows. Contexts are ``[0, n_train)`` (train split) then ``[n_train, n_contexts)`` (held-out
split). Each context contributes ``context_len - first_position`` rows (position 0 is
excluded by default), in position order, so the global row ``r`` is context
``r // rows_per_context`` at position ``first_position + r % rows_per_context``, and every
checkpoint's rows align with the same tokens. Contexts are grouped into chunks of
``chunk_contexts`` that never straddle the split boundary; a chunk is the unit of work,
of resumption and of distribution (one file per checkpoint and chunk, so ranks write
disjoint files). A chunk is done when its sidecar exists and the ``.bin`` has the size it
names (and, when verified, the sha256 it names); both are written under a temporary name
and renamed. (DESIGN.md sketches one ``<checkpoint>.bin`` per checkpoint; a folder of chunk
files per checkpoint keeps that "one array per checkpoint, added without touching the others"
while giving ranks disjoint files and making every chunk its own atomic, checksummed unit.)

Records (version 2). The manifest and every sidecar carry a ``seal``: the sha256 of their
own canonical JSON, so an edited value (a scale, a checksum, a row count) is caught like
garbage. A sidecar also records the store's *plan* (everything but the checkpoints: site,
width, dtype, contexts, split, chunking, corpus, the tokens' sha256), its chunk and
revision, the checkpoint's weight fingerprint, and the ``.bin``'s size, mtime, ctime and
inode right after it was renamed into place; so a lost manifest is rebuilt from the
sidecars, a chunk of another plan is never taken for one of this plan, and a reader
trusts a ``.bin`` whose stat is unchanged since the harvest hashed its bytes. Version-1
stores (no seals, no plan in the sidecars) are still read; their files are hashed once.

Dtype. float16 by default: its rounding error (relative RMS ≈ 2.8e-4, measured in
benchmarks/RESULTS.md) is 8× smaller than bfloat16's, at the same 2 bytes/value. Its range
ends at 65504; a kept activation beyond it stops the harvest with an error that says to use
bfloat16 (stored as raw uint16 bits; numpy has no bfloat16).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from crosstime.errors import CrosstimeError
from crosstime.files import sha256_file, write_json

FORMAT = "crosstime-activations"
VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
TOKENS = "tokens.npy"
VERIFIED = ".verified.json"
SEAL = "seal"
FP16_MAX = 65504.0

# storage dtype name -> (numpy dtype on disk, torch dtype it encodes)
DTYPES = {"float16": (np.float16, torch.float16), "bfloat16": (np.uint16, torch.bfloat16)}

# manifest fields that make up the store's plan (copied into every chunk's sidecar)
PLAN_KEYS = ("series", "site", "d_model", "dtype", "context_len", "first_position", "excluded_positions",
             "bos_per_context", "corpus", "n_contexts", "splits", "chunk_contexts", "corpus_spec", "n_tokens",
             "n_rows", "tokens_sha256")
# fields every readable manifest has (version 1 included; its early stores lack corpus_spec)
MANIFEST_KEYS = ("format", "version", "series", "site", "d_model", "dtype", "context_len", "first_position",
                 "n_contexts", "splits", "chunk_contexts", "chunks", "tokens_sha256", "checkpoints", "revisions")


class StoreError(CrosstimeError):
    """An activation store that is missing, damaged, or does not match a request."""


class ManifestDamaged(StoreError):
    """``manifest.json`` exists but cannot be read or fails its seal (the harvest can rebuild it)."""


class StoreIndexError(StoreError, IndexError):
    """A row, context, position or chunk index outside the store."""


def encode(x: torch.Tensor, dtype: str) -> np.ndarray:
    """A float tensor ``[n, d]`` (any device) -> the storage dtype as a host numpy array ``[n, d]``."""
    np_dtype, torch_dtype = DTYPES[dtype]
    y = x.to(torch_dtype).contiguous().cpu()
    if dtype == "bfloat16":
        y = y.view(torch.int16)
    return y.numpy().view(np_dtype)


def decode(a: np.ndarray, dtype: str) -> torch.Tensor:
    """Storage-dtype numpy array -> float32 tensor of the same shape."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    if dtype == "bfloat16":
        t = t.view(torch.bfloat16)
    return t.float()


def itemsize(dtype: str) -> int:
    return np.dtype(DTYPES[dtype][0]).itemsize


def file_record(st: os.stat_result) -> dict:
    """What identifies one version of a file: size, mtime, ctime, inode. ``cp -p`` and ``rsync -a``
    keep the mtime of another file's bytes, but no user can set a ctime back, so any write, swap
    or copy changes the record."""
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


# -- seals --------------------------------------------------------------------------------

def _digest(body: dict) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def sealed(record: dict) -> dict:
    """``record`` plus ``seal``: the sha256 of its canonical JSON (values as written, without the seal)."""
    body = json.loads(json.dumps({k: v for k, v in record.items() if k != SEAL}, default=str))
    return {**body, SEAL: _digest(body)}


def seal_ok(record: object) -> bool:
    return isinstance(record, dict) and record.get(SEAL) == _digest({k: v for k, v in record.items() if k != SEAL})


# -- chunks and sidecars -------------------------------------------------------------------

def chunk_plan(n_train: int, n_heldout: int, chunk_contexts: int) -> list[list[int]]:
    """Context ranges ``[start, end)`` of the chunks; none straddles the train/held-out boundary."""
    plan = []
    for lo, hi in ((0, n_train), (n_train, n_train + n_heldout)):
        plan += [[s, min(s + chunk_contexts, hi)] for s in range(lo, hi, chunk_contexts)]
    return plan


def chunk_paths(root: Path, revision: str, index: int) -> tuple[Path, Path]:
    base = root / revision / f"{index:05d}"
    return base.with_suffix(".bin"), base.with_suffix(".json")


def chunk_rows(manifest: dict, index: int) -> int:
    start, end = manifest["chunks"][index]
    return (end - start) * (manifest["context_len"] - manifest["first_position"])


def plan_of(manifest: dict) -> dict:
    """The store's plan: every manifest field but the chunk list (derived) and the checkpoints."""
    return {k: manifest.get(k) for k in PLAN_KEYS}


def sidecar(manifest: dict, revision: str, index: int, data_rows: int, sha256: str, norm_sum: float, max_abs: float,
            weights: dict | None, record: dict) -> dict:
    """The sealed sidecar of chunk ``index`` of ``revision`` (see the module docstring)."""
    return sealed({"rows": data_rows, "sha256": sha256, "norm_sum": norm_sum, "max_abs": max_abs,
                   "revision": revision, "chunk": index, "contexts": manifest["chunks"][index],
                   "weights": weights, "plan": plan_of(manifest), "file": record})


def load_sidecar(path: Path) -> dict | None:
    """The sidecar at ``path`` if it is readable JSON with an intact seal (version 1: no seal), else None."""
    try:
        side = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(side, dict) or (SEAL in side and not seal_ok(side)) or (SEAL not in side and "plan" in side):
        return None
    return side


def sidecar_fits(side: dict, revision: str, index: int, rows: int) -> bool:
    """Whether a loaded sidecar is that of chunk ``index`` of ``revision`` with ``rows`` rows."""
    if side.get("rows") != rows or not isinstance(side.get("sha256"), str):
        return False
    return "plan" not in side or (side.get("revision") == revision and side.get("chunk") == index)


def read_sidecar(root: Path, revision: str, index: int, expected_rows: int, d: int, dtype: str,
                 check_hash: bool = False) -> dict | None:
    """The chunk's sidecar when the chunk is complete (size, and sha256 if asked), else None."""
    bin_path, side_path = chunk_paths(root, revision, index)
    if not side_path.is_file() or not bin_path.is_file():
        return None
    side = load_sidecar(side_path)
    if side is None or not sidecar_fits(side, revision, index, expected_rows):
        return None
    if bin_path.stat().st_size != expected_rows * d * itemsize(dtype):
        return None
    if check_hash and side.get("file") != file_record(bin_path.stat()) and sha256_file(bin_path) != side["sha256"]:
        return None  # (a .bin whose record is the one the harvest wrote holds the bytes it hashed)
    return side


# -- the manifest ----------------------------------------------------------------------------

def new_manifest(plan: dict, tokens_record: dict | None) -> dict:
    """A manifest for ``plan`` with no checkpoints yet (its chunk list derived from the plan)."""
    (_, n_train), (_, n_total) = plan["splits"]["train"], plan["splits"]["heldout"]
    base = {"format": FORMAT, "version": VERSION}
    return {**base, **{k: plan[k] for k in PLAN_KEYS if k not in ("tokens_sha256",)},
            "chunks": chunk_plan(n_train, n_total - n_train, plan["chunk_contexts"]),
            "tokens_sha256": plan["tokens_sha256"], "tokens_file": tokens_record, "checkpoints": {}, "revisions": []}


def write_manifest(root: Path, manifest: dict) -> None:
    manifest.pop(SEAL, None)
    manifest["version"] = VERSION  # rewritten by this version: sealed, sidecars with plans from now on
    write_json(Path(root) / MANIFEST, sealed(manifest))


def read_manifest(root: Path) -> dict | None:
    """The store's manifest; None when there is none; :class:`ManifestDamaged` when it cannot be trusted."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    fix = ("re-run the harvest command that made the store (`crosstime harvest RUN SERIES --layer L`): it rebuilds "
           "the manifest from the chunk sidecars")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestDamaged(f"{path} is not valid JSON ({err}); the store's manifest is damaged: {fix}") from err
    except OSError as err:
        raise StoreError(f"{path} cannot be read ({err.strerror}); check its permissions") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        kind = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ManifestDamaged(f"{path} is not a crosstime activation store manifest (format={kind!r}): {fix}")
    if manifest.get("version") not in READABLE_VERSIONS:
        raise StoreError(f"{path} has version {manifest.get('version')!r}; this crosstime reads versions "
                         f"{READABLE_VERSIONS}: upgrade crosstime, or harvest a new store")
    if manifest["version"] >= 2 and not seal_ok(manifest):
        raise ManifestDamaged(f"{path} was changed after the harvest wrote it (its seal does not match its "
                              f"contents): {fix}")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise ManifestDamaged(f"{path} lacks the fields {missing}: {fix}")
    return manifest


def scale_from_sidecars(sidecars: list[dict], plan: list[list[int]], n_train: int, d: int,
                        revision: str = "?") -> tuple[float, float]:
    """``(s, mean_norm)`` with ``s = sqrt(d) / E‖x‖`` over the train split's kept rows (chunk order, float64).

    A checkpoint whose activations are all zero has no scale: that is an error, not a scale of 1."""
    total, rows = 0.0, 0
    for side, (start, _end) in zip(sidecars, plan):
        if start < n_train:
            total += side["norm_sum"]
            rows += side["rows"]
    mean = total / max(rows, 1)
    if not mean > 0:
        raise StoreError(f"checkpoint {revision} gives activations of norm 0 on every stored token, so no "
                         "normalisation scale exists; check the checkpoint's weights and the --layer")
    return float(np.sqrt(d) / mean), mean


def summarise(root: Path, manifest: dict, revisions: list[str], final: bool) -> dict:
    """Refresh the per-checkpoint state in the manifest from the sidecars on disk."""
    plan = manifest["chunks"]
    n_train = manifest["splits"]["train"][1]
    for rev in revisions:
        sides = [read_sidecar(root, rev, i, chunk_rows(manifest, i), manifest["d_model"], manifest["dtype"])
                 for i in range(len(plan))]
        done = [s for s in sides if s is not None]
        entry = manifest["checkpoints"].setdefault(rev, {})
        entry.update({"status": "partial", "chunks_done": len(done), "n_chunks": len(plan)})
        entry.update(_weights_of(root, rev, done))
        if len(done) == len(plan):
            scale, mean_norm = scale_from_sidecars(sides, plan, n_train, manifest["d_model"], rev)
            entry.update({
                "status": "complete", "scale": scale, "mean_norm": mean_norm,
                "max_abs": max(s["max_abs"] for s in sides),
                "checksums": [s["sha256"] for s in sides],
            })
        elif final:
            raise StoreError(f"harvest of {rev} ended with {len(done)}/{len(plan)} chunks; re-run the same command to finish")
    return manifest


def _weights_of(root: Path, revision: str, sides: list[dict]) -> dict:
    """``{fingerprint, model_dtype}`` the chunks of ``revision`` were computed with ({} for version-1 chunks)."""
    seen = {json.dumps(s["weights"], sort_keys=True) for s in sides if s.get("weights")}
    if len(seen) > 1:
        raise StoreError(f"the chunks in {Path(root) / revision} were computed from different weights "
                         f"({', '.join(sorted(seen))}); delete that folder and harvest {revision} again")
    return json.loads(seen.pop()) if seen else {}
