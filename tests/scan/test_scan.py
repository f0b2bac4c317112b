"""Scan stage: similarity formulas, n-gram dynamics, checkpoint suggestion, end-to-end on tiny series."""

from __future__ import annotations

import csv
import json
import random
import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import make_word_tokenizer, tiny_model
from pydantic import ValidationError

from crosstime import stage
from crosstime.artifacts import SCAN_ACCURACY, SCAN_DYNAMICS, SIMILARITY_ARRAYS, Suggestion, read_model
from crosstime.checkpoints import Checkpoint
from crosstime.scan import (
    NgramModel, ScanConfig, ScanError, cka_blocks, cosine_matrix, fit_ramp, linear_cka_matrix,
    next_token_dynamics, site_tokens, suggest_checkpoints,
)
from crosstime.stages.scan import scan
from crosstime.tasks import TaskError, evaluate_task, load_task

# -- similarity against direct numpy formulas ---------------------------------------------------------


@pytest.mark.parametrize("n, d", [(50, 8), (6, 20)])  # CKA via d × d cross-products, and via N × N Gram matrices
def test_cosine_and_cka_match_numpy(n, d):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(n, d))
    acts = np.stack([base, base @ np.linalg.qr(rng.normal(size=(d, d)))[0] * 3.0, rng.normal(size=(n, d)),
                     base + 0.3 * rng.normal(size=(n, d))])
    cos = cosine_matrix(torch.tensor(acts, dtype=torch.float32))
    cka = linear_cka_matrix(torch.tensor(acts))
    for a in range(4):
        for b in range(4):
            x, y = acts[a], acts[b]
            want_cos = np.mean([x[t] @ y[t] / np.linalg.norm(x[t]) / np.linalg.norm(y[t]) for t in range(n)])
            xc, yc = x - x.mean(0), y - y.mean(0)
            want_cka = np.linalg.norm(xc.T @ yc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
            assert cos[a, b] == pytest.approx(want_cos, abs=1e-5)
            assert cka[a, b] == pytest.approx(want_cka, abs=1e-9)
    assert cka[0, 1] == pytest.approx(1.0)  # CKA ignores rotation and isotropic scale; cosine does not
    assert cos[0, 1] < 0.9


# -- n-gram statistics and dynamics ------------------------------------------------------------------


def test_ngram_model_matches_direct_counts():
    seqs = [[2, 5, 6, 5, 7], [2, 5, 6, 8], [2, 9]]
    V, alpha, beta = 12, 0.1, 1.0
    ng = NgramModel.fit(seqs, V, alpha=alpha, beta=beta)
    flat = [t for s in seqs for t in s]
    uni = np.array([(flat.count(w) + alpha) / (len(flat) + alpha * V) for w in range(V)])
    np.testing.assert_allclose(ng.log_unigram.exp().numpy(), uni, rtol=1e-12)
    pairs = [(a, b) for s in seqs for a, b in zip(s[:-1], s[1:])]
    prev = torch.tensor([5, 2, 11, 6])
    dense = ng.log_bigram(prev).exp().numpy()
    for r, v in enumerate(prev.tolist()):
        c_v = sum(1 for a, _ in pairs if a == v)
        want = [(sum(1 for p in pairs if p == (v, w)) + beta * uni[w]) / (c_v + beta) for w in range(V)]
        np.testing.assert_allclose(dense[r], want, rtol=1e-12)
    probs = torch.softmax(torch.randn(4, V, dtype=torch.float64), -1)
    torch.testing.assert_close(ng.expected_log_bigram(probs, prev), (probs * ng.log_bigram(prev)).sum(-1))
    nxt = torch.tensor([6, 5, 3, 8])
    torch.testing.assert_close(ng.bigram_logprob(prev, nxt), ng.log_bigram(prev).gather(-1, nxt[:, None]).squeeze(-1))


def test_dynamics_match_a_direct_computation():
    tok = make_word_tokenizer()
    model = tiny_model("gpt_neox", vocab_size=len(tok))
    seqs = [[2, 4, 6, 10], [2, 5, 7, 11, 14, 4, 6], [2, 4, 9]]
    ng = NgramModel.fit([[2, 4, 6, 10, 2, 5, 7, 11, 14]], len(tok))
    got = next_token_dynamics(model, seqs, ng, batch_size=2)
    loss, klu, klb, n = 0.0, 0.0, 0.0, 0
    with torch.no_grad():
        for s in seqs:
            logp = model(torch.tensor([s])).logits[0, :-1].double().log_softmax(-1)
            p = logp.exp()
            for t in range(len(s) - 1):
                loss -= float(logp[t, s[t + 1]])
                klu += float((p[t] * (logp[t] - ng.log_unigram)).sum())
                klb += float((p[t] * (logp[t] - ng.log_bigram(torch.tensor([s[t]]))[0])).sum())
                n += 1
    assert got["n_tokens"] == n
    assert got["loss"] == pytest.approx(loss / n, rel=1e-5)
    assert got["kl_unigram"] == pytest.approx(klu / n, rel=1e-5)
    assert got["kl_bigram"] == pytest.approx(klb / n, rel=1e-5)


# -- checkpoint suggestion on synthetic curves with a known answer --------------------------------------


def pythia_like(n: int = 16) -> list[Checkpoint]:
    steps = [0] + [2**i for i in range(n - 1)]
    return [Checkpoint(f"step{s}", s, s * 2_097_152) for s in steps]


def distance_cka(z) -> np.ndarray:
    z = np.asarray(z, float)
    return np.exp(-np.abs(z[:, None] - z[None, :]))


def test_suggestion_brackets_a_sharp_jump_and_finds_where_representations_settle():
    ckpts = pythia_like(16)
    rng = np.random.default_rng(0)
    acc = np.where(np.arange(16) <= 6, 0.5, 0.95) + rng.normal(scale=0.01, size=16)
    # representations: drift until index 12, then still
    z = [0, 1, 1.5, 1.8, 2, 2.1, 2.2, 2.8, 2.9, 3.0, 3.1, 3.2, 3.3, 3.3, 3.3, 3.3]
    out = suggest_checkpoints(ckpts, acc, distance_cka(z), n=3)
    roles = {p.role: p.revision for p in out["checkpoints"]}
    assert roles == {"before": "step32", "after": "step64", "late": "step2048"}  # indices 6, 7, 12
    assert out["revisions"] == ["step32", "step64", "step2048"]
    late = next(p for p in out["checkpoints"] if p.role == "late")
    assert late.numbers.cka_with_after == pytest.approx(np.exp(-0.5))
    assert "0.95" in out["checkpoints"][1].reason or "0.9" in out["checkpoints"][1].reason
    assert out["jump"].tasks["accuracy"].rise == pytest.approx(0.45, abs=0.03)
    # fewer or more picks
    assert [p.role for p in suggest_checkpoints(ckpts, acc, distance_cka(z), n=2)["checkpoints"]] == ["before", "after"]
    four = suggest_checkpoints(ckpts, acc, distance_cka(z), n=4)["checkpoints"]
    assert [p.role for p in four] == ["extra", "before", "after", "late"] and four[0].revision == "step0"


def test_suggestion_brackets_every_task_jump():
    """One task rises early; another dips below chance (an attractor) and jumps late: their mean
    hides the onset, the per-task fit does not."""
    ckpts = pythia_like(12)
    early = np.array([0.5] * 5 + [0.6, 0.85, 1.0, 1.0, 1.0, 1.0, 1.0])
    dip = np.array([0.5] * 5 + [0.4, 0.15, 1.0, 1.0, 1.0, 1.0, 1.0])
    out = suggest_checkpoints(ckpts, {"simple": early, "attractor": dip}, None, n=2)
    before, after = out["checkpoints"]
    assert (before.revision, after.revision) == ("step8", "step64")  # indices 4 and 7
    assert out["jump"].tasks["simple"].starts == "step8"
    assert before.numbers.task_accuracy == {"simple": 0.5, "attractor": 0.5}
    assert "simple starts rising" in before.reason
    flat = suggest_checkpoints(ckpts, {"simple": early, "flat": np.full(12, 0.5)}, None, n=2)
    assert flat["jump"].no_jump == ["flat"]


def test_suggestion_on_a_gradual_logistic_rise():
    ckpts = pythia_like(16)
    x = np.log10([c.tokens or 1e6 for c in ckpts])
    centre = np.log10(256 * 2_097_152)
    acc = 0.5 + 0.45 / (1 + np.exp(-(x - centre) * 6))
    out = suggest_checkpoints(ckpts, acc, None, n=3)
    before, after, late = out["checkpoints"]
    assert before.tokens < 256 * 2_097_152 < after.tokens
    assert before.numbers.accuracy < 0.6 and after.numbers.accuracy > 0.85
    assert late.revision == ckpts[-1].revision  # no similarity matrix: the last checkpoint


def test_suggestion_without_a_jump_says_so():
    ckpts = pythia_like(8)
    acc = np.full(8, 0.5)
    z = np.arange(8.0)
    out = suggest_checkpoints(ckpts, acc, distance_cka(z), n=3)
    assert out["jump"] is None
    assert out["checkpoints"][-1].role == "last" and "no accuracy jump" in out["checkpoints"][-1].reason
    assert out["revisions"] == ["step0", "step4", "step64"]  # last, then farthest points in CKA distance


def test_fit_ramp_and_cka_blocks_recover_known_structure():
    x = np.arange(10.0)
    y = np.clip((x - 3) / 3, 0, 1)  # flat to 3, ramp to 6, flat after
    fit = fit_ramp(x, 0.4 + 0.5 * y)
    assert (fit["a"], fit["b"]) == (3, 6) and fit["lo"] == pytest.approx(0.4) and fit["hi"] == pytest.approx(0.9)
    sim = np.full((9, 9), 0.2)
    for block in ([0, 1], [2, 3, 4, 5], [6, 7, 8]):
        sim[np.ix_(block, block)] = 0.95
    np.fill_diagonal(sim, 1.0)
    assert cka_blocks(sim) == [[0, 1], [2, 3, 4, 5], [6, 7, 8]]


# -- site tokens ------------------------------------------------------------------------------------


def test_site_tokens_exclude_position_zero_and_padding():
    from crosstime.sites import read_site

    model = tiny_model("gpt2", vocab_size=40)
    seqs = [[2, 5, 6], [2, 7, 8, 9, 10], [2, 11]]
    got = site_tokens(model, seqs, layer=1, budget=100, batch_size=3)
    with torch.no_grad():
        want = torch.cat([read_site(model, torch.tensor([s]), 1)[0, 1:] for s in seqs])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert site_tokens(model, seqs, layer=1, budget=4, batch_size=1).shape == (4, 32)


# -- end to end on the tiny series ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory):
    """A pair file and a corpus in the tiny series' word vocabulary (the series folder itself is shared)."""
    root = tmp_path_factory.mktemp("scan_inputs")
    rng = random.Random(0)
    plural = {"dog": "dogs", "cat": "cats", "man": "men"}
    rows = []
    for _ in range(24):
        n = rng.choice(list(plural))
        if rng.random() < 0.5:
            good, bad, prefix, g, b = f"the {n} runs .", f"the {n} run .", f"the {n}", "runs", "run"
        else:
            good, bad = f"the {plural[n]} near the {n} run .", f"the {plural[n]} near the {n} runs ."
            prefix, g, b = f"the {plural[n]} near the {n}", "run", "runs"
        rows.append({"sentence_good": good, "sentence_bad": bad, "one_prefix_prefix": prefix,
                     "one_prefix_word_good": g, "one_prefix_word_bad": b})
    (root / "agree.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sentences = [r["sentence_good"] for r in rows]
    (root / "train.txt").write_text("\n".join(sentences * 4) + "\n")
    (root / "heldout.txt").write_text("\n".join(sentences[:10]) + "\n")
    return root


def tiny_config(tiny_series, tiny_inputs, run, **changes) -> ScanConfig:
    settings = dict(run=run, series=str(tiny_series), tasks=[str(tiny_inputs / "agree.jsonl")], layer=1,
                    corpus=tiny_inputs / "heldout.txt", train_corpus=tiny_inputs / "train.txt", device="cpu",
                    progress=False)
    return ScanConfig(**(settings | changes))


@pytest.fixture(scope="module")
def tiny_scan(tiny_series, tiny_inputs, tmp_path_factory):
    """One finished scan of the tiny series (its config and result), shared by the tests that only read it."""
    config = tiny_config(tiny_series, tiny_inputs, tmp_path_factory.mktemp("scan_run") / "run")
    return config, scan(config)


def test_scan_end_to_end_on_tiny_series(tiny_scan, tiny_series, tiny_inputs):
    config, result = tiny_scan
    out = config.run / "scan"
    assert result.out == out
    files = {p.name for p in out.iterdir()}
    assert {"accuracy.csv", "similarity.npz", "dynamics.csv", "suggestion.json", "tasks.json", "accuracy.png",
            "cosine.png", "cka.png", "dynamics.png"} <= files
    rows = SCAN_ACCURACY.read(out, ["step0", "step10", "step100"])
    assert [r["revision"] for r in rows] == ["step0", "step10", "step100"]
    # the scan's numbers equal a direct evaluation of one checkpoint
    from crosstime.series import open_series

    series = open_series(tiny_series)
    task = load_task(tiny_inputs / "agree.jsonl", series.load_tokenizer())
    direct = evaluate_task(series.load_model("step10"), task)
    assert rows[1]["n"] == len(task) == 24
    assert rows[1]["accuracy"] == pytest.approx(direct.accuracy)
    assert rows[1]["mean_m"] == pytest.approx(direct.mean_m, abs=1e-6)
    sim = np.load(out / "similarity.npz")
    assert set(sim.files) == set(SIMILARITY_ARRAYS)
    assert list(sim["revisions"]) == ["step0", "step10", "step100"] and int(sim["layer"]) == 1
    np.testing.assert_allclose(np.diag(sim["cka"]), 1.0, atol=1e-9)
    np.testing.assert_allclose(sim["cosine"], sim["cosine"].T, atol=1e-6)
    np.testing.assert_array_equal(sim["cka"], result.cka)
    assert len(result.suggestion.checkpoints) == 3 and all(p.reason for p in result.suggestion.checkpoints)
    assert (result.suggestion.series, result.suggestion.layer) == (str(tiny_series), 1)
    assert result.suggestion.tasks == [str(tiny_inputs / "agree.jsonl")]
    dyn = SCAN_DYNAMICS.read(out, ["step0", "step10", "step100"])
    assert len(dyn) == 3 and all(r["kl_bigram"] > 0 for r in dyn)
    tasks = json.loads((out / "tasks.json").read_text())
    assert tasks["agree"]["n"] == 24


def test_scan_outputs_read_back_with_the_schema_equal_the_result(tiny_scan):
    config, result = tiny_scan
    revisions = [c.revision for c in result.checkpoints]
    assert SCAN_ACCURACY.read(config.run / "scan", revisions) == result.accuracy
    assert SCAN_DYNAMICS.read(config.run / "scan", revisions) == result.dynamics
    assert read_model(Suggestion, config.output()) == result.suggestion
    assert config.output() == config.run / "scan" / "suggestion.json"


def test_scan_records_its_settings_after_success(tiny_scan, tmp_path):
    config, _ = tiny_scan
    saved = yaml.safe_load((config.run / "config.yaml").read_text())["scan"]
    saved.pop(stage.INPUTS_KEY)  # the scan reads no other stage's output: a digest of nothing
    files = saved.pop(stage.FILES_KEY)  # the checksums of what it wrote, for its readers
    assert saved.pop(stage.WRITES_KEY) == ["scan"]  # the artifact the record vouches for
    assert sorted(files) == sorted(f"scan/{p.name}" for p in config.rundir.scan.iterdir())
    assert stage.verify_outputs(config.rundir, "scan")
    assert saved == config.output_settings()
    assert saved["layer"] == 1 and saved["tasks"] == config.tasks
    assert not {"run", "progress", "device", "batch_size", "threads"} & set(saved)
    assert stage.finished(config)
    assert not stage.finished(config.model_copy(update={"layer": 0}))
    assert not stage.finished(config.model_copy(update={"n_suggest": 2}))
    assert stage.finished(config.model_copy(update={"device": "auto", "batch_size": 3, "progress": True,
                                                    "threads": 2}))
    moved = tmp_path / "copy"
    shutil.copytree(config.run, moved)
    assert stage.finished(config.model_copy(update={"run": moved}))
    (moved / "scan" / "suggestion.json").unlink()  # the output marker gone: not finished
    assert not stage.finished(config.model_copy(update={"run": moved}))


def test_a_failed_scan_forgets_its_record(tiny_series, tiny_inputs, tmp_path, monkeypatch):
    config = tiny_config(tiny_series, tiny_inputs, tmp_path / "run", train_corpus=None, corpus=None,
                         similarity_tokens=64)
    scan(config)
    assert stage.finished(config)

    def broken(*args, **kwargs):
        raise RuntimeError("killed half-way")

    monkeypatch.setattr("crosstime.scan.work.write_outputs", broken)
    with pytest.raises(RuntimeError, match="killed half-way"):
        scan(config)
    assert stage.recorded(config) is None and not stage.finished(config)


def test_the_scan_writes_the_phases_of_its_own_curves(tiny_scan):
    """scan/phases.json is read_phases of the accuracy.csv and dynamics.csv written beside it."""
    from crosstime.artifacts import SCAN_ACCURACY, SCAN_DYNAMICS, SCAN_PHASES, Phases, read_model
    from crosstime.scan import read_phases

    config, result = tiny_scan
    revisions = [c.revision for c in result.checkpoints]
    folder = config.run / "scan"
    written = read_model(Phases, folder / SCAN_PHASES)
    again = read_phases(SCAN_ACCURACY.read(folder, revisions), SCAN_DYNAMICS.read(folder, revisions),
                        accuracy=config.phase_accuracy, ngram_fraction=config.ngram_fraction)
    # the bootstrap needs each pair's result, which the scan does not keep: everything else is recomputed
    assert written.bootstrap == 1000 and 0 <= written.order_support <= 1
    unbooted = written.model_copy(update={"bootstrap": 0, "order_support": None, "phases": [
        p.model_copy(update={"onset_interval": None}) for p in written.phases]})
    assert unbooted == again
    revisions_or_never = {*revisions, None}
    assert all(set(p.onset_interval) <= revisions_or_never for p in written.phases if p.name != "n-gram statistics")
    assert [p.name for p in written.phases] == ["n-gram statistics", *dict.fromkeys(r["task"] for r in result.accuracy)]


def test_a_rescan_removes_the_files_it_no_longer_writes(tiny_scan, tiny_series, tiny_inputs, tmp_path):
    config, _ = tiny_scan
    run = tmp_path / "run"
    shutil.copytree(config.run, run)
    assert (run / "scan" / "dynamics.csv").is_file()
    result = scan(tiny_config(tiny_series, tiny_inputs, run, corpus=None, train_corpus=None, similarity_tokens=0))
    files = {p.name for p in (run / "scan").iterdir()}
    assert files == {"accuracy.csv", "similarity.npz", "suggestion.json", "tasks.json", "fingerprints.json",
                     "phases.json", "accuracy.png"}
    assert result.dynamics == [] and np.isnan(result.cka).all()
    assert any("training dynamics skipped" in note for note in result.notes)


def test_misspelt_setting_is_refused(tiny_series, tmp_path):
    with pytest.raises(ValidationError, match="n_sugest"):
        ScanConfig(run=tmp_path / "run", series=str(tiny_series), layer=0, n_sugest=2)
    with pytest.raises(ValidationError, match="out"):  # the run replaces the old out
        ScanConfig(run=tmp_path / "run", series=str(tiny_series), layer=0, out=tmp_path / "x")
    assert ScanConfig(run=tmp_path, series="s", layer=0).device == "auto"


def test_cli_scan_subset_and_bad_input(tiny_series, tiny_inputs, tmp_path):
    from typer.testing import CliRunner

    from crosstime.cli import app

    runner = CliRunner()
    out = tmp_path / "run"
    res = runner.invoke(app, ["scan", str(out), str(tiny_series), "--tasks", str(tiny_inputs / "agree.jsonl"),
                              "--layer", "0", "--revisions", "step0,step100", "--no-sentence-metric", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "suggested checkpoints" in res.output and "step100" in res.output
    assert [r["revision"] for r in csv.DictReader(open(out / "scan" / "accuracy.csv"))] == ["step0", "step100"]
    bad = runner.invoke(app, ["scan", str(out), str(tiny_series), "--tasks", "nosuchtask", "--layer", "0"])
    assert bad.exit_code == 2 and "unknown task 'nosuchtask'" in bad.output and "subjectverb" in bad.output
    assert bad.output.startswith("error: ") and "Traceback" not in bad.output


def test_scan_checks_inputs_before_work(tiny_series, tiny_inputs, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ScanError, match=r"layer 7 is out of range: .* 3 decoder blocks"):
        scan(tiny_config(tiny_series, tiny_inputs, out, layer=7))
    with pytest.raises(TaskError, match="keeps none of the pairs of task 'subjectverb'"):
        scan(tiny_config(tiny_series, tiny_inputs, out, tasks=["subjectverb"]))
    with pytest.raises(ValueError, match="'gpu' is not a device torch knows"):  # the config refuses it
        scan(tiny_config(tiny_series, tiny_inputs, out, device="gpu"))
    with pytest.raises(ScanError, match="train_corpus .* does not exist"):
        scan(tiny_config(tiny_series, tiny_inputs, out, train_corpus=tmp_path / "missing.txt"))
    assert not out.exists()  # nothing written, not even a record


def test_bad_input_leaves_a_finished_scan_as_it_was(tiny_scan, tiny_series, tiny_inputs):
    config, _ = tiny_scan
    before = {p.name: p.read_bytes() for p in [config.run / "config.yaml", *(config.run / "scan").iterdir()]}
    with pytest.raises(ScanError, match="layer 7 is out of range"):
        scan(config.model_copy(update={"layer": 7}))
    after = {p.name: p.read_bytes() for p in [config.run / "config.yaml", *(config.run / "scan").iterdir()]}
    assert after == before and stage.finished(config)


# -- the toy world ------------------------------------------------------------------------------------


@pytest.fixture
def toy_root(request):
    try:
        return request.getfixturevalue("toy_world")
    except pytest.FixtureLookupError:
        pytest.skip("the toy_world fixture is not in conftest yet")


@pytest.mark.slow
def test_scan_on_the_toy_world_brackets_the_accuracy_jump(toy_root, tmp_path):
    from crosstime.series import open_series

    revisions = open_series(toy_root).revisions[::2] + open_series(toy_root).revisions[-1:]  # half the grid, and the last
    result = scan(ScanConfig(run=tmp_path / "run", series=str(toy_root), layer=1, revisions=sorted(set(revisions)),
                             similarity_tokens=512, corpus_sequences=64, progress=False))
    acc = {}
    for r in result.accuracy:
        acc.setdefault(r["revision"], []).append(r["accuracy"])
    mean = [float(np.mean(acc[c.revision])) for c in result.checkpoints]
    assert sorted({r["task"] for r in result.accuracy}) == sorted(["simple_agreement", "pp_attractor", "rc_attractor",
                                                                   "irregular_plural", "previous_token", "induction"])
    assert mean[0] < 0.7 and mean[-1] > 0.9  # the toy's agreement accuracy climbs during pretraining
    roles = {p.role: p for p in result.suggestion.checkpoints}
    order = [c.revision for c in result.checkpoints]
    before, after = order.index(roles["before"].revision), order.index(roles["after"].revision)
    assert mean[before] < 0.5 * (mean[0] + mean[-1]) < mean[after]  # the picks bracket the jump
    assert before < after
    # n-gram statistics are learnt early: bigram KL at the 'before' checkpoint already far below init
    kl = {r["revision"]: r["kl_bigram"] for r in result.dynamics}
    assert kl[order[before]] < kl[order[0]]


def test_identical_checkpoints_are_named_and_recorded(tiny_inputs, tmp_path):
    """A series serving one checkpoint's weights under two names (as some Pythia step branches did)
    is warned about, naming both, and the fingerprints are recorded in scan/fingerprints.json."""
    import warnings

    from conftest import make_tiny_series
    from crosstime.artifacts import SCAN_FINGERPRINTS, Fingerprints, read_model

    series = make_tiny_series(tmp_path / "series")
    shutil.copy(series / "step10" / "model.safetensors", series / "step100" / "model.safetensors")
    config = tiny_config(series, tiny_inputs, tmp_path / "run", corpus=None, train_corpus=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan(config)
    said = [str(w.message) for w in caught if "identical weights" in str(w.message)]
    assert len(said) == 1 and "step10, step100" in said[0]
    prints = read_model(Fingerprints, config.rundir.scan / SCAN_FINGERPRINTS)
    assert prints.identical == [["step10", "step100"]]
    assert prints.revisions["step10"] == prints.revisions["step100"] != prints.revisions["step0"]
