"""Reconstruction and downstream metrics against direct computations on small tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F_
from conftest import tiny_model

from crosstime.evaluate.metrics import (
    DownstreamStats,
    ReconstructionStats,
    ce_sum,
    ce_summary,
    explained_variance,
    frequency_histogram,
    kl_sum,
    prediction_mask,
)
from crosstime.sites import final_norm, read_site, unembedding


def _batches(seed=0, N=60, M=3, d=5, F=7):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, M, d, generator=g) * torch.tensor([1.0, 2.0, 0.5])[:M, None] + 3.0
    x_hat = x + 0.3 * torch.randn(N, M, d, generator=g)
    f = torch.relu(torch.randn(N, F, generator=g) - 0.5)
    f[:, 3] = 0.0  # a dead latent
    return x, x_hat, f


def test_reconstruction_stats_match_direct_formulas_over_uneven_batches():
    x, x_hat, f = _batches()
    N, M, d = x.shape
    stats = ReconstructionStats(M, d, f.shape[1])
    for lo, hi in ((0, 7), (7, 40), (40, 60)):
        stats.update(x[lo:hi], x_hat[lo:hi], f[lo:hi])
    r = stats.result(dead_min_tokens=50)

    for m in range(M):
        err = (x[:, m].double() - x_hat[:, m].double()) ** 2
        assert r.mse[m] == pytest.approx(float(err.mean()), rel=1e-9)
        centred = x[:, m].double() - x[:, m].double().mean(0)
        ev = 1 - float(err.sum()) / float((centred**2).sum())
        assert r.explained_variance[m] == pytest.approx(ev, rel=1e-9)
        assert r.fvu[m] == pytest.approx(1 - ev, rel=1e-9)
    total_err = float(((x.double() - x_hat.double()) ** 2).sum())
    total_var = float(((x.double() - x.double().mean(0)) ** 2).sum())
    assert r.explained_variance_overall == pytest.approx(1 - total_err / total_var, rel=1e-9)
    assert r.mse_overall == pytest.approx(total_err / x.numel(), rel=1e-9)
    assert r.l0 == pytest.approx(float((f > 0).sum(1).float().mean()))
    assert r.dead == int((f > 0).sum(0).eq(0).sum()) == 1
    assert r.dead_fraction == pytest.approx(1 / 7)
    assert r.tokens == N and r.dead_window_reliable is True
    ev_direct, ev_all = explained_variance(x, x_hat)
    assert torch.allclose(ev_direct, torch.tensor(r.explained_variance, dtype=torch.float64))
    assert ev_all == pytest.approx(r.explained_variance_overall)


def test_explained_variance_is_about_the_mean_not_zero():
    # A constant offset reconstructed exactly but the variation missed: EV = 0, not ≈ 1.
    x = torch.randn(100, 1, 4) + 50.0
    x_hat = torch.full_like(x, 0.0) + x.mean(0, keepdim=True)
    ev, overall = explained_variance(x, x_hat)
    assert ev[0].item() == pytest.approx(0.0, abs=1e-9) and overall == pytest.approx(0.0, abs=1e-9)


def test_dead_window_is_flagged_when_too_short_and_shapes_checked():
    x, x_hat, f = _batches()
    stats = ReconstructionStats(3, 5, 7)
    stats.update(x, x_hat, f)
    assert stats.result(dead_min_tokens=100_000).dead_window_reliable is False
    with pytest.raises(ValueError, match="expected f"):
        stats.update(x, x_hat, f[:, :3])
    stats.update_firing(torch.cat([torch.zeros(40, 7), torch.ones(1, 7)]))  # 41 more tokens, every latent once
    r = stats.result(dead_min_tokens=100)
    assert r.dead_window_tokens == 101 and r.dead_window_reliable is True and r.dead == 0
    assert r.tokens == 60 and r.l0 == pytest.approx(float((f > 0).sum(1).float().mean()))  # L0: evaluated rows only
    assert stats.frequency[3].item() == pytest.approx(1 / 101)
    with pytest.raises(ValueError, match="no activations"):
        ReconstructionStats(3, 5, 7).result()


def test_frequency_histogram_by_hand():
    fired = torch.tensor([0, 1, 10, 100, 100, 0])
    h = frequency_histogram(fired, n_tokens=100, bins=2)  # edges log10: -2, -1, 0
    assert h.edges_log10 == pytest.approx([-2.0, -1.0, 0.0])
    assert h.counts == [1, 3]  # 0.01 | 0.1, 1, 1 (right edge inclusive)
    assert h.dead == 2


def test_ce_and_kl_against_direct_computation():
    g = torch.Generator().manual_seed(3)
    B, T, V = 2, 6, 11
    logits = torch.randn(B, T, V, generator=g)
    other = torch.randn(B, T, V, generator=g)
    ids = torch.randint(0, V, (B, T), generator=g)
    mask = prediction_mask((B, T), first_position=1)
    assert mask[:, 0].tolist() == [False, False] and mask[:, -1].tolist() == [False, False]
    assert int(mask.sum()) == B * (T - 2)
    total, n = ce_sum(logits, ids, mask)
    expected = [
        -math.log(float(torch.softmax(logits[b, t].double(), -1)[ids[b, t + 1]])) for b in range(B) for t in range(1, T - 1)
    ]
    assert n == len(expected) and total == pytest.approx(sum(expected), rel=1e-9)
    kl = kl_sum(logits, other, mask)
    direct = sum(
        float(F_.kl_div(F_.log_softmax(other[b, t].double(), -1), F_.log_softmax(logits[b, t].double(), -1),
                        log_target=True, reduction="sum"))
        for b in range(B) for t in range(1, T - 1)
    )
    assert kl == pytest.approx(direct, rel=1e-9)
    assert kl_sum(logits, logits, mask) == pytest.approx(0.0, abs=1e-12)


def test_ce_summary_by_hand():
    s = ce_summary(2.0, 2.5, 4.0)
    assert s["delta_ce"] == 0.5 and s["ce_recovered"] == pytest.approx(0.75) and s["zero_gap"] == 2.0
    assert ce_summary(2.0, 2.0, 2.0)["ce_recovered"] is None


@pytest.fixture(scope="module")
def model_and_ids():
    model = tiny_model("gpt_neox", vocab_size=40, layers=3, d=32, seed=5)
    ids = torch.randint(4, 40, (3, 9), generator=torch.Generator().manual_seed(0))
    return model, ids


@pytest.mark.parametrize("first_position", [0, 1])
def test_splicing_the_exact_activation_back_gives_zero_delta_ce_and_kl(model_and_ids, first_position):
    model, ids = model_and_ids
    layer = 1
    h = read_site(model, ids, layer)
    stats = DownstreamStats()
    stats.update(model, layer, ids, h[:, first_position:].clone(), first_position)
    r = stats.result()
    assert r["delta_ce"] == pytest.approx(0.0, abs=1e-6)
    assert r["kl"] == pytest.approx(0.0, abs=1e-9)
    assert r["predictions"] == 3 * (9 - 1 - first_position)
    assert r["ce_zero"] > r["ce_clean"]  # zeroing a residual stream hurts a (random) model
    assert r["ce_recovered"] == pytest.approx(1.0, abs=1e-6)


def test_zero_ablation_ce_matches_a_manual_forward_at_the_last_block(model_and_ids):
    """At the last block the site feeds final norm → unembedding: compute that by hand."""
    model, ids = model_and_ids
    layer, first = 2, 1
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states[-1]  # final-normed
        zero_site = torch.zeros(ids.shape[0], ids.shape[1] - first, 32)
        logits = unembedding(model)(final_norm(model)(zero_site))
    mask = prediction_mask(tuple(ids.shape), first)
    total, n = 0.0, 0
    for b in range(ids.shape[0]):
        for t in range(first, ids.shape[1] - 1):
            total += -float(F_.log_softmax(logits[b, t - first].double(), -1)[ids[b, t + 1]])
            n += 1
    stats = DownstreamStats()
    stats.update(model, layer, ids, None, first)
    r = stats.result()
    assert r["ce_zero"] == pytest.approx(total / n, rel=1e-5)
    assert r["predictions"] == n == int(mask.sum())
    # and the clean CE equals the unembedded final hidden state, by hand
    with torch.no_grad():
        clean_logits = unembedding(model)(hidden)
    assert r["ce_clean"] == pytest.approx(ce_sum(clean_logits, ids, mask)[0] / n, rel=1e-5)


def test_positions_before_first_position_keep_their_clean_value(model_and_ids):
    """Garbage spliced only from position 2 on leaves the predictions at 0 and 1 untouched."""
    model, ids = model_and_ids
    from crosstime.evaluate.metrics import _splice
    from crosstime.sites import patch_site

    with torch.no_grad():
        clean = model(input_ids=ids).logits
        with patch_site(model, 1, _splice(torch.randn(3, 7, 32) * 10, 2)):
            spliced = model(input_ids=ids).logits
    assert torch.allclose(clean[:, :2], spliced[:, :2], atol=1e-6)
    assert not torch.allclose(clean[:, 2:], spliced[:, 2:], atol=1e-3)
    with pytest.raises(ValueError, match="replacement has shape"):
        DownstreamStats().update(model, 1, ids, torch.zeros(3, 9, 32), 1)
