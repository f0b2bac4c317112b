"""When each phase of learning happens: the statistical phase from the n-gram KL, and each task's onset.

The second paper orders what a model learns: first the corpus's unigram and bigram statistics
(the KL from the model's next-token distribution to the bigram distribution falls and
converges), then previous-token and induction mechanisms, then more complex ones. The scan
measures the curves (``accuracy.csv``, ``dynamics.csv``); this module reads the onsets from them:

- **n-gram statistics converged**: the first checkpoint where ``KL(model ‖ bigram)`` has come
  down ``ngram_fraction`` (default 90%) of the way from its value at the first checkpoint to its
  minimum over the series. (After its minimum the KL may rise again: the model then predicts
  better than the bigram table, which is the next phase, not a loss of the first.)
- **a task is learned** at the first checkpoint from which its accuracy stays at or above
  ``accuracy`` (default 0.9) at every later checkpoint (a one-checkpoint blip does not count).

The order is the phases sorted by onset step (ties share a place); ``scan/phases.json``
(:class:`~crosstime.artifacts.Phases`) records it with every number it was read from, and how far
it can be trusted:

- **censored** onsets: a phase first reached at the last checkpoint may not stay, so its onset is
  only a bound;
- the **threshold interval** (low, high]: every accuracy threshold in it gives the same order
  (exact: the order can change only where the threshold passes one of the measured accuracies);
- the **bootstrap** over each task's minimal pairs (resampled with replacement, the same pairs at
  every checkpoint): each task's onset interval (5th–95th percentile) and the share of resamples
  that give the same order (``order_support``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crosstime.artifacts import Phase, Phases

NGRAM_PHASE = "n-gram statistics"


def _phase(name: str, rows: list[dict], index: int | None, value: float | None, reading: str) -> Phase:
    row = rows[index] if index is not None else None
    return Phase(name=name, revision=row["revision"] if row else None, step=row["step"] if row else None,
                 tokens=row["tokens"] if row else None, value=value, reading=reading)


def ngram_phase(dynamics: list[dict], fraction: float) -> Phase:
    """The checkpoint where KL(model ‖ bigram) has come ``fraction`` of the way down (rows in series order)."""
    kl = [r["kl_bigram"] for r in dynamics]
    low = min(kl)
    target = kl[0] - fraction * (kl[0] - low)
    index = next(i for i, v in enumerate(kl) if v <= target)
    return _phase(NGRAM_PHASE, dynamics, index, kl[index],
                  f"KL(model ‖ bigram) {kl[index]:.3g} nats: {fraction:.0%} of the way from {kl[0]:.3g} "
                  f"(first checkpoint) to its minimum {low:.3g}")


def onset_index(values: Sequence[float], accuracy: float) -> int | None:
    """The first index from which every value is at least ``accuracy`` (None: not even the last)."""
    return next((i for i in range(len(values)) if all(v >= accuracy for v in values[i:])), None)


def task_phase(task: str, rows: list[dict], accuracy: float) -> Phase:
    """The first checkpoint from which ``task``'s accuracy stays at or above ``accuracy`` (rows: its rows, in order)."""
    values = [r["accuracy"] for r in rows]
    index = onset_index(values, accuracy)
    if index is None:
        return _phase(task, rows, None, None, f"accuracy never stays at or above {accuracy:.0%} "
                                              f"(last checkpoint: {values[-1]:.0%})")
    return _phase(task, rows, index, values[index], f"accuracy {values[index]:.0%}, and at least {accuracy:.0%} "
                                                    "from here on")


def order_of(onsets: dict[str, int | None]) -> tuple[frozenset[str], ...]:
    """Phase names grouped by onset (earliest first, ties together), then the group never reached."""
    steps = sorted({v for v in onsets.values() if v is not None})
    return (*(frozenset(n for n, v in onsets.items() if v == s) for s in steps),
            frozenset(n for n, v in onsets.items() if v is None))


def _task_onsets(curves: dict[str, list[float]], steps: list[int], accuracy: float) -> dict[str, int | None]:
    onsets = {t: onset_index(values, accuracy) for t, values in curves.items()}
    return {t: None if i is None else steps[i] for t, i in onsets.items()}


def threshold_interval(curves: dict[str, list[float]], steps: list[int], fixed: dict[str, int | None],
                       accuracy: float) -> list[float]:
    """(low, high] around ``accuracy`` where every threshold gives the same order. ``curves``: each task's
    accuracy per checkpoint; ``steps``: the checkpoints' steps; ``fixed``: onsets that do not depend on
    the threshold (the n-gram phase). Exact: which accuracies clear a threshold t is the same for every t
    in (e_j, e_j+1], between consecutive measured accuracies e, so one t per such interval is enough."""
    edges = sorted({0.0, 1.0, *(v for values in curves.values() for v in values)})
    orders = [order_of(fixed | _task_onsets(curves, steps, hi)) for hi in edges[1:]]
    here = next(j for j, hi in enumerate(edges[1:]) if accuracy <= hi)
    lo = here
    while lo > 0 and orders[lo - 1] == orders[here]:
        lo -= 1
    hi = here
    while hi + 1 < len(orders) and orders[hi + 1] == orders[here]:
        hi += 1
    return [edges[lo], edges[hi + 1]]


def bootstrap_onsets(correct: np.ndarray, accuracy: float, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Onset index per bootstrap resample of the pairs: ``correct [M, n]`` (pair right at checkpoint m) →
    ``[resamples]`` (M where the task is not learned by the last checkpoint)."""
    M, n = correct.shape
    picks = rng.integers(0, n, size=(resamples, n))
    clears = correct[:, picks].mean(axis=-1).T >= accuracy  # [resamples, M]
    stays = np.flip(np.cumprod(np.flip(clears, axis=1), axis=1), axis=1).astype(bool)  # clears from m on
    return np.where(stays.any(axis=1), stays.argmax(axis=1), M)


def read_phases(accuracy_rows: list[dict], dynamics_rows: list[dict], *, accuracy: float = 0.9,
                ngram_fraction: float = 0.9, correct: dict[str, np.ndarray] | None = None,
                resamples: int = 1000, seed: int = 0) -> Phases:
    """The phases of a scan (rows of SCAN_ACCURACY and SCAN_DYNAMICS, in series order). ``correct``:
    per task, ``[M, n]`` whether each pair was right at each checkpoint, for the bootstrap (without
    it: no onset intervals, no order support)."""
    phases = [ngram_phase(dynamics_rows, ngram_fraction)] if dynamics_rows else []
    tasks = list(dict.fromkeys(r["task"] for r in accuracy_rows))
    rows_of = {t: [r for r in accuracy_rows if r["task"] == t] for t in tasks}
    phases += [task_phase(t, rows_of[t], accuracy) for t in tasks]
    last = (dynamics_rows or accuracy_rows)[-1]["step"] if (dynamics_rows or accuracy_rows) else None
    for p in phases:
        p.censored = p.step is not None and p.step == last
    learned = sorted((p for p in phases if p.step is not None), key=lambda p: p.step)
    out = Phases(accuracy=accuracy, ngram_fraction=ngram_fraction, phases=phases,
                 order=[p.name for p in learned], never=[p.name for p in phases if p.step is None])
    if tasks:
        steps = [r["step"] for r in rows_of[tasks[0]]]
        curves = {t: [r["accuracy"] for r in rows_of[t]] for t in tasks}
        fixed = {p.name: p.step for p in phases if p.name == NGRAM_PHASE}
        out.threshold_interval = threshold_interval(curves, steps, fixed, accuracy)
        if correct is not None:
            _bootstrap(out, correct, [r["revision"] for r in rows_of[tasks[0]]], steps, resamples, seed)
    return out


def _bootstrap(out: Phases, correct: dict[str, np.ndarray], revisions: list[str], steps: list[int],
               resamples: int, seed: int) -> None:
    """Each task's onset interval and the order's support, from ``resamples`` resamples of its pairs."""
    rng = np.random.default_rng(seed)
    by_name = {p.name: p for p in out.phases}
    onsets = {t: bootstrap_onsets(correct[t], out.accuracy, resamples, rng) for t in by_name if t in correct}
    named = [*revisions, None]  # index M: not learned by the last checkpoint
    for t, idx in onsets.items():
        by_name[t].onset_interval = [named[int(np.percentile(idx, q, method="lower"))] for q in (5, 95)]
    measured = order_of({p.name: p.step for p in out.phases})
    step_at = [*steps, None]
    same = sum(order_of({p.name: p.step for p in out.phases} | {t: step_at[int(idx[b])] for t, idx in onsets.items()})
               == measured for b in range(resamples))
    out.bootstrap, out.order_support = resamples, same / resamples


def phases_line(phases: Phases) -> str:
    """The order in one line with how far it holds: ``n-gram statistics (step128) < simple_agreement
    (step256) = … induction (step1000, censored); holds for accuracy thresholds in (0.81, 0.93], in 62% of
    1,000 bootstrap resamples of the pairs``."""
    by_name = {p.name: p for p in phases.phases}
    parts, last = [], None
    for name in phases.order:
        p = by_name[name]
        sep = "" if last is None else (" = " if p.step == last else " < ")
        parts.append(f"{sep}{name} ({p.revision}{', censored' if p.censored else ''})")
        last = p.step
    never = f"; not learned by the last checkpoint: {', '.join(phases.never)}" if phases.never else ""
    trust = phases.trust()
    return "phases in order of onset: " + "".join(parts) + never + (f"; this order {trust}" if trust else "")
