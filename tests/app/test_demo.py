"""End to end: the demo runs every stage on the toy world, says what each found, and a re-run reuses them.

Every test reads the session's one default demo run (the ``demo_run`` fixture in conftest.py)."""

import json
import re
import shutil

import pytest
import yaml

from crosstime.artifacts import EVALUATION_FEATURES, read_report_data
from crosstime.demo import EVOLUTION_REVISIONS, FIRST_REVISIONS, DemoConfig, demo
from crosstime.report.findings import evolution_readings
from crosstime.store import ActivationStore
from crosstime.tasks import TOY_TASKS

pytestmark = pytest.mark.slow  # the session's demo run: minutes

STAGES = ["toy world", "scan", "harvest", "train", "evaluate", *[f"attribute {t}" for t in TOY_TASKS]]
AGREEMENT = ["simple_agreement", "pp_attractor", "rc_attractor", "irregular_plural"]
FIRST_STAGES = ["first: harvest", "first: train", *[f"first: attribute {t}" for t in AGREEMENT]]


def test_demo_runs_every_stage_on_its_spread_of_checkpoints(demo_run):
    assert demo_run.revisions == list(EVOLUTION_REVISIONS)
    manifest = json.loads((demo_run.run / "activations" / "manifest.json").read_text())
    assert manifest["revisions"] == demo_run.revisions
    evaluation = json.loads((demo_run.run / "evaluation.json").read_text())
    assert [c["revision"] for c in evaluation["checkpoints"]] == demo_run.revisions
    for task in TOY_TASKS:
        assert len((demo_run.run / "attribution" / task / "features.csv").read_text().splitlines()) > 1
    html = demo_run.dashboard.read_text()
    assert demo_run.dashboard == demo_run.run / "report" / "index.html" and "<script" in html
    assert not re.search(r"""(src|href)\s*=\s*["']https?:""", html), "the dashboard must load nothing from the network"
    assert len(demo_run.findings) == 3 and demo_run.reused == []


def test_demo_trains_the_first_papers_crosscoder_in_its_own_run(demo_run):
    """RUN/first: its own store and crosscoder over the checkpoints around the transition, attributed on
    the agreement tasks only (the main run's files are not touched by it)."""
    first = demo_run.run / "first"
    assert demo_run.first_run == first and demo_run.first_revisions == list(FIRST_REVISIONS)
    assert json.loads((first / "activations" / "manifest.json").read_text())["revisions"] == list(FIRST_REVISIONS)
    config = json.loads((first / "crosscoder" / "config.json").read_text())
    assert config["revisions"] == list(FIRST_REVISIONS) and config["n_features"] == DemoConfig().first_n_features
    assert sorted(p.name for p in (first / "attribution").iterdir()) == sorted(AGREEMENT)
    for task in AGREEMENT:
        summary = json.loads((first / "attribution" / task / "summary.json").read_text())
        assert summary["revisions"] == list(FIRST_REVISIONS)
        top = summary["top_features"][FIRST_REVISIONS[-1]][0]
        assert f"{FIRST_REVISIONS[-1]} #{top}" in demo_run.summaries[f"first: attribute {task}"][0]


def test_demo_says_what_each_stage_found(demo_run, toy_world):
    said = demo_run.summaries
    assert list(said) == STAGES + ["interpret", "report"] + FIRST_STAGES
    # the report says the second paper's readings: the phase order, the turn, dimensionality, typed emergence
    data = read_report_data(demo_run.run / "report")
    assert said["report"] == [line for line in evolution_readings(data).values() if line] and len(said["report"]) == 4
    assert demo_run.toy_world == toy_world and str(toy_world) in said["toy world"][0]
    assert ("built now" if demo_run.toy_built else "reused from the cache") in said["toy world"][0]
    phases = json.loads((demo_run.run / "scan" / "phases.json").read_text())
    assert said["scan"][0].startswith("phases in order of onset: ") and all(f"{p} (" in said["scan"][0]
                                                                            for p in phases["order"])
    suggestion = json.loads((demo_run.run / "scan" / "suggestion.json").read_text())
    assert all(f"{r} (" in said["scan"][1] for r in suggestion["revisions"])
    store = ActivationStore(demo_run.run / "activations")
    assert f"{store.n_rows('train'):,} train + {store.n_rows('heldout'):,} held-out rows" in said["harvest"][0]
    lines = (demo_run.run / "crosscoder" / "metrics.jsonl").read_text().splitlines()
    last = [json.loads(x) for x in lines if '"heldout"' in x][-1]
    assert f"L0 {last['l0']:.1f}" in said["train"][0] and f"step1000 {last['ev'][-1]:.3f}" in said["train"][0]
    evaluation = json.loads((demo_run.run / "evaluation.json").read_text())
    dce = " / ".join(f"{c['delta_ce']:+.3g}" for c in evaluation["checkpoints"])
    assert said["evaluate"][0].endswith(f"ΔCE {dce}")
    for task in TOY_TASKS:
        summary = json.loads((demo_run.run / "attribution" / task / "summary.json").read_text())
        first = {r: ids[0] for r, ids in summary["top_features"].items()}
        assert all(f"{r} #{first[r]}" in said[f"attribute {task}"][0] for r in demo_run.revisions)


def test_emergence_finding_counts_what_the_emergence_plot_counts(demo_run):
    """The finding and evaluation/emergence.png count the same set: live features by onset. Expected
    counts come straight from evaluation/features.csv (alive, onset), the plot's input from evaluation.json."""
    features = EVALUATION_FEATURES.read(demo_run.run / "evaluation", demo_run.revisions)
    rows = [r for r in features if r["alive"] and r["onset"] >= 0]
    M = len(demo_run.revisions)
    by_onset = [sum(r["onset"] == m for r in rows) for m in range(M)]
    plotted = json.loads((demo_run.run / "evaluation.json").read_text())["decoder"]["emergence"]["counts_live"]
    assert plotted == by_onset
    finding = next(line for line in demo_run.findings if "live features" in line)
    later, live = map(int, re.search(r"(\d+) of (\d+) live features", finding).groups())
    assert (later, live) == (sum(by_onset[1:]), len(rows))
    revs = demo_run.revisions
    most = max(range(1, M), key=lambda m: by_onset[m])
    assert f"most between {revs[most - 1]} and {revs[most]} ({by_onset[most]})" in finding
    assert len(finding) < 240  # one or two lines


def test_rerun_reuses_finished_stages_and_redoes_what_changed(demo_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(demo_run.run, run)  # a copied run directory counts as done
    config = DemoConfig(run=run)
    second = demo(config)  # progress on: it changes no output
    assert second.reused == STAGES[1:] + ["interpret", "report"] + FIRST_STAGES
    assert second.revisions == demo_run.revisions and second.summaries["train"] == demo_run.summaries["train"]
    assert second.timings["train"] < demo_run.timings["train"]
    # What is redone does not depend on the sizes, so the rest runs at small ones (at the default ones the
    # interpret stage alone, redone below, takes a minute) in a run holding the demo's scan and its record only
    # (the scan has no size to make smaller): every stage after the scan runs, the first paper's too (one
    # task, to keep the suite short: each task is its own stage) ...
    small_run = tmp_path / "small"
    shutil.copytree(run / "scan", small_run / "scan")
    scan_record = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["scan"]
    (small_run / "config.yaml").write_text(yaml.safe_dump({"scan": scan_record}, sort_keys=False), encoding="utf-8")
    small = config.model_copy(update={"run": small_run, "tokens": 8192, "heldout_tokens": 2048, "n_features": 64,
                                      "train_steps": 20, "batch_size": 256, "first_n_features": 32,
                                      "first_train_steps": 20, "attribution_pairs": 8, "n_report_features": 8,
                                      "tasks": ["induction"], "progress": False})
    assert demo(small).reused == ["scan"]
    assert json.loads((small_run / "crosscoder" / "config.json").read_text())["n_features"] == 64
    # ... and a changed attribution is redone, and so are interpret and the report that read it; nothing else
    third = demo(small.model_copy(update={"top_k": 5}))
    assert third.reused == ["scan", "harvest", "train", "evaluate", "first: harvest", "first: train"]
    summary = json.loads((small_run / "attribution" / "induction" / "summary.json").read_text())
    assert {len(ids) for ids in summary["top_features"].values()} == {5}
