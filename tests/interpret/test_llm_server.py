"""The LLM explainer and judge against a real chat-completions server on 127.0.0.1 (llm_server.py):
scripted replies, malformed ones, 429/500/hangs/refused keys/unknown models, and kills mid-batch.
Each case gives a recorded result or one clear error, and no cached reply is ever asked for again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from interpret.llm_server import ScriptedServer, evidence, explain_reply, last_user

import crosstime
from crosstime.errors import CrosstimeError
from crosstime.interpret.backends import LLMError, OpenAICompatible
from crosstime.interpret.cache import Prices, ReplyCache
from crosstime.interpret.contracts import Context, Explanation
from crosstime.interpret.llm import LLMClient, LLMExplainer, LLMJudge, llm_pair

pytest.importorskip("openai")  # the optional extra `llm`


@pytest.fixture
def serve():
    servers = []

    def start(respond):
        servers.append(ScriptedServer(respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def client_for(server, cache_dir, *, timeout=5.0, concurrency=1, max_retries=3, key_env=None, model="tiny-chat"):
    backend = OpenAICompatible(server.url, model, api_key_env=key_env, timeout=timeout)
    return LLMClient(backend, ReplyCache(cache_dir), concurrency=concurrency, max_retries=max_retries,
                     backoff=0.01, max_backoff=5.0)


WORDS = ("cat", "dog", "sun", "tree", "road", "milk")


def test_explanations_cached_and_rerun_free(serve, tmp_path):
    server = serve(explain_reply)
    items = [evidence(i, word) for i, word in enumerate(WORDS)]
    first = LLMExplainer(client_for(server, tmp_path, concurrency=3)).explain(items)
    assert [(e.feature, e.text, e.complexity, e.source) for e in first] == [
        (i, f"the word {w}", 2, "tiny-chat") for i, w in enumerate(WORDS)]
    assert len(server.bodies) == len(WORDS)
    assert all(b["temperature"] == 0.0 and b["model"] == "tiny-chat" for b in server.bodies)
    assert len(list(tmp_path.glob("*.json"))) == len(WORDS)
    again = LLMExplainer(client_for(server, tmp_path)).explain(items)
    assert again == first and len(server.bodies) == len(WORDS)  # all from the cache: no request


def test_explanation_without_score_is_recorded(serve, tmp_path):
    server = serve(lambda n, body: {"text": "[EXPLANATION]: numbers written as digits"})
    explainer = LLMExplainer(client_for(server, tmp_path))
    [out] = explainer.explain([evidence(7, "42", checkpoint="step1000")])
    assert (out.text, out.complexity, out.checkpoint) == ("numbers written as digits", None, "step1000")
    assert explainer.issues == [{"feature": 7, "checkpoint": "step1000", "issue": "no [COMPLEXITY]: line in the reply"}]


def _context(word: str, fires: bool) -> Context:
    return Context(tokens=("A", f" {word}", " here"), activations=(0.0, 3.0 if fires else 0.0, 0.0), marked=1)


def test_malformed_judge_reply_gives_none_for_its_contexts(serve, tmp_path):
    def respond(n, body):  # a list for the 2-example prompt; broken JSON for the 5-example one
        shown = [line for line in last_user(body).splitlines() if line.startswith("Example ")]
        if len(shown) == 5:
            return {"text": "Sure! [1, 0, 1, 1, 0,]"}
        return {"text": "[" + ",".join("1" if "fire" in line else "0" for line in shown) + "]"}

    server = serve(respond)
    words = ("fire", "ice", "fireman", "rock", "fires", "sand", "wildfire")
    contexts = [_context(w, "fire" in w) for w in words]
    judge = LLMJudge(client_for(server, tmp_path), examples_per_prompt=5)
    verdicts = judge.detect(Explanation(3, None, "fire words", 2, "m"), contexts)
    answered = [i for i, v in enumerate(verdicts) if v is not None]
    assert len(answered) == 2 and verdicts.count(None) == 5
    assert all(verdicts[i] == ("fire" in words[i]) for i in answered)
    assert len(server.bodies) == 2 and [i["task"] for i in judge.issues] == ["detect"]
    assert judge.issues[0]["issue"].startswith("the list is not valid JSON")


def test_fuzz_marks_the_given_token(serve, tmp_path):
    server = serve(lambda n, body: {"text": "[1]"})
    judge = LLMJudge(client_for(server, tmp_path), examples_per_prompt=5)
    context = Context(tokens=("A", " big", " fire"), activations=(0.0, 0.0, 2.0), marked=1)
    assert judge.fuzz(Explanation(3, None, "fire", 1, "m"), [context]) == [True]
    assert "Example 0: A<< big>> fire" in last_user(server.bodies[0])


def test_429_waits_retry_after(serve, tmp_path):
    server = serve(lambda n, body: {"status": 429, "headers": {"Retry-After": "1"}} if n == 0 else explain_reply(n, body))
    client = client_for(server, tmp_path)
    start = time.monotonic()
    [out] = LLMExplainer(client).explain([evidence(1, "cat")])
    assert time.monotonic() - start >= 0.9  # the header's 1 s, not the 0.01 s backoff
    assert out.text == "the word cat" and len(server.bodies) == 2 and client.stats["retries"] == 1


def test_500_then_hang_are_retried(serve, tmp_path):
    def respond(n, body):
        return {0: {"status": 500}, 1: {"hang": 10, "text": "late"}}.get(n) or explain_reply(n, body)

    server = serve(respond)
    client = client_for(server, tmp_path, timeout=0.5)
    start = time.monotonic()
    [out] = LLMExplainer(client).explain([evidence(1, "cat")])
    assert time.monotonic() - start < 5  # the hung request was given up after its 0.5 s
    assert out.text == "the word cat" and len(server.bodies) == 3 and client.stats == {"cached": 0, "sent": 1, "retries": 2}


def test_garbled_body_is_retried(serve, tmp_path):
    replies = {0: {"raw": '{"id": "x", "choices": [{"index": 0, "mess'}, 1: {"raw": '{"unrelated": 1}'}}
    server = serve(lambda n, body: replies.get(n) or explain_reply(n, body))
    client = client_for(server, tmp_path)
    [out] = LLMExplainer(client).explain([evidence(1, "cat")])
    assert out.text == "the word cat" and len(server.bodies) == 3 and client.stats["retries"] == 2


def test_retries_run_out_is_one_clear_error(serve, tmp_path):
    server = serve(lambda n, body: {"status": 503})
    with pytest.raises(LLMError, match=r"no reply .* after 3 tries; last: HTTP 503") as err:
        LLMExplainer(client_for(server, tmp_path, max_retries=2)).explain([evidence(1, "cat")])
    assert isinstance(err.value, CrosstimeError) and len(server.bodies) == 3


def test_refused_key_stops_the_batch_and_a_rerun_resumes(serve, tmp_path, monkeypatch):
    refuse = {"on": True}
    server = serve(lambda n, body: {"status": 401, "message": "bad key"} if refuse["on"] and n >= 2
                   else explain_reply(n, body))
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    items = [evidence(i, word) for i, word in enumerate(WORDS)]
    with pytest.raises(LLMError, match=r"refused the key \(HTTP 401: bad key\)"):
        LLMExplainer(client_for(server, tmp_path, key_env="TEST_LLM_KEY")).explain(items)
    assert len(server.bodies) == 3  # no request after the refusal
    assert len(list(tmp_path.glob("*.json"))) == 2  # the two replies paid for are on disk
    refuse["on"] = False
    out = LLMExplainer(client_for(server, tmp_path, key_env="TEST_LLM_KEY")).explain(items)
    assert [e.text for e in out] == [f"the word {w}" for w in WORDS]
    assert len(server.bodies) == 3 + 4  # only the four not yet answered


def test_unknown_model_is_one_clear_error(serve, tmp_path):
    server = serve(lambda n, body: {"status": 404, "message": "model 'nope' not found"})
    with pytest.raises(LLMError, match=r"does not know model 'nope'"):
        LLMExplainer(client_for(server, tmp_path, model="nope", concurrency=4)).explain(
            [evidence(i, w) for i, w in enumerate(WORDS)])
    assert len(server.bodies) <= 4  # at most the requests already in flight


def test_missing_key_variable_fails_before_any_request(serve, monkeypatch):
    server = serve(explain_reply)
    monkeypatch.delenv("TEST_LLM_KEY", raising=False)
    with pytest.raises(LLMError, match="TEST_LLM_KEY is not set"):
        OpenAICompatible(server.url, "m", api_key_env="TEST_LLM_KEY")
    assert server.bodies == []


def test_concurrency_is_bounded(serve, tmp_path):
    server = serve(lambda n, body: {**explain_reply(n, body), "hang": 0.2})
    LLMExplainer(client_for(server, tmp_path, concurrency=2)).explain([evidence(i, w) for i, w in enumerate(WORDS)])
    assert server.max_in_flight == 2 and len(server.bodies) == len(WORDS)


KILLED_RUN = """
import sys
from interpret.llm_server import evidence
from crosstime.interpret.backends import OpenAICompatible
from crosstime.interpret.cache import ReplyCache
from crosstime.interpret.llm import LLMClient, LLMExplainer
client = LLMClient(OpenAICompatible(sys.argv[1], "tiny-chat", api_key_env=None), ReplyCache(sys.argv[2]), concurrency=1)
LLMExplainer(client).explain([evidence(i, w) for i, w in enumerate(sys.argv[3:])])
"""


def test_killed_run_resumes_without_asking_again(serve, tmp_path):
    hang = {"on": True}
    server = serve(lambda n, body: {"hang": 120, "text": "never"} if hang["on"] and n == 3 else explain_reply(n, body))
    paths = [str(Path(crosstime.__file__).parents[1]), str(Path(__file__).parents[1])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, server.url, str(tmp_path), *WORDS], env=env)
    deadline = time.monotonic() + 60
    while len(server.bodies) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(server.bodies) == 4 and len(list(tmp_path.glob("*.json"))) == 3
    hang["on"] = False
    out = LLMExplainer(client_for(server, tmp_path)).explain([evidence(i, w) for i, w in enumerate(WORDS)])
    assert [e.text for e in out] == [f"the word {w}" for w in WORDS]
    asked_again = [last_user(b) for b in server.bodies[4:]]
    assert len(asked_again) == 3 and all(f"<< {w}>>" in text for text, w in zip(asked_again, WORDS[3:]))


def test_corrupt_entry_is_recorded_and_fetched_again(serve, tmp_path):
    server = serve(explain_reply)
    items = [evidence(0, "cat"), evidence(1, "dog")]
    LLMExplainer(client_for(server, tmp_path)).explain(items)
    damaged = min(tmp_path.glob("*.json"))
    damaged.write_text(damaged.read_text().replace("the word", "the ward"))
    client = client_for(server, tmp_path)
    out = LLMExplainer(client).explain(items)
    assert [e.text for e in out] == ["the word cat", "the word dog"] and len(server.bodies) == 3
    [record] = client.cache.corrupt
    assert record["key"] == damaged.stem and record["reason"] == "content does not match its sha256"
    assert Path(record["moved_to"]).is_file() and client.summary()["corrupt_entries"] == [record]


def test_summary_counts_tokens_and_cost(serve, tmp_path):
    server = serve(lambda n, body: {**explain_reply(n, body), "usage": (1000, 20 + n)})
    client = client_for(server, tmp_path)
    LLMExplainer(client).explain([evidence(i, w) for i, w in enumerate(WORDS[:3])])
    priced = client.summary(Prices(prompt_per_million=2.0, completion_per_million=8.0))
    assert priced["models"] == {"tiny-chat": {"replies": 3, "prompt_tokens": 3000, "completion_tokens": 63,
                                              "replies_without_usage": 0, "served_by": ["tiny-chat-served"]}}
    assert priced["cost_usd"] == pytest.approx((3000 * 2.0 + 63 * 8.0) / 1e6) and priced["cost_known"]
    unpriced = client.summary()
    assert (unpriced["cost_usd"], unpriced["cost_known"]) == (0.0, False)
    assert priced["session"] == {"cached": 0, "sent": 3, "retries": 0}


def _fenced_after(text: str, marker: str) -> str:
    """The body of the fenced block just after ``marker`` in a markdown text."""
    return re.search(re.escape(marker) + r"\n```[a-z]*\n(.*?)```", text, re.DOTALL).group(1)


def test_docs_worked_run(tmp_path):
    """docs/interpret-llm.md's worked run prints what the page says it prints."""
    doc = (Path(__file__).parents[2] / "docs" / "interpret-llm.md").read_text(encoding="utf-8")
    script = tmp_path / "worked.py"
    script.write_text(_fenced_after(doc, "<!-- worked-run -->"), encoding="utf-8")
    paths = [str(Path(crosstime.__file__).parents[1]), str(Path(__file__).parents[1])]
    done = subprocess.run([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == _fenced_after(doc, "<!-- worked-run-output -->")


def test_llm_pair_shares_one_client(serve, tmp_path):
    server = serve(explain_reply)
    explainer, judge = llm_pair(server.url, "tiny-chat", tmp_path / "llm-cache", api_key_env=None, concurrency=2)
    [out] = explainer.explain([evidence(4, "sun")])
    assert judge.client is explainer.client and out.text == "the word sun"
    assert explainer.client.summary()["models"]["tiny-chat"]["replies"] == 1


def test_views_with_the_same_evidence_share_one_request(serve, tmp_path):
    server = serve(explain_reply)
    views = [evidence(9, "cat", checkpoint=c) for c in (None, "step100", "step1000")]
    out = LLMExplainer(client_for(server, tmp_path, concurrency=3)).explain(views + [evidence(9, "dog", "step8000")])
    assert [(e.checkpoint, e.text) for e in out] == [(None, "the word cat"), ("step100", "the word cat"),
                                                     ("step1000", "the word cat"), ("step8000", "the word dog")]
    assert len(server.bodies) == 2
