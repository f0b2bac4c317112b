"""Does the toy world show the second paper's order at every accuracy threshold? (issue #24)

Runs the scan's own sweep (the demo's scan settings, without the similarity tokens, which the
phases do not read) over a built toy world, then reads the phases at each accuracy threshold
from 0.80 to 0.95 with :func:`crosstime.scan.phases.read_phases`, and prints:

1. each task's onset per threshold (``-``: not learned by the last checkpoint);
2. whether previous_token is learned strictly before each of ``--after`` at *every* threshold in
   [0.80, 0.95] (exact: onsets change only where the threshold passes a measured accuracy, so the
   thresholds 0.80 and every measured accuracy in (0.80, 0.95] cover the interval);
3. per threshold, the bootstrap over each task's pairs: the share of resamples in which
   previous_token's onset is strictly before each later task's, and the scan's ``order_support``
   (the whole order, ties included, the same) and ``threshold_interval``.

    CROSSTIME_CACHE=/tmp/toycache python benchmarks/toy_phase_order.py [WORLD] [--json out.json]

WORLD: a built toy world (default: the cached default world, built if missing). Exit status 1
when the order fails at some threshold.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from crosstime.scan import ScanConfig, phases_line, prepare, read_phases
from crosstime.scan.phases import bootstrap_onsets, onset_index
from crosstime.scan.work import run_sweep
from crosstime.toy import toy_world

LOW, HIGH = 0.80, 0.95
FIRST = "previous_token"
AFTER = ("pp_attractor", "rc_attractor", "induction")


def thresholds(curves: dict[str, list[float]]) -> list[float]:
    """0.80 and every measured accuracy in (0.80, 0.95], and 0.95: one threshold per interval of
    thresholds that give the same onsets, so checking these checks all of [0.80, 0.95]."""
    measured = {round(v, 6) for values in curves.values() for v in values if LOW < v <= HIGH}
    return sorted({LOW, HIGH, *measured})


def onsets_at(curves: dict[str, list[float]], steps: list[int], t: float) -> dict[str, int | None]:
    return {task: None if (i := onset_index(values, t)) is None else steps[i] for task, values in curves.items()}


def strictly_before(first: int | None, later: int | None) -> bool:
    return first is not None and (later is None or first < later)


def pairwise_support(correct: dict[str, np.ndarray], t: float, resamples: int, seed: int) -> dict[str, float]:
    """Share of bootstrap resamples (each task's pairs resampled on their own) where FIRST's onset
    index is strictly before each task of AFTER's (index M: not learned)."""
    rng = np.random.default_rng(seed)
    first = bootstrap_onsets(correct[FIRST], t, resamples, rng)
    M = correct[FIRST].shape[0]
    return {task: float(np.mean((first < M) & (first < bootstrap_onsets(correct[task], t, resamples, rng))))
            for task in AFTER}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("world", nargs="?", type=Path, help="a built toy world (default: the cached default world)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--json", type=Path, help="also write the readings here")
    args = ap.parse_args()
    world = args.world or toy_world()
    with tempfile.TemporaryDirectory() as tmp:  # the sweep writes nothing; the config wants a run folder
        config = ScanConfig(run=Path(tmp) / "run", series=str(world), layer=0, similarity_tokens=0, progress=False)
        sweep = run_sweep(config, prepare(config))
    tasks = list(dict.fromkeys(r["task"] for r in sweep.accuracy))
    revisions = list(dict.fromkeys(r["revision"] for r in sweep.accuracy))
    steps = [r["step"] for r in sweep.accuracy if r["task"] == tasks[0]]
    curves = {t: [r["accuracy"] for r in sweep.accuracy if r["task"] == t] for t in tasks}
    correct = sweep.correct_pairs()

    print("accuracy per checkpoint:")
    print(f"{'checkpoint':>11} " + " ".join(f"{t[:16]:>16}" for t in tasks))
    for i, rev in enumerate(revisions):
        print(f"{rev:>11} " + " ".join(f"{curves[t][i]:16.3f}" for t in tasks))

    grid = thresholds(curves)
    failures = []
    for t in grid:
        onsets = onsets_at(curves, steps, t)
        failures += [(t, task) for task in AFTER if not strictly_before(onsets[FIRST], onsets[task])]
    print(f"\n{FIRST} strictly before {', '.join(AFTER)} at every threshold in [{LOW}, {HIGH}] "
          f"({len(grid)} thresholds checked): {'yes' if not failures else 'NO: ' + str(failures)}")

    report = {"revisions": revisions, "accuracy": curves, "thresholds": {}}
    print("\nonset step per threshold; bootstrap: share of resamples with previous_token strictly first; "
          "the scan's order support and threshold interval")
    print(f"{'t':>5} " + " ".join(f"{t[:9]:>9}" for t in tasks) + "   " + " ".join(f"P(<{t[:4]})" for t in AFTER)
          + "  order_support  interval")
    for t in [round(LOW + 0.01 * k, 2) for k in range(16)]:
        onsets = onsets_at(curves, steps, t)
        support = pairwise_support(correct, t, args.resamples, seed=0)
        phases = read_phases(sweep.accuracy, sweep.dynamics, accuracy=t, correct=correct, resamples=args.resamples)
        lo, hi = phases.threshold_interval
        print(f"{t:5.2f} " + " ".join(f"{'-' if onsets[x] is None else onsets[x]:>9}" for x in tasks) + "   "
              + " ".join(f"{support[x]:>7.3f}" for x in AFTER) + f"  {phases.order_support:13.3f}  ({lo:.3f}, {hi:.3f}]")
        report["thresholds"][f"{t:.2f}"] = {"onsets": onsets, "support_first": support,
                                            "order": phases.order, "order_support": phases.order_support,
                                            "threshold_interval": phases.threshold_interval}
    print("\nat the scan's default threshold 0.9: " + phases_line(
        read_phases(sweep.accuracy, sweep.dynamics, correct=correct, resamples=args.resamples)))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
