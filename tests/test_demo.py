"""End to end: the demo runs every stage on the toy world, and a re-run reuses them."""

import json
import re

from crosstime.demo import DemoConfig, demo


def test_demo_end_to_end_and_rerun_reuses_finished_stages(toy_world, tmp_path):
    # A small budget: the point is that every stage runs on real toy outputs and connects.
    config = DemoConfig(run=tmp_path / "run", tokens=30_000, n_features=256, train_steps=60, batch_size=512,
                        tasks=["simple_agreement"], attribution_pairs=40, n_report_features=12, progress=False)
    first = demo(config)

    suggestion = json.loads((first.run / "scan" / "suggestion.json").read_text())
    assert first.revisions == suggestion["revisions"] and len(first.revisions) == 3
    manifest = json.loads((first.run / "activations" / "manifest.json").read_text())
    assert manifest["revisions"] == first.revisions
    evaluation = json.loads((first.run / "evaluation.json").read_text())
    assert [c["revision"] for c in evaluation["checkpoints"]] == first.revisions
    features = (first.run / "attribution" / "simple_agreement" / "features.csv").read_text().splitlines()
    assert len(features) > 1
    html = first.dashboard.read_text()
    assert first.dashboard == first.run / "report" / "index.html" and "<script" in html
    assert not re.search(r"""(src|href)\s*=\s*["']https?:""", html), "the dashboard must load nothing from the network"
    assert first.findings, "the demo must say what it found"
    assert first.reused == []

    second = demo(config.model_copy(update={"progress": True}))  # progress changes no output
    assert second.reused == ["scan", "harvest", "train", "evaluate", "attribute simple_agreement", "report"]
    assert second.revisions == first.revisions
    assert second.timings["train"] < first.timings["train"]
    # a changed attribution is redone, and so is the report that reads it; nothing else
    third = demo(config.model_copy(update={"top_k": 5}))
    assert third.reused == ["scan", "harvest", "train", "evaluate"]
