"""The default ranking of a run's features: what the report lists and ``crosstime interpret --features reported`` explains.

    from crosstime.ranking import reported_features
    reported_features(open_run("runs/toy"), crosscoder, n=100)    # the report's default feature list

One owner for both stages, below them: the report reads interpret's output (its explanations), so
interpret must not read the report's output to choose its features (two stages reading each other
would each be stale whenever the other re-ran). Both rank from the same inputs, read through the run:

- most interesting first: the largest over tasks of Σ_m |IE_m| (``attribution/TASK/features.csv``);
- when no feature has an IE: Σ_m of its decoder norms (the crosscoder, when given);
- else its firing frequency (``evaluation/features.csv``); ties by id.

The pool: every feature of evaluation/features.csv and of the attributions, and every feature of the
crosscoder when given. An artifact is read only when a finished stage vouches for it (``Run.has``).
"""

from __future__ import annotations

import math

from crosstime.crosscoder import Crosscoder
from crosstime.runs import ATTRIBUTION, EVALUATION, Run

# the report's default number of listed features (ReportConfig.n_features), and interpret's for `reported`
N_REPORTED = 100


def ie_mass(run: Run) -> dict[int, float]:
    """Feature -> the largest over the run's attributed tasks of Σ_m |IE_m| (finite values only)."""
    best: dict[int, float] = {}
    for task in run.tasks:
        if not run.has(ATTRIBUTION, task):
            continue
        for row in run.attributions[task].features:
            mass = sum(abs(v) for v in row["ie"] or [] if v is not None and math.isfinite(v))
            best[row["feature"]] = max(best.get(row["feature"], 0.0), mass)
    return best


def rank(ids: set[int], ie: dict[int, float], norms: dict[int, list[float]] | None,
         frequency: dict[int, float | None]) -> list[int]:
    """``ids`` most interesting first (see the module docstring); ``norms``: feature -> its decoder norm per
    checkpoint [M]; ``frequency``: feature -> its firing frequency (None: unknown, ranked as 0)."""
    if any(ie.get(i, 0.0) > 0 for i in ids):
        def key(i: int) -> float:
            return ie.get(i, 0.0)
    elif norms:
        def key(i: int) -> float:
            return sum(v for v in norms.get(i, []) if v)
    else:
        def key(i: int) -> float:
            return frequency.get(i) or 0.0
    return sorted(ids, key=lambda i: (-key(i), i))


def ranked_features(run: Run, model: Crosscoder | None) -> list[int]:
    """Every feature of the pool (see the module docstring), most interesting first."""
    rows = run.evaluation.features if run.has(EVALUATION) else None
    frequency = {row["feature"]: row["frequency"] for row in rows or []}
    ie = ie_mass(run)
    ids = set(frequency) | set(ie)
    norms = None
    if model is not None:
        ids |= set(range(model.n_features))
        per_feature = model.decoder_norms().detach().float().cpu().tolist()  # [F][M]
        norms = {i: per_feature[i] for i in ids}
    return rank(ids, ie, norms, frequency)


def reported_features(run: Run, model: Crosscoder | None, n: int = N_REPORTED) -> list[int]:
    """The report's default feature list: the first ``n`` of :func:`ranked_features`."""
    return ranked_features(run, model)[:n]


__all__ = ["N_REPORTED", "ie_mass", "rank", "ranked_features", "reported_features"]
