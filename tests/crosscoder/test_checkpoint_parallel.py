"""Checkpoint-parallel training (crosscoder/parallel.py): gloo processes equal one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crosstime.crosscoder import TrainSettings, fit, load
from crosstime.crosscoder.parallel import (
    CheckpointParallelError,
    check_settings,
    expected_state_bytes,
    shard_range,
)

torch.set_num_threads(1)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
VARIANTS = ("relu", "topk", "batchtopk")
STOP_AT = 14  # the first launch of a resumed training stops after the resume state of this step

SCRIPT = """
import json, os, sys, torch
from crosstime import distributed
from crosstime.crosscoder import TrainSettings, parallel, training as T
torch.set_num_threads(1)
x, stop, own = torch.load(sys.argv[1]), int(sys.argv[3]), json.loads(sys.argv[4])
if stop:  # leave as a killed run would, right after the resume state of step `stop` was saved
    save = T.Trainer._checkpoint
    def checkpoint(self, log):
        save(self, log)
        if self.step == stop:
            os._exit(0)
    T.Trainer._checkpoint = checkpoint
world = distributed.join("cpu")
for cfg_file, folder, variants in json.loads(open(sys.argv[2]).read()):  # the jobs, one after the other
    cfg = TrainSettings.model_validate_json(open(cfg_file).read())
    for variant in variants:
        out = f"{folder}/{variant}"
        settings = TrainSettings(**{**cfg.model_dump(), "variant": variant, "variant_settings": own[variant]})
        trainer = T.make_trainer(x, settings, __import__("pathlib").Path(out), x[:128], world)
        trainer.run()
        with open(f"{out}/bytes-{world.rank}.json", "w") as f:
            json.dump(parallel.state_bytes(trainer.model, trainer.opt), f)
"""


def _data(n=1024, M=4, d=8, seed=0) -> torch.Tensor:
    """Sparse non-negative mixtures of random directions per checkpoint: [n, M, d]."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.rand(n, 24, generator=g) * (torch.rand(n, 24, generator=g) < 0.1)
    return torch.einsum("nk,kmd->nmd", codes, torch.randn(24, M, d, generator=g))


# k = 3 of 64, dead after 2 batches and a threshold from step 5: AuxK and BatchTopK's threshold take part
OWN = {"relu": {"fused": False}, "topk": {"k": 3}, "batchtopk": {"k": 3, "threshold_start_step": 5}}


def _settings(P: int, variant: str = "relu", **own) -> TrainSettings:
    return TrainSettings(variant=variant, n_features=64, steps=30, batch_size=128, lr=3e-3, progress=False,
                         val_every=10, val_batches=1, save_every=7, checkpoint_parallel=P, dead_tokens=256,
                         variant_settings={**OWN[variant], **own})


def _launch(tmp_path, nproc: int, jobs: list[tuple[int, object, tuple[str, ...]]], stop: int = 0):
    """One torchrun of ``nproc`` processes training, for each job (P, out, variants) in turn, each variant into
    out/VARIANT (one launch for several jobs: each launch spends seconds starting its processes)."""
    (tmp_path / "cp.py").write_text(SCRIPT)
    for P, _, _ in jobs:
        (tmp_path / f"cfg{P}.json").write_text(_settings(P).model_dump_json())
    (tmp_path / "jobs.json").write_text(json.dumps([[str(tmp_path / f"cfg{P}.json"), str(out), list(variants)]
                                                    for P, out, variants in jobs]))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
         str(tmp_path / "cp.py"), str(tmp_path / "x.pt"), str(tmp_path / "jobs.json"), str(stop), json.dumps(OWN)],
        env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One process (relu: the default fused step): the reference weights and metrics of each variant."""
    tmp = tmp_path_factory.mktemp("single")
    x = _data()
    for variant in VARIANTS:
        own = {"fused": True} if variant == "relu" else {}
        fit(x, _settings(1, variant, **own), out=tmp / variant, heldout=x[:128])
    return x, tmp


def _assert_equal_to_single(out, ref):
    one, many = load(ref), load(out)
    for k, v in one.state_dict().items():
        torch.testing.assert_close(many.state_dict()[k], v, rtol=1e-4, atol=1e-6, msg=k)
    rows = [[json.loads(ln) for ln in (d / "metrics.jsonl").read_text().splitlines()] for d in (ref, out)]
    assert [r["step"] for r in rows[1]] == [r["step"] for r in rows[0]]  # no step logged twice after a resume
    for a, b in zip(*rows):
        assert b.get("split") == a.get("split")
        for key in ("loss", "recon", "sparsity", "l0") if "split" not in a else ("recon", "l0"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
        assert b["ev"] == pytest.approx(a["ev"], rel=1e-4, abs=1e-6), a["step"]  # per checkpoint, in order
        if "grad_norm" in a:
            assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)


# BatchTopK ranks, and AuxK normalises its residual, within each data share (as plain data parallelism
# does), so the TopK family equals one process at D = 1 only (here, with AuxK taking part)
LAYOUTS = {"cp4": (4, VARIANTS), "data2xcp2": (2, ("relu",))}  # on 4 processes: P and the variants trained
NPROC = 4


@pytest.fixture(scope="module")
def four_processes(tmp_path_factory, single) -> Path:
    """Each layout of LAYOUTS trained by the same 4 processes, one after the other, into FOLDER/LAYOUT/VARIANT."""
    x, _ = single
    tmp = tmp_path_factory.mktemp("four")
    torch.save(x, tmp / "x.pt")
    _launch(tmp, NPROC, [(P, tmp / name, variants) for name, (P, variants) in LAYOUTS.items()])
    return tmp


@pytest.mark.slow  # torchrun: two or four processes
@pytest.mark.parametrize("layout", LAYOUTS)
def test_checkpoint_parallel_equals_single_process(four_processes, single, layout):
    (P, variants), nproc, out = LAYOUTS[layout], NPROC, four_processes / layout
    _, ref = single
    for variant in variants:
        _assert_equal_to_single(out / variant, ref / variant)
        states = sorted(p.name for p in (out / variant / "state").iterdir())
        assert states == [f"trainer-cp{c}of{P}.pt" for c in range(P)]
    for variant in set(variants) - {"relu"}:
        aux = [json.loads(ln).get("aux", 0) for ln in (ref / variant / "metrics.jsonl").read_text().splitlines()]
        assert any(a > 0 for a in aux)  # AuxK took part
    if "batchtopk" in variants:
        assert load(out / "batchtopk").has_threshold
    # memory: parameters + Adam state per rank, against the formula and 1/P of the whole
    per_rank = [json.loads((out / "relu" / f"bytes-{r}.json").read_text()) for r in range(nproc)]
    whole = expected_state_bytes(4, 8, 64, 1)
    for got in per_rank:
        assert got == pytest.approx(expected_state_bytes(4, 8, 64, P), abs=64)  # + Adam's step counters
        assert got <= 1.2 * whole / P


@pytest.mark.slow  # torchrun: two or four processes
def test_checkpoint_parallel_resumes_to_the_same_weights(tmp_path, single):
    x, ref = single
    torch.save(x, tmp_path / "x.pt")
    out = tmp_path / "cp"
    _launch(tmp_path, 2, [(2, out, ("relu",))], stop=STOP_AT)
    assert not (out / "relu" / "model.safetensors").exists()
    assert {int(torch.load(p, weights_only=True)["step"]) for p in (out / "relu" / "state").iterdir()} == {STOP_AT}
    _launch(tmp_path, 2, [(2, out, ("relu",))])  # the same command again: resumes at STOP_AT
    _assert_equal_to_single(out / "relu", ref / "relu")


def test_what_checkpoint_parallelism_refuses():
    with pytest.raises(CheckpointParallelError, match=r"supports the variants \['batchtopk', 'relu', 'topk'\], not 'jumprelu'"):
        check_settings(TrainSettings(variant="jumprelu", checkpoint_parallel=2), 2)
    with pytest.raises(CheckpointParallelError, match="does not divide the 3 processes"):
        check_settings(TrainSettings(checkpoint_parallel=2), 3)
    with pytest.raises(CheckpointParallelError, match="does not divide the M = 6 checkpoints"):
        shard_range(6, 4, 0)
    assert [shard_range(8, 4, c) for c in range(4)] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    # the formula: M = 32, d = 768, F = 8192 on 4 ranks holds a quarter of the whole, plus b_enc
    whole, rank = expected_state_bytes(32, 768, 8192, 1), expected_state_bytes(32, 768, 8192, 4)
    assert rank == (whole - 12 * 8192) // 4 + 12 * 8192


STAGE_SCRIPT = """
import sys, torch
from crosstime.crosscoder import TrainConfig
from crosstime.stages.train import train
torch.set_num_threads(1)
train(TrainConfig.model_validate_json(open(sys.argv[1]).read()))
"""


@pytest.mark.slow  # torchrun: two or four processes
def test_the_train_stage_reads_each_shards_checkpoints_from_the_store(tmp_path, tiny_series, corpus):
    """A store of M = 3 checkpoints, 2 of them trained on by 2 processes of one checkpoint each."""
    import shutil

    from store_helpers import harvest_config

    from crosstime.crosscoder import TrainConfig
    from crosstime.stages.train import train
    from crosstime.stages.harvest import harvest

    harvest(harvest_config(tiny_series, corpus, tmp_path / "one"))
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    base = dict(revisions=["step0", "step100"], n_features=48, steps=20, batch_size=64, lr=3e-3, progress=False,
                val_every=10, val_batches=2, save_every=5, device="cpu")
    ref = train(TrainConfig(run=tmp_path / "one", **base))
    (tmp_path / "cfg.json").write_text(TrainConfig(run=tmp_path / "two", checkpoint_parallel=2,
                                                   variant_settings={"fused": False}, **base).model_dump_json())
    (tmp_path / "stage.py").write_text(STAGE_SCRIPT)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(tmp_path / "stage.py"), str(tmp_path / "cfg.json")],
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got = load(tmp_path / "two" / "crosscoder")
    assert got.revisions == ref.revisions == ["step0", "step100"] and got.scales == ref.scales
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(got.state_dict()[k], v, rtol=1e-4, atol=1e-6, msg=k)
    _assert_equal_to_single(tmp_path / "two" / "crosscoder", tmp_path / "one" / "crosscoder")
    assert sorted(p.name for p in (tmp_path / "two" / "crosscoder" / "state").iterdir()) == [
        "trainer-cp0of2.pt", "trainer-cp1of2.pt"]


def test_states_of_another_layout_are_refused(tmp_path):
    from crosstime.crosscoder import TrainingError

    x = _data(n=256)
    out = tmp_path / "cc"
    (out / "state").mkdir(parents=True)
    (out / "state" / "trainer-cp0of2.pt").write_bytes(b"")  # as a checkpoint_parallel = 2 training leaves them
    with pytest.raises(TrainingError, match=r"holds resume states \['trainer-cp0of2.pt'\] of another checkpoint_parallel"):
        fit(x, _settings(1).model_copy(update={"steps": 2}), out=out)
