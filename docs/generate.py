"""Fill the numbers and figures of docs/tutorial.md and README.md from one demo run.

    python docs/generate.py                    # run `crosstime demo` into runs/docs-demo, then fill the docs
    python docs/generate.py --run RUN          # a finished demo run: the demo reuses every stage (no times)

The markdown holds markers ``<!-- gen:NAME -->…<!-- /gen -->``; the text between them is replaced
by ``values(...)[NAME]``, everything else is left as it is. Figures are copied from the run into
docs/img/. Times (``TIME_KEYS``) are filled only from a demo this call ran; a re-used run leaves
them as they are. tests/app/test_docs.py compares every other marker with the suite's demo run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from crosstime.artifacts import (
    ATTRIBUTION_JOINT,
    ATTRIBUTION_SUMMARY,
    SCAN_ACCURACY,
    SCAN_DYNAMICS,
    SCAN_PHASES,
    SCAN_SIMILARITY,
    SCAN_SUGGESTION,
    SCAN_TASKS,
    INTERPRET_ANALYSIS,
    AttributionSummary,
    Evaluation,
    InterpretAnalysis,
    Phases,
    RunDir,
    Suggestion,
    read_model,
    read_report_data,
)
from crosstime.checkpoints import format_tokens
from crosstime.crosscoder.logs import heldout_summary
from crosstime.demo import EVOLUTION_REVISIONS, DemoConfig, DemoResult, demo
from crosstime.evaluate import paper_row
from crosstime.report.findings import (
    dimensionality_reading,
    emergence_finding,
    phase_order_reading,
    rotation_reading,
    typed_emergence_reading,
)
from crosstime.scan import phases_line
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
    "evaluation/rotation.png": "tutorial-direction-turn.png",
    "evaluation/dimensionality.png": "tutorial-dimensionality.png",
    "evaluation/typed_emergence.png": "tutorial-typed-emergence.png",
    "report/two_phase.png": "tutorial-two-phase.png",
    "interpret/complexity.png": "tutorial-complexity.png",
}
# not reproducible (times of this machine): filled only from a demo this script ran, never compared
TIME_KEYS = {"demo_time", "demo_timings", "toy_build_s", "toy_train_s"}


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table, with a newline before and after (a marker's body on lines of its own)."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]
    return "\n" + "\n".join(lines) + "\n"


def _toy_values(world: Path) -> dict[str, str]:
    build = read_build(world)
    tasks, tokens_per_step, c = list(build["n_pairs"]), build["tokens_per_step"], build["config"]
    rows = []
    for revision in EVOLUTION_REVISIONS:  # the rows the text discusses: the demo's crosscoder checkpoints
        accuracy, step = build["accuracy"][revision], int(revision.removeprefix("step"))
        label = format_tokens(step * tokens_per_step) if step else "0"
        rows.append([f"{revision} ({label})", *(f"{accuracy[t]:.2f}" for t in tasks),
                     f"{build['loss'][revision]['heldout']:.2f}"])
    examples = []
    for task in tasks:
        pair = json.loads((world / "pairs" / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()[0])
        examples.append([f"`{task}`", f"`{pair['one_prefix_prefix']}`", f"`{pair['one_prefix_word_good']}`",
                         f"`{pair['one_prefix_word_bad']}`"])
    grammar_share = 1 - c["copy_share"] - c["induction_share"]
    # the default cache location, whatever CROSSTIME_CACHE this run used (the docs describe the default)
    default_path = "~/.cache/crosstime/" + world.relative_to(cache_root()).as_posix()
    return {"toy_path": default_path, "toy_build_s": f"{build['timing']['total_s']:.0f} s",
            "toy_train_s": f"{build['timing']['train_s']:.0f} s",
            "toy_accuracy_table": _table(["checkpoint (tokens)", *tasks, "held-out loss"], rows),
            "toy_pair_examples": _table(["task", "prefix", "good", "bad"], examples),
            "toy_mix": (f"{grammar_share:.0%} grammar sentences, {c['copy_share']:.0%} copy documents and "
                        f"{c['induction_share']:.0%} induction documents"),
            "toy_settings": (f"{c['n_layers']} blocks, d = {c['d_model']}, {c['n_heads']} heads, FFN {c['d_ffn']}; "
                             f"{c['steps']} steps of {c['batch_size']} × {c['seq_len']} tokens ({tokens_per_step:,} "
                             f"tokens per step) over {c['n_train_sentences']:,} training lines "
                             f"({build['n_train_tokens']:,} tokens, {build['epochs']:.2f} epochs)"),
            "toy_below_chance": _below_chance(build)}


def _below_chance(build: dict, level: float = 0.4) -> str:
    """The tasks whose accuracy falls below ``level`` on the way (each at its lowest checkpoint), or "none"."""
    low = []
    for task in build["n_pairs"]:
        revision = min(build["accuracy"], key=lambda r: build["accuracy"][r][task])
        if build["accuracy"][revision][task] < level:
            low.append(f"{task} {build['accuracy'][revision][task]:.2f} at {revision}")
    return ", ".join(low) if low else "none"


def _scan_values(run: RunDir, revisions: list[str]) -> dict[str, str]:
    """The scan's markers; ``revisions``: the crosscoder's checkpoints (the rows the text discusses)."""
    suggestion = read_model(Suggestion, run.scan / SCAN_SUGGESTION)
    rows = [[p.role, f"**{p.revision}** ({p.label})", f"\"{p.reason}\""] for p in suggestion.checkpoints]
    phases = read_model(Phases, run.scan / SCAN_PHASES)
    by_name = {p.name: p for p in phases.phases}
    phase_rows = [[name, by_name[name].revision, format_tokens(by_name[name].tokens) if by_name[name].tokens else "0",
                   by_name[name].reading] for name in phases.order]
    phase_rows += [[name, "—", "—", by_name[name].reading] for name in phases.never]
    accuracy = SCAN_ACCURACY.read(run.scan, [])
    tasks = list(dict.fromkeys(r["task"] for r in accuracy))
    margin = {(r["revision"], r["task"]): r["mean_m"] for r in accuracy}
    jumps = suggestion.jump.tasks if suggestion.jump is not None else {}
    jump_text = "; ".join(f"{t} from {j.starts} to {j.ends} (fitted {j.low:.2f} → {j.high:.2f})"
                          for t, j in jumps.items())
    no_jump = suggestion.jump.no_jump if suggestion.jump is not None else []
    kept = {t: v["n"] for t, v in json.loads((run.scan / SCAN_TASKS).read_text(encoding="utf-8")).items()}
    return {
        "revisions": ", ".join(suggestion.revisions),
        "suggestion_table": _table(["role", "checkpoint", "reason (from `suggestion.json`)"], rows),
        "suggestion_jumps": (jump_text or "no task has a jump") + (f"; no jump: {', '.join(no_jump)}" if no_jump else ""),
        "scan_blocks": " | ".join(f"{b[0]}–{b[-1]}" if len(b) > 1 else b[0] for b in suggestion.blocks),
        "scan_tasks": (f"all {len(kept)} × {next(iter(kept.values()))} here" if len(set(kept.values())) == 1
                       else ", ".join(f"{t} {n}" for t, n in kept.items())),
        "phases_table": _table(["phase", "checkpoint", "tokens", "reading (from `phases.json`)"], phase_rows),
        "phases_line": phases_line(phases),
        "mean_m_table": _table(["checkpoint", *tasks],
                               [[r, *(f"{margin[(r, t)]:+.3f}" for t in tasks)] for r in revisions]),
        "cka_line": _cka_line(run, revisions),
        "dynamics_line": _dynamics_line(run),
    }


def _cka_line(run: RunDir, revisions: list[str]) -> str:
    """Linear CKA between consecutive crosscoder checkpoints, and between the first and the last."""
    with np.load(run.scan / SCAN_SIMILARITY) as z:
        index = {str(r): i for i, r in enumerate(z["revisions"])}
        cka = z["cka"]
    pairs = ", ".join(f"{a}–{b} {cka[index[a], index[b]]:.2f}" for a, b in itertools.pairwise(revisions))
    return f"{pairs}; {revisions[0]}–{revisions[-1]} {cka[index[revisions[0]], index[revisions[-1]]]:.2f}"


def _dynamics_line(run: RunDir) -> str:
    """The n-gram KL curves and the held-out loss in words: first value, minimum, last value."""
    rows = SCAN_DYNAMICS.read(run.scan, [])
    first, last = rows[0], rows[-1]
    parts = []
    for key, name in (("kl_unigram", "KL(model ‖ unigram)"), ("kl_bigram", "KL(model ‖ bigram)")):
        low = min(rows, key=lambda r: r[key])
        parts.append(f"{name} {first[key]:.2f} nats at {first['revision']} → its minimum {low[key]:.2f} at "
                     f"{low['revision']} → {last[key]:.2f} at {last['revision']}")
    below = next((r for r in rows if r["loss"] <= r["bigram_loss"]), None)
    reach = (f"first at or below the corpus bigram loss ({below['bigram_loss']:.2f} nats) at {below['revision']} "
             f"({below['loss']:.2f})" if below else f"never at or below the corpus bigram loss "
                                                   f"({last['bigram_loss']:.2f} nats)")
    return "; ".join(parts) + f"; held-out loss {first['loss']:.2f} → {last['loss']:.2f}, {reach}"


def _store_values(run: RunDir, settings: DemoConfig) -> dict[str, str]:
    store = ActivationStore(run.activations)
    revisions = list(store.revisions)
    m = store.manifest
    train, held = m["splits"]["train"], m["splits"]["heldout"]
    per_context = m["context_len"] - len(m["excluded_positions"])
    train_rows = (train[1] - train[0]) * per_context
    chunk_bytes = sum(f.stat().st_size for f in (run.activations / revisions[0]).glob("*.bin"))
    row_bytes = m["n_rows"] * m["d_model"] * np.dtype(m["dtype"]).itemsize
    excluded = ", ".join(map(str, m["excluded_positions"]))
    n_train = train[1] - train[0]
    manifest = [["`site`", f"block {m['site']['layer']} output (`hidden_states_index` {m['site']['hidden_states_index']})"],
                ["`d_model`, `dtype`", f"{m['d_model']}, `{m['dtype']}`"],
                ["`context_len`, `excluded_positions`", f"{m['context_len']} tokens, positions {excluded} excluded"],
                ["`splits`", (f"train contexts {train[0]}–{train[1]} ({n_train:,} · {m['context_len']} = "
                              f"{n_train * m['context_len']:,} tokens), held-out {held[0]}–{held[1]} ({held[1] - held[0]:,})")],
                ["`n_tokens`, `n_rows`", f"{m['n_tokens']:,} tokens; {m['n_rows']:,} stored rows ({m['n_contexts']:,} · {per_context})"]]
    names = ",".join(revisions)
    harvest = (f"crosstime harvest RUN TOY --revisions {names} \\\n    --layer {settings.layer} --tokens "
               f"{settings.tokens} --heldout-tokens {settings.heldout_tokens}")
    train_cmd = (f"crosstime train RUN --n-features {settings.n_features} --steps {settings.train_steps} --batch-size "
                 f"{settings.batch_size} --lr {settings.lr:g} \\\n    --sparsity-coeff {settings.sparsity_coeff:g} "
                 f"--val-every 250 --save-every 250")
    rows_seen = settings.train_steps * settings.batch_size
    scales = [[r, f"{(store.d_model ** 0.5) / s:.2f}", f"{s:.4g}"] for r, s in store.scales.items()]
    return {
        "store_summary": store.summary().replace(str(run.activations), "RUN/activations"),
        "scale_table": _table(["checkpoint", "mean row norm E‖x‖", "scale s"], scales),
        "manifest_table": _table(["field", "value in the demo"], manifest),
        "tokens_shape": f"int32 [{m['n_contexts']}, {m['context_len']}]",
        "store_disk": (f"{m['n_rows']:,} rows · {m['d_model']} · {np.dtype(m['dtype']).itemsize} B = {row_bytes:,} B per "
                       f"checkpoint (the chunk files of `{revisions[0]}/` hold {chunk_bytes:,} B), plus "
                       f"{m['n_contexts'] * m['context_len'] * 4 / 1e6:.2f} MB of token ids"),
        "harvest_command": f"\n```bash\n{harvest}\n```\n",
        "train_command": f"\n```bash\n{train_cmd}\n```\n",
        "train_passes": (f"{settings.train_steps:,} steps of {settings.batch_size:,} rows at lr {settings.lr:g}, "
                         f"λ = {settings.sparsity_coeff:g}, F = {settings.n_features:,} — {rows_seen:,} rows, i.e. "
                         f"{rows_seen / train_rows:.1f} passes over the {train_rows:,} training rows"),
        "train_heldout": heldout_summary(run.crosscoder, revisions) or "",
    }


def _evaluation_values(run: RunDir) -> dict[str, str]:
    evaluation = read_model(Evaluation, run.evaluation_file)
    table = [[c.revision, f"{c.explained_variance:.3f}", f"{c.mse:.4f}", f"{c.ce_clean:.3f}", f"{c.ce_spliced:.3f}",
              f"{c.ce_zero:.3f}", f"{c.delta_ce:+.4f}", f"{c.ce_recovered:.4f}", f"{c.kl:.4f}"]
             for c in evaluation.checkpoints]
    s, d = evaluation.summary, evaluation.decoder
    live = d.trajectory_labels_live
    low = min(evaluation.checkpoints, key=lambda c: c.delta_ce)
    high = max(evaluation.checkpoints, key=lambda c: c.delta_ce)
    rot, dim = d.rotation, d.dimensionality
    geometry = [[r, f"{dim.total[m]:.3f}", str(dim.pcs_90[m]), str(d.presence.present[m]),
                 "—" if m == 0 or rot.median_cosine[m - 1] is None else f"{rot.median_cosine[m - 1]:.2f}",
                 "—" if rot.final_median[m] is None else f"{rot.final_median[m]:.2f}"] for m, r in enumerate(rot.revisions)]
    typed = d.typed_emergence
    revisions = typed.revisions
    typed_rows = [[t, str(typed.counts[t]),
                   "—" if typed.onset_median[t] is None else revisions[typed.onset_median[t]],
                   " / ".join(str(n) for n in typed.onset_counts[t])] for t in typed.types]
    return {
        "evaluation_table": _table(["checkpoint", "EV", "MSE", "CE clean", "CE spliced", "CE zero-ablated", "ΔCE",
                                    "CE recovered", "KL(clean ‖ spliced)"], table),
        "evaluation_row": paper_row(evaluation),
        "evaluation_tokens": (f"all {evaluation.settings.heldout_contexts} held-out contexts, "
                              f"{evaluation.checkpoints[0].predictions:,} predictions per checkpoint"),
        "evaluation_overall": (f"L0 {s.l0:.1f}, EV {s.explained_variance_overall:.3f}, **{s.dead} dead latents** of "
                               f"{evaluation.settings.n_features} ({s.dead_fraction:.0%}: never fired on "
                               f"{s.dead_window_tokens:,} tokens)"),
        "delta_ce_range": f"from {low.delta_ce:+.4f} ({low.revision}) to {high.delta_ce:+.4f} ({high.revision})",
        "presence_live": (f"Of the {sum(live.values())} live features, "
                        + ", ".join(f"{n} are {cls}" for cls, n in live.items()) + "."),
        "geometry_table": _table(["checkpoint", "Σ D_i / d", "activation PCs for 90%", "present features",
                                  "median cos with the previous checkpoint", "median cos with the final direction"],
                                 geometry),
        "typed_table": _table(["type", "features", "median onset", "onsets per checkpoint (" + " / ".join(revisions)
                               + ")"], typed_rows),
    }


def _demo_values(result: DemoResult) -> dict[str, str]:
    findings = "\n" + "\n".join(f"{i}. {line}" for i, line in enumerate(result.findings, 1)) + "\n"
    attribution = "\n" + "\n".join(f"- {line}" for name, lines in result.summaries.items()
                                   if name.startswith("attribute ") for line in lines) + "\n"
    data = read_report_data(RunDir(result.run).report)
    evaluation = read_model(Evaluation, RunDir(result.run).evaluation_file).summary
    pairs = {read_model(AttributionSummary, RunDir(result.run).attribution(t) / ATTRIBUTION_SUMMARY).n_pairs
             for t in RunDir(result.run).attribution_tasks()}
    return {"findings": findings, "findings_inline": " ".join(f"*{line}*" for line in result.findings),
            "attribution_top": attribution, "emergence": emergence_finding(data) or "",
            "attribution_pairs": " / ".join(str(n) for n in sorted(pairs)),
            "n_tasks": str(len(RunDir(result.run).attribution_tasks())),
            "rotation": rotation_reading(data) or "",
            "dimensionality": dimensionality_reading(data) or "",
            "typed_emergence": typed_emergence_reading(data) or "",
            "phase_order": phase_order_reading(data) or "",
            "report_size": f"{result.dashboard.stat().st_size / 1e6:.1f} MB",
            "shrinkage_flagged": f"{evaluation.shrinkage_flagged} of the {evaluation.scaling_judged} features it judged",
            "joint_table": _joint_table(RunDir(result.run), result.revisions)}


def _interpret_values(run: RunDir) -> dict[str, str]:
    """The interpret stage's reading, its complexity table and its scores per view (interpret/analysis.json)."""
    analysis = read_model(InterpretAnalysis, run.interpret / INTERPRET_ANALYSIS)

    def num(v: float | None, fmt: str = ".2f") -> str:
        return "–" if v is None else format(v, fmt)

    levels = [[str(r.complexity), str(r.n), num(r.onset_mean), num(r.onset_median, ".0f"), num(r.relie_peak_mean),
               num(r.detection_mean), num(r.detection_shuffled_mean)] for r in analysis.table]
    views = [[v.view, str(v.n), num(v.detection_mean), num(v.detection_shuffled_mean), num(v.fuzzing_mean),
              num(v.fuzzing_shuffled_mean)] for v in analysis.views]
    return {"interpret_reading": analysis.reading,
            "interpret_table": _table(["complexity", "features", "onset mean", "onset median", "RelIE peak mean",
                                       "detection", "shuffled"], levels),
            "interpret_views": _table(["view", "explanations", "detection", "shuffled", "fuzzing", "shuffled"], views)}


def _joint_table(run: RunDir, revisions: list[str]) -> str:
    """Accuracy after ablating / restoring the top k (by signed IE) against k random active features,
    per task and checkpoint, for k = 5 and 20 (from each task's joint.csv)."""
    rows = [("| task | checkpoint | clean → all ablated | ablate top 5 / random 5 | ablate top 20 / random 20 "
             "| restore top 5 / random 5 | restore top 20 / random 20 |"), "|---" * 7 + "|"]
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
                          f"{min(attribute):.0f}–{max(attribute):.0f} s per task, interpret {t['interpret']:.0f} s, report "
                          f"{t['report']:.0f} s")}


def values(result: DemoResult, with_times: bool) -> dict[str, str]:
    """Every marker's text, from the demo ``result`` (and its run directory)."""
    run = RunDir(result.run)
    out = {**_toy_values(result.toy_world), **_scan_values(run, result.revisions),
           **_store_values(run, DemoConfig(run=result.run)), **_evaluation_values(run), **_demo_values(result),
           **_interpret_values(run)}
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
