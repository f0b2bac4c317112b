"""The variant registry owns what a variant is: its own settings (nested, reachable as today's flat
options, refused for any other variant), its checkpoint parallelism, and the config.json it saves
(crosscoders saved flat before still load)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import save as serialize
from typer.testing import CliRunner

from crosstime.cli import app
from crosstime.crosscoder import (
    RELU,
    VARIANTS,
    CheckpointParallel,
    CrosscoderConfig,
    ReLUSettings,
    TopKSettings,
    TrainSettings,
    Variant,
    VariantConfig,
    build,
    fit,
    load,
    register,
)
from crosstime.crosscoder.parallel import (
    CheckpointParallelError,
    ShardedCrosscoder,
    ShardedRecipe,
    build_shard,
    check_settings,
    shard_recipe,
    supported_variants,
)
from crosstime.crosscoder.relu import ReLUCrosscoder, ReLURecipe

# today's command-line options of every built-in variant's own settings, written out
OPTIONS = {"relu": ["--fused"], "topk": ["--k", "--k-init", "--k-anneal-steps", "--auxk-coeff", "--k-aux"],
           "batchtopk": ["--k", "--threshold-start-step", "--threshold-beta"],
           "matryoshka": ["--k", "--threshold-beta", "--matryoshka-prefixes"],
           "jumprelu": ["--jumprelu-threshold-init", "--jumprelu-bandwidth", "--jumprelu-penalty", "--jumprelu-tanh-c",
                        "--fused"]}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="crosstime", env={"COLUMNS": "200"})


def one_line_error(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# -- the variant's own settings -----------------------------------------------------------------

def test_the_variant_settings_are_nested_and_validated_by_the_variant():
    s = TrainSettings(variant="topk", variant_settings={"k": 7, "k_aux": 3}, steps=10)
    assert type(s.variant_settings) is TopKSettings and (s.variant_settings.k, s.variant_settings.k_aux) == (7, 3)
    dump = s.model_dump(mode="json")
    assert dump["variant_settings"] == {"k": 7, "k_init": None, "k_anneal_steps": 0, "auxk_coeff": 1 / 32, "k_aux": 3}
    assert "k" not in dump and TrainSettings.model_validate_json(s.model_dump_json()) == s  # round trip
    assert type(TrainSettings().variant_settings) is ReLUSettings  # the default variant's defaults
    assert TrainSettings(variant="topk", variant_settings=TopKSettings(k=7)).variant_settings.k == 7
    with pytest.raises(ValueError, match=r"variant_settings is a TopKSettings, but variant relu takes ReLUSettings"):
        TrainSettings(variant_settings=TopKSettings(k=7))
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        TrainSettings(variant="topk", variant_settings={"k": 0})


@pytest.mark.parametrize(("variant", "own", "words"), [
    ("relu", {"k": 4}, "k (--k) is a setting of the batchtopk, matryoshka, topk variants, not of relu"),
    ("topk", {"jumprelu_penalty": "step"}, "jumprelu_penalty (--jumprelu-penalty) is a setting of the jumprelu "
                                           "variant, not of topk"),
    ("topk", {"threshold_beta": 0.9}, "threshold_beta (--threshold-beta) is a setting of the batchtopk, matryoshka "
                                      "variants, not of topk"),
    ("topk", {"fused": False}, "fused (--fused) is a setting of the jumprelu, relu variants, not of topk"),
    ("relu", {"lr": 0.1}, "lr is a setting every variant shares"),
    ("relu", {"kk": 1}, "kk is a setting of no crosscoder variant"),
])
def test_a_setting_given_for_another_variant_is_an_error_naming_the_variant(variant, own, words):
    """The one rule: a variant's own setting given for a variant it does not belong to is an error
    naming the chosen variant and those it belongs to (it used to be silently ignored)."""
    with pytest.raises(ValueError) as err:
        TrainSettings(variant=variant, variant_settings=own)
    assert words in str(err.value)


def test_a_variant_setting_given_at_the_top_level_is_pointed_to_its_place():
    with pytest.raises(ValueError, match=r"k: a variant's own settings go in variant_settings"):
        TrainSettings(variant="topk", k=4)
    with pytest.raises(ValueError, match=r"variant_config .*not of relu"):
        CrosscoderConfig(variant="relu", n_checkpoints=1, d_model=2, n_features=4, k=4)


def test_every_variant_setting_is_todays_option_and_a_wrong_one_is_one_line(tmp_path):
    help_text = invoke("train", "--help").output
    for variant, options in OPTIONS.items():
        for option in options:
            assert option in help_text, (variant, option)
        for name in VARIANTS[variant].settings.model_fields:  # and whatever else the registry holds
            assert f"--{name.replace('_', '-')}" in help_text, (variant, name)
    run = tmp_path / "run"
    line = one_line_error(invoke("train", run, "--variant", "relu", "--k", "4"))
    assert "k (--k) is a setting of the batchtopk, matryoshka, topk variants, not of relu" in line
    line = one_line_error(invoke("train", run, "--variant", "topk", "--jumprelu-penalty", "step", "--no-fused"))
    assert "jumprelu_penalty (--jumprelu-penalty)" in line and "fused (--fused)" in line and "not of topk" in line
    # the same options for their own variant are accepted: the command goes on to want the run (and its store)
    line = one_line_error(invoke("train", run, "--variant", "matryoshka", "--k", "4", "--matryoshka-prefixes", "8,16",
                                 "--threshold-beta", "0.9"))
    assert "the folder is missing" in line and "is a setting" not in line
    assert "--k: Input should be greater than or equal to 1" in one_line_error(
        invoke("train", run, "--variant", "topk", "--k", "0"))


# -- checkpoint parallelism, as registered ---------------------------------------------------------

class ToyReLU(ReLUCrosscoder):
    """A ReLU crosscoder under another name (a user's variant)."""


class ShardedToyReLU(ShardedCrosscoder, ToyReLU):
    pass


class ShardedToyRecipe(ShardedRecipe, ReLURecipe):
    pass


@pytest.fixture
def toy_variants():
    """Two variants registered here: one with checkpoint parallelism, one without (removed again)."""
    register(Variant("toy_cp", model=ToyReLU, recipe=ReLURecipe, activation=RELU, settings=ReLUSettings,
                     checkpoint_parallel=CheckpointParallel(ShardedToyReLU, ShardedToyRecipe)))
    register(Variant("toy_single", model=ToyReLU, recipe=ReLURecipe, activation=RELU, settings=ReLUSettings))
    yield
    del VARIANTS["toy_cp"], VARIANTS["toy_single"]


def test_checkpoint_parallel_support_is_read_from_the_registry(toy_variants):
    assert supported_variants() == ["batchtopk", "relu", "topk", "toy_cp"]
    check_settings(TrainSettings(variant="toy_cp", checkpoint_parallel=2), 2)
    with pytest.raises(CheckpointParallelError, match=r"supports the variants \['batchtopk', 'relu', 'topk', "
                                                      r"'toy_cp'\], not 'toy_single'"):
        check_settings(TrainSettings(variant="toy_single", checkpoint_parallel=2), 2)
    check_settings(TrainSettings(variant="toy_single"), 2)  # P = 1: any variant
    # how: the registered sharded model and recipe, initialised as the slice of the whole crosscoder
    full = CrosscoderConfig(variant="toy_cp", n_checkpoints=4, d_model=3, n_features=6, seed=5)
    whole = build(full)
    shard = build_shard(full, 2, 4, group=None)
    assert type(shard) is ShardedToyReLU and shard.config.n_checkpoints == 2
    assert torch.equal(shard.W_dec, whole.W_dec[:, 2:4]) and torch.equal(shard.W_enc, whole.W_enc[2:4])
    recipe = shard_recipe(TrainSettings(variant="toy_cp", checkpoint_parallel=2), None, 4)
    assert type(recipe) is ShardedToyRecipe and recipe.n_checkpoints == 4
    with pytest.raises(ValueError, match="'toy_cp' is registered already"):
        register(Variant("toy_cp", model=ToyReLU, recipe=ReLURecipe, activation=RELU))


def test_a_variant_whose_settings_do_not_extend_its_config_is_refused():
    class Arch(VariantConfig):
        width: int = 1

    with pytest.raises(TypeError, match="its settings ReLUSettings must extend its config Arch"):
        Variant("bad", model=ToyReLU, recipe=ReLURecipe, activation=RELU, config=Arch, settings=ReLUSettings)


# -- config.json ------------------------------------------------------------------------------------

def _save_flat(model, folder) -> None:
    """``model`` as the version before nested variant settings saved it: config.json and the weights'
    header copy flat, with k, jumprelu_threshold_init and jumprelu_bandwidth for every variant."""
    saved = model.config.model_dump(mode="json")
    own = saved.pop("variant_config")
    flat = {**saved, "k": 32, "jumprelu_threshold_init": None, "jumprelu_bandwidth": None, **own, "steps": 3}
    text = json.dumps(flat)
    data = serialize({k: v.contiguous() for k, v in model.state_dict().items()}, metadata={"config": text})
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(data)
    record = {"file": "model.safetensors", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "config.json").write_text(json.dumps({**flat, "weights": record}))


@pytest.mark.parametrize(("variant", "own"), [("relu", {}), ("topk", {"k": 5}), ("batchtopk", {"k": 3}),
                                              ("jumprelu", {"jumprelu_threshold_init": 0.25,
                                                            "jumprelu_bandwidth": 0.5})])
def test_a_crosscoder_saved_flat_loads_with_its_variant_settings_nested(tmp_path, variant, own):
    model = build(CrosscoderConfig(variant=variant, n_checkpoints=2, d_model=3, n_features=8, variant_config=own,
                                   revisions=["a", "b"], scales=[1.0, 2.0], seed=1))
    _save_flat(model, tmp_path / "old")
    back = load(tmp_path / "old")
    assert back.config == model.config and back.config.variant_config.model_dump() == {
        k: own.get(k, v) for k, v in VARIANTS[variant].config().model_dump().items()}
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    # today's save nests them
    back.save(tmp_path / "new")
    saved = json.loads((tmp_path / "new" / "config.json").read_text())
    assert saved["variant_config"] == back.config.variant_config.model_dump() and "k" not in saved


# -- the dashboard asks the registry ------------------------------------------------------------

TOPK_OWN = {"k", "k_init", "k_anneal_steps", "auxk_coeff", "k_aux"}
OWN_NAMES = {"relu": {"fused"}, "topk": TOPK_OWN, "batchtopk": TOPK_OWN | {"threshold_start_step", "threshold_beta"},
             "matryoshka": TOPK_OWN | {"threshold_start_step", "threshold_beta", "matryoshka_prefixes"},
             "jumprelu": {"jumprelu_threshold_init", "jumprelu_bandwidth", "jumprelu_penalty", "jumprelu_tanh_c", "fused"}}


@pytest.mark.parametrize("variant", sorted(OWN_NAMES))
def test_the_dashboard_shows_a_variants_own_settings_from_nested_and_flat_records(variant):
    """The settings the dashboard lists for a variant: its own (and no other variant's), from today's
    nested record and from a run trained before (every variant's settings flat in config.yaml)."""
    from crosstime.report.dashboard import crosscoder_settings

    config = CrosscoderConfig(variant=variant, n_checkpoints=2, d_model=8, n_features=64).model_dump(mode="json")
    nested = TrainSettings(variant=variant, steps=7).model_dump(mode="json")
    flat = {k: v for k, v in nested.items() if k != "variant_settings"}
    for spec in VARIANTS.values():  # the flat record held every variant's settings
        flat.update(spec.settings().model_dump(mode="json"))
    flat.update(nested["variant_settings"])
    shown = crosscoder_settings(config, nested)
    assert crosscoder_settings(config, flat) == shown
    names = {s.name for s in shown}
    assert names & set().union(*OWN_NAMES.values()) == OWN_NAMES[variant]
    assert {"variant", "n_features", "l1_norm", "lr", "steps", "dead_tokens"} <= names
    assert "variant_settings" not in names and "variant_config" not in names and "device" not in names
    groups = {s.name: s.group for s in shown}
    assert groups.get("k", "architecture") == "architecture" and groups["lr"] == "training"


def test_no_import_cycle_through_the_model_registry_recipe_settings_and_formats():
    """The registry imports no crosscoder module, so nothing that asks it loops back (TYPE_CHECKING
    imports and imports inside functions counted)."""
    grimp = pytest.importorskip("grimp")  # import-linter's graph builder (the dev extra)
    graph = grimp.build_graph("crosstime")
    names = ("registry", "model", "recipe", "settings", "losses", "parallel", "relu", "topk", "jumprelu", "matryoshka")
    modules = [f"crosstime.crosscoder.{n}" for n in names] + sorted(
        m for m in graph.modules if m.startswith("crosstime.interop.formats"))
    assert graph.find_modules_directly_imported_by("crosstime.crosscoder.registry") == {"crosstime.errors"}
    loops = [(a, b) for a in modules for b in graph.find_modules_directly_imported_by(a)
             if b in modules and graph.chain_exists(importer=b, imported=a)]
    assert loops == []


def _flatten_state(path, **changes) -> None:
    """Rewrite a resume state's settings as the version before nesting saved them: every variant's flat."""
    state = torch.load(path, weights_only=True)
    settings = dict(state["settings"])
    own = settings.pop("variant_settings", {})  # (flat already after a first rewrite)
    for spec in VARIANTS.values():
        settings.update(spec.settings().model_dump(mode="json"))
    state["settings"] = {**settings, **own, **changes}
    torch.save(state, path)


def test_a_training_saved_with_flat_settings_resumes(tmp_path):
    """A resume state of a training started before the variant's settings were nested resumes to the
    same weights; a setting that really differs is still refused by name."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 2, 4, generator=g)
    settings = TrainSettings(variant="topk", variant_settings={"k": 3}, n_features=16, steps=6, save_every=2,
                             batch_size=64, val_every=0, progress=False)
    first = fit(x, settings, out=tmp_path / "cc")
    _flatten_state(tmp_path / "cc" / "state" / "trainer.pt")
    again = fit(x, settings, out=tmp_path / "cc")  # resumes at its last step: nothing to train
    for k, v in first.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    _flatten_state(tmp_path / "cc" / "state" / "trainer.pt", k=5)
    with pytest.raises(ValueError, match=r"different settings \(k: 5 -> 3\)"):
        fit(x, settings, out=tmp_path / "cc")
