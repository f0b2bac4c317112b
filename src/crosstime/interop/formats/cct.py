"""The first paper's format (Crosscoding Through Time, bayazitdeniz/crosscoding-through-time; its
crosscoder is ckkissane/crosscoder-model-diff-replication's, generalised to n models).

Files: a torch state dict ``{k}.pt`` beside ``{k}_cfg.json`` (``CrossCoder.save`` in
``crosscoder.py``: ``torch.save(self.state_dict())`` and ``json.dump(self.cfg)``; the largest k is
the final crosscoder), or the Hub layout ``<hook>/cfg.json`` + ``<hook>/cc_weights.pt`` that
``CrossCoder.load_from_hf`` reads (ckkissane's two-model crosscoders: no ``n_models``,
``revision_list`` or ``estimated_act_norm_list`` in its cfg).

Tensors (same names and shapes as crosstime): ``W_enc [M, d, F]``, ``W_dec [F, M, d]``,
``b_enc [F]``, ``b_dec [M, d]``, float32 (``enc_dtype`` "fp32"); ``BatchTopKCrossCoder`` adds the
buffers ``k`` (int32 scalar) and ``threshold`` (float32 scalar; in eval mode a feature is kept where
``ReLU(z_i) · Σ_m ‖W_dec[i,m]‖ > threshold``: crosstime's batchtopk with ``l1_norm = "sum"``).

Config: ``n_models`` (M), ``d_in`` (d), ``dict_size`` (F), ``revision_list`` (joined with ``-``,
OLMo's with ``_``), ``estimated_act_norm_list``: despite the name, the per-model *scaling factors*
``sqrt(d_in) / mean ‖x_m‖`` (``buffer.py`` ``BufferNNSight.estimate_act_norm`` returns them,
``BufferNNSight.next`` multiplies activations by them, ``trainer.py``
``fold_activation_scaling_factor`` multiplies ``W_enc[m]`` by them), so crosstime's
``s_m = estimated_act_norm_list[m]`` exactly. ``hook_point``: the layer is
``int(hook_point.split(".")[1]) - 1`` and the site that layer's block output (``buffer.py``
``refresh``: ``gpt_neox.layers[LAYER].output``), so crosstime's layer L is ``blocks.{L+1}.hook_resid_pre``.
``CrossCoder.__init__`` reads ``dict_size``, ``d_in``, ``n_models``, ``enc_dtype``, ``seed``,
``dec_init_norm`` and ``device``; ``BatchTopKCrossCoder.__init__`` also ``batch_topk_init``;
``test_crosscoder_revision.py`` ``load_crosscoder`` picks the BatchTopK class where
``batch_topk_final`` is not null.
"""

from __future__ import annotations

import math

import re
from pathlib import Path
from typing import Any

import torch

from crosstime.crosscoder import BATCHTOPK, RELU, Crosscoder, CrosscoderError
from crosstime.files import write_json
from crosstime.interop.formats.base import (
    ExportInfo,
    Format,
    Imported,
    assemble,
    check_shapes,
    config_int,
    disagree,
    pick_revisions,
    pick_scales,
    read_json_object,
    read_pt,
    register_format,
    tensors_only,
    training_setting,
)

HUB_CONFIG, HUB_WEIGHTS = "cfg.json", "cc_weights.pt"
NUMBERED = re.compile(r"^(?P<k>[0-9]+)\.pt$")
SIZE_KEYS = {"n_models": 1, "d_in": 2, "dict_size": 0}  # cfg key -> its axis in W_dec [F, M, d]


def _locate(path: Path) -> tuple[Path, Path]:
    """(weights, config) of the save at ``path``: a ``.pt`` file, or a folder with one save."""
    if path.is_file():
        config = path.with_name(HUB_CONFIG) if path.name == HUB_WEIGHTS else path.with_name(f"{path.stem}_cfg.json")
        return path, config
    if not path.is_dir():
        raise CrosscoderError(f"{path} does not exist; give the {{k}}.pt file of the save, or its folder")
    if (path / HUB_CONFIG).is_file() or (path / HUB_WEIGHTS).is_file():
        return path / HUB_WEIGHTS, path / HUB_CONFIG
    saves = sorted((int(m["k"]), p) for p in path.iterdir() if (m := NUMBERED.match(p.name)))
    if not saves:
        raise CrosscoderError(f"{path} holds no save of the first paper's code (neither {{k}}.pt + {{k}}_cfg.json nor "
                              f"{HUB_CONFIG} + {HUB_WEIGHTS}); point at the checkpoints folder of the run")
    if len(saves) > 1:
        raise CrosscoderError(f"{path} holds {len(saves)} saves ({saves[0][1].name} … {saves[-1][1].name}); name one, "
                              f"e.g. {saves[-1][1]} (the last save is the final crosscoder)")
    return saves[0][1], saves[0][1].with_name(f"{saves[0][0]}_cfg.json")


def split_revisions(recorded: Any, M: int) -> list[str] | None:
    """``revision_list`` as M names: a list, or a string joined with ``-`` (OLMo's with ``_``)."""
    if isinstance(recorded, list) and all(isinstance(r, str) for r in recorded):
        return recorded
    if isinstance(recorded, str):
        for sep in ("-", "_"):
            parts = recorded.split(sep)
            if len(parts) == M:
                return parts
    return None


def join_revisions(revisions: list[str]) -> str | list[str]:
    for sep in ("-", "_"):
        if not any(sep in r for r in revisions):
            return sep.join(revisions)
    return list(revisions)  # names with both separators: a list, which the reader also accepts


def cct_layer(hook_point: Any) -> int | None:
    """The layer CCT's buffer reads from ``hook_point``: ``int(hook_point.split(".")[1]) - 1`` (None when
    the name has no integer there, where CCT's own code would fail)."""
    parts = hook_point.split(".") if isinstance(hook_point, str) else []
    return int(parts[1]) - 1 if len(parts) > 1 and parts[1].isdigit() else None


def cct_hook_point(layer: int) -> str:
    """CCT's name for the output of block ``layer`` (crosstime's site): ``blocks.{layer + 1}.hook_resid_pre``."""
    return f"blocks.{layer + 1}.hook_resid_pre"


def _sizes(cfg: dict[str, Any], tensors: dict[str, torch.Tensor], weights: Path, config_file: Path) -> tuple[int, ...]:
    """(M, d, F): from ``W_dec [F, M, d]``, checked against the cfg's ``n_models``, ``d_in``, ``dict_size``
    where it has them (the Hub layout's cfg has no ``n_models``: ckkissane's crosscoder hard-codes 2)."""
    if "W_dec" not in tensors or tensors["W_dec"].dim() != 3:
        raise CrosscoderError(f"{weights} has no 3-d W_dec [F, M, d] (it holds {sorted(tensors)}); it is not a save "
                              "of the first paper's crosscoder")
    shape = tuple(tensors["W_dec"].shape)
    for key, axis in SIZE_KEYS.items():
        if key in cfg and config_int(cfg, key, config_file) != shape[axis]:
            raise disagree(config_file, key, cfg[key], f"W_dec {list(shape)}", weights)
    F, M, d = shape
    return M, d, F


def _scales(cfg: dict[str, Any], given: list[float] | None, M: int, where: str) -> list[float]:
    """s_m = ``estimated_act_norm_list[m]`` (CCT's scaling factors, see the module docstring), or ``given``
    (``--scales``) where the cfg has none (the Hub layout)."""
    recorded = cfg.get("estimated_act_norm_list")
    if recorded is None and given is None:
        raise CrosscoderError(f"{where} does not record the scaling factors its activations were multiplied by "
                              "(ckkissane's Hub cfg never does); pass them with --scales S1,S2,... one per model: "
                              "sqrt(d_in) / mean activation norm, the factor its buffer's estimate_norm_scaling_factor "
                              "computed")
    if recorded is not None and not (isinstance(recorded, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in recorded)):
        raise CrosscoderError(f"{where}: estimated_act_norm_list is {recorded!r}, not a list of finite positive numbers "
                              "(one scaling factor per model); the file is damaged: restore it from a copy, or pass "
                              "the factors with --scales")
    return pick_scales([float(v) for v in recorded] if recorded is not None else None, given, M, where)


@register_format
class CCTFormat(Format):
    name = "cct"
    summary = "the first paper's code: {k}.pt + {k}_cfg.json, or the Hub layout cfg.json + cc_weights.pt"
    activations = frozenset({RELU, BATCHTOPK})  # its ReLU and BatchTopK crosscoders

    def read(self, path: Path, revisions: list[str] | None = None, scales: list[float] | None = None) -> Imported:
        weights, config_file = _locate(path)
        cfg = read_json_object(config_file)
        tensors = tensors_only(read_pt(weights), weights)
        M, d, F = _sizes(cfg, tensors, weights, config_file)
        batchtopk = "threshold" in tensors or "k" in tensors
        want = {"W_enc": (M, d, F), "W_dec": (F, M, d), "b_enc": (F,), "b_dec": (M, d)}
        if batchtopk:
            want.update({"k": (), "threshold": ()})
        check_shapes(tensors, want, weights, config_file)
        extra = sorted(set(tensors) - set(want))
        if extra:
            raise CrosscoderError(f"{weights} holds tensors {extra} that the first paper's crosscoders do not have; it "
                                  "is another model's state dict")
        where = f"{config_file}"
        names = pick_revisions(split_revisions(cfg.get("revision_list"), M), revisions, M, where)
        chosen = _scales(cfg, scales, M, where)
        ours = {k: tensors[k] for k in ("W_enc", "W_dec", "b_enc", "b_dec")}
        notes = ["input scales s_m = estimated_act_norm_list (CCT's scaling factors)"
                 if "estimated_act_norm_list" in cfg and cfg["estimated_act_norm_list"] is not None
                 else "input scales from --scales"]
        if batchtopk:
            ours["threshold"] = tensors["threshold"].to(torch.float32)
            model = assemble("batchtopk", ours, names, chosen, str(weights), l1_norm="sum",
                             variant_config={"k": int(tensors["k"])})
            notes.append(f"BatchTopK: k = {int(tensors['k'])}, inference threshold {float(tensors['threshold']):.6g} "
                         "on ReLU(z)·Σ_m‖W_dec[i,m]‖ (the reference's rule, unchanged)")
        else:
            model = assemble("relu", ours, names, chosen, str(weights))
        source = {"format": self.name, "weights": str(weights), "config": str(config_file),
                  **{k: cfg.get(k) for k in ("model_name", "hook_point", "site") if k in cfg}}
        layer = cct_layer(cfg.get("hook_point"))
        if layer is not None:
            source["layer"] = layer
            notes.append(f"layer {layer}: CCT's int(hook_point.split('.')[1]) - 1 of {cfg['hook_point']!r}")
        return Imported(model, notes, source)

    def write(self, model: Crosscoder, out: Path, info: ExportInfo) -> list[Path]:
        batchtopk = self.check_supports(model) == BATCHTOPK
        c = model.config
        if batchtopk and c.l1_norm != "sum":
            raise CrosscoderError("the first paper's BatchTopK compares its threshold with Σ_m ‖W_dec[i,m]‖, but this "
                                  "crosscoder ranks by the concatenated norm (l1_norm = concat): its features would "
                                  "change; export it as dictionary-learning (code normalization SAE) instead")
        m = model.unfolded()
        params = m.state_dict()
        state = {k: params[k].detach().clone().to(torch.float32).contiguous()
                 for k in ("W_enc", "W_dec", "b_enc", "b_dec")}
        if batchtopk:
            state["k"] = torch.tensor(m.k, dtype=torch.int32)
            state["threshold"] = m.threshold.detach().clone().to(torch.float32)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(state, out / "0.pt")
        write_json(out / "0_cfg.json", _config(model, info, m.k if batchtopk else None))
        return [out / "0.pt", out / "0_cfg.json"]


def _config(model: Crosscoder, info: ExportInfo, k: int | None) -> dict[str, Any]:
    """Every key the reference's cfg has (``train_crosscoder_revision.py`` ``default_cfg``); training settings
    from crosstime's record where they map. ``k``: a BatchTopK's (None for ReLU). ``device`` is "cpu":
    ``CrossCoder.__init__`` moves the model there (its ``load_from_hf`` takes another)."""
    c, t = model.config, info.training
    revisions = c.revisions or [f"checkpoint{m}" for m in range(c.n_checkpoints)]
    scales = c.scales or [1.0] * c.n_checkpoints
    batchtopk = k is not None
    betas = t.get("adam_betas") or [None, None]
    return {
        "dict_size": c.n_features, "d_in": c.d_model, "n_models": c.n_checkpoints, "enc_dtype": "fp32",
        "seed": int(t.get("seed", c.seed)), "dec_init_norm": float(c.dec_init_norm), "device": "cpu",
        "l1_coeff": t.get("sparsity_coeff"), "l1_warmup_pct": t.get("sparsity_warmup_frac"), "lr": t.get("lr"),
        "beta1": betas[0], "beta2": betas[1], "batch_size": t.get("batch_size"), "num_tokens": t.get("tokens"),
        "seq_len": info.context_len, "model_name": info.model_name, "revision_list": join_revisions(revisions),
        "hook_point": cct_hook_point(info.layer) if info.layer is not None else None,
        "site": "resid_pre" if info.layer is not None else None,
        "estimated_act_norm_list": [float(s) for s in scales], "remove_bos": True,
        "batch_topk_init": training_setting(t, "k_init") or k if batchtopk else None,
        "batch_topk_final": k, "topk_annealing_steps": training_setting(t, "k_anneal_steps"),
        "threshold_start_step": training_setting(t, "threshold_start_step"),
        "threshold_beta": training_setting(t, "threshold_beta"), "auxk_alpha": training_setting(t, "auxk_coeff"),
        "dead_feature_threshold": t.get("dead_tokens"),
    }
