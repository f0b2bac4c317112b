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
(:class:`~crosstime.artifacts.Phases`) records it with every number it was read from.
"""

from __future__ import annotations

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


def task_phase(task: str, rows: list[dict], accuracy: float) -> Phase:
    """The first checkpoint from which ``task``'s accuracy stays at or above ``accuracy`` (rows: its rows, in order)."""
    values = [r["accuracy"] for r in rows]
    index = next((i for i in range(len(values)) if all(v >= accuracy for v in values[i:])), None)
    if index is None:
        return _phase(task, rows, None, None, f"accuracy never stays at or above {accuracy:.0%} "
                                              f"(last checkpoint: {values[-1]:.0%})")
    return _phase(task, rows, index, values[index], f"accuracy {values[index]:.0%}, and at least {accuracy:.0%} "
                                                    "from here on")


def read_phases(accuracy_rows: list[dict], dynamics_rows: list[dict], *, accuracy: float = 0.9,
                ngram_fraction: float = 0.9) -> Phases:
    """The phases of a scan (rows of SCAN_ACCURACY and SCAN_DYNAMICS, in series order)."""
    phases = [ngram_phase(dynamics_rows, ngram_fraction)] if dynamics_rows else []
    for task in dict.fromkeys(r["task"] for r in accuracy_rows):
        phases.append(task_phase(task, [r for r in accuracy_rows if r["task"] == task], accuracy))
    learned = sorted((p for p in phases if p.step is not None), key=lambda p: p.step)
    return Phases(accuracy=accuracy, ngram_fraction=ngram_fraction, phases=phases,
                  order=[p.name for p in learned], never=[p.name for p in phases if p.step is None])


def phases_line(phases: Phases) -> str:
    """The order in one line: ``n-gram statistics (step128) < simple_agreement (step256) = …``."""
    by_name = {p.name: p for p in phases.phases}
    parts, last = [], None
    for name in phases.order:
        p = by_name[name]
        sep = "" if last is None else (" = " if p.step == last else " < ")
        parts.append(f"{sep}{name} ({p.revision})")
        last = p.step
    never = f"; not learned by the last checkpoint: {', '.join(phases.never)}" if phases.never else ""
    return "phases in order of onset: " + "".join(parts) + never
