"""Fill the numbers and figures of docs/tutorial.md and README.md from one demo run.

    python docs/generate.py                    # run `crosstime demo` into runs/docs-demo, then fill the docs
    python docs/generate.py --run RUN          # a finished demo run: the demo reuses every stage (no times)

The markdown holds markers ``<!-- gen:NAME -->…<!-- /gen -->``; the text between them is replaced
by ``values(...)[NAME]``, everything else is left as it is. Figures are copied from the run into
docs/img/. Times (``TIME_KEYS``) are filled only from a demo this call ran; a re-used run leaves
them as they are. tests/test_docs.py compares every other marker with the suite's demo run.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from crosstime.artifacts import (
    ATTRIBUTION_JOINT,
    ATTRIBUTION_SUMMARY,
    AttributionSummary,
    REPORT_DATA,
    SCAN_SUGGESTION,
    Evaluation,
    ReportData,
    RunDir,
    Suggestion,
    read_model,
)
from crosstime.crosscoder.logs import heldout_summary
from crosstime.demo import DemoConfig, DemoResult, demo
from crosstime.evaluate import paper_row
from crosstime.report.findings import emergence_finding
from crosstime.series import format_tokens
from crosstime.store import ActivationStore
from crosstime.toy import read_build
from crosstime.toy.pretrain import cache_root

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
FILES = (DOCS / "tutorial.md", ROOT / "README.md")
MARKER = re.compile(r"<!-- gen:(?P<name>[a-z0-9_]+) -->(?P<body>.*?)<!-- /gen -->", re.DOTALL)
# run directory file -> docs/img file
FIGURES = {
    "scan/accuracy.png": "tutorial-accuracy.png",
    "scan/cka.png": "tutorial-cka.png",
    "scan/dynamics.png": "tutorial-dynamics.png",
    "evaluation/reldec.png": "tutorial-reldec.png",
    "evaluation/emergence.png": "tutorial-emergence.png",
}
# not reproducible (times of this machine): filled only from a demo this script ran, never compared
TIME_KEYS = {"demo_time", "demo_timings", "toy_build_s", "toy_train_s"}


def _toy_values(world: Path) -> dict[str, str]:
    build = read_build(world)
    rows = ["| checkpoint (tokens) | " + " | ".join(build["n_pairs"]) + " | held-out loss |",
            "|---" * (len(build["n_pairs"]) + 2) + "|"]
    tokens_per_step = build["tokens_per_step"]
    for revision, accuracy in build["accuracy"].items():
        step = int(revision.removeprefix("step"))
        if step not in (0, 16, 64, 128, 256, 512, 1000):  # the rows the text discusses
            continue
        label = format_tokens(step * tokens_per_step) if step else "0"
        cells = " | ".join(f"{accuracy[t]:.2f}" for t in build["n_pairs"])
        rows.append(f"| {revision} ({label}) | {cells} | {build['loss'][revision]['heldout']:.2f} |")
    # the default cache location, whatever CROSSTIME_CACHE this run used (the docs describe the default)
    default_path = "~/.cache/crosstime/" + world.relative_to(cache_root()).as_posix()
    return {"toy_path": default_path, "toy_build_s": f"{build['timing']['total_s']:.0f} s",
            "toy_train_s": f"{build['timing']['train_s']:.0f} s", "toy_accuracy_table": "\n" + "\n".join(rows) + "\n"}


def _stage_values(run: RunDir) -> dict[str, str]:
    suggestion = read_model(Suggestion, run.scan / SCAN_SUGGESTION)
    rows = ["| role | checkpoint | reason (from `suggestion.json`) |", "|---|---|---|"]
    rows += [f"| {p.role} | **{p.revision}** ({p.label}) | \"{p.reason}\" |" for p in suggestion.checkpoints]
    store = ActivationStore(run.activations)
    scales = ["| checkpoint | mean row norm E‖x‖ | scale s |", "|---|---|---|"]
    scales += [f"| {r} | {(store.d_model ** 0.5) / s:.2f} | {s:.4g} |" for r, s in store.scales.items()]
    evaluation = read_model(Evaluation, run.evaluation_file)
    table = ["| checkpoint | EV | MSE | CE clean | CE spliced | CE zero-ablated | ΔCE | CE recovered | KL(clean ‖ spliced) |",
             "|---" * 9 + "|"]
    for c in evaluation.checkpoints:
        table.append(f"| {c.revision} | {c.explained_variance:.3f} | {c.mse:.4f} | {c.ce_clean:.3f} | {c.ce_spliced:.3f} | "
                     f"{c.ce_zero:.3f} | {c.delta_ce:+.4f} | {c.ce_recovered:.4f} | {c.kl:.4f} |")
    s = evaluation.summary
    live = evaluation.decoder["classes_live"]
    return {
        "revisions": ", ".join(suggestion.revisions),
        "suggestion_table": "\n" + "\n".join(rows) + "\n",
        "scan_blocks": " | ".join(f"{b[0]}–{b[-1]}" if len(b) > 1 else b[0] for b in suggestion.blocks),
        "store_summary": store.summary().replace(str(run.activations), "RUN/activations"),
        "scale_table": "\n" + "\n".join(scales) + "\n",
        "train_heldout": heldout_summary(run.crosscoder, suggestion.revisions) or "",
        "evaluation_table": "\n" + "\n".join(table) + "\n",
        "evaluation_row": paper_row(evaluation),
        "evaluation_overall": (f"L0 {s.l0:.1f}, EV {s.explained_variance_overall:.3f}, **{s.dead} dead latents** of "
                               f"{evaluation.settings['n_features']} ({s.dead_fraction:.0%}: never fired on "
                               f"{s.dead_window_tokens:,} tokens)"),
        "reldec_live": (f"Of the {sum(live.values())} live features, "
                        + ", ".join(f"{n} are {cls}" for cls, n in live.items()) + "."),
    }


def _demo_values(result: DemoResult) -> dict[str, str]:
    findings = "\n" + "\n".join(f"{i}. {line}" for i, line in enumerate(result.findings, 1)) + "\n"
    attribution = "\n" + "\n".join(f"- {line}" for name, lines in result.summaries.items()
                                   if name.startswith("attribute ") for line in lines) + "\n"
    data = read_model(ReportData, RunDir(result.run).report / REPORT_DATA).model_dump(mode="json")
    evaluation = read_model(Evaluation, RunDir(result.run).evaluation_file).summary
    return {"findings": findings, "findings_inline": " ".join(f"*{line}*" for line in result.findings),
            "attribution_top": attribution, "emergence": emergence_finding(data) or "",
            "report_size": f"{result.dashboard.stat().st_size / 1e6:.1f} MB",
            "scaling_disputes": f"{evaluation.reldec_disputed} of the {evaluation.scaling_judged} features it judged",
            "joint_table": _joint_table(RunDir(result.run), result.revisions)}


def _joint_table(run: RunDir, revisions: list[str]) -> str:
    """Accuracy after ablating / restoring the top k (by signed IE) against k random active features,
    per task and checkpoint, for k = 5 and 20 (from each task's joint.csv)."""
    rows = ["| task | checkpoint | clean → all ablated | ablate top 5 / random 5 | ablate top 20 / random 20 "
            "| restore top 5 / random 5 | restore top 20 / random 20 |", "|---" * 7 + "|"]
    for task in run.attribution_tasks():
        table = ATTRIBUTION_JOINT.read(run.attribution(task), revisions)
        summary = read_model(AttributionSummary, run.attribution(task) / ATTRIBUTION_SUMMARY)
        for revision in summary.revisions:
            cell = {(r["mode"], r["ranking"], r["k"]): r["accuracy"] for r in table if r["checkpoint"] == revision}
            pairs = [f"{cell[(mode, 'signed_ie', k)]:.2f} / {cell[(mode, 'random', k)]:.2f}"
                     for mode in ("ablate", "restore") for k in (5, 20)]
            level = f"{summary.accuracy_clean[revision]:.2f} → {summary.accuracy_all_ablated[revision]:.2f}"
            rows.append(f"| {task} | {revision} | {level} | " + " | ".join(pairs) + " |")
    return "\n" + "\n".join(rows) + "\n"


def _time_values(result: DemoResult) -> dict[str, str]:
    t = result.timings
    total = sum(v for k, v in t.items() if k != "toy world")
    rows = ["| stage | seconds |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in t.items() if k != "toy world"]
    rows.append(f"| **total** | **{total:.1f}** |")
    attribute = [v for k, v in t.items() if k.startswith("attribute ")]
    return {"demo_timings": "\n" + "\n".join(rows) + "\n",
            "demo_time": (f"**{int(total // 60)} min {total % 60:.0f} s** in all — scan {t['scan']:.0f} s, harvest "
                          f"{t['harvest']:.0f} s, train {t['train']:.0f} s, evaluate {t['evaluate']:.0f} s, attribution "
                          f"{min(attribute):.0f}–{max(attribute):.0f} s per task, report {t['report']:.0f} s")}


def values(result: DemoResult, with_times: bool) -> dict[str, str]:
    """Every marker's text, from the demo ``result`` (and its run directory)."""
    out = {**_toy_values(result.toy_world), **_stage_values(RunDir(result.run)), **_demo_values(result)}
    if with_times:
        out.update(_time_values(result))
    return out


def markers(text: str) -> dict[str, str]:
    """The markers of a markdown text: name -> text between the markers (a name may repeat with one text)."""
    return {m["name"]: m["body"] for m in MARKER.finditer(text)}


def fill(text: str, new: dict[str, str]) -> str:
    """``text`` with each marker's body replaced by ``new[name]`` (markers without a value are kept)."""
    return MARKER.sub(lambda m: f"<!-- gen:{m['name']} -->{new.get(m['name'], m['body'])}<!-- /gen -->", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished demo run to read (default: run the demo afresh)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "docs-demo", help="where a fresh demo runs")
    args = parser.parse_args(argv)
    if args.run is None and args.out.exists():
        shutil.rmtree(args.out)  # a fresh run: every stage runs, so its times are real
    result = demo(DemoConfig(run=args.run or args.out))
    fresh = not result.reused
    new = values(result, with_times=fresh)
    for path in FILES:
        path.write_text(fill(path.read_text(encoding="utf-8"), new), encoding="utf-8")
    for source, target in FIGURES.items():
        shutil.copyfile(result.run / source, DOCS / "img" / target)
    print(json.dumps({"run": str(result.run), "times_filled": fresh, "markers": sorted(new)}, indent=1))
    if not fresh:
        print("note: every stage was reused, so the times in the docs were left as they are", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["FIGURES", "FILES", "TIME_KEYS", "fill", "main", "markers", "values"]
