"""crosstime's `llamascopium` import and export against Llamascopium's own code (the `interop-tests` extra:
llamascopium 2.0.0b34). Its classes build the crosscoders, its `save_pretrained` and
`CrosscoderConfig.save_hyperparameters` write them, its `Crosscoder.from_pretrained` loads crosstime's
exports; encode and decode are compared with crosstime's on the same raw activations, each side
normalising by its own code (Llamascopium's `normalize_activations`, crosstime's scales)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from crosstime.crosscoder import CrosscoderConfig, build
from crosstime.interop.formats import ExportInfo, read, write

theirs_module = pytest.importorskip("llamascopium.models.crosscoder", reason="the interop-tests extra is not "
                                    "installed (pip install -e '.[interop-tests]')")
LsCrosscoder, LsConfig = theirs_module.Crosscoder, theirs_module.CrosscoderConfig

D, F = 8, 24
HOOK = "blocks.2.hook_resid_post"
REVS = ["step1", "step2", "step3"]
NORMS = [12.0, 20.0, 40.0]  # raw average activation norms, above sqrt(D) as a language model's are
TOL = 1e-5  # relative: max |ours - theirs| / max |theirs|


def hooks(M: int) -> list[str]:
    return [f"{HOOK}@{r}" for r in REVS[:M]]


def rel(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """The largest difference relative to the largest value of Llamascopium's side."""
    diff = float((ours.double() - theirs.double()).abs().max() / theirs.double().abs().max())
    print(f"max relative difference {diff:.2e}")  # the report's numbers (pytest -s)
    return diff


def raw_inputs(M: int, seed: int = 1) -> torch.Tensor:
    """[B, M, D] raw activations: average norm NORMS[m] at checkpoint m, around a shared mean."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, M, D, generator=g) + torch.randn(1, M, D, generator=g)
    return x / x.norm(dim=-1, keepdim=True).mean(0, keepdim=True) * torch.tensor(NORMS[:M]).view(1, M, 1)


def their_crosscoder(M: int, act_fn: str = "relu", seed: int = 0) -> LsCrosscoder:
    """Llamascopium's Crosscoder with varied weights, its dataset norms set as its Initializer sets them."""
    cfg = LsConfig(hook_points=hooks(M), d_model=D, expansion_factor=F / D, act_fn=act_fn)
    model = LsCrosscoder(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.W_E.copy_(torch.randn(M, D, F, generator=g) / D**0.5)
        model.W_D.copy_(torch.randn(M, F, D, generator=g) * torch.rand(M, F, 1, generator=g) / D**0.5)
        model.b_E.copy_(torch.randn(M, F, generator=g) * 0.2 - 0.1)
        # a decoder bias as training leaves it: about the normalised activations' mean, shorter than sqrt(D)
        b_D = torch.randn(M, D, generator=g)
        model.b_D.copy_(b_D / b_D.norm(dim=-1, keepdim=True) * 0.6 * math.sqrt(D))
        if act_fn == "jumprelu":
            model.activation_function.log_jumprelu_threshold.copy_(
                math.log(0.3) + torch.randn(F, generator=g) * 0.3)
    model.set_dataset_average_activation_norm(dict(zip(hooks(M), NORMS)))
    return model.eval()


def their_forward(model: LsCrosscoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Llamascopium's pass on raw x [B, M, D]: normalize_activations, prepare_input, encode, decode,
    denormalise; (features [B, M, F] per head, reconstruction [B, M, D] raw)."""
    batch = {hp: x[:, m] for m, hp in enumerate(model.cfg.hook_points)}
    normed, factors = model.normalize_activations(batch, return_scale_factor=True)
    with torch.no_grad():
        f = model.encode(model.prepare_input(normed)[0])
        x_hat = model.decode(f)
    s = torch.stack([factors[hp].expand(x.shape[0]) for hp in model.cfg.hook_points], dim=1).unsqueeze(-1)
    return f, x_hat / s


def our_forward(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """crosstime's pass on raw x [B, M, D]: x·s_m in, features [B, F], reconstruction /s_m out."""
    s = torch.tensor(model.scales).view(1, -1, 1)
    with torch.no_grad():
        f = model.encode(x * s)
        return f, model.decode(f) / s


def assert_agree(ours_model, theirs: LsCrosscoder, M: int) -> None:
    x = raw_inputs(M)
    f_theirs, x_theirs = their_forward(theirs, x)
    f_ours, x_ours = our_forward(ours_model, x)
    assert (f_theirs > 0).float().mean() > 0.05 and (f_theirs == 0).float().mean() > 0.05  # some on, some off
    for h in range(M):  # their per-head activation is one shared feature (ReLU; JumpReLU over one head)
        assert rel(f_ours, f_theirs[:, h]) <= TOL
    assert rel(x_ours, x_theirs) <= TOL


@pytest.mark.parametrize("M,act_fn", [(3, "relu"), (1, "jumprelu")])
def test_their_save_imports_exactly(tmp_path: Path, M: int, act_fn: str):
    theirs = their_crosscoder(M, act_fn)
    (tmp_path / "cc").mkdir()
    theirs.cfg.save_hyperparameters(tmp_path / "cc")
    theirs.save_pretrained(tmp_path / "cc")
    imported = read("llamascopium", tmp_path / "cc")
    assert imported.model.revisions == REVS[:M] and imported.model.config.variant == act_fn
    assert imported.model.scales == pytest.approx([math.sqrt(D) / n for n in NORMS[:M]], rel=1e-6)
    assert not any("folded" in note for note in imported.notes)
    assert_agree(imported.model, theirs, M)


@pytest.mark.parametrize("M,act_fn", [(3, "relu"), (1, "jumprelu")])
def test_their_folded_training_save_is_unfolded(tmp_path: Path, M: int, act_fn: str):
    """runners/train.py: config.json before training (dataset-wise), then save_pretrained(fold_activation_scale=True)."""
    theirs = their_crosscoder(M, act_fn, seed=5)
    (tmp_path / "cc").mkdir()
    theirs.cfg.save_hyperparameters(tmp_path / "cc")  # before training: norm_activation dataset-wise
    x = raw_inputs(M)
    trained = their_forward(theirs, x)  # the crosscoder as trained, before the save folds it
    theirs.save_pretrained(tmp_path / "cc", fold_activation_scale=True)
    assert theirs.cfg.norm_activation == "inference"  # folded in memory; the folder's config.json still says dataset-wise
    imported = read("llamascopium", tmp_path / "cc")
    assert any("folded" in note for note in imported.notes)
    f_ours, x_ours = our_forward(imported.model, x)
    for h in range(M):
        assert rel(f_ours, trained[0][:, h]) <= TOL
    assert rel(x_ours, trained[1]) <= TOL
    # Llamascopium's own loader reads the folder as dataset-wise, so it is off: the trap the detection avoids
    loaded = LsCrosscoder.from_pretrained(str(tmp_path / "cc"))
    assert rel(their_forward(loaded, x)[1], trained[1]) > 1e-2


def our_crosscoder(M: int, variant: str):
    own = {"jumprelu_threshold_init": 0.05, "jumprelu_bandwidth": 0.01} if variant == "jumprelu" else {}
    model = build(CrosscoderConfig(variant=variant, n_checkpoints=M, d_model=D, n_features=F, variant_config=own,
                                   revisions=REVS[:M], scales=[math.sqrt(D) / n for n in NORMS[:M]], seed=3))
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        model.W_enc.copy_(torch.randn(M, D, F, generator=g) / D**0.5)
        model.W_dec.copy_(torch.randn(F, M, D, generator=g) * torch.rand(F, M, 1, generator=g) / D**0.5)
        model.b_enc.copy_(torch.randn(F, generator=g) * 0.2 - 0.1)
        model.b_dec.copy_(torch.randn(M, D, generator=g) * 0.1)
        if variant == "jumprelu":
            model.log_threshold.copy_(math.log(0.2) + torch.randn(F, generator=g) * 0.3)
    return model.eval()


@pytest.mark.parametrize("M,variant", [(3, "relu"), (1, "jumprelu")])
def test_our_export_loads_in_theirs_exactly(tmp_path: Path, M: int, variant: str):
    ours = our_crosscoder(M, variant)
    write(ours, "llamascopium", tmp_path / "out", ExportInfo(hook_name=HOOK))
    cfg = LsConfig.from_pretrained(str(tmp_path / "out"))  # pydantic validation of every field
    assert cfg.hook_points == hooks(M) and cfg.d_sae == F and cfg.act_fn == variant
    theirs = LsCrosscoder.from_pretrained(str(tmp_path / "out"))  # strict state-dict load
    assert theirs.dataset_average_activation_norm == pytest.approx(dict(zip(hooks(M), NORMS)), rel=1e-6)
    assert_agree(ours, theirs.eval(), M)
