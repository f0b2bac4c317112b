"""Matryoshka BatchTopK crosscoder (Bussmann et al. 2025, arXiv 2503.17547).

The features are BatchTopK's (the ``k·B`` largest ``ReLU(z)·w`` of a training batch; at
inference the learned threshold), but the dictionary is trained as nested prefixes
``p_1 < p_2 < … < p_G = F``: features ``[0:p_g]`` alone must reconstruct the input, so the
first features learn the broad, frequent directions and later ones refine them, instead of one
concept being split into many narrow features (absorption). Loss::

    Σ_g ‖x − (b_dec + Σ_{i < p_g} f_i W_dec[i])‖²  +  auxk_coeff · AuxK

(each term the reconstruction loss of the settings, the last one the full reconstruction;
AuxK on dead features as in BatchTopK). Prefixes: ``matryoshka_prefixes`` (default F/16, F/4,
F; F is appended when missing). Each prefix's reconstruction decodes only the active features
below it (``embedding_bag`` over the batch's sparse features), so G prefixes cost G sparse
decodes, not G dense ones; the fused fp32 step (:mod:`.fused_topk`) decodes every prefix in one sparse
product, each active feature once, and sums the prefixes' gradients per feature group. ``metrics.jsonl`` gets the reconstruction loss of every prefix
(``recon_prefix_<p>``).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from pydantic import Field

from crosstime.crosscoder.fused_topk import Family
from crosstime.crosscoder.model import Crosscoder
from crosstime.crosscoder.recipe import Forward, Loss, StepContext
from crosstime.crosscoder.registry import BATCHTOPK, Variant, register
from crosstime.crosscoder.settings import TrainSettings
from crosstime.crosscoder.topk import (
    BatchTopKCrosscoder,
    BatchTopKRecipe,
    BatchTopKSettings,
    SparseFeatures,
    TopKConfig,
)


class MatryoshkaSettings(BatchTopKSettings):
    """Matryoshka's training settings: BatchTopK's and the nested prefixes."""

    matryoshka_prefixes: list[int] | None = Field(
        None, description="matryoshka: nested dictionary sizes, each trained to reconstruct alone (default F/16, "
        "F/4, F; F is added when missing)")


def prefix_sizes(prefixes: list[int] | None, n_features: int) -> list[int]:
    """The nested sizes ``[p_1, …, F]``: the given ones (F appended when missing) or F/16, F/4, F."""
    given = prefixes if prefixes is not None else [p for p in (n_features // 16, n_features // 4) if p > 0]
    sizes = sorted(set(given))
    return sizes if sizes and sizes[-1] == n_features else [*sizes, n_features]


def prefix_decode(model: Crosscoder, sf: SparseFeatures, p: int) -> torch.Tensor:
    """Reconstruction ``[B, M, d]`` from the active features ``i < p`` alone (plus b_dec)."""
    F, M, d = model.W_dec.shape
    keep = (sf.cols < p).to(sf.values.dtype)
    w = model.W_dec.reshape(F, M * d)
    out = torch.nn.functional.embedding_bag(sf.cols, w, sf.offsets, mode="sum", per_sample_weights=sf.values * keep)
    return (out + model.b_dec.reshape(1, -1)).view(sf.batch_size, M, d)


class MatryoshkaRecipe(BatchTopKRecipe):
    """BatchTopK's training (AuxK, threshold EMA) with the loss summed over the nested prefixes."""

    def __init__(self, settings: TrainSettings):
        super().__init__(settings)
        self._prefix_recon: dict[int, torch.Tensor] = {}

    @classmethod
    def settings_problems(cls, settings: TrainSettings, n_features: int | None, d_model: int | None) -> list[str]:
        out = super().settings_problems(settings, n_features, d_model)
        given = settings.variant_settings.matryoshka_prefixes
        if given is None:
            return out
        if not given or any(p < 1 for p in given) or any(b <= a for a, b in itertools.pairwise(given)):
            out.append(f"matryoshka_prefixes = {given}: give increasing dictionary sizes ≥ 1, e.g. 64,256,1024")
        elif n_features is not None and given[-1] > n_features:
            out.append(f"matryoshka_prefixes = {given} goes beyond the dictionary, F = {n_features}; lower the last "
                       "size or raise --n-features")
        return out

    def loss(self, model: Crosscoder, x: torch.Tensor, fwd: Forward, ctx: StepContext) -> Loss:
        terms = super().loss(model, x, fwd, ctx)  # the full reconstruction, AuxK, activity
        nested = x.new_zeros(())
        self._prefix_recon = {}
        for p in prefix_sizes(self.settings.variant_settings.matryoshka_prefixes, model.n_features)[:-1]:
            recon_p = self.reconstruction(x, prefix_decode(model, fwd.sparse, p))
            self._prefix_recon[p] = recon_p.detach()
            nested = nested + recon_p
        self._prefix_recon[model.n_features] = terms.recon.detach()
        terms.total = terms.total + nested
        return terms

    def family(self, model: Crosscoder) -> Family:
        fam = super().family(model)
        fam.prefixes = prefix_sizes(self.settings.variant_settings.matryoshka_prefixes, model.n_features)
        return fam

    def _fused_terms(self, model: Crosscoder, terms: dict[str, Any]) -> None:
        self._prefix_recon = dict(zip(self.family(model).prefixes, terms["prefix_recon"], strict=True))

    def metrics(self, model: Crosscoder) -> dict[str, float]:
        return {**super().metrics(model), **{f"recon_prefix_{p}": float(v) for p, v in self._prefix_recon.items()}}


class MatryoshkaCrosscoder(BatchTopKCrosscoder):
    """BatchTopK features from a dictionary trained as nested prefixes (the module docstring);
    inference is BatchTopK's (the learned threshold)."""

    @property
    def inference_rule(self) -> str:
        return "Matryoshka " + super().inference_rule


# the inference rule is BatchTopK's (the learned threshold): a format that holds BatchTopK holds it
register(Variant("matryoshka", model=MatryoshkaCrosscoder, recipe=MatryoshkaRecipe, activation=BATCHTOPK,
                 config=TopKConfig, settings=MatryoshkaSettings))
