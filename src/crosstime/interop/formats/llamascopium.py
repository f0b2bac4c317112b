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
"""

from __future__ import annotations

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

CONFIG, WEIGHTS = "config.json", "sae_weights.safetensors"
NORM_PREFIX = "dataset_average_activation_norm."
LOG_THRESHOLD = "activation_function.log_jumprelu_threshold"
WRITER_VERSION = "crosstime"  # the weights' {"version"} metadata: who wrote them (Llamascopium writes its own version)


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
    d = config_int(cfg, "d_model", config_file)
    factor = cfg.get("expansion_factor")
    if not isinstance(factor, (int, float)) or factor <= 0:
        raise CrosscoderError(f"{config_file}: expansion_factor is {factor!r}, not a positive number")
    return hooks, d, int(round(d * factor)), str(cfg.get("act_fn", "relu")).lower()


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
        names = pick_revisions(hooks, revisions, h, str(config_file))
        recorded = [scale_from_norm(d, float(tensors[NORM_PREFIX + hp]), f"{weights}: {NORM_PREFIX + hp}") for hp in hooks]
        chosen = pick_scales(recorded, scales, h, f"{weights} (dataset_average_activation_norm)")
        ours = {"W_enc": tensors["W_E"], "b_enc": tensors["b_E"].sum(0), "W_dec": tensors["W_D"].permute(1, 0, 2),
                "b_dec": tensors["b_D"]}
        notes = [f"input scales s_m = sqrt({d}) / dataset_average_activation_norm; b_enc = Σ_h b_E[h]"]
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
        hooks = list(c.revisions or [f"checkpoint{i}" for i in range(M)])
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
        write_json(out / CONFIG, {
            "sae_type": "crosscoder", "hook_points": hooks, "d_model": d,
            "expansion_factor": F // d if F % d == 0 else F / d, "act_fn": rule.name, "norm_activation": "dataset-wise",
            "sparsity_include_decoder_norm": True, "use_decoder_bias": True,
            "jumprelu_threshold_window": c.variant_config.jumprelu_bandwidth if rule == JUMPRELU else None})
        return [out / CONFIG, out / WEIGHTS]
