"""The interpret stage's evidence: :class:`~crosstime.interpret.contracts.FeatureEvidence` per feature and
view, from the report's evidence pass (:mod:`crosstime.evidence`: one stream over the store's
held-out contexts for the top contexts and the uniform activation sample, then token windows).

Per feature ``i`` and view ``v`` (``"all"`` = joint, or a checkpoint alone, where the feature is
present):

- ``top``: its ``n_shown`` strongest contexts (the explainer sees these);
- ``weaker``: ``n_heldout`` activating contexts at evenly spaced quantiles of the view's activation
  sample (:func:`crosstime.evidence.quantile_picks`), none from a context already in ``top``: held out
  from the explainer, scored on;
- ``inactive``: up to ``n_inactive`` windows where the feature is 0 at every token, from a shared draw of
  random (context, position) windows encoded once for every feature and view (seeded).

Token text: the series' tokenizer (:func:`crosstime.evidence.token_strings`); labels: the series'
labeller on the whole context, sliced to the window (:attr:`Context.labels`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from crosstime.crosscoder import Crosscoder
from crosstime.evidence import (
    ALL,
    EvidenceConfig,
    Example,
    StreamResult,
    quantile_picks,
    read_rows,
    stream,
    token_strings,
    view_activations,
    windows,
)
from crosstime.interpret.config import InterpretConfig
from crosstime.interpret.contracts import Context, FeatureEvidence
from crosstime.series import TokenLabeller
from crosstime.store import ActivationStore

N_CANDIDATES = 48  # random windows drawn for the inactive contexts (shared by every feature and view)


@dataclass(frozen=True)
class Source:
    """What turns store windows into contexts: the tokenizer (None: ids as text) and the labeller."""

    tokenizer: object | None
    labeller: TokenLabeller | None


def evidence_config(config: InterpretConfig) -> EvidenceConfig:
    return EvidenceConfig(n_top=config.n_shown, window_before=config.window_before, window_after=config.window_after,
                          n_quantiles=config.n_heldout, sample_size=config.sample_size, split="heldout",
                          max_contexts=config.max_contexts, per_checkpoint=config.per_checkpoint, logit_lens="none",
                          seed=config.seed)


def _picked(result: StreamResult, views: Mapping[int, Sequence[str]], n_heldout: int) -> list[tuple[str, Example]]:
    """``("top" | "weaker", example)`` for every wanted (feature, view): the top contexts, then quantile
    picks of contexts not among them."""
    out: list[tuple[str, Example]] = []
    for v, view in enumerate(result.views):
        for k, i in enumerate(result.features):
            if view not in views[i]:
                continue
            shown = set()
            for val, (c, p) in zip(result.top_values[v, k].tolist(), result.top_where[v, k].tolist()):
                if val > 0:
                    out.append(("top", Example(v, i, c, p, val)))
                    shown.add(c)
            for idx, _ in quantile_picks(result, v, k, n_heldout):
                c, p = result.sample_where[v, k, idx].tolist()
                if c not in shown:
                    out.append(("weaker", Example(v, i, c, p, float(result.sample_values[v, k, idx]))))
    return out


def _inactive(store: ActivationStore, model: Crosscoder, result: StreamResult, config: InterpretConfig,
              rng: np.random.Generator) -> dict[tuple[int, int], list[dict]]:
    """``{(view index, feature): [window, ...]}``: windows of a shared random draw where the feature is 0
    throughout, at most ``n_inactive`` each (windows as :func:`crosstime.evidence.windows` writes them)."""
    lo, hi = result.contexts
    P, first, T = store.rows_per_context, store.first_position, store.context_len
    contexts = rng.choice(np.arange(lo, hi), size=min(N_CANDIDATES, hi - lo), replace=False)
    positions = rng.integers(first, T, size=len(contexts))
    x = torch.cat([read_rows(store, model.revisions, int(c) * P, P) for c in contexts])  # [C·P, M, d]
    views = list(range(len(result.views)))
    acts = view_activations(model, x, result.features, True, config.batch_rows, views=views)  # [V, C·P, K]
    acts = acts.view(len(views), len(contexts), P, len(result.features))
    out: dict[tuple[int, int], list[dict]] = {}
    for j, (c, pos) in enumerate(zip(contexts.tolist(), positions.tolist())):
        a, b = max(0, pos - config.window_before), min(T, pos + config.window_after + 1)
        rows = slice(max(a, first) - first, b - first)
        quiet = (acts[:, j, rows, :] <= 0).all(dim=1)  # [V, K]
        for v, k in torch.nonzero(quiet).tolist():
            found = out.setdefault((v, result.features[k]), [])
            if len(found) < config.n_inactive:
                found.append({"context": c, "position": pos, "value": 0.0, "start": a,
                              "tokens": [int(t) for t in store.tokens[c, a:b]], "acts": [0.0] * (b - a)})
    return out


def _context(window: dict, vocab: Mapping[str, str], labels: Mapping[str, np.ndarray] | None) -> Context:
    a, n = window["start"], len(window["tokens"])
    sliced = () if labels is None else tuple((p, tuple(int(g) for g in lab[a : a + n])) for p, lab in labels.items())
    return Context(tokens=tuple(vocab.get(str(t), str(t)) for t in window["tokens"]),
                   activations=tuple(0.0 if v is None else float(v) for v in window["acts"]),
                   marked=window["position"] - a, labels=sliced)


def gather(store: ActivationStore, model: Crosscoder, views: Mapping[int, Sequence[str]], config: InterpretConfig,
           source: Source, device: str | torch.device = "cpu") -> list[FeatureEvidence]:
    """Evidence of every feature in ``views`` (feature id -> the views wanted: ``"all"`` and checkpoint
    names), one item per (feature, view) in feature order, the joint view first; see the module doc.
    ``model``: as the run reader opens it (normalised space); its folded copy does the work."""
    features = sorted(views)
    raw = model.folded().to(device).eval()
    settings = evidence_config(config)
    result = stream(store, raw, features, settings, config.batch_rows, progress=config.progress)
    picked = _picked(result, views, config.n_heldout)
    shown = windows(store, raw, [e for _, e in picked], settings, config.batch_rows)
    quiet = _inactive(store, raw, result, config, np.random.default_rng(config.seed))
    every = shown + [w for ws in quiet.values() for w in ws]
    ids = sorted({t for w in every for t in w["tokens"]})
    vocab = token_strings(source.tokenizer, ids) if source.tokenizer is not None else {}
    labels = {} if source.labeller is None else {
        c: source.labeller.label(np.asarray(store.tokens[c])) for c in sorted({w["context"] for w in every})}
    lists: dict[tuple[int, int], dict[str, list[Context]]] = {}
    for (kind, ex), win in zip(picked, shown):
        lists.setdefault((ex.view, ex.feature), {"top": [], "weaker": []})[kind].append(
            _context(win, vocab, labels.get(ex.context)))
    out = []
    for i in features:
        for v, view in enumerate(result.views):
            if view not in views[i]:
                continue
            found = lists.get((v, i), {"top": [], "weaker": []})
            inactive = [_context(w, vocab, labels.get(w["context"])) for w in quiet.get((v, i), [])]
            out.append(FeatureEvidence(i, None if view == ALL else view, tuple(found["top"]), tuple(found["weaker"]),
                                       tuple(inactive)))
    return out


__all__ = ["Source", "evidence_config", "gather"]
