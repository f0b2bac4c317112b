"""crosstime's `saelens` export against SAELens' own loader (the `interop-tests` extra: sae-lens 6.54.12).

Every variant crosstime can export to SAELens (`formats_supporting`), from a small crosscoder: each
checkpoint's folder is loaded with `SAE.load_from_disk` and its `encode`/`decode` on raw activations
are compared with crosstime's crosscoder restricted to that checkpoint (the other checkpoints' inputs
zero, as the export documents), to 1e-5 relative."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from crosstime.crosscoder import VARIANTS, CrosscoderConfig, build
from crosstime.interop.formats import ExportInfo, formats_supporting, write

sae_lens = pytest.importorskip("sae_lens", reason="the interop-tests extra is not installed "
                               "(pip install -e '.[interop-tests]')")

M, D, F = 3, 8, 24
REVS = ["step1", "step2", "step3"]
SCALES = [1.7, 0.6, 0.3]  # not powers of two, so folding them in rounds
HOOK = "blocks.2.hook_resid_post"
TOL = 1e-5  # relative: max |ours - theirs| / max |theirs|
SETTINGS = {"jumprelu": {"jumprelu_threshold_init": 0.05, "jumprelu_bandwidth": 0.01}, "batchtopk": {"k": 4},
            "matryoshka": {"k": 4}}


def rel(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    diff = float((ours.double() - theirs.double()).abs().max() / theirs.double().abs().max())
    print(f"max relative difference {diff:.2e}")  # the report's numbers (pytest -s)
    return diff


def crosscoder(variant: str):
    """A small crosscoder of ``variant`` with varied weights (and an inference threshold where it has one)."""
    model = build(CrosscoderConfig(variant=variant, n_checkpoints=M, d_model=D, n_features=F,
                                   variant_config=SETTINGS.get(variant, {}), revisions=REVS, scales=SCALES, seed=3))
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        model.W_enc.copy_(torch.randn(M, D, F, generator=g) / D**0.5)
        model.W_dec.copy_(torch.randn(F, M, D, generator=g) * torch.rand(F, M, 1, generator=g) / D**0.5)
        model.b_enc.copy_(torch.randn(F, generator=g) * 0.2 - 0.1)
        model.b_dec.copy_(torch.randn(M, D, generator=g) * 0.1)
        if variant == "jumprelu":
            model.log_threshold.copy_(math.log(0.1) + torch.randn(F, generator=g) * 0.3)
        elif variant != "relu":  # BatchTopK's rule: its inference threshold t
            model.threshold.fill_(0.05)
    return model.eval()


EXPORTABLE = sorted(v for v in VARIANTS if "saelens" in formats_supporting(v))


def test_the_exportable_variants_are_the_built_in_ones_that_hold_a_per_checkpoint_rule():
    assert EXPORTABLE == ["batchtopk", "jumprelu", "matryoshka", "relu"]


@pytest.mark.parametrize("variant", EXPORTABLE)
def test_each_checkpoint_loads_in_saelens_and_agrees(tmp_path: Path, variant: str):
    model = crosscoder(variant)
    write(model, "saelens", tmp_path, ExportInfo(hook_name=HOOK, model_name="tiny", context_len=16))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, M, D, generator=g) * 3  # raw activations
    for m, rev in enumerate(REVS):
        sae = sae_lens.SAE.load_from_disk(tmp_path / rev)
        assert sae.cfg.metadata.hook_name == HOOK
        assert sae.cfg.architecture() == ("standard" if variant == "relu" else "jumprelu")
        only_m = torch.zeros_like(x)
        only_m[:, m] = x[:, m] * SCALES[m]  # crosstime's normalised input, the other checkpoints zero
        with torch.no_grad():
            f_theirs = sae.encode(x[:, m])
            f_ours = model.encode(only_m)
            assert (f_theirs > 0).float().mean() > 0.05 and (f_theirs == 0).float().mean() > 0.05
            assert rel(f_ours, f_theirs) <= TOL
            assert rel(model.decode(f_ours)[:, m] / SCALES[m], sae.decode(f_theirs)) <= TOL
