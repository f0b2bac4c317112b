"""dictionary_learning (science-of-finetuning fork) files made by the fork's own classes and save
functions (tests/fixtures/dictionary_learning, make_golden.py, PROVENANCE.md): crosstime imports
each and reproduces the fork's recorded encode/decode on raw inputs; crosstime's export holds what
the fork's strict loaders require (recorded from a freshly built instance and its save_pretrained)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from crosstime.crosscoder import CrosscoderConfig, CrosscoderError, build
from crosstime.interop.formats import read, write

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "dictionary_learning"
EXPECTED = load_file(str(GOLDEN / "expected.safetensors"))
LOADER = json.loads((GOLDEN / "loader.json").read_text())
REVS = ["a", "b", "c"]


def max_rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


@pytest.mark.parametrize("save", ["model_final.pt", "pretrained"])
@pytest.mark.parametrize("name", sorted(LOADER))
def test_golden_save_imports_with_the_forks_outputs(name, save):
    on = LOADER[name]["normaliser_on"]
    # the fork's own scale is its normaliser when on; off, it encodes raw inputs as they are (scales 1)
    model = read("dictionary-learning", GOLDEN / name / save, revisions=REVS,
                 scales=None if on else [1.0, 1.0, 1.0]).model.folded().eval()
    assert model.config.variant == ("batchtopk" if name.startswith("batchtopk") else "relu")
    assert model.config.l1_norm == {"CROSSCODER": "sum", "SAE": "concat"}[LOADER[name]["code_normalization"]]
    x, f_want, x_want = (EXPECTED[f"{k}/{name}"] for k in ("x", "f", "x_hat"))
    with torch.no_grad():
        f = model.encode(x)
        assert torch.equal(f > 0, f_want > 0)
        assert max_rel(f, f_want) <= 1e-5
        assert max_rel(model.decode(f_want), x_want) <= 1e-5


def test_normaliser_on_gives_the_scales_and_refuses_other_ones():
    state = torch.load(GOLDEN / "relu_sae_norm" / "model_final.pt", weights_only=True)
    model = read("dictionary-learning", GOLDEN / "relu_sae_norm" / "pretrained", revisions=REVS).model
    want = (state["activation_global_scale"].double() + 1e-8).tolist()  # the fork divides by g + 1e-8
    assert model.scales == pytest.approx(want, rel=1e-12)
    with pytest.raises(CrosscoderError, match="--scales"):
        read("dictionary-learning", GOLDEN / "relu_sae_norm" / "pretrained", revisions=REVS, scales=[1.0, 1.0, 1.0])


def test_normaliser_off_still_needs_scales():
    with pytest.raises(CrosscoderError, match="--scales"):
        read("dictionary-learning", GOLDEN / "relu_crosscoder" / "pretrained", revisions=REVS)


def test_a_normaliser_without_its_global_scale_is_refused(tmp_path):
    state = torch.load(GOLDEN / "relu_sae_norm" / "model_final.pt", weights_only=True)
    del state["activation_global_scale"]  # as the fork saved before 2025-06-30 (per-dimension std)
    torch.save(state, tmp_path / "model_final.pt")
    with pytest.raises(CrosscoderError, match="activation_global_scale"):
        read("dictionary-learning", tmp_path / "model_final.pt", revisions=REVS)


@pytest.mark.parametrize("variant,l1", [("relu", "sum"), ("relu", "concat"), ("batchtopk", "sum"),
                                        ("batchtopk", "concat")])
def test_export_holds_what_the_forks_loader_requires(tmp_path, variant, l1):
    model = build(CrosscoderConfig(variant=variant, n_checkpoints=3, d_model=8, n_features=24, l1_norm=l1,
                                   variant_config={"k": 4} if variant == "batchtopk" else {}, revisions=REVS,
                                   scales=[0.31, 0.047, 0.0093], seed=3))
    write(model, "dictionary-learning", tmp_path)
    name = {("relu", "sum"): "relu_crosscoder", ("relu", "concat"): "relu_sae_norm",
            ("batchtopk", "sum"): "batchtopk_crosscoder", ("batchtopk", "concat"): "batchtopk_sae"}[variant, l1]
    need = LOADER[name]
    state = load_file(str(tmp_path / "model.safetensors"))
    got = {k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)} for k, v in state.items()}
    assert got == need["state_dict"]  # load_state_dict is strict: same keys, shapes; dtypes as the fork's
    config = json.loads((tmp_path / "config.json").read_text())
    assert set(need["constructor_requires"]) <= set(config) <= set(need["config_fields"])
    assert config["code_normalization"] == need["code_normalization"]
    # the normaliser is on (no NaN) with mean 0, and the fork's constructor would give the same g
    assert not state["activation_std"].isnan().any() and not state["activation_mean"].any()
    g = state["target_rms"] / (state["activation_std"].double() ** 2).sum(-1).add(1e-8).sqrt()
    torch.testing.assert_close(g.float(), state["activation_global_scale"])
    back = read("dictionary-learning", tmp_path).model  # and it comes back as the same model
    x = torch.randn(32, 3, 8) * torch.tensor([3.0, 20.0, 100.0]).view(1, 3, 1)
    torch.testing.assert_close(back.folded().eval()(x), model.folded().eval()(x), rtol=1e-5, atol=1e-5)


def test_older_layout_without_normaliser_buffers_imports_as_before(tmp_path):
    state = torch.load(GOLDEN / "batchtopk_crosscoder" / "model_final.pt", weights_only=True)
    old = {k: v for k, v in state.items() if k not in ("activation_mean", "activation_std", "target_rms",
                                                        "activation_global_scale")}  # the fork before 2025-06-11
    torch.save(old, tmp_path / "model_final.pt")
    a = read("dictionary-learning", tmp_path / "model_final.pt", revisions=REVS, scales=[1.0, 1.0, 1.0]).model
    b = read("dictionary-learning", GOLDEN / "batchtopk_crosscoder" / "model_final.pt", revisions=REVS,
             scales=[1.0, 1.0, 1.0]).model
    for name, value in b.state_dict().items():
        assert torch.equal(a.state_dict()[name], value), name
    assert torch.equal(a.W_enc, state["encoder.weight"])  # off: the weights as saved
