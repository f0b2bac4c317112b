"""The first paper's format (Crosscoding Through Time; ckkissane's crosscoder-model-diff-replication).

Files: a torch state dict ``{k}.pt`` beside ``{k}_cfg.json`` (one pair per save; the largest
k is the final crosscoder), or on the Hub ``<hook>/cfg.json`` + ``<hook>/cc_weights.pt``.

Tensors (same names and shapes as crosstime): ``W_enc [M, d, F]``, ``W_dec [F, M, d]``,
``b_enc [F]``, ``b_dec [M, d]``; the BatchTopK crosscoder adds the buffers ``k`` (int32 scalar)
and ``threshold`` (float32 scalar, compared with ``ReLU(z_i) · Σ_m ‖W_dec[i,m]‖``: crosstime's
batchtopk with ``l1_norm = "sum"``). Config: ``n_models`` (M), ``d_in`` (d), ``dict_size`` (F),
``revision_list`` (joined with ``-``, OLMo's with ``_``), ``estimated_act_norm_list`` (one per
model; activations are multiplied by ``sqrt(d_in) / norm_m``, so ``s_m = sqrt(d) / norm_m``).
"""

from __future__ import annotations

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
    norm_from_scale,
    pick_revisions,
    pick_scales,
    read_json_object,
    read_pt,
    register_format,
    scale_from_norm,
    tensors_only,
    training_setting,
)

HUB_CONFIG, HUB_WEIGHTS = "cfg.json", "cc_weights.pt"
NUMBERED = re.compile(r"^(?P<k>[0-9]+)\.pt$")


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


@register_format
class CCTFormat(Format):
    name = "cct"
    summary = "the first paper's code: {k}.pt + {k}_cfg.json, or the Hub layout cfg.json + cc_weights.pt"
    activations = frozenset({RELU, BATCHTOPK})  # its ReLU and BatchTopK crosscoders

    def read(self, path: Path, revisions: list[str] | None = None, scales: list[float] | None = None) -> Imported:
        weights, config_file = _locate(path)
        cfg = read_json_object(config_file)
        tensors = tensors_only(read_pt(weights), weights)
        M, d, F = (config_int(cfg, k, config_file) for k in ("n_models", "d_in", "dict_size"))
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
        norms = cfg.get("estimated_act_norm_list")
        recorded = [scale_from_norm(d, n, f"{where}: estimated_act_norm_list") for n in norms] if isinstance(norms, list) else None
        chosen = pick_scales(recorded, scales, M, where)
        ours = {k: tensors[k] for k in ("W_enc", "W_dec", "b_enc", "b_dec")}
        notes = [f"input scales s_m = sqrt({d}) / estimated_act_norm_list" if recorded else "input scales from --scales"]
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
        state = {k: params[k].detach().clone().contiguous() for k in ("W_enc", "W_dec", "b_enc", "b_dec")}
        if batchtopk:
            state["k"] = torch.tensor(m.k, dtype=torch.int32)
            state["threshold"] = m.threshold.detach().clone().to(torch.float32)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(state, out / "0.pt")
        write_json(out / "0_cfg.json", _config(model, info, m.k if batchtopk else None))
        return [out / "0.pt", out / "0_cfg.json"]


def _config(model: Crosscoder, info: ExportInfo, k: int | None) -> dict[str, Any]:
    """Every key the reference's cfg has; training settings from crosstime's record where they map.
    ``k``: a BatchTopK's (None for ReLU)."""
    c, t = model.config, info.training
    revisions = c.revisions or [f"checkpoint{m}" for m in range(c.n_checkpoints)]
    scales = c.scales or [1.0] * c.n_checkpoints
    batchtopk = k is not None
    cfg = {
        "dict_size": c.n_features, "d_in": c.d_model, "n_models": c.n_checkpoints, "enc_dtype": "fp32",
        "seed": t.get("seed", c.seed), "dec_init_norm": c.dec_init_norm,
        "l1_coeff": t.get("sparsity_coeff"), "l1_warmup_pct": t.get("sparsity_warmup_frac"), "lr": t.get("lr"),
        "beta1": (t.get("adam_betas") or [None, None])[0], "beta2": (t.get("adam_betas") or [None, None])[1],
        "batch_size": t.get("batch_size"), "num_tokens": t.get("tokens"), "seq_len": info.context_len,
        "model_name": info.model_name, "revision_list": join_revisions(revisions), "hook_point": info.hook_name,
        "site": info.site, "estimated_act_norm_list": [norm_from_scale(c.d_model, s) for s in scales],
        "remove_bos": True, "batch_topk_init": training_setting(t, "k_init") or k if batchtopk else None,
        "batch_topk_final": k, "topk_annealing_steps": training_setting(t, "k_anneal_steps"),
        "threshold_start_step": training_setting(t, "threshold_start_step"),
        "threshold_beta": training_setting(t, "threshold_beta"), "auxk_alpha": training_setting(t, "auxk_coeff"),
        "dead_feature_threshold": t.get("dead_tokens"),
    }
    return cfg
