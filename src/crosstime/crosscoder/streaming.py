"""Streaming training: the checkpoints stay loaded and feed a shuffled buffer; no store on disk.

    train(TrainConfig(run="runs/x", series="toy", layer=1, revisions=["step0", "step512"], tokens=1_000_000))
    crosstime train RUN --series SERIES --revisions A,B --layer L --tokens N [--keep-store]

The tokens are those a store of the same settings holds: the harvest's own request check and
corpus packing (:mod:`crosstime.store.harvesting`) give the contexts, the train/held-out split
and position-0 treatment, and its :func:`~crosstime.store.harvesting.compute_chunk` computes
every chunk (same forward pass, same float16 rounding). The train split is cut into chunks of
``buffer_rows × refill_frac`` rows; :class:`~crosstime.crosscoder.data.StreamSource` keeps
``1/refill_frac`` of them in memory and refills one as soon as it is used up, and the
unchanged :class:`~crosstime.crosscoder.training.Trainer` trains from it. The batches are a
function of ``(seed, step)`` (the corpus position is the round the step falls in), so a killed
run re-run with the same command resumes to the same weights; the data fingerprint in the
resume state records the buffer settings and the tokens' checksum.

Overlap: the harvest's forward passes and the training steps run side by side. When a round
of the buffer starts, the chunk the next round loads is computed in a background thread (the
producer: :meth:`Harvester.ahead`) while the trainer consumes the round; torch's CPU threads are
halved meanwhile (:func:`shared_cores`), so the two do not oversubscribe the cores. The chunks
and the batches are those of the sequential order (``Harvester(config, overlap=False)``): the
producer only moves *when* a chunk is computed. Its thread count is not the sequential run's,
so on the CPU the float32 sums in the forward and the step may round differently (weights equal
for a fixed seed and thread count, as before; a resumed run equals an uninterrupted one).

Memory: the models, the buffer (``buffer_rows × M × d × 2`` bytes) and one chunk being computed
ahead (``refill_frac × buffer_rows`` rows): at most ``(1 + refill_frac) × buffer_rows × M × d × 2``
bytes of activations; never the activations of all N tokens, nor their token ids (packed into
``RUN/crosscoder/stream-tokens.npy``, 4 bytes per token on disk, and memory-mapped).

``keep_store``: every chunk harvested in the first epoch is also written, as the harvest
writes it, into RUN/activations (chunking = the buffer's); when training ends the chunks not
visited (the rest of the train split, the held-out split) are harvested and the manifest is
summarised, so RUN/activations is a normal store; the train stage's record vouches for it
(:mod:`crosstime.stages.train`: streaming with ``keep_store`` writes the activations artifact too).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from crosstime import distributed
from crosstime.crosscoder.data import StreamSource
from crosstime.crosscoder.model import Crosscoder
from crosstime.crosscoder.settings import TrainConfig
from crosstime.crosscoder.training import Trainer
from crosstime.errors import CrosstimeError
from crosstime.store import HarvestConfig, resolve_config
from crosstime.store.harvesting import (
    check_request,
    check_weights,
    compute_chunk,
    context_tokens,
    order_checkpoints,
    prepare_store,
    write_chunk,
)
from crosstime.store.layout import (
    TOKENS,
    chunk_paths,
    chunk_plan,
    read_manifest,
    summarise,
    write_manifest,
)


class StreamError(CrosstimeError):
    """Streaming settings that cannot work; the message names the setting and the fix."""


def harvest_config(config: TrainConfig) -> HarvestConfig:
    """The harvest whose store holds exactly the tokens this streaming training sees."""
    return HarvestConfig(run=config.run, series=config.series, revisions=config.revisions, layer=config.layer,
                         corpus=config.corpus, tokens=config.tokens, context_len=config.context_len,
                         batch_size=config.harvest_batch_size, device=config.model_device or config.device,
                         progress=False)


STREAM_TOKENS = "stream-tokens.npy"  # the packed token ids of a streaming run, in RUN/crosscoder/


def _sha256_rows(tokens: np.ndarray, rows: int = 4096) -> str:
    """sha256 of ``tokens``' bytes in row-major order (a store's ``tokens_sha256``), block by block:
    a memory-mapped array is never read into memory whole."""
    digest = hashlib.sha256()
    for start in range(0, len(tokens), rows):
        digest.update(np.ascontiguousarray(tokens[start : start + rows]).tobytes())
    return digest.hexdigest()


class Harvester:
    """The loaded checkpoints and the packed corpus: computes chunk ``c`` of the train split on demand.

    ``chunk(c) -> (rows [R, M, d] in the storage dtype, row-norm sums [M])``."""

    def __init__(self, config: TrainConfig, overlap: bool = True):
        self.keep_store = config.keep_store
        self.tokens_file = config.rundir.crosscoder / STREAM_TOKENS
        refill = round(1 / config.refill_frac)
        self.hconfig = resolve_config(harvest_config(config))
        self.checked = check_request(self.hconfig)
        c = self.checked
        self.first = c.request["first_position"]
        rows_per_context = c.context_len - self.first
        n_train = c.request["splits"]["train"][1]
        # K chunks of a corpus smaller than the buffer: the first buffer then holds one epoch, not two
        chunk_contexts = min(config.buffer_rows // (refill * rows_per_context), max(1, n_train // refill))
        if chunk_contexts < 1:
            raise StreamError(f"--buffer-rows {config.buffer_rows} holds less than {refill} contexts of "
                              f"{rows_per_context} rows (1/refill_frac chunks of at least one context); raise "
                              f"--buffer-rows to {refill * rows_per_context} or more")
        if self.keep_store and c.existing is not None and c.existing["chunk_contexts"] != chunk_contexts:
            raise StreamError(f"{self.hconfig.out} holds a store in chunks of {c.existing['chunk_contexts']} "
                              f"contexts, the buffer's chunks are {chunk_contexts}; stream with --buffer-rows "
                              f"{c.existing['chunk_contexts'] * refill * rows_per_context} to add to it, or drop "
                              "--keep-store (or use a new run)")
        c.request["chunk_contexts"] = chunk_contexts
        self.hconfig = self.hconfig.model_copy(update={"chunk_contexts": chunk_contexts})
        self.revisions, self.d_model, self.dtype = c.revisions, c.d, self.hconfig.dtype
        self.layer, self.batch_size = self.hconfig.layer, self.hconfig.batch_size
        self.device = distributed.resolve_device(self.hconfig.device)
        (_, self.n_train), (_, n_total) = c.request["splits"]["train"], c.request["splits"]["heldout"]
        self.plan = chunk_plan(self.n_train, n_total - self.n_train, chunk_contexts)
        self.n_chunks = sum(start < self.n_train for start, _ in self.plan)
        self.tokens: np.ndarray | None = None
        self.models: dict[str, Any] = {}
        self.weights: dict[str, dict] = {}
        self._heldout: np.ndarray | None = None
        self.overlap = overlap
        self._producer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crosstime-harvest")
        self._ahead: tuple[int, Future] | None = None  # (chunk, its rows) being computed ahead

    def _pack_to_disk(self) -> np.ndarray:
        """The corpus's token ids packed into RUN/crosscoder/stream-tokens.npy and memory-mapped, so
        memory does not grow with --tokens (4 bytes per token on disk, as a store's tokens.npy).
        Re-packed on every start: packing is deterministic, and a file left by a killed run is
        simply overwritten (its checksum is compared with the resume state's)."""
        request = self.checked.request
        shape = (request["splits"]["heldout"][1], request["context_len"])
        self.tokens_file.parent.mkdir(parents=True, exist_ok=True)
        packed = np.lib.format.open_memmap(self.tokens_file, mode="w+", dtype=np.int32, shape=shape)
        context_tokens(self.hconfig, self.checked.series, self.checked.corpus, request, out=packed)
        packed.flush()
        del packed
        return np.load(self.tokens_file, mmap_mode="r")

    def prepare(self) -> None:
        """Pack the corpus (with ``keep_store``: RUN/activations' tokens and manifest) and load the models."""
        c, root = self.checked, self.hconfig.out
        if self.keep_store:
            prepare_store(root, self.hconfig, c)
            self.manifest = read_manifest(root)
            self.tokens = np.load(root / TOKENS, mmap_mode="r")
        else:
            self.tokens = self._pack_to_disk()
        self.tokens_sha256 = _sha256_rows(self.tokens)
        for rev in self.revisions:
            model = c.series.load_model(rev, dtype=self.hconfig.model_dtype, device=self.device)
            if self.keep_store:
                self.weights[rev] = check_weights(root, self.manifest["checkpoints"].get(rev, {}), rev, model,
                                                   self.hconfig.model_dtype, c.series.source)
            self.models[rev] = model

    def fingerprint(self) -> dict[str, Any]:
        return {"series": self.checked.series.source, "layer": self.layer, "revisions": self.revisions,
                "d_model": self.d_model, "tokens_sha256": self.tokens_sha256, "first_position": self.first,
                "chunk_contexts": self.checked.request["chunk_contexts"], "dtype": self.dtype,
                "rows": self.n_train * (self.checked.context_len - self.first)}

    def chunk_size(self, c: int) -> int:
        start, end = self.plan[c]
        return (end - start) * (self.checked.context_len - self.first)

    def _compute(self, rev: str, c: int):
        start, end = self.plan[c]
        return compute_chunk(self.models[rev], self.tokens[start:end], self.layer, self.first, self.batch_size,
                             self.device, self.dtype, rev)

    def _kept(self, rev: str, c: int) -> bool:
        return chunk_paths(self.hconfig.out, rev, c)[1].exists()  # the sidecar is renamed into place last

    def _keep(self, rev: str, c: int, chunk) -> None:
        if self.keep_store and not self._kept(rev, c):
            write_chunk(self.hconfig.out, rev, c, chunk, self.manifest, self.weights[rev])

    def ahead(self, c: int) -> None:
        """Start computing chunk c in the background thread (with ``overlap``; one chunk at a time), for
        the :meth:`chunk` call that will ask for it."""
        if self.overlap and self._ahead is None:
            self._ahead = (c, self._producer.submit(self._harvest, c))

    def chunk(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk c of every checkpoint: rows [R, M, d] (storage dtype) and their norm sums [M]; the one
        computed ahead when it is c (waiting for it to finish), else computed now."""
        pending, self._ahead = self._ahead, None
        if pending is not None:
            done = pending[1].result()  # never two harvests at once; a producer's error is raised here
            if pending[0] == c:
                return done
        return self._harvest(c)

    def close(self) -> None:
        """Wait for the chunk being computed ahead (its store chunk is written whole) and stop the thread.
        That chunk is never served: an error of its harvest is not raised here (it would hide the error
        that stopped training; ``finish_store`` harvests a chunk not kept again and raises it)."""
        if self._ahead is not None:
            self._ahead[1].exception()  # waits; the error stays with the unused chunk
            self._ahead = None
        self._producer.shutdown()

    def _harvest(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        parts, sums = [], []
        for rev in self.revisions:
            chunk = self._compute(rev, c)
            self._keep(rev, c, chunk)
            parts.append(chunk.data)
            sums.append(chunk.norm_sum)
        return np.stack(parts, axis=1), np.array(sums)

    def heldout(self, n_rows: int) -> np.ndarray:
        """The first ``n_rows`` rows (whole contexts) of the held-out split, [n, M, d], computed once."""
        if self._heldout is None or len(self._heldout) < n_rows:
            rows_per_context = self.checked.context_len - self.first
            n_total = self.checked.request["splits"]["heldout"][1]
            end = min(n_total, self.n_train + -(-n_rows // rows_per_context))
            tokens = self.tokens[self.n_train : end]
            self._heldout = np.stack([compute_chunk(self.models[rev], tokens, self.layer, self.first, self.batch_size,
                                                    self.device, self.dtype, rev).data for rev in self.revisions], axis=1)
        return self._heldout[:n_rows]

    def finish_store(self) -> None:
        """``keep_store``: harvest the chunks training did not visit, then summarise RUN/activations' manifest."""
        root = self.hconfig.out
        for rev in self.revisions:
            for c in range(len(self.plan)):
                if not self._kept(rev, c):
                    self._keep(rev, c, self._compute(rev, c))
        manifest = summarise(root, read_manifest(root), self.revisions, final=True)
        order_checkpoints(manifest, self.checked.series)
        write_manifest(root, manifest)


def check_streaming(world: distributed.World) -> None:
    """Streaming runs in one process (every rank would harvest every chunk)."""
    if world.distributed:
        raise StreamError("streaming training runs in one process (every rank would harvest every chunk); under "
                          "torchrun, harvest a store first (`crosstime harvest`) and train on it")


def train_streaming(harvester: Harvester, config: TrainConfig, world: distributed.World) -> Crosscoder:
    """Train from checkpoints kept loaded (see the module docstring): the train stage's streaming source
    (:mod:`crosstime.stages.train` holds the run and records what was written); with ``keep_store``,
    RUN/activations is completed once training ends."""
    harvester.prepare()
    source = StreamSource(harvester, config.batch_size, config.seed, config.refill_frac, config.normalise,
                          steps=config.total_steps())
    trainer = Trainer(config, source, config.rundir.crosscoder, world)
    trainer.resume()
    try:
        with shared_cores(harvester.overlap):
            model = trainer.run()
    finally:
        harvester.close()
    if config.keep_store:
        harvester.finish_store()
    return model


@contextlib.contextmanager
def shared_cores(overlap: bool) -> Iterator[int]:
    """Torch's CPU threads while the producer and the trainer run side by side: half of the threads set
    (at least 1) so the two together do not oversubscribe the cores (each caller of an op gets a team of
    that many threads); unchanged without ``overlap``; restored afterwards. Yields the count."""
    before = torch.get_num_threads()
    shared = max(1, before // 2) if overlap else before
    torch.set_num_threads(shared)
    try:
        yield shared
    finally:
        torch.set_num_threads(before)


def source_for(config: TrainConfig) -> StreamSource:
    """The stream a training with ``config`` reads (models loaded, first buffer harvested), for inspection."""
    harvester = Harvester(config)
    harvester.prepare()
    return StreamSource(harvester, config.batch_size, config.seed, config.refill_frac, config.normalise)
