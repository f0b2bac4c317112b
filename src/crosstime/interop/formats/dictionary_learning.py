"""dictionary_learning's CrossCoder (the science-of-finetuning fork used for model diffing).

Source read: github.com/science-of-finetuning/dictionary_learning at 173f7fa (2025-07-28),
``dictionary_learning/dictionary.py`` (``NormalizableMixin``, ``CrossCoder``,
``BatchTopKCrossCoder``) and ``training.py`` (``save_model``).

Files: ``model.safetensors`` + ``config.json`` (PyTorchModelHubMixin's ``save_pretrained``: the
constructor's keyword arguments: ``activation_dim``, ``dict_size``, ``num_layers``,
``code_normalization``, and ``k`` for BatchTopK), or the trainer's ``model_final.pt``
(``th.save(model.state_dict())``; keys may carry ``_orig_mod.`` from torch.compile).

Tensors: ``encoder.weight [L, d, F]``, ``encoder.bias [F]``, ``decoder.weight [L, F, d]``,
``decoder.bias [L, d]``, ``code_normalization_id`` (CROSSCODER=1, SAE=2, MIXED=3, NONE=4,
DECOUPLED=5); BatchTopK adds ``k`` and ``threshold``. Its ReLU encoder is
``f = ReLU(Σ_l x_l W_enc[l] + b_enc)``; BatchTopK's inference keeps ``f`` where
``f · c_i > threshold`` with ``c_i`` the code normalisation: ``Σ_l ‖W_dec[l,i]‖`` (CROSSCODER,
crosstime's ``l1_norm = "sum"``) or ``‖W_dec[:,i]‖`` (SAE, ``"concat"``). The other
normalisations and a per-layer (decoupled) threshold have no crosstime equivalent and are refused.

Input normaliser (``NormalizableMixin``, since 2025-06-11; every instance registers the buffers
``activation_mean [L, d]``, ``activation_std [L, d]``, ``target_rms []`` and
``activation_global_scale [L]``, and the loaders load them strictly). It is off when mean or std
holds a NaN (``has_activation_normalizer``); on, the CrossCoder classes (``keep_relative_variance``
is always True there) encode ``(x_l - mean_l) · g_l`` and decode ``x̂_l / (g_l + 1e-8) + mean_l``
with ``g = activation_global_scale`` as saved (``target_rms`` and ``activation_std`` only made
``g`` at construction). That is crosstime's ``s_l = g_l + 1e-8`` with the mean and ``g_l / s_l``
folded into the weights (see :func:`_fold_normaliser`), exact. A save that normalises on but
holds no ``activation_global_scale [L]`` (fork versions before 2025-06-30) is refused.

An older save (no normaliser buffers) or one with the normaliser off records neither the
checkpoints' names nor input scales: give ``--revisions`` and ``--scales`` (a crosstime export
adds ``crosstime.json`` holding both, which this reader uses). A crosstime export turns the
normaliser on with mean 0 and ``g_l = s_l - 1e-8``, so the fork's own loader maps raw
activations to raw reconstructions as crosstime does.
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
NORMALISER = ("activation_mean", "activation_std", "target_rms", "activation_global_scale")
EPS = 1e-8  # NormalizableMixin.denormalize_activations divides by activation_global_scale + 1e-8
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


def _normaliser(tensors: dict[str, torch.Tensor], L: int, d: int,
                weights: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(activation_mean [L, d], activation_global_scale [L], float64) when the save's input normaliser is on;
    None when it is off (NaN, as ``has_activation_normalizer`` reads it) or the save predates it."""
    if "activation_mean" not in tensors and "activation_std" not in tensors:
        return None
    check_shapes(tensors, {"activation_mean": (L, d), "activation_std": (L, d)}, weights, weights)
    if bool(tensors["activation_mean"].isnan().any() or tensors["activation_std"].isnan().any()):
        return None
    g = tensors.get("activation_global_scale")
    if g is None or tuple(g.shape) != (L,):
        raise CrosscoderError(f"{weights} normalises its inputs but holds no activation_global_scale [{L}] (it has "
                              f"{None if g is None else list(g.shape)}): a dictionary_learning version before "
                              "2025-06-30, whose normalisation crosstime cannot reproduce exactly; load it in that "
                              "version, fold the normaliser into the weights, then import")
    g = g.to(torch.float64)
    if not bool(torch.isfinite(g).all() and (g > 0).all()):
        raise CrosscoderError(f"{weights} has activation_global_scale {g.tolist()}; it must be finite and positive")
    return tensors["activation_mean"].to(torch.float64), g


def _fold_normaliser(ours: dict[str, torch.Tensor], mean: torch.Tensor, g: torch.Tensor) -> list[float]:
    """Fold the fork's ``(x - mean)·g`` / ``x̂/(g + 1e-8) + mean`` into ``ours`` (crosstime names), in place;
    returns the scales ``s = g + 1e-8`` [L] crosstime then applies.

    Encode: Σ_l (x_l - μ_l) g_l W_l + b = Σ_l (s_l x_l)(W_l g_l/s_l) + (b - Σ_l g_l μ_l W_l).
    Decode: (f W_dec + b_dec)/s + μ = (f W_dec + (b_dec + s μ))/s; the decoder stays as saved, so the
    code normalisation BatchTopK ranks by is unchanged."""
    s = g + EPS
    w_enc = ours["W_enc"].to(torch.float64)  # [L, d, F]
    ours["b_enc"] = ours["b_enc"].to(torch.float64) - torch.einsum("ld,ldf->f", mean * g[:, None], w_enc)
    ours["W_enc"] = w_enc * (g / s)[:, None, None]
    ours["b_dec"] = ours["b_dec"].to(torch.float64) + s[:, None] * mean
    return s.tolist()


def _refuse_unrepresentable(tensors: dict[str, torch.Tensor], cfg: dict[str, Any] | None, norm: str,
                            batchtopk: bool, weights: Path) -> None:
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


def _scales(tensors: dict[str, torch.Tensor], ours: dict[str, torch.Tensor], side: dict[str, Any],
            given: list[float] | None, weights: Path) -> tuple[list[float], list[str]]:
    """The scales s_l [L] and a note saying where they came from; a normaliser that is on is folded into
    ``ours`` (in place) and gives them, and the sidecar's or ``--scales`` must then agree with them."""
    L, d, _ = tensors["encoder.weight"].shape
    found = _normaliser(tensors, L, d, weights)
    if found is None:
        chosen = pick_scales(side.get("scales"), given, L, str(weights))
        return chosen, ["input scales from " + (SIDECAR if side.get("scales") else "--scales")]
    chosen = _fold_normaliser(ours, *found)
    pick_scales(chosen, given, L, str(weights))  # a different --scales is refused
    recorded = side.get("scales")
    if recorded is not None and (len(recorded) != L or any(abs(a - b) > 1e-6 * b for a, b in zip(recorded, chosen))):
        raise CrosscoderError(f"{weights.with_name(SIDECAR)} records scales {recorded} but the weights' normaliser "
                              f"gives {chosen}: the sidecar belongs to other weights")
    note = ("input scales s = activation_global_scale + 1e-8 and activation_mean folded into the biases "
            "(dictionary_learning's input normaliser)")
    return chosen, [note]


def _sidecar(weights: Path) -> dict[str, Any]:
    side = weights.with_name(SIDECAR)
    return read_json_object(side) if side.is_file() else {}


def _export_normaliser(scales: list[float] | None, w_enc: torch.Tensor) -> dict[str, torch.Tensor]:
    """The fork's normaliser buffers and ``encoder.weight`` [L, d, F]. With scales: on (mean 0,
    ``g = s - 1e-8``) and the encoder rescaled by ``s/g``, so the fork's ``(x·g) W`` and ``x̂/(g + 1e-8)``
    are crosstime's ``(s·x) W_enc`` and ``x̂/s``; ``activation_std`` is what gives that ``g`` in the fork's
    constructor (``target_rms / sqrt(Σ_d std² + 1e-8)``, ``target_rms`` 1), so the record is consistent.
    Without scales (none recorded): off, as a freshly built instance holds them (NaN, g = 1)."""
    L, d, _ = w_enc.shape
    if scales is None:
        return {"encoder.weight": w_enc.clone(), "activation_mean": torch.full((L, d), torch.nan),
                "activation_std": torch.full((L, d), torch.nan), "activation_global_scale": torch.ones(L),
                "target_rms": torch.tensor(1.0)}
    s = torch.tensor(scales, dtype=torch.float64)
    if not bool((s > 10 * EPS).all()):
        raise CrosscoderError(f"scales {scales}: dictionary_learning's normaliser adds 1e-8 to each, so scales this "
                              "small cannot be written exactly")
    g = (s - EPS).to(torch.float32)
    std = ((1 / g.to(torch.float64) ** 2 - EPS) / d).sqrt()[:, None].expand(L, d)
    return {"encoder.weight": (w_enc.to(torch.float64) * (s / g.to(torch.float64))[:, None, None]).to(torch.float32),
            "activation_mean": torch.zeros(L, d), "activation_std": std.to(torch.float32).contiguous(),
            "activation_global_scale": g, "target_rms": torch.tensor(1.0)}


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
        ours = {"W_enc": tensors["encoder.weight"], "b_enc": tensors["encoder.bias"],
                "W_dec": tensors["decoder.weight"].permute(1, 0, 2), "b_dec": tensors["decoder.bias"]}
        side = _sidecar(weights)
        names = pick_revisions(side.get("revisions"), revisions, L, str(weights))
        chosen, notes = _scales(tensors, ours, side, scales, weights)
        l1_norm = L1_NORM.get(norm, "sum")
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
                 "decoder.bias": m.b_dec.detach().clone(), "code_normalization_id": torch.tensor(ids[norm]),
                 **_export_normaliser(c.scales, m.W_enc.detach())}
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
