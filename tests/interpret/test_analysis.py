"""Complexity against emergence: the correlations against independent computations, the table and the
per-view scores on hand-made rows."""

from __future__ import annotations

import math

import numpy as np

from crosstime.interpret.analysis import analyse, correlate


def _pearson(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(((x - x.mean()) * (y - y.mean())).sum() / math.sqrt(((x - x.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum()))


def _ranks(v):
    v = np.asarray(v, float)
    out = np.empty(len(v))
    for value in np.unique(v):  # ties share the mean of their ranks
        at = np.nonzero(v == value)[0]
        out[at] = np.argsort(np.argsort(v, kind="stable"), kind="stable")[at].mean() + 1
    return out


def test_correlations_match_their_definitions():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 6, 60)
    y = np.clip(x + rng.integers(-2, 3, 60), 0, 6)
    c = correlate("onset", x, y, n_boot=200, seed=0)
    assert c.n == 60
    assert abs(c.pearson_r - _pearson(x, y)) < 1e-4
    assert abs(c.spearman_rho - _pearson(_ranks(x), _ranks(y))) < 1e-4
    # p of r under H0 through the t distribution with n-2 df: large t -> tiny p
    assert c.pearson_p < 1e-6 and c.spearman_p < 1e-6
    assert c.pearson_ci[0] < c.pearson_r < c.pearson_ci[1]


def test_no_correlation_without_variation_or_features():
    assert correlate("onset", [1, 1, 1, 1], [0, 1, 2, 3], 10, 0).pearson_r is None
    assert correlate("onset", [1, 2], [0, 1], 10, 0).spearman_rho is None


def row(feature, view, complexity, detection, shuffled):
    return {"feature": feature, "view": view, "complexity": complexity, "detection": detection, "fuzzing": detection,
            "detection_shuffled": shuffled, "fuzzing_shuffled": shuffled}


def test_table_views_and_reading():
    rows = [row(0, "all", 1, 1.0, 0.5), row(1, "all", 1, 0.8, 0.5), row(2, "all", 3, 0.6, 0.4),
            row(3, "all", None, None, None), row(0, "s1", 1, 0.5, 0.5), row(4, "all", 4, 0.9, 0.6)]
    onsets = {0: 0, 1: 1, 2: 3, 3: 2, 4: 4}
    a = analyse(rows, onsets, {2: 1, 4: 2}, ["s0", "s1"], "rules", n_boot=50, seed=0)
    assert a.n_features == 5 and a.n_explained == 4 and a.onset.n == 4
    by_level = {r.complexity: r for r in a.table}
    assert sorted(by_level) == [1, 3, 4]
    assert by_level[1].n == 2 and by_level[1].onset_mean == 0.5 and by_level[1].detection_mean == 0.9
    assert by_level[3].relie_peak_mean == 1 and by_level[1].relie_peak_mean is None
    assert [v.view for v in a.views] == ["all", "s1"] and a.views[1].detection_mean == 0.5
    assert a.relie_peak.n == 2 and a.relie_peak.pearson_r is None  # two features: not measurable
    assert a.reading.startswith("more complex features emerge later: Pearson r = 0.97 (p = 0.026") and "detection 0.82 vs 0.50" in a.reading


def test_reading_claims_a_direction_only_when_it_holds():
    """Planted: onset rises with complexity (40 features) -> "emerge later"; near miss: the same onsets
    shuffled against complexity -> "no clear relation"."""
    rng = np.random.default_rng(0)
    complexity = [1 + i % 4 for i in range(40)]
    onsets = [c + int(rng.integers(0, 2)) for c in complexity]
    rows = [row(i, "all", c, 0.9, 0.5) for i, c in enumerate(complexity)]
    planted = analyse(rows, dict(enumerate(onsets)), None, ["s0"], "rules", n_boot=200, seed=0)
    assert planted.reading.startswith("more complex features emerge later: Pearson r = 0.9")
    shuffled = [int(v) for v in rng.permutation(onsets)]
    missed = analyse(rows, dict(enumerate(shuffled)), None, ["s0"], "rules", n_boot=200, seed=0)
    assert missed.onset.pearson_p > 0.05 and missed.reading.startswith("no clear relation")
