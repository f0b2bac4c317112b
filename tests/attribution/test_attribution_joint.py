"""Joint ablation / restoration of features (attribution/joint.py) and the RelIE effect floor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import tiny_model

from crosstime.attribution import compute_attribution, make_batches, summarise
from crosstime.attribution.compute import Attribution
from crosstime.attribution.joint import (
    JointCurves,
    joint_curves,
    random_sets,
    rank_by_signed_ie,
)
from crosstime.crosscoder import CrosscoderConfig, build
from crosstime.shares import NO_EFFECT, class_order, classify_effects
from crosstime.sites import patch_site, read_site

REVS = ["a", "b", "c"]
SCALES = [0.5, 1.0, 2.5]  # normalised x = s_m · raw x: unequal, so a missed fold changes every number
LAYER = 1
PREFIXES = [[2, 5, 19, 9], [2, 4, 21, 17, 7, 19], [2, 8, 13], [2, 6, 23, 11, 30]]
CORRECT = torch.tensor([20, 20, 21, 20])
WRONG = torch.tensor([21, 21, 20, 21])


@pytest.fixture(scope="module")
def models():
    return [tiny_model("gpt_neox", vocab_size=36, layers=3, d=32, seed=s) for s in (0, 1, 2)]


@pytest.fixture(scope="module")
def crosscoder(models):
    """A random ReLU crosscoder over the models' sites, weights in normalised space."""
    g = torch.Generator().manual_seed(0)
    M, d, F = len(models), models[0].config.hidden_size, 12
    cc = build(CrosscoderConfig(variant="relu", n_checkpoints=M, d_model=d, n_features=F, revisions=REVS,
                                scales=SCALES))
    with torch.no_grad():
        cc.W_enc.copy_(torch.randn(M, d, F, generator=g) / math.sqrt(M * d))
        cc.b_enc.fill_(0.05)
        cc.b_enc[:6] = -0.01  # rarer features (pre-activations are ~0.05): some sets move nothing in some pairs
        cc.b_enc[-3:] = -10.0  # three features never fire: "every active feature" is not "every feature"
        cc.W_dec.copy_(torch.randn(F, M, d, generator=g) * 0.3)
        cc.b_dec.copy_(torch.randn(M, d, generator=g) * 0.1)
    return cc.eval()


_HAND: dict[tuple[int, int], tuple] = {}


def _by_hand(cc, models, i):
    """Of pair i: sites ``xs [M] of [T, d]``, raw features ``f [T, F]`` and reconstructions, written out from the
    normalised weights (no folding code): f = ReLU(Σ_m s_m x_m W_enc[m] + b_enc), x̂_m = (f W_dec[:, m] + b_dec[m]) / s_m."""
    if (id(cc), i) not in _HAND:
        ids = torch.tensor([PREFIXES[i]])
        s = cc.config.scales
        with torch.no_grad():
            xs = [read_site(mod, ids, LAYER)[0] for mod in models]
            f = torch.relu(sum(s[m] * xs[m] @ cc.W_enc[m] for m in range(len(xs))) + cc.b_enc)
            x_hat = [(f @ cc.W_dec[:, m] + cc.b_dec[m]) / s[m] for m in range(len(xs))]
        _HAND[id(cc), i] = xs, f, x_hat
    return _HAND[id(cc), i]


def _slow_metric(cc, models, m, i, zeroed) -> float:
    """log p(wrong) − log p(correct) of pair i in checkpoint m, full model, one unpadded prefix, with the
    features ``zeroed`` set to 0 at every position but 0 (not attributed) and the error ε_m kept."""
    xs, f, x_hat = _by_hand(cc, models, i)
    g = f.clone()
    g[1:, sorted(zeroed)] = 0
    site = ((g @ cc.W_dec[:, m] + cc.b_dec[m]) / cc.config.scales[m] + (xs[m] - x_hat[m])).unsqueeze(0).detach()
    with torch.no_grad(), patch_site(models[m], LAYER, lambda h: site):
        logits = models[m](input_ids=torch.tensor([PREFIXES[i]])).logits[0, -1]
    logp = torch.log_softmax(logits.double(), -1)
    return (logp[WRONG[i]] - logp[CORRECT[i]]).item()


def _active_by_hand(cc, models) -> torch.Tensor:
    """``[F]``: the features that fire at some attributed position (position 0 excluded) of some pair."""
    return torch.stack([_by_hand(cc, models, i)[1][1:].amax(0) > 0 for i in range(len(PREFIXES))]).any(0)


def _curves(cc, models, ks, draws, seed=0, batch_size=3):
    batches = make_batches(PREFIXES, CORRECT, WRONG, batch_size=batch_size)  # padded: lengths 2..6
    att = compute_attribution(lambda m: models[m], cc, batches, layer=LAYER, method="atp", progress=False)
    curves = joint_curves(lambda m: models[m], cc, batches, LAYER, att.ie, att.task_frequency > 0, ks=ks,
                          draws=draws, seed=seed, progress=False)
    return att, curves


def test_joint_ablation_and_restoration_match_a_slow_reference(crosscoder, models):
    """Every (checkpoint, k, set, pair), ablated and restored, against the full model run on the unpadded
    prefix with the site rebuilt from hand-computed features: ablate zeroes the set, restore zeroes the
    complement (every other feature), the reconstruction error kept in both."""
    att, curves = _curves(crosscoder, models, ks=[1, 3], draws=4)
    F = crosscoder.n_features
    assert curves.ks == [1, 3] and curves.metric.shape == (2, 3, 2, 5, len(PREFIXES))
    moved = silent = 0
    for m in range(3):
        for q, k in enumerate(curves.ks):
            sets = [curves.ranked[m][:k]] + [list(s) for s in curves.draws[q]]
            for s_i, feats in enumerate(sets):
                assert len(set(feats)) == k
                for i in range(len(PREFIXES)):
                    ablated = _slow_metric(crosscoder, models, m, i, set(feats))
                    restored = _slow_metric(crosscoder, models, m, i, set(range(F)) - set(feats))
                    assert curves.metric[0, m, q, s_i, i].item() == pytest.approx(ablated, abs=3e-5)
                    assert curves.metric[1, m, q, s_i, i].item() == pytest.approx(restored, abs=3e-5)
                    moved += abs(ablated - att.clean[m, i].item()) > 1e-3
                    silent += not bool(_by_hand(crosscoder, models, i)[1][1:, feats].any())
    assert moved > 20  # the sets do move the metric: the comparison is not clean == clean
    assert silent > 0  # and some sets do not fire in some pair (rows the code skips, checked all the same)


def test_all_active_features_give_the_joint_effect_and_restore_gives_back_the_clean_metric(crosscoder, models):
    active = _active_by_hand(crosscoder, models)
    n_active = int(active.sum())
    assert 2 < n_active < crosscoder.n_features  # some features never fire: "all active" is not "all"
    att, curves = _curves(crosscoder, models, ks=[n_active, n_active + 1], draws=3)
    assert curves.ks == [n_active]  # k above the active count is skipped
    for m in range(3):
        assert set(curves.ranked[m]) == set(torch.nonzero(active).flatten().tolist())
        for i in range(len(PREFIXES)):
            zero_features = _slow_metric(crosscoder, models, m, i, set(range(crosscoder.n_features)))
            clean = _slow_metric(crosscoder, models, m, i, set())
            # every active feature ablated (top-k and each random draw alike): x̂(0) + ε
            for s_i in range(4):
                assert curves.metric[0, m, 0, s_i, i].item() == pytest.approx(zero_features, abs=3e-5)
                assert curves.metric[1, m, 0, s_i, i].item() == pytest.approx(clean, abs=3e-5)
            assert curves.all_ablated[m, i].item() == pytest.approx(zero_features, abs=3e-5)
            assert (att.clean + att.joint)[m, i].item() == pytest.approx(zero_features, abs=3e-5)
    rows = curves.rows()
    assert all(r["joint_share"] == pytest.approx(0.0 if r["mode"] == "ablate" else 1.0, abs=1e-4) for r in rows)


def test_padding_and_batching_do_not_change_the_curves(crosscoder, models):
    _, one = _curves(crosscoder, models, ks=[2, 5], draws=3, batch_size=1)
    _, four = _curves(crosscoder, models, ks=[2, 5], draws=3, batch_size=4)
    torch.testing.assert_close(one.metric, four.metric, atol=2e-5, rtol=1e-5)


def test_ranking_is_by_signed_ie_among_active_features():
    ie = torch.tensor([[0.5, -2.0, 0.0, 3.0, 0.2, 0.2],
                       [-1.0, 1.0, 0.0, 0.0, 9.0, 0.1]])  # [M=2, F=6]
    active = torch.tensor([True, True, True, True, False, True])  # feature 4 never fires: never ranked
    assert rank_by_signed_ie(ie, active) == [[3, 0, 5, 2, 1], [1, 5, 2, 3, 0]]  # ties (2, 3 at m=1) by id


def test_random_draws_are_seeded_distinct_and_active():
    active = torch.zeros(40, dtype=torch.bool)
    active[::3] = True  # 14 active features
    a, b = random_sets(active, 5, 20, seed=7), random_sets(active, 5, 20, seed=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (20, 5)
    assert not np.array_equal(a, random_sets(active, 5, 20, seed=8))
    assert not np.array_equal(a[:, :2], random_sets(active, 2, 20, seed=7))  # each k draws its own sets
    assert all(len(set(row)) == 5 and all(active[row]) for row in a)
    assert len({tuple(sorted(row)) for row in a}) > 10  # draws differ from each other


def test_random_draws_through_the_curves_are_seeded_and_within_their_interval(crosscoder, models):
    _, one = _curves(crosscoder, models, ks=[2, 4], draws=6, seed=3)
    _, same = _curves(crosscoder, models, ks=[2, 4], draws=6, seed=3)
    _, other = _curves(crosscoder, models, ks=[2, 4], draws=6, seed=4)
    assert one.rows() == same.rows()
    assert any(not np.array_equal(x, y) for x, y in zip(one.draws, other.draws))
    rand = [r for r in one.rows() if r["ranking"] == "random"]
    assert rand and all(r["draws"] == 6 for r in rand)
    for r in rand:
        assert r["lpd_lo"] <= r["lpd"] <= r["lpd_hi"] and r["accuracy_lo"] <= r["accuracy"] <= r["accuracy_hi"]
    assert any(r["lpd_lo"] < r["lpd_hi"] for r in rand)  # the draws do differ


def test_rows_aggregate_pairs_and_draws_by_hand():
    # M = 1, k in (1, 2), 1 top set + 3 random draws, 4 pairs; metric m = log p(wrong) − log p(correct)
    metric = torch.zeros(2, 1, 2, 4, 4)
    metric[0, 0, 0] = torch.tensor([[-1.0, -1.0, 1.0, -3.0],  # top: LPD 1.0, accuracy 0.75
                                    [-2.0, -2.0, -2.0, -2.0],  # draws: LPD 2, 1, 0; accuracy 1, 0.5, 0.25
                                    [-2.0, -2.0, 0.0, 0.0],
                                    [1.0, 1.0, 1.0, -3.0]])
    clean, all_ablated = torch.full((1, 4), -3.0), torch.full((1, 4), 1.0)  # LPD 3 and −1
    curves = JointCurves(["x"], [1, 2], [[0, 1]], [np.zeros((3, 1)), np.zeros((3, 2))], metric, clean, all_ablated,
                         ci=0.5)
    rows = curves.rows()
    assert len(rows) == 2 * 2 * 2  # modes × ks × rankings
    top = next(r for r in rows if (r["mode"], r["ranking"], r["k"]) == ("ablate", "signed_ie", 1))
    assert top["lpd"] == pytest.approx(1.0) and top["accuracy"] == pytest.approx(0.75) and top["draws"] == 1
    assert top["lpd_lo"] is None and top["accuracy_hi"] is None
    assert top["joint_share"] == pytest.approx((1.0 - (-1.0)) / (3.0 - (-1.0)))
    rand = next(r for r in rows if (r["mode"], r["ranking"], r["k"]) == ("ablate", "random", 1))
    assert rand["lpd"] == pytest.approx(1.0) and rand["accuracy"] == pytest.approx((1 + 0.5 + 0.25) / 3)
    assert (rand["lpd_lo"], rand["lpd_hi"]) == pytest.approx((0.5, 1.5))  # 25th / 75th percentiles of 0, 1, 2
    assert rand["draws"] == 3
    restore0 = next(r for r in rows if (r["mode"], r["ranking"], r["k"]) == ("restore", "signed_ie", 2))
    assert restore0["lpd"] == 0.0 and restore0["accuracy"] == 0.0  # metric 0: a tie counts as wrong


# -- RelIE classes need an effect ----------------------------------------------------------

def test_classify_effects_labels_features_below_the_floor():
    effects = torch.tensor([[0.05, -0.0499],  # total 0.0999 < 0.1: no effect
                            [0.1, 0.0],  # total 0.1: passes (>= floor), all of it at a
                            [-0.3, 0.2],  # 0.6 / 0.4: shared
                            [0.0, 0.0],  # nothing at all
                            [0.001, 0.004]])  # the shares of noise (0.2 / 0.8): "b-specific" without the floor
    labels = classify_effects(effects, ["a", "b"], floor=0.1)
    assert labels == [NO_EFFECT, "a-specific", "all shared", NO_EFFECT, NO_EFFECT]
    assert classify_effects(effects, ["a", "b"], floor=0.0)[4] == "b-specific"
    assert class_order(labels, ["a", "b"]) == ["a-specific", "all shared", NO_EFFECT]
    with pytest.raises(ValueError, match="floor"):
        classify_effects(effects, ["a", "b"], floor=-1.0)


def _hand_attribution(ie: list[list[float]], joint: list[float]) -> Attribution:
    """Two pairs with equal effects (so the mean is ``ie [M, F]``), mean joint effect ``joint [M]``."""
    ie_t = torch.tensor(ie)
    M, F = ie_t.shape
    per_pair = ie_t.unsqueeze(1).repeat(1, 2, 1)  # [M, 2, F]
    zeros = torch.zeros(M, 2)
    return Attribution(["a", "b"], "ig", 10, per_pair, zeros, torch.tensor(joint).unsqueeze(1).repeat(1, 2),
                       -torch.ones(M, 2), torch.ones(F), torch.zeros(F))


def test_summary_gives_no_class_below_one_percent_of_the_joint_effect():
    # Σ_m |J_m| = |−4| + 6 = 10, so the default floor is 0.1
    att = _hand_attribution([[0.05, 0.04, 0.09, 2.0, 0.0],
                             [0.049, 0.07, 0.012, -1.0, 0.0]], joint=[-4.0, 6.0])
    cc = build(CrosscoderConfig(variant="relu", n_checkpoints=2, d_model=4, n_features=5, revisions=["a", "b"]))
    s = summarise(att, cc, top_k=4, bootstrap=0)
    assert s.metrics["effect_floor"] == 0.01 and s.metrics["effect_floor_value"] == pytest.approx(0.1)
    cls = dict(zip(s.features, s.relie_class))
    assert cls == {3: "all shared", 1: "all shared", 2: "a-specific", 0: NO_EFFECT}  # totals 3, .11, .102, .099
    assert s.metrics["relie_class_counts"] == {"a-specific": 1, "all shared": 2, NO_EFFECT: 1}
    assert {r["feature"]: r["relie_class"] for r in s.rows} == cls
    confusion = {(r["relie_class"], r["reldec_class"]): r["count"] for r in s.confusion}
    assert sum(n for (a, _), n in confusion.items() if a == NO_EFFECT) == 1
    assert [r["relie_class"] for r in s.confusion][-1] == NO_EFFECT  # listed last
    # a higher floor takes more classes away; floor 0 gives every reported feature a class
    assert summarise(att, cc, top_k=4, bootstrap=0, effect_floor=0.0115).relie_class.count(NO_EFFECT) == 3
    assert NO_EFFECT not in summarise(att, cc, top_k=4, bootstrap=0, effect_floor=0.0).relie_class
