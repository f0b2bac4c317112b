"""The attribute stage end to end on a tiny run directory (store + crosscoder + task file)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from safetensors import safe_open
from safetensors.torch import load_file

from crosstime import stage
from crosstime.artifacts import (
    ATTRIBUTION_ABLATION,
    ATTRIBUTION_CONFUSION,
    ATTRIBUTION_EFFECTS,
    ATTRIBUTION_FEATURES,
    ATTRIBUTION_JOINT,
    ATTRIBUTION_JOINT_PLOT,
    ATTRIBUTION_SUMMARY,
    AttributionSummary,
    RunDir,
    read_model,
)
from crosstime.attribution import AttributeConfig, AttributionError
from crosstime.runs import StageNotRun
from crosstime.stages.attribute import attribute
from crosstime.crosscoder import CrosscoderConfig, CrosscoderError, build
from crosstime.store import ActivationStore

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
LAYER = 1


@pytest.fixture(scope="module")
def run_dir(tiny_series, tmp_path_factory):
    from crosstime.store import HarvestConfig
    from crosstime.stages.harvest import harvest

    root = tmp_path_factory.mktemp("attr_run")
    corpus = root / "corpus.txt"
    words = "the a dog dogs cat cats man men child children runs run sleeps sleep near with big small".split()
    rng = np.random.default_rng(0)
    corpus.write_text("\n".join(" ".join(rng.choice(words, 12)) for _ in range(60)) + "\n")
    run = RunDir(root / "run")
    store = harvest(HarvestConfig(run=run.root, series=str(tiny_series), layer=LAYER, corpus=str(corpus), tokens=256,
                                  context_len=16, progress=False, device="cpu"))
    cfg = CrosscoderConfig(n_checkpoints=3, d_model=32, n_features=48, dec_init_norm=0.3, seed=1,
                           revisions=store.revisions, scales=[store.scales[r] for r in store.revisions])
    build(cfg).save(run.crosscoder)
    task = root / "agreement.jsonl"
    task.write_text("".join(json.dumps({"one_prefix_prefix": p, "one_prefix_word_good": g, "one_prefix_word_bad": b,
                                       "sentence_good": f"{p} {g} .", "sentence_bad": f"{p} {b} ."}) + "\n"
                            for p, g, b in PAIRS))
    return run, task


def _other_run(run: RunDir, path) -> RunDir:
    """A run directory sharing ``run``'s activation store, for a crosscoder of its own."""
    other = RunDir(path)
    other.root.mkdir()
    (other.root / "activations").symlink_to(run.activations)
    return other


def _same(got, want) -> bool:
    """A cell read back equals the in-memory one (floats to the 6 significant digits written)."""
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want))
    if isinstance(want, float):
        return isinstance(got, float) and (got == pytest.approx(want, rel=1e-5, abs=1e-30)
                                           or (math.isnan(got) and math.isnan(want)))
    return got == want


def _assert_rows_equal(read, rows):
    assert len(read) == len(rows)
    for got, want in zip(read, rows):
        assert got.keys() == want.keys()
        bad = {k: (got[k], want[k]) for k in want if not _same(got[k], want[k])}
        assert not bad, bad


def test_attribute_writes_consistent_tables(run_dir):
    run, task = run_dir
    cfg = AttributeConfig(run=run.root, task=str(task), method="ig", steps=8, top_k=3, bootstrap=200, progress=False)
    res = attribute(cfg)
    out = run.attribution("agreement")
    assert res.out == out
    for name in (ATTRIBUTION_EFFECTS, ATTRIBUTION_FEATURES.file, ATTRIBUTION_ABLATION.file,
                 ATTRIBUTION_CONFUSION.file, ATTRIBUTION_SUMMARY):
        assert (out / name).is_file(), name
    summary = read_model(AttributionSummary, out / ATTRIBUTION_SUMMARY)
    # bad pairs are dropped and counted, not scored
    assert summary.pairs_kept == 12 and summary.n_pairs == 12
    (dropped,) = summary.pairs_dropped.values()
    assert sum(dropped.values()) == 3 and dropped.get("unknown token") == 1 and dropped.get("multi-token answer") == 2
    assert summary.quadrature == "midpoint" and summary.position_0_attributed is False
    assert summary.inference_rule == "ReLU: every feature with a positive pre-activation fires"
    revs = summary.revisions
    assert revs == ActivationStore(run.activations).revisions

    eff = load_file(str(out / ATTRIBUTION_EFFECTS))
    M, F = eff["ie"].shape
    assert (M, F) == (3, 48)
    torch.testing.assert_close(eff["relie"].sum(1), torch.ones(F))
    assert not torch.isnan(eff["relie"]).any()
    rows = ATTRIBUTION_FEATURES.read(out, revs)
    top = eff["top_features"].tolist()
    assert [r["feature"] for r in rows] == top
    assert 1 <= len(rows) <= 3 * 3
    for r in rows:
        i = r["feature"]
        for m in range(M):
            assert r["ie"][m] == pytest.approx(eff["ie"][m, i].item(), rel=1e-4, abs=1e-7)
            assert r["ie_lo"][m] <= r["ie"][m] <= r["ie_hi"][m]
            assert 0 <= r["relie_lo"][m] <= r["relie_hi"][m] <= 1  # |mean| is biased up: RelIE may lie outside
        assert sum(r["relie"]) == pytest.approx(1.0, abs=1e-5)
        assert r["task_frequency"] == pytest.approx(eff["task_frequency"][i].item(), rel=1e-5)
    # per checkpoint: the reported features are the top-k by |IE|
    for m, rev in enumerate(revs):
        best = torch.argsort(eff["ie"][m].abs(), descending=True)[:3].tolist()
        assert set(summary.top_features[rev]) == set(best)
    # ablation rows: one per (feature, checkpoint); ΔLPD equals the exact single-feature effect
    abl = ATTRIBUTION_ABLATION.read(out, revs)
    assert len(abl) == len(rows) * 3
    for k, i in enumerate(top):
        for m, rev in enumerate(revs):
            row = next(a for a in abl if a["feature"] == i and a["checkpoint"] == rev)
            assert row["delta_lpd"] == pytest.approx(eff["exact_top"][m, k].item(), rel=1e-3, abs=1e-6)
            assert rows[k]["exact"][m] == pytest.approx(row["delta_lpd"], rel=1e-4, abs=1e-6)
    assert summary.faithfulness is not None and summary.ablation_spearman is not None
    # the files read back with the schema equal what attribute returned
    _assert_rows_equal(rows, res.summary.rows)
    _assert_rows_equal(abl, res.summary.ablation.rows())
    _assert_rows_equal(ATTRIBUTION_CONFUSION.read(out, revs), res.summary.confusion)
    assert sum(r["count"] for r in res.summary.confusion) == len(rows)
    assert summary.top_features == res.record.top_features and summary.error_effect == res.record.error_effect
    # RelIE classes only above the effect floor (1% of Σ_m |joint_m|, by default), "no effect" below it
    floor = 0.01 * sum(abs(v) for v in summary.joint_effect_exact.values())
    assert summary.effect_floor == 0.01 and summary.effect_floor_value == pytest.approx(floor, rel=1e-6)
    for r in rows:
        total = float(eff["ie"][:, r["feature"]].abs().sum())
        assert (r["relie_class"] == "no effect") == (total < floor)
    assert sum(summary.relie_class_counts.values()) == len(rows)
    for cls, n in summary.relie_class_counts.items():
        assert n == sum(r["relie_class"] == cls for r in rows)
    # the joint curves: written, read back as computed, consistent with the effects pass
    joint = res.joint
    assert (out / ATTRIBUTION_JOINT_PLOT).is_file()
    _assert_rows_equal(ATTRIBUTION_JOINT.read(out, revs), joint.rows())
    torch.testing.assert_close(joint.clean, res.attribution.clean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(joint.all_ablated, res.attribution.clean + res.attribution.joint, atol=1e-5, rtol=1e-5)
    for m, rev in enumerate(revs):
        assert summary.accuracy_all_ablated[rev] == pytest.approx(float((joint.all_ablated[m] < 0).float().mean()))
    n_active = int((eff["task_frequency"] > 0).sum())
    assert joint.ks == [k for k in (1, 2, 5, 10, 20, 50) if k <= n_active] and joint.ks


def test_without_bootstrap_or_ablation_those_cells_are_empty(run_dir):
    run, task = run_dir
    attribute(AttributeConfig(run=run.root, task=str(task), top_k=3, bootstrap=0, progress=False))
    out = run.attribution("agreement")
    assert (out / ATTRIBUTION_ABLATION.file).is_file()
    assert (out / ATTRIBUTION_JOINT.file).is_file() and (out / ATTRIBUTION_JOINT_PLOT).is_file()
    res = attribute(AttributeConfig(run=run.root, task=str(task), method="atp", top_k=2, bootstrap=0, ablation=False,
                                    joint=False, progress=False))
    assert res.joint is None
    assert not (out / ATTRIBUTION_JOINT.file).exists() and not (out / ATTRIBUTION_JOINT_PLOT).exists()
    revs = res.attribution.revisions
    rows = ATTRIBUTION_FEATURES.read(out, revs)
    assert rows and all(r["ie_lo"] == [None] * 3 and r["relie_hi"] == [None] * 3 and r["exact"] == [None] * 3
                        for r in rows)
    assert all(None not in r["ie"] and None not in r["relie_pair"] for r in rows)
    assert not (out / ATTRIBUTION_ABLATION.file).exists()  # the earlier run's ablation.csv is not left behind
    summary = read_model(AttributionSummary, out / ATTRIBUTION_SUMMARY)
    assert summary.faithfulness is None and summary.method == "atp" and summary.quadrature is None
    _assert_rows_equal(rows, res.summary.rows)


def test_exact_method_agrees_with_the_ablation_pass(run_dir):
    run, task = run_dir
    res = attribute(AttributeConfig(run=run.root, task=str(task), method="exact", top_k=2, bootstrap=0, progress=False))
    s = res.summary
    exact_top = torch.as_tensor(s.ablation.delta_lpd())  # [M, K]
    torch.testing.assert_close(res.attribution.ie[:, s.features].double(), exact_top, atol=1e-5, rtol=1e-4)
    # faithfulness compares the estimators (ig, atp, computed alongside) with exact, never exact with itself
    faith = s.metrics["faithfulness"]
    assert set(faith) == {"ig", "atp"} and res.record.estimators == ["exact", "ig", "atp"]
    for name in ("ig", "atp"):
        assert list(faith[name]) == res.attribution.revisions
        mean = res.attribution.alongside[name].mean(1)[:, s.features].double().numpy()
        for m, per in enumerate(faith[name].values()):
            assert per.n_features == len(s.features)
            want = float(np.mean(np.sign(mean[m]) == np.sign(exact_top[m].numpy())))
            assert per.sign_agreement == pytest.approx(want)
    assert set(s.metrics["faithfulness_best"].values()) <= {"ig", "atp", None}


def test_every_method_writes_the_same_files_and_columns_and_records_itself(run_dir):
    run, task = run_dir
    out = run.attribution("agreement")
    seen = {}
    for method in ("ig", "atp", "exact"):
        cfg = AttributeConfig(run=run.root, task=str(task), method=method, top_k=2, bootstrap=50, joint_k=[1, 2],
                              joint_draws=2, progress=False)
        res = attribute(cfg)
        summary = read_model(AttributionSummary, out / ATTRIBUTION_SUMMARY)
        meta = safe_open(str(out / ATTRIBUTION_EFFECTS), "pt").metadata()
        assert summary.method == meta["method"] == stage.recorded(cfg)["method"] == method
        assert summary.estimators[0] == method and set(summary.faithfulness) == {"ig", "atp"}
        assert summary.relie_class_uncertain is not None
        rows = ATTRIBUTION_FEATURES.read(out, res.attribution.revisions)
        assert rows and all(isinstance(r["relie_class_uncertain"], bool) and r["relie_class_on"] for r in rows)
        header = (out / ATTRIBUTION_FEATURES.file).read_text().splitlines()[0]
        seen[method] = (sorted(p.name for p in out.iterdir()), header, sorted(summary.model_dump()))
    assert seen["ig"] == seen["atp"] == seen["exact"]


def _slow_exact_ie(series_path, revisions, scales, cc, task_path, first_position) -> torch.Tensor:
    """IE ``[M, F]`` of zero-ablating each feature alone, by hand: each checkpoint model run in full with its
    site minus the feature's raw decoder contribution f_i · W_dec[i, m] / s_m at the attributed positions."""
    from crosstime.series import open_series
    from crosstime.tasks import load_task

    series = open_series(series_path)
    models = [series.load_model(r) for r in revisions]
    pairs = load_task(task_path, series.load_tokenizer(revisions[-1]), multi_token="drop")
    s = torch.tensor(scales, dtype=torch.float64)
    W_enc, b_enc, W_dec = (t.detach().double() for t in (cc.W_enc, cc.b_enc, cc.W_dec))
    ie = torch.zeros(len(models), cc.n_features, dtype=torch.float64)
    for p, prefix in enumerate(pairs.prefixes):
        ids = torch.tensor([prefix])
        with torch.no_grad():
            xs = [mod(input_ids=ids, output_hidden_states=True).hidden_states[LAYER + 1][0].double() for mod in models]
        f = torch.relu(sum(s[m] * xs[m] @ W_enc[m] for m in range(len(models))) + b_enc)  # [T, F]
        f[:first_position] = 0  # positions the store excludes are not attributed
        for m, model in enumerate(models):
            sites = xs[m] - f.T.unsqueeze(-1) * (W_dec[:, m] / s[m]).unsqueeze(1)  # [F, T, d]
            metric = _metric_with_site(model, ids.expand(len(sites), -1), torch.cat([xs[m][None], sites]).float(),
                                       pairs.correct[p], pairs.wrong[p])
            ie[m] += metric[1:] - metric[0]
    return ie / len(pairs)


def _metric_with_site(model, ids, sites, correct, wrong) -> torch.Tensor:
    """log p(wrong) − log p(correct) at the last token with block LAYER's output replaced by ``sites``."""
    ids = torch.cat([ids[:1], ids])  # row 0: the clean site

    def replace(_module, _args, out):
        return (sites, *out[1:]) if isinstance(out, tuple) else sites

    handle = model.gpt_neox.layers[LAYER].register_forward_hook(replace)
    try:
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[:, -1].double(), -1)
    finally:
        handle.remove()
    return logp[:, wrong] - logp[:, correct]


def test_a_crosscoder_over_two_of_the_stores_three_checkpoints(run_dir, tiny_series, tmp_path):
    run, task = run_dir
    store = ActivationStore(run.activations)
    assert len(store.revisions) == 3
    revs = [store.revisions[0], store.revisions[2]]
    sub = _other_run(run, tmp_path / "sub")
    cc = build(CrosscoderConfig(n_checkpoints=2, d_model=32, n_features=16, dec_init_norm=0.3, seed=2, revisions=revs,
                                scales=[store.scales[r] for r in revs]))
    cc.save(sub.crosscoder)
    res = attribute(AttributeConfig(run=sub.root, task=str(task), method="exact", top_k=2, bootstrap=0,
                                    ablation=False, progress=False))
    assert res.attribution.revisions == revs == res.record.revisions
    eff = load_file(str(sub.attribution("agreement") / ATTRIBUTION_EFFECTS))
    assert eff["ie"].shape == (2, 16)
    want = _slow_exact_ie(tiny_series, revs, [store.scales[r] for r in revs], cc, task, store.first_position)
    assert want.abs().max() > 1e-3
    torch.testing.assert_close(eff["ie"].double(), want, atol=2e-5, rtol=1e-4)
    assert ATTRIBUTION_FEATURES.read(sub.attribution("agreement"), revs)  # the header names the two checkpoints
    assert stage.recorded(AttributeConfig(run=sub.root, task=str(task)))["revisions"] == revs


def test_attribute_records_itself_and_knows_when_it_is_finished(run_dir, tmp_path):
    run, task = run_dir
    own = _other_run(run, tmp_path / "own")
    (own.root / "crosscoder").symlink_to(run.crosscoder)
    cfg = AttributeConfig(run=own.root, task=str(task), method="atp", top_k=2, bootstrap=0, ablation=False,
                          progress=False)
    assert cfg.record_key() == "attribute/agreement" and cfg.output() == own.attribution("agreement") / "features.csv"
    assert not stage.finished(cfg)
    attribute(cfg)
    entry = stage.read_records(own)["attribute/agreement"]
    assert entry["method"] == "atp" and entry["top_k"] == 2 and entry["task"] == str(task)
    assert entry["revisions"] == ActivationStore(run.activations).revisions
    assert not {"run", "progress", *AttributeConfig.execution} & set(entry)
    assert stage.finished(cfg)
    assert not stage.finished(cfg.model_copy(update={"top_k": 3}))
    assert stage.finished(cfg.model_copy(update={"device": "cpu", "batch_size": 5}))
    # a second task gets its own entry; the first one stays
    other_task = tmp_path / "again.jsonl"
    other_task.write_text(task.read_text())
    attribute(cfg.model_copy(update={"task": str(other_task)}))
    assert {"attribute/agreement", "attribute/again"} <= set(stage.read_records(own))


def test_misspelt_or_contradictory_settings_are_refused(run_dir):
    run, task = run_dir
    with pytest.raises(ValidationError, match="topk"):
        AttributeConfig(run=run.root, task=str(task), topk=3)
    with pytest.raises(ValidationError, match="revisions"):
        AttributeConfig(run=run.root, task=str(task), revisions=["step0"])  # always all of the crosscoder's
    with pytest.raises(ValidationError, match="method 'exact' has none"):
        AttributeConfig(run=run.root, task=str(task), method="exact", threshold=0.1)


def test_bad_input_is_refused_before_work(run_dir, tmp_path):
    run, task = run_dir
    with pytest.raises(AttributionError, match="top-k 49 is larger than the crosscoder's F = 48"):
        attribute(AttributeConfig(run=run.root, task=str(task), top_k=49, progress=False))
    from crosstime.tasks import TaskError

    bad = tmp_path / "unknown_words.jsonl"
    bad.write_text(json.dumps({"one_prefix_prefix": "zebras", "one_prefix_word_good": "graze",
                               "one_prefix_word_bad": "grazes", "sentence_good": "zebras graze",
                               "sentence_bad": "zebras grazes"}) + "\n")
    with pytest.raises(TaskError, match="keeps none of the pairs"):
        attribute(AttributeConfig(run=run.root, task=str(bad), progress=False))
    with pytest.raises(StageNotRun, match=r"activations \(the activation store\) is not there"):
        attribute(AttributeConfig(run=tmp_path, task=str(task), progress=False))
    # a crosscoder trained on other checkpoints than this run's store, or on other activations
    store = ActivationStore(run.activations)
    other = _other_run(run, tmp_path / "other")
    build(CrosscoderConfig(n_checkpoints=2, d_model=32, n_features=8, revisions=["step0", "step999"],
                           scales=[1.0, 1.0])).save(other.crosscoder)
    with pytest.raises(CrosscoderError, match="step999"):
        attribute(AttributeConfig(run=other.root, task=str(task), progress=False))
    build(CrosscoderConfig(n_checkpoints=3, d_model=32, n_features=8, revisions=store.revisions,
                           scales=[2 * store.scales[r] for r in store.revisions])).save(other.crosscoder)
    with pytest.raises(CrosscoderError, match="scales"):
        attribute(AttributeConfig(run=other.root, task=str(task), progress=False))
    assert not (other.root / "attribution").exists() and not other.config_file.exists()  # nothing was begun


def test_a_batch_dependent_crosscoder_is_named_and_recorded(run_dir, tmp_path):
    run, task = run_dir
    store = ActivationStore(run.activations)
    other = _other_run(run, tmp_path / "btk")
    cc = build(CrosscoderConfig(variant="batchtopk", variant_config={"k": 4}, n_checkpoints=3, d_model=32, n_features=16,
                                revisions=store.revisions, scales=[store.scales[r] for r in store.revisions]))
    assert cc.inference_depends_on_batch  # never trained: no threshold
    cc.save(other.crosscoder)
    with pytest.warns(UserWarning, match="BatchTopK without a threshold"):
        res = attribute(AttributeConfig(run=other.root, task=str(task), method="atp", top_k=2, bootstrap=0,
                                        ablation=False, max_pairs=4, progress=False))
    summary = read_model(AttributionSummary, other.attribution("agreement") / ATTRIBUTION_SUMMARY)
    assert summary.inference_rule == cc.inference_rule == res.record.inference_rule
    assert summary.pairs_kept == 4


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


@pytest.mark.parametrize("task,why", [
    ("../../x", "'../../x' cannot be used as a folder name: it contains a path separator"),
    ("...jsonl", "task name of '...jsonl' (it becomes RUN/attribution/<name>/) '..' cannot be used"),
    ("", "it is empty"),
    (".hidden", "starts with a dot"),
    ("tab\tname", "control character"),
    ("sub/task", "path separator"),
])
def test_a_task_name_that_is_not_a_folder_name_is_refused(tmp_path, task, why):
    """The task's name becomes RUN/attribution/<task>/: it is checked when the config is made,
    before any file is read or written."""
    with pytest.raises(ValidationError, match=re.escape(why)):
        AttributeConfig(run=tmp_path / "run", task=task)
    assert list(tmp_path.iterdir()) == []


def test_a_task_file_outside_the_run_lands_in_its_own_folder(tmp_path):
    cfg = AttributeConfig(run=tmp_path / "run", task="../x.jsonl")
    assert cfg.task_name == "x" and cfg.output() == tmp_path / "run" / "attribution" / "x" / "features.csv"
    assert AttributeConfig(run=tmp_path / "run", task="simple_agreement").task_name == "simple_agreement"
