"""Faults of a crosscoder run: a damaged file is a clear error or a documented repair, never a silent result.

The corruption matrix damages each file of a crosscoder folder (model.safetensors, config.json,
state/trainer.pt, metrics.jsonl) in each way (garbage of the same size, truncation, deletion,
an edited value) and then loads it (``load``, ``load_for_store``) or resumes the training into
it (``fit(..., out=...)``, the train stage). Each case expects either

- "error": a CrosstimeError whose one-line message names the damaged file, or
- "repair": the documented repair, checked against the undamaged reference (the re-saved pair
  equals the original byte for byte in content; a resumed training ends with the reference's
  weights; a repaired metrics.jsonl says so with a warning).

Then: divergence (``--lr 1e6`` on the tiny data), stale temporary files of a killed save, a
full disk during a state save (a small tmpfs when root, a failing write otherwise), and the
settings the trainer used to accept silently.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from conftest import WORDS
from typer.testing import CliRunner

import crosstime.crosscoder.training as T
from crosstime.crosscoder import CrosscoderConfig, CrosscoderError, TrainConfig, TrainingError, TrainSettings, build, fit, load, load_for_store
from crosstime.stages.train import train
from crosstime.crosscoder.model import CONFIG_FILE, WEIGHTS_FILE
from crosstime.errors import CrosstimeError
from crosstime.files import remove_stale_temps
from crosstime.store import ActivationStore, HarvestConfig
from crosstime.stages.harvest import harvest

torch.set_num_threads(1)

STEPS, KILL_AT, SAVE_EVERY = 12, 11, 4  # a killed run: steps 1-10 done, its resume state at step 8
STATE = Path("state") / "trainer.pt"


def _data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    U = torch.randn(12, 2, 8, generator=g)
    act = (torch.rand(512, 12, generator=g) < 0.1) * torch.rand(512, 12, generator=g)
    return torch.einsum("nk,kmd->nmd", act, U) * 3


SETTINGS = TrainSettings(n_features=32, steps=STEPS, batch_size=64, lr=3e-3, save_every=SAVE_EVERY, val_every=0,
                         progress=False)


def _crashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next training die (KeyboardInterrupt) in step KILL_AT, as a kill would."""
    clip, calls = T.clip_gradients, []

    def crash(*a, **kw):
        calls.append(1)
        if len(calls) == KILL_AT:
            raise KeyboardInterrupt
        return clip(*a, **kw)

    monkeypatch.setattr(T, "clip_gradients", crash)


def _corpus(path: Path) -> Path:
    rng = random.Random(0)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(400)))
    return path


def _stage(run: Path, **kw) -> TrainConfig:
    return TrainConfig(**{"run": run, "steps": STEPS, "batch_size": 64, "n_features": 32, "lr": 3e-3,
                          "save_every": SAVE_EVERY, "val_every": 6, "progress": False, **kw})


@pytest.fixture(scope="module")
def pristine(tiny_series, tmp_path_factory) -> dict[str, Path]:
    """Undamaged folders: in memory ("mem") and from a store ("store"), each finished and killed, and
    the finished crosscoders' weights as the reference."""
    root = tmp_path_factory.mktemp("pristine")
    x = _data()
    fit(x, SETTINGS, out=root / "mem-done")
    with pytest.MonkeyPatch.context() as mp:
        _crashing(mp)
        with pytest.raises(KeyboardInterrupt):
            fit(x, SETTINGS, out=root / "mem-killed")
    store_run = root / "store-done"
    harvest(HarvestConfig(run=store_run, series=str(tiny_series), layer=1, corpus=str(_corpus(root / "c.txt")),
                          tokens=1200, context_len=32, chunk_contexts=8, batch_size=4, progress=False))
    shutil.copytree(store_run, root / "store-killed")
    train(_stage(store_run))
    with pytest.MonkeyPatch.context() as mp:
        _crashing(mp)
        with pytest.raises(KeyboardInterrupt):
            train(_stage(root / "store-killed"))
    assert torch.load(root / "mem-killed" / STATE, weights_only=True)["step"] == 8
    return {"root": root, "mem-done": root / "mem-done", "mem-killed": root / "mem-killed",
            "store-done": store_run / "crosscoder", "store-killed": root / "store-killed" / "crosscoder"}


# -- the damages ---------------------------------------------------------------------------------

def _flip_safetensors(path: Path) -> None:
    """Flip one bit in the middle of the tensor data (past the JSON header)."""
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 + n + (len(data) - 8 - n) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _flip_state(path: Path) -> None:
    """Flip one bit in the middle of the largest tensor record of torch's zip archive."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _edit_config(path: Path, change) -> None:
    cfg = json.loads(path.read_text())
    change(cfg)
    path.write_text(json.dumps(cfg, indent=2))


def _stale_config(folder: Path) -> None:
    """config.json of the pair saved before, beside the weights saved after (a kill between the two renames)."""
    model = load(folder)
    old = (folder / CONFIG_FILE).read_bytes()
    with torch.no_grad():
        model.W_dec.mul_(1.5)
    extra = {k: v for k, v in json.loads(old).items() if k not in CrosscoderConfig.model_fields and k != "weights"}
    model.save(folder, extra=extra)
    (folder / CONFIG_FILE).write_bytes(old)


EDITS = {
    "variant": lambda c: c.update(variant="topk"),
    "shapes": lambda c: c.update(n_features=16),
    "scales": lambda c: c.update(scales=[s * 1.1 for s in c["scales"]]),
    "revisions": lambda c: c.update(revisions=[*c["revisions"][:-1], "step10"]),
    "checksum": lambda c: c["weights"].update(sha256="0" * 64),
    "extra": lambda c: c.update(steps=c["steps"] + 1),
}


def damage(folder: Path, file: str, how: str) -> None:
    path = folder / file
    if how == "garbage":
        path.write_bytes(random.Random(1).randbytes(path.stat().st_size))
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "delete":
        path.unlink()
    elif how == "flip":
        (_flip_safetensors if file == WEIGHTS_FILE else _flip_state)(path)
    elif how == "stale":
        _stale_config(folder)
    else:
        _edit_config(path, EDITS[how])


# -- the matrix ------------------------------------------------------------------------------------

PAIR_DAMAGES = [(WEIGHTS_FILE, h) for h in ("garbage", "truncate", "delete", "flip")] + \
               [(CONFIG_FILE, h) for h in ("garbage", "truncate", "delete", *EDITS, "stale")]
STATE_DAMAGES = [(str(STATE), h) for h in ("garbage", "truncate", "delete", "flip")]
METRICS_DAMAGES = [("metrics.jsonl", h) for h in ("garbage", "truncate", "delete")]

CASES = (
    # the pair, read by every later stage: a clear error naming the file; a re-run of the training
    # (it resumes from its final state) writes the pair again
    [(f, h, op, "error") for f, h in PAIR_DAMAGES for op in ("load", "load_for_store")]
    + [(f, h, op, "repair") for f, h in PAIR_DAMAGES for op in ("resume", "train")]
    # the resume state: a clear error; deleted, the training starts over (and ends the same)
    + [(f, h, op, "repair" if h == "delete" else "error") for f, h in STATE_DAMAGES for op in ("resume", "train")]
    # the log: rows past the state are dropped and the rest kept; lost rows are named in a warning
    + [(f, h, op, "repair") for f, h in METRICS_DAMAGES for op in ("resume", "train")]
)


def test_the_matrix_counts():
    """The counts the issue asks for (each case below asserts its outcome; none is silent or a traceback)."""
    errors = sum(c[3] == "error" for c in CASES)
    repairs = sum(c[3] == "repair" for c in CASES)
    print(f"corruption matrix: {len(CASES)} cases, {errors} clear errors, {repairs} repairs, 0 silent, 0 tracebacks")
    assert (len(CASES), errors, repairs) == (70, 34, 36)


def _operate(op: str, folder: Path, store_root: Path) -> torch.nn.Module:
    if op == "load":
        return load(folder)
    if op == "load_for_store":
        return load_for_store(folder, ActivationStore(store_root / "activations"))
    if op == "resume":
        return fit(_data(), SETTINGS, out=folder)
    return train(_stage(store_root))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return a.state_dict().keys() == b.state_dict().keys() and all(
        torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize(("file", "how", "op", "outcome"), CASES, ids=[f"{f}-{h}-{o}" for f, h, o, _ in CASES])
def test_corruption(pristine, tmp_path, file, how, op, outcome):
    store_based = op in ("load_for_store", "train")
    killed = file != WEIGHTS_FILE and file != CONFIG_FILE  # the state and the log matter while training goes on
    source = pristine[f"{'store' if store_based else 'mem'}-{'killed' if killed else 'done'}"]
    run = tmp_path / "run"
    if store_based:
        shutil.copytree(source.parent, run)
        folder = run / "crosscoder"
    else:
        folder = run
        shutil.copytree(source, folder)
    reference = load(pristine["store-done" if store_based else "mem-done"])
    damage(folder, file, how)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if outcome == "error":
            with pytest.raises(CrosstimeError) as err:
                _operate(op, folder, run)
            message = str(err.value)
            assert "\n" not in message and Path(file).name in message and str(folder) in message, message
            return
        model = _operate(op, folder, run)
    assert _same_weights(model, reference) and _same_weights(load(folder), reference)
    done = pristine["store-done" if store_based else "mem-done"]
    assert json.loads((folder / CONFIG_FILE).read_text()) == json.loads((done / CONFIG_FILE).read_text())
    rows = [json.loads(ln) for ln in (folder / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "split" not in r]
    assert steps == sorted(set(steps)) and steps[-(STEPS - 8):] == list(range(9, STEPS + 1))  # resumed rows, once
    noted = [str(w.message) for w in caught if "metrics.jsonl" in str(w.message)]
    assert bool(noted) == (file == "metrics.jsonl"), noted  # the lost rows are said, and only then
    if file == "metrics.jsonl":
        logged = 9 if store_based else 8  # rows 1-8 (and the held-out row of step 6 from the store)
        assert f"up to step 8 where {logged} were logged" in noted[0], noted[0]


# -- the pair, by itself -------------------------------------------------------------------------

def test_a_pair_saved_before_checksums_loads_with_a_warning(tmp_path):
    """A crosscoder saved by the previous version (no checksum; variant only in the header) is read,
    with a warning that its weights are unverified; a shape edit is still an error, not a traceback."""
    from safetensors.torch import save_file

    model = build(CrosscoderConfig(n_checkpoints=2, d_model=4, n_features=8, revisions=["a", "b"], scales=[1.0, 2.0]))
    folder = tmp_path / "old"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS_FILE),
              metadata={"variant": "relu"})
    (folder / CONFIG_FILE).write_text(json.dumps(model.config.model_dump(mode="json")))
    with pytest.warns(UserWarning, match="unverified"):
        back = load(folder)
    assert _same_weights(back, model)
    _edit_config(folder / CONFIG_FILE, lambda c: c.update(n_features=16))
    with pytest.raises(CrosscoderError, match=r"do not have the shapes .*W_dec \[8, 2, 4\] vs \[16, 2, 4\]"), \
            pytest.warns(UserWarning, match="unverified"):
        load(folder)
    (folder / WEIGHTS_FILE).write_bytes(b"\x00" * 20)
    with pytest.raises(CrosscoderError, match="not a readable safetensors file"):
        load(folder)


def test_the_checksum_is_recorded_and_the_header_repeats_config_json(tmp_path):
    import hashlib

    from safetensors import safe_open

    model = build(CrosscoderConfig(n_checkpoints=2, d_model=4, n_features=8, revisions=["a", "b"], scales=[1.0, 2.0]))
    model.save(tmp_path, extra={"steps": 3})
    cfg = json.loads((tmp_path / CONFIG_FILE).read_text())
    data = (tmp_path / WEIGHTS_FILE).read_bytes()
    assert cfg["weights"] == {"file": WEIGHTS_FILE, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    with safe_open(str(tmp_path / WEIGHTS_FILE), framework="pt") as handle:
        header = handle.metadata()
    assert header == {"config": header["config"]}  # one entry: safetensors orders several at random
    assert json.loads(header["config"]) == {k: v for k, v in cfg.items() if k != "weights"}
    model.save(tmp_path / "again", extra={"steps": 3})
    assert (tmp_path / "again" / WEIGHTS_FILE).read_bytes() == data  # the same model saves the same bytes
    with pytest.raises(CrosscoderError, match="would replace"):
        model.save(tmp_path, extra={"weights": 1})


def test_an_old_resume_state_still_resumes(tmp_path):
    """A state saved before it recorded the divergence reference and the log's rows resumes to the same weights."""
    x = _data()
    ref = fit(x, SETTINGS)
    out = tmp_path / "cc"
    with pytest.MonkeyPatch.context() as mp:
        _crashing(mp)
        with pytest.raises(KeyboardInterrupt):
            fit(x, SETTINGS, out=out)
    state = torch.load(out / STATE, weights_only=True)
    del state["loss_ref"], state["metrics_rows"]
    torch.save(state, out / STATE)
    assert _same_weights(fit(x, SETTINGS, out=out), ref)


# -- divergence ------------------------------------------------------------------------------------

def test_lr_1e6_on_the_tiny_store_is_a_divergence_error(pristine, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pristine["root"] / "store-done", run, ignore=shutil.ignore_patterns("crosscoder"))
    records = yaml.safe_load((run / "config.yaml").read_text())
    with pytest.raises(TrainingError) as err:
        train(_stage(run, lr=1e6, save_every=1))
    message = str(err.value)
    assert "diverged at step 2" in message and "--lr 1e+06" in message and "resume state of step 1" in message
    assert "\n" not in message
    folder = run / "crosscoder"
    assert not (folder / WEIGHTS_FILE).exists() and not (folder / CONFIG_FILE).exists()  # nothing saved as a success
    assert torch.load(folder / STATE, weights_only=True)["step"] == 1  # the last state saved before is kept
    last = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "diverged" and last["step"] == 2 and last["loss"] > last["limit"]
    assert "train" in records and "train" not in yaml.safe_load((run / "config.yaml").read_text())  # not finished
    # the command line: one line, exit code 2
    from crosstime.cli import app

    shutil.rmtree(folder)
    result = CliRunner().invoke(app, ["train", str(run), "--lr", "1e6", "--steps", "12", "--batch-size", "64",
                                      "--n-features", "32", "--no-progress"])
    assert result.exit_code == 2 and "diverged at step 2" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_non_finite_loss_stops_at_its_step(tmp_path):
    x = _data() * 1e19  # finite activations whose squares overflow float32
    with pytest.raises(TrainingError, match=r"diverged at step 1: the loss became inf"):
        fit(x, SETTINGS, out=tmp_path / "cc")
    assert not (tmp_path / "cc" / WEIGHTS_FILE).exists()


def test_healthy_training_never_comes_near_the_limit():
    """The rule's margin: the loss of ordinary trainings (all variants) stays below 2× the first step's."""
    x = _data()
    for variant in ("relu", "topk", "batchtopk", "jumprelu"):
        own = {"k": 4} if variant in ("topk", "batchtopk") else {}
        settings = TrainSettings(**{**SETTINGS.model_dump(exclude_unset=True), "variant": variant,
                                    "variant_settings": own})
        trainer = T.make_trainer(x, settings, None, None, T.distributed.world())
        losses: list[float] = []

        def seen(loss, log, losses=losses, real=trainer._check_divergence):
            losses.append(loss)
            return real(loss, log)

        trainer._check_divergence = seen
        trainer.run()
        assert max(losses) < 2 * losses[0] < T.DIVERGENCE_FACTOR * losses[0], (variant, losses)


# -- leftovers of a killed save --------------------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporary_files_are_removed_when_their_writer_is_dead(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _dead_pid()
        (tmp_path / "a").mkdir()
        stale = tmp_path / "a" / f".trainer.pt.tmp-{dead}"
        kept = [tmp_path / "a" / f".trainer.pt.tmp-{live.pid}", tmp_path / "a" / f".x.tmp-{os.getpid()}",
                tmp_path / "a" / "trainer.pt", tmp_path / "a" / ".notatemp", tmp_path / "a" / ".x.tmp-0"]
        for path in [stale, *kept]:
            path.write_bytes(b"123")
        assert remove_stale_temps(tmp_path / "a") == [stale]
        assert all(p.exists() for p in kept) and not stale.exists()
        assert remove_stale_temps(tmp_path / "missing") == []
    finally:
        live.kill()
        live.wait()


def test_training_removes_the_leftovers_of_a_killed_save(pristine, tmp_path):
    out = tmp_path / "cc"
    shutil.copytree(pristine["mem-killed"], out)
    dead = _dead_pid()
    leftovers = [out / "state" / f".trainer.pt.tmp-{dead}", out / f".{WEIGHTS_FILE}.tmp-{dead}",
                 out / f".metrics.jsonl.tmp-{dead}"]
    for path in leftovers:
        path.write_bytes((out / STATE).read_bytes())  # full size, as a kill during the save leaves it
    fit(_data(), SETTINGS, out=out)
    assert not any(p.exists() for p in leftovers)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.jsonl", "model.safetensors", "state"]
    assert sorted(p.name for p in (out / "state").iterdir()) == ["trainer.pt"]


# -- a full disk -------------------------------------------------------------------------------------

BIG = SETTINGS.model_copy(update={"n_features": 256, "steps": 10})  # a resume state of about 300 KB


def _check_disk_full(err: TrainingError, out: Path) -> None:
    message = str(err)
    assert "no space left on the device" in message and str(out) in message and "\n" not in message, message
    assert f"{out / STATE} at step 4, is kept" in message and "resumes from there" in message
    assert torch.load(out / STATE, weights_only=True)["step"] == 4  # the last good state, intact
    assert not list((out / "state").glob(".*tmp-*")) and not list(out.glob(".*tmp-*"))  # no half-written file
    assert not (out / WEIGHTS_FILE).exists()


def _resumes_to_the_reference(out: Path, tmp_path: Path) -> None:
    x = _data()
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    assert _same_weights(fit(x, BIG, out=moved), fit(x, BIG))


def test_disk_full_on_a_small_tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; test_disk_full_simulated covers the same path")
    x = _data()
    fit(x, BIG.model_copy(update={"steps": 4}), out=tmp_path / "probe")
    state_size = (tmp_path / "probe" / STATE).stat().st_size
    mount = tmp_path / "small"
    mount.mkdir()
    size = state_size + state_size // 2 + 32 * 1024  # room for one state and the log, not for a second state
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True,
                            check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()})")
    try:
        out = mount / "cc"
        with pytest.raises(TrainingError) as err:
            fit(x, BIG, out=out)
        assert f"could not write {out / STATE}" in str(err.value)
        _check_disk_full(err.value, out)
        _resumes_to_the_reference(out, tmp_path)
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_disk_full_simulated(tmp_path, monkeypatch):
    """The second state save meets a full disk half-way (torch.save itself says only 'unexpected pos')."""
    real, calls = T.save_torch, []

    def full_on_second_save(obj, path):
        calls.append(path)
        if len(calls) < 2:
            return real(obj, path)

        def write(self, data):
            if self.handle.tell() + len(data) > 4096:
                self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                raise self.error
            return self.handle.write(data)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(T._KeepsWriteError, "write", write)
            return real(obj, path)

    monkeypatch.setattr(T, "save_torch", full_on_second_save)
    out = tmp_path / "cc"
    with pytest.raises(TrainingError) as err:
        fit(_data(), BIG, out=out)
    assert f"could not write {out / STATE}" in str(err.value)
    _check_disk_full(err.value, out)
    monkeypatch.setattr(T, "save_torch", real)
    _resumes_to_the_reference(out, tmp_path)


# -- settings the trainer used to accept -----------------------------------------------------------

@pytest.mark.parametrize(("settings", "match"), [
    ({"variant": "topk", "variant_settings": {"k": 64}, "n_features": 48},
     r"k = 64 is larger than the dictionary, F = 48 \(n_features\)"),
    ({"variant": "batchtopk", "variant_settings": {"k_aux": 100}, "n_features": 48},
     r"k_aux = 100 is larger than the dictionary, F = 48"),
    ({"variant": "topk", "variant_settings": {"k_init": 8}}, r"k_init = 8 has no effect without k_anneal_steps"),
    ({"variant": "batchtopk", "variant_settings": {"k_anneal_steps": 5}}, r"k_anneal_steps = 5 needs k_init"),
    ({"variant": "topk", "variant_settings": {"k_init": 64, "k_anneal_steps": 100}, "steps": 50},
     r"longer than the training \(50 steps\)"),
    ({"adam_betas": (0.9, 1.0)}, r"each of Adam's β must be in \[0, 1\)"),
    ({"revisions": ["step0", "step0"]}, r"names \['step0'\] more than once"),
    ({"revisions": []}, r"empty list"),
])
def test_settings_that_cannot_train_are_refused_when_made(settings, match):
    with pytest.raises(ValueError, match=match):
        TrainSettings(**settings)


def test_k_larger_than_the_dictionary_from_the_data_width_is_refused_before_any_work(pristine, tmp_path):
    x = _data()  # d = 8: F = expansion 2 × 8 = 16
    with pytest.raises(TrainingError, match=r"width d = 8: k = 32 is larger than the dictionary, F = 16 "
                                            r"\(expansion 2 × d 8\)"):
        fit(x, TrainSettings(variant="topk", expansion=2, steps=3, batch_size=64, progress=False), out=tmp_path / "cc")
    assert not (tmp_path / "cc").exists()
    with pytest.raises(ValueError, match="k = 32 is larger than the dictionary, n_features"):
        CrosscoderConfig(variant="batchtopk", n_checkpoints=2, d_model=4, n_features=8)
    CrosscoderConfig(variant="relu", n_checkpoints=2, d_model=4, n_features=8)  # k is not relu's
    # the command line: one line, exit code 2, nothing written into the run
    from crosstime.cli import app

    run = tmp_path / "run"
    shutil.copytree(pristine["root"] / "store-done", run, ignore=shutil.ignore_patterns("crosscoder"))
    before = sorted(p.name for p in run.iterdir())
    for args in (["--k", "999", "--n-features", "64"], ["--k", "999"]):
        result = CliRunner().invoke(app, ["train", str(run), "--variant", "topk", *args, "--batch-size", "64",
                                          "--no-progress"])
        assert result.exit_code == 2 and "k = 999 is larger than the dictionary" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert sorted(p.name for p in run.iterdir()) == before
