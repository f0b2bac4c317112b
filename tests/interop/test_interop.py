"""Run-level interop: a crosscoder written in the first paper's format for a real store is imported with
`crosstime import`, then evaluate, attribute and report run on it; exports (hub with its card, saelens;
neuronpedia's in test_neuronpedia_export.py) and the Hub round trip on a local folder; push offline."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import shutil
import socket
import time

import pytest
import torch
import yaml
from crosscoder.test_formats_io import assert_refused, cct_config, invoke
from report.test_report_helpers import harvest_run, make_crosscoder, make_series, run_stages, write_tasks

from crosstime.crosscoder import CrosscoderError, load, load_for_store
from crosstime.interop.formats import read
from crosstime.runs import open_run
from crosstime.stages.interpret import InterpretConfig, interpret
from crosstime.store import ActivationStore


@pytest.fixture(scope="module")
def imported_run(tmp_path_factory):
    """A run with a real store, whose crosscoder came in through `crosstime import cct`, evaluated,
    attributed and reported; returns (run, the weights as written in the foreign file)."""
    root = tmp_path_factory.mktemp("interop")
    series = make_series(root, 3)
    run = root / "run"
    store = harvest_run(run, series)
    cc = make_crosscoder(store.revisions, [store.scales[r] for r in store.revisions], store.d_model)
    w = {k: getattr(cc, k).detach().clone() for k in ("W_enc", "W_dec", "b_enc", "b_dec")}
    d, F = store.d_model, cc.n_features
    norms = [store.scales[r] for r in store.revisions]  # the reference records the scaling factors s_m themselves
    foreign = root / "checkpoints" / "version_0"
    foreign.mkdir(parents=True)
    torch.save(w, foreign / "20.pt")
    (foreign / "20_cfg.json").write_text(json.dumps(cct_config(
        M=3, revisions=store.revisions, dict_size=F, d_in=d, estimated_act_norm_list=norms)))
    result = invoke("import", "cct", foreign / "20.pt", "--out", run, "--store", run / "activations")
    assert result.exit_code == 0, result.output
    assert "checked against the store" in result.output
    tasks = write_tasks(root / "tasks")
    run_stages(run, series, tasks, ("evaluate", "attribute"))
    from crosstime.report import EvidenceConfig, ReportConfig
    from crosstime.stages.report import report

    report(ReportConfig(run=run, evidence=EvidenceConfig(max_contexts=4, logit_lens="none"), device="cpu",
                        progress=False))
    return run, w


def test_imported_crosscoder_is_the_file_and_every_stage_reads_it(imported_run):
    run, w = imported_run
    store = ActivationStore(run / "activations")
    model = load_for_store(run / "crosscoder", store)
    for k, v in w.items():
        assert torch.equal(getattr(model, k), v), k
    saved = json.loads((run / "crosscoder" / "config.json").read_text())
    assert saved["imported"]["format"] == "cct" and saved["imported"]["weights"].endswith("20.pt")
    assert (run / "evaluation.json").is_file() and (run / "report" / "data.json").is_file()
    assert sorted(p.name for p in (run / "attribution").iterdir()) == ["agreement", "attractor"]
    # the evaluation's EV is that of the file's weights: recompute checkpoint 0's from the held-out rows
    ev = json.loads((run / "evaluation.json").read_text())["checkpoints"]
    assert [c["revision"] for c in ev] == store.revisions


def test_import_refuses_a_store_with_other_scales_and_writes_nothing(imported_run, tmp_path):
    run, w = imported_run
    folder = tmp_path / "cct"
    folder.mkdir()
    torch.save(w, folder / "0.pt")
    store = ActivationStore(run / "activations")
    cfg = cct_config(M=3, revisions=store.revisions, dict_size=w["W_dec"].shape[0], d_in=store.d_model,
                     estimated_act_norm_list=[1.0, 1.0, 1.0])
    (folder / "0_cfg.json").write_text(json.dumps(cfg))
    out = tmp_path / "new_run"
    assert_refused(invoke("import", "cct", folder / "0.pt", "--out", out, "--store", run / "activations"), "scales")
    assert not out.exists()
    cfg["estimated_act_norm_list"] = [store.scales[r] for r in store.revisions]
    (folder / "0_cfg.json").write_text(json.dumps(cfg))
    assert_refused(invoke("import", "cct", folder / "0.pt", "--out", run), "already holds")  # no --force


def test_a_run_imported_with_an_outside_store_reads_it_until_it_moves(imported_run, tmp_path):
    """bring-your-own-crosscoder.md's flow: `import … --out NEW --store STORE`, then `evaluate NEW` reads STORE
    (NEW has no activations/ of its own) and gives the numbers evaluating the same weights in the store's own
    run gave; a moved or changed STORE is refused in one line naming the recorded path and both fixes."""
    run, _ = imported_run
    foreign = run.parent / "checkpoints" / "version_0" / "20.pt"
    store = tmp_path / "elsewhere" / "activations"
    shutil.copytree(run / "activations", store)
    new = tmp_path / "byo"
    imported = invoke("import", "cct", foreign, "--out", new, "--store", store)
    assert imported.exit_code == 0, imported.output
    assert "the run reads it there" in imported.output
    evaluate = ("evaluate", new, "--contexts", "2", "--dead-tokens", "256", "--no-plots", "--device", "cpu",
                "--no-progress")
    result = invoke(*evaluate)
    assert result.exit_code == 0, result.output
    assert not (new / "activations").exists() and open_run(new).store.root == store.resolve()
    mine, theirs = (json.loads((r / "evaluation.json").read_text())["checkpoints"] for r in (new, run))
    assert mine == theirs
    moved = tmp_path / "moved"
    store.rename(moved)
    assert_refused(invoke(*evaluate), str(store.resolve()), "is gone", str(new / "activations"),
                   f"`crosstime import cct {foreign} --out {new} --store NEW --force`")
    moved.rename(store)
    manifest = store / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()), indent=1))  # the same store, rewritten
    assert_refused(invoke(*evaluate), str(store.resolve()), "has changed")
    assert_refused(invoke("report", new), "has changed")  # every reader of the run, not only evaluate
    again = invoke("import", "cct", foreign, "--out", new, "--store", store, "--force")  # the fix it names
    assert again.exit_code == 0, again.output
    assert open_run(new).store.root == store.resolve()


def test_hub_export_card_index_and_local_round_trip(imported_run, tmp_path):
    run, w = imported_run
    out = tmp_path / "hub"
    result = invoke("export", run, "--format", "hub", "--out", out)
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])["crosstime"]
    store = ActivationStore(run / "activations")
    assert meta["revisions"] == store.revisions and meta["variant"] == "relu" and meta["n_features"] == 48
    assert meta["site"] and meta["series"]
    evaluation = json.loads((run / "evaluation.json").read_text())["checkpoints"]
    for row in evaluation:  # the evaluation table, one row per checkpoint
        assert f"| {row['revision']} |" in card and f"{row['explained_variance']:.4g}" in card
    index = json.loads((out / "index.json").read_text())
    assert sorted(f["file"] for f in index["files"]) == ["README.md", "config.json", "model.safetensors"]
    assert "## Explanations" not in card and not (out / "interpret").exists()  # the run has no interpret output
    back = tmp_path / "back"
    result = invoke("import", "hub", out, "--out", back)
    assert result.exit_code == 0, result.output
    model = load(back / "crosscoder")
    for k, v in w.items():
        assert torch.equal(getattr(model, k), v), k


def test_hub_export_carries_the_interpret_output_and_read_back_checks_it(imported_run, tmp_path):
    """With `crosstime interpret` run: its two files in the folder and in index.json with their sha256, a card
    section stating how many features are explained by what and the analysis's reading; read("hub") checks
    every listed file but the card."""
    run = tmp_path / "run"
    shutil.copytree(imported_run[0], run, ignore=shutil.ignore_patterns(".crosstime.lock*"))
    interpret(InterpretConfig(run=run, features="all-live", device="cpu", progress=False, n_boot=20))
    out = tmp_path / "hub"
    result = invoke("export", run, "--format", "hub", "--out", out)
    assert result.exit_code == 0, result.output
    names = ("interpret/explanations.csv", "interpret/analysis.json")
    index = {f["file"]: f for f in json.loads((out / "index.json").read_text())["files"]}
    assert sorted(index) == sorted(["README.md", "config.json", "model.safetensors", *names])
    for name in names:
        assert (out / name).read_bytes() == (run / name).read_bytes()
        assert index[name]["sha256"] == hashlib.sha256((run / name).read_bytes()).hexdigest()
        assert index[name]["bytes"] == (run / name).stat().st_size
    with (run / "interpret" / "explanations.csv").open(newline="") as f:
        joint = [r for r in csv.DictReader(f) if r["view"] == "all" and r["explanation"]]
    analysis = json.loads((run / "interpret" / "analysis.json").read_text())
    card = (out / "README.md").read_text()
    assert joint and {r["source"] for r in joint} == {"rules"}
    assert f"{len(joint)} of the {analysis['n_features']} features" in card and f"({len(joint)} by rules)" in card
    assert f"Complexity against emergence: {analysis['reading']}" in card
    assert read("hub", out).model.n_features == 48
    (out / "README.md").write_text(card + "\nEdited on the Hub.\n")  # a card edit is no damage
    assert read("hub", out).model.n_features == 48
    csv_file = out / names[0]
    csv_file.write_bytes(csv_file.read_bytes() + b"\n")
    with pytest.raises(CrosscoderError, match="explanations.csv differs from the sha256"):
        read("hub", out)
    csv_file.unlink()
    with pytest.raises(CrosscoderError, match="explanations.csv is listed in .* but missing"):
        read("hub", out)


def test_export_refusals_leave_nothing(imported_run, tmp_path):
    run, _ = imported_run
    out = tmp_path / "x"
    line = assert_refused(invoke("export", run, "--format", "sae-vis", "--out", out), "sae-vis")
    assert "neuronpedia" in line and "saelens" in line
    assert not out.exists()
    no_report = tmp_path / "bare"
    (no_report / "crosscoder").mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        (no_report / "crosscoder" / f).write_bytes((run / "crosscoder" / f).read_bytes())
    assert_refused(invoke("export", no_report, "--format", "neuronpedia", "--out", out), "crosstime report")
    assert not out.exists() and not list(tmp_path.glob(".x.partial*"))


def test_push_and_pull_offline_fail_with_one_line(imported_run, tmp_path, monkeypatch):
    run, _ = imported_run
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert_refused(invoke("push", run, "someone/crosscoder"), "HF_HUB_OFFLINE")
    out = tmp_path / "pulled"
    assert_refused(invoke("import", "hub", "someone/crosscoder:blocks.1", "--out", out), "HF_HUB_OFFLINE")
    assert not out.exists()


def _no_network(monkeypatch) -> list:
    """A machine without network: the resolver answers, every connection fails at once (as with no route);
    HF_HUB_OFFLINE unset. Returns the connection attempts."""
    attempts = []

    def unreachable(self, address):
        attempts.append(address)
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))])
    monkeypatch.setattr(socket.socket, "connect", unreachable)
    return attempts


def test_push_and_pull_without_network_fail_at_once_with_one_line(imported_run, tmp_path, monkeypatch):
    """No network and HF_HUB_OFFLINE unset: one connection attempt each (no retries), then one line naming the
    reason and the fixes: HF_HUB_OFFLINE=1 or a local folder for the import, the exported folder for push."""
    run, _ = imported_run
    attempts = _no_network(monkeypatch)
    start = time.perf_counter()
    line = assert_refused(invoke("push", run, "someone/crosscoder"), "cannot push to someone/crosscoder",
                          "no network", "huggingface.co:443: Network is unreachable", "crosstime export")
    assert "HF_HUB_OFFLINE is set" not in line and len(attempts) == 1
    out = tmp_path / "pulled"
    line = assert_refused(invoke("import", "hub", "someone/crosscoder:blocks.1", "--out", out),
                          "cannot download someone/crosscoder: no network", "Network is unreachable",
                          "HF_HUB_OFFLINE=1 reads the cache", "import a local folder", "hf download someone/crosscoder")
    assert len(attempts) == 2, attempts  # asked once each, never retried
    assert time.perf_counter() - start < 10  # measured: well under a second each
    assert not out.exists()
