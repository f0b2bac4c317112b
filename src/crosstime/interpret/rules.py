"""The rule-based explainer and judge: explanations from the toy world's own ground truth.

The explainer reads the feature's type (evaluate's typed emergence, ``feature_type`` in
evaluation/features.csv: :mod:`crosstime.evaluate.types`) and makes it concrete from the evidence
it is shown (the ``top`` contexts of the view: the token, the previous token, the label's group at
the marked positions, by majority). Its complexity is the rung of :data:`LADDER`. A feature typed
``other`` or ``unscored`` has no rule: its explanation is empty and its complexity None.

Each explanation is one of the sentences of :data:`TEMPLATES`, so the judge can parse it back and
apply it to any context, the way an LLM judge applies a free-text explanation: ``detect`` says the
feature fires in a context when the rule holds at some position of it; ``fuzz`` when the rule holds
at the marked position. An explanation that is not one of the sentences gets ``None`` answers.

Rules at position ``t`` of a window (tokens as text):

- ``current_token``: token ``t`` is the named one; ``previous_token``: token ``t − 1`` is;
- ``induction``: the ``INDUCTION_MATCH`` tokens ending at ``t`` occurred earlier *in the window*
  (the type is computed on the whole context, so a copy whose first occurrence lies before the
  window is missed) and hold no ``boundary`` token (the context-start token, as evaluate does);
- a label of the series' labeller (``subject_number``, ``attractor``, ``subject_end`` on the toy
  world): the context's label at ``t`` is the named group (labels travel with the context,
  :attr:`crosstime.interpret.contracts.Context.labels`, computed on the whole context).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from crosstime.interpret.contracts import Context, Explanation, FeatureEvidence

# The complexity ladder (docs/interpret.md): a single token < a token at a fixed offset < a copy of an
# earlier n-gram < a grammatical role within the clause < a role that spans a nested phrase.
LADDER = {"current_token": 1, "previous_token": 2, "induction": 3, "subject_end": 4, "subject_number": 4,
          "attractor": 5}
INDUCTION_MATCH = 3  # evaluate's default min_match
SOURCE = "rules"
NUMBER_NAMES = {1: "singular", 2: "plural"}

TEMPLATES = {
    "current_token": "the current token is {token}",
    "previous_token": "the previous token is {token}",
    "induction": f"the last {INDUCTION_MATCH} tokens occurred earlier in the context (induction)",
    "subject_number": "inside a {name} subject, up to its verb [subject_number={group}]",
    "attractor": "inside an attractor: a PP or relative clause between a subject's head noun and its verb "
                 "[attractor={group}]",
    "subject_end": "the last word of a subject, right before its finite verb [subject_end={group}]",
}
_TOKEN_RULE = re.compile(r"^the (current|previous) token is (\".*\")$")
_LABEL_RULE = re.compile(r"\[(\w+)=(\d+)\]$")


@dataclass(frozen=True)
class Rule:
    """A parsed explanation: ``kind`` (a key of :data:`LADDER`), the token text or the label group."""

    kind: str
    token: str | None = None
    group: int | None = None


def labels_of(context: Context) -> dict[str, tuple[int, ...]]:
    return dict(context.labels)


def _majority(values: Sequence) -> object | None:
    counted = Counter(v for v in values if v is not None)
    return None if not counted else min(counted.items(), key=lambda kv: (-kv[1], str(kv[0])))[0]


def rule_text(kind: str, top: Sequence[Context]) -> str:
    """The explanation of a feature of type ``kind`` made concrete from its ``top`` contexts."""
    if kind == "current_token":
        return TEMPLATES[kind].format(token=json.dumps(_majority([c.tokens[c.marked] for c in top])))
    if kind == "previous_token":
        before = [c.tokens[c.marked - 1] if c.marked > 0 else None for c in top]
        return TEMPLATES[kind].format(token=json.dumps(_majority(before)))
    if kind == "induction":
        return TEMPLATES[kind]
    groups = [labels_of(c).get(kind, ())[c.marked] if kind in labels_of(c) else None for c in top]
    group = _majority([g for g in groups if g is not None and g > 0]) or 1
    return TEMPLATES[kind].format(group=group, name=NUMBER_NAMES.get(int(group), str(group)))


def parse(text: str) -> Rule | None:
    """The rule an explanation states, or None when it is not one of :data:`TEMPLATES`."""
    found = _TOKEN_RULE.match(text)
    if found:
        return Rule(f"{found.group(1)}_token", token=json.loads(found.group(2)))
    if text == TEMPLATES["induction"]:
        return Rule("induction")
    found = _LABEL_RULE.search(text)
    if found and found.group(1) in LADDER:
        return Rule(found.group(1), group=int(found.group(2)))
    return None


class RuleExplainer:
    """Explains each feature by its type (``types``: feature id -> features.csv ``feature_type``)."""

    def __init__(self, types: Mapping[int, str]):
        self.types = dict(types)

    def explain(self, evidence: Sequence[FeatureEvidence]) -> list[Explanation]:
        out = []
        for ev in evidence:
            kind = self.types.get(ev.feature)
            if kind not in LADDER or not ev.top:
                out.append(Explanation(ev.feature, ev.checkpoint, "", None, SOURCE))
                continue
            out.append(Explanation(ev.feature, ev.checkpoint, rule_text(kind, ev.top), LADDER[kind], SOURCE))
        return out


class RuleJudge:
    """Applies a parsed rule explanation to contexts (see the module docstring). ``boundary``: the text
    of the context-start token, which no induction n-gram may hold (None: no such token)."""

    def __init__(self, boundary: str | None = None):
        self.boundary = boundary

    def holds(self, rule: Rule, context: Context, t: int) -> bool:
        """Does ``rule`` hold at position ``t`` of ``context``?"""
        tokens = context.tokens
        if rule.kind == "current_token":
            return tokens[t] == rule.token
        if rule.kind == "previous_token":
            return t > 0 and tokens[t - 1] == rule.token
        if rule.kind == "induction":
            n = INDUCTION_MATCH
            gram = tokens[t - n + 1 : t + 1]
            if t < n - 1 or (self.boundary is not None and self.boundary in gram):
                return False
            return any(tokens[s - n + 1 : s + 1] == gram for s in range(n - 1, t))
        labels = labels_of(context).get(rule.kind)
        return labels is not None and labels[t] == rule.group

    def detect(self, explanation: Explanation, contexts: Sequence[Context]) -> list[bool | None]:
        rule = parse(explanation.text)
        if rule is None:
            return [None] * len(contexts)
        return [any(self.holds(rule, c, t) for t in range(len(c.tokens))) for c in contexts]

    def fuzz(self, explanation: Explanation, contexts: Sequence[Context]) -> list[bool | None]:
        rule = parse(explanation.text)
        if rule is None:
            return [None] * len(contexts)
        return [self.holds(rule, c, c.marked) for c in contexts]
