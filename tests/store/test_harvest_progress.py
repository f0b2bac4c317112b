"""Harvest's progress bar moves once per batch of contexts, not once per chunk file (a chunk can
take a minute on a busy machine)."""

from __future__ import annotations

import numpy as np
from conftest import tiny_model
from store_helpers import LAYER, T, harvest_config

from crosstime.stages.harvest import harvest
from crosstime.store.harvesting import compute_chunk


def test_compute_chunk_reports_every_batch():
    tokens = np.random.default_rng(0).integers(4, 30, size=(10, T))
    seen: list[int] = []
    chunk = compute_chunk(tiny_model(), tokens, LAYER, 1, 4, "cpu", on_batch=seen.append)
    assert seen == [4, 4, 2]  # 10 contexts in batches of 4
    assert chunk.data.shape == (10 * (T - 1), 32)


def test_harvest_bar_steps_once_per_batch(tiny_series, corpus, tmp_path, monkeypatch):
    from crosstime.progress import Bar
    from crosstime.store import harvesting

    steps: list[float] = []

    class Recorder(Bar):
        def update(self, n=1):
            steps.append(n)
            return super().update(n)

    monkeypatch.setattr(harvesting, "Bar", Recorder)  # the bar harvest's work makes
    # 1500 tokens = 46 contexts of 32 (+ 2 held out); chunks of 8 contexts, batches of 4
    store = harvest(harvest_config(tiny_series, corpus, tmp_path, revisions=["step0", "step10"], progress=True))
    expected = [min(4, (e - s) - b) * T for _rev in ("step0", "step10") for s, e in store.manifest["chunks"]
                for b in range(0, e - s, 4)]  # each chunk of 8 contexts in batches of 4
    assert steps == expected
    assert sum(steps) == 2 * store.manifest["n_contexts"] * T  # every context of both checkpoints, once
