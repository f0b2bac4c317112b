"""SAELens (single-site SAEs; export only): one SAE folder per checkpoint.

A crosscoder restricted to one checkpoint is not an SAE: its encoder reads all M checkpoints.
The SAE written for checkpoint m is the crosscoder with the other checkpoints' inputs set to
zero: ``f = σ(x_m W_enc[m] + b_enc)`` (the encoder slice m), ``x̂_m = f W_dec[:, m] + b_dec[m]``,
with the scale s_m folded in so it reads raw activations. Every ``cfg.json`` says so in
``metadata.crosstime``. Files per folder: ``cfg.json`` + ``sae_weights.safetensors`` with
``W_enc [d, F]``, ``W_dec [F, d]``, ``b_enc [F]``, ``b_dec [d]`` and, for JumpReLU,
``threshold [F]``. ``cfg.json`` is the layout SAELens 6's ``SAE.save_model`` writes (top-level
architecture fields, ``metadata`` with ``sae_lens_version``, ``hook_name`` as TransformerLens names
the site: ``blocks.{L}.hook_resid_post``); ``SAE.load_from_disk`` loads each folder.

σ: ReLU -> ``standard``; JumpReLU -> ``jumprelu`` (θ_i); BatchTopK with its inference threshold
t -> ``jumprelu`` with ``θ_i = t / w_i`` (``ReLU(z_i)·w_i > t`` is ``z_i > t/w_i``; ``w_i`` the
crosscoder's decoder weight, fixed), as SAELens saves BatchTopK SAEs. TopK (and BatchTopK
without a threshold) pick features per token or batch over the joint encoder and have no
per-checkpoint SAE equivalent: refused.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from crosstime.crosscoder import BATCHTOPK, JUMPRELU, RELU, Activation, Crosscoder, CrosscoderError
from crosstime.files import write_json
from crosstime.interop.formats.base import ExportInfo, Format, register_format
from crosstime.names import check_name

CONFIG, WEIGHTS = "cfg.json", "sae_weights.safetensors"
# metadata.sae_lens_version: SAELens (loading/pretrained_sae_loaders.py, handle_config_defaulting) reads a
# cfg.json without it as a pre-6.0 config and rebuilds `metadata` from top-level keys, dropping ours;
# the version whose layout this writes (SAE.save_model's cfg.json), checked by tests/interop.
LAYOUT_VERSION = "6.54.12"


def approximation(revision: str, revisions: list[str]) -> str:
    return (f"the crosscoder over {', '.join(revisions)} restricted to checkpoint {revision}: the encoder slice "
            f"W_enc[{revision}] with every other checkpoint's input set to zero (the crosscoder's encoder reads all "
            f"{len(revisions)} checkpoints jointly, so features differ wherever the others contribute), the decoder "
            f"W_dec[:, {revision}] and b_dec[{revision}]; the input scale s_m is folded in (raw activations)")


def _thresholds(model: Crosscoder, rule: Activation) -> torch.Tensor | None:
    """θ [F] of the per-checkpoint JumpReLU, or None for ReLU (normalised-space model of inference ``rule``)."""
    if rule == RELU:
        return None
    if rule == JUMPRELU:
        return model.threshold.detach().clone()
    if model.has_threshold:  # BatchTopK's rule
        w = model.feature_weights().detach()
        return torch.where(w > 0, model.threshold.detach() / w, torch.full_like(w, float("inf")))
    raise CrosscoderError(f"a {model.config.variant} crosscoder without an inference threshold selects features per "
                          "batch over all checkpoints jointly, which no per-checkpoint SAE reproduces; SAELens export "
                          "supports relu, jumprelu and thresholded batchtopk")


@register_format
class SAELensFormat(Format):
    name = "saelens"
    summary = "SAELens: one SAE folder (cfg.json + sae_weights.safetensors) per checkpoint (export only)"
    activations = frozenset({RELU, JUMPRELU, BATCHTOPK})  # standard and jumprelu SAEs (BatchTopK's threshold as θ)

    def write(self, model: Crosscoder, out: Path, info: ExportInfo) -> list[Path]:

        rule = self.check_supports(model)
        c, norm = model.config, model.unfolded()
        theta = _thresholds(norm, rule)
        raw = norm.folded() if c.scales else norm  # SAELens reads raw activations
        revisions = list(c.revisions or [f"checkpoint{m}" for m in range(c.n_checkpoints)])
        written = []
        for m, revision in enumerate(revisions):
            folder = out / check_name(revision, "revision (a SAELens folder name)")
            folder.mkdir(parents=True, exist_ok=True)
            state = {"W_enc": raw.W_enc[m].detach().contiguous(), "W_dec": raw.W_dec[:, m].detach().contiguous(),
                     "b_enc": raw.b_enc.detach().clone(), "b_dec": raw.b_dec[m].detach().clone()}
            if theta is not None:
                state["threshold"] = theta.clone()
            save_file(state, str(folder / WEIGHTS))
            write_json(folder / CONFIG, {
                "architecture": "standard" if theta is None else "jumprelu", "d_in": c.d_model,
                "d_sae": c.n_features, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": False,
                "normalize_activations": "none", "reshape_activations": "none",
                "metadata": {"sae_lens_version": LAYOUT_VERSION, "sae_lens_training_version": None,
                             "model_name": info.model_name, "hook_name": info.hook_name,
                             "context_size": info.context_len, "prepend_bos": True, "dataset_path": None,
                             "neuronpedia_id": None,
                             "crosstime": {"approximates": approximation(revision, revisions), "revision": revision,
                                           "checkpoint_index": m, "crosscoder_revisions": revisions,
                                           "scale": (c.scales or [1.0] * c.n_checkpoints)[m],
                                           "crosscoder_variant": c.variant}}})
            written += [folder / CONFIG, folder / WEIGHTS]
        return written
