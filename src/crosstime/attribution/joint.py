"""Joint ablation and restoration of the top-k features per checkpoint, against random k-sets.

    curves = joint_curves(load_model, crosscoder, batches, layer, ie=att.ie, active=att.task_frequency > 0,
                          baseline=att.baseline, ks=(1, 2, 5, 10, 20, 50), draws=20, seed=0)
    curves.rows()      # rows of attribution/TASK/joint.csv (ATTRIBUTION_JOINT)

Why: IE (integrated gradients along the path on which all features move together) is each
feature's share of the *joint* effect. When features are redundant (several carry the same
information), one feature's share can be large while removing it alone costs nothing; the
single-feature ablation cannot show what the features do together, these curves do.

In checkpoint m, with ``δ = baseline − f`` at the attributed positions (as in
:mod:`crosstime.attribution.effects`), moving a set S of features gives the site
``x + Σ_{i∈S} δ_i W_dec[i, m]``, the reconstruction error kept:

- ``ablate``: S to its baseline, every other feature clean;
- ``restore``: the mirror. IE's baseline is no corrupted sentence but every feature at its
  baseline (the far end of IG's path, site ``x + δ W_dec[:, m]``); from there S is brought
  back to its clean values: ``x + Σ_{i∉S} δ_i W_dec[i, m]``.

With S = every active feature, ablate gives the all-features-ablated site (the joint
effect) and restore the clean site.

Rankings: ``signed_ie``, per checkpoint, the features active on the task ordered by their
signed IE at that checkpoint, largest first (most supportive of the correct answer first);
``random``, ``draws`` sets of k active features drawn without replacement, seeded by
``(seed, k)`` and the same for every checkpoint. k larger than the number of active
features is skipped. Every (k, set, mode) of a batch runs in the same packed forwards
(``max_rows`` site rows each), never one feature at a time; a (set, pair) whose features
do not fire in the pair is not run (its site is the clean one, or the all-ablated one).

Shapes: M checkpoints, N pairs, F features, B pairs of a batch, T its padded length, d the
site's width, D draws, S = 1 + D feature sets per k.
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
from crosstime.attribution.effects import PairBatch, SiteForward
from crosstime.crosscoder import Crosscoder
from crosstime.progress import Bar

JOINT_K = (1, 2, 5, 10, 20, 50)
MODES = ("ablate", "restore")


@dataclass
class JointCurves:
    """Per-pair metrics ``m = log p(wrong) − log p(correct)`` of every moved feature set."""

    revisions: list[str]
    ks: list[int]  # the k that were run (those at most the number of active features)
    ranked: list[list[int]]  # [M] active features by signed IE at checkpoint m, largest first
    draws: list[np.ndarray]  # [len(ks)] random sets [D, k]
    metric: torch.Tensor  # [2 (ablate, restore), M, len(ks), 1 + D, N]; set 0 is the top-k
    clean: torch.Tensor  # [M, N]
    all_ablated: torch.Tensor  # [M, N] every feature at its baseline at once
    ci: float = 0.95

    def rows(self) -> list[dict[str, Any]]:
        """Rows of ``ATTRIBUTION_JOINT``: per checkpoint, mode, ranking and k."""
        rows = []
        lo_q, hi_q = (1 - self.ci) / 2, 1 - (1 - self.ci) / 2
        n_draws = self.metric.shape[3] - 1
        for m, rev in enumerate(self.revisions):
            lpd_clean, lpd_all = _lpd(self.clean[m]).item(), _lpd(self.all_ablated[m]).item()
            span = lpd_clean - lpd_all
            for mode_index, mode in enumerate(MODES):
                for q, k in enumerate(self.ks):
                    per_set = self.metric[mode_index, m, q]  # [1 + D, N]
                    lpd, acc = _lpd(per_set).numpy(), _accuracy(per_set).numpy()  # [1 + D]
                    rankings = [("signed_ie", lpd[:1], acc[:1])]
                    if n_draws:
                        rankings.append(("random", lpd[1:], acc[1:]))
                    for ranking, lpds, accs in rankings:
                        spread = ranking == "random"
                        mean_lpd = float(lpds.mean())
                        rows.append({
                            "checkpoint": rev, "mode": mode, "ranking": ranking, "k": k,
                            "lpd": mean_lpd,
                            "lpd_lo": float(np.quantile(lpds, lo_q)) if spread else None,
                            "lpd_hi": float(np.quantile(lpds, hi_q)) if spread else None,
                            "accuracy": float(accs.mean()),
                            "accuracy_lo": float(np.quantile(accs, lo_q)) if spread else None,
                            "accuracy_hi": float(np.quantile(accs, hi_q)) if spread else None,
                            "joint_share": (mean_lpd - lpd_all) / span if span != 0 else float("nan"),
                            "draws": len(lpds),
                        })
        return rows


def _lpd(metric: torch.Tensor) -> torch.Tensor:
    """Mean log p(correct) − log p(wrong) over the last axis (pairs)."""
    return (-metric).double().mean(-1)


def _accuracy(metric: torch.Tensor) -> torch.Tensor:
    return (metric < 0).double().mean(-1)


def rank_by_signed_ie(ie: torch.Tensor, active: torch.Tensor) -> list[list[int]]:
    """``ie [M, F]``, ``active [F]`` bool -> per checkpoint the active features, largest signed IE first
    (ties by feature id)."""
    ids = torch.nonzero(active).flatten()
    ranked = []
    for m in range(ie.shape[0]):
        values = ie[m, ids].double().numpy()
        order = np.lexsort((ids.numpy(), -values))  # primary key: -IE; ties: feature id
        ranked.append([int(ids[i]) for i in order])
    return ranked


def random_sets(active: torch.Tensor, k: int, draws: int, seed: int) -> np.ndarray:
    """``[draws, k]`` sets of k distinct active features, seeded by ``(seed, k)``."""
    ids = torch.nonzero(active).flatten().numpy()
    rng = np.random.default_rng([seed, k])
    return np.stack([rng.choice(ids, size=k, replace=False) for _ in range(draws)]) if draws else \
        np.zeros((0, k), dtype=np.int64)


def _set_metrics(run: SiteForward, batch: PairBatch, x: torch.Tensor, delta: torch.Tensor, W: torch.Tensor,
                 sets: torch.Tensor, ends: torch.Tensor, max_rows: int) -> torch.Tensor:
    """``[2, S, B]`` metric with each of ``sets [S, k]`` ablated (row 0) and restored (row 1).

    x: [B, T, d] clean site; delta: [B, T, F] baseline − f at the attributed positions; W: [F, d];
    ends: [2, B] the clean and the all-ablated metric. A set that moves nothing in a pair (no
    feature of it differs from its baseline there) leaves that pair at ``ends``: only the other
    (set, pair) rows are run, ``max_rows`` per forward (exact; saves the rare features' rows).
    """
    S = sets.shape[0]
    out = ends.unsqueeze(1).repeat(1, S, 1)  # [2, S, B]
    moves = delta[:, :, sets].abs().amax(dim=(1, 3)) > 0  # [B, S]
    pair, which = torch.nonzero(moves, as_tuple=True)
    with torch.no_grad():
        all_moved = delta @ W  # [B, T, d]
        chunk = max(1, max_rows // 2)  # pairs per forward: each gives an ablated and a restored row
        for start in range(0, len(pair), chunk):
            p, s = pair[start:start + chunk], which[start:start + chunk]
            feats = sets[s]  # [R, k]
            moved = torch.einsum("rtk,rkd->rtd", delta[p.unsqueeze(1), :, feats].transpose(1, 2), W[feats])
            sites = torch.cat([x[p] + moved, x[p] + all_moved[p] - moved])  # ablated, restored
            m = run.metric(sites, batch, rows=torch.cat([p, p])).reshape(2, -1)
            out[:, s, p] = m.to(out.dtype)
    return out


def joint_curves(
    load_model: ModelLoader,
    crosscoder: Crosscoder,
    batches: list[PairBatch],
    layer: int,
    ie: torch.Tensor,
    active: torch.Tensor,
    baseline: torch.Tensor | None = None,
    ks: Sequence[int] = JOINT_K,
    draws: int = 20,
    seed: int = 0,
    ci: float = 0.95,
    skip_early_blocks: bool = True,
    max_rows: int = 2048,
    progress: bool = True,
) -> JointCurves:
    """Ablate and restore the top-k features by signed IE (``ie [M, F]``) and ``draws`` random k-sets of
    the ``active [F]`` features, jointly, in every checkpoint; ``baseline [F]`` (zero by default)."""
    revisions = crosscoder_revisions(crosscoder)
    M = len(revisions)
    N, index = pair_rows(batches)
    active = torch.as_tensor(active, dtype=torch.bool).cpu()
    n_active = int(active.sum())
    ks = [int(k) for k in ks if 1 <= k <= n_active]
    ranked = rank_by_signed_ie(torch.as_tensor(ie).cpu(), active)
    rand = [random_sets(active, k, draws, seed) for k in ks]
    raw = crosscoder.folded()
    xs, batches = read_sites(load_model, M, batches, layer, progress)
    device = batches[0].input_ids.device
    base = (torch.zeros(raw.n_features) if baseline is None else baseline).float().to(device)
    metric = torch.zeros(len(MODES), M, len(ks), 1 + draws, N)
    clean, all_ablated = torch.zeros(M, N), torch.zeros(M, N)
    bar = Bar(total=M * len(batches), desc="joint ablation", disable=not progress, leave=False)
    for m in range(M):
        run = SiteForward(load_model(m), layer, skip_early_blocks=skip_early_blocks)
        W = raw.W_dec[:, m].detach().float().to(device)  # [F, d] raw space
        for j, b in enumerate(batches):
            f = encode_sites(raw, [x[j] for x in xs])  # [B, T, F]
            delta = (base - f) * b.attr_mask.unsqueeze(-1).float()
            x = xs[m][j]
            with torch.no_grad():
                ends = run.metric(torch.cat([x, x + delta @ W]), b).reshape(2, len(b))  # clean, all ablated
            clean[m, index[j]], all_ablated[m, index[j]] = ends[0].float().cpu(), ends[1].float().cpu()
            for q, k in enumerate(ks):
                sets = torch.cat([torch.tensor([ranked[m][:k]]), torch.as_tensor(rand[q]).reshape(-1, k)]).to(device)
                metric[:, m, q][..., index[j]] = _set_metrics(run, b, x, delta, W, sets, ends, max_rows).float().cpu()
            bar.update(1)
    bar.close()
    return JointCurves(revisions, ks, ranked, rand, metric, clean, all_ablated, ci)
