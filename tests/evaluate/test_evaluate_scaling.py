"""Latent scaling (crosstime.evaluate.scaling): the streamed β against a direct least-squares fit, and
the dispute of RelDec on planted data with a decoder shrunk at one checkpoint."""

from __future__ import annotations

import math

import pytest
import torch

from crosstime.crosscoder import CrosscoderConfig, build
from crosstime.evaluate.scaling import ScalingStats, positive_shares, read_scaling
from crosstime.shares import relative_shares


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


def planted_crosscoder(n: int = 4000, seed: int = 0):
    """Activations of two checkpoints built from orthonormal concept directions v_k, and a ReLU
    crosscoder (hand-set, as a trained one with the L1 penalty could end) that reads them.

    - SHRUNK: present in both checkpoints (G_SHRUNK · a · v in A, a · v in B), but its decoder at A
      is zero: complete shrinkage. RelDec calls it B-specific.
    - EXCLUSIVE: present in B only, decoder in B only (truly B-specific).
    - SHARED: present in both with equal magnitude, decoder in both.
    - EARLY: present in A only, decoder in A only.
    - SILENT: never fires.
    """
    g = torch.Generator().manual_seed(seed)
    V = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))[0].T.float()[:5]  # [5, d] orthonormal
    a = (torch.rand(n, 5, generator=g) < 0.2) * (0.5 + torch.rand(n, 5, generator=g))  # [n, 5] sparse amplitudes
    a[:, SILENT] = 0
    presence = torch.tensor([[G_SHRUNK, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])  # [5, M]
    x = torch.einsum("nk,km,kd->nmd", a, presence, V) + 0.05 * torch.randn(n, 2, D, generator=g)
    model = build(CrosscoderConfig(variant="relu", n_checkpoints=2, d_model=D, n_features=5, revisions=REVS))
    read_from = [1, 1, 0, 0, 1]  # the checkpoint each feature's encoder reads
    decoded = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
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


def test_a_shrunk_shared_feature_is_disputed_and_an_exclusive_one_is_not():
    model, x = planted_crosscoder()
    stats = _stream(model, x)
    reldec = relative_shares(model.decoder_norms().detach())
    reading = read_scaling(stats, reldec, REVS, low=0.3, margin=0.1, min_tokens=20)
    # β_error finds the shrunk feature in A at its planted magnitude although its decoder there is 0
    assert float(reldec[SHRUNK, 0]) == 0.0
    assert float(reading.beta_error[SHRUNK, 0]) == pytest.approx(G_SHRUNK, abs=0.05)
    assert float(reading.beta_error[SHRUNK, 1]) == pytest.approx(1.0, abs=0.05)
    assert float(reading.beta[SHRUNK, 0]) == pytest.approx(G_SHRUNK, abs=0.05)
    # ... and in no checkpoint where it is absent
    assert abs(float(reading.beta_error[EXCLUSIVE, 0])) < 0.05 and abs(float(reading.beta[EXCLUSIVE, 0])) < 0.05
    assert abs(float(reading.beta_error[EARLY, 1])) < 0.05
    cells = [reading.feature_cells(i) for i in range(5)]
    assert [c["reldec_disputed"] for c in cells] == [True, False, False, False, None]
    assert [c["disputed_at"] for c in cells] == ["A", None, None, None, None]
    assert cells[SHRUNK]["beta_error_share"] == pytest.approx([G_SHRUNK / (1 + G_SHRUNK), 1 / (1 + G_SHRUNK)],
                                                              abs=0.03)
    assert cells[SILENT]["beta"] is None and cells[SILENT]["beta_tokens"] == 0  # never fired: empty cells
    assert cells[SHRUNK]["beta_tokens"] == int((model.encode(x)[:, SHRUNK] > 0).sum())
    summary = reading.summary()
    assert summary.disputed == 1 and summary.disputed_at == {"A": 1, "B": 0}
    assert summary.judged == 4


def test_the_dispute_needs_the_margin_and_enough_firing_rows():
    model, x = planted_crosscoder()
    stats = _stream(model, x)
    reldec = relative_shares(model.decoder_norms().detach())
    share = G_SHRUNK / (1 + G_SHRUNK)  # β_error share of the shrunk feature at A (RelDec share 0 there)
    strict = read_scaling(stats, reldec, REVS, low=0.3, margin=share + 0.05, min_tokens=20)
    assert not bool(strict.disputed_features.any())
    high_low = read_scaling(stats, reldec, REVS, low=share + 0.05, margin=0.0, min_tokens=20)
    assert not bool(high_low.disputed[SHRUNK, 0])  # the share no longer passes the class threshold
    few = int(stats.fired[SHRUNK])
    unjudged = read_scaling(stats, reldec, REVS, low=0.3, margin=0.1, min_tokens=few + 1)
    assert unjudged.feature_cells(SHRUNK)["reldec_disputed"] is None
    assert unjudged.feature_cells(SHRUNK)["beta_error"] is not None  # still measured, not judged


def test_decoupling_shows_in_beta_only():
    """A concept split into a shared latent and a B-only latent that fire together: the shared one
    reconstructs the direction in A, so the error has none (no dispute) but the activation does."""
    model, x = planted_crosscoder()
    with torch.no_grad():  # SHARED's twin: reads SHARED's direction from A, decodes it in B only
        model.W_enc[:, :, EXCLUSIVE] = 0
        model.W_enc[0, :, EXCLUSIVE] = model.W_dec[SHARED, 0]
        model.W_dec[EXCLUSIVE] = 0
        model.W_dec[EXCLUSIVE, 1] = model.W_dec[SHARED, 1]
        model.W_dec[SHARED, 1] = 0  # the pair together reconstructs SHARED in both checkpoints
    stats = _stream(model, x)
    reldec = relative_shares(model.decoder_norms().detach())
    reading = read_scaling(stats, reldec, REVS, low=0.3, margin=0.1, min_tokens=20)
    assert float(reading.beta[EXCLUSIVE, 0]) == pytest.approx(1.0, abs=0.05)  # A's activation carries it
    assert abs(float(reading.beta_error[EXCLUSIVE, 0])) < 0.05  # the shared latent reconstructs it there
    cells = reading.feature_cells(EXCLUSIVE)
    assert cells["reldec_disputed"] is False and cells["activation_disputed_at"] == "A"
    assert reading.summary().activation_disputed_only >= 1


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
    reldec = relative_shares(model.decoder_norms().detach())
    assert (reldec[weak, 0] < 0.01).all()  # complete shrinkage: the decoder at A is gone
    reading = read_scaling(stats, reldec, REVS, low=0.2, margin=0.1, min_tokens=20)
    nu = reading.beta_error[:, 0] / reading.beta_error[:, 1]  # Minder et al.'s ratio ν
    assert nu[weak].tolist() == pytest.approx([ratio] * 3, abs=0.05)
    assert nu[only_b].abs().max() < 0.02
    assert [reading.feature_cells(int(i))["reldec_disputed"] for i in best[:6]] == [True] * 3 + [False] * 3
