"""Detection and fuzzing scores of an explanation, as delphi defines them.

Followed: ``eai-delphi`` (0.x wheel), ``delphi/scorers/classifier/detection.py``
(``DetectionScorer._prepare``: the held-out activating examples plus the non-activating ones, each
shown whole, the judge says whether the feature fires in it), ``delphi/scorers/classifier/fuzz.py``
(``FuzzingScorer._prepare``, default ``fuzz_type``: the held-out activating examples with their
firing token highlighted are the positives; non-activating examples with a randomly highlighted
token the negatives) and ``delphi/log/result_analysis.py`` (``compute_confusion`` drops the
examples without a usable prediction; ``compute_classification_metrics``: balanced accuracy =
(TP / positives + TN / negatives) / 2). Two differences, both said in docs/interpret.md: one
highlighted token per context (the contract's ``marked``, where delphi highlights every token above
0.3 × the example's maximum), and no score (None) where a class is empty, where delphi counts the
empty class's rate as 0.

Held out: the explainer sees ``FeatureEvidence.top`` only; scores use ``weaker`` (activating
contexts drawn at evenly spaced activation quantiles, none of them a shown context) and ``inactive``.
Truth is read from the activations, not from the list a context came from.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from crosstime.interpret.contracts import Context, Explanation, FeatureEvidence, Judge


@dataclass(frozen=True)
class Score:
    """One explanation's balanced accuracy on one view's held-out contexts (None: not scorable),
    with the counts it rests on (usable predictions per class)."""

    detection: float | None
    fuzzing: float | None
    n_positive: int
    n_negative: int
    n_unanswered: int


def balanced_accuracy(predictions: Sequence[bool | None], truth: Sequence[bool]) -> tuple[float | None, int, int]:
    """``(balanced accuracy, positives, negatives)`` over the answered predictions (delphi's
    ``compute_classification_metrics``); None when either class has no answered context."""
    answered = [(p, t) for p, t in zip(predictions, truth, strict=True) if p is not None]
    pos = sum(1 for _, t in answered if t)
    neg = len(answered) - pos
    if not pos or not neg:
        return None, pos, neg
    tp = sum(1 for p, t in answered if p and t)
    tn = sum(1 for p, t in answered if not p and not t)
    return (tp / pos + tn / neg) / 2, pos, neg


def fires(context: Context) -> bool:
    """Does the feature fire anywhere in the context?"""
    return any(a > 0 for a in context.activations)


def score(judge: Judge, explanation: Explanation, evidence: FeatureEvidence) -> Score:
    """Detection and fuzzing balanced accuracy of ``explanation`` on ``evidence``'s held-out contexts."""
    contexts = list(evidence.weaker) + list(evidence.inactive)
    detected = judge.detect(explanation, contexts)
    detection, pos, neg = balanced_accuracy(detected, [fires(c) for c in contexts])
    fuzzed = judge.fuzz(explanation, contexts)
    fuzzing, _, _ = balanced_accuracy(fuzzed, [c.activations[c.marked] > 0 for c in contexts])
    unanswered = sum(p is None for p in detected) + sum(p is None for p in fuzzed)
    return Score(detection, fuzzing, pos, neg, unanswered)


def shuffled(explanations: Sequence[Explanation], seed: int) -> list[Explanation]:
    """Each explanation handed to another feature of the same view (a derangement within each view of
    the explained ones; an unexplained one keeps its empty text): the chance baseline of a score."""
    out = list(explanations)
    by_view: dict[str | None, list[int]] = {}
    for k, e in enumerate(explanations):
        if e.text:
            by_view.setdefault(e.checkpoint, []).append(k)
    rng = random.Random(seed)
    for idx in by_view.values():
        if len(idx) < 2:
            continue
        perm = idx[:]
        while any(a == b for a, b in zip(idx, perm)):
            rng.shuffle(perm)
        for a, b in zip(idx, perm):
            e = explanations[b]
            out[a] = Explanation(explanations[a].feature, e.checkpoint, e.text, e.complexity, e.source)
    return out
