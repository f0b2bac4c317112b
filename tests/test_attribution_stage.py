"""The attribute stage end to end on a tiny run directory (store + crosscoder + task file)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from crosstime.attribution.stage import AttributeConfig, AttributionError, attribute

PAIRS = [
    ("the dog", "runs", "run"), ("the dogs", "run", "runs"), ("the cat", "sleeps", "sleep"),
    ("the cats", "sleep", "sleeps"), ("the man near the dogs", "is", "are"), ("the men near the dog", "are", "is"),
    ("the child with the cats", "was", "were"), ("the children with the cat", "were", "was"),
    ("a big dog", "runs", "run"), ("the old men", "sleep", "sleeps"), ("the small cat that", "runs", "run"),
    ("the red dogs", "were", "was"),
    # answers of two tokens: the first differs, the second continues -> dropped with multi_token="drop"
    ("the man", "is big", "are big"), ("the men", "are old", "is old"),
    # a word the tokenizer does not know -> dropped
    ("the zebra", "runs", "run"),
]


@pytest.fixture(scope="module")
def run_dir(tiny_series, tmp_path_factory):
    from crosstime.crosscoder.model import Crosscoder, CrosscoderConfig
    from crosstime.rundir import RunDir
    from crosstime.store import HarvestConfig, harvest

    root = tmp_path_factory.mktemp("attr_run")
    corpus = root / "corpus.txt"
    words = "the a dog dogs cat cats man men child children runs run sleeps sleep near with big small".split()
    rng = np.random.default_rng(0)
    corpus.write_text("\n".join(" ".join(rng.choice(words, 12)) for _ in range(60)) + "\n")
    run = RunDir(root / "run")
    store = harvest(HarvestConfig(series=str(tiny_series), layer=1, corpus=str(corpus), tokens=256, context_len=16,
                                  out=str(run.activations), progress=False, device="cpu"))
    cfg = CrosscoderConfig(n_checkpoints=3, d_model=32, n_features=48, dec_init_norm=0.3, seed=1,
                           revisions=store.revisions, scales=[store.scales[r] for r in store.revisions])
    Crosscoder(cfg).save(run.crosscoder)
    task = root / "agreement.jsonl"
    task.write_text("".join(json.dumps({"one_prefix_prefix": p, "one_prefix_word_good": g, "one_prefix_word_bad": b,
                                       "sentence_good": f"{p} {g} .", "sentence_bad": f"{p} {b} ."}) + "\n"
                            for p, g, b in PAIRS))
    return run, task


def test_attribute_writes_consistent_tables(run_dir):
    run, task = run_dir
    cfg = AttributeConfig(run=run.root, task=str(task), method="ig", steps=8, top_k=3, bootstrap=200, progress=False)
    res = attribute(cfg)
    out = run.attribution("agreement")
    assert res.out == out
    for name in ("effects.safetensors", "features.csv", "ablation.csv", "confusion.csv", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    # bad pairs are dropped and counted, not scored
    assert summary["pairs_kept"] == 12
    (dropped,) = summary["pairs_dropped"].values()
    assert sum(dropped.values()) == 3 and dropped.get("unknown token") == 1 and dropped.get("multi-token answer") == 2
    assert summary["quadrature"] == "midpoint" and summary["position_0_attributed"] is False

    from safetensors.torch import load_file

    eff = load_file(str(out / "effects.safetensors"))
    M, F = eff["ie"].shape
    assert (M, F) == (3, 48)
    torch.testing.assert_close(eff["relie"].sum(1), torch.ones(F))
    assert not torch.isnan(eff["relie"]).any()
    rows = list(csv.DictReader(open(out / "features.csv")))
    revs = json.loads(summary["revisions"]) if isinstance(summary["revisions"], str) else summary["revisions"]
    top = eff["top_features"].tolist()
    assert [int(r["feature"]) for r in rows] == top
    assert 1 <= len(rows) <= 3 * 3
    for r in rows:
        i = int(r["feature"])
        for m, rev in enumerate(revs):
            assert float(r[f"ie_{rev}"]) == pytest.approx(eff["ie"][m, i].item(), rel=1e-4, abs=1e-7)
            assert float(r[f"ie_{rev}_lo"]) <= float(r[f"ie_{rev}"]) <= float(r[f"ie_{rev}_hi"])
        assert sum(float(r[f"relie_{rev}"]) for rev in revs) == pytest.approx(1.0, abs=1e-5)
    # per checkpoint: the reported features are the top-k by |IE|
    for m, rev in enumerate(revs):
        best = torch.argsort(eff["ie"][m].abs(), descending=True)[:3].tolist()
        assert set(summary["top_features"][rev]) == set(best)
    # ablation rows: one per (feature, checkpoint); ΔLPD equals the exact single-feature effect
    abl = list(csv.DictReader(open(out / "ablation.csv")))
    assert len(abl) == len(rows) * 3
    for k, i in enumerate(top):
        for m, rev in enumerate(revs):
            row = next(a for a in abl if int(a["feature"]) == i and a["checkpoint"] == rev)
            assert float(row["delta_lpd"]) == pytest.approx(eff["exact_top"][m, k].item(), rel=1e-3, abs=1e-6)
    assert "faithfulness" in summary and "ablation_spearman" in summary
    assert run.read_config()["attribute/agreement"]["method"] == "ig"  # keyed by task: tasks do not overwrite


def test_exact_method_agrees_with_the_ablation_pass(run_dir):
    run, task = run_dir
    res = attribute(AttributeConfig(run=run.root, task=str(task), method="exact", top_k=2, bootstrap=0, progress=False))
    s = res.summary
    exact_top = torch.as_tensor(s.ablation.delta_lpd())  # [M, K]
    torch.testing.assert_close(res.attribution.ie[:, s.features].double(), exact_top, atol=1e-5, rtol=1e-4)
    assert s.metrics["faithfulness"]["exact_vs_exact_spearman_pooled"] == pytest.approx(1.0)


def test_bad_input_is_refused_before_work(run_dir, tmp_path):
    run, task = run_dir
    with pytest.raises(AttributionError, match="top-k 49 is larger than the crosscoder's F = 48"):
        attribute(AttributeConfig(run=run.root, task=str(task), top_k=49, progress=False))
    from crosstime.tasks import TaskError

    bad = tmp_path / "unknown_words.jsonl"
    bad.write_text(json.dumps({"one_prefix_prefix": "zebras", "one_prefix_word_good": "graze", "one_prefix_word_bad": "grazes",
                              "sentence_good": "zebras graze", "sentence_bad": "zebras grazes"}) + "\n")
    with pytest.raises(TaskError, match="keeps none of the pairs"):
        attribute(AttributeConfig(run=run.root, task=str(bad), progress=False))
    with pytest.raises(AttributionError, match="no activations"):
        attribute(AttributeConfig(run=tmp_path, task=str(task), progress=False))
    # a crosscoder trained on other checkpoints than this run's store
    from crosstime.crosscoder.model import Crosscoder, CrosscoderConfig
    from crosstime.rundir import RunDir

    other = RunDir(tmp_path / "other")
    other.root.mkdir()
    (other.root / "activations").symlink_to(run.activations)
    Crosscoder(CrosscoderConfig(n_checkpoints=2, d_model=32, n_features=8, revisions=["step0", "step999"])).save(other.crosscoder)
    with pytest.raises(AttributionError, match="not trained on this series"):
        attribute(AttributeConfig(run=other.root, task=str(task), progress=False))


def test_cli_attribute(run_dir):
    from typer.testing import CliRunner

    from crosstime.cli import app

    run, task = run_dir
    runner = CliRunner()
    result = runner.invoke(app, ["attribute", str(run.root), "--task", str(task), "--method", "atp", "--top-k", "2",
                                 "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    assert "top features by |IE|" in result.output and "RelIE" in result.output
    assert "dropped from" in result.output and "multi-token answer" in result.output
    bad = runner.invoke(app, ["attribute", str(run.root), "--task", str(task), "--top-k", "1000"])
    assert bad.exit_code == 2 and "larger than the crosscoder's F = 48" in bad.output
