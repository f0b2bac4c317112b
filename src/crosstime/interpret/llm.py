"""The LLM explainer and judge (:mod:`crosstime.interpret.contracts`), and the client they share:
cached, concurrent with a bound, retried with backoff.

:class:`LLMClient` sends a batch of chat requests through a backend
(:mod:`crosstime.interpret.backends`): a request already in the cache
(:mod:`crosstime.interpret.cache`) costs nothing; the others go out on at most ``concurrency``
threads; each reply is written to the cache the moment it arrives, before anything parses it. A
429, 5xx, timeout or dropped connection is retried up to ``max_retries`` times, waiting the
server's ``Retry-After`` or else ``backoff`` x 2^attempt seconds (at most ``max_backoff``). A
refused key, an unknown model, a rejected request or retries run out raise one
:class:`~crosstime.interpret.backends.LLMError`: no worker starts another request after it, the
requests in flight finish and are cached, and a re-run resumes from the cache.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from crosstime.interpret.backends import (
    Backend,
    LLMError,
    Message,
    OpenAICompatible,
    Reply,
    TransientFailure,
)
from crosstime.interpret.cache import (
    UNPRICED,
    Prices,
    ReplyCache,
    request_key,
    summarize,
)
from crosstime.interpret.contracts import Context, Explanation, FeatureEvidence
from crosstime.interpret.prompts import (
    detection_messages,
    explainer_messages,
    fuzz_messages,
    parse_explanation,
    parse_verdicts,
)

Request = tuple[Sequence[Message], dict[str, Any]]  # (messages, sampling params: temperature, max_tokens, ...)


class LLMClient:
    """A backend behind the reply cache, a bound on concurrent requests and retries.

    Thread-safe: callers on several threads share the one bound (``concurrency`` requests in flight)."""

    def __init__(self, backend: Backend, cache: ReplyCache, concurrency: int = 4, max_retries: int = 4,
                 backoff: float = 1.0, max_backoff: float = 60.0):
        if concurrency < 1 or max_retries < 0:
            raise LLMError(f"concurrency must be >= 1 and max_retries >= 0 (got {concurrency}, {max_retries})")
        self.backend, self.cache = backend, cache
        self.concurrency, self.max_retries, self.backoff, self.max_backoff = concurrency, max_retries, backoff, max_backoff
        self._slots = threading.BoundedSemaphore(concurrency)
        self._stop = threading.Event()  # set by a fatal error: no request starts after it
        self._fatal: LLMError | None = None
        self._lock = threading.Lock()
        self.stats = {"cached": 0, "sent": 0, "retries": 0}  # this session: replies from the cache, sent, retries

    def complete_all(self, requests: Sequence[Request]) -> list[Reply]:
        """One reply per request, in order. Identical requests are sent once. Raises the first
        :class:`LLMError`, after the requests in flight have finished (and been cached)."""
        keys = [request_key(self.backend.model_id, messages, params) for messages, params in requests]
        first: dict[str, int] = {}  # each distinct request's first position, in submission order
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="llm")
        futures: dict[str, Future[Reply]] = {}
        try:
            for key, i in first.items():
                futures[key] = pool.submit(self._one, key, *requests[i])
            wait(futures.values(), return_when=FIRST_EXCEPTION)
            if self._fatal is not None:
                raise self._fatal
            return [futures[key].result() for key in keys]
        finally:  # an error or Ctrl-C: start nothing new; the requests in flight finish and are cached
            if not all(f.done() for f in futures.values()):
                self._stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            if self._fatal is None:  # an interrupted batch (Ctrl-C): a later batch may run
                self._stop.clear()

    def _one(self, key: str, messages: Sequence[Message], params: dict[str, Any]) -> Reply:
        """One request: from the cache, or sent (with retries) and cached before it is returned."""
        cached = self.cache.get(key)
        if cached is not None:
            self._count("cached")
            return cached
        last: TransientFailure | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = last.retry_after if last.retry_after is not None else self.backoff * 2 ** (attempt - 1)
                if self._stop.wait(min(delay, self.max_backoff)):
                    break
                self._count("retries")
            outcome = self._send(messages, params)
            if outcome is None:
                break
            if isinstance(outcome, TransientFailure):
                last = outcome
                continue
            self.cache.put(key, self.backend.model_id, messages, params, outcome)  # paid for: on disk first
            self._count("sent")
            return outcome
        if last is None or self._stop.is_set():
            raise LLMError("the LLM batch was stopped before this request was sent")
        err = LLMError(f"no reply from the LLM backend ({self.backend.model_id}) after {self.max_retries + 1} tries; "
                       f"last: {last}. The replies so far are cached: re-run to resume")
        self._fail(err)
        raise err

    def _send(self, messages: Sequence[Message], params: dict[str, Any]) -> Reply | TransientFailure | None:
        """One try once a slot is free: the reply, the failure worth retrying, or None when the batch
        was stopped meanwhile. A fatal error stops every worker and is raised."""
        with self._slots:
            if self._fatal is not None:
                raise self._fatal
            if self._stop.is_set():
                return None
            try:
                return self.backend.complete(messages, params)
            except TransientFailure as failure:
                return failure
            except LLMError as err:
                self._fail(err)
                raise

    def _fail(self, err: LLMError) -> None:
        with self._lock:
            if self._fatal is None:
                self._fatal = err
        self._stop.set()

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def summary(self, prices: Prices = UNPRICED) -> dict[str, Any]:
        """The cache's tokens and cost (:func:`~crosstime.interpret.cache.summarize`) and this session's counts."""
        return {**summarize(self.cache, prices), "session": dict(self.stats)}


class LLMExplainer:
    """:class:`~crosstime.interpret.contracts.Explainer` through an LLM: delphi's default explainer prompt
    with our complexity rubric (:mod:`crosstime.interpret.prompts`), one request per evidence item.

    A reply with no ``[EXPLANATION]:`` line gives the text ``""``, one with no usable complexity
    gives ``complexity=None``; each such case is appended to :attr:`issues` (feature, checkpoint, issue)."""

    def __init__(self, client: LLMClient, temperature: float = 0.0, max_tokens: int = 512):
        self.client = client
        self.params = {"temperature": temperature, "max_tokens": max_tokens}
        self.issues: list[dict[str, Any]] = []

    def explain(self, evidence: Sequence[FeatureEvidence]) -> list[Explanation]:
        """One explanation per item, in order (evidence with no top context is not sent: text "")."""
        shown = [ev for ev in evidence if ev.top]
        replies = dict(zip((id(ev) for ev in shown), self.client.complete_all([(explainer_messages(ev), self.params)
                                                                              for ev in shown])))
        out = []
        for ev in evidence:
            reply = replies.get(id(ev))
            text, complexity, issues = parse_explanation(reply.text) if reply else (None, None, ["no top contexts to show"])
            self.issues += [{"feature": ev.feature, "checkpoint": ev.checkpoint, "issue": issue} for issue in issues]
            out.append(Explanation(feature=ev.feature, checkpoint=ev.checkpoint, text=text or "",
                                   complexity=complexity, source=self.client.backend.model_id))
        return out


class LLMJudge:
    """:class:`~crosstime.interpret.contracts.Judge` through an LLM: delphi's detection and fuzzing
    prompts, ``examples_per_prompt`` contexts per request (delphi's default 5), shuffled with a fixed
    seed first (delphi shuffles too: a prompt of only firing contexts would teach the answer).

    A reply that is not a list of 0/1 of the right length gives None for each of its contexts and
    an entry in :attr:`issues` (feature, checkpoint, task, issue); an empty explanation is not sent."""

    def __init__(self, client: LLMClient, examples_per_prompt: int = 5, temperature: float = 0.0,
                 max_tokens: int = 128, seed: int = 42):
        self.client, self.per_prompt, self.seed = client, examples_per_prompt, seed
        self.params = {"temperature": temperature, "max_tokens": max_tokens}
        self.issues: list[dict[str, Any]] = []

    def detect(self, explanation: Explanation, contexts: Sequence[Context]) -> list[bool | None]:
        return self._judge("detect", explanation, contexts)

    def fuzz(self, explanation: Explanation, contexts: Sequence[Context]) -> list[bool | None]:
        return self._judge("fuzz", explanation, contexts)

    def _judge(self, task: str, explanation: Explanation, contexts: Sequence[Context]) -> list[bool | None]:
        """Verdicts [len(contexts)] in the caller's order."""
        where = {"feature": explanation.feature, "checkpoint": explanation.checkpoint, "task": task}
        if not explanation.text:
            self.issues.append({**where, "issue": "no explanation to judge"})
            return [None] * len(contexts)
        order = random.Random(self.seed).sample(range(len(contexts)), len(contexts))
        batches = [order[i:i + self.per_prompt] for i in range(0, len(order), self.per_prompt)]
        build = detection_messages if task == "detect" else fuzz_messages
        replies = self.client.complete_all([(build(explanation.text, [contexts[i] for i in batch]), self.params)
                                            for batch in batches])
        verdicts: list[bool | None] = [None] * len(contexts)
        for batch, reply in zip(batches, replies):
            parsed, reason = parse_verdicts(reply.text, len(batch))
            if parsed is None:
                self.issues.append({**where, "issue": reason, "contexts": batch})
                continue
            for i, verdict in zip(batch, parsed):
                verdicts[i] = verdict
        return verdicts


def pair_for(backend: Backend, cache_dir: str | Path, concurrency: int = 4,
             max_retries: int = 4) -> tuple[LLMExplainer, LLMJudge]:
    """The explainer and judge of ``--explainer llm`` on any backend: one client (one bound, one cache in
    ``cache_dir``, e.g. ``RUN/interpret/llm-cache``). ``explainer.client.summary(prices)`` gives the tokens
    and cost; ``explainer.issues`` and ``judge.issues`` the replies that parsed badly."""
    client = LLMClient(backend, ReplyCache(cache_dir), concurrency=concurrency, max_retries=max_retries)
    return LLMExplainer(client), LLMJudge(client)


def llm_pair(url: str, model: str, cache_dir: str | Path, api_key_env: str | None = "OPENAI_API_KEY",
             concurrency: int = 4, timeout: float = 60.0, max_retries: int = 4) -> tuple[LLMExplainer, LLMJudge]:
    """:func:`pair_for` an OpenAI-compatible ``url`` (OpenAI, vLLM, Ollama, llama.cpp's server)."""
    return pair_for(OpenAICompatible(url, model, api_key_env=api_key_env, timeout=timeout), cache_dir,
                    concurrency=concurrency, max_retries=max_retries)
