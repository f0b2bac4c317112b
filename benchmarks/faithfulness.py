"""The faithfulness and RelIE-uncertainty figures of benchmarks/RESULTS.md, from a run's attribution outputs.

Reads ``RUN/attribution/TASK/summary.json`` and ``features.csv`` (written by ``crosstime attribute``)
and prints Markdown: per task and checkpoint, each estimator's agreement with exact single-feature
ablation of the reported features (Spearman signed / on magnitudes, sign agreement) and the closer
one; then the RelIE classes with how many are uncertain, and every classed feature with the
interval of the comparison its class rests on. Nothing is recomputed: the numbers are the stage's.

    python benchmarks/faithfulness.py /tmp/relie-demo --tasks simple_agreement pp_attractor rc_attractor irregular_plural
"""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path

from crosstime.artifacts import (
    ATTRIBUTION_FEATURES,
    ATTRIBUTION_SUMMARY,
    AttributionSummary,
    RunDir,
    read_model,
)
from crosstime.shares import NO_EFFECT

AGREEMENT = ("simple_agreement", "pp_attractor", "rc_attractor", "irregular_plural")


def _num(value: float | None, spec: str = "+.2f") -> str:
    return "n/a" if value is None else format(value, spec)


def faithfulness_table(tasks: dict[str, AttributionSummary]) -> list[str]:
    """One row per task and checkpoint: ig and atp against exact ablation, and the closer one."""
    lines = ["| task | method | checkpoint | IG ρ signed / abs, same sign | AtP ρ signed / abs, same sign | closer |",
             "|---|---|---|---|---|---|"]
    for name, s in tasks.items():
        faith = s.faithfulness or {}
        for r in s.revisions:
            cells = []
            for est in ("ig", "atp"):
                v = faith.get(est, {}).get(r)
                cells.append("—" if v is None else
                             f"{_num(v.spearman)} / {_num(v.spearman_abs, '.2f')}, {_num(v.sign_agreement, '.0%')}")
            best = (s.faithfulness_best or {}).get(r) or "—"
            lines.append(f"| {name} | {s.method} | {r} | {cells[0]} | {cells[1]} | {best} |")
    return lines


def class_lines(run: RunDir, name: str, s: AttributionSummary) -> list[str]:
    """The task's RelIE class counts (uncertain among them) and each classed feature's interval."""
    unsure = s.relie_class_uncertain or {}
    counts = ", ".join(f"{c} {n} ({unsure.get(c, 0)} uncertain)" for c, n in s.relie_class_counts.items())
    lines = [f"- **{name}** ({s.method}; {s.n_reported} reported, {sum(unsure.values())} uncertain): {counts}"]
    for row in ATTRIBUTION_FEATURES.read(run.attribution(name), s.revisions):
        if row["relie_class"] == NO_EFFECT or row["relie_class_on"] is None:
            continue
        mark = "uncertain" if row["relie_class_uncertain"] else "sure"
        lines.append(f"  - #{row['feature']} {row['relie_class']}: {row['relie_class_on']} "
                     f"[{row['relie_class_lo']:.3f}, {row['relie_class_hi']:.3f}] vs {row['relie_class_cutoff']:g} "
                     f"— {mark}")
    return lines


def timing_line(name: str, s: AttributionSummary) -> str:
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in s.seconds.items())
    return f"- {name} ({s.method}, estimators {'+'.join(s.estimators)}): {parts}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory with attribution/TASK/ outputs")
    parser.add_argument("--tasks", nargs="+", default=list(AGREEMENT), help="tasks to report (default: agreement)")
    args = parser.parse_args()
    run = RunDir(args.run)
    tasks = {t: read_model(AttributionSummary, run.attribution(t) / ATTRIBUTION_SUMMARY) for t in args.tasks}
    print(f"<!-- benchmarks/faithfulness.py {args.run} --tasks {' '.join(args.tasks)}; "
          f"{datetime.date.today()}, {platform.machine()} {platform.system()} -->")
    print("\n".join(faithfulness_table(tasks)))
    print()
    for name, s in tasks.items():
        print("\n".join(class_lines(run, name, s)))
    print()
    for name, s in tasks.items():
        print(timing_line(name, s))


if __name__ == "__main__":
    main()
