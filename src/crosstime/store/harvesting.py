"""Harvest: run each checkpoint once over the store's tokens and write its site activations.

    harvest(HarvestConfig(series=..., revisions=[...], layer=L, corpus=..., tokens=N, out=STORE))

Order of work (every check that can fail happens before any model runs):

1. open the series, check the revisions, their shared width and tokenizer, and the layer;
2. if STORE exists, check that its manifest matches the request (else a clear error);
3. rank 0 packs the corpus into ``tokens.npy`` (once per store) and writes the manifest;
4. rank 0 checks the chunks already on disk (size and sha256) and deletes damaged ones;
5. the missing (checkpoint, chunk) items are split into contiguous shares, one per rank
   (so a rank loads few models); each item runs the forward pass stopped after block L on
   ``batch_size`` contexts at a time, in inference mode, and writes ``<revision>/<chunk>.bin``
   and its sidecar under temporary names, then renames them;
6. rank 0 sums the sidecars into the manifest: per-checkpoint scale, checksums, status.

A kill at any point loses at most the chunks in flight; re-running the same command redoes
exactly those. The bytes written depend only on the chunk (same batches, same order), so a
resumed, a distributed and an uninterrupted harvest give identical stores.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from crosstime import distributed, stage
from crosstime.files import atomic_path, write_json
from crosstime.series import SeriesError, open_series
from crosstime.sites import LayerOutOfRange, read_site
from crosstime.stage import DEVICE_HELP, Count, Device, StageConfig
from crosstime.store.corpus import iter_documents, pack_contexts, resolve_corpus
from crosstime.store.layout import (
    DTYPES,
    FORMAT,
    FP16_MAX,
    MANIFEST,
    TOKENS,
    VERSION,
    StoreError,
    chunk_paths,
    chunk_plan,
    encode,
    itemsize,
    read_manifest,
    read_sidecar,
    scale_from_sidecars,
    sha256_file,
)


class HarvestConfig(StageConfig):
    """Settings of the harvest stage: RUN/activations (shared by ``crosstime harvest`` and the Python API).

    Settings left unset come from the store already in RUN/activations (so adding a
    checkpoint needs only the series, revisions and layer), else from the defaults."""

    stage: ClassVar[str] = "harvest"
    execution: ClassVar[frozenset[str]] = frozenset({"batch_size", "device", "verify"})

    series: str = Field(description="checkpoint series: a local series folder or a hub id")
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
    verify: bool = Field(True, description="check sha256 of chunks already on disk before resuming")

    @property
    def out(self) -> Path:
        """The store folder, RUN/activations."""
        return self.rundir.activations

    def output(self) -> Path:
        return self.out / MANIFEST

    def resolved(self) -> HarvestConfig:
        return resolve_config(self)


DEFAULTS = {"tokens": 1_000_000, "keep_first_position": False, "dtype": "float16"}


def resolve_config(config: HarvestConfig) -> HarvestConfig:
    """Fill the settings left unset: from the store already at ``config.out`` (so appending a
    checkpoint needs only the series, revisions, layer and out), else the defaults."""
    existing = read_manifest(config.out)
    update = {}
    if existing is not None:
        T = existing["context_len"]
        (_, n_train), (_, n_total) = existing["splits"]["train"], existing["splits"]["heldout"]
        stored = {"tokens": n_train * T, "heldout_tokens": (n_total - n_train) * T, "context_len": T,
                  "keep_first_position": existing["first_position"] == 0, "dtype": existing["dtype"],
                  "chunk_contexts": existing["chunk_contexts"], "corpus": existing.get("corpus_spec")}
        update = {k: v for k, v in stored.items() if getattr(config, k) is None}
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
        stored = read_manifest(config.out)
        names = [*(stored["checkpoints"] if stored else []), *config.revisions]
        return open_series(config.series, revisions=list(dict.fromkeys(names)))


def _resolve(config: HarvestConfig) -> tuple:
    """Validate the request against the series; return (series, revisions, d, n_layers, context_len)."""
    series = _open_series(config)
    requested = config.revisions or series.revisions
    if not requested:
        raise StoreError("no revisions to harvest; pass --revisions")
    revisions = [c.revision for c in series.select(revisions=requested)]  # unknown names raise SeriesError
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
            f"the store at {root} does not match this request:\n  " + "\n  ".join(differ)
            + "\nRe-run with the store's settings, or harvest into a new --out folder."
        )


def _tokens(config: HarvestConfig, series, corpus, request: dict) -> np.ndarray:
    """int32 [n_contexts, context_len]: train contexts, then held-out contexts."""
    tokenizer = series.load_tokenizer(series.revisions[-1])
    n_train = request["splits"]["train"][1]
    n_heldout = request["splits"]["heldout"][1] - n_train
    T = request["context_len"]
    if corpus.heldout is not None:
        train = pack_contexts(iter_documents(corpus.train, corpus.kind, corpus.text_column), tokenizer, n_train, T,
                              config.bos_per_context, name=f"corpus {corpus.train}")
        heldout = pack_contexts(iter_documents(corpus.heldout, corpus.kind, corpus.text_column), tokenizer, n_heldout, T,
                                config.bos_per_context, name=f"held-out corpus {corpus.heldout}")
        return np.concatenate([train, heldout])
    return pack_contexts(iter_documents(corpus.train, corpus.kind, corpus.text_column), tokenizer, n_train + n_heldout, T,
                         config.bos_per_context, name=f"corpus {corpus.train} (train + held-out tokens)")


class Chunk:
    """One chunk's activations in the storage dtype, ``data: [rows, d]``, with its statistics."""

    def __init__(self, data: np.ndarray, norm_sum: float, max_abs: float):
        self.data, self.norm_sum, self.max_abs = data, norm_sum, max_abs


def compute_chunk(model, tokens: np.ndarray, layer: int, first: int, batch_size: int, device, dtype: str = "float16",
                  revision: str = "?") -> Chunk:
    """Site activations of ``tokens [n, T]`` at positions ``first..T-1``, encoded to ``dtype`` (``[n*(T-first), d]``).

    Rounded on the device, so only 2 bytes per value cross to the host. The row-norm sum
    (for the scale) is taken of the stored (rounded) values, in float64, batch by batch in order.
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
    peak = float(max_abs)
    if not np.isfinite(peak):
        raise StoreError(f"checkpoint {revision} gives non-finite activations; check the model weights")
    if dtype == "float16" and peak > FP16_MAX:
        raise StoreError(
            f"checkpoint {revision} has |activation| up to {peak:.4g} at kept positions, beyond float16's range "
            f"({FP16_MAX:.0f}); harvest into a new store with --dtype bfloat16"
        )
    return Chunk(data, float(norm_sum), peak)


def _write_chunk(root: Path, revision: str, index: int, chunk: Chunk) -> dict:
    """Write one chunk (bin, then sidecar; both under temporary names, then renamed); return the sidecar."""
    bin_path, side_path = chunk_paths(root, revision, index)
    view = memoryview(np.ascontiguousarray(chunk.data)).cast("B")
    with atomic_path(bin_path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(view)
    side = {"rows": int(chunk.data.shape[0]), "sha256": hashlib.sha256(view).hexdigest(),
            "norm_sum": chunk.norm_sum, "max_abs": chunk.max_abs}
    write_json(side_path, side)
    return side


def run_items(root: Path, items: list[tuple[str, int]], plan: list[list[int]], tokens: np.ndarray, load, layer: int,
              first: int, batch_size: int, device, dtype: str, progress=None) -> None:
    """Compute and write the (revision, chunk) ``items`` in order; ``load(rev)`` gives the model.

    One writer thread hashes and writes chunk k while chunk k+1 is computed (at most two
    chunks in memory); a model is loaded when the revision changes.
    """
    model, model_rev = None, None
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        for rev, i in items:
            if model_rev != rev:
                model = None  # free the previous checkpoint first
                model, model_rev = load(rev), rev
            s, e = plan[i]
            chunk = compute_chunk(model, tokens[s:e], layer, first, batch_size, device, dtype, rev)
            if pending is not None:
                pending.result()
            pending = writer.submit(_write_chunk, root, rev, i, chunk)
            if progress is not None:
                progress(rev, i)
        if pending is not None:
            pending.result()


def _summarise(root: Path, manifest: dict, revisions: list[str], final: bool) -> dict:
    """Refresh the per-checkpoint state in the manifest from the sidecars on disk."""
    plan = manifest["chunks"]
    rpc = manifest["context_len"] - manifest["first_position"]
    n_train = manifest["splits"]["train"][1]
    for rev in revisions:
        sides = [read_sidecar(root, rev, i, (e - s) * rpc, manifest["d_model"], manifest["dtype"]) for i, (s, e) in enumerate(plan)]
        done = [s for s in sides if s is not None]
        entry = manifest["checkpoints"].setdefault(rev, {})
        entry.update({"status": "partial", "chunks_done": len(done), "n_chunks": len(plan)})
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


def _order(manifest: dict, series) -> None:
    known = {c.revision: c for c in series.checkpoints}
    revs = sorted(manifest["checkpoints"], key=lambda r: series.revisions.index(r) if r in known else len(known))
    manifest["checkpoints"] = {r: manifest["checkpoints"][r] for r in revs}
    for r in revs:
        if r in known:
            manifest["checkpoints"][r].update({"step": known[r].step, "tokens_seen": known[r].tokens})
    manifest["revisions"] = [r for r in revs if manifest["checkpoints"][r].get("status") == "complete"]


def _prepare(root: Path, config: HarvestConfig, series, corpus, corpus_spec: str, request: dict, existing: dict | None,
             revisions: list[str], d: int, context_len: int) -> None:
    """Rank 0: write tokens.npy and the manifest (new store), or check the tokens (existing store);
    delete damaged chunks and temporary files of the checkpoints about to be harvested."""
    manifest = existing
    if manifest is None or not (root / TOKENS).is_file():
        tokens = _tokens(config, series, corpus, request)
        root.mkdir(parents=True, exist_ok=True)
        with atomic_path(root / TOKENS) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, tokens)
        manifest = {"format": FORMAT, "version": VERSION, **request, "corpus_spec": str(Path(corpus_spec).resolve()),
                    "n_tokens": int(tokens.size), "n_rows": int(len(tokens) * (context_len - request["first_position"])),
                    "chunks": chunk_plan(request["splits"]["train"][1], len(tokens) - request["splits"]["train"][1],
                                         request["chunk_contexts"]),
                    "tokens_sha256": sha256_file(root / TOKENS), "checkpoints": {}, "revisions": []}
    elif config.verify and sha256_file(root / TOKENS) != manifest["tokens_sha256"]:
        raise StoreError(f"{root / TOKENS} does not match its checksum in the manifest; the store is damaged. "
                         "Harvest into a new --out folder.")
    for rev in revisions:
        manifest["checkpoints"].setdefault(rev, {"status": "pending"})
    # 4. drop damaged chunks of the checkpoints we are about to (re)harvest
    rpc = context_len - manifest["first_position"]
    for rev in revisions:
        for i, (s, e) in enumerate(manifest["chunks"]):
            bin_path, side_path = chunk_paths(root, rev, i)
            if (bin_path.exists() or side_path.exists()) and read_sidecar(
                    root, rev, i, (e - s) * rpc, d, config.dtype, check_hash=config.verify) is None:
                bin_path.unlink(missing_ok=True)
                side_path.unlink(missing_ok=True)
        for stale in (root / rev).glob(".*.tmp-*") if (root / rev).is_dir() else []:
            stale.unlink(missing_ok=True)  # left by a killed writer
    for stale in root.glob(".*.tmp-*"):
        stale.unlink(missing_ok=True)
    _summarise(root, manifest, revisions, final=False)
    _order(manifest, series)
    write_json(root / MANIFEST, manifest)


def harvest(config: HarvestConfig):
    """Harvest the site activations of ``config.revisions`` into ``config.out``; return the store.

    Works alone or under ``torchrun`` (every rank calls it with the same config). Everything
    that can fail without work is checked first; then the main rank holds the run's lock.
    """
    w = distributed.join(distributed.resolve_device(config.device))
    checked = _check_request(resolve_config(config))
    with stage.writing(config) as resolved:
        store = _harvest(resolve_config(config), w, checked)
        resolved["revisions"] = store.revisions  # every checkpoint the store now holds
    return store


def _check_request(config: HarvestConfig) -> tuple:
    """1.-2. Everything that can fail before work: the series, revisions, layer, corpus, and the
    existing store's agreement with the request. Returns (series, revisions, d, context_len,
    corpus, corpus_spec, request, existing manifest or None)."""
    series, revisions, d, _depth, context_len = _resolve(config)
    corpus_spec = config.corpus
    if corpus_spec is None:
        if not series.is_local:
            raise StoreError("--corpus is required for a hub series (a .txt, .jsonl or saved dataset folder)")
        corpus_spec = str(series.local_root)
    corpus = resolve_corpus(corpus_spec, config.text_column)
    request = _request(config, series, d, context_len, corpus)
    existing = read_manifest(config.out)
    if existing is not None:
        _check_match(existing, request, config.out)
        old = [r for r in existing["checkpoints"] if r not in revisions]
        if old:  # a new checkpoint must share width and tokenizer with those already stored
            series.check_compatible([*old, *revisions])
        request["chunk_contexts"] = existing["chunk_contexts"]
    return series, revisions, d, context_len, corpus, corpus_spec, request, existing


def _harvest(config: HarvestConfig, w: distributed.World, checked: tuple):
    from crosstime.store.reader import ActivationStore

    root = config.out
    series, revisions, d, context_len, corpus, corpus_spec, request, existing = checked
    if w.is_main:  # 3.-4. tokens, manifest and the check of chunks on disk, once
        _prepare(root, config, series, corpus, corpus_spec, request, existing, revisions, d, context_len)
    distributed.barrier()
    _run_share(config, w, series, revisions, d, context_len)
    distributed.barrier()
    if w.is_main:  # 6. totals
        manifest = _summarise(root, read_manifest(root), revisions, final=True)
        _order(manifest, series)
        write_json(root / MANIFEST, manifest)
    distributed.barrier()
    return ActivationStore(root)


def _run_share(config: HarvestConfig, w: distributed.World, series, revisions: list[str], d: int,
               context_len: int) -> None:
    """5. This rank's contiguous share of the (checkpoint, chunk) items not on disk yet."""
    from tqdm.auto import tqdm

    root = config.out
    manifest = read_manifest(root)
    tokens = np.load(root / TOKENS, mmap_mode="r")
    first = manifest["first_position"]
    rpc = context_len - first
    plan = manifest["chunks"]
    todo = [(rev, i) for rev in revisions for i, (s, e) in enumerate(plan)
            if read_sidecar(root, rev, i, (e - s) * rpc, d, config.dtype) is None]
    bounds = np.linspace(0, len(todo), w.size + 1).round().astype(int)
    mine = todo[bounds[w.rank] : bounds[w.rank + 1]]
    device = distributed.resolve_device(config.device, w.local_rank)
    bar = tqdm(total=sum((plan[i][1] - plan[i][0]) * context_len for _, i in mine), unit="tok", unit_scale=True,
               desc=f"harvest L{config.layer}", disable=not (config.progress and w.is_main), dynamic_ncols=True)
    last_summary = [time.monotonic()]

    def progress(rev: str, i: int) -> None:
        bar.update((plan[i][1] - plan[i][0]) * context_len)
        if w.is_main and w.size == 1 and time.monotonic() - last_summary[0] > 10:
            write_json(root / MANIFEST, _summarise(root, manifest, revisions, final=False))
            last_summary[0] = time.monotonic()

    def load(rev: str):
        bar.set_postfix_str(rev)
        return series.load_model(rev, dtype=config.model_dtype, device=device)

    run_items(root, mine, plan, tokens, load, config.layer, first, config.batch_size, device, config.dtype, progress)
    bar.close()
