"""Training from an activation store: the `crosstime train` command, folding, resume, bad stores."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import WORDS, make_tiny_series
from typer.testing import CliRunner

from crosstime.crosscoder import DataError, TrainConfig, TrainSettings, fit, load
from crosstime.stages.train import train
from crosstime.store import ActivationStore, HarvestConfig, StoreError
from crosstime.stages.harvest import harvest
from crosstime.store.layout import chunk_paths

torch.set_num_threads(1)


def _app():
    from crosstime.cli import app

    return app


def _corpus(path: Path) -> Path:
    rng = random.Random(0)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(400)))
    return path


def _harvest(series: Path, run: Path, corpus: Path) -> ActivationStore:
    return harvest(HarvestConfig(run=run, series=str(series), layer=1, corpus=str(corpus), tokens=1200, context_len=32,
                                 chunk_contexts=8, batch_size=4, progress=False))


@pytest.fixture(scope="module")
def run(tiny_series, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    _harvest(tiny_series, root, _corpus(root / "corpus.txt"))
    return root


def test_cli_trains_from_the_run_store_and_records_everything(run):
    args = ["train", str(run), "--steps", "30", "--batch-size", "64", "--n-features", "64", "--lr", "1e-3",
            "--save-every", "10", "--val-every", "15", "--revisions", "step0,step100"]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    store = ActivationStore(run / "activations")
    model = load(run / "crosscoder")
    assert model.revisions == ["step0", "step100"] and model.d_model == store.d_model == 32
    assert model.scales == pytest.approx([store.scales["step0"], store.scales["step100"]])
    assert not model.is_folded  # saved in normalised space; scales recorded
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["revisions"] == ["step0", "step100"]
    rows = [json.loads(ln) for ln in (run / "crosscoder" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("split") == "heldout"] == [15, 30]
    # the folded model maps raw store rows to raw reconstructions
    raw_rows = torch.stack([store.read_rows(r, np.arange(40)) for r in model.revisions], dim=1)  # [40, 2, d]
    s = torch.tensor(model.scales).view(1, 2, 1)
    raw = model.folded()
    torch.testing.assert_close(raw.encode(raw_rows), model.encode(raw_rows * s), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(raw(raw_rows), model(raw_rows * s) / s, rtol=1e-4, atol=1e-5)
    # the batches the trainer saw were the store's normalised batches
    first = next(store.batches(["step0", "step100"], batch_size=64, seed=0, epoch=0, drop_last=True))
    assert first.norm(dim=-1).mean(0).tolist() == pytest.approx([32 ** 0.5] * 2, rel=0.3)
    # re-running the finished command changes nothing
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert CliRunner().invoke(_app(), args).exit_code == 0
    assert all(torch.equal(load(run / "crosscoder").state_dict()[k], v) for k, v in before.items())
    # ... and with other settings it refuses, naming them
    bad = CliRunner().invoke(_app(), args[:-1] + ["step0,step10"])
    assert bad.exit_code == 2 and "revisions: ['step0', 'step100'] -> ['step0', 'step10']" in bad.output


def test_store_width_mismatch_on_resume(run, tmp_path):
    narrow = make_tiny_series(tmp_path / "series", steps=(0, 10), d=16)
    store = _harvest(narrow, tmp_path / "narrow", _corpus(tmp_path / "c.txt"))
    out = tmp_path / "cc"
    cfg = TrainSettings(steps=3, batch_size=32, n_features=16, progress=False, val_every=0,
                        revisions=["step0", "step10"])
    fit(ActivationStore(run / "activations"), cfg, out=out)
    with pytest.raises(DataError, match=r"width d = 16.*d = 32"):
        fit(store, cfg, out=out)


def test_store_with_nan_names_the_checkpoint(run, tmp_path):
    copy = tmp_path / "acts"
    shutil.copytree(run / "activations", copy)
    path, _ = chunk_paths(copy, "step10", 0)
    a = np.fromfile(path, dtype=np.float16)
    a[5:8] = np.nan
    a.tofile(path)
    settings = TrainSettings(steps=1, batch_size=ActivationStore(copy).n_rows("train"), n_features=16,
                             progress=False, val_every=0, revisions=["step0", "step10"])
    with pytest.raises(StoreError, match=r"00000\.bin"):  # a verified read catches the changed chunk first
        fit(ActivationStore(copy), settings)
    # NaN the harvest itself wrote (past the verification): the trainer's own check names the checkpoint
    with pytest.raises(DataError, match=r"step10: 3 non-finite values"):
        fit(ActivationStore(copy, verify=False), settings)


def test_unknown_revision_and_missing_store(run, tmp_path):
    with pytest.raises(DataError, match=r"revisions \['step7'\] are not in the activation store"):
        fit(ActivationStore(run / "activations"), TrainSettings(steps=1, revisions=["step0", "step7"]))
    result = CliRunner().invoke(_app(), ["train", str(tmp_path)])
    assert result.exit_code == 2 and "crosstime harvest" in result.output


@pytest.mark.slow  # torchrun: two or four processes
def test_torchrun_two_ranks_train_from_the_store(run, tmp_path):
    """Each rank reads its own share of the store (half the global batch); ranks stay in lock-step."""
    import os
    import subprocess
    import sys

    dst = tmp_path / "run"
    shutil.copytree(run / "activations", dst / "activations")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "crosstime.cli",
         "train", str(dst), "--steps", "12", "--batch-size", "64", "--n-features", "32", "--val-every", "6",
         "--save-every", "5"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    model = load(dst / "crosscoder")
    assert model.n_checkpoints == 3 and torch.isfinite(model.W_dec).all()
    rows = [json.loads(ln) for ln in (dst / "crosscoder" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "split" not in r] == list(range(1, 13))
    assert [r["step"] for r in rows if r.get("split") == "heldout"] == [6, 12]
    assert torch.load(dst / "crosscoder" / "state" / "trainer.pt", weights_only=True)["step"] == 12


def test_validation_reads_only_the_batches_it_uses(tiny_series, tmp_path, monkeypatch):
    """Held-out validation reads val_batches · B rows per checkpoint, not the whole split (memory
    and I/O stay independent of the store's size), and only held-out rows."""
    from crosstime.crosscoder.data import StoreSource

    rng = random.Random(1)
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(3000)))
    store = harvest(HarvestConfig(run=tmp_path, series=str(tiny_series), layer=1, corpus=str(corpus),
                                  tokens=20000, context_len=32, chunk_contexts=8, batch_size=8, progress=False))
    B, block = 64, store.default_block_rows()
    assert 2 * B == block and store.n_rows("heldout") >= 5 * block  # the split is several windows' worth
    read = []
    real = ActivationStore._read_into
    monkeypatch.setattr(ActivationStore, "_read_into",
                        lambda self, out, *a: (read.append(len(out)), real(self, out, *a))[1])
    batches = list(StoreSource(store, None, B, 0, True).heldout(2))
    assert [len(x) for x in batches] == [B, B]
    assert sum(read) == 2 * B * len(store.revisions)
    # the same rows as the store's own held-out reader yields first (the split, not the train rows)
    held = [x for x, _ in zip(store.batches(batch_size=B, split="heldout", buffer_rows=2 * B), range(2))]
    assert torch.equal(torch.cat(batches), torch.cat(held))


def test_cli_options_reach_every_training_setting(run, tmp_path):
    """Every TrainConfig field is an option of `crosstime train` (JumpReLU θ₀ and ε here); a
    misspelt option or a value the config refuses is one line and exit code 2."""
    shutil.copytree(run / "activations", tmp_path / "activations")
    args = ["train", str(tmp_path), "--variant", "jumprelu", "--steps", "4", "--batch-size", "64", "--n-features", "48",
            "--val-every", "0", "--jumprelu-threshold-init", "0.5", "--jumprelu-bandwidth", "0.25",
            "--lr", "0.002", "--adam-betas", "0.8,0.99", "--tokens", "1M"]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    training = json.loads((tmp_path / "crosscoder" / "config.json").read_text())["training"]
    own = training["variant_settings"]  # the variant's own settings, nested (given as flat options)
    assert (own["jumprelu_threshold_init"], own["jumprelu_bandwidth"]) == (0.5, 0.25)
    assert training["lr"] == 0.002 and training["adam_betas"] == [0.8, 0.99] and training["tokens"] == 1_000_000
    assert float(load(tmp_path / "crosscoder").threshold.detach().mean()) == pytest.approx(0.5, rel=0.05)  # 4 Adam steps from θ₀

    unknown = CliRunner().invoke(_app(), ["train", str(tmp_path), "--treshold", "1"])
    assert unknown.exit_code == 2 and "No such option: --treshold" in unknown.output
    invalid = CliRunner().invoke(_app(), ["train", str(tmp_path), "--lr", "-1"])
    assert invalid.exit_code == 2 and "error: --lr: Input should be greater than 0 (got '-1')" in invalid.output
    assert len(invalid.output.strip().splitlines()) == 1 and "Traceback" not in invalid.output


def test_train_stage_records_itself_and_reuse_ignores_execution_settings(run, tmp_path):
    from crosstime import stage

    dst = tmp_path / "run"
    shutil.copytree(run / "activations", dst / "activations")
    cfg = TrainConfig(run=dst, steps=6, batch_size=64, n_features=32, val_every=0, save_every=3, progress=False)
    assert not stage.finished(cfg)
    model = train(cfg)
    record = yaml.safe_load((dst / "config.yaml").read_text())["train"]
    assert {k: record[k] for k in cfg.output_settings()} == cfg.output_settings() and record["lr"] == 5e-5
    assert not {"run", "device", "progress", "val_every"} & set(record)
    assert stage.finished(cfg)
    assert stage.finished(cfg.model_copy(update={"device": "cpu", "progress": True, "val_every": 3}))
    assert not stage.finished(cfg.model_copy(update={"lr": 1e-2}))
    # a copied run directory keeps its finished stage, and re-running it resumes (nothing to do)
    moved = tmp_path / "moved"
    shutil.copytree(dst, moved)
    again = train(cfg.model_copy(update={"run": moved}))
    assert stage.finished(cfg.model_copy(update={"run": moved}))
    assert torch.equal(again.W_dec, model.W_dec)
    # other settings on the same folder are refused before anything changes: the record stays
    with pytest.raises(ValueError, match="lr: 5e-05 -> 0.01"):
        train(cfg.model_copy(update={"lr": 1e-2}))
    assert stage.finished(cfg)
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        TrainConfig(run=dst, stpes=5)
