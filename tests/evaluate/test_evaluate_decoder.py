"""Decoder-space analyses: shares, classes, cosines, trajectories (crosstime.shares), and the evaluate
stage's readings of a crosscoder's decoder (crosstime.evaluate.decoder) — against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from crosstime.shares import (
    class_order,
    classify_shares,
    consecutive_cosines,
    decoder_cosines,
    decoder_norms,
    emergence_counts,
    pairwise_shares,
    relative_shares,
    rotation_summary,
    trajectories,
)


def test_decoder_norms_match_a_python_loop():
    torch.manual_seed(0)
    W = torch.randn(5, 3, 4)
    norms = decoder_norms(W)
    for i in range(5):
        for m in range(3):
            assert norms[i, m].item() == pytest.approx(math.sqrt(sum(float(v) ** 2 for v in W[i, m])), rel=1e-6)


def test_relative_shares_by_hand_and_zero_rows():
    values = torch.tensor([[1.0, 3.0], [0.0, 0.0], [2.0, 0.0]])
    assert relative_shares(values).tolist() == [[0.25, 0.75], [0.5, 0.5], [1.0, 0.0]]
    three = relative_shares(torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 2.0]]))
    assert three[0].tolist() == pytest.approx([1 / 3] * 3)  # not the reference's 0.5 (notes B10)
    assert three[1].tolist() == pytest.approx([0.25, 0.25, 0.5])


def test_relative_shares_use_magnitudes_and_sum_to_one_for_any_m():
    torch.manual_seed(1)
    values = torch.randn(50, 13)
    values[::7] = 0.0
    shares = relative_shares(values)
    assert not torch.isnan(shares).any()
    assert torch.allclose(shares.sum(1), torch.ones(50, dtype=shares.dtype))
    assert torch.allclose(shares, relative_shares(values.abs()))  # signed IEs: RelIE uses |IE|
    assert shares.shape == (50, 13)


def test_pairwise_shares_by_hand_including_zero_pairs():
    values = torch.tensor([[1.0, 3.0, 0.0]])
    P = pairwise_shares(values)[0]
    # P[a, b] = v_b / (v_a + v_b)
    assert P[0, 1].item() == pytest.approx(0.75)
    assert P[1, 0].item() == pytest.approx(0.25)
    assert P[0, 2].item() == pytest.approx(0.0)
    assert P[1, 2].item() == pytest.approx(0.0)
    assert torch.allclose(torch.diagonal(P), torch.full((3,), 0.5, dtype=P.dtype))
    zero_pair = pairwise_shares(torch.tensor([[0.0, 0.0, 5.0]]))[0]
    assert zero_pair[0, 1].item() == 0.5  # reference: NaN (notes B10)
    assert zero_pair[0, 2].item() == 1.0
    assert not torch.isnan(pairwise_shares(torch.zeros(4, 3))).any()


def test_pairwise_share_for_two_checkpoints_is_reldec():
    values = torch.rand(20, 2)
    assert torch.allclose(pairwise_shares(values)[:, 0, 1], relative_shares(values)[:, 1])


def test_classes_for_two_checkpoints_follow_the_paper_thresholds():
    shares = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5], [0.31, 0.69], [0.7, 0.3]])
    assert classify_shares(shares, ["A", "B"]) == ["B-specific", "A-specific", "all shared", "all shared", "all shared"]


def test_classes_for_three_checkpoints_by_hand():
    revs = ["A", "B", "C"]
    shares = torch.tensor(
        [
            [0.8, 0.1, 0.1],  # A dominant
            [0.1, 0.15, 0.75],  # C dominant
            [0.34, 0.33, 0.33],  # all shared
            [0.45, 0.45, 0.10],  # A+B shared
            [0.40, 0.20, 0.40],  # A+C shared
            [0.65, 0.25, 0.10],  # only A reaches 0.3 but not 0.7: other
        ]
    )
    assert classify_shares(shares, revs) == ["A-dominant", "C-dominant", "all shared", "A+B shared", "A+C shared", "other"]


def test_classes_for_many_checkpoints_group_the_present_ones():
    revs = [f"s{m}" for m in range(5)]
    shares = torch.tensor(
        [
            [0.0, 0.05, 0.05, 0.1, 0.8],
            [0.0, 0.35, 0.0, 0.3, 0.35],
            [0.2, 0.2, 0.2, 0.2, 0.2],
        ]
    )
    assert classify_shares(shares, revs) == ["s4-dominant", "s1+s3+s4 shared", "other"]


def test_class_thresholds_are_settable_and_checked():
    shares = torch.tensor([[0.4, 0.6]])
    assert classify_shares(shares, ["A", "B"], high=0.55, low=0.45) == ["B-specific"]
    with pytest.raises(ValueError, match="revisions"):
        classify_shares(shares, ["A"])
    with pytest.raises(ValueError, match="low < high"):
        classify_shares(shares, ["A", "B"], high=0.2, low=0.3)


def test_class_order_is_stable():
    labels = ["other", "B+C shared", "C-dominant", "all shared", "A+B shared", "A-dominant"]
    assert class_order(labels, ["A", "B", "C"]) == [
        "A-dominant", "C-dominant", "all shared", "A+B shared", "B+C shared", "other"
    ]


def test_decoder_cosines_against_direct_computation_and_zero_vectors():
    torch.manual_seed(2)
    W = torch.randn(4, 3, 6)
    W[1, 2] = 0.0
    cos = decoder_cosines(W)
    for i in range(4):
        for a in range(3):
            for b in range(3):
                va, vb = W[i, a], W[i, b]
                if va.norm() == 0 or vb.norm() == 0:
                    expected = 0.0
                else:
                    expected = float(va @ vb / (va.norm() * vb.norm()))
                assert cos[i, a, b].item() == pytest.approx(expected, abs=1e-6)
    consecutive = consecutive_cosines(W)
    assert consecutive.shape == (4, 2)
    assert torch.allclose(consecutive[:, 0], cos[:, 0, 1]) and torch.allclose(consecutive[:, 1], cos[:, 1, 2])


def test_rotation_summary_counts_only_features_present_at_both_ends():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    W = torch.stack(
        [
            torch.stack([e1, e1, e2]),  # same direction, then a 90° turn
            torch.stack([e1, e1 * 1e-3, e2]),  # absent in the middle checkpoint
        ]
    )
    rot = rotation_summary(W, presence=0.5)
    assert rot["n_features"] == [1, 1]
    assert rot["median_cosine"] == pytest.approx([1.0, 0.0], abs=1e-6)
    assert rot["median_angle_deg"] == pytest.approx([0.0, 90.0], abs=1e-3)
    empty = rotation_summary(torch.zeros(2, 3, 2))
    assert empty["median_cosine"] == [None, None]


def test_trajectories_on_hand_made_norms():
    norms = torch.tensor(
        [
            [1.0, 1.0, 0.9, 0.8, 0.7],  # persistent
            [1.0, 0.4, 0.1, 0.0, 0.0],  # initial (fades)
            [0.0, 0.1, 0.6, 1.0, 0.9],  # emerging at 2, peak 3
            [0.0, 0.2, 1.0, 0.3, 0.0],  # transient: on 2, off 2
            [0.0, 0.0, 0.0, 0.0, 0.0],  # empty
            [0.0, 0.5, 0.1, 0.5, 1.0],  # reaches exactly half at 1: onset 1
        ]
    )
    t = trajectories(norms, fraction=0.5)
    assert t.onset.tolist() == [0, 0, 2, 2, -1, 1]
    assert t.peak.tolist() == [0, 0, 3, 2, -1, 4]
    assert t.offset.tolist() == [4, 0, 4, 2, -1, 4]
    assert t.labels == ["persistent", "initial", "emerging", "transient", "empty", "emerging"]
    stricter = trajectories(norms, fraction=0.95)
    assert stricter.onset[2].item() == 3 and stricter.offset[2].item() == 3
    with pytest.raises(ValueError, match="fraction"):
        trajectories(norms, fraction=0.0)


def test_emergence_counts_by_hand():
    onset = torch.tensor([0, 2, 2, -1, 4, 1])
    assert emergence_counts(onset, 5) == [1, 1, 2, 0, 1]
    with pytest.raises(ValueError, match="outside"):
        emergence_counts(torch.tensor([5]), 5)


# -- the evaluate stage's readings of a crosscoder (crosstime.evaluate.decoder) ----------------

def _hand_crosscoder():
    """M = 2, d = 2, F = 3 with decoder rows chosen so every reading is known by hand:
    feature 0 only at A (norm 5), feature 1 mostly at B (norms 1 and 3, orthogonal),
    feature 2 equal at both (norm 2, opposite directions)."""
    from crosstime.crosscoder import CrosscoderConfig, build

    model = build(CrosscoderConfig(n_checkpoints=2, d_model=2, n_features=3, revisions=["A", "B"], scales=[2.0, 0.5]))
    with torch.no_grad():
        model.W_dec.copy_(torch.tensor([[[3.0, 4.0], [0.0, 0.0]],
                                        [[1.0, 0.0], [0.0, 3.0]],
                                        [[2.0, 0.0], [-2.0, 0.0]]]))
    return model


def test_feature_rows_of_a_hand_built_crosscoder():
    from crosstime.evaluate.decoder import feature_rows, read_features
    from crosstime.evaluate.scaling import ScalingStats, read_scaling

    model = _hand_crosscoder()
    reading = read_features(model, torch.tensor([0.5, 0.0, 0.25], dtype=torch.float64), presence=0.5,
                            high=0.7, low=0.3)
    scaling = read_scaling(ScalingStats(model.W_dec, model.b_dec), reading.shares, reading.revisions, low=0.3,
                           margin=0.1, min_tokens=1)  # no rows streamed: every latent-scaling cell empty
    rows = feature_rows(reading, scaling)
    expected = [
        # feature, frequency, alive, class, onset, peak, offset, max_norm, reldec, norm, pair, cos
        (0, 0.5, True, "A-specific", 0, 0, 0, 5.0, [1.0, 0.0], [5.0, 0.0], [0.0], [0.0]),
        (1, 0.0, False, "B-specific", 1, 1, 1, 3.0, [0.25, 0.75], [1.0, 3.0], [0.75], [0.0]),
        (2, 0.25, True, "all shared", 0, 0, 1, 2.0, [0.5, 0.5], [2.0, 2.0], [0.5], [-1.0]),
    ]
    for row, (i, freq, alive, cls, onset, peak, offset, max_norm, reldec, norm, pair, cos) in zip(rows, expected):
        assert (row["feature"], row["alive"], row["reldec_class"]) == (i, alive, cls)
        assert (row["onset"], row["peak"], row["offset"]) == (onset, peak, offset)
        assert row["frequency"] == freq and row["max_norm"] == pytest.approx(max_norm)
        assert row["reldec"] == pytest.approx(reldec) and row["norm"] == pytest.approx(norm)
        assert row["reldec_pair"] == pytest.approx(pair) and row["cos"] == pytest.approx(cos, abs=1e-6)
    assert [r["trajectory"] for r in rows] == ["initial", "emerging", "persistent"]
    assert all(r["beta"] is None and r["reldec_disputed"] is None and r["beta_tokens"] == 0 for r in rows)


def test_decoder_summary_of_a_hand_built_crosscoder():
    from crosstime.evaluate.decoder import decoder_summary, read_features

    reading = read_features(_hand_crosscoder(), torch.tensor([0.5, 0.0, 0.25], dtype=torch.float64), presence=0.5,
                            high=0.7, low=0.3)
    out = decoder_summary(reading, [0, 1000], presence=0.5, high=0.7, low=0.3)
    assert out.reldec_mean == pytest.approx([(1 + 0.25 + 0.5) / 3, (0 + 0.75 + 0.5) / 3])
    assert out.reldec_mean_live == pytest.approx([0.75, 0.25])  # features 0 and 2 fired
    assert out.classes == {"A-specific": 1, "B-specific": 1, "all shared": 1}
    assert out.classes_live == {"A-specific": 1, "B-specific": 0, "all shared": 1}
    assert out.emergence.counts == [2, 1] and out.emergence.counts_live == [2, 0]
    assert out.emergence.tokens_seen == [0, 1000]
    # live features only: feature 0 is absent at B, so the rotation A -> B sees feature 2 alone
    assert out.rotation.intervals == ["A->B"] and out.rotation.n_features == [1]
    assert out.rotation.median_angle_deg == pytest.approx([180.0], abs=1e-3)
    cosine = out.mean_cosine_live  # [M, M], mean over the live features; a zero vector has cosine 0
    assert cosine[0] == pytest.approx([1.0, -0.5], abs=1e-6) and cosine[1] == pytest.approx([-0.5, 0.5], abs=1e-6)
    assert out.reldec_histogram_live.counts[0] == 1 and out.reldec_histogram_live.counts[10] == 1
    assert sum(out.reldec_histogram_live.counts) == 2


def test_read_features_refuses_a_folded_crosscoder():
    from crosstime.evaluate.decoder import read_features

    with pytest.raises(ValueError, match="normalised space"):
        read_features(_hand_crosscoder().folded(), torch.zeros(3), presence=0.5, high=0.7, low=0.3)
