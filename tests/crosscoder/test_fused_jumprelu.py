"""The hand-derived JumpReLU step (crosscoder/fused_jumprelu.py) against autograd of the reference
loss: gradients of one step, and weights and thresholds after training with either path."""

from __future__ import annotations

import pytest
import torch

from crosstime.crosscoder import CrosscoderConfig, TrainSettings, build, fit, losses
from crosstime.crosscoder.fused_jumprelu import jumprelu_step
from crosstime.crosscoder.jumprelu import jumprelu_penalty, preact_statistics
from crosstime.crosscoder.sparse_products import SPARSE_BELOW

torch.set_num_threads(1)


def _pair(l1_norm: str, F: int = 48):
    """Two equal jumprelu models (M = 3, d = 8) with perturbed weights, θ₀ and ε from a batch and
    per-feature thresholds spread around θ₀ (ε wide, so the STE window holds many pre-activations)."""
    torch.manual_seed(0)
    cfg = CrosscoderConfig(variant="jumprelu", n_checkpoints=3, d_model=8, n_features=F, l1_norm=l1_norm,
                           dec_init_norm=0.3)
    a, b = build(cfg), build(cfg)
    x = torch.randn(64, 3, 8)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.1 * torch.randn_like(p))
        pos_mean, std = preact_statistics(a.pre_acts(x))
        a.set_threshold_scale(pos_mean, 0.5 * std)
        a.log_threshold.add_(0.3 * torch.randn(F))
        b.load_state_dict(a.state_dict())
    return a, b, x


def _reference(model, x, coeff, penalty, c, reduce):
    z = model.pre_acts(x)
    f = model.activate(z)
    recon = losses.reconstruction_loss(x, model.decode(f), reduce)
    loss = recon + coeff * jumprelu_penalty(model, z, f, model.feature_weights(), penalty, c)
    loss.backward()
    return loss.detach(), f.detach()


@pytest.mark.parametrize("penalty,l1_norm,reduce", [("tanh", "sum", "sum"), ("tanh", "concat", "mean"),
                                                    ("step", "sum", "mean"), ("step", "concat", "sum")])
@pytest.mark.parametrize("sparse", [False, True])
def test_fused_jumprelu_step_equals_autograd(penalty, l1_norm, reduce, sparse):
    """The dense GEMMs and the sparse products (active and window entries only) give autograd's gradients."""
    a, b, x = _pair(l1_norm)
    coeff, c = 0.7, 4.0
    want, f = _reference(a, x, coeff, penalty, c, reduce)
    z = a.pre_acts(x).detach()
    window = (z - a.threshold.detach()).abs() < float(a.bandwidth) / 2
    assert 0.02 < float((f > 0).float().mean()) < 0.8 and int(window.sum()) > 50  # every term is exercised
    got = jumprelu_step(b, x, coeff, penalty, c, reduce, peak=True, sparse=sparse)
    assert float(got["loss"]) == pytest.approx(float(want), rel=1e-5)
    assert float(got["l0"]) == pytest.approx(float((f > 0).sum()) / 64)
    assert torch.equal(got["fired"], (f > 0).any(0))
    torch.testing.assert_close(got["peak"], z.max(0).values, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_blocks_that_do_not_divide_the_features_give_the_same_gradients(monkeypatch):
    """F not a multiple of the block's rows: the last, short block is handled (here 7 rows a block)."""
    monkeypatch.setattr("crosstime.crosscoder.fused_jumprelu.BLOCK_BYTES", 7 * 4 * 64)
    a, b, x = _pair("sum", F=50)
    _reference(a, x, 0.7, "tanh", 4.0, "sum")
    jumprelu_step(b, x, 0.7, "tanh", 4.0, "sum")
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("penalty", ["tanh", "step"])
def test_training_with_the_fused_step_equals_autograd(penalty):
    """fit's default (fused) and the autograd reference reach the same weights and thresholds."""
    x = torch.randn(1024, 2, 16) * (1 + torch.rand(1, 1, 16))
    base = {"variant": "jumprelu", "n_features": 32, "batch_size": 128, "steps": 30, "lr": 3e-3, "val_every": 0,
            "progress": False, "seed": 0}
    own = {"jumprelu_penalty": penalty}
    fused = fit(x, TrainSettings(**base, variant_settings=own))
    ref = fit(x, TrainSettings(**base, variant_settings={**own, "fused": False}))
    assert float(fused.bandwidth) == float(ref.bandwidth) > 0
    moved = (fused.log_threshold.detach() - fused.log_threshold.detach()[0]).abs().max()
    assert float(moved) > 1e-3  # the thresholds learned (apart), so their equality means something
    for (name, p), q in zip(ref.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(q.detach(), p.detach(), rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.parametrize("penalty", ["tanh", "step"])
def test_sparse_jumprelu_steps_train_like_autograd(penalty):
    """Twenty Adam steps at a trained crosscoder's density (a few % active, the STE window holding
    entries below θ): the step's own choice (the sparse products) reaches autograd's weights and thresholds."""
    a, b, _ = _pair("sum", F=256)
    with torch.no_grad():
        a.log_threshold.add_(1.2)  # θ ≈ 3.3 θ₀: few entries above it
        b.load_state_dict(a.state_dict())
    xs = torch.randn(10, 64, 3, 8)
    z = a.pre_acts(xs[0]).detach() - a.threshold.detach()
    assert 0.003 < float((z > 0).float().mean()) < SPARSE_BELOW / 2  # the automatic choice takes the sparse products
    assert int(((z < 0) & (z > -float(a.bandwidth) / 2)).sum()) > 20  # entries below θ in the window
    oa, ob = torch.optim.Adam(a.parameters(), lr=1e-3), torch.optim.Adam(b.parameters(), lr=1e-3)
    for step in range(20):
        oa.zero_grad()
        _reference(a, xs[step % 10], 0.7, penalty, 4.0, "sum")
        oa.step()
        jumprelu_step(b, xs[step % 10], 0.7, penalty, 4.0, "sum")
        ob.step()
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(q.detach(), p.detach(), rtol=1e-4, atol=1e-5, msg=name)
