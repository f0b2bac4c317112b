"""Matryoshka BatchTopK: the nested-prefix loss (against a hand computation), its settings, and on
planted data: directions recovered, and the first prefix alone reconstructing far better than as
many features of a plain BatchTopK trained the same way."""

from __future__ import annotations

import json

import pytest
import torch

from crosstime.crosscoder import CrosscoderConfig, TrainSettings, build, fit, load
from crosstime.crosscoder.matryoshka import MatryoshkaRecipe, prefix_sizes
from crosstime.crosscoder.recipe import StepContext

torch.set_num_threads(1)


def test_prefix_sizes():
    assert prefix_sizes(None, 960) == [60, 240, 960]
    assert prefix_sizes([8, 32], 64) == [8, 32, 64]  # the full dictionary is always the last prefix
    assert prefix_sizes([8, 64], 64) == [8, 64]
    assert prefix_sizes(None, 8) == [2, 8]  # F/16 = 0 is left out


def test_prefixes_that_do_not_nest_are_refused():
    with pytest.raises(ValueError, match="increasing dictionary sizes"):
        TrainSettings(variant="matryoshka", variant_settings={"matryoshka_prefixes": [16, 8]})
    with pytest.raises(ValueError, match="beyond the dictionary"):
        TrainSettings(variant="matryoshka", n_features=32, variant_settings={"k": 4, "matryoshka_prefixes": [8, 64]})


def test_the_loss_sums_each_prefix_reconstruction():
    """total = Σ_p ‖x − (b_dec + Σ_{i<p} f_i W_dec[i])‖² (mean over rows) over p = 2, 5, F = 8, from
    the dense features written out here; AuxK off."""
    torch.manual_seed(0)
    model = build(CrosscoderConfig(variant="matryoshka", n_checkpoints=2, d_model=3, n_features=8,
                                   variant_config={"k": 3}, dec_init_norm=1.0))
    with torch.no_grad():
        model.b_dec.normal_()
    settings = TrainSettings(variant="matryoshka", n_features=8,
                             variant_settings={"k": 3, "matryoshka_prefixes": [2, 5], "auxk_coeff": 0.0})
    recipe = MatryoshkaRecipe(settings)
    x = torch.randn(6, 2, 3)
    model.train()
    fwd = recipe.forward(model, x)
    ctx = StepContext(settings, 0, 10, 0.0, torch.zeros(8, dtype=torch.bool))
    terms = recipe.loss(model, x, fwd, ctx)
    f = model.encode(x).detach()  # the same batch top-k, dense
    want = 0.0
    for p in (2, 5, 8):
        x_hat = f[:, :p] @ model.W_dec[:p].reshape(p, -1).detach() + model.b_dec.reshape(1, -1).detach()
        want += float((x_hat.view(6, 2, 3) - x).pow(2).sum(dim=(1, 2)).mean())
    assert float(terms.total.detach()) == pytest.approx(want, rel=1e-5)
    full = f @ model.W_dec.reshape(8, -1).detach() + model.b_dec.reshape(1, -1).detach()
    assert float(terms.recon.detach()) == pytest.approx(float((full.view(6, 2, 3) - x).pow(2).sum(dim=(1, 2)).mean()), rel=1e-5)
    assert set(recipe.metrics(model)) >= {"recon_prefix_2", "recon_prefix_5", "recon_prefix_8", "threshold"}


def planted(n=8192, M=2, d=16, K=32, seed=0):
    """K unit directions over [M, d] whose frequencies fall as 1/(k+1) (a few common, many rare),
    about 3 active per row, magnitudes U(0.5, 1.5), scaled like the store (E‖x_m‖ = √d)."""
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(K, M, d, generator=g)
    U = U / U.reshape(K, -1).norm(dim=1).view(K, 1, 1)
    freq = 1.0 / torch.arange(1, K + 1)
    freq = (freq * 3 / freq.sum()).clamp(max=0.9)
    a = (torch.rand(n, K, generator=g) < freq) * (0.5 + torch.rand(n, K, generator=g))
    x = torch.einsum("nk,kmd->nmd", a, U)
    return x * (d**0.5 / x.norm(dim=-1).mean(0)).view(1, M, 1), U


@torch.no_grad()
def prefix_ev(model, x, features: torch.Tensor) -> float:
    """EV of the reconstruction from ``features`` alone (the others zeroed), eval mode."""
    f = model.eval().encode(x)
    keep = torch.zeros(model.n_features, dtype=torch.bool)
    keep[features] = True
    x_hat = model.decode(f * keep)
    return 1 - float(((x_hat - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def test_planted_directions_and_a_first_prefix_that_reconstructs_alone(tmp_path):
    x, U = planted()
    common = {"n_features": 64, "steps": 800, "batch_size": 256, "lr": 3e-3, "val_every": 0, "progress": False,
              "seed": 0}
    own = {"k": 3, "threshold_start_step": 200}
    mat = fit(x[:7168], TrainSettings(variant="matryoshka", variant_settings={**own, "matryoshka_prefixes": [4, 16]},
                                      **common), out=tmp_path / "m")
    plain = fit(x[:7168], TrainSettings(variant="batchtopk", variant_settings=own, **common))
    held = x[7168:]
    W = mat.W_dec.detach().reshape(64, -1)
    cos = (U.reshape(32, -1) @ (W / W.norm(dim=1, keepdim=True)).t()).max(1).values
    g = torch.Generator().manual_seed(1)
    first = prefix_ev(mat, held, torch.arange(4))
    random4 = [prefix_ev(plain, held, torch.randperm(64, generator=g)[:4]) for _ in range(20)]
    best4_plain = max(random4)
    full_m, full_p = prefix_ev(mat, held, torch.arange(64)), prefix_ev(plain, held, torch.arange(64))
    print(f"recovered {float((cos > 0.9).float().mean()):.2f}; EV of features [0:4]: matryoshka {first:.3f}, "
          f"plain batchtopk random 4 mean {sum(random4) / 20:.3f} best {best4_plain:.3f}; full {full_m:.3f} / {full_p:.3f}")
    assert float((cos > 0.9).float().mean()) >= 0.8
    assert first > best4_plain + 0.1  # the nesting, not luck: better than the best of 20 random draws
    assert full_m > 0.9 and full_p > 0.9
    rows = [json.loads(ln) for ln in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["recon_prefix_4"] > rows[-1]["recon_prefix_16"] > rows[-1]["recon_prefix_64"]
    assert type(load(tmp_path / "m")).__name__ == "MatryoshkaCrosscoder"
