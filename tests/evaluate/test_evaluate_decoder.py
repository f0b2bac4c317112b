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


def test_trajectories_on_hand_made_norms():
    norms = torch.tensor(
        [
            [1.0, 1.0, 0.9, 0.8, 0.7],  # persistent
            [1.0, 0.4, 0.1, 0.0, 0.0],  # fading
            [0.0, 0.1, 0.6, 1.0, 0.9],  # emerging at 2, peak 3
            [0.0, 0.2, 1.0, 0.3, 0.0],  # transient: on 2, off 2
            [0.0, 0.0, 0.0, 0.0, 0.0],  # empty
            [0.0, 0.5, 0.1, 0.5, 1.0],  # reaches exactly half at 1, then a gap at 2: intermittent
            [0.0, 0.5, 0.6, 0.5, 1.0],  # reaches exactly half at 1, present on: emerging
            [1.0, 0.2, 0.2, 0.2, 0.9],  # present at both ends only: intermittent (not persistent)
        ]
    )
    t = trajectories(norms, fraction=0.5)
    assert t.onset.tolist() == [0, 0, 2, 2, -1, 1, 1, 0]
    assert t.peak.tolist() == [0, 0, 3, 2, -1, 4, 4, 0]
    assert t.offset.tolist() == [4, 0, 4, 2, -1, 4, 4, 4]
    assert t.labels == ["persistent", "fading", "emerging", "transient", "empty", "intermittent", "emerging",
                        "intermittent"]
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
    reading = read_features(model, torch.tensor([0.5, 0.0, 0.25], dtype=torch.float64), presence=0.5, absent=0.1,
                            high=0.7, low=0.3)
    scaling = read_scaling(ScalingStats(model.W_dec, model.b_dec), reading.norms, reading.revisions, presence=0.5,
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
    assert [r["trajectory"] for r in rows] == ["fading", "emerging", "persistent"]
    # feature 1: norm 1 of peak 3 = 0.33 at A, between 0.1 and 0.5
    assert [r["presence"] for r in rows] == [["present", "absent"], ["weak", "present"], ["present", "present"]]
    assert all(r["beta"] is None and r["scaling_flag"] is None and r["beta_tokens"] == 0 for r in rows)


def test_decoder_summary_of_a_hand_built_crosscoder():
    from crosstime.evaluate.decoder import decoder_summary, read_features

    reading = read_features(_hand_crosscoder(), torch.tensor([0.5, 0.0, 0.25], dtype=torch.float64), presence=0.5,
                            absent=0.1, high=0.7, low=0.3)
    out = decoder_summary(reading, [0, 1000], None, high=0.7, low=0.3, turn_bound=0.5)
    assert out.reldec_mean == pytest.approx([(1 + 0.25 + 0.5) / 3, (0 + 0.75 + 0.5) / 3])
    assert out.reldec_mean_live == pytest.approx([0.75, 0.25])  # features 0 and 2 fired
    assert out.classes == {"A-specific": 1, "B-specific": 1, "all shared": 1}
    assert out.classes_live == {"A-specific": 1, "B-specific": 0, "all shared": 1}
    assert out.emergence.counts == [2, 1] and out.emergence.counts_live == [2, 0]
    assert out.emergence.tokens_seen == [0, 1000]
    # live features only: feature 0 is absent at B, so the rotation A -> B sees feature 2 alone
    assert out.rotation.intervals == ["A->B"] and out.rotation.n_features == [1]
    assert out.rotation.median_angle_deg == pytest.approx([180.0], abs=1e-3)
    assert out.rotation.turns == [0]  # cosine -1 < 0.5: a turn
    # live features 0 and 2: present / absent at A: 2 / 0, at B: 1 / 1 (feature 0 is zero there)
    assert (out.presence.present, out.presence.weak, out.presence.absent) == ([2, 1], [0, 0], [0, 1])
    assert out.trajectory_labels == {"fading": 1, "emerging": 1, "persistent": 1}
    assert out.dimensionality.pcs_90 is None  # no spectrum passed
    cosine = out.mean_cosine_live  # [M, M], mean over the live features; a zero vector has cosine 0
    assert cosine[0] == pytest.approx([1.0, -0.5], abs=1e-6) and cosine[1] == pytest.approx([-0.5, 0.5], abs=1e-6)
    assert out.reldec_histogram_live.counts[0] == 1 and out.reldec_histogram_live.counts[10] == 1
    assert sum(out.reldec_histogram_live.counts) == 2


def test_read_features_refuses_a_folded_crosscoder():
    from crosstime.evaluate.decoder import read_features

    with pytest.raises(ValueError, match="normalised space"):
        read_features(_hand_crosscoder().folded(), torch.zeros(3), presence=0.5, absent=0.1, high=0.7, low=0.3)


# -- presence relative to the feature's own peak, at M = 7 ----------------------------------------

REVS7 = [f"step{s}" for s in (0, 16, 64, 128, 256, 512, 1000)]


def _crosscoder_with_norms(norms: list[list[float]]):
    """A crosscoder over 7 checkpoints whose feature i has decoder norm ``norms[i][m]`` (direction e_i)."""
    from crosstime.crosscoder import CrosscoderConfig, build

    F, d = len(norms), 8
    model = build(CrosscoderConfig(n_checkpoints=7, d_model=d, n_features=F, revisions=REVS7, scales=[1.0] * 7))
    with torch.no_grad():
        W = torch.zeros(F, 7, d)
        for i, row in enumerate(norms):
            W[i, :, i] = torch.tensor(row)
        model.W_dec.copy_(W)
    return model


def test_presence_classes_at_seven_checkpoints():
    from crosstime.evaluate.decoder import LEVEL_NAMES, feature_rows, read_features
    from crosstime.evaluate.scaling import ScalingStats, read_scaling

    norms = [
        [0.0, 0.05, 1.0, 0.9, 0.8, 0.7, 0.05],  # present on 2..5 only (an interior span): transient
        [0.0, 0.05, 1.0, 0.9, 0.8, 0.7, 0.6],  # present from 2 through the last: emerging
        [1.0, 0.9, 0.8, 0.7, 0.6, 0.55, 0.5],  # present everywhere (exactly half at the last): persistent
        [1.0, 0.8, 0.49, 0.2, 0.05, 0.0, 0.0],  # 0.49 of its peak at 2: weak, not present: fading
        [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2],  # flat: present everywhere, whatever its size
        [0.9, 0.3, 0.3, 1.0, 0.3, 0.3, 0.8],  # three separate spans: intermittent
    ]
    model = _crosscoder_with_norms(norms)
    reading = read_features(model, torch.ones(len(norms)), presence=0.5, absent=0.1, high=0.7, low=0.3)
    scaling = read_scaling(ScalingStats(model.W_dec, model.b_dec), reading.norms, reading.revisions, presence=0.5,
                           margin=0.1, min_tokens=1)
    rows = feature_rows(reading, scaling)
    assert [r["trajectory"] for r in rows] == ["transient", "emerging", "persistent", "fading", "persistent",
                                               "intermittent"]
    levels = {"present": "P", "weak": "w", "absent": "."}
    assert ["".join(levels[v] for v in r["presence"]) for r in rows] == [
        "..PPPP.", "..PPPPP", "PPPPPPP", "PPww...", "PPPPPPP", "PwwPwwP"]
    assert rows[3]["presence"][2] == LEVEL_NAMES[1] == "weak"  # the near miss at 0.49 × peak
    # share classes are the first paper's M <= 3 view: not written at M = 7
    assert reading.labels is None and all(r["reldec_class"] is None for r in rows)
    assert rows[4]["reldec"] == pytest.approx([1 / 7] * 7)  # a persistent feature's shares: 1/7 each, kept as numbers


def test_planted_feature_present_at_two_through_six():
    """The brief's case: present at checkpoints 2..6 of 7 (absent before) is emerging; a near miss at 0.49 × peak at
    checkpoint 1 stays weak and does not move the onset."""
    from crosstime.evaluate.decoder import presence_levels
    from crosstime.shares import trajectories as traj

    norms = torch.tensor([[0.0, 0.49, 1.0, 0.9, 0.8, 0.6, 0.5]])
    assert presence_levels(norms, 0.5, 0.1).tolist() == [[0, 1, 2, 2, 2, 2, 2]]
    t = traj(norms, fraction=0.5)
    assert t.labels == ["emerging"] and t.onset.tolist() == [2] and t.offset.tolist() == [6]
    with pytest.raises(ValueError, match="fractions"):
        presence_levels(norms, 0.1, 0.5)
