"""The variant registry: a variant is one module (model + recipe); the trainer knows none by name."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from crosstime.crosscoder import (
    RELU,
    VARIANTS,
    Crosscoder,
    Forward,
    Loss,
    Recipe,
    StepContext,
    TrainSettings,
    Variant,
    fit,
    known_variants,
    load,
    register,
    training,
)

torch.set_num_threads(1)


class PlainL1Recipe(Recipe):
    """ReLU with an L1 penalty that ignores the decoder norms; counts its calls."""

    calls = {"before": 0, "after": 0}

    def before_step(self, model: Crosscoder, ctx: StepContext) -> None:
        PlainL1Recipe.calls["before"] += 1

    def loss(self, model: Crosscoder, x: torch.Tensor, fwd: Forward, ctx: StepContext) -> Loss:
        recon = self.reconstruction(x, fwd.x_hat)
        sparsity = fwd.f.sum(1).mean()
        active = (fwd.f > 0).float()
        return Loss(recon + ctx.coeff * sparsity, recon, sparsity, x.new_zeros(()), active.sum() / x.shape[0],
                    active.sum(0) > 0)

    def after_step(self, model: Crosscoder, out, ctx: StepContext) -> None:
        PlainL1Recipe.calls["after"] += 1

    def metrics(self, model: Crosscoder) -> dict[str, float]:
        return {"plain_calls": float(PlainL1Recipe.calls["after"])}


@pytest.fixture
def plain_l1():
    """The variant, registered as a user's module would (and removed again, so other tests see the built-ins)."""

    class PlainL1Crosscoder(Crosscoder):
        def activate(self, z: torch.Tensor) -> torch.Tensor:
            return torch.relu(z)

        @property
        def inference_rule(self) -> str:
            return "ReLU"

    register(Variant("plain_l1", model=PlainL1Crosscoder, recipe=PlainL1Recipe, activation=RELU))
    yield PlainL1Crosscoder
    del VARIANTS["plain_l1"]


def _planted(n=4096, M=2, d=16, K=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(K, M, d, generator=g)
    U = U / U.reshape(K, -1).norm(dim=1).view(K, 1, 1)
    act = (torch.rand(n, K, generator=g) < 0.08) * (0.5 + torch.rand(n, K, generator=g))
    return torch.einsum("nk,kmd->nmd", act, U) * 4


def test_a_variant_registered_in_a_test_file_trains_saves_and_loads(plain_l1, tmp_path):
    assert "plain_l1" in known_variants()
    x = _planted()
    settings = TrainSettings(variant="plain_l1", n_features=32, steps=300, batch_size=256, lr=3e-3,
                             sparsity_coeff=0.05, val_every=0, progress=False)
    model = fit(x[:3584], settings, out=tmp_path / "cc")
    assert isinstance(model, plain_l1)
    assert PlainL1Recipe.calls == {"before": 300, "after": 300}
    held = x[3584:]
    with torch.no_grad():
        ev = 1 - float(((model(held) - held) ** 2).sum() / ((held - held.mean(0)) ** 2).sum())
    assert ev > 0.9
    rows = [json.loads(ln) for ln in (tmp_path / "cc" / "metrics.jsonl").read_text().splitlines()]
    assert [r["plain_calls"] for r in rows[:3]] == [1.0, 2.0, 3.0]  # the recipe's own metrics reach the log
    back = load(tmp_path / "cc")
    assert type(back) is plain_l1 and torch.equal(back.W_dec, model.W_dec)


def test_the_trainer_names_no_variant():
    source = inspect.getsource(training)
    for name in known_variants():
        assert f'"{name}"' not in source and f"'{name}'" not in source, name
