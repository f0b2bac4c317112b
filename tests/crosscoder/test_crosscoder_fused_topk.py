"""The TopK family's hand-derived step (crosscoder/fused_topk.py) against autograd of the recipe's loss
(the reference path): loss terms, activity and every gradient of one step; the weights after several
trainer steps (fused Adam) through ``fit``, which takes the fast step by default; BatchTopK's
selection against a plain top-k over the batch."""

from __future__ import annotations

import pytest
import torch

from crosstime.crosscoder import CrosscoderConfig, TrainSettings, build, fit
from crosstime.crosscoder import topk as topk_module
from crosstime.crosscoder.fused_topk import batch_top
from crosstime.crosscoder.recipe import Recipe, StepContext
from crosstime.crosscoder.registry import variant
from crosstime.crosscoder.topk import TopKRecipe

torch.set_num_threads(1)

OWN = {"topk": {"k": 4}, "batchtopk": {"k": 4}, "matryoshka": {"k": 4, "matryoshka_prefixes": [6, 20]}}


def _pair(name: str, reduce: str, l1_norm: str = "sum"):
    """Two identical models (weights moved off their initialisation) and a recipe for each."""
    torch.manual_seed(0)
    settings = TrainSettings(variant=name, n_features=48, batch_size=64, recon_reduce=reduce,
                             variant_settings={**OWN[name], "k_aux": 5})
    cfg = CrosscoderConfig(variant=name, n_checkpoints=3, d_model=8, n_features=48, variant_config={"k": 4},
                           l1_norm=l1_norm)
    a, b = build(cfg), build(cfg)
    with torch.no_grad():
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            p.add_(0.1 * torch.randn_like(p))
            q.copy_(p)
    return settings, (a.train(), b.train()), (variant(name).recipe(settings), variant(name).recipe(settings))


@pytest.mark.parametrize("name", sorted(OWN))
@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("dead_every", [0, 3])
def test_fused_step_equals_autograd(name, reduce, dead_every):
    settings, (a, b), (ra, rb) = _pair(name, reduce, "concat" if dead_every else "sum")
    x = torch.randn(64, 3, 8)
    dead = torch.arange(48) % dead_every == 0 if dead_every else torch.zeros(48, dtype=torch.bool)
    ctx = StepContext(settings, 0, 10, 0.0, dead)
    ra.before_step(a, ctx)
    rb.before_step(b, ctx)
    want = Recipe.step(ra, a, x, ctx)  # autograd of the recipe's loss
    assert rb.fused_step
    got = rb.step(b, x, ctx)
    for term in ("recon", "sparsity", "aux", "loss", "l0"):
        assert float(getattr(got, term)) == pytest.approx(float(getattr(want, term)), rel=1e-5), term
    assert (float(got.aux) > 0) == bool(dead_every)
    assert torch.equal(got.fired, want.fired)
    torch.testing.assert_close(got.e2, want.e2, rtol=1e-5, atol=1e-5)
    assert got.reduce_min.keys() == want.reduce_min.keys()
    for key in want.reduce_min:
        assert float(got.reduce_min[key]) == pytest.approx(float(want.reduce_min[key]), rel=1e-6)
    assert rb.metrics(b) == pytest.approx(ra.metrics(a), rel=1e-5)  # matryoshka: every prefix's reconstruction
    for (pname, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=pname)


@pytest.mark.parametrize("name", sorted(OWN))
def test_fit_takes_the_fused_step_and_ends_with_the_reference_weights(name, monkeypatch):
    """Twelve steps of fit (fused Adam, clipping, AuxK on the features dead after 64 rows: most of
    F = 256 at k·B = 256, k annealed, the threshold EMA from step 4): the fast step's weights equal
    the autograd path's."""
    torch.manual_seed(1)
    data = torch.randn(512, 3, 8)
    own = {**OWN[name], "k_init": 8, "k_anneal_steps": 6}
    if name != "topk":
        own["threshold_start_step"] = 4
    settings = TrainSettings(variant=name, n_features=256, batch_size=64, steps=12, lr=3e-3, dead_tokens=64,
                             variant_settings=own, val_every=0, progress=False, device="cpu")
    calls = []
    fused = topk_module.topk_family_step
    monkeypatch.setattr(topk_module, "topk_family_step", lambda *a: calls.append(1) or fused(*a))
    fast = fit(data, settings)
    assert len(calls) == 12
    monkeypatch.setattr(TopKRecipe, "fused_step", property(lambda self: False))
    reference = fit(data, settings)
    assert len(calls) == 12
    for (pname, p), q in zip(reference.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=pname)
    if name != "topk":
        assert float(fast.threshold) == pytest.approx(float(reference.threshold), rel=1e-4)


@pytest.mark.parametrize("n", [1, 100, 2000, 5000])
def test_batch_top_keeps_the_largest_positive_scores(n):
    """The n largest positive scores, ascending flat indices; all positive ones when fewer than n
    (here 3000 of 8192 are zero); the same when the strided sample sees only huge scores."""
    g = torch.Generator().manual_seed(0)
    scored = torch.rand(64, 128, generator=g).mul_(torch.rand(64, 128, generator=g) > 0.37)
    positive = int((scored > 0).sum())
    got = batch_top(scored, n)
    want = scored.view(-1).topk(min(n, positive)).indices.sort().values
    assert torch.equal(got, want)
    misleading = scored.clone().view(-1)
    misleading[::max(1, (2 * n) // 256) | 1] += 100.0  # every sampled score far above the rest
    assert torch.equal(batch_top(misleading.view(64, 128), n),
                       misleading.topk(min(n, int((misleading > 0).sum()))).indices.sort().values)
