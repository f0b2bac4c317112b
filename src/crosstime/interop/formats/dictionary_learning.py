"""dictionary_learning's CrossCoder (the science-of-finetuning fork used for model diffing).

Files: ``model.safetensors`` + ``config.json`` (PyTorchModelHubMixin: the constructor's keyword
arguments: ``activation_dim``, ``dict_size``, ``num_layers``, ``code_normalization``, and ``k``
for BatchTopK), or a local ``.pt`` state dict (keys may carry ``_orig_mod.`` from torch.compile).

Tensors: ``encoder.weight [L, d, F]``, ``encoder.bias [F]``, ``decoder.weight [L, F, d]``,
``decoder.bias [L, d]``, ``code_normalization_id`` (CROSSCODER=1, SAE=2, MIXED=3, NONE=4,
DECOUPLED=5); BatchTopK adds ``k`` and ``threshold``. Its ReLU encoder is
``f = ReLU(Σ_l x_l W_enc[l] + b_enc)``; BatchTopK's inference keeps ``f`` where
``f · c_i > threshold`` with ``c_i`` the code normalisation: ``Σ_l ‖W_dec[l,i]‖`` (CROSSCODER,
crosstime's ``l1_norm = "sum"``) or ``‖W_dec[:,i]‖`` (SAE, ``"concat"``). The other
normalisations and a per-layer (decoupled) threshold have no crosstime equivalent and are
refused; so are the input normalisers (``activation_mean``/``activation_std``/``target_rms``),
since crosstime scales each checkpoint by one number.

The format records neither the checkpoints' names nor input scales: give ``--revisions`` and
``--scales`` (a crosstime export adds ``crosstime.json`` holding both, which this reader uses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

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
    read_safetensors,
    register_format,
    require_files,
    tensors_only,
)

CONFIG, WEIGHTS, SIDECAR = "config.json", "model.safetensors", "crosstime.json"
CODE_NORMALIZATION = {1: "CROSSCODER", 2: "SAE", 3: "MIXED", 4: "NONE", 5: "DECOUPLED"}
L1_NORM = {"CROSSCODER": "sum", "SAE": "concat"}
NORMALISERS = ("activation_mean", "activation_std", "target_rms")
COMPILE_PREFIX = "_orig_mod."


def _open(path: Path) -> tuple[dict[str, Any] | None, Path, Path | None, dict[str, torch.Tensor]]:
    """(config or None, weights file, config file or None, state dict) of the save at ``path``."""
    if path.is_file() and path.suffix == ".pt":
        tensors = tensors_only(read_pt(path), path)
        return None, path, None, {k.removeprefix(COMPILE_PREFIX): v for k, v in tensors.items()}
    require_files(path, [CONFIG, WEIGHTS], "a dictionary_learning crosscoder (or give its .pt file)")
    return read_json_object(path / CONFIG), path / WEIGHTS, path / CONFIG, read_safetensors(path / WEIGHTS)[1]


def _normalization(tensors: dict[str, torch.Tensor], cfg: dict[str, Any] | None, weights: Path) -> str:
    if "code_normalization_id" in tensors:
        name = CODE_NORMALIZATION.get(int(tensors["code_normalization_id"]))
        if name is None:
            raise CrosscoderError(f"{weights}: code_normalization_id {int(tensors['code_normalization_id'])} is none of "
                                  f"{CODE_NORMALIZATION}")
        return name
    return str((cfg or {}).get("code_normalization", "CROSSCODER")).upper()


def _refuse_unrepresentable(tensors: dict[str, torch.Tensor], cfg: dict[str, Any] | None, norm: str,
                            batchtopk: bool, weights: Path) -> None:
    normalisers = [k for k in NORMALISERS if k in tensors or (cfg or {}).get(k) is not None]
    if normalisers:
        raise CrosscoderError(f"{weights} normalises its inputs with {normalisers}; crosstime scales each checkpoint by "
                              "one number s_m, so it cannot apply a mean/std per dimension. Fold the normaliser into "
                              "the weights in dictionary_learning first, then import")
    if batchtopk and norm not in L1_NORM:
        raise CrosscoderError(f"{weights} is a BatchTopK crosscoder with code normalization {norm}; crosstime's "
                              "BatchTopK ranks by the decoder norms summed over checkpoints (CROSSCODER) or of the "
                              "concatenation (SAE) only, so its features would change")
    if batchtopk and tensors["threshold"].numel() != 1:
        raise CrosscoderError(f"{weights} has a per-layer (decoupled) BatchTopK threshold; crosstime has one threshold "
                              "per crosscoder and cannot represent it")
    if cfg is not None and cfg.get("encoder_layers") not in (None, list(range(tensors["encoder.weight"].shape[0]))):
        raise CrosscoderError(f"{weights} encodes only layers {cfg.get('encoder_layers')}; crosstime's crosscoders "
                              "encode every checkpoint they decode")


def _sidecar(weights: Path) -> dict[str, Any]:
    side = weights.with_name(SIDECAR)
    return read_json_object(side) if side.is_file() else {}


@register_format
class DictionaryLearningFormat(Format):
    name = "dictionary-learning"
    summary = "dictionary_learning CrossCoder (science-of-finetuning): model.safetensors + config.json, or its .pt"
    activations = frozenset({RELU, BATCHTOPK})  # its CrossCoder and BatchTopKCrossCoder

    def read(self, path: Path, revisions: list[str] | None = None, scales: list[float] | None = None) -> Imported:
        cfg, weights, config_file, tensors = _open(path)
        if "encoder.weight" not in tensors or tensors["encoder.weight"].dim() != 3:
            raise CrosscoderError(f"{weights} has no encoder.weight [L, d, F]; it is not a dictionary_learning "
                                  f"crosscoder (it holds {sorted(tensors)[:8]})")
        L, d, F = tensors["encoder.weight"].shape
        if cfg is not None:
            for key, found in (("num_layers", L), ("activation_dim", d), ("dict_size", F)):
                if config_int(cfg, key, config_file) != found:
                    raise disagree(config_file, key, cfg[key], found, weights)
        batchtopk = "threshold" in tensors or "k" in tensors
        want = {"encoder.weight": (L, d, F), "encoder.bias": (F,), "decoder.weight": (L, F, d), "decoder.bias": (L, d),
                "code_normalization_id": ()}
        if batchtopk:
            want["k"] = ()
        norm = _normalization(tensors, cfg, weights)
        _refuse_unrepresentable(tensors, cfg, norm, batchtopk, weights)
        if batchtopk:
            want["threshold"] = ()
        check_shapes(tensors, want, weights, config_file or weights, optional=frozenset({"code_normalization_id"}))
        side = _sidecar(weights)
        names = pick_revisions(side.get("revisions"), revisions, L, str(weights))
        chosen = pick_scales(side.get("scales"), scales, L, str(weights))
        ours = {"W_enc": tensors["encoder.weight"], "b_enc": tensors["encoder.bias"],
                "W_dec": tensors["decoder.weight"].permute(1, 0, 2), "b_dec": tensors["decoder.bias"]}
        l1_norm = L1_NORM.get(norm, "sum")
        notes = ["input scales from " + (SIDECAR if side.get("scales") else "--scales")]
        if batchtopk:
            ours["threshold"] = tensors["threshold"].reshape(()).to(torch.float32)
            model = assemble("batchtopk", ours, names, chosen, str(weights), l1_norm=l1_norm,
                             variant_config={"k": int(tensors["k"])})
            notes.append(f"BatchTopK ({norm}): k = {int(tensors['k'])}, threshold {float(tensors['threshold']):.6g}")
        else:
            model = assemble("relu", ours, names, chosen, str(weights), l1_norm=l1_norm)
            if norm not in L1_NORM:
                notes.append(f"code normalization {norm} weights only the training loss; the ReLU encoder is exact "
                             "(recorded here as l1_norm = sum)")
        return Imported(model, notes, {"format": self.name, "weights": str(weights), "code_normalization": norm,
                                       **({"config": str(config_file)} if config_file else {})})

    def write(self, model: Crosscoder, out: Path, info: ExportInfo) -> list[Path]:

        batchtopk = self.check_supports(model) == BATCHTOPK
        c, m = model.config, model.unfolded()
        norm = {v: k for k, v in L1_NORM.items()}[c.l1_norm]
        ids = {v: k for k, v in CODE_NORMALIZATION.items()}
        state = {"encoder.weight": m.W_enc.detach().clone(), "encoder.bias": m.b_enc.detach().clone(),
                 "decoder.weight": m.W_dec.detach().permute(1, 0, 2).contiguous(),
                 "decoder.bias": m.b_dec.detach().clone(), "code_normalization_id": torch.tensor(ids[norm])}
        config: dict[str, Any] = {"activation_dim": c.d_model, "dict_size": c.n_features,
                                  "num_layers": c.n_checkpoints, "code_normalization": norm}
        if batchtopk:
            state["k"] = torch.tensor(m.k, dtype=torch.int32)
            state["threshold"] = m.threshold.detach().clone().to(torch.float32)
            config["k"] = m.k
        out.mkdir(parents=True, exist_ok=True)
        save_file(state, str(out / WEIGHTS), metadata={"format": "pt"})
        write_json(out / CONFIG, config)
        # dictionary_learning records neither; its from_pretrained ignores this file
        write_json(out / SIDECAR, {"revisions": c.revisions, "scales": c.scales, "site": info.site,
                                   "model_name": info.model_name})
        return [out / CONFIG, out / WEIGHTS, out / SIDECAR]
