"""Feature dimensionality and the direction turn (crosstime.evaluate.geometry) against hand computations,
and the evaluate stage writing them (features.csv columns, evaluation.json keys, figures)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_evaluate import run, save_crosscoder, sharp_series  # noqa: F401  (module fixtures reused: a tiny store)

from crosstime.artifacts import EVALUATION_FEATURES, Evaluation, read_model
from crosstime.evaluate.geometry import (
    cos_final,
    dimensionality,
    dimensionality_blocked,
    dimensionality_by_checkpoint,
    direction_turn,
    crossing,
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


def test_direction_turn_quantiles_and_selection_by_hand():
    nan = math.nan
    cos = torch.tensor([[0.0, 0.1, 0.9, 1.0],
                        [0.1, 0.2, 0.95, 1.0],
                        [-0.1, 0.0, 0.8, 1.0],
                        [-1.0, -1.0, -1.0, 1.0],  # not alive
                        [0.9, 0.9, 0.9, 1.0],  # decoder 0.5% of its peak at m = 0: left out there
                        [1.0, 1.0, 1.0, 1.0],  # final decoder 0.1% of its peak: no reference direction
                        [nan, nan, nan, nan]], dtype=torch.float64)
    norms = torch.ones(7, 4, dtype=torch.float64)
    norms[4, 0], norms[5, 3] = 0.005, 0.001
    alive = torch.tensor([True, True, True, False, True, True, True])
    out = direction_turn(cos, norms, alive, ["a", "b", "c", "d"])
    assert out.n == [3, 4, 4, 4]
    # m = 1: sorted [0, 0.1, 0.2, 0.9]; linear interpolation at 0.75, 1.5, 2.25
    assert out.median == pytest.approx([0.0, 0.15, 0.9, 1.0])
    assert out.q25 == pytest.approx([-0.05, 0.075, 0.875, 1.0])
    assert out.q75 == pytest.approx([0.05, 0.375, 0.9125, 1.0])
    assert out.turn_after == 1 and out.revisions == ["a", "b", "c", "d"]


def test_turn_found_on_features_that_turn_at_one_interval():
    """Five features whose pre-turn direction is orthogonal to the post-turn one, turning between checkpoints
    2 and 3 (one of them turning later, at 3 -> 4): the median jumps at interval 2 -> 3."""
    g = torch.Generator().manual_seed(1)
    pre, post = torch.eye(8)[:5], torch.eye(8)[3:]
    W_dec = torch.empty(5, 5, 8)
    for i in range(5):
        turn = 4 if i == 4 else 3
        for m in range(5):
            W_dec[i, m] = (pre[i] if m < turn else post[i]) * (1 + m) + 0.01 * torch.randn(8, generator=g)
    out = direction_turn(cos_final(W_dec), torch.linalg.vector_norm(W_dec, dim=-1), torch.ones(5, dtype=torch.bool),
                         [f"s{m}" for m in range(5)])
    assert out.median[:3] == pytest.approx([0.0] * 3, abs=0.05) and out.median[3:] == pytest.approx([1.0] * 2,
                                                                                                    abs=0.01)
    assert out.turn_after == 2


def test_crossing_skips_gaps_and_needs_an_upward_pass():
    assert crossing([0.0, 0.4, 0.6, 1.0], 0.5) == 1
    assert crossing([0.0, 0.5, 0.5, 1.0], 0.5) == 0  # reaching the level counts
    assert crossing([None, 0.2, None, 0.9, 1.0], 0.5) is None  # intervals touching None skipped
    assert crossing([0.2, None, 0.3, 0.9], 0.5) == 2
    assert crossing([1.0, 0.5, 0.0], 0.5) is None
    assert crossing([0.3], 0.5) is None


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
    dim, turn = saved.decoder.dimensionality, saved.decoder.direction_turn
    assert dim.d == d and dim.live_features == int(alive.sum()) and dim.block >= 1
    live_D = np.array([r["dimensionality"] for r in rows if r["alive"]])
    assert dim.total == pytest.approx((live_D.sum(0) / d).tolist(), rel=1e-5)
    assert turn.revisions == revs and len(turn.median) == len(turn.q25) == len(turn.q75) == M
    assert turn.n[-1] == int(alive.sum()) - 1 and turn.median[-1] == pytest.approx(1.0)  # all but feature 0
    assert {"dimensionality.png", "direction_turn.png"} <= set(result.plots)
    assert (run / "evaluation" / "dimensionality.png").stat().st_size > 0
    assert (run / "evaluation" / "direction_turn.png").stat().st_size > 0
