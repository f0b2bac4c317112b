"""Loss terms against hand computations; the fused ReLU step against autograd; AuxK's sign."""

from __future__ import annotations

import math

import pytest
import torch

from crosstime.crosscoder import CrosscoderConfig, build, losses
from crosstime.crosscoder.fused import relu_l1_step
from crosstime.crosscoder.jumprelu import jumprelu_penalty
from crosstime.crosscoder.sparse_products import SPARSE_BELOW, worth_it

torch.set_num_threads(1)


def _model(variant="relu", l1_norm="sum", **own):
    m = build(CrosscoderConfig(variant=variant, n_checkpoints=2, d_model=2, n_features=3, l1_norm=l1_norm,
                               variant_config=own))
    with torch.no_grad():
        m.W_dec.copy_(torch.tensor([[[3.0, 4.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]], [[0.6, 0.8], [2.0, 0.0]]]))
    return m


def test_reconstruction_sum_and_mean():
    x = torch.tensor([[[1.0, 2.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]]])
    xh = torch.tensor([[[0.0, 2.0], [0.0, 3.0]], [[1.0, 1.0], [1.0, 0.0]]])
    per_token = [1 + 4, 1 + 1 + 1]  # Σ_m Σ_j (x̂ − x)²
    assert float(losses.reconstruction_loss(x, xh, "sum")) == pytest.approx(sum(per_token) / 2)
    assert float(losses.reconstruction_loss(x, xh, "mean")) == pytest.approx(sum(per_token) / 2 / 2)


def test_l1_weighted_by_decoder_norms_sum_and_concat():
    f = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 3.0]])
    m = _model()
    w_sum = [5 + 1, 1 + 0, 1 + 2]
    assert m.feature_weights().tolist() == pytest.approx(w_sum)
    assert float(losses.l1_penalty(f, m.feature_weights().detach())) == pytest.approx((1 * 6 + 2 * 1 + 0.5 * 6 + 3 * 3) / 2)
    mc = _model(l1_norm="concat")
    w_cat = [math.sqrt(25 + 1), 1.0, math.sqrt(1 + 4)]
    assert mc.feature_weights().tolist() == pytest.approx(w_cat)
    assert float(losses.l1_penalty(f, mc.feature_weights().detach())) == pytest.approx(
        (1 * w_cat[0] + 2 * w_cat[1] + 0.5 * w_cat[0] + 3 * w_cat[2]) / 2)


def test_jumprelu_penalties():
    m = _model("jumprelu", jumprelu_threshold_init=0.5)
    z = torch.tensor([[1.0, 0.4, 0.6], [-1.0, 2.0, 0.5]])
    f = m.activate(z)
    w = m.feature_weights()
    step = float(jumprelu_penalty(m, z, f, w, "step").detach())
    assert step == pytest.approx((2 + 1) / 2)  # z > θ: {1.0, 0.6}, {2.0}
    tanh = float(jumprelu_penalty(m, z, f, w, "tanh", c=0.5).detach())
    want = (math.tanh(0.5 * 1.0 * 6) + math.tanh(0.5 * 0.6 * 3) + math.tanh(0.5 * 2.0 * 1)) / 2
    assert tanh == pytest.approx(want, rel=1e-6)


def test_explained_variance_about_the_mean():
    torch.manual_seed(0)
    x = torch.randn(50, 2, 3) + 5
    xh = x + 0.3 * torch.randn(50, 2, 3)
    ev = losses.explained_variance(losses.moment_sums(x[:20], xh[:20]) + losses.moment_sums(x[20:], xh[20:]))
    for m in range(2):
        want = 1 - ((xh[:, m] - x[:, m]) ** 2).sum() / ((x[:, m] - x[:, m].mean(0)) ** 2).sum()
        assert float(ev[m]) == pytest.approx(float(want), rel=1e-6)


def test_auxk_loss_hand_computed():
    m = _model("topk", k=1)
    z = torch.tensor([[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]])
    x = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 2.0], [1.0, 0.0]]])
    x_hat = torch.zeros(2, 2, 2)
    dead = torch.tensor([True, False, True])
    # k_aux = 1: per token the dead feature with largest relu(z)·w: w = [6, 1, 3] -> token0: 1·6 vs 0.5·3 -> f0;
    # token1: 0.2·6=1.2 vs 3·3=9 -> f2
    e_hat = [[v * 1.0 for row in m.W_dec[0].tolist() for v in row], [v * 3.0 for row in m.W_dec[2].tolist() for v in row]]
    e = [[1.0, 1.0, 0.0, 0.0], [0.0, 2.0, 1.0, 0.0]]
    num = sum(sum((a - b) ** 2 for a, b in zip(e[i], e_hat[i])) for i in range(2)) / 2
    mean = [(e[0][j] + e[1][j]) / 2 for j in range(4)]
    den = sum(sum((e[i][j] - mean[j]) ** 2 for j in range(4)) for i in range(2)) / 2
    got = losses.auxk_loss(m, z, x, x_hat, dead, k_aux=1)
    assert float(got.detach()) == pytest.approx(num / den, rel=1e-6)
    assert float(losses.auxk_loss(m, z, x, x_hat, torch.zeros(3, dtype=torch.bool), 4)) == 0.0


def test_auxk_sign_dead_features_learn_to_reduce_the_residual():
    """Training only the AuxK loss must make x̂ + ê closer to x (with the reference's flipped sign it grows)."""
    torch.manual_seed(0)
    m = build(CrosscoderConfig(variant="topk", n_checkpoints=2, d_model=8, n_features=64, variant_config={"k": 2},
                               dec_init_norm=0.05))
    x = torch.randn(128, 2, 8)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[32:] = True
    with torch.no_grad():
        x_hat = m(x)

    def residual_after_aux():
        z = m.pre_acts(x)
        top = (torch.relu(z[:, 32:]) * m.feature_weights()[32:]).topk(4, dim=1).indices
        vals = torch.relu(z[:, 32:]).gather(1, top)
        e_hat = torch.einsum("bk,bkn->bn", vals, m.W_dec[32:].reshape(32, 16)[top])
        return float(((x - x_hat).reshape(128, 16) - e_hat).detach().pow(2).sum(1).mean())

    residual = float((x - x_hat).pow(2).sum(dim=(1, 2)).mean())
    before = residual_after_aux()
    assert before == pytest.approx(residual, rel=0.05)  # dead features start near silent
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    live_before = m.W_dec[:32].detach().clone()
    for _ in range(50):
        opt.zero_grad()
        losses.auxk_loss(m, m.pre_acts(x), x, x_hat, dead, k_aux=4).backward()
        opt.step()
    after = residual_after_aux()
    assert after < 0.8 * residual, (residual, after)  # flipped sign (e = x̂ − x): after > residual
    assert torch.equal(m.W_dec[:32], live_before)  # only dead features move


@pytest.mark.parametrize("l1_norm", ["sum", "concat"])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("sparse", [False, True])
def test_fused_relu_step_equals_autograd(l1_norm, reduce, sparse):
    """Both the dense GEMMs and the sparse products over the active entries give autograd's gradients."""
    torch.manual_seed(0)
    cfg = CrosscoderConfig(n_checkpoints=3, d_model=8, n_features=48, l1_norm=l1_norm, dec_init_norm=0.3)
    a, b = build(cfg), build(cfg)
    with torch.no_grad():
        for p, q in zip(a.parameters(), b.parameters()):
            p.add_(0.1 * torch.randn_like(p))
            q.copy_(p)
    x = torch.randn(64, 3, 8)
    coeff = 0.7
    f = a.encode(x)
    want = losses.reconstruction_loss(x, a.decode(f), reduce) + coeff * losses.l1_penalty(f, a.feature_weights())
    want.backward()
    got = relu_l1_step(b, x, coeff, reduce, sparse=sparse)
    assert float(got["loss"]) == pytest.approx(float(want.detach()), rel=1e-5)
    assert float(got["l0"]) == pytest.approx(float((f > 0).sum()) / 64)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_sparse_relu_steps_train_like_autograd():
    """Twenty Adam steps at about 3% active entries (a trained crosscoder's density): the step's own
    choice (the sparse products) reaches autograd's weights; a feature that never fires gets zero gradients."""
    torch.manual_seed(0)
    cfg = CrosscoderConfig(n_checkpoints=3, d_model=16, n_features=256, dec_init_norm=0.3)
    a, b = build(cfg), build(cfg)
    with torch.no_grad():
        a.b_enc.fill_(-0.9)
        a.b_enc[0] = -1e3  # silent throughout
        b.load_state_dict(a.state_dict())
    x = torch.randn(10, 64, 3, 16)
    share = float((a.encode(x[0]) > 0).float().mean())
    assert 0.005 < share < SPARSE_BELOW  # the automatic choice takes the sparse products
    oa, ob = torch.optim.Adam(a.parameters(), lr=1e-3), torch.optim.Adam(b.parameters(), lr=1e-3)
    for step in range(20):
        oa.zero_grad()
        f = a.encode(x[step % 10])
        loss = losses.reconstruction_loss(x[step % 10], a.decode(f), "sum") + 2.0 * losses.l1_penalty(f, a.feature_weights())
        loss.backward()
        oa.step()
        relu_l1_step(b, x[step % 10], 2.0, "sum")
        assert float(b.W_enc.grad[:, :, 0].abs().max()) == 0.0 == float(b.W_dec.grad[0].abs().max())
        ob.step()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)


def test_the_sparse_products_are_chosen_below_their_density_on_the_cpu_only():
    """The planted case just below :data:`SPARSE_BELOW` takes them; the near miss at it, and any GPU count, does not."""
    shape = (100, 1000)
    below = torch.tensor(SPARSE_BELOW * 100 * 1000 - 1)
    assert worth_it(below, shape)
    assert not worth_it(below + 1, shape)
    assert not worth_it(below.to("meta"), shape)  # a GPU's count: never read back, dense GEMMs there


def test_clipping_through_fused_adam_equals_clip_grad_norm():
    from crosstime.crosscoder.training import clip_gradients

    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(50, 30)), torch.nn.Parameter(torch.randn(30))]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    o1, o2 = torch.optim.Adam(ps, lr=1e-2, fused=True), torch.optim.Adam(qs, lr=1e-2, foreach=False)
    for scale in (3.0, 0.001, 5.0):  # clipped, not clipped, clipped
        for p, q in zip(ps, qs):
            g = torch.randn_like(p) * scale
            p.grad, q.grad = g.clone(), g.clone()
        norm = clip_gradients(ps, 1.0, o1)
        assert norm == pytest.approx(float(torch.nn.utils.clip_grad_norm_(qs, 1.0)), rel=1e-5)
        o1.step()
        o2.step()
        for p, q in zip(ps, qs):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)
