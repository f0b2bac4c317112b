"""The ``cct`` format against files made by the first paper's own code (tests/fixtures/cct, PROVENANCE.md).

Import: each golden crosscoder, read by crosstime, gives on the recorded raw inputs the encode and
decode that CCT's own model gave (on its buffer's scaling of them, and folded by its own
``fold_activation_scaling_factor``), to 1e-5 relative. Export: crosstime's files carry every cfg key,
type and tensor that CCT's ``load_crosscoder`` was found to need (loader_requirements.json), the
scaling factors as CCT records them, and CCT's hook name for the layer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crosstime.crosscoder import CrosscoderConfig, CrosscoderError, build
from crosstime.interop.formats import ExportInfo, read, write

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "cct"
HUB = GOLDEN / "hub" / "blocks.14.hook_resid_pre"
EXPECTED = torch.load(GOLDEN / "expected.pt", weights_only=True)
REQUIRED = json.loads((GOLDEN / "loader_requirements.json").read_text())
TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def expected(name: str) -> dict[str, torch.Tensor]:
    return {k.split("/", 1)[1]: v for k, v in EXPECTED.items() if k.startswith(f"{name}/")}


def assert_rel(got: torch.Tensor, want: torch.Tensor, tol: float = 1e-5) -> None:
    """max |got − want| ≤ tol · max |want| (relative to the tensor's scale)."""
    err = float((got - want).abs().max().detach() / want.abs().max())
    assert err <= tol, f"max relative difference {err:.3g} > {tol}"


def check_against_cct(model, e: dict[str, torch.Tensor]) -> None:
    """crosstime's ``model`` on the golden raw inputs equals what CCT's own model gave."""
    assert model.scales == pytest.approx(e["factors"].tolist(), rel=1e-6)  # s_m is CCT's factor itself
    assert (e["f"] > 0).any() and (e["f"] == 0).any()
    x_norm = e["x_raw"] * e["factors"].view(1, -1, 1)
    assert_rel(model.encode(x_norm), e["f"])
    assert_rel(model.decode(e["f"]), e["x_hat"])
    raw = model.folded()  # raw activations in, raw reconstructions out
    assert_rel(raw.encode(e["x_raw"]), e["f"])
    assert_rel(raw.decode(e["f"]), e["x_hat"] / e["factors"].view(1, -1, 1))
    if "f_folded" in e:  # CCT's fold_activation_scaling_factor of the same file
        assert_rel(raw.encode(e["x_raw"]), e["f_folded"])
        assert_rel(raw.decode(e["f_folded"]), e["x_hat_folded"])


def test_relu_golden_imports_with_ccts_scaling_factors():
    imported = read("cct", GOLDEN / "relu" / "0.pt")
    model = imported.model
    assert model.config.variant == "relu" and model.revisions == ["step1000", "step10000", "step143000"]
    check_against_cct(model, expected("relu"))
    # CCT's layer rule on its hook_point "blocks.9.hook_resid_pre": int("9") - 1
    assert imported.source["layer"] == 8 and imported.source["hook_point"] == "blocks.9.hook_resid_pre"


def test_batchtopk_golden_keeps_ccts_threshold_rule():
    model = read("cct", GOLDEN / "batchtopk").model
    e = expected("batchtopk")
    assert model.config.variant == "batchtopk" and model.k == 4 and model.config.l1_norm == "sum"
    relu_only = torch.relu(torch.einsum("bmd,mdf->bf", e["x_raw"] * e["factors"].view(1, -1, 1), model.W_enc)
                           + model.b_enc)
    assert (e["f"] > 0).sum() < (relu_only > 0).sum()  # the threshold removed some features
    check_against_cct(model, e)


def test_hub_layout_needs_and_takes_the_scales():
    e = expected("hub")
    with pytest.raises(CrosscoderError, match="--scales") as refused:
        read("cct", HUB, revisions=["base", "chat"])
    assert len(str(refused.value).splitlines()) == 1
    imported = read("cct", HUB, revisions=["base", "chat"], scales=e["factors"].tolist())
    assert imported.model.n_checkpoints == 2 and imported.source["layer"] == 13
    check_against_cct(imported.model, e)


def test_export_of_an_imported_golden_is_ccts_file_again(tmp_path):
    """The golden file → crosstime → cct: the tensors and the factors CCT's code reads are its own."""
    for name in ("relu", "batchtopk"):
        write(read("cct", GOLDEN / name).model, "cct", tmp_path / name)
        ours, theirs = (torch.load(p / "0.pt", weights_only=True) for p in (tmp_path / name, GOLDEN / name))
        assert sorted(ours) == sorted(theirs)
        for k, v in theirs.items():
            assert ours[k].dtype == v.dtype and torch.equal(ours[k], v), (name, k)
        cfg, golden_cfg = (json.loads((p / "0_cfg.json").read_text()) for p in (tmp_path / name, GOLDEN / name))
        assert cfg["estimated_act_norm_list"] == pytest.approx(golden_cfg["estimated_act_norm_list"], rel=1e-12)


@pytest.mark.parametrize("variant", ["relu", "batchtopk"])
def test_export_has_what_ccts_loader_requires(tmp_path, variant):
    own = {"k": 4} if variant == "batchtopk" else {}
    model = build(CrosscoderConfig(variant=variant, n_checkpoints=3, d_model=8, n_features=24, variant_config=own,
                                   revisions=["a", "b", "c"], scales=[2.0, 0.5, 0.25]))
    write(model, "cct", tmp_path, ExportInfo(layer=5, model_name="EleutherAI/pythia-70m"))
    cfg = json.loads((tmp_path / "0_cfg.json").read_text())
    need = REQUIRED[variant]
    for key, spec in need["required_cfg_keys"].items():
        assert key in cfg and type(cfg[key]) is TYPES[spec["type"]], (key, cfg.get(key), spec)
    state = torch.load(tmp_path / "0.pt", weights_only=True)
    sizes = {"M": 3, "d": 8, "F": 24}
    assert sorted(state) == sorted(need["state_dict"])
    for k, spec in need["state_dict"].items():
        assert str(state[k].dtype) == spec["dtype"] and list(state[k].shape) == [sizes[s] for s in spec["shape"]], k
    assert cfg["estimated_act_norm_list"] == [2.0, 0.5, 0.25]  # CCT's factors are s_m, not sqrt(d)/s_m
    assert cfg["hook_point"] == "blocks.6.hook_resid_pre"  # CCT reads the layer as int("6") - 1 = 5
    assert cfg["device"] == "cpu" and cfg["revision_list"] == "a-b-c"
    assert read("cct", tmp_path).source["layer"] == 5
