"""Streaming training (no store): the buffer's coverage and determinism, streaming against store training
on the same tokens, the kept store, resume after a kill, bounded memory, settings refused."""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from crosstime.crosscoder import TrainConfig, load
from crosstime.stages.train import train
from crosstime.crosscoder import streaming as streaming_module
from crosstime.crosscoder.data import StreamSource
from crosstime.crosscoder.streaming import StreamError
from crosstime.crosscoder.training import Trainer
from crosstime.store import ActivationStore, HarvestConfig
from crosstime.stages.harvest import harvest

REVISIONS = ["step128", "step1000"]


class FakeHarvester:
    """Chunks whose rows say where they come from: x[i, m] = (chunk, row i, m + 1)."""

    dtype, d_model, revisions = "float16", 3, ["a", "b"]

    def __init__(self, sizes):
        self.sizes, self.n_chunks, self.harvested, self.told = sizes, len(sizes), [], []

    def ahead(self, c):
        self.told.append((c, len(self.harvested)))  # the chunk, and how many were harvested when told

    def chunk_size(self, c):
        return self.sizes[c]

    def chunk(self, c):
        self.harvested.append(c)
        n = self.sizes[c]
        x = np.zeros((n, 2, 3), dtype=np.float16)
        x[:, :, 0], x[:, :, 1], x[:, :, 2] = c, np.arange(n)[:, None], [1, 2]
        return x, np.linalg.norm(x.astype(np.float64), axis=2).sum(0)

    def heldout(self, n_rows):
        return np.ones((min(n_rows, 5), 2, 3), dtype=np.float16)

    def fingerprint(self):
        return {"sizes": self.sizes}


def served(source, n_rows):
    """The (chunk, row) of the first n_rows streamed rows (batch size 1)."""
    rows = torch.cat(list(itertools.islice(source.iterate(0), n_rows)))
    assert torch.equal(rows[:, 1, :2], rows[:, 0, :2]) and bool((rows[:, :, 2] == torch.tensor([1.0, 2.0])).all())
    return [(int(c), int(i)) for c, i in rows[:, 0, :2].tolist()]


def test_one_chunk_buffer_serves_every_row_once_per_epoch():
    sizes = [7, 5, 9, 4]
    source = StreamSource(FakeHarvester(sizes), batch_size=1, seed=3, refill_frac=1.0, normalise=False)
    every = {(c, i) for c, n in enumerate(sizes) for i in range(n)}
    rows = served(source, 2 * sum(sizes))
    assert set(rows[: sum(sizes)]) == every and len(set(rows[: sum(sizes)])) == sum(sizes)
    assert set(rows[sum(sizes):]) == every and rows[: sum(sizes)] != rows[sum(sizes):]  # reshuffled
    assert source.peak_rows == max(sizes)


def test_sliding_buffer_covers_rows_evenly_and_mixes_chunks():
    sizes = [40, 40, 40, 40, 33]
    source = StreamSource(FakeHarvester(sizes), batch_size=1, seed=0, refill_frac=0.25, normalise=False)
    counts = Counter(served(source, 3 * sum(sizes)))
    every = {(c, i) for c, n in enumerate(sizes) for i in range(n)}
    assert set(counts) == every
    assert set(counts.values()) <= {2, 3, 4}  # 3 epochs of rows: a row is at most one epoch ahead or behind
    assert source.peak_rows <= 4 * max(sizes)  # K = 4 chunks, never more
    head = served(StreamSource(FakeHarvester(sizes), batch_size=1, seed=0, refill_frac=0.25, normalise=False), 40)
    assert len({c for c, _ in head}) == 4  # the first 40 rows already come from the 4 chunks of the buffer


def test_stream_source_resumes_at_any_step_with_the_same_batches():
    sizes = [30, 30, 30, 17]

    def batches(start, n):
        source = StreamSource(FakeHarvester(sizes), batch_size=8, seed=5, refill_frac=0.5, normalise=False)
        return list(itertools.islice(source.iterate(start), n)), source

    whole, _ = batches(0, 40)
    for start in (1, 7, 13, 29):
        resumed, source = batches(start, 40 - start)
        assert len(resumed) == 40 - start and all(torch.equal(a, b) for a, b in zip(whole[start:], resumed)), start
        assert source.peak_rows <= 2 * 30


def test_stream_tells_the_harvester_the_next_rounds_chunk_and_stops_at_the_last_step():
    sizes = [5, 7, 6, 4]  # K = 2: round r serves chunks r, r+1 and loads chunk position r+2 next
    source = StreamSource(FakeHarvester(sizes), batch_size=3, seed=1, refill_frac=0.5, normalise=False)
    list(itertools.islice(source.iterate(0), 12))
    got = source.harvester
    assert len(got.told) >= 4
    for c, n in got.told[:-1]:  # each told chunk is the very next one harvested (the last: when asked for)
        assert got.harvested[n] == c
    assert got.told[-1][1] == len(got.harvested)
    # a stream of 6 steps (18 rows): rounds 0 (5 + 4 rows) and 1 (3 + 3 rows + 3 + ...) reach it, not beyond
    bounded = StreamSource(FakeHarvester(sizes), batch_size=3, seed=1, refill_frac=0.5, normalise=False, steps=6)
    list(itertools.islice(bounded.iterate(0), 6))
    sizes_of = [bounded._round_size(r) for r in range(4)]
    reached = sum(1 for r in range(4) if sum(sizes_of[:r]) < 18)  # rounds holding a row of the 6 steps
    assert len(bounded.harvester.told) == reached - 1
    assert bounded.harvester.harvested == got.harvested[: 2 + reached - 1]


def test_scales_are_the_first_buffers_mean_norm():
    source = StreamSource(FakeHarvester([6, 6, 6]), batch_size=4, seed=0, refill_frac=0.5)
    first = [source._chunk_at(0), source._chunk_at(1)]
    x = np.concatenate([FakeHarvester([6, 6, 6]).chunk(c)[0] for c in first]).astype(np.float64)
    want = [np.sqrt(3) / np.linalg.norm(x[:, m], axis=1).mean() for m in range(2)]
    assert source.scales == pytest.approx(want, rel=1e-12)
    batch = next(source.iterate(0))
    raw = torch.cat(list(itertools.islice(StreamSource(FakeHarvester([6, 6, 6]), 4, 0, 0.5, False).iterate(0), 1)))
    assert torch.allclose(batch, raw * torch.tensor(want, dtype=torch.float32).view(1, 2, 1))


# -- on the toy world ---------------------------------------------------------------------------

COMMON = {"batch_size": 128, "steps": 300, "lr": 1e-3, "expansion": 4, "sparsity_coeff": 1.0, "val_every": 300, "val_batches": 20,
              "save_every": 100, "progress": False}


def _heldout_ev(run) -> float:
    rows = [json.loads(line) for line in (run / "crosscoder" / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("split") == "heldout"][-1]["ev_mean"]


def _stream_config(world, run, **extra) -> TrainConfig:
    return TrainConfig(run=run, series=str(world), layer=1, revisions=REVISIONS, context_len=64,
                       harvest_batch_size=64, **{**COMMON, **extra})


@pytest.mark.slow
def test_streaming_matches_store_training_and_keeps_a_normal_store(toy_world, tmp_path, monkeypatch):
    """Same 50K tokens, 300 steps: streaming and store-based training end within 0.005 held-out EV
    (the whole held-out split, both), the buffer never exceeds its rows, the kept store equals a harvest."""
    harvested = harvest(HarvestConfig(run=tmp_path / "store", series=str(toy_world), revisions=REVISIONS, layer=1,
                                      tokens=50_000, context_len=64, batch_size=64, progress=False))
    train(TrainConfig(run=tmp_path / "store", **COMMON))

    sources = []
    monkeypatch.setattr(streaming_module, "StreamSource",
                        lambda *a, **k: sources.append(StreamSource(*a, **k)) or sources[-1])
    config = _stream_config(toy_world, tmp_path / "stream", tokens=50_000, buffer_rows=16_384, keep_store=True)
    model = train(config)
    (source,) = sources
    assert 0 < source.peak_rows <= config.buffer_rows
    assert harvested.n_rows("heldout") <= COMMON["val_batches"] * COMMON["batch_size"]  # EV over all held-out rows
    ev_store, ev_stream = _heldout_ev(tmp_path / "store"), _heldout_ev(tmp_path / "stream")
    assert ev_store > 0.8 and abs(ev_stream - ev_store) < 0.005, (ev_stream, ev_store)
    assert model.config.scales == source.scales and model.config.normalised

    kept = ActivationStore(tmp_path / "stream" / "activations")
    assert kept.revisions == harvested.revisions and np.array_equal(kept.tokens, harvested.tokens)
    for rev in REVISIONS:  # bit-equal rows (the chunking differs: the buffer's)
        n = kept.n_rows("train") + kept.n_rows("heldout")
        assert torch.equal(kept.read_block(rev, 0, n), harvested.read_block(rev, 0, n)), rev
        assert kept.scales[rev] == pytest.approx(harvested.scales[rev], rel=1e-9)
    assert kept.verify() == []


class Killed(Exception):
    pass


def test_killed_streaming_run_resumes_to_identical_weights(toy_world, tmp_path, monkeypatch):
    # 25 contexts of 63 rows in chunks of 4 contexts (504 rows = 2 chunks); 40 steps of 64 rows: 1.6 epochs
    small = {"tokens": 1_600, "steps": 40, "batch_size": 64, "save_every": 10, "val_every": 0, "buffer_rows": 504}
    ref = train(_stream_config(toy_world, tmp_path / "ref", **small))

    step = Trainer.train_step

    def dies_at_step_34(self, x):
        if self.step == 34:
            raise Killed  # between the saves of steps 30 and 40, in the second epoch
        return step(self, x)

    monkeypatch.setattr(Trainer, "train_step", dies_at_step_34)
    config = _stream_config(toy_world, tmp_path / "killed", **small)
    with pytest.raises(Killed):
        train(config)
    monkeypatch.setattr(Trainer, "train_step", step)
    assert torch.load(tmp_path / "killed" / "crosscoder" / "state" / "trainer.pt", weights_only=True)["step"] == 30
    got = train(config)  # the same command again
    for key, value in ref.state_dict().items():
        assert torch.equal(got.state_dict()[key], value), key
    assert load(tmp_path / "killed" / "crosscoder").config.scales == ref.config.scales
    rows = [json.loads(line) for line in (tmp_path / "killed" / "crosscoder" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "split" not in r] == list(range(1, 41))


def test_token_ids_are_packed_to_disk_not_held_in_memory(toy_world, tmp_path):
    """Without --keep-store the token ids live memory-mapped in RUN/crosscoder/stream-tokens.npy and
    equal the in-memory packing of the same request (the store's own _tokens), checksum included."""
    import hashlib

    from crosstime.store.harvesting import context_tokens

    harvester = streaming_module.Harvester(_stream_config(toy_world, tmp_path / "run", tokens=1_600, steps=4,
                                                          batch_size=64, buffer_rows=504))
    harvester.prepare()
    assert isinstance(harvester.tokens, np.memmap)
    assert str(harvester.tokens.filename) == str(tmp_path / "run" / "crosscoder" / streaming_module.STREAM_TOKENS)
    c = harvester.checked
    in_memory = context_tokens(harvester.hconfig, c.series, c.corpus, c.request)
    assert np.array_equal(np.asarray(harvester.tokens), in_memory) and in_memory.any()
    assert harvester.tokens_sha256 == hashlib.sha256(in_memory.tobytes()).hexdigest()


def test_streaming_settings_are_refused_with_the_fix(toy_world, tmp_path):
    with pytest.raises(ValidationError, match="both --series and --layer"):
        TrainConfig(run=tmp_path, series=str(toy_world))
    with pytest.raises(ValidationError, match="whole number"):
        TrainConfig(run=tmp_path, series=str(toy_world), layer=1, refill_frac=0.3)
    with pytest.raises(StreamError, match="raise --buffer-rows to 126"):
        train(_stream_config(toy_world, tmp_path / "r", tokens=1_600, buffer_rows=100))
    assert not (tmp_path / "r" / "crosscoder").exists()


def test_overlapped_producer_serves_the_batches_of_the_sequential_one(toy_world, tmp_path, monkeypatch):
    """The producer thread computes chunks ahead; the batches (several rounds, a second epoch) are bit-equal
    to those of the harvester computing each chunk when asked."""
    threads, compute = [], streaming_module.compute_chunk

    def recorded(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return compute(*args, **kwargs)

    monkeypatch.setattr(streaming_module, "compute_chunk", recorded)
    config = _stream_config(toy_world, tmp_path / "run", tokens=1_600, steps=40, batch_size=64, buffer_rows=504)
    batches = {}
    for overlap in (False, True):
        harvester = streaming_module.Harvester(config, overlap=overlap)
        harvester.prepare()
        source = StreamSource(harvester, config.batch_size, config.seed, config.refill_frac, config.normalise,
                              steps=config.total_steps())
        threads.clear()
        batches[overlap] = list(itertools.islice(source.iterate(0), config.total_steps()))
        harvester.close()
        ahead = [t for t in threads if t.startswith("crosstime-harvest")]
        assert (len(ahead) > 0) == overlap, threads
    assert len(batches[True]) == 40
    for a, b in zip(batches[False], batches[True]):
        assert torch.equal(a, b)


def test_shared_cores_halves_the_threads_and_restores_them():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        with streaming_module.shared_cores(True) as shared:
            assert shared == torch.get_num_threads() == 2
        assert torch.get_num_threads() == 4
        torch.set_num_threads(1)
        with streaming_module.shared_cores(True) as shared:
            assert shared == 1
        with streaming_module.shared_cores(False) as shared:
            assert shared == 1
    finally:
        torch.set_num_threads(before)
