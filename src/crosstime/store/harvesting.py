"""Harvest: run each checkpoint once over the store's tokens and write its site activations.

    from crosstime.stages.harvest import HarvestConfig, harvest   # the stage, declared
    harvest(HarvestConfig(run=RUN, series=..., revisions=[...], layer=L, corpus=..., tokens=N))   # -> RUN/activations

This module is the work (:func:`check_request`, then :func:`harvest_store`); streaming training
(:mod:`crosstime.crosscoder.streaming`) writes a store with the same public pieces
(:func:`check_request`, :func:`context_tokens`, :func:`prepare_store`, :func:`compute_chunk`,
:func:`write_chunk`, :func:`check_weights`, :func:`order_checkpoints`).

Order of work (every check that can fail happens before any model runs):

1. open the series, check the revisions (names, shared width and tokenizer) and the layer;
2. if STORE holds a store, take its plan from the manifest, or (manifest missing or
   damaged) rebuild it from the chunk sidecars, or refuse unless every plan setting is
   given (:mod:`crosstime.store.recovery`); check that the request matches it;
3. rank 0 packs the corpus into ``tokens.npy`` (once per store; a missing or damaged one is
   re-packed and kept only if it equals the recorded checksum) and writes the manifest;
4. rank 0 refuses chunk files of another plan (never deletes them), and deletes damaged
   chunks of this plan (size, seal or sha256 wrong) of the checkpoints about to be harvested;
5. the missing (checkpoint, chunk) items are split into contiguous shares, one per rank
   (so a rank loads few models); each loaded checkpoint is fingerprinted
   (:mod:`crosstime.store.fingerprint`) and refused if its chunks on disk were computed from
   other weights; each item runs the forward pass stopped after block L on ``batch_size``
   contexts at a time, in inference mode, and writes ``<revision>/<chunk>.bin`` and its
   sealed sidecar under temporary names, then renames them;
6. rank 0 sums the sidecars into the manifest (per-checkpoint scale, checksums,
   fingerprint, status) and warns when two checkpoints have identical weights.

A kill at any point loses at most the chunks in flight; re-running the same command redoes
exactly those. A full disk stops the harvest with an error saying where and what was kept;
the same command resumes. The bytes written depend only on the chunk (same batches, same
order), so a resumed, a distributed and an uninterrupted harvest give identical stores
(the sidecars' file records and the seals aside).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from crosstime import distributed
from crosstime.files import atomic_path, remove_stale_temps, sha256_file, write_json
from crosstime.names import check_name
from crosstime.progress import Bar
from crosstime.series import SeriesError, open_series
from crosstime.sites import LayerOutOfRange, read_site, weights_fingerprint
from crosstime.stage import DEVICE_HELP, Count, Device, StageConfig
from crosstime.store.corpus import Corpus, iter_documents, pack_contexts, resolve_corpus
from crosstime.store.layout import (
    DTYPES,
    FP16_MAX,
    MANIFEST,
    TOKENS,
    StoreError,
    chunk_paths,
    chunk_rows,
    encode,
    file_record,
    itemsize,
    new_manifest,
    read_manifest,
    read_sidecar,
    sidecar,
    summarise,
    write_manifest,
)
from crosstime.store.reader import ActivationStore
from crosstime.store.recovery import (
    foreign_chunks,
    recover,
    required_flags,
    store_state,
)


class HarvestConfig(StageConfig):
    """Settings of the harvest stage: RUN/activations (shared by ``crosstime harvest`` and the Python API).

    Settings left unset come from the store already in RUN/activations (so adding a
    checkpoint needs only the series, revisions and layer), else from the defaults."""

    stage: ClassVar[str] = "harvest"
    execution: ClassVar[frozenset[str]] = frozenset({"batch_size", "device", "verify"})

    series: str = Field(description="checkpoint series: a local series folder, a hub id, or 'toy' (the built-in "
                                     "toy world)")
    revisions: list[str] | None = Field(None, description="checkpoints to harvest (default: every revision of the series)")
    layer: int = Field(description="site: the output of decoder block L (= hidden_states[L+1])")
    corpus: str | None = Field(None, description="text/JSONL file, saved HF dataset, or folder with corpus/train.txt "
                                                  "(default: the series folder's corpus/, as in the toy world)")
    tokens: Count | None = Field(None, gt=0, description="training tokens to store, rounded down to whole contexts "
                                                       "(default: the existing store's, else 1,000,000)")
    heldout_tokens: Count | None = Field(None, ge=0, description="held-out tokens (default: 5% of tokens, at least one context)")
    context_len: int | None = Field(None, ge=2, description="tokens per context (default: min(1024, the model's max positions))")
    keep_first_position: bool | None = Field(None, description="keep position 0 (the attention sink); excluded by default")
    bos_per_context: bool = Field(True, description="start every context with the tokenizer's BOS token (if it has one)")
    text_column: str = Field("text", description="text field of a JSONL file or dataset")
    dtype: Literal["float16", "bfloat16"] | None = Field(None, description="storage dtype (default: float16)")
    batch_size: int = Field(16, gt=0, description="contexts per forward pass")
    chunk_contexts: int | None = Field(None, gt=0, description="contexts per chunk file (default: about 64 MiB per chunk)")
    device: Device = Field("auto", description=DEVICE_HELP)
    model_dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="dtype the models run in")
    verify: bool = Field(True, description="check the sha256 of chunks already on disk (those changed since the "
                                           "harvest wrote them) before resuming")

    @property
    def out(self) -> Path:
        """The store folder, RUN/activations."""
        return self.rundir.activations

    def resolved(self) -> HarvestConfig:
        return resolve_config(self)


DEFAULTS = {"tokens": 1_000_000, "keep_first_position": False, "dtype": "float16"}


def resolve_config(config: HarvestConfig) -> HarvestConfig:
    """Fill the settings left unset: from the store already at ``config.out`` (its manifest, or the
    plan its chunk sidecars record when the manifest is lost), so appending a checkpoint needs only
    the series, revisions, layer and out; else the defaults."""
    existing, _why, origin = store_state(config.out)
    update = {}
    if existing is not None:
        T = existing["context_len"]
        (_, n_train), (_, n_total) = existing["splits"]["train"], existing["splits"]["heldout"]
        stored = {"tokens": n_train * T, "heldout_tokens": (n_total - n_train) * T, "context_len": T,
                  "keep_first_position": existing["first_position"] == 0, "dtype": existing["dtype"],
                  "chunk_contexts": existing["chunk_contexts"], "corpus": existing.get("corpus_spec")}
        update = {k: v for k, v in stored.items() if getattr(config, k) is None}
    if origin != "lost":  # a store whose plan is lost takes it from the settings given, never the defaults
        update.update({k: v for k, v in DEFAULTS.items() if getattr(config, k) is None and k not in update})
    resolved = config.model_copy(update=update)
    T = resolved.context_len
    if T is not None:  # a store holds whole contexts: 1500 tokens of 32-token contexts are 1472
        whole = {k: getattr(resolved, k) // T * T for k in ("tokens", "heldout_tokens") if getattr(resolved, k)}
        resolved = resolved.model_copy(update=whole)
    return resolved


def _open_series(config: HarvestConfig):
    """The whole series; for hub families whose revisions cannot be listed offline (OLMo), the
    revisions already in the store plus the requested ones."""
    try:
        return open_series(config.series)
    except SeriesError:
        if not config.revisions:
            raise
        stored = store_state(config.out).manifest
        names = [*(stored["checkpoints"] if stored else []), *config.revisions]
        return open_series(config.series, revisions=list(dict.fromkeys(names)))


def _resolve(config: HarvestConfig) -> tuple:
    """Validate the request against the series; return (series, revisions, d, n_layers, context_len)."""
    if config.revisions is not None and not config.revisions:
        raise StoreError("--revisions is empty; name the checkpoints to harvest, or leave it out to harvest every one")
    series = _open_series(config)
    requested = config.revisions or series.revisions
    if not requested:
        raise StoreError("no revisions to harvest; pass --revisions")
    revisions = [c.revision for c in series.select(revisions=requested)]  # unknown names raise SeriesError
    for rev in revisions:  # each becomes a folder of the store
        check_name(rev, f"revision of {config.series}")
    d = series.check_compatible(revisions)
    cfg = series.load_config(revisions[0])
    depth = cfg.num_hidden_layers
    if not 0 <= config.layer < depth:
        raise LayerOutOfRange(
            f"layer {config.layer} is out of range: {config.series} has {depth} decoder blocks, "
            f"so --layer must be in 0..{depth - 1} (block L's output = hidden_states[L+1])."
        )
    max_pos = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    context_len = config.context_len or min(1024, max_pos or 1024)
    if max_pos and context_len > max_pos:
        raise StoreError(f"context_len {context_len} exceeds the model's {max_pos} positions; pass --context-len {max_pos} or less")
    return series, revisions, d, depth, context_len


def _request(config: HarvestConfig, series, d: int, context_len: int, corpus) -> dict:
    """The manifest fields a store must match to serve this request."""
    first = 0 if config.keep_first_position else 1
    n_train = config.tokens // context_len
    if n_train < 1:
        raise StoreError(f"--tokens {config.tokens} is less than one context of {context_len} tokens")
    if config.heldout_tokens is None:
        n_heldout = max(1, round(0.05 * n_train))
    else:
        n_heldout = config.heldout_tokens // context_len
    rows_per_context = context_len - first
    chunk_contexts = config.chunk_contexts or max(1, (64 << 20) // (rows_per_context * d * itemsize(config.dtype)))
    return {
        "series": {"source": series.source, "family": series.family},
        "site": {"layer": config.layer, "hidden_states_index": config.layer + 1, "kind": "block_output"},
        "d_model": d,
        "dtype": config.dtype,
        "context_len": context_len,
        "first_position": first,
        "excluded_positions": list(range(first)),
        "bos_per_context": config.bos_per_context,
        "corpus": corpus.describe(),
        "n_contexts": n_train + n_heldout,
        "splits": {"train": [0, n_train], "heldout": [n_train, n_train + n_heldout]},
        "chunk_contexts": chunk_contexts,
    }


def _check_match(existing: dict, request: dict, root: Path) -> None:
    differ = []
    for key, want in request.items():
        have = existing.get(key)
        if key == "chunk_contexts" and have is not None:
            continue  # set once by the store; a re-run adopts it
        if have != want:
            differ.append(f"{key}: store has {have!r}, request has {want!r}")
    if differ:
        raise StoreError(
            f"the store at {root} ({MANIFEST}) does not match this request:\n  " + "\n  ".join(differ)
            + "\nRe-run with the store's settings, or harvest into a new run."
        )


def _sidecars_hint(root: Path, request: dict, origin: str) -> str:
    """When a found manifest differs from the request but the chunk sidecars record the request's plan,
    the manifest is the odd one out (copied from another store): say how to rebuild it."""
    if origin != "found":
        return ""
    try:
        rebuilt = recover(root, "").manifest
        if rebuilt is None:
            return ""
        _check_match(rebuilt, request, root)
    except StoreError:
        return ""
    return (f"\nThe chunk sidecars in {root} record this request's plan, so {MANIFEST} is not this store's: move it "
            "away and re-run; the harvest rebuilds it from the sidecars.")


def context_tokens(config: HarvestConfig, series, corpus, request: dict, out: np.ndarray | None = None) -> np.ndarray:
    """int32 [n_contexts, context_len]: train contexts, then held-out contexts (packed into ``out``,
    a zero-filled array of that shape such as a memory-mapped file, when given)."""
    tokenizer = series.load_tokenizer(series.revisions[-1])
    n_train = request["splits"]["train"][1]
    n_heldout = request["splits"]["heldout"][1] - n_train
    T = request["context_len"]
    if corpus.heldout is not None:
        parts = (out[:n_train], out[n_train:]) if out is not None else (None, None)
        train = pack_contexts(iter_documents(corpus.train, corpus.kind, corpus.text_column), tokenizer, n_train, T,
                              config.bos_per_context, name=f"corpus {corpus.train}", out=parts[0])
        heldout = pack_contexts(iter_documents(corpus.heldout, corpus.kind, corpus.text_column), tokenizer, n_heldout, T,
                                config.bos_per_context, name=f"held-out corpus {corpus.heldout}", out=parts[1])
        return out if out is not None else np.concatenate([train, heldout])
    return pack_contexts(iter_documents(corpus.train, corpus.kind, corpus.text_column), tokenizer, n_train + n_heldout, T,
                         config.bos_per_context, name=f"corpus {corpus.train} (train + held-out tokens)", out=out)


class Chunk:
    """One chunk's activations in the storage dtype, ``data: [rows, d]``, with its statistics."""

    def __init__(self, data: np.ndarray, norm_sum: float, max_abs: float):
        self.data, self.norm_sum, self.max_abs = data, norm_sum, max_abs


def compute_chunk(model, tokens: np.ndarray, layer: int, first: int, batch_size: int, device, dtype: str = "float16",
                  revision: str = "?", on_batch: Callable[[int], None] | None = None) -> Chunk:
    """Site activations of ``tokens [n, T]`` at positions ``first..T-1``, encoded to ``dtype`` (``[n*(T-first), d]``).

    Rounded on the device, so only 2 bytes per value cross to the host. The row-norm sum
    (for the scale) is taken of the stored (rounded) values, in float64, batch by batch in order.
    ``on_batch(contexts)``, if given, is called after each batch (a progress bar's step).
    """
    torch_dtype = DTYPES[dtype][1]
    rows_per_context = tokens.shape[1] - first
    data = None
    norm_sum = torch.zeros((), dtype=torch.float64, device=device)
    max_abs = torch.zeros((), dtype=torch.float32, device=device)
    with torch.inference_mode():
        for b in range(0, len(tokens), batch_size):
            ids = torch.from_numpy(np.array(tokens[b : b + batch_size], dtype=np.int64)).to(device)
            h = read_site(model, ids, layer)[:, first:].float()
            h = h.reshape(-1, h.shape[-1])
            max_abs = torch.maximum(max_abs, h.abs().amax())  # NaN propagates
            stored = h.to(torch_dtype)
            norm_sum += torch.linalg.vector_norm(stored.float(), dim=-1).double().sum()
            out = encode(stored, dtype)
            if data is None:
                data = np.empty((len(tokens) * rows_per_context, h.shape[-1]), dtype=out.dtype)
            data[b * rows_per_context : b * rows_per_context + len(out)] = out
            if on_batch is not None:
                on_batch(len(ids))
    peak = float(max_abs)
    if not np.isfinite(peak):
        raise StoreError(f"checkpoint {revision} gives non-finite activations; check the model weights")
    if dtype == "float16" and peak > FP16_MAX:
        raise StoreError(
            f"checkpoint {revision} has |activation| up to {peak:.4g} at kept positions, beyond float16's range "
            f"({FP16_MAX:.0f}); harvest into a new store with --dtype bfloat16"
        )
    return Chunk(data, float(norm_sum), peak)


def write_chunk(root: Path, revision: str, index: int, chunk: Chunk, manifest: dict | None = None,
                 weights: dict | None = None) -> dict:
    """Write one chunk (bin, then sidecar; both under temporary names, then renamed); return the sidecar.

    The sidecar records the plan (``manifest``'s), the ``weights`` fingerprint, and the ``.bin``'s
    file record taken right after the rename: the bytes just hashed. Without a manifest (the
    benchmark of the chunk loop) it holds the statistics only."""
    bin_path, side_path = chunk_paths(root, revision, index)
    view = memoryview(np.ascontiguousarray(chunk.data)).cast("B")
    with atomic_path(bin_path) as tmp, open(tmp, "wb") as handle:
        handle.write(view)
    rows, sha = int(chunk.data.shape[0]), hashlib.sha256(view).hexdigest()
    if manifest is None:
        side = {"rows": rows, "sha256": sha, "norm_sum": chunk.norm_sum, "max_abs": chunk.max_abs}
    else:
        side = sidecar(manifest, revision, index, rows, sha, chunk.norm_sum, chunk.max_abs, weights,
                       file_record(os.stat(bin_path)))
    write_json(side_path, side)
    return side


def run_items(root: Path, items: list[tuple[str, int]], plan: list[list[int]], tokens: np.ndarray, load, layer: int,
              first: int, batch_size: int, device, dtype: str, progress=None, *, manifest: dict | None = None,
              weights: dict[str, dict] | None = None, on_batch: Callable[[int], None] | None = None) -> None:
    """Compute and write the (revision, chunk) ``items`` in order; ``load(rev)`` gives the model.
    ``progress(rev, i)`` is called when chunk ``i`` is computed, ``on_batch(contexts)`` after every batch.

    One writer thread hashes and writes chunk k while chunk k+1 is computed (at most two
    chunks in memory); a model is loaded when the revision changes. ``weights[rev]`` (filled
    by ``load``) goes into the sidecars with the plan of ``manifest``.
    """
    weights = {} if weights is None else weights
    model, model_rev = None, None
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        for rev, i in items:
            if model_rev != rev:
                model = None  # free the previous checkpoint first
                model, model_rev = load(rev), rev
            s, e = plan[i]
            chunk = compute_chunk(model, tokens[s:e], layer, first, batch_size, device, dtype, rev, on_batch)
            if pending is not None:
                pending.result()
            pending = writer.submit(write_chunk, root, rev, i, chunk, manifest, weights.get(rev))
            if progress is not None:
                progress(rev, i)
        if pending is not None:
            pending.result()


# the order of a checkpoint's entry in the manifest, however it was assembled (harvested, resumed, recovered)
ENTRY_KEYS = ("status", "chunks_done", "n_chunks", "step", "tokens_seen", "fingerprint", "model_dtype", "scale",
              "mean_norm", "max_abs", "checksums")


def order_checkpoints(manifest: dict, series) -> None:
    """Checkpoints in series order, with their steps and tokens, each entry's keys in :data:`ENTRY_KEYS` order."""
    known = {c.revision: c for c in series.checkpoints}
    revs = sorted(manifest["checkpoints"], key=lambda r: series.revisions.index(r) if r in known else len(known))
    manifest["checkpoints"] = {r: manifest["checkpoints"][r] for r in revs}
    for r in revs:
        entry = manifest["checkpoints"][r]
        if r in known:
            entry.update({"step": known[r].step, "tokens_seen": known[r].tokens})
        rank = {k: i for i, k in enumerate(ENTRY_KEYS)}
        manifest["checkpoints"][r] = dict(sorted(entry.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    manifest["revisions"] = [r for r in revs if manifest["checkpoints"][r].get("status") == "complete"]


@dataclass
class Checked:
    """What :func:`check_request` found: the request and the store it goes into.

    ``origin``: ``"found"`` (a readable manifest), ``"recovered"`` (rebuilt from the sidecars),
    ``"given"`` (a store whose plan is lost, taken from the settings given), ``"none"`` (a new store)."""

    series: object
    revisions: list[str]
    d: int
    context_len: int
    corpus: Corpus
    corpus_spec: str
    request: dict
    existing: dict | None
    origin: str


def _pack_tokens(root: Path, config: HarvestConfig, c: Checked, must_equal: str | None, refusal: str) -> str:
    """Pack the corpus into ``tokens.npy`` (atomically); return its sha256. When ``must_equal`` is given
    and the packed tokens differ, nothing is written and :class:`StoreError` says ``refusal``."""
    tokens = context_tokens(config, c.series, c.corpus, c.request)
    root.mkdir(parents=True, exist_ok=True)
    with atomic_path(root / TOKENS) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, tokens)
        sha = sha256_file(tmp)
        if must_equal is not None and sha != must_equal:
            raise StoreError(refusal)
    return sha


def _new_manifest(root: Path, config: HarvestConfig, c: Checked) -> dict:
    """Tokens and manifest of a new plan; an existing ``tokens.npy`` (a store whose manifest is lost) is
    kept only if the settings given pack the very same tokens."""
    path = root / TOKENS
    old = sha256_file(path) if path.is_file() else None
    sha = _pack_tokens(root, config, c, old, f"{path} holds other tokens than the settings given pack from the "
                                              "corpus, so they are not this store's settings; give the settings it was "
                                              "harvested with (and --corpus), or move the store away and harvest anew")
    n_contexts = c.request["n_contexts"]
    plan = {**c.request, "corpus_spec": str(Path(c.corpus_spec).resolve()),
            "n_tokens": n_contexts * c.context_len,
            "n_rows": n_contexts * (c.context_len - c.request["first_position"]), "tokens_sha256": sha}
    return new_manifest(plan, file_record(os.stat(path)))


def _check_tokens(root: Path, config: HarvestConfig, c: Checked, manifest: dict) -> None:
    """An existing store's ``tokens.npy``: unchanged since recorded, or hashing to ``tokens_sha256``;
    a missing or damaged one is re-packed from the corpus and kept if it matches, else refused."""
    path = root / TOKENS
    if path.is_file() and (file_record(os.stat(path)) == manifest.get("tokens_file")
                           or sha256_file(path) == manifest["tokens_sha256"]):
        manifest["tokens_file"] = file_record(os.stat(path))
        return
    state = "damaged" if path.exists() else "missing"
    _pack_tokens(root, config, c, manifest["tokens_sha256"],
                 f"{path} is {state}, and the corpus {c.corpus_spec} no longer packs the tokens the store was "
                 "harvested from (their checksum differs), so the store cannot be repaired in place: harvest a new "
                 "store (another run, or move this one away)")
    manifest["tokens_file"] = file_record(os.stat(path))


def _drop_damaged(root: Path, manifest: dict, revisions: list[str], verify: bool) -> None:
    """Delete this plan's damaged chunks (size, seal or sha256 wrong) of ``revisions``, and temp files."""
    for rev in revisions:
        for i in range(len(manifest["chunks"])):
            bin_path, side_path = chunk_paths(root, rev, i)
            if (bin_path.exists() or side_path.exists()) and read_sidecar(
                    root, rev, i, chunk_rows(manifest, i), manifest["d_model"], manifest["dtype"], verify) is None:
                bin_path.unlink(missing_ok=True)
                side_path.unlink(missing_ok=True)
        remove_stale_temps(root / rev)  # left by a killed writer (a live process's are left alone)
    remove_stale_temps(root)


def prepare_store(root: Path, config: HarvestConfig, c: Checked) -> None:
    """Rank 0: the manifest (found, rebuilt, or new with its tokens) and checked tokens; refuse chunks of
    another plan; delete damaged chunks of the checkpoints about to be harvested; write the manifest."""
    manifest = c.existing
    if manifest is None:
        manifest = _new_manifest(root, config, c)
    else:
        _check_tokens(root, config, c, manifest)
    foreign_chunks(root, manifest, vouched=c.origin == "found")
    for rev in c.revisions:
        manifest["checkpoints"].setdefault(rev, {"status": "pending"})
    _drop_damaged(root, manifest, c.revisions, config.verify)
    summarise(root, manifest, c.revisions, final=False)
    order_checkpoints(manifest, c.series)
    write_manifest(root, manifest)


def check_request(config: HarvestConfig) -> Checked:
    """1.-2. Everything that can fail before work: the series, revisions, layer, corpus, and the
    existing store's plan (found, rebuilt from the sidecars, or given) and its agreement with the request."""
    series, revisions, d, _depth, context_len = _resolve(config)
    existing, why, origin = store_state(config.out)
    if why is not None:
        required_flags(config, why)
        origin = "given"
    corpus_spec = config.corpus
    if corpus_spec is None:
        if not series.is_local:
            raise StoreError("--corpus is required for a hub series (a .txt, .jsonl or saved dataset folder)")
        corpus_spec = str(series.local_root)
    corpus = resolve_corpus(corpus_spec, config.text_column)
    request = _request(config, series, d, context_len, corpus)
    if existing is not None:
        try:
            _check_match(existing, request, config.out)
        except StoreError as err:
            raise StoreError(f"{err}{_sidecars_hint(config.out, request, origin)}") from None
        old = [r for r in existing["checkpoints"] if r not in revisions]
        if old:  # a new checkpoint must share width and tokenizer with those already stored
            series.check_compatible([*old, *revisions])
        request["chunk_contexts"] = existing["chunk_contexts"]
    return Checked(series, revisions, d, context_len, corpus, corpus_spec, request, existing, origin)


def harvest_store(config: HarvestConfig, w: distributed.World, c: Checked):

    root = config.out
    try:
        if w.is_main:  # 3.-4. tokens, manifest and the check of chunks on disk, once
            prepare_store(root, config, c)
        distributed.barrier()
        _run_share(config, w, c.series, c.revisions, c.d, c.context_len)
        distributed.barrier()
        if w.is_main:  # 6. totals
            manifest = summarise(root, read_manifest(root), c.revisions, final=True)
            order_checkpoints(manifest, c.series)
            write_manifest(root, manifest)
            _warn_identical(manifest, c.series.source)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise _disk_full(root, c.revisions, err) from err
    distributed.barrier()
    return ActivationStore(root)


def _disk_full(root: Path, revisions: list[str], err: OSError) -> StoreError:
    """The error of a harvest stopped by a full disk: where, what was kept, how to resume."""
    try:
        manifest = read_manifest(root)
    except StoreError:
        manifest = None
    if manifest is None:
        kept = "nothing (the store's tokens could not be written)"
    else:
        n = len(manifest["chunks"])
        done = {rev: sum(read_sidecar(root, rev, i, chunk_rows(manifest, i), manifest["d_model"], manifest["dtype"])
                         is not None for i in range(n)) for rev in revisions}
        kept = ", ".join(f"{rev} {k}/{n} chunks" for rev, k in done.items())
    free = shutil.disk_usage(root if root.exists() else root.parent).free
    return StoreError(f"disk full while writing {err.filename or root} ({free / 2**20:.1f} MiB free on that disk). "
                      f"Kept: {kept}; every kept chunk is complete, the one being written was removed. Free space "
                      "(or harvest into a run on a larger disk), then re-run the same command: it resumes from the "
                      "kept chunks.")


def _warn_identical(manifest: dict, source: str) -> None:
    """Warn, naming them, when checkpoints of the store have the same weight fingerprint."""
    groups: dict[tuple, list[str]] = {}
    for rev, entry in manifest["checkpoints"].items():
        if entry.get("fingerprint"):
            groups.setdefault((entry["fingerprint"], entry.get("model_dtype")), []).append(rev)
    for (fingerprint, _dtype), revs in groups.items():
        if len(revs) > 1:
            warnings.warn(f"checkpoints {' and '.join(revs)} of {source} have identical weights (fingerprint "
                          f"{fingerprint}): the series may serve one checkpoint's weights under two names: check "
                          "those revisions at their source before comparing them", stacklevel=4)


def check_weights(root: Path, entry: dict, revision: str, model, model_dtype: str, source: str) -> dict:
    """``{fingerprint, model_dtype}`` of a loaded checkpoint; refused when its chunks on disk were
    computed from other weights (the branch changed under the store) or in another model dtype."""
    weights = {"fingerprint": weights_fingerprint(model), "model_dtype": model_dtype}
    recorded = entry.get("fingerprint")
    if recorded is None:
        return weights
    if entry.get("model_dtype") != model_dtype:
        raise StoreError(f"the chunks of {revision} in {root} were computed with --model-dtype "
                         f"{entry.get('model_dtype')}; re-run with --model-dtype {entry.get('model_dtype')} (or move "
                         f"{root / revision} away to harvest {revision} again in {model_dtype})")
    if recorded != weights["fingerprint"]:
        raise StoreError(f"the weights of {revision} in {source} are not those its chunks in {root} were computed "
                         f"from (fingerprint {weights['fingerprint']} now, {recorded} recorded): the checkpoint "
                         f"changed under the store. Harvest into a new run, or move {root / revision} away to "
                         "harvest the new weights")
    return weights


def _run_share(config: HarvestConfig, w: distributed.World, series, revisions: list[str], d: int,
               context_len: int) -> None:
    """5. This rank's contiguous share of the (checkpoint, chunk) items not on disk yet."""

    root = config.out
    manifest = read_manifest(root)
    tokens = np.load(root / TOKENS, mmap_mode="r")
    first = manifest["first_position"]
    plan = manifest["chunks"]
    todo = [(rev, i) for rev in revisions for i in range(len(plan))
            if read_sidecar(root, rev, i, chunk_rows(manifest, i), d, config.dtype) is None]
    bounds = np.linspace(0, len(todo), w.size + 1).round().astype(int)
    mine = todo[bounds[w.rank] : bounds[w.rank + 1]]
    device = distributed.resolve_device(config.device, w.local_rank)
    bar = Bar(total=sum((plan[i][1] - plan[i][0]) * context_len for _, i in mine), unit="tok", unit_scale=True,
               desc=f"harvest L{config.layer}", disable=not (config.progress and w.is_main), dynamic_ncols=True)
    last_summary = [time.monotonic()]
    weights: dict[str, dict] = {}

    def batch_done(contexts: int) -> None:  # the bar moves per batch: a chunk can take a minute under load
        bar.update(contexts * context_len)

    def progress(rev: str, i: int) -> None:
        if w.is_main and w.size == 1 and time.monotonic() - last_summary[0] > 10:
            write_manifest(root, summarise(root, manifest, revisions, final=False))
            last_summary[0] = time.monotonic()

    def load(rev: str):
        bar.set_postfix_str(rev)
        model = series.load_model(rev, dtype=config.model_dtype, device=device)
        weights[rev] = check_weights(root, manifest["checkpoints"].get(rev, {}), rev, model, config.model_dtype,
                                      series.source)
        return model

    run_items(root, mine, plan, tokens, load, config.layer, first, config.batch_size, device, config.dtype, progress,
              manifest=manifest, weights=weights, on_batch=batch_done)
    bar.close()
