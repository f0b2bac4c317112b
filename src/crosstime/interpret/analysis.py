"""Complexity against emergence (the second paper's result) and the explanations' scores per view.

Over the features with a complexity (joint view) and the checkpoint index of their onset
(evaluation/features.csv ``onset``; of their RelIE peak where an attribution exists):
Pearson r and Spearman ρ with two-sided p-values (``scipy.stats.pearsonr`` / ``spearmanr``) and
bootstrap 95% intervals (features resampled with replacement ``n_boot`` times, percentile
interval; resamples where a side is constant are skipped). A correlation needs 3 features and
both sides varying; otherwise its numbers are None.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import mean, median
from typing import Any

import numpy as np

from crosstime.artifacts import (
    ComplexityRow,
    Correlation,
    InterpretAnalysis,
    ViewScores,
)

ALPHA = 0.05  # the reading claims a direction only below this p-value (and with 0 outside the bootstrap interval)


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(mean(kept), 4) if kept else None


def _varies(x: np.ndarray, y: np.ndarray) -> bool:
    return len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0


def correlate(against: str, x: Sequence[float], y: Sequence[float], n_boot: int, seed: int) -> Correlation:
    """Pearson and Spearman of ``x`` (complexity) and ``y`` (a checkpoint index), with bootstrap CIs."""
    from scipy import (
        stats,  # lazy: start-up time (scipy.stats; the CLI imports every stage to start)
    )

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not _varies(x, y):
        return Correlation(against=against, n=len(x), pearson_r=None, pearson_p=None, pearson_ci=None,
                           spearman_rho=None, spearman_p=None, spearman_ci=None)
    pearson, spearman = stats.pearsonr(x, y), stats.spearmanr(x, y)
    rng = np.random.default_rng(seed)
    boot_r, boot_rho = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        if _varies(x[idx], y[idx]):
            boot_r.append(stats.pearsonr(x[idx], y[idx]).statistic)
            boot_rho.append(stats.spearmanr(x[idx], y[idx]).statistic)

    def interval(values: list[float]) -> list[float] | None:
        return [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])] if values else None

    return Correlation(against=against, n=len(x), pearson_r=round(float(pearson.statistic), 4),
                       pearson_p=float(pearson.pvalue), pearson_ci=interval(boot_r),
                       spearman_rho=round(float(spearman.statistic), 4), spearman_p=float(spearman.pvalue),
                       spearman_ci=interval(boot_rho))


def _table(joint: list[dict[str, Any]], onsets: dict[int, int], peaks: dict[int, int]) -> list[ComplexityRow]:
    rows = []
    for level in sorted({r["complexity"] for r in joint if r["complexity"] is not None}):
        here = [r for r in joint if r["complexity"] == level]
        on = [onsets[r["feature"]] for r in here if r["feature"] in onsets]
        rows.append(ComplexityRow(
            complexity=level, n=len(here), onset_mean=_mean(on), onset_median=float(median(on)) if on else None,
            relie_peak_mean=_mean([peaks.get(r["feature"]) for r in here]),
            detection_mean=_mean([r["detection"] for r in here]),
            detection_shuffled_mean=_mean([r["detection_shuffled"] for r in here])))
    return rows


def _views(rows: list[dict[str, Any]], order: Sequence[str]) -> list[ViewScores]:
    out = []
    for view in order:
        here = [r for r in rows if r["view"] == view and r["complexity"] is not None]
        if here:
            out.append(ViewScores(view=view, n=len(here), detection_mean=_mean([r["detection"] for r in here]),
                                  fuzzing_mean=_mean([r["fuzzing"] for r in here]),
                                  detection_shuffled_mean=_mean([r["detection_shuffled"] for r in here]),
                                  fuzzing_shuffled_mean=_mean([r["fuzzing_shuffled"] for r in here])))
    return out


def reading(onset: Correlation, views: list[ViewScores]) -> str:
    """The result in one line. "emerge later/earlier" only where Pearson's p < 0.05 and its bootstrap
    interval leaves out 0; otherwise "no clear relation", with the numbers either way."""
    joint = next((v for v in views if v.view == "all"), None)
    scores = ("" if joint is None or joint.detection_mean is None else
              f"; detection {joint.detection_mean:.2f} vs {_two(joint.detection_shuffled_mean)} for shuffled "
              "explanations")
    if onset.pearson_r is None:
        return f"complexity vs onset: not measurable on {onset.n} features (too few, or one side constant){scores}"
    ci = onset.pearson_ci
    clear = onset.pearson_p < ALPHA and (ci is None or ci[0] > 0 or ci[1] < 0)
    claim = f"more complex features emerge {'later' if onset.pearson_r > 0 else 'earlier'}" if clear else \
        "no clear relation between complexity and emergence onset"
    interval = "" if ci is None else f", 95% CI [{ci[0]:.2f}, {ci[1]:.2f}]"
    return (f"{claim}: Pearson r = {onset.pearson_r:.2f} (p = {onset.pearson_p:.2g}{interval}), Spearman ρ = "
            f"{onset.spearman_rho:.2f} (p = {onset.spearman_p:.2g}) over {onset.n} features{scores}")


def _two(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def analyse(rows: list[dict[str, Any]], onsets: dict[int, int], peaks: dict[int, int] | None, revisions: list[str],
            explainer: str, n_boot: int, seed: int) -> InterpretAnalysis:
    """The analysis of explanations.csv's ``rows``; ``onsets``/``peaks``: feature -> checkpoint index."""
    joint = [r for r in rows if r["view"] == "all"]
    rated = [r for r in joint if r["complexity"] is not None]
    with_onset = [r for r in rated if r["feature"] in onsets]
    onset = correlate("onset", [r["complexity"] for r in with_onset], [onsets[r["feature"]] for r in with_onset],
                      n_boot, seed)
    peak = None
    if peaks is not None:
        with_peak = [r for r in rated if r["feature"] in peaks]
        peak = correlate("relie_peak", [r["complexity"] for r in with_peak], [peaks[r["feature"]] for r in with_peak],
                         n_boot, seed)
    views = _views(rows, ["all", *revisions])
    return InterpretAnalysis(explainer=explainer, revisions=revisions, n_features=len(joint), n_explained=len(rated),
                             onset=onset, relie_peak=peak, table=_table(joint, onsets, peaks or {}), views=views,
                             reading=reading(onset, views))
