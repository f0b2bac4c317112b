"""Activation store: harvest equals the model's hidden states; resumable; shuffled loader; bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_series, sentences
from store_helpers import LAYER, T, harvest_config, store_files

from crosstime.series import SeriesError, open_series
from crosstime.sites import LayerOutOfRange
from crosstime.store import ActivationStore, HarvestConfig, StoreError
from crosstime.stages.harvest import harvest
from crosstime.store.corpus import CorpusError, pack_contexts, resolve_corpus
from crosstime.store.layout import chunk_paths


@pytest.fixture(scope="module")
def store(tiny_series, corpus, tmp_path_factory) -> ActivationStore:
    return harvest(harvest_config(tiny_series, corpus, tmp_path_factory.mktemp("store")))


def _hidden(series_root: Path, revision: str, tokens: np.ndarray) -> torch.Tensor:
    """Slow reference path: the full model with output_hidden_states, block LAYER's output [n, T, d]."""
    model = open_series(series_root).load_model(revision)
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(tokens, dtype=np.int64)), output_hidden_states=True).hidden_states[LAYER + 1]


# -- layout and contents ------------------------------------------------------------------

def test_manifest_describes_the_store(store, tiny_series):
    m = store.manifest
    assert store.revisions == ["step0", "step10", "step100"]
    assert store.d_model == 32 and store.layer == LAYER and m["dtype"] == "float16"
    assert m["excluded_positions"] == [0] and m["context_len"] == T
    n_train = 1500 // T
    assert store.n_contexts("train") == n_train and store.n_contexts("heldout") == round(0.05 * n_train)
    assert store.tokens.shape == (n_train + store.n_contexts("heldout"), T)
    assert m["n_tokens"] == store.tokens.size and store.n_rows("train") == n_train * (T - 1)
    for rev in store.revisions:
        entry = m["checkpoints"][rev]
        assert entry["status"] == "complete" and entry["chunks_done"] == entry["n_chunks"] == len(m["chunks"])
        assert len(entry["checksums"]) == len(m["chunks"])
    assert m["series"]["source"] == str(Path(tiny_series).resolve())
    assert store.verify() == []
    # version 2: sealed records; each sidecar holds the plan, its chunk, the weights' fingerprint and the file record
    from crosstime.store.layout import file_record, plan_of, seal_ok

    assert m["version"] == 2 and seal_ok(m) and m["tokens_file"] == file_record((store.root / "tokens.npy").stat())
    bin_path, side_path = chunk_paths(store.root, "step10", 3)
    side = json.loads(side_path.read_text())
    assert seal_ok(side) and side["plan"] == plan_of(m) and side["contexts"] == m["chunks"][3]
    assert (side["revision"], side["chunk"], side["file"]) == ("step10", 3, file_record(bin_path.stat()))
    assert side["weights"]["fingerprint"] == m["checkpoints"]["step10"]["fingerprint"]
    assert len({m["checkpoints"][r]["fingerprint"] for r in store.revisions}) == 3


def test_stored_activations_equal_hidden_states(store, tiny_series):
    contexts = np.arange(len(store.tokens))
    for rev in store.revisions:
        h = _hidden(tiny_series, rev, store.tokens[contexts])[:, 1:]  # [n, T-1, d]
        got = store.rows(rev, np.repeat(contexts, T - 1), np.tile(np.arange(1, T), len(contexts)))
        expect = h.reshape(-1, store.d_model)
        # float16 storage: half an ulp (2^-11 relative), plus slack for batch-size-dependent float32 sums
        assert torch.all((got - expect).abs() <= expect.abs() * 2**-10 + 1e-7), rev
        assert expect.abs().max() > 1e-2 and expect.abs().max() / expect.abs().mean() < 1e3  # a meaningful check


def test_tokens_are_the_packed_corpus(store, corpus, tiny_series):
    tokenizer = open_series(tiny_series).load_tokenizer()
    docs = [line for line in corpus.read_text().splitlines() if line.strip()]
    stream = []
    for doc in docs:
        stream += tokenizer(doc)["input_ids"] + [tokenizer.eos_token_id]
    bos = tokenizer.bos_token_id
    expect = [[bos, *stream[i * (T - 1) : (i + 1) * (T - 1)]] for i in range(len(store.tokens))]
    assert np.array_equal(store.tokens, np.array(expect))


def test_pack_contexts_by_hand():
    class Tok:  # BOS 1 prepended to every document (like the toy tokenizer); EOS 2
        bos_token_id, eos_token_id = 1, 2

        def __call__(self, texts, add_special_tokens=True):
            return {"input_ids": [[1, *map(int, t.split())] for t in texts]}

    out = pack_contexts(iter(["5 6 7", "8 9", "10 11 12 13"]), Tok(), n_contexts=3, context_len=4)
    # the document's own BOS serves as the context's BOS; continuation contexts get an inserted BOS
    assert out.tolist() == [[1, 5, 6, 7], [1, 8, 9, 1], [1, 10, 11, 12]]
    with pytest.raises(CorpusError, match="3 full contexts"):
        pack_contexts(iter(["5 6 7", "8 9", "10 11 12 13"]), Tok(), n_contexts=5, context_len=4)


def test_first_position_switch(store, tiny_series, corpus, tmp_path):
    kept = harvest(harvest_config(tiny_series, corpus, tmp_path / "kept", keep_first_position=True, revisions=["step10"]))
    assert kept.manifest["excluded_positions"] == [] and kept.rows_per_context == T
    assert kept.n_rows("train") == store.n_rows("train") + store.n_contexts("train")
    assert np.array_equal(kept.tokens, store.tokens)
    h0 = _hidden(tiny_series, "step10", store.tokens[:4])[:, 0]
    assert torch.allclose(kept.rows("step10", np.arange(4), np.zeros(4, int)), h0, rtol=2**-10, atol=1e-7)
    with pytest.raises(IndexError, match="position 0 is excluded"):
        store.rows("step10", [0], [0])
    # the scale is estimated on the kept positions only, so the switch changes it
    assert kept.scales["step10"] != pytest.approx(store.scales["step10"], rel=1e-6)


def test_scale_matches_direct_computation(store, tiny_series):
    lo, hi = store.context_range("train")
    for rev in store.revisions:
        h = _hidden(tiny_series, rev, store.tokens[lo:hi])[:, 1:].double()
        direct = np.sqrt(store.d_model) / h.norm(dim=-1).mean().item()
        assert store.scales[rev] == pytest.approx(direct, rel=1e-3)
    # normalised batches: mean row norm sqrt(d) per checkpoint over one epoch
    norms = torch.cat([x.norm(dim=-1) for x in store.batches(batch_size=256)])
    assert norms.mean(0).numpy() == pytest.approx([np.sqrt(32)] * 3, rel=1e-3)


# -- loader -----------------------------------------------------------------------------------

@pytest.mark.parametrize("split", ["train", "heldout"])
def test_loader_covers_every_row_once(store, split):
    seen, sizes = [], []
    for x, idx in store.batches(batch_size=100, split=split, with_index=True, buffer_rows=300, block_rows=16):
        seen.append(idx)
        sizes.append(len(x))
    seen = torch.cat(seen).numpy()
    lo, hi = store.context_range(split)
    assert np.array_equal(np.sort(seen), np.arange(lo * (T - 1), hi * (T - 1)))
    assert all(s == 100 for s in sizes[:-1]) and len(sizes) == store.n_batches(split, 100)
    if split == "train":
        assert not np.array_equal(seen, np.sort(seen))  # shuffled


def test_loader_values_match_random_access(store):
    x, idx = next(store.batches(batch_size=64, with_index=True, normalise=False))
    assert x.shape == (64, 3, 32) and x.dtype == torch.float32
    contexts, positions = store.locate(idx.numpy())
    for m, rev in enumerate(store.revisions):
        assert torch.equal(x[:, m], store.rows(rev, contexts, positions))
    xn, idx2 = next(store.batches(batch_size=64, with_index=True, normalise=True))
    assert torch.equal(idx, idx2)
    assert torch.allclose(xn, x * torch.tensor([store.scales[r] for r in store.revisions]).view(1, 3, 1))
    sub, idx3 = next(store.batches(revisions=["step100", "step0"], batch_size=64, with_index=True, normalise=False))
    assert torch.equal(sub[:, 0], store.read_rows("step100", idx3.numpy())) and sub.shape == (64, 2, 32)


def test_loader_is_deterministic_and_resumable(store):
    kw = dict(batch_size=70, buffer_rows=200, block_rows=10, with_index=True)
    full = [i for _, i in store.batches(seed=3, epoch=1, **kw)]
    again = [i for _, i in store.batches(seed=3, epoch=1, **kw)]
    assert all(torch.equal(a, b) for a, b in zip(full, again)) and len(full) == len(again)
    other = [i for _, i in store.batches(seed=3, epoch=2, **kw)]
    assert not torch.equal(full[0], other[0])
    for skip in (1, 3, len(full) - 1):  # resume mid-window and across windows
        tail = [i for _, i in store.batches(seed=3, epoch=1, skip_batches=skip, **kw)]
        assert len(tail) == len(full) - skip and all(torch.equal(a, b) for a, b in zip(full[skip:], tail))


def test_loader_ranks_get_disjoint_equal_shares(store):
    shares = [torch.cat([i for _, i in store.batches(batch_size=50, rank=r, world_size=2, with_index=True, block_rows=8,
                                                      buffer_rows=64)]).numpy() for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 50 * store.n_batches("train", 50, world_size=2, block_rows=8)
    assert not set(shares[0]) & set(shares[1])
    assert len(shares[0]) + len(shares[1]) > store.n_rows("train") - 2 * (50 + 8)  # only a remainder is dropped


def test_contexts_iterates_heldout_tokens(store):
    batches = list(store.contexts("heldout", batch_size=2))
    lo, hi = store.context_range("heldout")
    assert torch.equal(torch.cat(batches), torch.from_numpy(np.asarray(store.tokens[lo:hi], dtype=np.int64)))


# -- append, resume, corruption, distributed ---------------------------------------------------------

def test_append_a_checkpoint_harvests_only_it(store, tiny_series, corpus, tmp_path, monkeypatch):
    run = tmp_path / "acts"
    out = run / "activations"
    harvest(harvest_config(tiny_series, corpus, run, revisions=["step0", "step10"]))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.bin")}
    loaded = []
    from crosstime.series import CheckpointSeries

    original = CheckpointSeries.load_model
    monkeypatch.setattr(CheckpointSeries, "load_model", lambda self, rev, **kw: loaded.append(rev) or original(self, rev, **kw))
    appended = harvest(harvest_config(tiny_series, corpus, run, revisions=["step100"]))
    assert loaded == ["step100"]
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert appended.revisions == ["step0", "step10", "step100"]
    assert store_files(out) == store_files(store.root)


def _run_slow_harvest(config: HarvestConfig) -> subprocess.Popen:
    """Harvest in a subprocess whose forward pass sleeps 0.15 s, so it can be killed mid-way."""
    script = (
        "import time, crosstime.store.harvesting as h\n"
        "fast = h.read_site\n"
        "def slow(*a, **k):\n    time.sleep(0.15)\n    return fast(*a, **k)\n"
        "h.read_site = slow\n"
        "from crosstime.stages.harvest import harvest\n"
        f"harvest(h.HarvestConfig.model_validate_json({config.model_dump_json()!r}))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_killed_harvest_resumes_to_identical_store(store, tiny_series, corpus, tmp_path):
    run = tmp_path / "acts"
    out = run / "activations"
    proc = _run_slow_harvest(harvest_config(tiny_series, corpus, run))
    deadline = time.monotonic() + 120
    while len(list(out.glob("*/*.json"))) < 4:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(out.glob("*/*.json")))
    assert 4 <= done < 3 * len(store.manifest["chunks"])  # killed mid-way
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["revisions"] == [] and manifest["checkpoints"]["step0"]["status"] != "complete"
    with pytest.raises(StoreError, match="not in the store"):
        ActivationStore(out).batches(revisions=["step0"])
    resumed = harvest(harvest_config(tiny_series, corpus, run))
    assert store_files(out) == store_files(store.root)
    assert resumed.verify() == []


def test_corrupted_and_truncated_chunks_are_redone(store, tiny_series, corpus, tmp_path):
    run = tmp_path / "acts"
    out = run / "activations"
    shutil.copytree(store.root, out)
    flipped, truncated = chunk_paths(out, "step10", 2)[0], chunk_paths(out, "step100", 5)[0]
    data = bytearray(flipped.read_bytes())
    data[100] ^= 0xFF
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:-64])
    problems = ActivationStore(out).verify()
    assert problems == ["step10 chunk 2: missing, truncated or corrupted", "step100 chunk 5: missing, truncated or corrupted"]
    harvest(harvest_config(tiny_series, corpus, run))
    assert store_files(out) == store_files(store.root)


@pytest.mark.slow  # torchrun: two or four processes
def test_two_process_torchrun_harvest_equals_single_process_and_reads_disjoint_shares(store, tiny_series, corpus, tmp_path):
    config = harvest_config(tiny_series, corpus, tmp_path / "acts")
    script = tmp_path / "run.py"
    script.write_text(  # each rank harvests its share, then reads its share of one epoch
        "import numpy as np, torch, crosstime.store.harvesting as h\n"
        "from crosstime.distributed import world\n"
        "from crosstime.stages.harvest import harvest\n"
        f"store = harvest(h.HarvestConfig.model_validate_json({config.model_dump_json()!r}))\n"
        "w = world()\n"
        "rows = [i for _, i in store.batches(batch_size=50, rank=w.rank, world_size=w.size, with_index=True)]\n"
        f"np.save({str(tmp_path)!r} + f'/rank{{w.rank}}.npy', torch.cat(rows).numpy())\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert store_files(tmp_path / "acts" / "activations") == store_files(store.root)
    shares = [np.load(tmp_path / f"rank{r}.npy") for r in range(2)]
    assert len(shares[0]) == len(shares[1]) > 0 and not set(shares[0]) & set(shares[1])
    for r in range(2):  # the same shares as asked for in one process
        expect = torch.cat([i for _, i in store.batches(batch_size=50, rank=r, world_size=2, with_index=True)])
        assert np.array_equal(shares[r], expect.numpy())


# -- corpus inputs ------------------------------------------------------------------------------------

def test_jsonl_and_hf_dataset_corpora_give_the_same_tokens(store, tiny_series, corpus, tmp_path):
    docs = [line for line in corpus.read_text().splitlines() if line.strip()]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    a = harvest(harvest_config(tiny_series, jsonl, tmp_path / "a", revisions=["step0"]))
    assert np.array_equal(a.tokens, store.tokens)
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": docs}).save_to_disk(str(tmp_path / "ds"))
    b = harvest(harvest_config(tiny_series, tmp_path / "ds", tmp_path / "b", revisions=["step0"]))
    assert np.array_equal(b.tokens, store.tokens)
    assert store_files(a.root)["step0/00000.bin"] == store_files(store.root)["step0/00000.bin"]


def test_toy_world_layout_uses_its_heldout_corpus(tiny_series, tmp_path):
    world = tmp_path / "world"
    (world / "corpus").mkdir(parents=True)
    (world / "corpus" / "train.txt").write_text("\n".join(sentences(300, seed=1)))
    (world / "corpus" / "heldout.txt").write_text("\n".join(sentences(100, seed=2)))
    c = resolve_corpus(world)
    assert c.train.name == "train.txt" and c.heldout.name == "heldout.txt"
    st = harvest(harvest_config(tiny_series, world, tmp_path / "s", revisions=["step0"], tokens=640, heldout_tokens=96))
    tokenizer = open_series(tiny_series).load_tokenizer()
    first_heldout = tokenizer(sentences(100, seed=2)[0])["input_ids"]
    lo, _ = st.context_range("heldout")
    assert st.n_contexts("heldout") == 3 and st.tokens[lo, 1 : 1 + len(first_heldout)].tolist() == first_heldout


# -- bad input: clear errors before any work ---------------------------------------------------------

@pytest.fixture(scope="module")
def mixed_width_series(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    make_tiny_series(root / "a", steps=(0,), d=32)
    make_tiny_series(root / "b", steps=(5,), d=48)
    shutil.move(root / "b" / "step5", root / "a" / "step5")
    from crosstime.checkpoints import Checkpoint, write_series_manifest

    write_series_manifest(root / "a", [Checkpoint("step0", 0, 0), Checkpoint("step5", 5, 5000)])
    return root / "a"


def test_bad_input_fails_before_work(tiny_series, corpus, mixed_width_series, store, tmp_path, monkeypatch):
    from crosstime.series import CheckpointSeries

    monkeypatch.setattr(CheckpointSeries, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    out = tmp_path / "never"
    with pytest.raises(SeriesError, match="unknown revision 'step7'"):
        harvest(harvest_config(tiny_series, corpus, out, revisions=["step7"]))
    with pytest.raises(SeriesError, match="differ in width"):
        harvest(harvest_config(mixed_width_series, corpus, out, revisions=["step0", "step5"]))
    with pytest.raises(LayerOutOfRange, match=r"must be in 0\.\.2"):
        harvest(harvest_config(tiny_series, corpus, out, layer=3))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(CorpusError, match="is empty"):
        harvest(harvest_config(tiny_series, empty, out))
    short = tmp_path / "short.txt"
    short.write_text("\n".join(sentences(20)))
    with pytest.raises(CorpusError, match=r"documents give \d+ tokens = \d+ full contexts of 32 tokens, but 48 contexts"):
        harvest(harvest_config(tiny_series, short, out))
    assert not out.exists()
    with pytest.raises(StoreError, match=r"does not match this request:\n  site"):
        harvest(harvest_config(tiny_series, corpus, store.root.parent, layer=0))
    with pytest.raises(StoreError, match="splits"):
        harvest(harvest_config(tiny_series, corpus, store.root.parent, tokens=3000))
    with pytest.raises(StoreError, match="not an activation store"):
        ActivationStore(tmp_path)


# -- command line ---------------------------------------------------------------------------------------

def test_cli_harvest_records_config_and_matches_api(store, tiny_series, corpus, tmp_path):
    from typer.testing import CliRunner

    from crosstime.artifacts import RunDir
    from crosstime.cli import app
    from crosstime.stage import read_records

    run = tmp_path / "run"
    args = ["harvest", str(run), str(tiny_series), "--revisions", "step0,step10", "--revisions", "step100",
            "--layer", str(LAYER), "--corpus", str(corpus), "--tokens", "1.5K", "--context-len", str(T),
            "--chunk-contexts", "8", "--batch-size", "4", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert store_files(run / "activations") == store_files(store.root)
    saved = read_records(RunDir(run))["harvest"]
    assert saved["tokens"] == 1500 // T * T and saved["revisions"] == ["step0", "step10", "step100"] and saved["layer"] == LAYER
    assert "batch_size" not in saved and "device" not in saved  # how, not what: never part of the record
    bad = CliRunner().invoke(app, [*args[:8], "7", *args[9:]])
    assert bad.exit_code == 2 and "layer 7 is out of range" in bad.output


def test_harvest_records_itself_and_a_copied_run_reuses_it(store, tiny_series, corpus, tmp_path):
    from crosstime import stage

    run = tmp_path / "run"
    cfg = harvest_config(tiny_series, corpus, run, revisions=["step0"])
    assert not stage.finished(cfg)
    harvest(cfg)
    assert stage.finished(cfg) and stage.finished(cfg.model_copy(update={"batch_size": 2, "device": "cpu"}))
    assert not stage.finished(cfg.model_copy(update={"revisions": ["step0", "step10"]}))
    shutil.copytree(run, tmp_path / "copy")
    assert stage.finished(cfg.model_copy(update={"run": tmp_path / "copy"}))
    # the unset settings are recorded as the store has them, and a config that leaves them unset still matches
    record = stage.recorded(cfg)
    assert record["keep_first_position"] is False and record["dtype"] == "float16"
    assert stage.finished(HarvestConfig(run=run, series=str(tiny_series), revisions=["step0"], layer=LAYER))


def test_unshuffled_batches_are_in_store_order(store):
    idx = torch.cat([i for _, i in store.batches(batch_size=100, split="heldout", shuffle=False, with_index=True)])
    lo, hi = store.context_range("heldout")
    assert torch.equal(idx, torch.arange(lo * (T - 1), hi * (T - 1)))


def test_appending_adopts_the_stores_settings(store, tiny_series, corpus, tmp_path):
    from crosstime.store import resolve_config

    run = tmp_path / "acts"
    harvest(harvest_config(tiny_series, corpus, run, revisions=["step0"], tokens=1000, dtype="bfloat16", keep_first_position=True))
    minimal = HarvestConfig(series=str(tiny_series), revisions=["step10"], layer=LAYER, run=run, progress=False)
    resolved = resolve_config(minimal)
    assert (resolved.tokens, resolved.context_len, resolved.dtype, resolved.keep_first_position, resolved.corpus) == (
        1000 // T * T, T, "bfloat16", True, str(corpus.resolve()))
    appended = harvest(minimal)
    assert appended.revisions == ["step0", "step10"] and appended.dtype == "bfloat16"
    h = _hidden(tiny_series, "step10", appended.tokens[:2])  # bfloat16 storage: half an ulp is 2^-9 relative
    got = appended.rows("step10", np.repeat([0, 1], T), np.tile(np.arange(T), 2)).view(2, T, -1)
    assert torch.all((got - h).abs() <= h.abs() * 2**-8 + 1e-7)


def test_memmap_and_read_block_agree_with_rows(store):
    chunk = 3
    lo, hi = (int(v) for v in store.chunks[chunk])
    mm = store.memmap("step10", chunk)
    assert mm.shape == ((hi - lo) * (T - 1), 32)
    start = lo * (T - 1) - 5  # a block that straddles two chunk files
    block = store.read_block("step10", start, 40)
    assert torch.equal(block[5:], torch.from_numpy(np.asarray(mm[:35], dtype=np.float32)))
    contexts, positions = store.locate(np.arange(start, start + 40))
    assert torch.equal(block, store.rows("step10", contexts, positions))


def test_hub_family_whose_revisions_cannot_be_listed_uses_the_requested_ones(monkeypatch, tmp_path):
    """OLMo's revisions cannot be listed offline: harvest must open the series with the ones asked for."""
    from crosstime.series import CheckpointSeries
    from crosstime.store import harvesting

    seen = []

    def stop(series, *args, **kwargs):
        seen.append(series.revisions)
        raise RuntimeError("stop before any download")

    monkeypatch.setattr(CheckpointSeries, "check_compatible", stop)
    with pytest.raises(RuntimeError, match="stop before any download"):
        harvesting._resolve(HarvestConfig(series="allenai/OLMo-1B-hf", revisions=["step20000-tokens84B"],
                                          layer=8, run=tmp_path / "acts"))
    assert seen == [["step20000-tokens84B"]]
