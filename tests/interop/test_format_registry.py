"""The format registry: a format declares the inference rules it holds, so which variants it supports
follows from the rules the variants register; a new variant and a new format registered in this
file alone export and read back; `crosstime export` lists the registry and refuses with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import Field
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from crosstime.cli import app
from crosstime.crosscoder import (
    BATCHTOPK,
    JUMPRELU,
    RELU,
    TOPK,
    VARIANTS,
    Activation,
    BatchTopKSettings,
    Crosscoder,
    CrosscoderConfig,
    CrosscoderError,
    JumpReLUConfig,
    JumpReLUSettings,
    Loss,
    Recipe,
    TopKConfig,
    TopKSettings,
    TrainSettings,
    Variant,
    VariantConfig,
    build,
    fit,
    register,
)
from crosstime.crosscoder.jumprelu import JumpReLUCrosscoder, JumpReLURecipe
from crosstime.crosscoder.relu import ReLUCrosscoder, ReLURecipe, ReLUSettings
from crosstime.crosscoder.topk import BatchTopKCrosscoder, BatchTopKRecipe, TopKCrosscoder, TopKRecipe
from crosstime.interop import export_run
from crosstime.interop.formats import (
    FORMATS,
    ExportInfo,
    Format,
    Imported,
    formats_supporting,
    known_formats,
    read,
    register_format,
    write,
)
from crosstime.interop.formats.base import assemble, read_json_object
from crosstime.interop.formats.neuronpedia import NeuronpediaError

torch.set_num_threads(1)
REVS = ["early", "late"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="crosstime", env={"COLUMNS": "200"})


# -- a new variant and a new format, registered here ---------------------------------------------

SHIFTED = Activation("shifted-relu", "f = ReLU(z − shift), one shift for every feature (config: shift)")


class ShiftConfig(VariantConfig):
    shift: float = Field(0.1, ge=0, description="shifted: the pre-activation every feature must exceed")


class ShiftSettings(ShiftConfig):
    l1_scale: float = Field(1.0, gt=0, description="shifted: a factor on the L1 penalty")


class ShiftedRecipe(Recipe):
    def loss(self, model: Crosscoder, x: torch.Tensor, fwd, ctx) -> Loss:
        recon = self.reconstruction(x, fwd.x_hat)
        sparsity = self.settings.variant_settings.l1_scale * fwd.f.sum(1).mean()
        active = (fwd.f > 0).float()
        return Loss(recon + ctx.coeff * sparsity, recon, sparsity, x.new_zeros(()), active.sum() / x.shape[0],
                    active.sum(0) > 0)


class ShiftedCrosscoder(Crosscoder):
    def activate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z - self.config.variant_config.shift)

    @property
    def inference_rule(self) -> str:
        return f"ReLU(z − {self.config.variant_config.shift})"


class ShiftFormat(Format):
    """A format of this test: ``weights.safetensors`` (crosstime's names) + ``meta.json``."""

    name = "shift-files"
    summary = "the test's format: weights.safetensors + meta.json"
    activations = frozenset({SHIFTED})

    def write(self, model: Crosscoder, out: Path, info: ExportInfo) -> list[Path]:
        self.check_supports(model)
        m = model.unfolded()
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: getattr(m, k).detach().contiguous() for k in ("W_enc", "W_dec", "b_enc", "b_dec")},
                  str(out / "weights.safetensors"))
        (out / "meta.json").write_text(json.dumps({"shift": m.config.variant_config.shift,
                                                   "revisions": m.revisions, "scales": m.scales}))
        return [out / "weights.safetensors", out / "meta.json"]

    def read(self, path: Path, revisions=None, scales=None) -> Imported:
        meta = read_json_object(path / "meta.json")
        tensors = load_file(str(path / "weights.safetensors"))
        model = assemble("shifted", tensors, meta["revisions"], meta["scales"], str(path),
                         variant_config={"shift": meta["shift"]})
        return Imported(model, ["the test's format"], {"format": self.name})


@pytest.fixture
def shifted():
    """The new variant and the new format, registered as a user's module would (removed again)."""
    register(Variant("shifted", model=ShiftedCrosscoder, recipe=ShiftedRecipe, activation=SHIFTED, config=ShiftConfig,
                     settings=ShiftSettings))
    register_format(ShiftFormat)
    yield
    del VARIANTS["shifted"], FORMATS["shift-files"]


def _planted(n=2048, M=2, d=8, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    codes = torch.rand(n, 16, generator=g) * (torch.rand(n, 16, generator=g) < 0.15)
    return torch.einsum("nk,kmd->nmd", codes, torch.randn(16, M, d, generator=g))


def test_a_new_variant_trains_exports_through_a_new_format_and_reads_back(shifted, tmp_path):
    x = _planted()
    settings = TrainSettings(variant="shifted", variant_settings={"shift": 0.05, "l1_scale": 2.0}, n_features=24,
                             steps=20, batch_size=128, lr=3e-3, val_every=0, progress=False)
    model = fit(x, settings, out=tmp_path / "run" / "crosscoder")
    assert type(model) is ShiftedCrosscoder and model.config.variant_config == ShiftConfig(shift=0.05)
    assert "l1_scale" not in json.loads((tmp_path / "run" / "crosscoder" / "config.json").read_text())["variant_config"]
    assert formats_supporting("shifted") == ["hub", "neuronpedia", "shift-files"]
    assert not FORMATS["cct"].supports("shifted") and FORMATS["shift-files"].supports("shifted")
    assert not FORMATS["shift-files"].supports("relu")

    written = write(model, "shift-files", tmp_path / "out")
    assert sorted(p.name for p in written) == ["meta.json", "weights.safetensors"]
    back = read("shift-files", tmp_path / "out").model
    assert type(back) is ShiftedCrosscoder and back.config.variant_config.shift == 0.05
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    torch.testing.assert_close(back(x[:64]), model.eval()(x[:64]))
    # the run-level export reads the same registry: the new format is known, a foreign one refuses
    files = export_run(tmp_path / "run", "shift-files", tmp_path / "exported")
    assert [p.name for p in files] == ["weights.safetensors", "meta.json"]
    with pytest.raises(CrosscoderError, match=r"the cct format cannot hold a shifted crosscoder \(f = ReLU\(z − "
                                              r"shift\).*\); formats that can: hub, neuronpedia, shift-files"):
        export_run(tmp_path / "run", "cct", tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    # crosstime's own files hold any registered variant
    write(model, "hub", tmp_path / "hub")
    assert torch.equal(read("hub", tmp_path / "hub").model.W_dec, model.W_dec)


# -- each built-in format: supports() against its writer ------------------------------------------

class PlantedReLU(ReLUCrosscoder):
    """A user's variant with ReLU's inference rule (its own model class)."""


class PlantedTopK(TopKCrosscoder):
    """A user's variant with TopK's inference rule: the near miss of every format that holds BatchTopK."""


class PlantedBatchTopK(BatchTopKCrosscoder):
    """A user's variant with BatchTopK's inference rule."""


class PlantedJumpReLU(JumpReLUCrosscoder):
    """A user's variant with JumpReLU's inference rule."""


PLANTED = {  # a variant per inference rule, named as no built-in, as a user's module would register it
    "planted_relu": (RELU, PlantedReLU, ReLURecipe, VariantConfig, ReLUSettings, {}),
    "planted_topk": (TOPK, PlantedTopK, TopKRecipe, TopKConfig, TopKSettings, {"k": 2}),
    "planted_batchtopk": (BATCHTOPK, PlantedBatchTopK, BatchTopKRecipe, TopKConfig, BatchTopKSettings, {"k": 2}),
    "planted_jumprelu": (JUMPRELU, PlantedJumpReLU, JumpReLURecipe, JumpReLUConfig, JumpReLUSettings,
                         {"jumprelu_threshold_init": 0.05, "jumprelu_bandwidth": 0.01}),
}
# what each format's files can hold, from its documentation (by inference rule)
HOLDS = {"cct": {"planted_relu", "planted_batchtopk"}, "dictionary-learning": {"planted_relu", "planted_batchtopk"},
         "llamascopium": {"planted_relu", "planted_jumprelu"},
         "saelens": {"planted_relu", "planted_jumprelu", "planted_batchtopk"}, "hub": set(PLANTED),
         "neuronpedia": set(PLANTED)}


@pytest.fixture(scope="module")
def planted():
    """The planted variants (subclasses of the built-in models, so each is a new model class), registered
    and removed again; a crosscoder of each with varied weights (M = 1: every format's checkpoints)."""
    models = {}
    for name, (rule, cls, recipe, config, settings, own) in PLANTED.items():
        register(Variant(name, model=cls, recipe=recipe, activation=rule, config=config, settings=settings))
        model = build(CrosscoderConfig(variant=name, n_checkpoints=1, d_model=6, n_features=10, variant_config=own,
                                       revisions=["step1"], scales=[2.0], seed=4))
        with torch.no_grad():
            for p in (model.W_enc, model.W_dec, model.b_enc):
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.3)
            if rule == BATCHTOPK:
                model.threshold.fill_(0.05)
        models[name] = model.eval()
    yield models
    for name in PLANTED:
        del VARIANTS[name]


def test_the_built_in_formats_are_registered_with_what_they_hold(planted):
    assert set(known_formats("write")) == set(HOLDS) and known_formats("read") == [
        "cct", "dictionary-learning", "hub", "llamascopium"]
    for fmt, holds in HOLDS.items():
        assert {name for name in PLANTED if FORMATS[fmt].supports(name)} == holds, fmt
    # Matryoshka infers as BatchTopK: every format that holds one holds the other
    assert formats_supporting("matryoshka") == formats_supporting("batchtopk") == [
        "cct", "dictionary-learning", "hub", "neuronpedia", "saelens"]
    assert formats_supporting("topk") == ["hub", "neuronpedia"]


@pytest.mark.parametrize("fmt", sorted(HOLDS))
def test_each_formats_supports_matches_what_its_writer_accepts(planted, fmt, tmp_path):
    """A planted variant the format supports is written (and read back the same where it reads); a near miss
    it does not support is refused by the writer itself, naming the formats that can, with nothing written."""
    writer = FORMATS[fmt]
    for name, model in planted.items():
        out = tmp_path / name
        if not writer.supports(name):
            with pytest.raises(CrosscoderError) as err:
                writer.write(model, out, ExportInfo())
            assert f"the {fmt} format cannot hold a {name} crosscoder" in str(err.value)
            assert f"formats that can: {', '.join(formats_supporting(name))}" in str(err.value)
            assert not out.exists()
            continue
        if fmt == "neuronpedia":  # made from a run's report: past the support check, it asks for the run
            with pytest.raises(NeuronpediaError, match="no run was given"):
                writer.write(model, out, ExportInfo())
            continue
        written = writer.write(model, out, ExportInfo(hook_name="blocks.0.hook_resid_post"))  # llamascopium names heads by it
        assert written and all(p.is_file() for p in written)
        if writer.readable:
            back = read(fmt, out).model
            x = torch.randn(32, 1, 6, generator=torch.Generator().manual_seed(2))
            torch.testing.assert_close(back.encode(x), model.encode(x), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(back(x), model(x), rtol=1e-5, atol=1e-6)


def test_export_lists_the_registry_and_refuses_an_unsupported_variant_in_one_line(tmp_path):
    help_text = invoke("export", "--help").output
    assert all(name in help_text for name in known_formats("write"))
    model = build(CrosscoderConfig(variant="topk", n_checkpoints=2, d_model=4, n_features=8, variant_config={"k": 2},
                                   revisions=["a", "b"], scales=[1.0, 1.0]))
    model.save(tmp_path / "run" / "crosscoder")
    result = invoke("export", tmp_path / "run", "--format", "llamascopium", "--out", tmp_path / "out")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "the llamascopium format cannot hold a topk crosscoder" in lines[0]
    assert lines[0].endswith("formats that can: hub, neuronpedia")
    assert not (tmp_path / "out").exists()
