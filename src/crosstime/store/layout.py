"""On-disk layout of an activation store, its manifest, and the storage dtype.

    STORE/                     (RUN/activations/ or any folder)
      manifest.json            what the store holds (see :func:`new_manifest`)
      tokens.npy               int32 [n_contexts, context_len], written once
      <revision>/00000.bin     raw activations of one chunk of contexts, [rows, d] in the storage dtype
      <revision>/00000.json    that chunk's sidecar: rows, sha256, sum of row norms, max |x|

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

Dtype. float16 by default: its rounding error (relative RMS ≈ 2.8e-4, measured in
benchmarks/RESULTS.md) is 8× smaller than bfloat16's, at the same 2 bytes/value. Its range
ends at 65504; a kept activation beyond it stops the harvest with an error that says to use
bfloat16 (stored as raw uint16 bits; numpy has no bfloat16).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from crosstime.errors import CrosstimeError

FORMAT = "crosstime-activations"
VERSION = 1
MANIFEST = "manifest.json"
TOKENS = "tokens.npy"
FP16_MAX = 65504.0

# storage dtype name -> (numpy dtype on disk, torch dtype it encodes)
DTYPES = {"float16": (np.float16, torch.float16), "bfloat16": (np.uint16, torch.bfloat16)}


class StoreError(CrosstimeError):
    """An activation store that is missing, damaged, or does not match a request."""


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


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def chunk_plan(n_train: int, n_heldout: int, chunk_contexts: int) -> list[list[int]]:
    """Context ranges ``[start, end)`` of the chunks; none straddles the train/held-out boundary."""
    plan = []
    for lo, hi in ((0, n_train), (n_train, n_train + n_heldout)):
        plan += [[s, min(s + chunk_contexts, hi)] for s in range(lo, hi, chunk_contexts)]
    return plan


def chunk_paths(root: Path, revision: str, index: int) -> tuple[Path, Path]:
    base = root / revision / f"{index:05d}"
    return base.with_suffix(".bin"), base.with_suffix(".json")


def read_sidecar(root: Path, revision: str, index: int, expected_rows: int, d: int, dtype: str,
                 check_hash: bool = False) -> dict | None:
    """The chunk's sidecar when the chunk is complete (size, and sha256 if asked), else None."""
    bin_path, side_path = chunk_paths(root, revision, index)
    if not side_path.is_file() or not bin_path.is_file():
        return None
    try:
        side = json.loads(side_path.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    if side.get("rows") != expected_rows or bin_path.stat().st_size != expected_rows * d * itemsize(dtype):
        return None
    if check_hash and sha256_file(bin_path) != side.get("sha256"):
        return None
    return side


def read_manifest(root: Path) -> dict | None:
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise StoreError(f"{path} is not valid JSON ({err}); the store is damaged") from err
    if manifest.get("format") != FORMAT:
        raise StoreError(f"{path} is not a crosstime activation store manifest (format={manifest.get('format')!r})")
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
