"""Feature dimensionality, its activation-rank baseline and rotation (crosstime.evaluate.geometry) against hand
computations, and the evaluate stage writing them (features.csv columns, evaluation.json keys, figures)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_evaluate import run, save_crosscoder, sharp_series  # noqa: F401  (module fixtures reused: a tiny store)

from crosstime.artifacts import EVALUATION_FEATURES, Evaluation, read_model
from crosstime.evaluate.geometry import (
    SpectrumStats,
    cos_final,
    dimensionality,
    dimensionality_blocked,
    dimensionality_by_checkpoint,
    effective_rank,
    rotation,
)
from crosstime.evaluate.work import EvaluateConfig
from crosstime.stages.evaluate import evaluate
from crosstime.store import ActivationStore

S3 = math.sqrt(3) / 2


@pytest.mark.parametrize("W, expected", [
    ([[1.0, 0.0], [0.0, 1.0]], [1.0, 1.0]),  # orthogonal: a dimension each
    ([[1.0, 0.0], [-0.5, S3], [-0.5, -S3]], [2 / 3] * 3),  # 120°: Σ_j (W_i·W_j)² = 1 + 1/4 + 1/4 = 1.5
    ([[1.0, 0.0], [-1.0, 0.0]], [0.5, 0.5]),  # antipodal pair shares one dimension
    ([[2.0, 0.0], [1.0, 1.0]], [16 / 20, 4 / 8]),  # W0·W1 = 2: 16 / (16 + 4) and 4 / (4 + 4)
    ([[3.0, 0.0], [0.0, 0.0], [0.0, -0.5]], [1.0, 0.0, 1.0]),  # a zero row has dimensionality 0
])
def test_dimensionality_by_hand(W, expected):
    W = torch.tensor(W, dtype=torch.float64)
    assert dimensionality(W).tolist() == pytest.approx(expected, abs=1e-12)
    assert dimensionality_blocked(W, block=2).tolist() == pytest.approx(expected, abs=1e-12)


def test_total_dimensionality_by_hand():
    """Σ D_i / d at each checkpoint: 120° star (3 × 2/3 = 2 of d = 2) then one antipodal pair and a zero."""
    W_dec = torch.tensor([[[1.0, 0.0], [1.0, 0.0]],
                          [[-0.5, S3], [-1.0, 0.0]],
                          [[-0.5, -S3], [0.0, 0.0]]], dtype=torch.float64)
    D, total = dimensionality_by_checkpoint(W_dec, torch.ones(3, dtype=torch.bool), block=2)
    assert D.flatten().tolist() == pytest.approx([2 / 3, 0.5, 2 / 3, 0.5, 2 / 3, 0.0], abs=1e-12)
    assert total.tolist() == pytest.approx([1.0, 0.5], abs=1e-12)


@pytest.mark.parametrize("block", [1, 7, 64, 1000])
def test_blocked_equals_direct_on_random_rows(block):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(300, 16, generator=g, dtype=torch.float64) * torch.rand(300, 1, generator=g, dtype=torch.float64)
    W[5] = 0.0
    W[7] = -2 * W[3]  # a shared direction
    direct = dimensionality(W)
    assert direct[5] == 0 and (direct[torch.arange(300) != 5] > 0).all()
    torch.testing.assert_close(dimensionality_blocked(W, block=block), direct, rtol=1e-12, atol=1e-15)
    # float32 input (as the evaluate stage passes it): float32 dot products, float64 sums
    torch.testing.assert_close(dimensionality_blocked(W.float(), block=block), direct, rtol=1e-5, atol=1e-7)


def test_blocked_refuses_a_block_below_one():
    with pytest.raises(ValueError, match="block"):
        dimensionality_blocked(torch.ones(2, 2), block=0)


def test_features_not_alive_are_left_out_of_every_sum():
    """A dead copy of feature 0 would halve D_0 if it counted; it gets 0 and the live ones stay orthogonal."""
    W_dec = torch.tensor([[[1.0, 0.0], [0.0, 2.0]],
                          [[0.0, 1.0], [1.0, 0.0]],
                          [[1.0, 0.0], [0.0, 2.0]]])  # feature 2 = feature 0
    alive = torch.tensor([True, True, False])
    D, total = dimensionality_by_checkpoint(W_dec, alive, block=1)
    assert D.tolist() == [[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    assert total.tolist() == [1.0, 1.0]
    D_all, _ = dimensionality_by_checkpoint(W_dec, torch.ones(3, dtype=torch.bool))
    assert D_all[:, 0].tolist() == pytest.approx([0.5, 1.0, 0.5])  # the same matrix with all alive: shared


def test_cos_final_by_hand():
    W_dec = torch.tensor([[[1.0, 0.0], [0.0, 2.0]],  # turns by 90°: 0 then 1
                          [[1.0, 1.0], [-3.0, -3.0]],  # flips: -1 then 1
                          [[0.0, 0.0], [0.0, 1.0]],  # no decoder at the first checkpoint: no direction
                          [[1.0, 0.0], [0.0, 0.0]]])  # no final direction: NaN everywhere
    cos = cos_final(W_dec)
    assert cos[:2].flatten().tolist() == pytest.approx([0.0, 1.0, -1.0, 1.0], abs=1e-12)
    assert math.isnan(cos[2, 0]) and cos[2, 1] == pytest.approx(1.0)
    assert cos[3].isnan().all()


def _rotate(v: torch.Tensor, w: torch.Tensor, angle: float) -> torch.Tensor:
    """``v`` turned by ``angle`` towards the orthonormal ``w`` (both unit)."""
    return math.cos(angle) * v + math.sin(angle) * w


def test_rotation_quantiles_and_feature_filter_by_hand():
    """Consecutive cosines of 4 features over 3 checkpoints in a plane; a feature is counted in an interval only
    when present at both ends and alive."""
    e0, e1 = torch.eye(2)
    angles = [[0.0, 0.1, 0.3], [0.0, 0.2, 0.5], [0.0, 0.4, 0.6], [0.0, 1.0, 2.0]]
    W_dec = torch.stack([torch.stack([_rotate(e0, e1, a) for a in row]) for row in angles]).double()
    W_dec[2, 0] *= 0.4  # below half its peak at checkpoint 0: out of interval 0 and of the final cosine there
    alive = torch.tensor([True, True, True, False])
    norms = torch.linalg.vector_norm(W_dec, dim=-1)
    present = norms >= 0.5 * norms.max(1, keepdim=True).values
    out = rotation(W_dec, cos_final(W_dec), present, alive, ["a", "b", "c"], presence=0.5, bound=0.5)
    assert out.intervals == ["a->b", "b->c"] and out.n_features == [2, 3]
    first = sorted([math.cos(0.1), math.cos(0.2)])
    assert out.median_cosine[0] == pytest.approx(sum(first) / 2)
    assert out.q25_cosine[0] == pytest.approx(first[0] + 0.25 * (first[1] - first[0]))
    second = sorted([math.cos(0.2), math.cos(0.3), math.cos(0.2)])
    assert out.median_cosine[1] == pytest.approx(second[1]) and out.q75_cosine[1] == pytest.approx(
        second[1] + 0.5 * (second[2] - second[1]))
    assert out.final_n == [2, 3, 3] and out.final_median[-1] == pytest.approx(1.0)
    assert out.final_median[0] == pytest.approx((math.cos(0.3) + math.cos(0.5)) / 2)
    assert out.turns == []  # all consecutive medians far above 0.5


def _rotating(F: int, M: int, d: int, angles: list[float], seed: int = 0) -> torch.Tensor:
    """``W_dec [F, M, d]``: each feature starts at a random unit direction and turns by ``angles[m]`` (radians)
    between checkpoints m and m + 1, each time towards a fresh direction orthogonal to where it is."""
    g = torch.Generator().manual_seed(seed)
    W = torch.empty(F, M, d, dtype=torch.float64)
    for i in range(F):
        v = torch.nn.functional.normalize(torch.randn(d, generator=g, dtype=torch.float64), dim=0)
        W[i, 0] = v
        for m in range(M - 1):
            w = torch.randn(d, generator=g, dtype=torch.float64)
            w = torch.nn.functional.normalize(w - (w @ v) * v, dim=0)
            v = _rotate(v, w, angles[m])
            W[i, m + 1] = v
    return W


def test_a_sharp_turn_is_found_and_steady_rotation_is_not_called_one():
    F, M, d = 40, 7, 64
    revisions = [f"s{m}" for m in range(M)]
    everywhere, alive = torch.ones(F, M, dtype=torch.bool), torch.ones(F, dtype=torch.bool)
    # a turn: nearly still, then a 85° turn between s3 and s4, then still again
    sharp = _rotating(F, M, d, [0.05, 0.05, 0.05, math.radians(85), 0.05, 0.05])
    out = rotation(sharp, cos_final(sharp), everywhere, alive, revisions, presence=0.5)
    assert out.turns == [3] and out.median_cosine[3] == pytest.approx(math.cos(math.radians(85)), abs=1e-9)
    # steady rotation: cos 0.7 every interval (45.6°); the cosine with the final direction falls far below 0.5
    # at the first checkpoints, yet no interval turns
    steady = _rotating(F, M, d, [math.acos(0.7)] * (M - 1))
    out = rotation(steady, cos_final(steady), everywhere, alive, revisions, presence=0.5)
    assert out.median_cosine == pytest.approx([0.7] * (M - 1), abs=1e-9)
    assert out.turns == [] and out.final_median[0] < 0.5


def test_effective_rank_of_a_planted_rank_k_set_and_the_participation_ratio_by_hand():
    g = torch.Generator().manual_seed(3)
    n, d, k = 4000, 32, 5
    scales = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.8], dtype=torch.float64)  # variances 1, 1, 1, 1, 0.64
    basis = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0][:, :k]  # [d, k] orthonormal
    z = torch.randn(n, k, generator=g, dtype=torch.float64)
    z = torch.linalg.qr(z - z.mean(0))[0] * math.sqrt(n)  # centred, exactly uncorrelated, unit variance
    x = (z * scales) @ basis.T + 7.0  # [n, d] rank k about its mean (the offset is removed by centring)
    x2 = torch.stack([x, x[:, :] * 0.5], dim=1)  # [n, 2, d]: two checkpoints, the second a scaled copy
    stats = SpectrumStats(2, d)
    for start in range(0, n, 1000):
        stats.update(x2[start : start + 1000].float())
    spectrum = stats.result()
    eig = torch.linalg.eigvalsh(torch.cov(x.T, correction=0))  # the variances along the planted directions
    lam = sorted(eig.tolist(), reverse=True)[:k]
    ratio = sum(lam) ** 2 / sum(v * v for v in lam)
    assert spectrum.rows == n and spectrum.pcs_90 == [k, k]  # 90% needs all five: the top four hold 4 / 4.64 = 86%
    by_hand = 4.64**2 / (4 + 0.64**2)  # (Σλ)² / Σλ² of the planted variances = 4.882
    assert ratio == pytest.approx(by_hand, rel=1e-9)
    assert spectrum.participation_ratio == pytest.approx([by_hand, by_hand], rel=1e-5)  # float32 rows in
    assert effective_rank(torch.tensor([1.0, 0.0, 0.0])) == (1.0, 1)
    assert effective_rank(torch.tensor([1.0, 1.0, 1.0, 1.0])) == (pytest.approx(4.0), 4)
    assert effective_rank(torch.zeros(3)) == (0.0, 0)


def test_evaluate_writes_the_columns_the_keys_and_the_figures(run):  # noqa: F811
    store = ActivationStore(run / "activations")
    revs = store.revisions
    g = torch.Generator().manual_seed(7)
    F, M, d = 24, 3, 32
    W_dec = torch.randn(F, M, d, generator=g)
    W_dec[0, 1:] = 0.0  # no final direction: cos_final empty
    weights = {"W_enc": 0.2 * torch.randn(M, d, F, generator=g), "W_dec": W_dec,
               "b_enc": -0.5 * torch.rand(F, generator=g), "b_dec": torch.zeros(M, d)}
    weights["b_enc"][0] = 10.0  # always fires: feature 0 is live
    weights["b_enc"][5:8] = -1e3  # never fire
    save_crosscoder(run, weights, revs)
    result = evaluate(EvaluateConfig(run=run, progress=False, contexts=0, dead_tokens=1))
    rows = EVALUATION_FEATURES.read(run / "evaluation", revs)
    alive = torch.tensor([r["alive"] for r in rows])
    assert alive[0] and not alive[5:8].any()
    for m in range(M):  # the direct (full-Gram, float64) formula over the live features
        expected = dimensionality(W_dec[alive, m])
        got = [r["dimensionality"][m] for r in rows if r["alive"]]
        assert got == pytest.approx(expected.tolist(), rel=1e-5)
    assert all(r["dimensionality"] == [None] * M for r in rows if not r["alive"])
    assert rows[0]["cos_final"] == [None] * M
    for i in range(1, F):
        unit = torch.nn.functional.normalize(W_dec[i], dim=-1)
        assert rows[i]["cos_final"] == pytest.approx((unit @ unit[-1]).tolist(), abs=1e-5)
    saved = read_model(Evaluation, run / "evaluation.json")
    dim, rot = saved.decoder.dimensionality, saved.decoder.rotation
    assert dim.d == d and dim.live_features == int(alive.sum()) and dim.block >= 1
    live_D = np.array([r["dimensionality"] for r in rows if r["alive"]])
    assert dim.total == pytest.approx((live_D.sum(0) / d).tolist(), rel=1e-5)
    assert dim.spectrum_rows == result.reconstruction.tokens and len(dim.pcs_90) == len(dim.participation_ratio) == M
    assert all(1 <= k <= d for k in dim.pcs_90) and all(1 <= r <= d for r in dim.participation_ratio)
    present = [r["presence"] for r in rows if r["alive"]]
    assert saved.decoder.presence.present == [sum(p[m] == "present" for p in present) for m in range(M)]
    assert rot.revisions == revs and len(rot.final_median) == len(rot.final_q25) == len(rot.final_q75) == M
    assert len(rot.median_cosine) == len(rot.q25_cosine) == M - 1
    assert rot.final_median[-1] == pytest.approx(1.0)
    assert {"dimensionality.png", "rotation.png"} <= set(result.plots)
    assert (run / "evaluation" / "dimensionality.png").stat().st_size > 0
    assert (run / "evaluation" / "rotation.png").stat().st_size > 0
