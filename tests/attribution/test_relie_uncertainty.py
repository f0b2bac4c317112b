"""RelIE classes with bootstrap intervals, and the three IE estimators against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crosstime.attribution import batch_effects
from crosstime.attribution.stats import (
    class_intervals,
    classify_effects,
    resample_effects,
)
from crosstime.shares import HIGH_SHARE, LOW_SHARE

REVS = ["a", "b"]


def _planted(N: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair effects ``[2, N, 3]`` and a per-pair joint effect ``[2, N]`` (1 in each checkpoint):

    - feature 0: half the pairs put (0.2, 0.8) of a unit effect in (a, b), half (0.4, 0.6): shares
      (0.3, 0.7), exactly at both cut-offs of the class rule;
    - feature 1: (0.05, 0.95) ± 1% noise: b-dominant, far from every cut-off;
    - feature 2: only at b, 0.02 in half the pairs and 0.04 in the rest: Σ|IE| = 0.03 of Σ|J| = 2, an
      effect share of 0.015, 50% above the 0.01 floor.
    """
    rng = np.random.default_rng(seed)
    half = np.arange(N) % 2 == 0
    x = np.zeros((2, N, 3))
    x[0, :, 0], x[1, :, 0] = np.where(half, 0.2, 0.4), np.where(half, 0.8, 0.6)
    x[0, :, 1], x[1, :, 1] = 0.05 + 0.01 * rng.standard_normal(N), 0.95 + 0.01 * rng.standard_normal(N)
    x[1, :, 2] = np.where(half, 0.02, 0.04)
    return x, np.ones((2, N))


def test_a_share_at_a_cut_off_is_uncertain_and_one_far_from_them_is_not():
    x, joint = _planted()
    ie = x.mean(1)  # [2, 3]
    floor = 0.01 * np.abs(joint.mean(1)).sum()
    classes = classify_effects(torch.as_tensor(ie.T), REVS, floor)
    # feature 0: its largest share is 0.7, not above it: both checkpoints present -> "all shared"
    assert classes[:2] == ["all shared", "b-specific"]
    res = resample_effects(x, resamples=400, seed=3, joint=joint)
    got = class_intervals(res, classes, REVS, ci=0.95, effect_floor=0.01)
    assert got[0].uncertain and got[0].lo < HIGH_SHARE < got[0].hi
    assert got[0].on in ("max share", "share_a", "share_b")
    assert got[0].cutoff == (HIGH_SHARE if got[0].on == "max share" else LOW_SHARE)
    assert not got[1].uncertain and got[1].on == "share_b" and got[1].cutoff == HIGH_SHARE
    assert got[1].lo > 0.9  # its share at b (0.95 ± noise/√N) is far above 0.7
    # feature 2: its class rests on the effect floor, and its effect share 0.03 / 2 is 50% above it
    assert classes[2] == "b-specific" and got[2].on == "effect share" and not got[2].uncertain
    assert got[2].lo == pytest.approx(0.015, abs=0.002) and got[2].lo > 0.01


def test_an_effect_at_the_floor_is_uncertain_and_the_same_seed_gives_the_same_intervals():
    x, joint = _planted(seed=1)
    x[1, :, 2] = np.where(np.arange(x.shape[1]) % 2 == 0, 0.01, 0.03)  # effect share (0.02 / 2) = the floor
    classes = classify_effects(torch.as_tensor(x.mean(1).T), REVS, 0.01 * 2)
    res = resample_effects(x, resamples=400, seed=3, joint=joint)
    got = class_intervals(res, classes, REVS, ci=0.95, effect_floor=0.01)
    assert got[2].on == "effect share" and got[2].uncertain and got[2].lo < 0.01 < got[2].hi
    again = class_intervals(resample_effects(x, resamples=400, seed=3, joint=joint), classes, REVS, 0.95, 0.01)
    assert again == got


def test_class_intervals_need_the_joint_effect():
    x, _ = _planted()
    with pytest.raises(ValueError, match="joint"):
        class_intervals(resample_effects(x, resamples=10), ["b-specific"] * 3, REVS, 0.95, 0.01)


# -- the three estimators against closed forms ------------------------------------------------

def _hand_built(seed: int = 0):
    """One pair, T = 3 positions (the first not attributed), F = 4 features, d = 5 (float64)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(4, 5, generator=g, dtype=torch.float64)
    f = torch.rand(1, 3, 4, generator=g, dtype=torch.float64) + 0.1
    x = f @ W + 0.05 * torch.randn(1, 3, 5, generator=g, dtype=torch.float64)
    mask = torch.tensor([[False, True, True]])
    v = torch.randn(5, generator=g, dtype=torch.float64)
    return x, f, W, mask, v


def test_the_three_methods_equal_the_closed_form_on_a_linear_metric():
    x, f, W, mask, v = _hand_built()
    metric = lambda site, rows=None: 2.0 * (site @ v).sum(1) + 0.3
    # removing feature i at the attributed positions moves m by 2 Σ_t (0 − f_ti) W_i · v, whatever the method
    closed = (2.0 * (-f * mask.unsqueeze(-1)).sum(1) * (W @ v))  # [1, F]
    for method in ("ig", "atp", "exact"):
        got = batch_effects(metric, x, f, W, mask, method=method, steps=3).features
        torch.testing.assert_close(got, closed, rtol=1e-10, atol=1e-12)


def test_each_method_equals_its_closed_form_on_a_quadratic_metric():
    """m = (Σ_t site_t · v)²: s = Σ_t x_t · v, a_i = Σ_t δ_ti W_i · v the move of s when feature i alone
    goes to 0 (δ = −f at attributed positions), A = Σ_i a_i.

    exact_i = (s + a_i)² − s²; AtP_i = 2 s a_i (first order); IG_i = a_i ∫ 2 (s + α A) dα = a_i (2 s + A),
    the share of the joint effect (s + A)² − s² (the midpoint rule is exact: the integrand is linear in α).
    """
    x, f, W, mask, v = _hand_built(seed=1)
    metric = lambda site, rows=None: (site @ v).sum(1) ** 2
    s = (x @ v).sum(1)  # [1]
    a = ((-f * mask.unsqueeze(-1)).sum(1)) * (W @ v)  # [1, F]
    A = a.sum(1, keepdim=True)
    want = {"exact": (s[:, None] + a) ** 2 - s[:, None] ** 2, "atp": 2 * s[:, None] * a, "ig": a * (2 * s[:, None] + A)}
    for method, closed in want.items():
        res = batch_effects(metric, x, f, W, mask, method=method, steps=2, alongside=("ig", "atp"))
        torch.testing.assert_close(res.features, closed, rtol=1e-10, atol=1e-12)
        for other, values in res.alongside.items():  # the estimators alongside are the same numbers
            torch.testing.assert_close(values, want[other], rtol=1e-10, atol=1e-12)
        assert method not in res.alongside
    # IG's effects are shares of the joint effect: they sum to it; the single-feature ones do not
    joint = (s + A[:, 0]) ** 2 - s ** 2
    torch.testing.assert_close(want["ig"].sum(1), joint)
    assert (want["exact"].sum(1) - joint).abs().item() > 1e-3
