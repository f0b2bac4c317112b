"""Llamascopium (OpenMOSS Language-Model-SAEs), ``sae_type: "crosscoder"``: the second paper's code.

Files: a folder with ``config.json`` + ``sae_weights.safetensors`` (metadata ``{"version": ...}``),
or a ``.pt`` holding ``{"sae": state_dict, "version": ...}`` beside ``config.json``. Sharded
``.dcp`` folders are not read (convert them with Llamascopium first).

Tensors (h heads = checkpoints): ``W_E [h, d, F]``, ``b_E [h, F]``, ``W_D [h, F, d]``,
``b_D [h, d]``, ``dataset_average_activation_norm.<hook_point>`` (a scalar per head) and for
JumpReLU ``activation_function.log_jumprelu_threshold [F]``. Its encoder sums the heads'
pre-activations, ``z = Σ_h (x_h W_E[h] + b_E[h])``, then activates each head separately,
``f_h = σ(z · ‖W_D[h,i]‖) / ‖W_D[h,i]‖``, and decodes ``x̂_h = f_h W_D[h] + b_D[h]``.

Mapping: ``W_enc = W_E``, ``b_enc = Σ_h b_E[h]``, ``W_dec = W_D.permute(1, 0, 2)``,
``b_dec = b_D``, ``s_m = sqrt(d) / dataset_average_activation_norm[m]``. For ReLU the per-head
activation is one shared feature (``ReLU(z·n)/n = ReLU(z)``): exact. JumpReLU gates each head
at ``z > θ_i / ‖W_D[h,i]‖``, so a feature can be on at one checkpoint and off at another; that
is one shared gate (crosstime's JumpReLU with ``θ_i / ‖W_D[0,i]‖``) only with one head, so
JumpReLU over several heads is refused, as are TopK/BatchTopK (their per-head selection has
no shared equivalent either).

Hook points are TransformerLens names, ``blocks.{L}.hook_{name}``; crosstime's export writes one
per checkpoint as ``blocks.{L}.hook_resid_post@{revision}`` (Llamascopium keys each head's batch
and norm by its hook point, so they must differ) and reads the revision back from after ``@``.
Any other name is refused before it is used, so a config cannot name a path.

Folded saves: Llamascopium's training runner (``runners/train.py``, ``fold_activation_scale=True``
by default) writes ``config.json`` before training (``norm_activation: dataset-wise``), then
``save_pretrained(fold_activation_scale=True)`` runs ``standardize_parameters_of_dataset_norm``
(``b_E[h]`` and ``b_D[h]`` divided by ``s_h``) and writes only the weights, with no flag. The
decoder bias tells: in the normalised space it is at most about the activations' mean, whose norm
is below their average norm ``sqrt(d)``; folded, it is ``1/s_h`` times that. A save whose decoder
bias is longer than ``sqrt(d)`` at some head but no longer than the recorded norm at any is read
as folded and unfolded (``b_E[h]·s_h``, ``b_D[h]·s_h``): the crosscoder that was trained.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from crosstime.crosscoder import JUMPRELU, RELU, Crosscoder, CrosscoderError
from crosstime.files import write_json
from crosstime.interop.formats.base import (
    ExportInfo,
    Format,
    Imported,
    assemble,
    check_shapes,
    config_int,
    disagree,
    norm_from_scale,
    pick_revisions,
    pick_scales,
    read_json_object,
    read_pt,
    read_safetensors,
    register_format,
    require_files,
    scale_from_norm,
    tensors_only,
)
from crosstime.names import UnsafeName, check_name

CONFIG, WEIGHTS = "config.json", "sae_weights.safetensors"
NORM_PREFIX = "dataset_average_activation_norm."
LOG_THRESHOLD = "activation_function.log_jumprelu_threshold"
WRITER_VERSION = "crosstime"  # the weights' {"version"} metadata: who wrote them (Llamascopium writes its own version)
HOOK = re.compile(r"blocks\.\d+\.hook_\w+")  # a TransformerLens hook point, e.g. blocks.6.hook_resid_post
CHECKPOINT_MARK = "@"
DEFAULT_WINDOW = 2.0  # CrosscoderConfig.jumprelu_threshold_window's default, written for ReLU (which ignores it)  # crosstime's hook point of one checkpoint: <hook>@<revision>


def _open(path: Path) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """(config file, weights file, state dict) of the save at ``path``."""
    if path.suffix == ".pt" and path.is_file():
        data = read_pt(path)
        if not isinstance(data.get("sae"), dict):
            raise CrosscoderError(f"{path} is not a Llamascopium checkpoint (a dict with the state dict under 'sae'); "
                                  f"it holds {sorted(data)}")
        return path.with_name(CONFIG), path, tensors_only(data["sae"], path)
    if path.is_dir() and path.suffix == ".dcp":
        raise CrosscoderError(f"{path} is a sharded .dcp checkpoint; load it in Llamascopium and save it unsharded "
                              f"({CONFIG} + {WEIGHTS}) first")
    require_files(path, [CONFIG, WEIGHTS], "a Llamascopium crosscoder")
    return path / CONFIG, path / WEIGHTS, read_safetensors(path / WEIGHTS)[1]


def _architecture(cfg: dict[str, Any], config_file: Path) -> tuple[list[str], int, int, str]:
    """(hook points, d, F, act_fn) from config.json, checked."""
    if cfg.get("sae_type") != "crosscoder":
        raise CrosscoderError(f"{config_file} has sae_type {cfg.get('sae_type')!r}, not 'crosscoder'; crosstime "
                              "imports Llamascopium crosscoders only")
    hooks = cfg.get("hook_points")
    if not (isinstance(hooks, list) and hooks and all(isinstance(h, str) for h in hooks)):
        raise CrosscoderError(f"{config_file}: hook_points is {hooks!r}, not a list of names (one per head)")
    for hook in hooks:
        check_hook(hook, config_file)
    d = config_int(cfg, "d_model", config_file)
    factor = cfg.get("expansion_factor")
    if not isinstance(factor, (int, float)) or factor <= 0:
        raise CrosscoderError(f"{config_file}: expansion_factor is {factor!r}, not a positive number")
    # d_sae as Llamascopium's SparseDictionaryConfig.d_sae computes it: int(d_model * expansion_factor)
    return hooks, d, int(d * factor), str(cfg.get("act_fn", "relu")).lower()


def check_hook(hook: str, config_file: Path) -> None:
    """``hook`` is a TransformerLens hook point (``blocks.{L}.hook_x``), optionally ``@revision``; else one error."""
    name, mark, revision = hook.partition(CHECKPOINT_MARK)
    why = None if HOOK.fullmatch(name) else "it is not a TransformerLens hook name (blocks.N.hook_...)"
    if why is None and mark:
        try:
            check_name(revision, "its revision")
        except UnsafeName as err:
            why = str(err)
    if why:
        raise CrosscoderError(f"{config_file}: hook point {hook!r} is refused: {why}; Llamascopium names each head by "
                              "its TransformerLens hook point, blocks.N.hook_... (crosstime writes blocks.N.hook_resid_post@REVISION)")


def _revision_of(hook: str) -> str:
    """The checkpoint a head reads: the revision after ``@``, else the hook point itself."""
    name, mark, revision = hook.partition(CHECKPOINT_MARK)
    return revision if mark else name


def _folded(tensors: dict[str, torch.Tensor], hooks: list[str], d: int) -> bool:
    """Whether the biases were divided by s_h (a folded save): ‖b_D[h]‖ > sqrt(d) at some head (too long
    for normalised activations, whose mean is shorter than their average norm sqrt(d)) while no head's
    is longer than its recorded raw average norm."""
    length = tensors["b_D"].double().norm(dim=-1)
    norms = [float(tensors[NORM_PREFIX + hp]) for hp in hooks]
    return bool((length > math.sqrt(d)).any()) and all(float(b) <= n for b, n in zip(length, norms))


def _refuse_unrepresentable(cfg: dict[str, Any], act: str, h: int, config_file: Path) -> None:
    if cfg.get("norm_activation", "dataset-wise") != "dataset-wise":
        raise CrosscoderError(
            f"{config_file} has norm_activation {cfg.get('norm_activation')!r}; crosstime imports 'dataset-wise' "
            "crosscoders (one input scale per head, sqrt(d_model)/dataset_average_activation_norm). An 'inference' "
            "save has its biases divided by per-head factors, which no per-checkpoint scale reproduces: save the "
            "crosscoder before standardize_parameters_of_dataset_norm")
    if cfg.get("sparsity_include_decoder_norm", True) is not True:
        raise CrosscoderError(f"{config_file} has sparsity_include_decoder_norm false, which Llamascopium's own "
                              "crosscoder refuses; this is not a crosscoder save")
    if act in ("topk", "batchtopk"):
        raise CrosscoderError(f"{config_file} has act_fn {act!r}: Llamascopium selects the top features per head on "
                              "z·‖W_D[h,i]‖, so different checkpoints keep different features; crosstime's TopK keeps one "
                              "set per token and cannot represent it exactly (ReLU, and JumpReLU with one head, can)")
    if act == "jumprelu" and h > 1:
        raise CrosscoderError(f"{config_file} has act_fn 'jumprelu' over {h} heads: Llamascopium gates each head at "
                              "z > θ_i/‖W_D[h,i]‖, so a feature can be on at one checkpoint and off at another; crosstime's "
                              "JumpReLU has one gate per feature, so importing it would change the model. Only "
                              "ReLU crosscoders (any number of heads) and one-head JumpReLU import exactly")
    if act not in ("relu", "jumprelu"):
        raise CrosscoderError(f"{config_file} has act_fn {act!r}; crosstime imports relu and (one-head) jumprelu")


@register_format
class LlamascopiumFormat(Format):
    name = "llamascopium"
    summary = "OpenMOSS Language-Model-SAEs crosscoder: config.json + sae_weights.safetensors"
    activations = frozenset({RELU, JUMPRELU})  # its act_fn relu and jumprelu (names as crosstime's rules')

    def read(self, path: Path, revisions: list[str] | None = None, scales: list[float] | None = None) -> Imported:
        config_file, weights, tensors = _open(path)
        cfg = read_json_object(config_file)
        hooks, d, F, act = _architecture(cfg, config_file)
        h = len(hooks)
        if "W_E" in tensors and tensors["W_E"].dim() == 3 and tuple(tensors["W_E"].shape) != (h, d, F):
            raise disagree(config_file, "[heads, d_model, d_sae]", [h, d, F], list(tensors["W_E"].shape), weights)
        _refuse_unrepresentable(cfg, act, h, config_file)
        want = {"W_E": (h, d, F), "b_E": (h, F), "W_D": (h, F, d), "b_D": (h, d),
                **{NORM_PREFIX + hp: () for hp in hooks}}
        if act == "jumprelu":
            want[LOG_THRESHOLD] = (F,)
        check_shapes(tensors, want, weights, config_file)
        names = pick_revisions([_revision_of(hp) for hp in hooks], revisions, h, str(config_file))
        recorded = [scale_from_norm(d, float(tensors[NORM_PREFIX + hp]), f"{weights}: {NORM_PREFIX + hp}")
                    for hp in hooks]
        chosen = pick_scales(recorded, scales, h, f"{weights} (dataset_average_activation_norm)")
        notes = [f"input scales s_m = sqrt({d}) / dataset_average_activation_norm; b_enc = Σ_h b_E[h]"]
        b_E, b_D = tensors["b_E"], tensors["b_D"]
        if _folded(tensors, hooks, d):  # undo standardize_parameters_of_dataset_norm: biases times s_h
            s = torch.tensor(recorded, dtype=torch.float64).view(h, 1)
            b_E, b_D = (b_E.double() * s).float(), (b_D.double() * s).float()
            notes.append("folded save (its decoder bias is longer than sqrt(d_model) but not than the recorded norms): "
                         "b_E[h] and b_D[h] multiplied back by s_h, the crosscoder as trained")
        ours = {"W_enc": tensors["W_E"], "b_enc": b_E.sum(0), "W_dec": tensors["W_D"].permute(1, 0, 2), "b_dec": b_D}
        if act == "jumprelu":
            # one head: f = z·H(z·n − θ) = z·H(z − θ/n), a JumpReLU with threshold θ/n (n = ‖W_D[0,i]‖)
            n = tensors["W_D"][0].double().norm(dim=-1)
            ours["log_threshold"] = (tensors[LOG_THRESHOLD].double() - n.log()).float()  # log(θ_i / n_i)
            model = assemble("jumprelu", ours, names, chosen, str(weights))
            notes.append("JumpReLU with one head: threshold θ_i/‖W_D[0,i]‖ (Llamascopium gates z·‖W_D‖ at θ)")
        else:
            model = assemble("relu", ours, names, chosen, str(weights))
            notes.append("ReLU: Llamascopium's per-head ReLU(z·‖W_D‖)/‖W_D‖ is one shared ReLU(z), exactly")
        source = {"format": self.name, "weights": str(weights), "config": str(config_file), "hook_points": hooks}
        return Imported(model, notes, source)

    def write(self, model: Crosscoder, out: Path, info: ExportInfo) -> list[Path]:

        rule = self.check_supports(model)
        c, m = model.config, model.unfolded()
        if rule == JUMPRELU and c.n_checkpoints > 1:
            raise CrosscoderError(f"Llamascopium activates each checkpoint (head) separately on z·‖W_D[h,i]‖, which "
                                  f"equals crosstime's {c.variant} crosscoder over {c.n_checkpoints} checkpoints only for "
                                  "ReLU (and one-checkpoint JumpReLU); export it as hub, cct or dictionary-learning")
        M, d, F = c.n_checkpoints, c.d_model, c.n_features
        hooks = _hook_points(info, list(c.revisions or [f"checkpoint{i}" for i in range(M)]))
        if int(d * (F / d)) != F:  # Llamascopium's d_sae = int(d_model * expansion_factor)
            raise CrosscoderError(f"Llamascopium derives d_sae as int(d_model * expansion_factor), which gives "
                                  f"{int(d * (F / d))}, not {F}, for d_model {d}; it cannot hold this crosscoder")
        b_E = torch.zeros(M, F)
        b_E[0] = m.b_enc.detach()  # the heads' biases are summed: all of it on the first head
        state = {"W_E": m.W_enc.detach().clone(), "b_E": b_E, "W_D": m.W_dec.detach().permute(1, 0, 2).contiguous(),
                 "b_D": m.b_dec.detach().clone()}
        for hp, s in zip(hooks, c.scales or [1.0] * M):
            state[NORM_PREFIX + hp] = torch.tensor(norm_from_scale(d, s), dtype=torch.float32)
        if rule == JUMPRELU:
            n = m.W_dec.detach()[:, 0].double().norm(dim=-1)
            state[LOG_THRESHOLD] = (m.threshold.detach().double() * n).log().float()
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in state.items()}, str(out / WEIGHTS), metadata={"version": WRITER_VERSION})
        # the STE width only matters to further training; unset (never trained) or ReLU: the class's default
        window = float((c.variant_config.jumprelu_bandwidth if rule == JUMPRELU else None) or DEFAULT_WINDOW)
        write_json(out / CONFIG, _config(hooks, d, F, rule.name, window))
        return [out / CONFIG, out / WEIGHTS]


def _hook_points(info: ExportInfo, revisions: list[str]) -> list[str]:
    """One hook point per checkpoint, ``<the site's TransformerLens hook>@<revision>``."""
    if info.hook_name is None or not HOOK.fullmatch(info.hook_name):
        raise CrosscoderError(f"Llamascopium names each head by its TransformerLens hook point; the site's is "
                              f"{info.hook_name!r}: export a run with an activation store (crosstime export), or pass "
                              "ExportInfo(hook_name='blocks.L.hook_resid_post')")
    return [f"{info.hook_name}{CHECKPOINT_MARK}{rev}" for rev in revisions]


def _config(hooks: list[str], d: int, F: int, act_fn: str, window: float) -> dict[str, Any]:
    """config.json: every field of Llamascopium's CrosscoderConfig (models/crosscoder.py, with
    SparseDictionaryConfig's in models/sparse_dictionary.py, 2.0.0b34), with the type it declares."""
    return {"sae_type": "crosscoder", "d_model": d, "expansion_factor": F / d, "use_decoder_bias": True,
            "act_fn": act_fn, "norm_activation": "dataset-wise", "sparsity_include_decoder_norm": True,
            "top_k": 50, "use_triton_kernel": False, "sparsity_threshold_for_triton_spmm_kernel": 0.996,
            "jumprelu_threshold_window": window, "hook_points": hooks}
