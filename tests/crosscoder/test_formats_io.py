"""Reading and writing other codebases' crosscoder files (crosstime.interop.formats).

Every foreign file here is written the way that codebase writes it (key names, shapes, dtypes,
config keys of shared/formats.md: `torch.save(state_dict)`, safetensors with the codebase's
metadata, the Hub mixin's config.json), from small random tensors; the imported crosscoder's
encode/decode is checked against that codebase's formulas, written out here with einsum.
The first paper's (cct) semantics are tested against files its own code made
(tests/interop/test_cct_golden.py); `write_cct` here only feeds the generic refusals.
dictionary_learning's files are copies of the ones its own code wrote (tests/fixtures; its
semantics are tested in tests/interop/test_dictionary_learning_golden.py).
Llamascopium's and SAELens' semantics are checked against their own code in tests/interop/
(test_against_*.py, the interop-tests extra); here only their generic checks.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from crosstime.cli import app
from crosstime.crosscoder import CrosscoderError
from crosstime.interop.formats import ExportInfo, known_formats, read, write

M, D, F = 3, 8, 24
REVS = ["step1", "step2", "step3"]
NORMS = [3.0, 11.0, 40.0]  # average activation norms: s_m = sqrt(d) / norm_m
FACTORS = [math.sqrt(D) / n for n in NORMS]  # what CCT's estimated_act_norm_list holds: s_m itself
LS_HOOKS = [f"blocks.2.hook_resid_post@{r}" for r in REVS]  # Llamascopium hook points as crosstime writes them


def rand_weights(seed: int = 0, M: int = M) -> dict[str, torch.Tensor]:
    """Varied weights (decoder norms differ by checkpoint; biases put some features off)."""
    g = torch.Generator().manual_seed(seed)
    return {"W_enc": torch.randn(M, D, F, generator=g) / D**0.5,
            "W_dec": torch.randn(F, M, D, generator=g) * torch.rand(F, M, 1, generator=g) / D**0.5,
            "b_enc": torch.randn(F, generator=g) * 0.2 - 0.1, "b_dec": torch.randn(M, D, generator=g) * 0.1}


def raw_inputs(seed: int = 1, M: int = M) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, M, D, generator=g)
    return x / x.norm(dim=-1, keepdim=True).mean(0, keepdim=True) * torch.tensor(NORMS[:M]).view(1, M, 1)


def normalised(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor([math.sqrt(D) / n for n in NORMS[:x.shape[1]]]).view(1, -1, 1)


def invoke(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="crosstime")


def assert_refused(result, *words: str) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


# -- writers as each codebase writes -----------------------------------------------------------

def cct_config(M: int = M, revisions=REVS, **over) -> dict:
    cfg = {"dict_size": F, "d_in": D, "n_models": M, "enc_dtype": "fp32", "seed": 4352, "dec_init_norm": 0.08,
           "l1_coeff": 2, "l1_warmup_pct": 0.05, "lr": 5e-5, "beta1": 0.9, "beta2": 0.999, "batch_size": 4096,
           "num_tokens": 400_000_000, "seq_len": 1024, "model_name": "EleutherAI/pythia-1b",
           "revision_list": "-".join(revisions[:M]), "hook_point": "blocks.9.hook_resid_pre", "site": "resid_pre",
           "estimated_act_norm_list": FACTORS[:M], "remove_bos": True, "batch_topk_init": 1000,
           "batch_topk_final": None, "topk_annealing_steps": 5000, "threshold_start_step": 1000,
           "threshold_beta": 0.999, "auxk_alpha": 1 / 32, "dead_feature_threshold": 10_000_000}
    return {**cfg, **over}


def write_cct(folder: Path, w: dict, k: int = 20, cfg: dict | None = None) -> Path:
    """The reference's `save()`: `torch.save(self.state_dict(), {k}.pt)` and `json.dump(cfg, {k}_cfg.json)`."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(dict(w), folder / f"{k}.pt")
    (folder / f"{k}_cfg.json").write_text(json.dumps(cfg or cct_config()))
    return folder / f"{k}.pt"


def write_llamascopium(folder: Path, w: dict, act_fn: str = "relu", log_threshold: torch.Tensor | None = None,
                       norm_activation: str = "dataset-wise", hooks=LS_HOOKS) -> Path:
    """Llamascopium's save layout, for the reader's generic checks (missing files, refusals): config.json +
    sae_weights.safetensors, W_E/b_E/W_D/b_D per head. Its semantics are checked against Llamascopium's own
    saves in tests/interop/test_against_llamascopium.py."""
    h = w["W_enc"].shape[0]
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    b_E = torch.randn(h, F, generator=g) * 0.1  # per-head biases; they sum in the encoder
    b_E[0] += w["b_enc"] - b_E.sum(0)
    state = {"W_E": w["W_enc"].clone(), "b_E": b_E, "W_D": w["W_dec"].permute(1, 0, 2).contiguous(),
             "b_D": w["b_dec"].clone()}
    for hp, n in zip(hooks[:h], NORMS):
        state[f"dataset_average_activation_norm.{hp}"] = torch.tensor(n)
    if log_threshold is not None:
        state["activation_function.log_jumprelu_threshold"] = log_threshold
    save_file(state, str(folder / "sae_weights.safetensors"), metadata={"version": "2.0.0"})
    (folder / "config.json").write_text(json.dumps({
        "sae_type": "crosscoder", "hook_points": list(hooks[:h]), "d_model": D, "expansion_factor": F // D,
        "act_fn": act_fn, "norm_activation": norm_activation, "sparsity_include_decoder_norm": True, "top_k": 50,
        "jumprelu_threshold_window": 2.0, "use_decoder_bias": True, "dtype": "torch.float32", "device": "cpu"}))
    return folder


DL_GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "dictionary_learning"  # made by the fork's code


def golden_dictionary_learning(folder: Path, name: str = "relu_crosscoder", **edit: int) -> Path:
    """A copy of a save_pretrained folder the fork itself wrote (normaliser off), its state edited."""
    shutil.copytree(DL_GOLDEN / name / "pretrained", folder)
    if edit:
        state = load_file(str(folder / "model.safetensors"))
        state.update({k: torch.tensor(v) for k, v in edit.items()})
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


# -- the formats' own formulas -------------------------------------------------------------------



# -- per format: import, formulas, round trip -----------------------------------------------------

def test_cct_folder_with_several_saves_names_them(tmp_path):
    w = rand_weights()
    write_cct(tmp_path, w, k=0)
    write_cct(tmp_path, w, k=20)
    with pytest.raises(CrosscoderError, match="20.pt"):
        read("cct", tmp_path)




def test_dictionary_learning_compiled_pt(tmp_path):
    state = torch.load(DL_GOLDEN / "relu_crosscoder" / "model_final.pt", weights_only=True)
    torch.save({f"_orig_mod.{k}": v for k, v in state.items()}, tmp_path / "model_final.pt")  # torch.compile's
    model = read("dictionary-learning", tmp_path / "model_final.pt", revisions=REVS, scales=[1, 1, 1]).model
    assert torch.equal(model.W_dec, state["decoder.weight"].permute(1, 0, 2))


@pytest.mark.parametrize("fmt,variant", [("cct", "relu"), ("cct", "batchtopk"), ("llamascopium", "relu"),
                                         ("hub", "relu"), ("hub", "jumprelu"), ("hub", "topk")])
def test_export_then_import_is_exact(tmp_path, fmt, variant):
    from crosstime.crosscoder import CrosscoderConfig, build

    own = {"k": 4} if variant in ("topk", "batchtopk") else {}
    model = build(CrosscoderConfig(variant=variant, n_checkpoints=M, d_model=D, n_features=F, variant_config=own,
                                   revisions=REVS, scales=[2.0, 0.5, 0.25], seed=3))
    with torch.no_grad():
        for name, value in rand_weights(8).items():
            getattr(model, name).copy_(value)
        if variant == "batchtopk":
            model.threshold.fill_(0.07)
    write(model, fmt, tmp_path / "out", ExportInfo(hook_name="blocks.2.hook_resid_post"))
    back = read(fmt, tmp_path / "out").model
    for name, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name
    assert back.revisions == REVS and back.scales == pytest.approx(model.scales, rel=1e-6)
    assert back.config.variant == variant
    if variant in ("topk", "batchtopk"):
        assert back.config.variant_config.k == model.config.variant_config.k
    x = torch.randn(32, M, D)
    torch.testing.assert_close(back.eval()(x), model.eval()(x))


def test_saelens_slice_is_the_crosscoder_with_other_checkpoints_zero(tmp_path):
    from crosstime.crosscoder import CrosscoderConfig, build

    model = build(CrosscoderConfig(variant="batchtopk", n_checkpoints=M, d_model=D, n_features=F,
                                   variant_config={"k": 4}, revisions=REVS, scales=[2.0, 0.5, 0.25]))
    with torch.no_grad():
        for name, value in rand_weights(9).items():
            getattr(model, name).copy_(value)
        model.threshold.fill_(0.05)
    model.eval()
    write(model, "saelens", tmp_path)
    x = raw_inputs()
    for m, rev in enumerate(REVS):
        cfg = json.loads((tmp_path / rev / "cfg.json").read_text())
        assert cfg["architecture"] == "jumprelu" and "other checkpoint" in cfg["metadata"]["crosstime"]["approximates"]
        s = load_file(str(tmp_path / rev / "sae_weights.safetensors"))
        z = x[:, m] @ s["W_enc"] + s["b_enc"]  # SAELens' JumpReLU SAE, apply_b_dec_to_input false
        f = torch.relu(z) * (z > s["threshold"])
        only_m = torch.zeros_like(x)
        only_m[:, m] = x[:, m] * model.scales[m]
        torch.testing.assert_close(f, model.encode(only_m), rtol=1e-5, atol=1e-6)
        assert (f > 0).any()
        torch.testing.assert_close(f @ s["W_dec"] + s["b_dec"], model.decode(f)[:, m] / model.scales[m],
                                   rtol=1e-5, atol=1e-6)


# -- refusals: one line, nothing written ---------------------------------------------------------

def _refused_import(tmp_path, *args, words=()):
    out = tmp_path / "run"
    line = assert_refused(invoke("import", *args, "--out", out), *words)
    assert not out.exists(), line
    return line


def test_unknown_format_lists_the_known(tmp_path):
    line = _refused_import(tmp_path, "sparsify", tmp_path, words=("sparsify",))
    for name in known_formats("read"):
        assert name in line


def test_missing_files(tmp_path):
    folder = write_llamascopium(tmp_path / "cc", rand_weights())
    (folder / "sae_weights.safetensors").unlink()
    _refused_import(tmp_path, "llamascopium", folder, words=("sae_weights.safetensors",))
    pt = write_cct(tmp_path / "cct", rand_weights())
    (tmp_path / "cct" / "20_cfg.json").unlink()
    _refused_import(tmp_path, "cct", pt, words=("20_cfg.json",))


def test_wrong_shapes_and_config_disagreeing(tmp_path):
    w = rand_weights()
    bad = {**w, "b_dec": torch.zeros(M, D + 1)}
    _refused_import(tmp_path, "cct", write_cct(tmp_path / "a", bad), words=("b_dec", "[3, 9]"))
    pt = write_cct(tmp_path / "b", w, cfg=cct_config(dict_size=F * 2))  # config says F = 48
    _refused_import(tmp_path, "cct", pt, words=("dict_size = 48", "W_dec [24, 3, 8]"))
    folder = golden_dictionary_learning(tmp_path / "c")
    (folder / "config.json").write_text(json.dumps({"activation_dim": D, "dict_size": F + 1, "num_layers": M}))
    _refused_import(tmp_path, "dictionary-learning", folder, "--revisions", ",".join(REVS), "--scales", "1,1,1",
                    words=("dict_size",))


def test_non_state_dict_pickles(tmp_path):
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "0.pt")  # a pickled module: weights_only refuses it
    (tmp_path / "0_cfg.json").write_text(json.dumps(cct_config()))
    _refused_import(tmp_path, "cct", tmp_path / "0.pt", words=("weights_only", "state dict"))
    torch.save([torch.zeros(2)], tmp_path / "1.pt")  # loads, but is a list
    (tmp_path / "1_cfg.json").write_text(json.dumps(cct_config()))
    _refused_import(tmp_path, "cct", tmp_path / "1.pt", words=("list", "state dict"))


def test_unrepresentable_variants_are_refused_with_why(tmp_path):
    w = rand_weights()
    folder = write_llamascopium(tmp_path / "j", w, act_fn="jumprelu", log_threshold=torch.zeros(F))
    _refused_import(tmp_path, "llamascopium", folder, words=("per", "on at one checkpoint and off at another"))
    folder = write_llamascopium(tmp_path / "i", w, norm_activation="inference")
    _refused_import(tmp_path, "llamascopium", folder, words=("inference",))
    folder = golden_dictionary_learning(tmp_path / "m", "batchtopk_crosscoder", code_normalization_id=3)  # MIXED
    _refused_import(tmp_path, "dictionary-learning", folder, "--revisions", ",".join(REVS), "--scales", "1,1,1",
                    words=("MIXED",))


@pytest.mark.parametrize("hook", ["../x", "blocks.2.hook_resid_post@../x", "step1", "blocks.2/hook_resid_post",
                                  "blocks.2.hook_resid_post@.hidden"])
def test_llamascopium_hook_points_must_be_transformer_lens_names(tmp_path, hook):
    folder = write_llamascopium(tmp_path / "cc", rand_weights(M=1), hooks=[hook])
    _refused_import(tmp_path, "llamascopium", folder, words=(repr(hook), "TransformerLens"))


def test_llamascopium_export_names_the_site_as_transformer_lens_does(tmp_path):
    from crosstime.crosscoder import CrosscoderConfig, build

    model = build(CrosscoderConfig(variant="relu", n_checkpoints=M, d_model=D, n_features=F, revisions=REVS,
                                   scales=[1.0] * M))
    with pytest.raises(CrosscoderError, match="hook_resid_post"):  # without the site's hook name: refused
        write(model, "llamascopium", tmp_path / "none")
    write(model, "llamascopium", tmp_path / "out", ExportInfo(hook_name="blocks.5.hook_resid_post"))
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["hook_points"] == [f"blocks.5.hook_resid_post@{r}" for r in REVS]
    assert cfg["jumprelu_threshold_window"] == 2.0 and cfg["expansion_factor"] == 3.0  # floats, as declared


def test_scales_required_where_unrecorded_and_never_overridden(tmp_path):
    folder = golden_dictionary_learning(tmp_path / "d")
    _refused_import(tmp_path, "dictionary-learning", folder, "--revisions", ",".join(REVS), words=("--scales",))
    pt = write_cct(tmp_path / "c", rand_weights())
    _refused_import(tmp_path, "cct", pt, "--scales", "1,1,1", words=("--scales", "records"))
