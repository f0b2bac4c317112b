"""The interpret stage on a run made by the real stages (the report tests' fabricated run): its evidence
against a brute-force encode, its outputs, its record."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))  # the report tests' run fabricator
from interpret.llm_server import ScriptedServer, explain_reply, last_user
from interpret.test_llm_transformers import save_tiny_chat_model
from test_report_helpers import cached_run

from crosstime import stage
from crosstime.artifacts import read_report_data
from crosstime.interpret.backends import LLMError
from crosstime.interpret.evidence import Source, gather
from crosstime.runs import INTERPRETATION, open_run
from crosstime.stages.interpret import InterpretConfig, interpret
from crosstime.stages.report import ReportConfig, report


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    made, _ = cached_run(tmp_path_factory, M=3)
    dest = tmp_path_factory.mktemp("interpret") / "run"
    shutil.copytree(made, dest, ignore=shutil.ignore_patterns("report", ".crosstime.lock*"))
    return dest


def joint_activations(store, model, lo: int, hi: int) -> torch.Tensor:
    """``[contexts, P, F]``: the crosscoder's own encode of the normalised store rows (independent of the
    evidence pass's folded copy and view encoding)."""
    P, revs = store.rows_per_context, model.revisions
    x = torch.stack([store.read_block(r, lo * P, (hi - lo) * P) for r in revs], dim=1)
    x = x * torch.tensor([store.scales[r] for r in revs])[None, :, None]
    return model.encode(x).detach().reshape(hi - lo, P, -1)


def test_evidence_matches_a_brute_force_encode(run):
    opened = open_run(run)
    store, model = opened.store, opened.crosscoder
    lo, hi = store.context_range("heldout")
    acts = joint_activations(store, model, lo, hi)
    live = [i for i in range(model.n_features) if acts[..., i].max() > 0][:6]
    config = InterpretConfig(run=run, n_shown=3, n_heldout=4, n_inactive=3, device="cpu", progress=False)
    found = gather(store, model, {i: ["all"] for i in live}, config, Source(None, None))
    assert [e.feature for e in found] == live and all(e.checkpoint is None for e in found)
    for ev in found:
        best = float(acts[..., ev.feature].max())
        assert ev.top[0].activations[ev.top[0].marked] == pytest.approx(best, rel=1e-3)
        assert all(c.activations[c.marked] > 0 for c in ev.top + ev.weaker)
        assert all(max(c.activations) == 0 for c in ev.inactive) and len(ev.inactive) <= 3


def test_stage_writes_scores_and_analysis_and_records_itself(run):
    config = InterpretConfig(run=run, features="all-live", device="cpu", progress=False, n_boot=20)
    analysis = interpret(config)
    found = open_run(run).read(INTERPRETATION)
    assert found.analysis == analysis and stage.finished(config)
    features = {r["feature"]: r for r in open_run(run).evaluation.features}
    alive = sorted(i for i, r in features.items() if r["alive"])
    assert sorted({r["feature"] for r in found.explanations}) == alive
    for r in found.explanations:
        typed = r["explanation"] is not None  # an empty cell reads back as None
        assert typed == (r["complexity"] is not None)
        if r["view"] != "all":
            assert features[r["feature"]]["presence"][open_run(run).crosscoder.revisions.index(r["view"])] == "present"
        for name in ("detection", "fuzzing"):
            assert r[name] is None or 0 <= r[name] <= 1
    assert found.of(alive[0]) is not None and found.of(alive[0], "nowhere") is None
    assert (run / "interpret" / "complexity.png").stat().st_size > 0


def _chat(n, body):
    """Explain: name the highlighted word (complexity 2); judge: every example fires."""
    if any("[COMPLEXITY]" in m["content"] for m in body["messages"] if m["role"] == "system"):
        return explain_reply(n, body)
    shown = [line for line in last_user(body).splitlines() if line.startswith("Example ")]
    return {"text": "[" + ",".join("1" for _ in shown) + "]", "usage": (100, 10)}


def test_stage_with_an_llm_records_cost_and_reruns_from_its_cache(run, tmp_path):
    """--explainer llm against a chat-completions server on 127.0.0.1: explanations from the replies, the
    tokens and cost recorded in analysis.json, and a re-run asks nothing again."""
    server = ScriptedServer(_chat)
    try:
        config = InterpretConfig(run=run, features="all-live", n_features=4, per_checkpoint=False, n_shown=2, device="cpu",
                                 progress=False, n_boot=0, explainer="llm", llm_url=server.url, llm_model="tiny-chat",
                                 llm_key_env="", llm_price_prompt=1.0, llm_price_completion=2.0)
        first = interpret(config)
        asked = len(server.bodies)
        again = interpret(config)
    finally:
        server.close()
    usage = first.llm
    assert usage is not None and usage.sent == asked > 4 and usage.cached == 0 and usage.served_by == ["tiny-chat-served"]
    judge_replies = asked - 4  # one explanation per feature; the rest are the judge's
    assert usage.prompt_tokens == 100 * asked and usage.completion_tokens == 10 * 4 + 10 * judge_replies
    assert usage.cost_usd == pytest.approx((usage.prompt_tokens * 1.0 + usage.completion_tokens * 2.0) / 1e6)
    assert again.llm.sent == 0 and again.llm.cached == asked and len(server.bodies) == asked
    rows = [r for r in open_run(run).read(INTERPRETATION).explanations if r["view"] == "all"]
    assert len(rows) == 4 and all(r["explanation"].startswith("the word") and r["complexity"] == 2 for r in rows)
    assert all(r["source"] == "tiny-chat" for r in rows)  # the model asked for (served_by says who answered)


def test_llm_explainer_needs_an_endpoint_and_a_model(run):
    with pytest.raises(ValueError, match="--llm-url"):
        InterpretConfig(run=run, explainer="llm", llm_model="m")


def test_reported_features_are_the_reports_default_list_and_the_report_shows_the_explanations(tmp_path_factory,
                                                                                            tmp_path):
    """``--features reported`` explains what a default report lists (same n), without reading the report; the
    report then carries each listed feature's explanations by view and the analysis (none of it without
    interpret/). The report reads interpret's output, so a report written after it leaves interpret finished,
    and an interpret re-run after a report makes the report stale."""
    made, _ = cached_run(tmp_path_factory, M=3)  # the fabricated run, before any interpret (no record of one)
    copy = tmp_path / "run"
    shutil.copytree(made, copy, ignore=shutil.ignore_patterns("report", ".crosstime.lock*"))
    report_config = ReportConfig(run=copy, n_features=5, device="cpu", progress=False)
    report(report_config)
    before = json.loads((copy / "report" / "data.json").read_text())
    assert "interpret" not in before["overview"] and not any("interpret" in f for f in before["features"])
    config = InterpretConfig(run=copy, features="reported", n_features=5, device="cpu", progress=False, n_boot=0)
    analysis = interpret(config)
    found = open_run(copy).read(INTERPRETATION)
    report(report_config)
    data = read_report_data(copy / "report")
    listed = [f.id for f in data.features]
    assert listed == [f["id"] for f in before["features"]] and len(listed) == 5
    assert {r["feature"] for r in found.explanations} == set(listed)
    for f in data.features:
        rows = [r for r in found.explanations if r["feature"] == f.id]
        assert sorted(f.interpret) == sorted(r["view"] for r in rows)
        for r in rows:
            assert f.interpret[r["view"]].model_dump() == {k: r[k] for k in f.interpret[r["view"]].model_dump()}
    assert data.overview.interpret.analysis == analysis
    assert data.overview.interpret.figure.name == "interpret/complexity.png"
    assert stage.finished(config) and stage.finished(report_config)
    interpret(config.model_copy(update={"seed": 1}))
    assert not stage.finished(report_config)


def test_stage_with_a_local_transformers_chat_model(run, tmp_path):
    """--llm-backend transformers: a chat model saved in the test answers (its replies parse or are recorded
    as issues), the usage names the local model, and a folder that is not a model fails before any work."""
    folder = save_tiny_chat_model(tmp_path / "model", n_positions=4096)
    config = InterpretConfig(run=run, features="all-live", n_features=2, per_checkpoint=False, n_shown=2, n_heldout=2,
                             n_inactive=2, device="cpu", progress=False, n_boot=0, explainer="llm",
                             llm_backend="transformers", llm_model=str(folder))
    usage = interpret(config).llm
    assert usage.url is None and usage.served_by == [f"transformers:{folder.resolve()}"] and usage.sent >= 2
    assert usage.replies == usage.sent and usage.prompt_tokens > 0
    explained = [r for r in open_run(run).read(INTERPRETATION).explanations if r["view"] == "all"]
    unparsed = {i.feature for i in usage.issues if i.task == "explain"}
    assert all((r["explanation"] is None) == (r["feature"] in unparsed) for r in explained)  # a random model
    with pytest.raises(LLMError, match="not a saved transformers model"):
        interpret(config.model_copy(update={"llm_model": str(tmp_path / "nothing")}))


def test_llm_backend_settings_are_checked(run):
    with pytest.raises(ValueError, match="no --llm-url"):
        InterpretConfig(run=run, explainer="llm", llm_backend="transformers", llm_model="m", llm_url="http://x")
    with pytest.raises(ValueError, match="--llm-backend transformers needs --llm-model"):
        InterpretConfig(run=run, explainer="llm", llm_backend="transformers")
