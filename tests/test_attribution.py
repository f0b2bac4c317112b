"""Attribution: IE estimators against exact effects, the error term, padding, RelIE, bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tiny_model
from crosstime.attribution import (
    SiteForward, batch_effects, bootstrap_ie, make_batches, midpoint_alphas, pairwise_rel_ie, rel_ie, top_features,
)
from crosstime.attribution.stage import AttributionError, CrosscoderView, ablate_features, compute_attribution, crosscoder_view

torch.set_default_dtype(torch.float32)


# -- analytic metrics: the estimators' maths ----------------------------------------------

def _orthonormal_setup(B=3, T=4, F=5, d=6, seed=0):
    """Features f >= 0 and a decoder with orthonormal rows, so site·W[j] = f_j + ε·W[j]."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    W = q[:F].clone()  # [F, d] orthonormal rows
    f = torch.rand(B, T, F, generator=g, dtype=torch.float64) * 2
    f[f < 0.4] = 0  # some inactive
    eps = 0.1 * torch.randn(B, T, d, generator=g, dtype=torch.float64)
    x = f @ W + eps
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 0] = False
    mask[1, :2] = False
    return x, f, W, mask


def _exact_single(metric_fn, x, f, W, mask, base=None):
    """Slow reference: rebuild the site with one feature moved, one forward per feature."""
    F = f.shape[-1]
    base = torch.zeros(F, dtype=f.dtype) if base is None else base
    clean = metric_fn(x)
    out = torch.zeros(x.shape[0], F, dtype=x.dtype)
    for i in range(F):
        g = f.clone()
        g[..., i] = torch.where(mask, base[i].expand_as(g[..., i]), g[..., i])
        out[:, i] = metric_fn(x + (g - f) @ W) - clean
    return out


def test_ig_equals_exact_when_metric_is_linear():
    x, f, W, mask = _orthonormal_setup()
    u = torch.randn(x.shape[-1], dtype=torch.float64)
    metric = lambda site: (site @ u).sum(1) * 0.7 - 1.0  # noqa: E731  linear in the site, hence in f
    exact = _exact_single(metric, x, f, W, mask)
    for steps in (1, 3, 10):
        ig = batch_effects(metric, x, f, W, mask, method="ig", steps=steps).features
        torch.testing.assert_close(ig, exact, rtol=1e-10, atol=1e-12)
    assert exact.abs().max() > 0.1


def test_ig_converges_to_exact_on_a_separable_nonlinear_metric():
    x, f, W, mask = _orthonormal_setup(seed=1)
    c = torch.linspace(-1.5, 2.0, f.shape[-1], dtype=torch.float64)
    # m = Σ_t Σ_j c_j tanh(site_t · W_j - 0.5): nonlinear in every feature, additive over features
    metric = lambda site: (c * torch.tanh(site @ W.T - 0.5)).sum((1, 2))  # noqa: E731
    exact = _exact_single(metric, x, f, W, mask)
    errs = {}
    for steps in (5, 10, 20, 200):
        ig = batch_effects(metric, x, f, W, mask, method="ig", steps=steps).features
        errs[steps] = (ig - exact).abs().max().item()
    assert errs[200] < 1e-4 * exact.abs().max().item()
    # midpoint rule: error falls like 1/S² (a left Riemann sum would fall like 1/S)
    assert errs[20] < errs[10] / 3 and errs[10] < errs[5] / 3
    # AtP is first order and is not exact here
    atp = batch_effects(metric, x, f, W, mask, method="atp").features
    assert (atp - exact).abs().max().item() > 10 * errs[10]


def test_midpoint_alphas():
    assert torch.allclose(midpoint_alphas(4), torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=torch.float64))
    with pytest.raises(ValueError):
        midpoint_alphas(0)


def test_atp_equals_gradient_times_delta_by_hand():
    x, f, W, mask = _orthonormal_setup(seed=2)
    v = torch.randn(x.shape[-1], dtype=torch.float64)
    metric = lambda site: torch.sin(site @ v).sum(1)  # noqa: E731
    atp = batch_effects(metric, x, f, W, mask, method="atp", threshold=None).features
    # by hand: d m / d f_{b,t,i} = cos(x_{b,t}·v) (W_i·v); delta = -f at attributed positions
    grad_f = torch.cos(x @ v).unsqueeze(-1) * (W @ v)  # [B, T, F]
    hand = (grad_f * (-f) * mask.unsqueeze(-1)).sum(1)
    torch.testing.assert_close(atp, hand, rtol=1e-10, atol=1e-12)


def test_threshold_zeroes_small_per_token_effects():
    x, f, W, mask = _orthonormal_setup(seed=3)
    u = torch.randn(x.shape[-1], dtype=torch.float64)
    metric = lambda site: (site @ u).sum(1)  # noqa: E731
    per_token = (-f * mask.unsqueeze(-1)) * (u @ W.T)  # [B, T, F] exact per-token effects (linear)
    tau = per_token.abs().median().item()
    got = batch_effects(metric, x, f, W, mask, method="ig", steps=2, threshold=tau).features
    want = (per_token * (per_token.abs() > tau)).sum(1)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_mean_baseline_and_exact_method():
    x, f, W, mask = _orthonormal_setup(seed=4)
    c = torch.linspace(-1, 1, f.shape[-1], dtype=torch.float64)
    metric = lambda site, rows=None: (c * torch.tanh(site @ W.T)).sum((1, 2)) ** 2  # noqa: E731  not separable
    base = f[mask].mean(0)
    want = _exact_single(metric, x, f, W, mask, base=base)
    got = batch_effects(metric, x, f, W, mask, baseline=base, method="exact").features
    torch.testing.assert_close(got, want)
    # zero baseline: only (pair, feature) rows where the feature fires are run; the rest are exactly 0
    want0 = _exact_single(metric, x, f, W, mask)
    got0 = batch_effects(metric, x, f, W, mask, method="exact", max_rows=4).features
    torch.testing.assert_close(got0, want0)
    assert (want0 == 0).any() and (want0 != 0).any()


def test_error_and_joint_effects():
    x, f, W, mask = _orthonormal_setup(seed=5)
    b_dec = torch.randn(x.shape[-1], dtype=torch.float64) * 0.1
    x = x + b_dec
    u = torch.randn(x.shape[-1], dtype=torch.float64)
    metric = lambda site: torch.tanh(site @ u).sum(1)  # noqa: E731
    res = batch_effects(metric, x, f, W, mask, b_dec_m=b_dec, method="ig", steps=50)
    eps = x - (f @ W + b_dec)
    torch.testing.assert_close(res.clean, metric(x))
    torch.testing.assert_close(res.error, metric(x - eps * mask.unsqueeze(-1)) - metric(x))
    ablated = x + ((torch.zeros_like(f) - f) * mask.unsqueeze(-1)) @ W
    torch.testing.assert_close(res.joint, metric(ablated) - metric(x))
    # IG's completeness: the features' effects add up to the joint effect (midpoint, 50 steps)
    torch.testing.assert_close(res.features.sum(1), res.joint, rtol=1e-3, atol=1e-4)


# -- a real (tiny) transformer -----------------------------------------------------------

def _toy_crosscoder(models, layer, F=12, seed=0):
    """A random ReLU crosscoder over the models' site activations (raw space)."""
    g = torch.Generator().manual_seed(seed)
    M, d = len(models), models[0].config.hidden_size
    W_enc = torch.randn(M, d, F, generator=g) / math.sqrt(M * d)
    b_enc = torch.full((F,), 0.05)
    W_dec = torch.randn(F, M, d, generator=g) * 0.3
    b_dec = torch.randn(M, d, generator=g) * 0.1

    def encode(x):  # [B, M, d] -> [B, F]
        return torch.relu(torch.einsum("bmd,mdf->bf", x, W_enc) + b_enc)

    return CrosscoderView(encode=encode, W_dec=W_dec, b_dec=b_dec)


PREFIXES = [[2, 5, 19, 9], [2, 4, 21, 17, 7, 19], [2, 8], [2, 6, 23, 11, 30]]
CORRECT = torch.tensor([20, 20, 21, 20])
WRONG = torch.tensor([21, 21, 20, 21])


@pytest.fixture(scope="module")
def three_models():
    return [tiny_model("gpt_neox", vocab_size=36, layers=3, d=32, seed=s) for s in (0, 1, 2)]


def _direct_metric(model, prefix, correct, wrong):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prefix])).logits[0, -1]
    logp = torch.log_softmax(logits.double(), -1)
    return (logp[wrong] - logp[correct]).item()


@pytest.mark.parametrize("arch", ["gpt_neox", "llama", "bloom", "gpt2"])
def test_site_forward_matches_the_unpatched_model(arch):
    model = tiny_model(arch, vocab_size=36, layers=3, d=32)
    batches = make_batches(PREFIXES, CORRECT, WRONG, batch_size=4)
    b = batches[0]
    for skip in (True, False):
        runner = SiteForward(model, 1, skip_early_blocks=skip)
        x = runner.read(b)
        got = runner.metric(x, b)
        want = [_direct_metric(model, PREFIXES[i], CORRECT[i], WRONG[i]) for i in b.index.tolist()]
        torch.testing.assert_close(got.double(), torch.tensor(want, dtype=torch.float64), atol=2e-5, rtol=1e-5)


def test_features_plus_error_reproduce_the_clean_metric(three_models):
    cc = _toy_crosscoder(three_models, layer=1)
    batches = make_batches(PREFIXES, CORRECT, WRONG, batch_size=3)
    att = compute_attribution(lambda m: three_models[m], ["a", "b", "c"], cc, batches, layer=1, method="atp",
                              progress=False)
    for m, model in enumerate(three_models):
        want = [_direct_metric(model, PREFIXES[i], CORRECT[i], WRONG[i]) for i in range(len(PREFIXES))]
        torch.testing.assert_close(att.clean[m].double(), torch.tensor(want, dtype=torch.float64), atol=2e-5, rtol=1e-5)
    # and the decomposition is real: x̂ alone (error dropped) changes the metric
    assert att.error.abs().max() > 1e-3


def test_padding_never_changes_a_number(three_models):
    cc = _toy_crosscoder(three_models, layer=1)
    kw = dict(layer=1, method="ig", steps=2, progress=False)
    rows = [2, 1]  # the shortest and the longest prefix, each alone in its batch
    alone = [compute_attribution(lambda m: three_models[m], ["a", "b", "c"], cc,
                                 make_batches([PREFIXES[i]], CORRECT[i:i + 1], WRONG[i:i + 1], 1), **kw)
             for i in rows]
    together = compute_attribution(lambda m: three_models[m], ["a", "b", "c"], cc,
                                   make_batches(PREFIXES, CORRECT, WRONG, batch_size=4), **kw)
    for i, a in zip(rows, alone):
        torch.testing.assert_close(together.ie_per_pair[:, i], a.ie_per_pair[:, 0], atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(together.clean[:, i], a.clean[:, 0], atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(together.error[:, i], a.error[:, 0], atol=2e-5, rtol=1e-5)


def test_exact_method_matches_a_slow_full_model_reference(three_models):
    """`exact` and the ablation pass against decode(f with feature i zeroed) + ε spliced into the full model."""
    from crosstime.sites import patch_site

    cc = _toy_crosscoder(three_models, layer=1)
    batches = make_batches(PREFIXES, CORRECT, WRONG, batch_size=2)
    att = compute_attribution(lambda m: three_models[m], ["a", "b", "c"], cc, batches, layer=1, method="exact",
                              progress=False)
    feats = [0, 3, 7]
    abl = ablate_features(lambda m: three_models[m], ["a", "b", "c"], cc, batches, layer=1, features=feats,
                          progress=False)
    m = 1
    model = three_models[m]
    for i, prefix in enumerate(PREFIXES):
        ids = torch.tensor([prefix])
        from crosstime.sites import read_site
        xs = [read_site(mod, ids, 1) for mod in three_models]  # [1, T, d] each
        f = cc.encode(torch.stack(xs, 2)[0])  # [T, F]
        x_hat = f @ cc.W_dec[:, m] + cc.b_dec[m]
        eps = xs[m][0] - x_hat
        for k, feat in enumerate(feats):
            g = f.clone()
            g[1:, feat] = 0  # position 0 is not attributed (excluded as in the store)
            site = (g @ cc.W_dec[:, m] + cc.b_dec[m] + eps).unsqueeze(0)
            with torch.no_grad(), patch_site(model, 1, lambda h: site):
                logp = torch.log_softmax(model(input_ids=ids).logits[0, -1].double(), -1)
            want = (logp[WRONG[i]] - logp[CORRECT[i]]).item() - _direct_metric(model, prefix, CORRECT[i], WRONG[i])
            assert att.ie_per_pair[m, i, feat].item() == pytest.approx(want, abs=3e-5)
            assert abl.effects[m, k, i].item() == pytest.approx(want, abs=3e-5)


def test_ig_close_to_exact_on_the_tiny_transformer(three_models):
    cc = _toy_crosscoder(three_models, layer=1)
    batches = make_batches(PREFIXES, CORRECT, WRONG, batch_size=4)
    kw = dict(layer=1, progress=False)
    exact = compute_attribution(lambda m: three_models[m], ["a", "b", "c"], cc, batches, method="exact", **kw).ie
    ig = compute_attribution(lambda m: three_models[m], ["a", "b", "c"], cc, batches, method="ig", steps=10, **kw).ie
    rho = np.corrcoef(ig.flatten().numpy(), exact.flatten().numpy())[0, 1]
    assert rho > 0.9


# -- RelIE, top-k, bootstrap -------------------------------------------------------------

def test_relie_sums_to_one_and_handles_zero_effects():
    ie = np.array([[0.5, 0.0, -1.0, 0.0], [0.5, 0.0, 3.0, 2.0], [-1.0, 0.0, 0.0, 0.0]])  # [M=3, F=4]
    r = rel_ie(ie)
    assert r.shape == (4, 3)
    np.testing.assert_allclose(r.sum(1), 1.0)
    np.testing.assert_allclose(r[0], [0.25, 0.25, 0.5])
    np.testing.assert_allclose(r[1], [1 / 3] * 3)  # no effect anywhere: 1/M, not 0.5
    np.testing.assert_allclose(r[2], [0.25, 0.75, 0.0])  # signs do not matter
    p, pairs = pairwise_rel_ie(ie)
    assert pairs == [(0, 1), (0, 2), (1, 2)]
    assert not np.isnan(p).any()
    np.testing.assert_allclose(p[3], [1.0, 0.5, 0.0])  # |0| vs |0| between checkpoints 0 and 2 -> 0.5
    np.testing.assert_allclose(p[1], [0.5, 0.5, 0.5])


def test_top_features_and_k_larger_than_f():
    ie = np.array([[0.1, -0.9, 0.0, 0.3], [0.0, 0.0, 0.0, 0.2]])
    per, union = top_features(ie, 2)
    assert per == [[1, 3], [3]]  # zero-effect features never selected
    assert union == [1, 3]
    with pytest.raises(ValueError, match="top-k = 5 .* F = 4"):
        top_features(ie, 5)


def test_bootstrap_ci_contains_the_estimate_and_shrinks_with_more_pairs():
    rng = np.random.default_rng(0)

    def sample(n):
        return np.stack([rng.normal(1.0, 1.0, (n, 3)), rng.normal(-0.5, 2.0, (n, 3))])  # [M=2, N, K=3]

    widths = {}
    for n in (40, 640):
        x = sample(n)
        ci = bootstrap_ie(x, resamples=500, seed=1)
        point = x.mean(1)
        assert np.all(ci["ie_lo"] <= point) and np.all(point <= ci["ie_hi"])
        share = rel_ie(point)  # [K, M]
        assert np.all(ci["relie_lo"] <= share + 1e-12) and np.all(share <= ci["relie_hi"] + 1e-12)
        widths[n] = (ci["ie_hi"] - ci["ie_lo"]).mean()
    assert widths[640] < widths[40] / 3  # ~ 1/sqrt(16) = 1/4


# -- bad input -----------------------------------------------------------------------------

class _Store:
    def __init__(self, revisions, d):
        self.revisions, self.d_model, self.scales = revisions, d, {r: 1.0 for r in revisions}


class _CC:
    def __init__(self, M, d, F=4, revisions=None, scales=None):
        self.W_dec = torch.zeros(F, M, d)
        self.b_dec = torch.zeros(M, d)
        self.revisions, self.scales = revisions, scales

    def eval(self):
        return self

    def encode(self, x):
        return torch.zeros(x.shape[0], self.W_dec.shape[0])


def test_crosscoder_not_trained_on_this_series():
    with pytest.raises(AttributionError, match="d = 16 .* d_model = 32"):
        crosscoder_view(_CC(2, 16), _Store(["s1", "s2"], 32))
    with pytest.raises(AttributionError, match="not trained on this series"):
        crosscoder_view(_CC(3, 32), _Store(["s1", "s2"], 32))
    with pytest.raises(AttributionError, match="not trained on this series"):
        crosscoder_view(_CC(2, 32, revisions=["s1", "s9"]), _Store(["s1", "s2"], 32))
    with pytest.raises(AttributionError, match="scales .* differ"):
        crosscoder_view(_CC(2, 32, revisions=["s1", "s2"], scales=[1.0, 2.0]), _Store(["s1", "s2"], 32))
    view, revs = crosscoder_view(_CC(2, 32, revisions=["s1", "s2"]), _Store(["s1", "s2", "s3"], 32))
    assert revs == ["s1", "s2"] and view.n_features == 4
