"""Attribution: IE estimators against exact effects, the error term, padding, RelIE, bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tiny_model
from crosstime.artifacts import ATTRIBUTION_CONFUSION, ATTRIBUTION_FEATURES, pairs
from crosstime.attribution import (
    Attribution,
    AttributionError,
    SiteForward,
    ablate_features,
    batch_effects,
    bootstrap_ie,
    compute_attribution,
    make_batches,
    midpoint_alphas,
    pairwise_rel_ie,
    rel_ie,
    summarise,
    top_features,
)
from crosstime.attribution.tables import confusion_rows
from crosstime.crosscoder import CrosscoderConfig, build

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

REVS = ["a", "b", "c"]
SCALES = [0.5, 1.0, 2.5]  # s_m: normalised x = s_m · raw x (unequal, so a missed fold changes every number)


def _toy_crosscoder(models, F=12, seed=0, scales=SCALES):
    """A random ReLU crosscoder over the models' site activations, weights in normalised space."""
    g = torch.Generator().manual_seed(seed)
    M, d = len(models), models[0].config.hidden_size
    cc = build(CrosscoderConfig(variant="relu", n_checkpoints=M, d_model=d, n_features=F, revisions=REVS[:M],
                                scales=list(scales[:M])))
    with torch.no_grad():
        cc.W_enc.copy_(torch.randn(M, d, F, generator=g) / math.sqrt(M * d))
        cc.b_enc.fill_(0.05)
        cc.W_dec.copy_(torch.randn(F, M, d, generator=g) * 0.3)
        cc.b_dec.copy_(torch.randn(M, d, generator=g) * 0.1)
    return cc.eval()


def _raw_by_hand(cc, xs):
    """Raw-space features and reconstructions from the normalised weights, written out (no folding code):
    f = ReLU(Σ_m s_m x_m W_enc[m] + b_enc), x̂_m = (f W_dec[:, m] + b_dec[m]) / s_m. xs: M × [T, d]."""
    s = cc.config.scales
    with torch.no_grad():
        f = torch.relu(sum(s[m] * xs[m] @ cc.W_enc[m] for m in range(len(xs))) + cc.b_enc)  # [T, F]
        x_hat = [(f @ cc.W_dec[:, m] + cc.b_dec[m]) / s[m] for m in range(len(xs))]
    return f, x_hat


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
    cc = _toy_crosscoder(three_models)
    batches = make_batches(PREFIXES, CORRECT, WRONG, batch_size=3)
    att = compute_attribution(lambda m: three_models[m], cc, batches, layer=1, method="atp",
                              progress=False)
    for m, model in enumerate(three_models):
        want = [_direct_metric(model, PREFIXES[i], CORRECT[i], WRONG[i]) for i in range(len(PREFIXES))]
        torch.testing.assert_close(att.clean[m].double(), torch.tensor(want, dtype=torch.float64), atol=2e-5, rtol=1e-5)
    # and the decomposition is real: x̂ alone (error dropped) changes the metric
    assert att.error.abs().max() > 1e-3


def test_padding_never_changes_a_number(three_models):
    cc = _toy_crosscoder(three_models)
    kw = dict(layer=1, method="ig", steps=2, progress=False)
    rows = [2, 1]  # the shortest and the longest prefix, each alone in its batch
    alone = [compute_attribution(lambda m: three_models[m], cc,
                                 make_batches([PREFIXES[i]], CORRECT[i:i + 1], WRONG[i:i + 1], 1), **kw)
             for i in rows]
    together = compute_attribution(lambda m: three_models[m], cc,
                                   make_batches(PREFIXES, CORRECT, WRONG, batch_size=4), **kw)
    for i, a in zip(rows, alone):
        torch.testing.assert_close(together.ie_per_pair[:, i], a.ie_per_pair[:, 0], atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(together.clean[:, i], a.clean[:, 0], atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(together.error[:, i], a.error[:, 0], atol=2e-5, rtol=1e-5)


def test_exact_method_matches_a_slow_full_model_reference(three_models):
    """`exact` and the ablation pass against the full model run with site x̂_m(f with feature i zeroed) + ε,
    x̂ written out from the normalised weights and the scales (the code under test folds them)."""
    from crosstime.sites import patch_site, read_site

    cc = _toy_crosscoder(three_models)
    batches = make_batches(PREFIXES, CORRECT, WRONG, batch_size=2)
    att = compute_attribution(lambda m: three_models[m], cc, batches, layer=1, method="exact", progress=False)
    feats = [0, 3, 7]
    abl = ablate_features(lambda m: three_models[m], cc, batches, layer=1, features=feats, progress=False)
    assert att.revisions == abl.revisions == REVS
    moved = 0
    for i, prefix in enumerate(PREFIXES):
        ids = torch.tensor([prefix])
        with torch.no_grad():
            xs = [read_site(mod, ids, 1)[0] for mod in three_models]  # [T, d] each
        f, x_hat = _raw_by_hand(cc, xs)
        for m, model in enumerate(three_models):
            eps = xs[m] - x_hat[m]
            for k, feat in enumerate(feats):
                g = f.clone()
                g[1:, feat] = 0  # position 0 is not attributed (excluded as in the store)
                site = ((g @ cc.W_dec[:, m] + cc.b_dec[m]) / cc.config.scales[m] + eps).unsqueeze(0).detach()
                with torch.no_grad(), patch_site(model, 1, lambda h, site=site: site):
                    logp = torch.log_softmax(model(input_ids=ids).logits[0, -1].double(), -1)
                want = (logp[WRONG[i]] - logp[CORRECT[i]]).item() - _direct_metric(model, prefix, CORRECT[i], WRONG[i])
                assert att.ie_per_pair[m, i, feat].item() == pytest.approx(want, abs=3e-5)
                assert abl.effects[m, k, i].item() == pytest.approx(want, abs=3e-5)
                moved += abs(want) > 1e-3
    assert moved > 10  # the features do move the metric: the comparison is not 0 == 0


def test_a_folded_crosscoder_gives_the_same_numbers(three_models):
    cc = _toy_crosscoder(three_models)
    batches = make_batches(PREFIXES, CORRECT, WRONG, batch_size=4)
    kw = dict(layer=1, method="atp", progress=False)
    a = compute_attribution(lambda m: three_models[m], cc, batches, **kw)
    b = compute_attribution(lambda m: three_models[m], cc.folded(), batches, **kw)
    torch.testing.assert_close(b.ie_per_pair, a.ie_per_pair, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.task_frequency, a.task_frequency)
    sa, sb = summarise(a, cc, top_k=3, bootstrap=0), summarise(b, cc.folded(), top_k=3, bootstrap=0)
    np.testing.assert_allclose(sb.reldec, sa.reldec, rtol=1e-5)


def test_reldec_is_measured_in_normalised_space(three_models):
    cc = _toy_crosscoder(three_models)
    att = compute_attribution(lambda m: three_models[m], cc, make_batches(PREFIXES, CORRECT, WRONG, 4), layer=1,
                              method="atp", progress=False)
    s = summarise(att, cc, top_k=4, bootstrap=0)
    norms = cc.W_dec.detach().double().pow(2).sum(-1).sqrt()  # [F, M], normalised space
    np.testing.assert_allclose(s.reldec, (norms / norms.sum(1, keepdim=True)).numpy(), rtol=1e-5)
    raw = norms / torch.tensor(SCALES, dtype=torch.float64)  # what the folded decoder's rows measure
    assert np.abs(s.reldec - (raw / raw.sum(1, keepdim=True)).numpy()).max() > 0.05
    for row in s.rows:  # the table carries the same shares
        np.testing.assert_allclose(row["reldec"], s.reldec[row["feature"]], rtol=1e-6)


def test_summary_refuses_an_ablation_of_other_features(three_models):
    cc = _toy_crosscoder(three_models)
    batches = make_batches(PREFIXES, CORRECT, WRONG, 4)
    att = compute_attribution(lambda m: three_models[m], cc, batches, layer=1, method="atp", progress=False)
    _, union = top_features(att.ie.numpy(), 2)
    abl = ablate_features(lambda m: three_models[m], cc, batches, layer=1, features=union[::-1], progress=False)
    with pytest.raises(AttributionError, match="reported features"):
        summarise(att, cc, top_k=2, ablation=abl, bootstrap=0)


def test_ig_close_to_exact_on_the_tiny_transformer(three_models):
    cc = _toy_crosscoder(three_models)
    batches = make_batches(PREFIXES, CORRECT, WRONG, batch_size=4)
    kw = dict(layer=1, progress=False)
    exact = compute_attribution(lambda m: three_models[m], cc, batches, method="exact", **kw).ie
    ig = compute_attribution(lambda m: three_models[m], cc, batches, method="ig", steps=10, **kw).ie
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


# -- tables -------------------------------------------------------------------------------

def test_confusion_rows_count_every_pair_of_classes():
    revs = ["a", "b"]
    relie = ["a-dominant", "a-dominant", "b-dominant", "all shared"]
    reldec = ["all shared", "a-dominant", "b-dominant", "all shared"]
    rows = confusion_rows(relie, reldec, revs)
    counts = {(r["relie_class"], r["reldec_class"]): r["count"] for r in rows}
    assert counts[("a-dominant", "all shared")] == 1 and counts[("a-dominant", "a-dominant")] == 1
    assert counts[("b-dominant", "b-dominant")] == 1 and counts[("all shared", "all shared")] == 1
    assert counts[("b-dominant", "a-dominant")] == 0  # every combination of the classes seen, zeros included
    assert len(rows) == 3 * 3 and sum(counts.values()) == 4
    text = ATTRIBUTION_CONFUSION.text(rows, revs)
    assert text.splitlines()[0] == "relie_class,reldec_class,count"


@pytest.mark.parametrize("M", [3, 5])
def test_feature_rows_follow_the_schema(M, tmp_path):
    """Rows for M checkpoints round-trip through ATTRIBUTION_FEATURES; pairwise RelIE only up to M = 4."""
    revs = [f"step{m}" for m in range(M)]
    F, N = 6, 5
    g = torch.Generator().manual_seed(M)
    cc = build(CrosscoderConfig(n_checkpoints=M, d_model=4, n_features=F, revisions=revs, scales=[1.0] * M))
    per_pair = torch.randn(M, N, F, generator=g)
    att = Attribution(revs, "ig", 4, per_pair, torch.zeros(M, N), torch.zeros(M, N), torch.randn(M, N, generator=g),
                      torch.rand(F, generator=g), torch.zeros(F))
    s = summarise(att, cc, top_k=2, bootstrap=50)
    assert s.rows and all(r["relie_pair"] is None for r in s.rows) == (M > 4)
    if M <= 4:
        row = s.rows[0]
        ie = att.ie[:, row["feature"]].abs().double()
        want = [float(ie[b] / (ie[a] + ie[b])) for a, b in pairs(M)]
        np.testing.assert_allclose(row["relie_pair"], want, rtol=1e-6)
    ATTRIBUTION_FEATURES.write(tmp_path, s.rows, revs)
    back = ATTRIBUTION_FEATURES.read(tmp_path, revs)
    assert len(back) == len(s.rows)
    for got, want in zip(back, s.rows):
        assert got.keys() == want.keys()
        for key in want:
            if isinstance(want[key], list):
                assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-12) if want[key][0] is not None \
                    else got[key] == want[key]
            else:
                assert got[key] == (pytest.approx(want[key], rel=1e-5) if isinstance(want[key], float) else want[key])
    # no ablation: the exact cells are empty; with a bootstrap the CI cells are not
    assert all(r["exact"] == [None] * M and None not in r["ie_lo"] for r in back)
