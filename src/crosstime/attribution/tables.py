"""From the per-pair effects to the reported features and the numbers about them.

    summary = summarise(att, crosscoder, top_k=10, ablation=abl, bootstrap=1000)
    summary.rows        # rows of attribution/TASK/features.csv   (ATTRIBUTION_FEATURES)
    summary.confusion   # rows of attribution/TASK/confusion.csv  (ATTRIBUTION_CONFUSION)
    summary.metrics     # the numbers of summary.json that the effects decide (AttributionSummary)

The reported features are the union of the per-checkpoint top-k by |IE|. RelIE is the
share of |IE| (:mod:`crosstime.attribution.stats`); RelDec is the share of the decoder
norms in normalised space (``crosscoder.decoder_norms()``, as in the paper), whatever
space the crosscoder's weights are in.

Effect floor: a feature gets a RelIE class only when its total effect ``Σ_m |IE_m(i)|``
reaches ``effect_floor · Σ_m |J_m|``, ``J_m`` the exact joint effect of all features at
checkpoint m (mean over pairs) — the floor is summed over checkpoints, like the total it is
compared with. Below it the class is ``"no effect"`` (``crosstime.shares.NO_EFFECT``): the
shares of a feature with |IE| ≈ 0.001 everywhere are ratios of noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from crosstime.artifacts import ATTRIBUTION_FEATURES, AblationSpearman, Faithfulness
from crosstime.attribution.ablation import Ablation
from crosstime.attribution.compute import Attribution, AttributionError
from crosstime.attribution.stats import (
    ClassInterval,
    class_intervals,
    class_order,
    classify_effects,
    classify_shares,
    intervals,
    pairwise_rel_ie,
    rel_ie,
    relative_shares,
    resample_effects,
    spearman,
    top_features,
)
from crosstime.crosscoder import Crosscoder

# The pairwise RelIE column; it has no cells beyond its max_checkpoints (the row then holds None).
_RELIE_PAIR = next(c for c in ATTRIBUTION_FEATURES.columns if c.name == "relie_pair")


@dataclass
class Summary:
    """The reported features and the numbers about them (K reported features)."""

    revisions: list[str]
    per_checkpoint: list[list[int]]  # top-k feature ids per checkpoint
    features: list[int]  # the K reported features, by their largest |IE| anywhere
    relie: np.ndarray  # [F, M]
    reldec: np.ndarray  # [F, M]
    relie_class: list[str]  # [K]
    reldec_class: list[str]  # [K]
    rows: list[dict[str, Any]]  # ATTRIBUTION_FEATURES rows, one per reported feature
    confusion: list[dict[str, Any]]  # ATTRIBUTION_CONFUSION rows
    ci: dict[str, np.ndarray] | None  # stats.intervals of the reported features' resamples
    class_ci: list[ClassInterval] | None  # [K] the RelIE classes' intervals (None without a bootstrap)
    ablation: Ablation | None
    metrics: dict[str, Any]  # AttributionSummary fields decided by the effects


@dataclass
class _Shares:
    """RelIE and RelDec of every feature, and the classes of the reported ones."""

    relie: np.ndarray  # [F, M]
    relie_pair: np.ndarray  # [F, P], P = M(M−1)/2 in artifacts.pairs(M) order
    reldec: np.ndarray  # [F, M]
    relie_class: list[str]  # [K]
    reldec_class: list[str]  # [K]


def effect_floor_value(att: Attribution, effect_floor: float) -> float:
    """The RelIE-class floor in units of the metric: ``effect_floor · Σ_m |J_m|`` (J: mean exact joint effect)."""
    return effect_floor * float(att.joint.double().mean(1).abs().sum())


def _shares(ie: np.ndarray, crosscoder: Crosscoder, union: list[int], revs: list[str], floor: float) -> _Shares:
    """``ie [M, F]``; RelDec from the normalised-space decoder norms ``[F, M]``; ``floor``: of the RelIE classes."""
    relie = rel_ie(ie)
    relie_pair, _ = pairwise_rel_ie(ie)
    reldec = relative_shares(crosscoder.decoder_norms().detach().float().cpu().numpy())
    relie_cls = classify_effects(torch.as_tensor(ie[:, union].T), revs, floor) if union else []
    reldec_cls = classify_shares(torch.as_tensor(reldec[union]), revs) if union else []
    return _Shares(relie, relie_pair, reldec, relie_cls, reldec_cls)


def _floats(values: Sequence[float] | np.ndarray) -> list[float]:
    return [float(v) for v in values]


def feature_rows(att: Attribution, per: list[list[int]], union: list[int], shares: _Shares,
                 boot: dict[str, np.ndarray] | None, exact: np.ndarray | None,
                 class_ci: list[ClassInterval] | None = None) -> list[dict[str, Any]]:
    """``ATTRIBUTION_FEATURES`` rows of the reported features ``union`` (K of them).

    boot: :func:`~crosstime.attribution.stats.intervals` of ``union`` or None (CI cells empty);
    exact: ``[M, K]`` ΔLPD of the ablation or None (exact cells empty); class_ci: the RelIE
    classes' intervals ``[K]`` or None (their cells empty).
    """
    revs, M = att.revisions, len(att.revisions)
    ie = att.ie.double().numpy()  # [M, F]
    ie_abs = att.ie_per_pair.abs().mean(1).double().numpy()  # [M, F]
    empty = [None] * M
    with_pairs = _RELIE_PAIR.width(M) > 0
    rows = []
    for k, i in enumerate(union):
        rows.append({
            "feature": i,
            "selected_in": ";".join(revs[m] for m in range(M) if i in per[m]),
            "ie": _floats(ie[:, i]),
            "ie_lo": _floats(boot["ie_lo"][:, k]) if boot else empty,
            "ie_hi": _floats(boot["ie_hi"][:, k]) if boot else empty,
            "relie": _floats(shares.relie[i]),
            "relie_lo": _floats(boot["relie_lo"][k]) if boot else empty,
            "relie_hi": _floats(boot["relie_hi"][k]) if boot else empty,
            "relie_class": shares.relie_class[k],
            **_class_cells(class_ci[k] if class_ci else None),
            "relie_pair": _floats(shares.relie_pair[i]) if with_pairs else None,
            "reldec": _floats(shares.reldec[i]),
            "reldec_class": shares.reldec_class[k],
            "task_frequency": float(att.task_frequency[i]),
            "ie_abs": _floats(ie_abs[:, i]),
            "exact": _floats(exact[:, k]) if exact is not None else empty,
        })
    return rows


def _class_cells(c: ClassInterval | None) -> dict[str, Any]:
    """The ``relie_class_*`` interval cells of a features.csv row (empty without a bootstrap)."""
    if c is None:
        return dict.fromkeys(("relie_class_on", "relie_class_lo", "relie_class_hi", "relie_class_cutoff",
                              "relie_class_uncertain"))
    return {"relie_class_on": c.on, "relie_class_lo": c.lo, "relie_class_hi": c.hi, "relie_class_cutoff": c.cutoff,
            "relie_class_uncertain": c.uncertain}


def confusion_rows(relie_class: list[str], reldec_class: list[str], revs: list[str]) -> list[dict[str, Any]]:
    """``ATTRIBUTION_CONFUSION`` rows: every (RelIE class, RelDec class) of the classes seen, in
    class order, with the number of reported features that have both (zeros included)."""
    counts: dict[tuple[str, str], int] = {}
    for a, b in zip(relie_class, reldec_class):
        counts[a, b] = counts.get((a, b), 0) + 1
    return [{"relie_class": a, "reldec_class": b, "count": counts.get((a, b), 0)}
            for a in class_order(relie_class, revs) for b in class_order(reldec_class, revs)]


def clean_metrics(att: Attribution, per: list[list[int]], union: list[int]) -> dict[str, Any]:
    """The clean task numbers and the error / joint effects, per checkpoint."""
    revs, clean, ie = att.revisions, att.clean, att.ie.double().numpy()
    ablated = clean + att.joint  # [M, N] every feature at its baseline at once
    return {
        "n_pairs": int(clean.shape[1]),
        "accuracy_clean": {r: float((clean[m] < 0).float().mean()) for m, r in enumerate(revs)},
        "accuracy_all_ablated": {r: float((ablated[m] < 0).float().mean()) for m, r in enumerate(revs)},
        "metric_clean_mean": {r: float(clean[m].mean()) for m, r in enumerate(revs)},
        "error_effect": {r: float(att.error[m].mean()) for m, r in enumerate(revs)},
        "joint_effect_exact": {r: float(att.joint[m].mean()) for m, r in enumerate(revs)},
        "sum_of_feature_ie": {r: float(ie[m].sum()) for m, r in enumerate(revs)},
        "top_features": {r: per[m] for m, r in enumerate(revs)},
        "n_reported": len(union),
    }


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def faithfulness(att: Attribution, union: list[int], exact: np.ndarray) -> dict[str, dict[str, Faithfulness]]:
    """The ig and atp estimates (whichever were computed: the method and those alongside it) against
    the exact single-feature ablation ``exact [M, K]`` of the reported features, per estimator and
    checkpoint.

    Per checkpoint only: pooled over checkpoints, the checkpoints with large effects decide the
    ranks and hide a checkpoint where the estimate disagrees. Signed, on magnitudes (what RelIE
    and the ablation share use) and as sign agreement: with redundant features IG's joint path
    credits a feature whose lone ablation costs little or even helps.
    """
    revs = att.revisions
    estimates = {name: per_pair.mean(1).double().numpy()[:, union] for name, per_pair in estimator_effects(att).items()
                 if name != "exact"}
    faith: dict[str, dict[str, Faithfulness]] = {}
    for name, e in estimates.items():
        faith[name] = {r: Faithfulness(
            n_features=len(union), spearman=_finite(spearman(e[m], exact[m])),
            spearman_abs=_finite(spearman(np.abs(e[m]), np.abs(exact[m]))),
            sign_agreement=float(np.mean(np.sign(e[m]) == np.sign(exact[m]))) if union else None,
        ) for m, r in enumerate(revs)}
    return faith


def estimator_effects(att: Attribution) -> dict[str, torch.Tensor]:
    """Every estimator's per-pair effects ``[M, N, F]``: the method's first, then those computed alongside."""
    return {att.method: att.ie_per_pair, **att.alongside}


def best_estimator(faith: dict[str, dict[str, Faithfulness]], revs: list[str]) -> dict[str, str | None]:
    """Per checkpoint, the estimator with the highest signed Spearman against exact ablation (None: none defined)."""
    best: dict[str, str | None] = {}
    for r in revs:
        scored = [(v[r].spearman, name) for name, v in faith.items() if v[r].spearman is not None]
        best[r] = max(scored)[1] if scored else None
    return best


def ablation_spearman(exact: np.ndarray, shares: _Shares, union: list[int], revs: list[str]) -> AblationSpearman:
    """Spearman ρ across the reported features of the ablation share (``exact [M, K]``) with RelDec and RelIE."""
    share = relative_shares(np.abs(exact.T))  # [K, M]
    rho_dec = {r: spearman(share[:, m], shares.reldec[union, m]) for m, r in enumerate(revs)}
    rho_ie = {r: spearman(share[:, m], shares.relie[union, m]) for m, r in enumerate(revs)}
    return AblationSpearman(
        ratio_vs_reldec=rho_dec, ratio_vs_relie=rho_ie,
        ratio_vs_reldec_mean=float(np.nanmean(list(rho_dec.values()))) if revs else float("nan"),
        ratio_vs_relie_mean=float(np.nanmean(list(rho_ie.values()))) if revs else float("nan"),
        note="ablation share |ΔLPD_m| / Σ_k |ΔLPD_k| per feature (for M = 2 it ranks like the paper's "
             "|ΔLPD_B| / |ΔLPD_A|), correlated across the reported features with RelDec_m and RelIE_m",
    )


def summarise(att: Attribution, crosscoder: Crosscoder, top_k: int, ablation: Ablation | None = None,
              bootstrap: int = 1000, ci: float = 0.95, seed: int = 0, effect_floor: float = 0.01) -> Summary:
    """The reported features (per-checkpoint top-``top_k`` by |IE|, their union), their tables and metrics.

    ``ablation``: :func:`ablate_features` of exactly those features (in union order), or None.
    ``bootstrap``: resamples over pairs for the CIs (0: none). ``effect_floor``: RelIE classes
    only for features with ``Σ_m |IE_m| >= effect_floor · Σ_m |J_m|`` (module docstring).
    """
    revs = att.revisions
    ie = att.ie.double().numpy()  # [M, F]
    per, union = top_features(ie, top_k)
    if ablation is not None and ablation.features != union:
        raise AttributionError(f"the ablation is of features {ablation.features} but the reported features are "
                               f"{union}; ablate exactly those (in that order) or pass no ablation")
    floor = effect_floor_value(att, effect_floor)
    shares = _shares(ie, crosscoder, union, revs, floor)
    boot = class_ci = None
    if bootstrap and union:
        res = resample_effects(att.ie_per_pair[:, :, union], resamples=bootstrap, seed=seed, joint=att.joint)
        boot = intervals(res, ci)
        class_ci = class_intervals(res, shares.relie_class, revs, ci, effect_floor)
    exact = ablation.delta_lpd() if ablation is not None else None  # [M, K] in union order
    rows = feature_rows(att, per, union, shares, boot, exact, class_ci)
    confusion = confusion_rows(shares.relie_class, shares.reldec_class, revs)
    metrics = clean_metrics(att, per, union)
    order = class_order(shares.relie_class, revs)
    metrics.update(effect_floor=effect_floor, effect_floor_value=floor, estimators=list(estimator_effects(att)),
                   relie_class_counts={c: shares.relie_class.count(c) for c in order})
    if class_ci is not None:
        metrics["relie_class_uncertain"] = {c: sum(ci_k.uncertain for ci_k, lab in zip(class_ci, shares.relie_class)
                                                   if lab == c) for c in order}
    if exact is not None and union:
        metrics["faithfulness"] = faithfulness(att, union, exact)
        metrics["faithfulness_best"] = best_estimator(metrics["faithfulness"], revs)
        metrics["ablation_spearman"] = ablation_spearman(exact, shares, union, revs)
    return Summary(revs, per, union, shares.relie, shares.reldec, shares.relie_class, shares.reldec_class, rows,
                   confusion, boot, class_ci, ablation, metrics)
