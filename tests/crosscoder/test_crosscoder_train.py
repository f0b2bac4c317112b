"""Crosscoder training: planted directions, schedules and metrics, resume after a kill, DDP, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from crosstime.crosscoder import DataError, TrainSettings, fit, load
from crosstime.crosscoder.training import lr_at, sparsity_coeff_at, validate

torch.set_num_threads(1)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def planted(n=8192, M=2, d=16, K=24, p=0.06, seed=0):
    """x = Σ_k a_k u_k with K unit directions over [M, d] (a quarter live in checkpoint 0 only, a
    quarter in checkpoint 1 only) and sparse non-negative a."""
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(K, M, d, generator=g)
    U[: K // 4, 1] = 0
    U[K // 4 : K // 2, 0] = 0
    U = U / U.reshape(K, -1).norm(dim=1).view(K, 1, 1)
    act = (torch.rand(n, K, generator=g) < p) * (0.5 + torch.rand(n, K, generator=g))
    return torch.einsum("nk,kmd->nmd", act, U) * 4, U


def _recovery(model, x, U):
    with torch.no_grad():
        x_hat = model(x)
        ev = 1 - float(((x_hat - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
        W = model.W_dec.reshape(model.n_features, -1)
        cos = (U.reshape(len(U), -1) @ (W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)).t()).max(1).values
    return ev, cos


# JumpReLU's threshold and STE bandwidth are in pre-activation units: set to this data's scale
OWN = {"relu": {}, "batchtopk": {"k": 2, "threshold_start_step": 200},
       "jumprelu": {"jumprelu_threshold_init": 0.5, "jumprelu_bandwidth": 0.5}}


@pytest.mark.parametrize("variant", ["relu", "batchtopk", "jumprelu"])
def test_planted_sparse_directions_are_recovered(variant, tmp_path):
    x, U = planted()
    cfg = TrainSettings(variant=variant, n_features=48, steps=1000, batch_size=256, lr=3e-3,
                        sparsity_coeff=1.0 if variant == "jumprelu" else 0.3, variant_settings=OWN[variant],
                        seed=0, dead_tokens=5000, val_every=250, val_batches=4, progress=False)
    model = fit(x[:7168], cfg, out=tmp_path / "cc", heldout=x[7168:])
    ev, cos = _recovery(model, x[7168:], U)  # held-out rows; batchtopk in eval mode: its learned threshold
    print(f"{variant}: held-out EV {ev:.4f}; max cosine per planted direction min {cos.min():.3f} "
          f"median {cos.median():.3f}; share > 0.9: {(cos > 0.9).float().mean():.2f}")
    assert ev > 0.95
    assert (cos > 0.9).float().mean() >= 0.9
    # checkpoint-exclusive directions are found with (near) zero decoder norm in the other checkpoint
    W = model.W_dec.detach()
    best = (U.reshape(24, -1) @ (W.reshape(48, -1) / W.reshape(48, -1).norm(dim=1, keepdim=True)).t()).argmax(1)
    rel = W.norm(dim=-1) / W.norm(dim=-1).sum(1, keepdim=True)  # RelDec [F, M]
    assert float(rel[best[:6], 0].median()) > 0.95 and float(rel[best[6:12], 1].median()) > 0.95
    lines = [json.loads(ln) for ln in (tmp_path / "cc" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in lines if "split" not in r]
    val_rows = [r for r in lines if r.get("split") == "heldout"]
    assert [r["step"] for r in train_rows] == list(range(1, 1001))
    assert [r["step"] for r in val_rows] == [250, 500, 750, 1000] and len(val_rows[-1]["ev"]) == 2
    assert {"loss", "recon", "sparsity", "aux", "l0", "ev", "dead_frac", "lr", "sparsity_coeff"} <= set(train_rows[0])
    if variant == "batchtopk":
        assert train_rows[-1]["threshold"] > 0 and train_rows[0]["l0"] == pytest.approx(2.0)


def test_bf16_recovers_the_planted_directions_and_warns_on_cpus_without_bf16():
    """bf16 autocast trains to the fp32 quality (matmuls in bf16, fp32 master weights); on a CPU
    with no bf16 instructions it says that it will be slow."""
    import warnings

    x, U = planted()
    cfg = TrainSettings(n_features=48, steps=300, batch_size=256, lr=3e-3, sparsity_coeff=0.3, seed=0, val_every=0,
                      progress=False)
    fp32 = fit(x[:7168], cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bf16 = fit(x[:7168], cfg.model_copy(update={"precision": "bf16"}))
    slow_cpu = not torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert any("bf16" in str(w.message) for w in caught) == slow_cpu
    ev32, _ = _recovery(fp32, x[7168:], U)
    ev16, cos16 = _recovery(bf16, x[7168:], U)
    print(f"EV fp32 {ev32:.4f}, bf16 {ev16:.4f}; bf16 planted share > 0.9: {(cos16 > 0.9).float().mean():.2f}")
    assert bf16.W_dec.dtype == torch.float32  # master weights stay fp32
    assert ev16 > 0.9 and abs(ev16 - ev32) < 0.02
    assert (cos16 > 0.9).float().mean() >= 0.9


def test_schedules():
    cfg = TrainSettings(lr=1.0, sparsity_coeff=2.0, steps=100)
    assert [lr_at(cfg, s, 100) for s in (0, 79, 80, 90, 99)] == pytest.approx([1, 1, 1, 0.5, 0.05])
    assert [sparsity_coeff_at(cfg, s, 100) for s in (0, 1, 4, 5, 50)] == pytest.approx([0, 0.4, 1.6, 2, 2])
    assert TrainSettings(tokens=10_000, batch_size=1000).total_steps() == 10


def test_validation_never_moves_the_batchtopk_threshold():
    x, _ = planted(n=1024)
    model = fit(x, TrainSettings(variant="batchtopk", n_features=32, steps=30, batch_size=128, lr=3e-3,
                                 variant_settings={"k": 2, "threshold_start_step": 0}, val_every=0, progress=False))
    t = float(model.threshold)
    assert t > 0
    model.train()
    out = validate(model, iter([x[:256], x[256:512]]), TrainSettings())
    assert float(model.threshold) == t and model.training and out["rows"] == 512


def test_mean_over_checkpoints_halves_the_reconstruction_term(tmp_path):
    x, _ = planted(n=512)
    common = dict(n_features=32, steps=1, batch_size=512, lr=1e-9, progress=False, val_every=0)
    rows = {}
    for reduce in ("sum", "mean"):
        fit(x, TrainSettings(**common, recon_reduce=reduce), out=tmp_path / reduce)
        rows[reduce] = json.loads((tmp_path / reduce / "metrics.jsonl").read_text().splitlines()[0])
    assert rows["mean"]["recon"] == pytest.approx(rows["sum"]["recon"] / 2, rel=1e-6)


# -- resume ------------------------------------------------------------------------------------

SCRIPT = """
import sys, time, torch
import crosstime.crosscoder.training as T
from crosstime.crosscoder import TrainSettings, fit
torch.set_num_threads(1)
slow = float(sys.argv[3])
if slow:
    clip = T.clip_gradients
    T.clip_gradients = lambda *a: (time.sleep(slow), clip(*a))[1]   # slower steps, same numbers
cfg = TrainSettings.model_validate_json(open(sys.argv[2]).read())
fit(torch.load(sys.argv[1]), cfg, out=sys.argv[4])
"""


def _run(tmp_path, cfg: TrainSettings, out, data: torch.Tensor, slow: float = 0.0, wait=True):
    script, cfg_file, data_file = tmp_path / "run.py", tmp_path / f"cfg-{time.time_ns()}.json", tmp_path / "x.pt"
    script.write_text(SCRIPT)
    cfg_file.write_text(cfg.model_dump_json())
    if not data_file.exists():
        torch.save(data, data_file)
    cmd = [sys.executable, str(script), str(data_file), str(cfg_file), str(slow), str(out)]
    if wait:
        return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("variant", ["relu", "batchtopk"])
def test_killed_training_resumes_to_identical_weights(tmp_path, variant):
    x, _ = planted(n=2048, M=3, d=8)
    own = {"k": 3, "threshold_start_step": 5} if variant == "batchtopk" else {}
    base = dict(variant=variant, n_features=40, steps=60, batch_size=128, lr=3e-3, variant_settings=own, save_every=7,
                val_every=25, val_batches=2, dead_tokens=1000, progress=False)
    ref = fit(x, TrainSettings(**base), out=tmp_path / "ref")

    out = tmp_path / "killed"
    cfg = TrainSettings(**base)
    proc = _run(tmp_path, cfg, out, x, slow=0.03, wait=False)
    state = out / "state" / "trainer.pt"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.25)  # somewhere between two saves
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), proc.stderr.read()[-2000:]
    step = torch.load(state, weights_only=True)["step"]
    assert 0 < step < 60, step  # really killed mid-training
    result = _run(tmp_path, cfg, out, x)  # the same command again
    assert result.returncode == 0, result.stderr[-3000:]
    got = load(out)
    for k, v in ref.state_dict().items():
        assert torch.equal(got.state_dict()[k], v), k
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "split" not in r] == list(range(1, 61))  # no duplicated steps


def test_resume_with_other_settings_names_the_fields(tmp_path):
    x, _ = planted(n=512)
    cfg, out = TrainSettings(n_features=16, steps=4, batch_size=128, progress=False, val_every=0), tmp_path / "cc"
    fit(x, cfg, out=out)
    with pytest.raises(ValueError, match=r"lr: 5e-05 -> 0\.001; n_features: 16 -> 32"):
        fit(x, cfg.model_copy(update={"lr": 1e-3, "n_features": 32, "progress": False}), out=out)
    fit(x, cfg.model_copy(update={"val_every": 2}), out=out)  # logging-only settings may change
    with pytest.raises(DataError, match=r"width d = 8.*d = 16"):
        fit(x[:, :, :8].contiguous(), cfg, out=out)
    with pytest.raises(DataError, match="different data"):
        fit(x[:256], cfg, out=out)


# -- many processes ----------------------------------------------------------------------------

DDP_SCRIPT = """
import json, sys, torch
from crosstime.crosscoder import TrainSettings, fit
torch.set_num_threads(1)
for variant, own in (("relu", {}), ("topk", {"k": 3})):
    cfg = TrainSettings(**{**json.load(open(sys.argv[2])), "variant": variant, "variant_settings": own})
    x = torch.load(sys.argv[1])
    fit(x, cfg, out=sys.argv[3] + "/" + variant, heldout=x[:256])
"""


@pytest.mark.slow  # torchrun: two or four processes
def test_two_process_ddp_equals_single_process(tmp_path):
    x, _ = planted(n=1024, M=2, d=8)
    cfg = TrainSettings(n_features=32, steps=12, batch_size=128, lr=3e-3, dead_tokens=256, progress=False,
                        val_every=6, val_batches=2)
    torch.save(x, tmp_path / "x.pt")
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    (tmp_path / "ddp.py").write_text(DDP_SCRIPT)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(tmp_path / "ddp.py"),
         str(tmp_path / "x.pt"), str(tmp_path / "cfg.json"), str(tmp_path / "ddp")],
        env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for variant, own in (("relu", {}), ("topk", {"k": 3})):
        single = fit(x, cfg, out=tmp_path / "one" / variant, heldout=x[:256], variant=variant, variant_settings=own)
        ddp = load(tmp_path / "ddp" / variant)
        for k, v in single.state_dict().items():
            torch.testing.assert_close(ddp.state_dict()[k], v, rtol=1e-4, atol=1e-6, msg=f"{variant} {k}")
        one = [json.loads(ln) for ln in (tmp_path / "one" / variant / "metrics.jsonl").read_text().splitlines()]
        two = [json.loads(ln) for ln in (tmp_path / "ddp" / variant / "metrics.jsonl").read_text().splitlines()]
        assert len(one) == len(two) and two[-1]["split"] == "heldout"
        assert two[-1]["ev"] == pytest.approx(one[-1]["ev"], rel=1e-4)
        assert two[-2]["ev"] == pytest.approx(one[-2]["ev"], rel=1e-4)  # training-batch EV pooled over both ranks


# -- bad input ---------------------------------------------------------------------------------

def test_nan_and_inf_name_the_checkpoint_and_count():
    x, _ = planted(n=256, M=3, d=4)
    x[3, 1, 2] = float("nan")
    x[7, 1, 0] = float("inf")
    x[9, 2, 3] = float("-inf")
    with pytest.raises(DataError, match=r"checkpoint 1: 2 non-finite values; checkpoint 2: 1 non-finite"):
        fit(x, TrainSettings(steps=1, batch_size=64, progress=False))


def test_bad_shapes_and_settings():
    with pytest.raises(DataError, match="M = 0 checkpoints"):
        fit(torch.zeros(64, 0, 4), TrainSettings(steps=1, batch_size=8))
    with pytest.raises(DataError, match=r"float tensor \[N, M, d\]"):
        fit(torch.zeros(64, 4), TrainSettings(steps=1, batch_size=8))
    with pytest.raises(DataError, match="lower --batch-size"):
        fit(torch.zeros(10, 2, 4), TrainSettings(steps=1, batch_size=64))
    with pytest.raises(ValueError, match="at least one feature"):
        TrainSettings(n_features=0)
    with pytest.raises(ValueError, match="known variants: batchtopk, jumprelu, matryoshka, relu, topk"):
        TrainSettings(variant="gated")
    with pytest.raises(ValueError, match="at least one feature"):
        TrainSettings(n_features=-5)
