"""The interpret stage's contracts: what an explainer and a judge are given and return.

Two families implement them: the rule-based ones (offline, from the toy world's own labels:
:mod:`crosstime.interpret.rules`) and the LLM ones (:mod:`crosstime.interpret.llm`, any
OpenAI-compatible endpoint or a local ``transformers`` chat model). The stage
(:mod:`crosstime.interpret.work`) gathers the evidence, calls an explainer, then scores each
explanation with a judge on held-out contexts the explainer did not see.

Shapes: a context is a window of ``T`` tokens; ``activations`` holds the feature's activation at
each of the ``T`` tokens (0 where it does not fire), in the same view (joint or one checkpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

COMPLEXITY_LEVELS = (1, 2, 3, 4, 5)  # the second paper's 1-5 rubric (docs/interpret.md)


@dataclass(frozen=True)
class Context:
    """One window of text: ``tokens`` [T] (decoded strings) and the feature's ``activations`` [T].

    ``marked`` is the position the evidence was taken at (the maximum for a top context); for a
    non-activating context it is the position sampled."""

    tokens: tuple[str, ...]
    activations: tuple[float, ...]
    marked: int
    # The series' own token labels of the window, ``((property, (group per token, ...)), ...)`` (the toy
    # world's grammar labels, taken from the whole context; -1 unlabelled), for the rule-based judge;
    # empty where the series has no labeller. An LLM is never shown them.
    labels: tuple[tuple[str, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class FeatureEvidence:
    """What one feature fires on in one view (``checkpoint`` None = the joint view).

    ``top``: the strongest contexts (shown to the explainer); ``weaker``: contexts drawn at lower
    activation quantiles; ``inactive``: contexts where the feature does not fire."""

    feature: int
    checkpoint: str | None
    top: tuple[Context, ...]
    weaker: tuple[Context, ...]
    inactive: tuple[Context, ...]


@dataclass(frozen=True)
class Explanation:
    """An explanation of one feature in one view. ``complexity`` is 1-5 or None when the explainer
    gave none (recorded, never guessed); ``source`` names what wrote it (``rules`` or the model id)."""

    feature: int
    checkpoint: str | None
    text: str
    complexity: int | None
    source: str


class Explainer(Protocol):
    """Writes one explanation per evidence item, in order (a batch, so an LLM explainer can run
    its requests concurrently)."""

    def explain(self, evidence: Sequence[FeatureEvidence]) -> list[Explanation]: ...


class Judge(Protocol):
    """Decides, from an explanation alone, which contexts the feature fires on.

    ``detect``: for each context, does the feature fire anywhere in it (delphi's detection)?
    ``fuzz``: for each context, with the token at ``marked`` highlighted, is the highlighted token
    one the feature fires on (delphi's fuzzing: half the highlights are moved to wrong tokens)?
    One ``bool | None`` per context, in order; ``None`` = no usable answer (recorded as such)."""

    def detect(self, explanation: Explanation, contexts: Sequence[Context]) -> list[bool | None]: ...

    def fuzz(self, explanation: Explanation, contexts: Sequence[Context]) -> list[bool | None]: ...
