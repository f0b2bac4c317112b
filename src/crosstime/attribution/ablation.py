"""Exact single-feature ablation of a few features in every checkpoint (error kept).

    abl = ablate_features(load_model, crosscoder, batches, layer, features=[3, 17])
    abl.effects        # [M, K, N]: m(feature k at its baseline) − m(clean), per pair
    abl.rows()         # the rows of attribution/TASK/ablation.csv

The ablation is exact: one forward per (pair, feature), the feature alone moved to its
baseline at every attributed position, everything else (other features, the
reconstruction error) clean. ``crosscoder`` and ``load_model`` are as in
:mod:`crosstime.attribution.compute`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from crosstime.attribution.compute import (
    ModelLoader,
    crosscoder_revisions,
    encode_sites,
    pair_rows,
    read_sites,
)
from crosstime.attribution.effects import PairBatch, SiteForward, exact_effects
from crosstime.attribution.stats import relative_shares
from crosstime.crosscoder import Crosscoder
from crosstime.progress import Bar


@dataclass
class Ablation:
    """Exact single-feature ablations of K features (error kept): per pair effects on the metric."""

    revisions: list[str]
    features: list[int]
    effects: torch.Tensor  # [M, K, N]: m(ablated) - m(clean)
    clean: torch.Tensor  # [M, N]

    def delta_lpd(self) -> np.ndarray:
        """``[M, K]`` ΔLPD = LPD_clean − LPD_ablated = mean over pairs of the metric's change."""
        return self.effects.mean(-1).double().numpy()

    def rows(self) -> list[dict[str, Any]]:
        """Rows of ``ATTRIBUTION_ABLATION``, one per (feature, checkpoint): accuracy and mean
        log-prob difference, clean vs ablated, their deltas and the ablation share."""
        rows = []
        share = relative_shares(np.abs(self.delta_lpd().T))  # [K, M]
        for k, feat in enumerate(self.features):
            for m, rev in enumerate(self.revisions):
                clean = self.clean[m]
                patched = clean + self.effects[m, k]
                acc_c, acc_p = (clean < 0).float().mean().item(), (patched < 0).float().mean().item()
                lpd_c, lpd_p = (-clean).mean().item(), (-patched).mean().item()
                rows.append({
                    "feature": feat, "checkpoint": rev,
                    "acc_clean": acc_c, "acc_ablated": acc_p, "delta_acc_pp": (acc_c - acc_p) * 100,
                    "lpd_clean": lpd_c, "lpd_ablated": lpd_p, "delta_lpd": lpd_c - lpd_p,
                    "ablation_share": float(share[k, m]),
                })
        return rows


def ablate_features(
    load_model: ModelLoader,
    crosscoder: Crosscoder,
    batches: list[PairBatch],
    layer: int,
    features: Sequence[int],
    baseline: torch.Tensor | None = None,
    skip_early_blocks: bool = True,
    progress: bool = True,
) -> Ablation:
    """Set each of ``features`` alone to its baseline ``[F]`` (zero by default) in each checkpoint, error kept."""
    revisions = crosscoder_revisions(crosscoder)
    M = len(revisions)
    N, index = pair_rows(batches)
    feats = torch.as_tensor(list(features), dtype=torch.long)
    raw = crosscoder.folded()
    xs, batches = read_sites(load_model, M, batches, layer, progress)
    device = batches[0].input_ids.device
    base = (torch.zeros(raw.n_features) if baseline is None else baseline).to(device)
    effects = torch.zeros(M, len(feats), N)
    clean = torch.zeros(M, N)
    bar = Bar(total=M * len(batches), desc="ablation", disable=not progress, leave=False)
    for m in range(M):
        runner = SiteForward(load_model(m), layer, skip_early_blocks=skip_early_blocks)
        W = raw.W_dec[:, m].detach().float().to(device)  # [F, d] raw space
        for j, b in enumerate(batches):
            f = encode_sites(raw, [x[j] for x in xs])
            delta = (base - f) * b.attr_mask.unsqueeze(-1).float()  # [B, T, F]
            with torch.no_grad():
                c = runner.metric(xs[m][j], b)
            clean[m, index[j]] = c.float().cpu()
            if len(feats):
                def metric(site, rows=None, b=b, run=runner):
                    return run.metric(site, b, rows)

                effects[m, :, index[j]] = exact_effects(metric, xs[m][j], delta, W, feats, c).T.float().cpu()
            bar.update(1)
    bar.close()
    return Ablation(revisions, [int(i) for i in feats], effects, clean)
