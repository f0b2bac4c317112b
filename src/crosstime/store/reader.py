"""Reading an activation store: shuffled training batches, exact random access, held-out contexts.

Shuffling scheme (bounded memory, one pass per epoch, every row exactly once):

1. The split's rows are cut into *blocks* of ``block_rows`` consecutive rows (default: 8 KiB
   of one checkpoint's data, at least 8 rows: 32 rows at d = 128); blocks never straddle a
   chunk file.
2. The blocks are permuted by ``rng(seed, epoch)``; rank ``r`` of ``world_size`` takes blocks
   ``r, r + world_size, …`` of that order, so ranks get disjoint shares of every epoch.
3. A rank reads its blocks ``buffer_rows / block_rows`` at a time into a *window* (default
   2^18 rows, at most 256 MiB; blocks sorted by file offset, adjacent blocks merged into one
   ``pread`` per checkpoint), permutes the window's
   rows by ``rng(seed, epoch, rank, window)``, and the concatenation of the permuted windows
   is cut into batches of ``batch_size`` (a batch may span two windows).

So a batch is a uniform sample of one window, and a window gathers blocks from all over the
store; rows of one context meet in a batch only through one block (≈ batch_size /
window_blocks rows) unless two blocks of a context fall into one window. benchmarks/
bench_store.py measures the share of a batch coming from one context against a full
permutation. Everything is a deterministic function of (seed, epoch, rank, world_size), so
``skip_batches=k`` resumes at batch k without reading the skipped rows. Data are read with
``pread`` into one reusable window (the page cache is not charged to the process).

Every file is verified before its bytes are used (:mod:`crosstime.store.integrity`): a
damaged, truncated, replaced or missing chunk, sidecar or ``tokens.npy`` stops the read with
:class:`StoreError` naming the file and the fix. ``ActivationStore(path, verify=False)``
skips those checks; it exists only for benchmarks that measure their cost.
"""

from __future__ import annotations

import os
import shlex
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from crosstime.artifacts import ACTIVATIONS
from crosstime.files import sha256_file
from crosstime.names import check_name
from crosstime.store.integrity import Verifier
from crosstime.store.layout import (
    DTYPES,
    MANIFEST,
    TOKENS,
    ManifestDamaged,
    StoreError,
    StoreIndexError,
    chunk_paths,
    chunk_rows,
    decode,
    file_record,
    itemsize,
    load_sidecar,
    read_manifest,
    sidecar_fits,
)
from crosstime.store.recovery import has_content

SPLITS = ("train", "heldout")


def harvest_command(root: Path, manifest: dict) -> str:
    """The command that harvests more into (or repairs) the store at ``root``."""
    run = shlex.quote(str(root.parent)) if root.name == ACTIVATIONS else "RUN"
    return f"crosstime harvest {run} {shlex.quote(str(manifest['series']['source']))} --layer {manifest['site']['layer']}"


def _count(value, what: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else :class:`StoreError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise StoreError(f"{what} must be an integer >= {minimum}, not {value!r}")
    return int(value)


def _indices(values, what: str) -> np.ndarray:
    """Integer indices as int64 (floats would be truncated silently, booleans taken as 0/1)."""
    a = np.asarray(values)
    if a.size and a.dtype.kind not in "iu":
        raise StoreIndexError(f"{what} must be integers, not {a.dtype} values")
    return a.astype(np.int64)


class ActivationStore:
    """A harvested activation store (see :mod:`crosstime.store.layout`), opened read-only.

    ``.revisions`` lists the complete checkpoints in series order; ``.scales[rev]`` is
    ``s = sqrt(d) / E‖x‖`` over the train split's kept rows; ``.tokens`` is the memory-mapped
    ``int32 [n_contexts, context_len]`` token array. Every file is verified before its bytes
    are used; ``verify=False`` skips that (only for benchmarks measuring its cost).
    """

    def __init__(self, path: str | Path, verify: bool = True):
        # first: __del__ closes them even after an error. (revision, chunk) -> (fd, file record when verified)
        self._fds: OrderedDict[tuple[str, int], tuple[int, dict | None]] = OrderedDict()
        self._used: set[tuple[str, int]] = set()  # chunks read since the last _after_read
        self.root = Path(path)
        manifest = read_manifest(self.root)
        if manifest is None:
            if has_content(self.root):
                raise StoreError(f"{self.root / MANIFEST} is missing; re-run the harvest command that made the store "
                                 "(`crosstime harvest RUN SERIES --layer L`): it rebuilds it from the chunk sidecars")
            raise StoreError(f"{self.root} is not an activation store (no manifest.json); create one with `crosstime harvest`")
        self.manifest = manifest
        self._open_manifest(manifest)
        self.command = harvest_command(self.root, manifest)
        self._verifier = Verifier(self.root, manifest, self.command) if verify else None
        if self._verifier is not None:  # what this process hashed is recorded, even if close() is never called
            weakref.finalize(self, self._verifier.flush, True)
        self._tokens = None

    def _open_manifest(self, manifest: dict) -> None:
        """The manifest's fields as attributes; a version-1 manifest (no seal) is checked field by field."""
        try:
            self.d_model: int = manifest["d_model"]
            self.layer: int = manifest["site"]["layer"]
            self.dtype: str = manifest["dtype"]
            self.context_len: int = manifest["context_len"]
            self.first_position: int = manifest["first_position"]
            self.rows_per_context = self.context_len - self.first_position
            self.revisions: list[str] = [check_name(r, f"revision in {self.root / MANIFEST}") for r in manifest["revisions"]]
            self.scales: dict[str, float] = {r: manifest["checkpoints"][r]["scale"] for r in self.revisions}
            self.chunks = np.asarray(manifest["chunks"], dtype=np.int64).reshape(-1, 2)  # [n_chunks, 2] context ranges
            self._np_dtype = DTYPES[self.dtype][0]
            self.n_rows_total = int(manifest["n_contexts"]) * self.rows_per_context
        except (KeyError, TypeError, ValueError) as err:
            raise ManifestDamaged(f"{self.root / MANIFEST} is damaged ({type(err).__name__}: {err}); re-run the harvest "
                                  "command that made the store: it rebuilds the manifest from the chunk sidecars") from err
        if not all(isinstance(s, float) and np.isfinite(s) and s > 0 for s in self.scales.values()):
            raise ManifestDamaged(f"{self.root / MANIFEST} has scales that are not finite positive numbers ({self.scales}); "
                                  "re-run the harvest command that made the store")

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.root)!r}, layer={self.layer}, d={self.d_model}, revisions={self.revisions}, "
                f"train_rows={self.n_rows('train')}, heldout_rows={self.n_rows('heldout')}, dtype={self.dtype})")

    def summary(self) -> str:
        """One line for a person (``crosstime harvest`` and the demo print it): checkpoints, site, rows,
        size on disk, scales."""
        rows = self.n_rows("train") + self.n_rows("heldout")
        return (f"{self.root}: {', '.join(self.revisions)}; layer {self.layer}, d={self.d_model}, "
                f"{self.n_rows('train'):,} train + {self.n_rows('heldout'):,} held-out rows, "
                f"{self.bytes_per_token:.0f} bytes/token ({rows * self.bytes_per_token / 1e6:,.0f} MB), scales "
                + ", ".join(f"{r}={s:.4g}" for r, s in self.scales.items()))

    def close(self) -> None:
        """Close the open chunk files, and record the files this process verified (``.verified.json``)."""
        self._close_files()
        if self._verifier is not None:
            self._verifier.flush(force=True)

    def _close_files(self) -> None:
        for fd, _record in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self):
        self._close_files()

    # -- geometry ------------------------------------------------------------------
    @property
    def tokens(self) -> np.ndarray:
        """``int32 [n_contexts, context_len]`` (memory-mapped), verified against ``tokens_sha256`` first."""
        self.check_tokens()
        return self._tokens

    def check_tokens(self) -> None:
        """Verify ``tokens.npy`` against the harvest's record now (a :class:`StoreError` names it); a stage
        calls this before any model is loaded."""
        if self._tokens is None:
            self._tokens = self._open_tokens()

    def _open_tokens(self) -> np.ndarray:
        path = self.root / TOKENS
        if self._verifier is None:
            return np.load(path, mmap_mode="r")
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise StoreError(f"{path} is missing; re-run `{self.command}` (it re-packs tokens.npy from the corpus and "
                             "keeps it only if it matches the store's checksum), else harvest a new store") from None
        try:
            self._verifier.tokens(fd)
            with os.fdopen(os.dup(fd), "rb") as handle:  # map the very file that was verified
                version = np.lib.format.read_magic(handle)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(handle)
                tokens = np.memmap(handle, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C",
                                   offset=handle.tell())
        finally:
            os.close(fd)
        self._verifier.flush()
        if tokens.dtype != np.int32 or tokens.shape != (self.manifest["n_contexts"], self.context_len):
            raise StoreError(f"{path} holds {tokens.dtype} {list(tokens.shape)}, the manifest says int32 "
                             f"[{self.manifest['n_contexts']}, {self.context_len}]; the store is damaged: harvest a new store")
        return tokens

    @property
    def bytes_per_token(self) -> float:
        """Disk bytes per stored token row, all checkpoints and the token id included."""
        return len(self.revisions) * self.d_model * itemsize(self.dtype) + 4 * self.context_len / self.rows_per_context

    def context_range(self, split: str = "train") -> tuple[int, int]:
        if split not in SPLITS:
            raise StoreError(f"split must be one of {SPLITS}, not {split!r}")
        lo, hi = self.manifest["splits"][split]
        return int(lo), int(hi)

    def n_contexts(self, split: str = "train") -> int:
        lo, hi = self.context_range(split)
        return hi - lo

    def n_rows(self, split: str = "train") -> int:
        """Number of stored rows (kept token positions) in ``split``."""
        return self.n_contexts(split) * self.rows_per_context

    def locate(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """Global row indices -> ``(contexts, positions)`` (positions within the context)."""
        rows = np.asarray(rows, dtype=np.int64)
        return rows // self.rows_per_context, self.first_position + rows % self.rows_per_context

    def row_index(self, contexts, positions) -> np.ndarray:
        """``(contexts, positions)`` -> global row indices; excluded positions raise."""
        contexts, positions = _indices(contexts, "contexts"), _indices(positions, "positions")
        try:
            np.broadcast_shapes(contexts.shape, positions.shape)
        except ValueError:
            raise StoreIndexError(f"contexts {list(contexts.shape)} and positions {list(positions.shape)} do not pair up "
                                  "(give one position per context, or arrays that broadcast)") from None
        n = int(self.manifest["n_contexts"])
        if contexts.size and (contexts.min() < 0 or contexts.max() >= n):
            raise StoreIndexError(f"context index out of range 0..{n - 1}")
        if positions.size and (positions.min() < self.first_position or positions.max() >= self.context_len):
            raise StoreIndexError(
                f"position out of range {self.first_position}..{self.context_len - 1}"
                + (" (position 0 is excluded from this store)" if self.first_position else "")
            )
        return contexts * self.rows_per_context + positions - self.first_position

    def _check_revisions(self, revisions) -> list[str]:
        if revisions is None:
            return list(self.revisions)
        if isinstance(revisions, str):
            revisions = [revisions]
        revisions = list(revisions)
        if not revisions:
            raise StoreError(f"no revisions asked for; name some of the store's ({', '.join(self.revisions)}), or pass "
                             "None for all")
        twice = sorted({r for r in revisions if revisions.count(r) > 1})
        if twice:
            raise StoreError(f"revisions {twice} are asked for more than once; name each checkpoint once")
        missing = [r for r in revisions if r not in self.revisions]
        if missing:
            raise StoreError(f"{', '.join(map(str, missing))} not in the store {self.root} (complete checkpoints: "
                             f"{', '.join(self.revisions)}); harvest them first")
        return revisions

    # -- raw reads -------------------------------------------------------------------
    def _fd(self, revision: str, chunk: int) -> int:
        """The open (and verified) file of ``chunk`` of ``revision``; marks it used for :meth:`_after_read`."""
        key = (revision, chunk)
        entry = self._fds.get(key)
        if entry is None:
            entry = self._fds[key] = self._open_chunk(revision, chunk)
            if len(self._fds) > 256:  # bound the number of open files
                self._used.discard(next(iter(self._fds)))
                os.close(self._fds.popitem(last=False)[1][0])
        else:
            self._fds.move_to_end(key)
        self._used.add(key)
        return entry[0]

    def _open_chunk(self, revision: str, chunk: int) -> tuple[int, dict | None]:
        path = chunk_paths(self.root, revision, chunk)[0]
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise StoreError(f"{path} is missing; re-harvest that checkpoint: `{self.command} --revisions {revision}` "
                             "redoes damaged chunks") from None
        if self._verifier is None:
            return fd, None
        verified = False
        try:
            record = self._verifier.chunk(revision, chunk, fd)
            verified = True
        finally:
            if not verified:
                os.close(fd)
        return fd, record

    def _after_read(self) -> None:
        """After reading: a chunk file whose record changed while it was open is verified again (hashed)."""
        if self._verifier is not None:
            for key in self._used:
                fd, record = self._fds.get(key, (None, None))
                if fd is not None and file_record(os.fstat(fd)) != record:
                    self._fds[key] = (fd, self._verifier.chunk(*key, fd))
            self._verifier.flush()
        self._used.clear()

    def _chunk_of_row(self, rows: np.ndarray) -> np.ndarray:
        starts = self.chunks[:, 0] * self.rows_per_context
        return np.searchsorted(starts, rows, side="right") - 1

    def _read_into(self, out: np.ndarray, revision: str, chunk: int, row_in_chunk: int) -> None:
        """Fill ``out`` ``[n, d]`` (storage dtype, C-contiguous) from consecutive rows of one chunk."""
        want = out.nbytes
        got = os.preadv(self._fd(revision, chunk), [memoryview(out).cast("B")], row_in_chunk * self.d_model * out.itemsize)
        if got != want:
            raise StoreError(f"{chunk_paths(self.root, revision, chunk)[0]} is shorter than the manifest says; re-harvest "
                             f"that checkpoint: `{self.command} --revisions {revision}` redoes damaged chunks")

    def memmap(self, revision: str, chunk: int) -> np.ndarray:
        """Chunk ``chunk`` of ``revision`` memory-mapped read-only, ``[rows, d]`` in the storage dtype
        (bfloat16 as raw uint16 bits; decode with :func:`crosstime.store.layout.decode`).

        The file is verified first and the map is of that very file. The loader itself reads
        with ``pread`` instead: pages of a memory map count towards the process' resident
        memory, a read into a reused buffer does not.
        """
        (revision,) = self._check_revisions([revision])
        chunk = self._check_chunk(chunk)
        lo, hi = self.chunks[chunk]
        with os.fdopen(os.dup(self._fd(revision, chunk)), "rb") as handle:
            mapped = np.memmap(handle, dtype=self._np_dtype, mode="r",
                               shape=(int(hi - lo) * self.rows_per_context, self.d_model))
        self._after_read()
        return mapped

    def _check_chunk(self, chunk) -> int:
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or not 0 <= chunk < len(self.chunks):
            raise StoreIndexError(f"chunk {chunk!r} is not a chunk of the store (0..{len(self.chunks) - 1})")
        return int(chunk)

    def rows(self, revision: str, contexts, positions) -> torch.Tensor:
        """Raw (unnormalised) activations at ``(contexts[i], positions[i])`` as float32 ``[n, d]``."""
        (revision,) = self._check_revisions([revision])
        rows = self.row_index(contexts, positions).reshape(-1)
        return self.read_rows(revision, rows)

    def read_rows(self, revision: str, rows) -> torch.Tensor:
        """Raw activations of global row indices as float32 ``[n, d]`` (any order, repeats allowed)."""
        (revision,) = self._check_revisions([revision])
        rows = _indices(rows, "rows").reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_rows_total):
            raise StoreIndexError(f"row index out of range 0..{self.n_rows_total - 1}")
        out = np.empty((len(rows), self.d_model), dtype=self._np_dtype)
        chunks = self._chunk_of_row(rows)
        starts = self.chunks[chunks, 0] * self.rows_per_context
        for i in np.argsort(rows, kind="stable"):  # file order: friendlier to the disk
            self._read_into(out[i : i + 1], revision, int(chunks[i]), int(rows[i] - starts[i]))
        self._after_read()
        return decode(out, self.dtype)

    def read_block(self, revision: str, start: int, n: int) -> torch.Tensor:
        """Raw activations of ``n`` consecutive global rows from ``start`` as float32 ``[n, d]``."""
        (revision,) = self._check_revisions([revision])
        start, n = _count(start, "start", 0), _count(n, "n", 0)
        if start + n > self.n_rows_total:
            raise StoreIndexError(f"rows {start}..{start + n - 1} are beyond the store's {self.n_rows_total} rows")
        out = np.empty((n, self.d_model), dtype=self._np_dtype)
        done = 0
        while done < n:
            row = start + done
            chunk = int(self._chunk_of_row(np.array([row]))[0])
            c_start = self.chunks[chunk, 0] * self.rows_per_context
            c_end = self.chunks[chunk, 1] * self.rows_per_context
            take = min(n - done, c_end - row)
            self._read_into(out[done : done + take], revision, chunk, row - c_start)
            done += take
        self._after_read()
        return decode(out, self.dtype)

    # -- contexts for downstream evaluation -------------------------------------------
    def contexts(self, split: str = "heldout", batch_size: int = 16, limit: int | None = None) -> Iterator[torch.Tensor]:
        """Token ids of ``split``'s contexts in order, as LongTensor ``[b, context_len]`` batches."""
        lo, hi = self.context_range(split)
        batch_size = _count(batch_size, "batch_size")
        if limit is not None:
            hi = min(hi, lo + _count(limit, "limit", 0))
        tokens = self.tokens  # verified here, not at the first next()
        return self._token_batches(tokens, lo, hi, batch_size)

    @staticmethod
    def _token_batches(tokens: np.ndarray, lo: int, hi: int, batch_size: int) -> Iterator[torch.Tensor]:
        for s in range(lo, hi, batch_size):
            yield torch.from_numpy(np.asarray(tokens[s : min(s + batch_size, hi)], dtype=np.int64))

    # -- shuffled training batches --------------------------------------------------------
    def _blocks(self, split: str, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, sizes)`` of the split's blocks (global rows); blocks never straddle a chunk."""
        lo, hi = self.context_range(split)
        starts, sizes = [], []
        for c_lo, c_hi in self.chunks:
            if c_lo >= lo and c_hi <= hi:
                r0, r1 = c_lo * self.rows_per_context, c_hi * self.rows_per_context
                s = np.arange(r0, r1, block_rows, dtype=np.int64)
                starts.append(s)
                sizes.append(np.minimum(s + block_rows, r1) - s)
        if not starts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(starts), np.concatenate(sizes)

    def default_block_rows(self) -> int:
        # 8 KiB of one checkpoint (32 rows at d=128), at least 8 rows: near-ideal mixing at
        # ~90% of the read speed of 32 KiB blocks (benchmarks/RESULTS.md)
        return max(8, (8 << 10) // (self.d_model * itemsize(self.dtype)))

    def default_buffer_rows(self, n_revisions: int) -> int:
        return max(1, min(1 << 18, (256 << 20) // (n_revisions * self.d_model * itemsize(self.dtype))))

    def epoch_plan(self, split: str = "train", batch_size: int = 4096, seed: int = 0, epoch: int = 0, rank: int = 0,
                   world_size: int = 1, drop_last: bool = False, block_rows: int | None = None,
                   buffer_rows: int | None = None, n_revisions: int | None = None, shuffle: bool = True) -> dict:
        """This rank's blocks, windows and batch count for one epoch (no data read)."""
        batch_size, world_size = _count(batch_size, "batch_size"), _count(world_size, "world_size")
        seed, epoch = _count(seed, "seed", 0), _count(epoch, "epoch", 0)
        if _count(rank, "rank", 0) >= world_size:
            raise StoreError(f"rank {rank} is not in 0..{world_size - 1}")
        block_rows = self.default_block_rows() if block_rows is None else _count(block_rows, "block_rows")
        buffer_rows = (self.default_buffer_rows(n_revisions or len(self.revisions)) if buffer_rows is None
                       else _count(buffer_rows, "buffer_rows"))
        starts, sizes = self._blocks(split, block_rows)
        order = np.random.default_rng([seed, epoch]).permutation(len(starts)) if shuffle else np.arange(len(starts))
        per_rank = [int(sizes[order[r::world_size]].sum()) for r in range(world_size)]
        mine = order[rank::world_size]
        if world_size > 1:  # every rank yields the same number of full batches (lock-step DDP)
            n_batches = min(per_rank) // batch_size
        else:
            n_batches = per_rank[0] // batch_size if drop_last else -(-per_rank[0] // batch_size)
        window_blocks = max(1, buffer_rows // block_rows)
        windows = [mine[i : i + window_blocks] for i in range(0, len(mine), window_blocks)]
        return {"starts": starts, "sizes": sizes, "windows": windows, "n_batches": n_batches, "shuffle": shuffle,
                "rows": per_rank[rank], "block_rows": block_rows, "buffer_rows": buffer_rows}

    def n_batches(self, split: str = "train", batch_size: int = 4096, world_size: int = 1, drop_last: bool = False,
                  **kwargs) -> int:
        """Batches per epoch for each rank (equal on every rank when ``world_size > 1``)."""
        return self.epoch_plan(split, batch_size, world_size=world_size, drop_last=drop_last, **kwargs)["n_batches"]

    def batches(
        self,
        revisions: list[str] | None = None,
        batch_size: int = 4096,
        split: str = "train",
        normalise: bool = True,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        skip_batches: int = 0,
        drop_last: bool = False,
        block_rows: int | None = None,
        buffer_rows: int | None = None,
        with_index: bool = False,
        device: str | torch.device = "cpu",
        shuffle: bool = True,
    ) -> Iterator[torch.Tensor] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled batches ``x: float32 [B, M, d]`` (see the module docstring).

        ``normalise`` multiplies checkpoint ``m`` by ``scales[m]``; ``shuffle=False`` reads the rows in
        store order (ranks still take alternate blocks); ``with_index`` also yields the
        global row indices ``[B]`` (map them with :meth:`locate`). With ``world_size > 1`` every
        rank yields the same number of full batches; alone, the last batch may be smaller
        unless ``drop_last``.
        """
        revisions = self._check_revisions(revisions)  # checked here, not at the first next()
        plan = self.epoch_plan(split, batch_size, seed, epoch, rank, world_size, drop_last, block_rows, buffer_rows,
                               len(revisions), shuffle)
        skip_batches = _count(skip_batches, "skip_batches", 0)
        try:
            torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise StoreError(f"device {device!r} is not a device torch knows ({err})") from None
        return self._iterate(plan, revisions, batch_size, normalise, seed, epoch, rank, skip_batches, with_index, device)

    def _iterate(self, plan, revisions, batch_size, normalise, seed, epoch, rank, skip_batches, with_index, device):
        M, d = len(revisions), self.d_model
        starts, sizes, n_batches = plan["starts"], plan["sizes"], plan["n_batches"]
        if skip_batches >= n_batches:
            return
        scale = torch.tensor([self.scales[r] if normalise else 1.0 for r in revisions], dtype=torch.float32).view(1, M, 1)
        window_sizes = np.array([int(sizes[w].sum()) for w in plan["windows"]], dtype=np.int64)
        window_ends = np.cumsum(window_sizes)
        skip_rows = skip_batches * batch_size
        w0 = int(np.searchsorted(window_ends, skip_rows, side="right"))
        offset = skip_rows - (int(window_ends[w0 - 1]) if w0 else 0)
        emitted = skip_batches
        buf = np.empty((M, int(window_sizes.max()), d), dtype=self._np_dtype)
        carry_x: torch.Tensor | None = None  # [k, M, d] rows left over from the previous window
        carry_i: np.ndarray | None = None

        def finish(x_raw: torch.Tensor, idx: np.ndarray):
            x = x_raw * scale if normalise else x_raw
            x = x.to(device, non_blocking=True)
            return (x, torch.from_numpy(idx)) if with_index else x

        for w in range(w0, len(plan["windows"])):
            idx = self._read_window(buf, revisions, starts, sizes, plan["windows"][w])
            self._after_read()
            n = len(idx)
            perm = np.random.default_rng([seed, epoch, rank, w]).permutation(n) if plan["shuffle"] else np.arange(n)
            if w == w0 and offset:
                perm = perm[offset:]
            i = 0
            if carry_x is not None:
                need = batch_size - len(carry_x)
                take = perm[:need]
                x = torch.cat([carry_x, decode(buf[:, take], self.dtype).transpose(0, 1)])
                ids = np.concatenate([carry_i, idx[take]])
                carry_x = carry_i = None
                i = len(take)
                if len(x) == batch_size:
                    yield finish(x, ids)
                    emitted += 1
                    if emitted >= n_batches:
                        return
                else:
                    carry_x, carry_i = x, ids
                    continue
            while i + batch_size <= len(perm):
                take = perm[i : i + batch_size]
                yield finish(decode(buf[:, take], self.dtype).transpose(0, 1).contiguous(), idx[take])
                emitted += 1
                if emitted >= n_batches:
                    return
                i += batch_size
            if i < len(perm):
                take = perm[i:]
                carry_x, carry_i = decode(buf[:, take], self.dtype).transpose(0, 1), idx[take]
        if carry_x is not None and emitted < n_batches:
            yield finish(carry_x.contiguous(), carry_i)

    def _read_window(self, buf: np.ndarray, revisions: list[str], starts: np.ndarray, sizes: np.ndarray,
                     window: np.ndarray) -> np.ndarray:
        """Read a window's blocks into ``buf [M, rows, d]`` (slots in file order); return each slot's global row.

        Runs of adjacent blocks in one chunk are merged into one read per checkpoint."""
        blocks = np.sort(window)  # file order (blocks are numbered in row order)
        b_start, b_size = starts[blocks], sizes[blocks]
        n = int(b_size.sum())
        idx = np.repeat(b_start - (np.cumsum(b_size) - b_size), b_size) + np.arange(n)  # global row of each slot
        chunk = self._chunk_of_row(b_start)
        new_run = np.ones(len(blocks), dtype=bool)
        new_run[1:] = (b_start[1:] != b_start[:-1] + b_size[:-1]) | (chunk[1:] != chunk[:-1])
        run_first = np.flatnonzero(new_run)
        run_rows = np.add.reduceat(b_size, run_first)
        run_slot = np.cumsum(run_rows) - run_rows
        run_chunk = chunk[run_first]
        run_offset = b_start[run_first] - self.chunks[run_chunk, 0] * self.rows_per_context
        for m, rev in enumerate(revisions):
            for slot, k, c, off in zip(run_slot.tolist(), run_rows.tolist(), run_chunk.tolist(), run_offset.tolist()):
                self._read_into(buf[m, slot : slot + k], rev, c, off)
        return idx

    # -- integrity -----------------------------------------------------------------------
    def verify(self) -> list[str]:
        """Check every chunk of every complete checkpoint (sidecar, size and sha256, always hashed) and
        ``tokens.npy``; return the problems found."""
        problems = []
        for rev in self.revisions:
            sums = self.manifest["checkpoints"][rev].get("checksums", [])
            for i in range(len(self.chunks)):
                bin_path, side_path = chunk_paths(self.root, rev, i)
                side = load_sidecar(side_path)
                rows = chunk_rows(self.manifest, i)
                ok = (side is not None and sidecar_fits(side, rev, i, rows) and i < len(sums) and side["sha256"] == sums[i]
                      and bin_path.is_file() and bin_path.stat().st_size == rows * self.d_model * itemsize(self.dtype)
                      and sha256_file(bin_path) == sums[i])
                if not ok:
                    problems.append(f"{rev} chunk {i}: missing, truncated or corrupted")
        tokens = self.root / TOKENS
        if not tokens.is_file() or sha256_file(tokens) != self.manifest["tokens_sha256"]:
            problems.append("tokens.npy: checksum mismatch")
        return problems
