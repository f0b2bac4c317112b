"""Faults of the activation store: a damaged file is a clear error or is repaired, never a silent result.

The corruption matrix damages each file kind of a store (a chunk .bin of the train and of the
held-out split, a chunk sidecar, manifest.json, tokens.npy) in each way (garbage of the same
size, truncation, deletion, an edited value, a swap with a valid file of another chunk or
store), then (1) reads the store every way a stage does (batches, random access, memory maps,
tokens, training): each read either stops with a StoreError naming the damaged file or gives
exactly the undamaged store's result; at least one read stops; and (2) re-runs the harvest
command: it repairs the store (identical to the undamaged one) or stops with a StoreError
naming the file. Also: disk full, non-UTF-8 corpora, a lost manifest (recovered or refused),
weight fingerprints, changed files while open, verification's caching, and bad arguments.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_series, sentences, tiny_model
from store_helpers import LAYER, T, harvest_config, store_files

from crosstime.crosscoder import TrainSettings, fit
from crosstime.series import open_series
from crosstime.sites import weights_fingerprint
from crosstime.store import ActivationStore, HarvestConfig, StoreError, integrity
from crosstime.stages.harvest import harvest
from crosstime.store.corpus import CorpusError, iter_documents
from crosstime.store.layout import MANIFEST, TOKENS, VERIFIED, chunk_paths


def _raw(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ref(tiny_series, corpus, tmp_path_factory) -> ActivationStore:
    """The undamaged store (its files are never changed)."""
    return harvest(harvest_config(tiny_series, corpus, tmp_path_factory.mktemp("ref")))


@pytest.fixture(scope="module")
def other(tiny_series, tmp_path_factory) -> ActivationStore:
    """A valid store of another plan: another layer, another corpus, one checkpoint (same shapes)."""
    root = tmp_path_factory.mktemp("other")
    text = root / "other.txt"
    text.write_text("\n".join(sentences(800, seed=7)) + "\n")
    return harvest(harvest_config(tiny_series, text, root / "run", layer=0, revisions=["step0", "step10"]))


# -- the corruption matrix -------------------------------------------------------------------------

TARGETS = {  # file kind -> path in the store
    "train chunk .bin": "step10/00002.bin",
    "held-out chunk .bin": "step100/00006.bin",
    "chunk sidecar .json": "step10/00002.json",
    "manifest.json": MANIFEST,
    "tokens.npy": TOKENS,
}
DAMAGES = ["garbage", "truncate", "delete", "edit", "swap"]


def _edit(path: Path) -> None:
    """A plausible edited value: finite activations, a sidecar's or the manifest's number, token ids."""
    if path.suffix == ".bin":
        a = np.fromfile(path, dtype=np.float16)
        a[100:110] *= 2  # finite, same size: the kind of damage that once trained silently
        a.tofile(path)
    elif path.name == TOKENS:
        ids = np.load(path)
        ids[3, 5:9] = (ids[3, 5:9] + 1) % 30
        np.save(path, ids)
    else:
        data = json.loads(path.read_text())
        if path.name == MANIFEST:
            data["checkpoints"]["step10"]["scale"] *= 2
        else:
            data["norm_sum"] *= 2
        path.write_text(json.dumps(data, indent=2) + "\n")


def _swap(path: Path, rel: str, other: ActivationStore) -> None:
    """Replace by a valid file of the same kind and size: another chunk's, or another store's (cp -p)."""
    if path.name in (MANIFEST, TOKENS):
        source = other.root / rel
    else:  # the same chunk of another checkpoint
        source = path.parent.parent / ("step0" if path.parent.name == "step10" else "step10") / path.name
    shutil.copy2(source, path)


def _damage(root: Path, rel: str, how: str, other: ActivationStore) -> None:
    path = root / rel
    if how == "garbage":
        size = path.stat().st_size
        if path.suffix == ".bin":  # finite float16 values of the same size
            garbage = np.random.default_rng(1).normal(0, 1, size // 2).astype(np.float16).tobytes()
        else:
            garbage = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()
        path.write_bytes(garbage)
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "delete":
        path.unlink()
    elif how == "edit":
        _edit(path)
    else:
        _swap(path, rel, other)


def _reads(root: Path) -> dict:
    """Every way a stage reads a store, each from a freshly opened store: name -> (thunk)."""

    def opened(fn):
        return lambda: fn(ActivationStore(root))

    def all_rows(s):
        return [s.read_rows(r, np.arange(s.n_rows("train") + s.n_rows("heldout"))) for r in s.revisions]

    def trained(s):
        model = fit(s, TrainSettings(steps=2, batch_size=64, n_features=16, progress=False, val_every=0, seed=0))
        return [v.clone() for v in model.state_dict().values()]

    return {
        "batches(train)": opened(lambda s: [x for x in s.batches(batch_size=64, with_index=True)]),
        "batches(heldout)": opened(lambda s: [x for x in s.batches(batch_size=64, split="heldout", with_index=True)]),
        "read_rows": opened(all_rows),
        "read_block": opened(lambda s: [s.read_block(r, 0, s.n_rows("train") + s.n_rows("heldout")) for r in s.revisions]),
        "memmap": opened(lambda s: [np.array(s.memmap(r, c)) for r in s.revisions for c in range(len(s.chunks))]),
        "tokens": opened(lambda s: np.array(s.tokens)),
        "contexts": opened(lambda s: list(s.contexts("heldout", batch_size=2))),
        "train": opened(trained),
    }


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return np.array_equal(a, b)


@pytest.fixture(scope="module")
def expected(ref) -> dict:
    """What every read gives on the undamaged store."""
    return {name: read() for name, read in _reads(ref.root).items()}


OUTCOMES: list[dict] = []  # one row per case, written to $CROSSTIME_FAULT_REPORT when set


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    if os.environ.get("CROSSTIME_FAULT_REPORT") and OUTCOMES:
        Path(os.environ["CROSSTIME_FAULT_REPORT"]).write_text(json.dumps(OUTCOMES, indent=1))


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("target", list(TARGETS))
def test_damaged_store_is_refused_or_repaired(target, how, ref, other, expected, tiny_series, corpus, tmp_path):
    rel = TARGETS[target]
    run = tmp_path / "run"
    out = run / "activations"
    shutil.copytree(ref.root, out)
    _damage(out, rel, how, other)
    named = Path(rel).name
    row = {"file": target, "damage": how, "errors": [], "unaffected": [], "silent": []}
    for name, read in _reads(out).items():
        try:
            got = read()
        except StoreError as err:  # anything else is a traceback: it fails the test
            assert named in str(err), f"{name}: {err}"
            row["errors"].append(name)
            continue
        (row["unaffected"] if _same(got, expected[name]) else row["silent"]).append(name)
    # (2) the harvest command again: a repair, or a clear refusal that deletes nothing
    before = _raw(out)
    try:
        harvest(harvest_config(tiny_series, corpus, run))
        assert store_files(out) == store_files(ref.root) and ActivationStore(out).verify() == []
        row["harvest"] = "repaired"
    except StoreError as err:
        assert named in str(err), str(err)
        assert {k: v for k, v in _raw(out).items() if k != VERIFIED} == {k: v for k, v in before.items() if k != VERIFIED}
        row["harvest"] = f"refused: {err}"
    OUTCOMES.append(row)
    assert not row["silent"], row
    assert row["errors"], f"{target} × {how} was read without any error: {row}"


# -- verification's cost: hashing at most once, and never for the harvest's own files --------------------

def _count_hashes(monkeypatch) -> list[int]:
    calls = []
    original = integrity.hash_fd
    monkeypatch.setattr(integrity, "hash_fd", lambda fd, *a: calls.append(fd) or original(fd, *a))
    return calls


def test_reads_hash_each_file_once_and_the_harvests_own_files_never(ref, tmp_path, monkeypatch):
    calls = _count_hashes(monkeypatch)
    list(ActivationStore(ref.root).batches(batch_size=128))
    assert ActivationStore(ref.root).tokens.shape == ref.tokens.shape
    assert calls == []  # the sidecars' records: the harvest hashed these bytes
    copy = tmp_path / "copy"
    shutil.copytree(ref.root, copy)  # new inodes and ctimes: a copy is hashed once
    store = ActivationStore(copy)
    list(store.batches(batch_size=128))
    list(store.batches(batch_size=128, split="heldout"))
    assert store.tokens.shape == ref.tokens.shape
    n_files = len(store.revisions) * len(store.chunks) + 1
    assert len(calls) == n_files
    list(ActivationStore(copy).batches(batch_size=128))  # same process: remembered
    ActivationStore(copy).read_rows("step0", [0, 5])
    assert len(calls) == n_files
    store.close()
    script = ("import crosstime.store.integrity as i, numpy as np\n"
              "from crosstime.store import ActivationStore\n"
              "n = []\nh = i.hash_fd\ni.hash_fd = lambda fd, *a: n.append(fd) or h(fd, *a)\n"
              f"s = ActivationStore({str(copy)!r}); list(s.batches(batch_size=128)); s.tokens\nprint(len(n))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"  # another process: .verified.json


def test_a_changed_file_is_caught_even_with_its_old_mtime(ref, tmp_path):
    out = tmp_path / "acts"
    shutil.copytree(ref.root, out)
    list(ActivationStore(out).batches(batch_size=128))  # verified and recorded in .verified.json
    path = chunk_paths(out, "step0", 1)[0]
    st = path.stat()
    a = np.fromfile(path, dtype=np.float16)
    a[7] += 1
    a.tofile(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: the ctime tells
    with pytest.raises(StoreError, match=r"step0/00001\.bin does not match the checksum"):
        list(ActivationStore(out).batches(batch_size=128))
    os.utime(chunk_paths(out, "step0", 2)[0])  # touched, not changed: hashed again, accepted
    ActivationStore(out).read_rows("step0", [ActivationStore(out).chunks[2, 0] * (T - 1)])


def test_a_file_written_while_open_is_caught(ref, tmp_path):
    out = tmp_path / "acts"
    shutil.copytree(ref.root, out)
    store = ActivationStore(out)
    first = store.read_rows("step10", [0, 1, 2])  # chunk 0 open and verified
    with open(chunk_paths(out, "step10", 0)[0], "r+b") as handle:  # in place: the same inode
        handle.write(np.full(64, 3.0, dtype=np.float16).tobytes())
    with pytest.raises(StoreError, match=r"step10/00000\.bin does not match the checksum"):
        store.read_rows("step10", [0, 1, 2])
    assert torch.equal(first, ref.read_rows("step10", [0, 1, 2]))


# -- never destroy what cannot be rebuilt: a lost manifest ------------------------------------------

def test_lost_manifest_is_rebuilt_from_the_sidecars_with_the_short_command(ref, tiny_series, tmp_path):
    run = tmp_path / "run"
    out = run / "activations"
    shutil.copytree(ref.root, out)
    (out / MANIFEST).unlink()
    with pytest.raises(StoreError, match="manifest.json is missing; re-run the harvest"):
        ActivationStore(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.bin")}
    # the short command: no --tokens, --context-len, --chunk-contexts (once: re-planned with defaults, chunks deleted)
    store = harvest(HarvestConfig(run=run, series=str(tiny_series), layer=LAYER, revisions=["step100"], progress=False))
    assert store.revisions == ref.revisions and store_files(out) == store_files(ref.root)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.bin")} == mtimes  # not one chunk rewritten


@pytest.mark.parametrize("damage", ["garbage", "edited"])
def test_unreadable_manifest_is_not_taken_for_no_store(ref, tiny_series, tmp_path, damage):
    run = tmp_path / "run"
    out = run / "activations"
    shutil.copytree(ref.root, out)
    if damage == "garbage":
        (out / MANIFEST).write_text('{"format": "crosstime-activ')
    else:
        manifest = json.loads((out / MANIFEST).read_text())
        manifest["context_len"] = 64
        (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="manifest.json"):
        ActivationStore(out)
    harvest(HarvestConfig(run=run, series=str(tiny_series), layer=LAYER, progress=False))
    assert store_files(out) == store_files(ref.root)


def _strip_plans(root: Path) -> None:
    """Make the sidecars those of an older crosstime (no plan, no seal, no file record)."""
    for path in root.glob("*/*.json"):
        side = json.loads(path.read_text())
        path.write_text(json.dumps({k: side[k] for k in ("rows", "sha256", "norm_sum", "max_abs")}))


def test_a_version_1_store_is_read_hashed_once_and_appended_to(ref, expected, tiny_series, corpus, tmp_path, monkeypatch):
    """Stores harvested before seals and file records: every file is hashed once, then the usual checks."""
    run = tmp_path / "run"
    out = run / "activations"
    shutil.copytree(ref.root, out)
    _strip_plans(out)
    shutil.rmtree(out / "step100")
    manifest = json.loads((out / MANIFEST).read_text())
    for key in ("seal", "tokens_file"):
        del manifest[key]
    for rev in ("step0", "step10"):
        for key in ("fingerprint", "model_dtype"):
            del manifest["checkpoints"][rev][key]
    del manifest["checkpoints"]["step100"]
    manifest.update(version=1, revisions=["step0", "step10"])
    (out / MANIFEST).write_text(json.dumps(manifest))
    calls = _count_hashes(monkeypatch)
    store = ActivationStore(out)
    assert _same(list(store.batches(revisions=["step0", "step10"], batch_size=64, with_index=True)),
                 list(ref.batches(revisions=["step0", "step10"], batch_size=64, with_index=True)))
    assert len(calls) == 2 * 6  # the train chunks of two checkpoints, once
    a = np.fromfile(chunk_paths(out, "step0", 1)[0], dtype=np.float16)
    a[0] += 1
    a.tofile(chunk_paths(out, "step0", 1)[0])
    with pytest.raises(StoreError, match=r"step0/00001\.bin does not match the checksum"):
        list(ActivationStore(out).batches(batch_size=64))
    monkeypatch.undo()
    appended = harvest(harvest_config(tiny_series, corpus, run))  # redoes that chunk, adds step100; now version 2
    assert appended.revisions == ref.revisions and appended.manifest["version"] == 2
    assert _same(list(appended.batches(batch_size=64, with_index=True)), expected["batches(train)"])


def test_unrecoverable_plan_is_refused_naming_the_flags_then_taken_from_them(ref, expected, tiny_series, corpus, tmp_path):
    run = tmp_path / "run"
    out = run / "activations"
    shutil.copytree(ref.root, out)
    _strip_plans(out)
    (out / MANIFEST).unlink()
    before = _raw(out)
    short = HarvestConfig(run=run, series=str(tiny_series), layer=LAYER, corpus=str(corpus), progress=False)
    with pytest.raises(StoreError) as err:
        harvest(short)
    for flag in ("--tokens", "--heldout-tokens", "--context-len", "--chunk-contexts", "--dtype", "--keep-first-position"):
        assert flag in str(err.value)
    assert "does not record the store's plan" in str(err.value) and _raw(out) == before  # nothing touched
    # with a wrong plan given, nothing is deleted either
    wrong = short.model_copy(update={"tokens": 1500, "heldout_tokens": 64, "context_len": T, "chunk_contexts": 4,
                                     "dtype": "float16", "keep_first_position": False})
    with pytest.raises(StoreError, match="not written for this store's plan"):
        harvest(wrong)
    assert _raw(out) == before
    given = wrong.model_copy(update={"chunk_contexts": 8, "heldout_tokens": 2 * T})
    store = harvest(given)
    assert {k: v for k, v in _raw(out).items() if k.endswith(".bin")} == {k: v for k, v in before.items() if k.endswith(".bin")}
    assert store.verify() == [] and _same(_reads(out)["batches(train)"](), expected["batches(train)"])


def test_sidecars_of_two_plans_are_refused(ref, other, tiny_series, tmp_path):
    run = tmp_path / "run"
    out = run / "activations"
    shutil.copytree(ref.root, out)
    (out / MANIFEST).unlink()
    for suffix in (".bin", ".json"):  # another plan's chunk 0 of step0 in place of this one's
        shutil.copy2(other.root / "step0" / f"00000{suffix}", out / "step0" / f"00000{suffix}")
    before = _raw(out)
    with pytest.raises(StoreError, match="sidecars disagree about the plan"):
        harvest(HarvestConfig(run=run, series=str(tiny_series), layer=LAYER, progress=False))
    assert _raw(out) == before


def test_a_chunk_of_another_plan_is_named_not_deleted(ref, other, tiny_series, corpus, tmp_path):
    run = tmp_path / "run"
    out = run / "activations"
    shutil.copytree(ref.root, out)
    for suffix in (".bin", ".json"):
        shutil.copy2(other.root / "step0" / f"00003{suffix}", out / "step0" / f"00003{suffix}")
    before = _raw(out)
    with pytest.raises(StoreError, match=r"step0/00003\.bin \(its sidecar records another plan: corpus.*site"):
        harvest(harvest_config(tiny_series, corpus, run))
    assert _raw(out) == before


# -- fingerprints -------------------------------------------------------------------------------------

def test_fingerprints_are_recorded_per_checkpoint(ref, tiny_series):
    series = open_series(tiny_series)
    prints = {r: weights_fingerprint(series.load_model(r)) for r in ref.revisions}
    assert len(set(prints.values())) == 3
    for rev in ref.revisions:
        assert ref.manifest["checkpoints"][rev]["fingerprint"] == prints[rev]
        assert ref.manifest["checkpoints"][rev]["model_dtype"] == "float32"
        side = json.loads(chunk_paths(ref.root, rev, 0)[1].read_text())
        assert side["weights"] == {"fingerprint": prints[rev], "model_dtype": "float32"}


def test_fingerprint_sees_the_first_and_last_blocks_and_the_final_norm():
    model = tiny_model(layers=3, seed=1)
    base = weights_fingerprint(model)
    assert weights_fingerprint(tiny_model(layers=3, seed=1)) == base and weights_fingerprint(tiny_model(seed=2)) != base
    for param in (model.gpt_neox.layers[0].attention.dense.weight, model.gpt_neox.layers[2].mlp.dense_4h_to_h.bias,
                  model.gpt_neox.final_layer_norm.weight, model.gpt_neox.embed_in.weight):
        kept = param.detach().clone()
        with torch.no_grad():
            param.view(-1)[0] += 0.5
        assert weights_fingerprint(model) != base
        with torch.no_grad():
            param.copy_(kept)
        assert weights_fingerprint(model) == base
    assert weights_fingerprint(model.to(torch.bfloat16)) != base


def test_two_revisions_with_identical_weights_are_warned(tiny_series, corpus, tmp_path):
    from crosstime.checkpoints import Checkpoint, write_series_manifest

    series = tmp_path / "series"
    for rev in ("step0", "step10"):
        shutil.copytree(Path(tiny_series) / rev, series / rev)
    shutil.copytree(Path(tiny_series) / "step10", series / "step20")  # step20 serves step10's weights
    write_series_manifest(series, [Checkpoint("step0", 0, 0), Checkpoint("step10", 10, 10_000),
                                   Checkpoint("step20", 20, 20_000)])
    with pytest.warns(UserWarning, match=r"step10 and step20 of .* have identical weights .*the series may serve "
                                         r"one checkpoint's weights under two names"):
        store = harvest(harvest_config(series, corpus, tmp_path / "run"))
    entries = store.manifest["checkpoints"]
    assert entries["step10"]["fingerprint"] == entries["step20"]["fingerprint"] != entries["step0"]["fingerprint"]


def test_a_checkpoint_whose_weights_changed_is_refused(corpus, tmp_path):
    series = make_tiny_series(tmp_path / "series", steps=(0, 10))
    run = tmp_path / "run"
    out = run / "activations"
    harvest(harvest_config(series, corpus, run))
    chunk_paths(out, "step10", 4)[0].unlink()  # a chunk to redo ...
    tiny_model(vocab_size=len(open_series(series).load_tokenizer()), seed=99).save_pretrained(series / "step10")
    before = _raw(out)
    with pytest.raises(StoreError, match=r"weights of step10 .* are not those its chunks .* changed under the store"):
        harvest(harvest_config(series, corpus, run))  # ... from other weights: refused
    bins = lambda files: {k: v for k, v in files.items() if k.endswith(".bin")}
    assert bins(_raw(out)) == bins(before) and not chunk_paths(out, "step10", 4)[0].exists()
    with pytest.raises(StoreError, match="were computed with --model-dtype float32"):
        harvest(harvest_config(series, corpus, run, model_dtype="bfloat16"))


# -- disk full --------------------------------------------------------------------------------------

def _check_disk_full(err: StoreError, out: Path) -> None:
    text = str(err)
    assert "disk full while writing" in text and "re-run the same command" in text
    assert "step0 " in text and "chunks" in text
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]  # no temp file left
    for side in out.glob("*/*.json"):  # every chunk that looks complete is complete
        rev, index = side.parent.name, int(side.stem)
        data = json.loads(side.read_text())
        bin_path = chunk_paths(out, rev, index)[0]
        assert bin_path.stat().st_size == data["file"]["size"]


def test_disk_full_on_a_small_tmpfs_stops_clearly_and_resumes(ref, tiny_series, corpus, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; test_disk_full_mid_chunk covers the error path")
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(disk)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        run = disk / "run"
        with pytest.raises(StoreError) as err:
            harvest(harvest_config(tiny_series, corpus, run))
        _check_disk_full(err.value, run / "activations")
        assert str(disk) in str(err.value)
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        harvest(harvest_config(tiny_series, corpus, run))
        assert store_files(run / "activations") == store_files(ref.root)
    finally:
        err = None  # the traceback holds the harvest's frames, and their memory maps of files on the disk
        gc.collect()
        if subprocess.run(["umount", str(disk)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(disk)], check=True)


def test_disk_full_mid_chunk(ref, tiny_series, corpus, tmp_path, monkeypatch):
    from crosstime.store import harvesting

    written = []

    class Full:
        """A file whose writes fail with ENOSPC from the 9th chunk on, after half the bytes."""

        def __init__(self, path, mode):
            self.handle = open(path, mode)  # noqa: SIM115 — closed by __exit__, as open()'s own handle
            self.chunk = ".bin" in str(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            written.append(self.chunk)
            if self.chunk and sum(written) >= 9:
                self.handle.write(bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.handle.write(data)

    monkeypatch.setattr(harvesting, "open", Full, raising=False)
    run = tmp_path / "run"
    with pytest.raises(StoreError) as err:
        harvest(harvest_config(tiny_series, corpus, run))
    _check_disk_full(err.value, run / "activations")
    assert "step0 7/7 chunks, step10 1/7 chunks, step100 0/7 chunks" in str(err.value)
    assert "00001.bin" in str(err.value)
    monkeypatch.undo()
    harvest(harvest_config(tiny_series, corpus, run))
    assert store_files(run / "activations") == store_files(ref.root)


# -- bad inputs ----------------------------------------------------------------------------------------

def test_non_utf8_corpus_names_file_and_line(tmp_path):
    text = tmp_path / "c.txt"
    text.write_bytes(b"the dog runs\nthe cat sleeps\nthe caf\xe9 is old\n")
    with pytest.raises(CorpusError, match=r"c\.txt:3 is not UTF-8 text .*\\xe9.*column 8.*iconv"):
        list(iter_documents(text, "text"))
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_bytes(b'{"text": "a dog"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(CorpusError, match=r"c\.jsonl:2 is not UTF-8"):
        list(iter_documents(jsonl, "jsonl"))
    typed = tmp_path / "t.jsonl"
    typed.write_text('{"text": "a dog"}\n{"text": null}\n{"text": 5}\n')
    with pytest.raises(CorpusError, match=r"t\.jsonl:3: the 'text' field is a int, not a string"):
        list(iter_documents(typed, "jsonl"))


def test_non_utf8_corpus_fails_the_harvest_before_work(tiny_series, tmp_path):
    text = tmp_path / "c.txt"
    text.write_bytes(("\n".join(sentences(50)) + "\nthe \xff dog\n").encode("latin-1"))
    with pytest.raises(CorpusError, match=r"c\.txt:51 is not UTF-8"):
        harvest(harvest_config(tiny_series, text, tmp_path / "run"))


BAD_CALLS = {
    "batch_size=-4": lambda s: s.batches(batch_size=-4),
    "batch_size=0": lambda s: s.batches(batch_size=0),
    "batch_size=2.5": lambda s: s.batches(batch_size=2.5),
    "n_batches(batch_size=0)": lambda s: s.n_batches(batch_size=0),
    "world_size=0": lambda s: s.batches(world_size=0),
    "rank=2 of 2": lambda s: s.batches(rank=2, world_size=2),
    "skip_batches=-1": lambda s: s.batches(skip_batches=-1),
    "block_rows=-8": lambda s: s.batches(block_rows=-8),
    "buffer_rows=0": lambda s: s.batches(buffer_rows=0),
    "epoch=-1": lambda s: s.batches(epoch=-1),
    "split='test'": lambda s: s.batches(split="test"),
    "revisions=[]": lambda s: s.batches(revisions=[]),
    "revisions twice": lambda s: s.batches(revisions=["step0", "step0"]),
    "unknown revision": lambda s: s.read_rows("step7", [0]),
    "device='bogus'": lambda s: s.batches(device="bogus"),
    "negative row": lambda s: s.read_rows("step0", [-1]),
    "row past the end": lambda s: s.read_rows("step0", [10**6]),
    "float rows": lambda s: s.read_rows("step0", [1.5]),
    "read_block n<0": lambda s: s.read_block("step0", 0, -3),
    "read_block past the end": lambda s: s.read_block("step0", s.n_rows("train"), 10**5),
    "memmap chunk -1": lambda s: s.memmap("step0", -1),
    "memmap chunk past the end": lambda s: s.memmap("step0", 99),
    "contexts batch_size=0": lambda s: s.contexts(batch_size=0),
    "contexts limit=-1": lambda s: s.contexts(limit=-1),
    "rows unpaired": lambda s: s.rows("step0", [1, 2, 3], [1, 2]),
    "rows context -1": lambda s: s.rows("step0", [-1], [1]),
}


@pytest.mark.parametrize("call", list(BAD_CALLS))
def test_bad_arguments_are_clear_errors(ref, call):
    with pytest.raises(StoreError):
        BAD_CALLS[call](ref)


def test_empty_revisions_in_a_harvest_are_refused(tiny_series, corpus, tmp_path):
    with pytest.raises(StoreError, match="--revisions is empty"):
        harvest(harvest_config(tiny_series, corpus, tmp_path / "run", revisions=[]))
