"""Latent scaling (crosstime.evaluate.scaling): the streamed β against a direct least-squares fit, and
the shrinkage flag (and its null) on planted data with a decoder shrunk at one checkpoint."""

from __future__ import annotations

import math

import pytest
import torch

from crosstime.crosscoder import CrosscoderConfig, build
from crosstime.evaluate.scaling import ScalingStats, positive_shares, read_scaling


def _lstsq_scale(design: torch.Tensor, target: torch.Tensor) -> float:
    """argmin_β ‖β · design − target‖² by torch.linalg.lstsq (design, target: any shape, flattened)."""
    return float(torch.linalg.lstsq(design.reshape(-1, 1), target.reshape(-1, 1)).solution)


def test_streamed_beta_matches_a_full_batch_least_squares_fit():
    g = torch.Generator().manual_seed(0)
    N, F, M, d = 300, 7, 3, 5
    W_dec = torch.randn(F, M, d, generator=g) * torch.rand(F, M, 1, generator=g)
    W_dec[4] = 0.0  # no direction: no fit
    b_dec = torch.randn(M, d, generator=g)
    x = torch.randn(N, M, d, generator=g) + 0.5
    x_hat = x + 0.3 * torch.randn(N, M, d, generator=g)
    f = torch.relu(torch.randn(N, F, generator=g) - 0.5)
    f[:, 5] = 0.0  # never fires: no fit
    stats = ScalingStats(W_dec, b_dec)
    for lo, hi in ((0, 128), (128, 228), (228, 300)):  # three batches of different sizes
        stats.update(x[lo:hi], x_hat[lo:hi], f[lo:hi])
    beta, beta_error = stats.result()
    assert stats.n == N and stats.fired.tolist() == (f > 0).sum(0).tolist()
    x64, e64, f64, W64 = x.double(), (x - x_hat).double(), f.double(), W_dec.double()
    for i in range(F):
        if i in (4, 5):
            assert torch.isnan(beta[i]).all() and torch.isnan(beta_error[i]).all()
            continue
        peak = int(W64[i].norm(dim=-1).argmax())
        u = W64[i, peak] / W64[i, peak].norm()
        design = f64[:, i, None] * u  # [N, d]: the feature's direction scaled by its activation
        for m in range(M):
            want = _lstsq_scale(design, x64[:, m] - b_dec[m].double())
            want_error = _lstsq_scale(design, e64[:, m] + f64[:, i, None] * W64[i, m])
            assert float(beta[i, m]) == pytest.approx(want, rel=1e-5, abs=1e-6)
            assert float(beta_error[i, m]) == pytest.approx(want_error, rel=1e-5, abs=1e-6)


def test_positive_shares_count_negative_beta_as_absent():
    beta = torch.tensor([[1.0, 3.0], [-1.0, 2.0], [-1.0, -2.0], [math.nan, math.nan]], dtype=torch.float64)
    shares = positive_shares(beta)
    assert shares[:3].tolist() == [[0.25, 0.75], [0.0, 1.0], [0.0, 0.0]]
    assert torch.isnan(shares[3]).all()


# -- planted data -------------------------------------------------------------------------------

REVS = ["A", "B"]
D = 16
SHRUNK, EXCLUSIVE, SHARED, EARLY, SILENT = range(5)
G_SHRUNK = 0.6  # the shrunk feature's magnitude in checkpoint A's activations (1 in B)


def planted_crosscoder(n: int = 4000, seed: int = 0, shrunk_in_a: float = G_SHRUNK, decoder_at_a: float = 0.0):
    """Activations of two checkpoints built from orthonormal concept directions v_k, and a ReLU
    crosscoder (hand-set, as a trained one with the L1 penalty could end) that reads them.

    - SHRUNK: present in both checkpoints (``shrunk_in_a`` · a · v in A, a · v in B), but its decoder at A
      is ``decoder_at_a`` (default zero: complete shrinkage; absent by its decoder).
    - EXCLUSIVE: present in B only, decoder in B only (truly B-specific).
    - SHARED: present in both with equal magnitude, decoder in both.
    - EARLY: present in A only, decoder in A only.
    - SILENT: never fires.
    """
    g = torch.Generator().manual_seed(seed)
    V = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))[0].T.float()[:5]  # [5, d] orthonormal
    a = (torch.rand(n, 5, generator=g) < 0.2) * (0.5 + torch.rand(n, 5, generator=g))  # [n, 5] sparse amplitudes
    a[:, SILENT] = 0
    presence = torch.tensor([[shrunk_in_a, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])  # [5, M]
    x = torch.einsum("nk,km,kd->nmd", a, presence, V) + 0.05 * torch.randn(n, 2, D, generator=g)
    model = build(CrosscoderConfig(variant="relu", n_checkpoints=2, d_model=D, n_features=5, revisions=REVS))
    read_from = [1, 1, 0, 0, 1]  # the checkpoint each feature's encoder reads
    decoded = torch.tensor([[decoder_at_a, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    with torch.no_grad():
        model.W_enc.zero_()
        for k in range(5):
            model.W_enc[read_from[k], :, k] = V[k]
        model.W_dec.copy_(torch.einsum("km,kd->kmd", decoded, V))
        model.b_enc.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, -1e3]))  # f = ⟨x, v⟩: no activation shrinkage
        model.b_dec.zero_()
    return model, x


def _stream(model, x: torch.Tensor, batch: int = 1000) -> ScalingStats:
    stats = ScalingStats(model.W_dec, model.b_dec)
    with torch.no_grad():
        for lo in range(0, len(x), batch):
            f = model.encode(x[lo : lo + batch])
            stats.update(x[lo : lo + batch], model.decode(f), f)
    return stats


def _read(model, stats: ScalingStats, margin: float = 0.1, min_tokens: int = 20):
    return read_scaling(stats, model.decoder_norms().detach(), REVS, presence=0.5, margin=margin,
                        min_tokens=min_tokens)


def _peak_cells(reading, model) -> torch.Tensor:
    """The flag at every feature's own peak checkpoint ``[F]``."""
    peak = model.decoder_norms().detach().argmax(1)
    return reading.shrinkage[torch.arange(len(peak)), peak]


def test_a_shrunk_present_feature_is_flagged_and_an_exclusive_one_is_not():
    model, x = planted_crosscoder()
    stats = _stream(model, x)
    reading = _read(model, stats)
    # β_error finds the shrunk feature in A at its planted magnitude although its decoder there is 0
    assert float(model.decoder_norms().detach()[SHRUNK, 0]) == 0.0
    assert float(reading.beta_error[SHRUNK, 0]) == pytest.approx(G_SHRUNK, abs=0.05)
    assert float(reading.beta_error[SHRUNK, 1]) == pytest.approx(1.0, abs=0.05)
    assert float(reading.beta[SHRUNK, 0]) == pytest.approx(G_SHRUNK, abs=0.05)
    # ... and in no checkpoint where it is absent
    assert abs(float(reading.beta_error[EXCLUSIVE, 0])) < 0.05 and abs(float(reading.beta[EXCLUSIVE, 0])) < 0.05
    assert abs(float(reading.beta_error[EARLY, 1])) < 0.05
    cells = [reading.feature_cells(i) for i in range(5)]
    assert [c["scaling_flag"] for c in cells] == ["shrinkage", "none", "none", "none", None]
    assert [c["shrinkage_at"] for c in cells] == ["A", None, None, None, None]
    assert not bool(_peak_cells(reading, model).any())  # never at a feature's own peak
    # candidates: judged cells below half the peak norm (SHRUNK at A, EXCLUSIVE at A, EARLY at B)
    assert reading.candidate.nonzero().tolist() == [[SHRUNK, 0], [EXCLUSIVE, 0], [EARLY, 1]]
    assert cells[SHRUNK]["beta_error_share"] == pytest.approx([G_SHRUNK / (1 + G_SHRUNK), 1 / (1 + G_SHRUNK)],
                                                              abs=0.03)
    assert cells[SILENT]["beta"] is None and cells[SILENT]["beta_tokens"] == 0  # never fired: empty cells
    assert cells[SHRUNK]["beta_tokens"] == int((model.encode(x)[:, SHRUNK] > 0).sum())
    summary = reading.summary()
    assert summary.shrinkage == summary.shrinkage_cells == 1 and summary.shrinkage_at == {"A": 1, "B": 0}
    assert summary.judged == 4 and summary.candidate_cells == 3


def test_the_null_of_random_directions_flags_nothing_and_the_effect_is_large():
    model, x = planted_crosscoder()
    reading = _read(model, _stream(model, x))
    null = reading.null
    assert null.draws == 4 and null.flagged_cells_mean == 0.0
    # real: the error carries G_SHRUNK at SHRUNK's A and nothing at the other two candidates
    assert null.carried_mean_real == pytest.approx(G_SHRUNK / 3, abs=0.02)
    assert abs(null.carried_mean) < 0.1 and null.effect_size > 1.0
    assert null.effect_size == pytest.approx((null.carried_mean_real - null.carried_mean) / null.carried_sd)


@pytest.mark.parametrize("in_a, decoder_at_a", [
    (0.49, 0.49),  # the decoder is right and just under half its peak: weak, and the error adds nothing
    (0.55, 0.49),  # β_error 0.55 passes half the peak, but exceeds the decoder norm by 0.06 < margin 0.1
])
def test_a_near_miss_is_not_flagged(in_a, decoder_at_a):
    model, x = planted_crosscoder(shrunk_in_a=in_a, decoder_at_a=decoder_at_a)
    reading = _read(model, _stream(model, x))
    assert bool(reading.candidate[SHRUNK, 0])  # weak at A by its decoder ...
    assert float(reading.beta_error[SHRUNK, 0]) == pytest.approx(in_a, abs=0.03)
    assert not bool(reading.shrinkage.any())  # ... but not flagged


def test_a_decoder_shrunk_at_its_own_peak_is_not_flagged():
    """Decoder norms 0.2 at A and 0.3 at B while both checkpoints carry the concept at 1: β_error is about 1
    at both, far above the norms, but A is at 67% of the peak (present) and B is the peak: no flag."""
    model, x = planted_crosscoder(shrunk_in_a=1.0, decoder_at_a=0.2)
    with torch.no_grad():
        model.W_dec[SHRUNK, 1] *= 0.3
    reading = _read(model, _stream(model, x))
    assert reading.beta_error[SHRUNK].tolist() == pytest.approx([1.0, 1.0], abs=0.05)
    assert not bool(reading.candidate[SHRUNK].any()) and not bool(reading.shrinkage.any())


def test_the_flag_needs_the_margin_and_enough_firing_rows():
    model, x = planted_crosscoder()
    stats = _stream(model, x)
    strict = _read(model, stats, margin=G_SHRUNK + 0.05)
    assert not bool(strict.shrinkage_features.any())
    few = int(stats.fired[SHRUNK])
    unjudged = _read(model, stats, min_tokens=few + 1)
    assert unjudged.feature_cells(SHRUNK)["scaling_flag"] is None
    assert unjudged.feature_cells(SHRUNK)["beta_error"] is not None  # still measured, not judged


def test_decoupling_shows_in_beta_only():
    """A concept split into a shared latent and a B-only latent that fire together: the shared one
    reconstructs the direction in A, so the error has none (no shrinkage) but the activation does."""
    model, x = planted_crosscoder()
    with torch.no_grad():  # SHARED's twin: reads SHARED's direction from A, decodes it in B only
        model.W_enc[:, :, EXCLUSIVE] = 0
        model.W_enc[0, :, EXCLUSIVE] = model.W_dec[SHARED, 0]
        model.W_dec[EXCLUSIVE] = 0
        model.W_dec[EXCLUSIVE, 1] = model.W_dec[SHARED, 1]
        model.W_dec[SHARED, 1] = 0  # the pair together reconstructs SHARED in both checkpoints
    reading = _read(model, _stream(model, x))
    assert float(reading.beta[EXCLUSIVE, 0]) == pytest.approx(1.0, abs=0.05)  # A's activation carries it
    assert abs(float(reading.beta_error[EXCLUSIVE, 0])) < 0.05  # the shared latent reconstructs it there
    cells = reading.feature_cells(EXCLUSIVE)
    assert cells["scaling_flag"] == "decoupling" and cells["decoupling_at"] == "A" and cells["shrinkage_at"] is None
    assert reading.summary().decoupling >= 1


def test_a_trained_l1_crosscoder_shrinks_a_weak_shared_concept_and_beta_error_finds_it():
    """A ReLU crosscoder trained with a strong L1 decoder-norm penalty on planted concepts: three
    present in both checkpoints but 0.3 times as strong in A, three in B only. The penalty shrinks
    the weak concepts' decoders at A to (near) zero (complete shrinkage: RelDec calls them B-specific);
    β_error at A recovers the planted ratio 0.3 for them and stays at 0 for the B-only ones."""
    from crosstime.crosscoder import TrainSettings, fit

    g = torch.Generator().manual_seed(0)
    n, K, ratio = 8192, 12, 0.3
    V = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))[0].T.float()[:K]
    presence = torch.ones(K, 2)
    presence[0:3, 0] = ratio  # weak in A
    presence[3:6, 0] = 0.0  # B only
    a = (torch.rand(n, K, generator=g) < 0.08) * (0.5 + torch.rand(n, K, generator=g))
    x = 4 * torch.einsum("nk,km,kd->nmd", a, presence, V) + 0.02 * torch.randn(n, 2, D, generator=g)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is faster than two that contend
    try:
        model = fit(x[:7168], TrainSettings(variant="relu", n_features=24, steps=800, batch_size=256, lr=3e-3,
                                            sparsity_coeff=3.0, seed=0, val_every=0, progress=False))
    finally:
        torch.set_num_threads(threads)
    model.eval()
    stats = _stream(model, x[7168:])
    W = model.W_dec.detach()
    match = (W[:, 1] / W[:, 1].norm(dim=-1, keepdim=True)) @ V[:6].T  # [F, 6] cosine with each concept in B
    best = match.argmax(0)
    assert (match.max(0).values > 0.95).all()
    weak, only_b = best[:3], best[3:6]
    norms = model.decoder_norms().detach()
    assert (norms[weak, 0] < 0.01 * norms[weak, 1]).all()  # complete shrinkage: the decoder at A is gone
    # the planted ratio 0.3 is weak by the default presence (0.5): flagged at presence 0.2 (and margin 0.1)
    reading = read_scaling(stats, norms, REVS, presence=0.2, margin=0.1, min_tokens=20)
    nu = reading.beta_error[:, 0] / reading.beta_error[:, 1]  # Minder et al.'s ratio ν
    assert nu[weak].tolist() == pytest.approx([ratio] * 3, abs=0.05)
    assert nu[only_b].abs().max() < 0.02
    assert [reading.feature_cells(int(i))["shrinkage_at"] for i in best[:6]] == ["A"] * 3 + [None] * 3
