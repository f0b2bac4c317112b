"""Where training batches come from: an in-memory tensor or an activation store.

Both sources serve this rank's share of global batch ``b`` of epoch ``e`` as a pure
function of ``(seed, epoch, batch index)``, so a resumed run skips exactly the batches it
already trained on and two ranks together see the batch one process would.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from crosstime.errors import CrosstimeError
from crosstime.store import ActivationStore
from crosstime.store.layout import decode, scale_from_sidecars


class DataError(CrosstimeError):
    """Bad training data; the message names the input and the fix."""


def check_finite(x: torch.Tensor, names: list[str], where: str) -> None:
    """Raise naming every checkpoint whose activations hold NaN/inf, with how many. x: [N, M, d]."""
    bad = (~torch.isfinite(x)).sum(dim=(0, 2))
    if bool(bad.any()):
        parts = [f"{names[m]}: {int(n)} non-finite values" for m, n in enumerate(bad.tolist()) if n]
        raise DataError(f"{where} contain NaN/inf ({'; '.join(parts)}); re-harvest those checkpoints "
                        "or drop them from --revisions")


def _check_shape(M: int, d: int, where: str) -> None:
    if M < 1:
        raise DataError(f"{where} have M = 0 checkpoints; a crosscoder needs at least one "
                        "(pass activations shaped [N, M, d] with M >= 1)")
    if d < 1:
        raise DataError(f"{where} have width d = {d}; activations need d >= 1")


class TensorSource:
    """Activations held in memory: ``data [N, M, d]``; each epoch a seeded permutation of the rows."""

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 heldout: torch.Tensor | None = None, revisions: list[str] | None = None):
        if not isinstance(data, torch.Tensor) or data.dim() != 3:
            raise DataError(f"in-memory activations must be a float tensor [N, M, d], got "
                            f"{getattr(data, 'shape', type(data).__name__)}")
        if not data.is_floating_point():
            raise DataError(f"in-memory activations must be floating point, got {data.dtype}")
        N, M, d = data.shape
        _check_shape(M, d, "the activations")
        self.revisions = revisions or [f"checkpoint {m}" for m in range(M)]
        if len(self.revisions) != M:
            raise DataError(f"{len(self.revisions)} revision names for M = {M} checkpoints")
        check_finite(data, self.revisions, "the activations")
        if batch_size % world_size:
            raise DataError(f"batch_size {batch_size} is not divisible by the {world_size} ranks")
        if N < batch_size:
            raise DataError(f"only N = {N} rows for batch_size = {batch_size}; lower --batch-size or add data")
        if heldout is not None:
            if heldout.dim() != 3 or heldout.shape[1:] != data.shape[1:]:
                raise DataError(f"held-out activations {list(heldout.shape)} do not match the training "
                                f"activations' [*, {M}, {d}]")
            check_finite(heldout, self.revisions, "the held-out activations")
        self.data = data.float()
        self.heldout_data = heldout.float() if heldout is not None else None
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.n_checkpoints, self.d_model = M, d
        self.scales, self.normalised = [1.0] * M, False  # in-memory data are taken as they are
        self.local = batch_size // world_size

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "tensor", "shape": list(self.data.shape)}

    @property
    def batches_per_epoch(self) -> int:
        return self.data.shape[0] // self.batch_size  # drop the incomplete last batch

    def _perm(self, epoch: int) -> torch.Tensor:
        return torch.from_numpy(np.random.default_rng([self.seed, epoch]).permutation(self.data.shape[0]))

    def iterate(self, start_step: int) -> Iterator[torch.Tensor]:
        """This rank's rows of global batches start_step, start_step+1, … (epochs roll over)."""
        bpe = self.batches_per_epoch
        epoch, b = divmod(start_step, bpe)
        while True:
            perm = self._perm(epoch)
            for i in range(b, bpe):
                s = i * self.batch_size + self.rank * self.local
                yield self.data[perm[s : s + self.local]]
            epoch, b = epoch + 1, 0

    def heldout(self, n_batches: int) -> Iterator[torch.Tensor]:
        if self.heldout_data is None:
            return
        h = self.heldout_data
        for i in range(n_batches):
            s = i * self.batch_size
            if s >= h.shape[0]:
                return
            yield h[s : s + self.batch_size]  # validation runs on the main process only


class StoreSource:
    """An activation store (:class:`crosstime.store.ActivationStore`), read streaming.

    Each rank reads ``batch_size / world_size`` rows per step from its own blocks (the
    store's sharding); resident memory is the store's read window, not the store's size.
    Batches are normalised by the store's per-checkpoint scales when ``normalise``.
    """

    def __init__(self, store: ActivationStore, revisions: list[str] | None, batch_size: int, seed: int,
                 normalise: bool, rank: int = 0, world_size: int = 1):
        self.store = store
        path = store.root
        revisions = list(revisions) if revisions else list(store.revisions)
        unknown = [r for r in revisions if r not in store.revisions]
        if unknown:
            raise DataError(f"revisions {unknown} are not in the activation store at {path} "
                            f"(it holds {store.revisions})")
        revisions = sorted(revisions, key=store.revisions.index)  # the store's order: the crosscoder's M axis
        _check_shape(len(revisions), store.d_model, f"the activation store at {path} (revisions {revisions})")
        if batch_size % world_size:
            raise DataError(f"batch_size {batch_size} is not divisible by the {world_size} ranks")
        scales = [float(store.scales[r]) for r in revisions]
        bad = [r for r, s in zip(revisions, scales) if not (np.isfinite(s) and s > 0)]
        if bad:
            raise DataError(f"the store's normalisation scales of {bad} are not finite and positive "
                            f"({dict(zip(revisions, scales))}); those checkpoints' activations hold NaN/inf or "
                            "zeros — re-harvest them")
        self.path, self.revisions = path, revisions
        self.batch_size, self.seed, self.normalise = batch_size, seed, normalise
        self.rank, self.world_size = rank, world_size
        self.local = batch_size // world_size
        self.n_checkpoints, self.d_model = len(revisions), store.d_model
        self.scales = scales if normalise else [1.0] * len(revisions)
        self.normalised = normalise
        self._bpe = store.n_batches("train", self.local, world_size=world_size, drop_last=True)
        if self._bpe < 1:
            raise DataError(f"the store at {path} has {store.n_rows('train')} training rows, fewer than one batch "
                            f"of {batch_size}; lower --batch-size or harvest more tokens")

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data (not where the store lies: a moved run resumes)."""
        return {"kind": "store", "tokens_sha256": self.store.manifest["tokens_sha256"], "revisions": self.revisions,
                "d_model": self.d_model, "rows": int(self.store.n_rows("train"))}

    @property
    def batches_per_epoch(self) -> int:
        return self._bpe

    def _checked(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (self.n_checkpoints, self.d_model):
            raise DataError(f"the store at {self.path} served rows of shape {list(x.shape[1:])}, but its manifest "
                            f"says M = {self.n_checkpoints}, d_model = {self.d_model}; the store is inconsistent "
                            "(run its verify() or re-harvest)")
        check_finite(x, self.revisions, f"activations read from the store at {self.path}")
        return x

    def iterate(self, start_step: int) -> Iterator[torch.Tensor]:
        epoch, b = divmod(start_step, self._bpe)
        while True:
            for x in self.store.batches(self.revisions, self.local, "train", self.normalise, self.seed, epoch,
                                        self.rank, self.world_size, skip_batches=b, drop_last=True):
                yield self._checked(x)
            epoch, b = epoch + 1, 0

    def heldout(self, n_batches: int) -> Iterator[torch.Tensor]:
        if self.store.n_rows("heldout") == 0:
            return
        # validation runs on the main process only (no rank sharding); the read window holds just the
        # n_batches batches it uses, not the whole split (memory and I/O independent of the store's size)
        it = self.store.batches(self.revisions, self.batch_size, "heldout", self.normalise, seed=0, epoch=0,
                                buffer_rows=n_batches * self.batch_size)
        for x in itertools.islice(it, n_batches):  # islice: no read of a batch past the last one used
            yield self._checked(x)


def make_source(data, batch_size: int, seed: int, rank: int, world_size: int, *, revisions=None,
                normalise: bool = True, heldout: torch.Tensor | None = None):
    """Tensor ``[N, M, d]`` -> :class:`TensorSource`; :class:`ActivationStore` -> :class:`StoreSource`."""
    if isinstance(data, torch.Tensor):
        return TensorSource(data, batch_size, seed, rank, world_size, heldout=heldout, revisions=revisions)
    if isinstance(data, ActivationStore):
        return StoreSource(data, revisions, batch_size, seed, normalise, rank, world_size)
    raise DataError(f"training data must be a float tensor [N, M, d] or an ActivationStore, got {type(data).__name__}")


class StreamSource:
    """Activations harvested while training: a shuffled in-memory buffer of chunks, refilled as it is consumed.

    ``harvester`` (:class:`crosstime.crosscoder.streaming.Harvester`) computes chunk ``c`` of the
    train split, ``chunk(c) -> (rows [R, M, d] in the storage dtype, norm sums [M])``, with
    ``n_chunks``, ``chunk_size(c)``, ``ahead(c)``, ``heldout(n_rows)`` and ``fingerprint()``.

    The buffer holds ``K = 1/refill_frac`` chunks. The stream visits the chunks epoch by epoch
    in a seeded order (global position ``g``); chunk ``g`` is in the buffer during rounds
    ``g-K+1 .. g`` and serves one of K seeded slices of its rows in each (``min(K, g+1)``
    slices at the start, when the first K chunks are loaded at once). Round ``r`` therefore
    mixes K chunks, its rows are permuted by ``rng(seed, r)``, and the rounds, end to end,
    are cut into batches. After round ``r`` chunk ``r`` is used up: it is evicted and chunk
    ``r+K`` harvested (a refill of ``refill_frac`` of the buffer). Everything is a function of
    ``(seed, step)``, so a resumed run re-harvests the K chunks of its round (one buffer) and
    continues with the very batches an uninterrupted run sees. Resident activations: at most
    ``K`` chunks (``<= buffer_rows`` rows, :attr:`peak_rows` records it) plus one batch.

    Scales ``s_m = sqrt(d) / E‖x_m‖`` are estimated, as the store does over its train split,
    on the first buffer (chunks at g = 0..K-1), which is harvested up front and reused.

    Harvesting ahead: when round ``r`` starts, ``harvester.ahead(c)`` is told the chunk round
    ``r+1`` will load (position ``g = r+K``), so a harvester may compute it while round ``r``
    is served; ``steps`` (the last step the stream will serve; None: no end) keeps it from
    harvesting ahead for a round no step reaches. What is served does not depend on it.
    """

    def __init__(self, harvester, batch_size: int, seed: int, refill_frac: float, normalise: bool = True,
                 steps: int | None = None):
        self.harvester, self.batch_size, self.seed, self.normalise = harvester, batch_size, seed, normalise
        self.steps = steps
        self.K = round(1 / refill_frac)
        self.revisions, self.d_model = list(harvester.revisions), harvester.d_model
        self.n_checkpoints = len(self.revisions)
        _check_shape(self.n_checkpoints, self.d_model, f"the streamed checkpoints {self.revisions}")
        rows = sum(harvester.chunk_size(c) for c in range(harvester.n_chunks))
        if rows < batch_size:
            raise DataError(f"the streamed corpus has {rows} training rows, fewer than one batch of {batch_size}; "
                            "lower --batch-size or raise --tokens")
        self._bpe = rows // batch_size
        self.rank, self.world_size, self.local = 0, 1, batch_size
        self.buffer: dict[int, np.ndarray] = {}  # global position g -> rows [R, M, d], storage dtype
        self.peak_rows = 0
        sums = [self._load(g) for g in range(self.K)]
        sides = [[{"norm_sum": float(s[m]), "rows": len(self.buffer[g])} for g, s in enumerate(sums)]
                 for m in range(self.n_checkpoints)]
        plan = [[0, 1]] * len(sums)
        scales = [scale_from_sidecars(sides[m], plan, 1, self.d_model, rev) for m, rev in enumerate(self.revisions)]
        self.scales = [s for s, _ in scales] if normalise else [1.0] * self.n_checkpoints
        self.normalised = normalise
        self._scale = torch.tensor(self.scales, dtype=torch.float32).view(1, -1, 1)

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "stream", **self.harvester.fingerprint(), "buffer_chunks": self.K}

    @property
    def batches_per_epoch(self) -> int:
        return self._bpe

    def _chunk_at(self, g: int) -> int:
        n = self.harvester.n_chunks
        epoch, i = divmod(g, n)
        return int(np.random.default_rng([self.seed, epoch, 0]).permutation(n)[i])

    def _load(self, g: int) -> np.ndarray:
        """Harvest the chunk at position g into the buffer; return its per-checkpoint norm sums."""
        rows, norm_sums = self.harvester.chunk(self._chunk_at(g))
        self.buffer[g] = rows
        self.peak_rows = max(self.peak_rows, sum(len(b) for b in self.buffer.values()))
        return norm_sums

    def _slice(self, g: int, r: int) -> np.ndarray:
        """Rows of chunk g served in round r (one of its min(K, g+1) seeded slices)."""
        n_slices = min(self.K, g + 1)
        perm = np.random.default_rng([self.seed, g, 1]).permutation(self.harvester.chunk_size(self._chunk_at(g)))
        return np.array_split(perm, n_slices)[r - (g - n_slices + 1)]

    def _round_size(self, r: int) -> int:
        total = 0
        for g in range(r, r + self.K):  # len(np.array_split(rows, k)[j]) without the rows
            n, k = self.harvester.chunk_size(self._chunk_at(g)), min(self.K, g + 1)
            total += n // k + (r - (g - k + 1) < n % k)
        return total

    def _round(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Round r's rows in serving order: (buffer position g, row in chunk), both [rows]."""
        parts = [(np.full(len(s), g), s) for g in range(r, r + self.K) for s in [self._slice(g, r)]]
        gs, idx = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        perm = np.random.default_rng([self.seed, r, 2]).permutation(len(gs))
        return gs[perm], idx[perm]

    def _refill(self, r: int) -> None:
        """Evict the chunks used up before round r, then harvest those it needs (never above K chunks)."""
        for g in [g for g in self.buffer if g < r or g >= r + self.K]:
            del self.buffer[g]
        for g in range(r, r + self.K):
            if g not in self.buffer:
                self._load(g)

    def _gather(self, gs: np.ndarray, idx: np.ndarray) -> torch.Tensor:
        """Rows (g, idx) of the buffer, decoded to float32 and normalised: [n, M, d]."""
        out = np.empty((len(gs), self.n_checkpoints, self.d_model), dtype=next(iter(self.buffer.values())).dtype)
        for g in np.unique(gs):
            mask = gs == g
            out[mask] = self.buffer[int(g)][idx[mask]]
        x = decode(out, self.harvester.dtype)
        return x * self._scale if self.normalise else x

    def _locate(self, row: int) -> tuple[int, int]:
        """(round, offset in it) of the stream's row ``row``."""
        r = 0
        while row >= (size := self._round_size(r)):
            row, r = row - size, r + 1
        return r, row

    def _ahead(self, r: int, next_round_row: int) -> None:
        """Tell the harvester the chunk round r+1 loads, unless no step reaches round r+1 (it starts at
        the stream's row ``next_round_row``)."""
        if self.steps is None or next_round_row < self.steps * self.batch_size:
            self.harvester.ahead(self._chunk_at(r + self.K))

    def iterate(self, start_step: int) -> Iterator[torch.Tensor]:
        B = self.batch_size
        r, i = self._locate(start_step * B)
        round_row = start_step * B - i  # the stream's row where round r starts
        carry: torch.Tensor | None = None
        while True:
            self._refill(r)
            gs, idx = self._round(r)
            self._ahead(r, round_row + len(gs))
            round_row += len(gs)
            if carry is not None:
                take = slice(i, i + B - len(carry))
                carry = torch.cat([carry, self._gather(gs[take], idx[take])])
                i = take.stop
                if len(carry) < B:
                    r, i = r + 1, 0
                    continue
                yield check_finite_rows(carry, self.revisions)
                carry = None
            while i + B <= len(gs):
                yield check_finite_rows(self._gather(gs[i : i + B], idx[i : i + B]), self.revisions)
                i += B
            if i < len(gs):
                carry = self._gather(gs[i:], idx[i:])
            r, i = r + 1, 0

    def heldout(self, n_batches: int) -> Iterator[torch.Tensor]:
        """The first rows of the held-out split (harvested once, ``n_batches × batch_size`` rows at most)."""
        rows = self.harvester.heldout(n_batches * self.batch_size)
        for s in range(0, len(rows), self.batch_size):
            x = decode(rows[s : s + self.batch_size], self.harvester.dtype)
            yield check_finite_rows(x * self._scale if self.normalise else x, self.revisions)


def check_finite_rows(x: torch.Tensor, names: list[str]) -> torch.Tensor:
    check_finite(x, names, "the streamed activations")
    return x
