"""The LLM explainer's and judge's prompts, and how their replies are read.

Ported from EleutherAI's delphi (``eai-delphi`` 0.1.3 on PyPI, MIT): the explainer is delphi's
default explainer (``delphi/explainers/default/prompts.py``: ``SYSTEM`` and the three few-shot
examples with activations; ``delphi/explainers/explainer.py``: ``_highlight``,
``_join_activations``, ``parse_explanation``), the judge its detection and fuzzing scorers
(``delphi/scorers/classifier/prompts/detection_prompt.py`` and ``fuzz_prompt.py``, verbatim;
``delphi/scorers/classifier/classifier.py``: ``_build_prompt`` and ``_parse``). Where the text
differs from delphi's, a comment says why; docs/interpret-llm.md lists every difference.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

from crosstime.interpret.backends import Message
from crosstime.interpret.contracts import COMPLEXITY_LEVELS, Context, FeatureEvidence

HIGHLIGHT_THRESHOLD = 0.3  # delphi's Explainer.threshold: a token is marked above 0.3 x its context's maximum
MAX_LISTED_ACTIVATIONS = 11  # delphi's _join_activations lists at most 11 tokens per example ("> 10" then break)

# Not in delphi: the second paper (Evolution of Concepts in LM Pre-Training) scores complexity 1-5 with
# Claude Sonnet 4 but does not print its rubric; this one is ours, the levels of docs/interpret.md's rubric
# (the rule explainer's ladder: current token 1, previous token 2, induction 3, a grammatical role 4, a role
# across a nested phrase 5) in words an LLM can apply to any text.
COMPLEXITY_RUBRIC = """Rate the complexity of the pattern on a scale of 1 to 5:
1 - a single token or a fixed set of surface forms, whatever the context (e.g. the token "er", the word "the", digits).
2 - a simple local pattern: a token in a fixed position relative to another, or a short n-gram (e.g. "of" after "Director", the word after "the").
3 - a pattern over the context that does not depend on meaning: repetition or copying of earlier text, position in the text.
4 - a syntactic or semantic role: a part of speech in context, a grammatical function, a meaning category or topic (e.g. nouns for containers, the subject of a clause).
5 - an abstract or long-range property: agreement or reference across intervening material, discourse structure, sentiment or intent of a passage."""

# delphi SYSTEM (explainers/default/prompts.py, 0.1.3) with its last guideline changed: delphi ends the reply
# on the [EXPLANATION]: line; we ask for a [COMPLEXITY]: line after it (the rubric), so one request gives both.
EXPLAINER_SYSTEM = """You are a meticulous AI researcher conducting an important investigation into patterns found in language. Your task is to analyze text and provide an explanation that thoroughly encapsulates possible patterns found in it.
Guidelines:

You will be given a list of text examples on which special words are selected and between delimiters like <<this>>. If a sequence of consecutive tokens all are important, the entire sequence of tokens will be contained between delimiters <<just like this>>. How important each token is for the behavior is listed after each example in parentheses.

- Try to produce a concise final description. Simply describe the text latents that are common in the examples, and what patterns you found.
- If the examples are uninformative, you don't need to mention them. Don't focus on giving examples of important tokens, but try to summarize the patterns found in the examples.
- Do not mention the marker tokens (<< >>) in your explanation.
- Do not make lists of possible explanations. Keep your explanations short and concise.
- The second-to-last line of your response must be the formatted explanation, using [EXPLANATION]:
- The last line of your response must be the complexity of the pattern, using [COMPLEXITY]: and one number from 1 to 5.

""" + COMPLEXITY_RUBRIC + "\n"

# delphi EXAMPLE_1/2/3_ACTIVATIONS and EXAMPLE_1/2/3_EXPLANATION (explainers/default/prompts.py, 0.1.3),
# verbatim; the [COMPLEXITY]: lines are ours (our rubric applied to delphi's explanations).
EXPLAINER_FEW_SHOT: tuple[tuple[str, str], ...] = (
    ("""
Example 1:  and he was <<over the moon>> to find
Activations: ("over", 5), (" the", 6), (" moon", 9)
Example 2:  we'll be laughing <<till the cows come home>>! Pro
Activations: ("till", 5), (" the", 5), (" cows", 8), (" come", 8), (" home", 8)
Example 3:  thought Scotland was boring, but really there's more <<than meets the eye>>! I'd
Activations: ("than", 5), (" meets", 7), (" the", 6), (" eye", 8)
""", """
[EXPLANATION]: Common idioms in text conveying positive sentiment.
[COMPLEXITY]: 5
"""),
    ("""
Example 1:  a river is wide but the ocean is wid<<er>>. The ocean
Activations: ("er", 8)
Example 2:  every year you get tall<<er>>," she
Activations: ("er", 2)
Example 3:  the hole was small<<er>> but deep<<er>> than the
Activations: ("er", 9), ("er", 9)
""", """
[EXPLANATION]: The token "er" at the end of a comparative adjective describing size.
[COMPLEXITY]: 2
"""),
    ("""
Example 1:  something happening inside my <<house>>", he
Activations: ("house", 7)
Example 2:  presumably was always contained in <<a box>>", according
Activations: ("a", 5), ("box", 9)
Example 3:  people were coming into the <<smoking area>>".

However he
Activations: ("smoking", 2), ("area", 4)
Example 4:  Patrick: "why are you getting in the << way?>>" Later,
Activations: ("way", 4), ("?", 2)
""", """
[EXPLANATION]: Nouns representing a distinct objects that contains something, sometimes preciding a quotation mark.
[COMPLEXITY]: 4
"""),
)

# delphi detection_prompt.py and fuzz_prompt.py (scorers/classifier/prompts/, 0.1.3), verbatim.
DETECTION_SYSTEM = """You are an intelligent and meticulous linguistics researcher.

You will be given a certain latent of text, such as "male pronouns" or "text with negative sentiment".

You will then be given several text examples. Your task is to determine which examples possess the latent.

For each example in turn, return 1 if the sentence is correctly labeled or 0 if the tokens are mislabeled. You must return your response in a valid Python list. Do not return anything else besides a Python list.
"""

DETECTION_FEW_SHOT: tuple[tuple[str, str], ...] = (
    ("""Latent explanation: Words related to American football positions, specifically the tight end position.

Test examples:

Example 0:<|endoftext|>Getty ImagesĊĊPatriots tight end Rob Gronkowski had his bossâĢĻ
Example 1: names of months used in The Lord of the Rings:ĊĊâĢľâĢ¦the
Example 2: Media Day 2015ĊĊLSU defensive end Isaiah Washington (94) speaks to the
Example 3: shown, is generally not eligible for ads. For example, videos about recent tragedies,
Example 4: line, with the left side âĢĶ namely tackle Byron Bell at tackle and guard Amini
""", "[1,0,0,0,1]"),
    ("""Latent explanation: The word "guys" in the phrase "you guys".

Test examples:

Example 0: enact an individual health insurance mandate?âĢĿ, Pelosi's response was to dismiss both
Example 1: birth control access<|endoftext|> but I assure you women in Kentucky aren't laughing as they struggle
Example 2: du Soleil Fall Protection Program with construction requirements that do not apply to theater settings because
Example 3:Ċ<|endoftext|> distasteful. Amidst the slime lurk bits of Schadenfre
Example 4: the<|endoftext|>ľI want to remind you all that 10 days ago (director Massimil
""", "[0,0,0,0,0]"),
    ("""Latent explanation: "of" before words that start with a capital letter.

Test examples:

Example 0: climate, TomblinâĢĻs Chief of Staff Charlie Lorensen said.Ċ
Example 1: no wonderworking relics, no true Body and Blood of Christ, no true Baptism
Example 2:ĊĊDeborah Sathe, Head of Talent Development and Production at Film London,
Example 3:ĊĊIt has been devised by Director of Public Prosecutions (DPP)
Example 4: and fair investigation not even include the Director of Athletics? Â· Finally, we believe the
""", "[1,1,1,1,1]"),
)

FUZZ_SYSTEM = """You are an intelligent and meticulous linguistics researcher.

You will be given a certain latent of text, such as "male pronouns" or "text with negative sentiment". You will be given a few examples of text that contain this latent. Portions of the sentence which strongly represent this latent are between tokens << and >>.

Some examples might be mislabeled. Your task is to determine if every single token within << and >> is correctly labeled. Consider that all provided examples could be correct, none of the examples could be correct, or a mix. An example is only correct if every marked token is representative of the latent

For each example in turn, return 1 if the sentence is correctly labeled or 0 if the tokens are mislabeled. You must return your response in a valid Python list. Do not return anything else besides a Python list.
"""

FUZZ_FEW_SHOT: tuple[tuple[str, str], ...] = (
    ("""Latent explanation: Words related to American football positions, specifically the tight end position.

Test examples:

Example 0:<|endoftext|>Getty ImagesĊĊPatriots<< tight end>> Rob Gronkowski had his bossâĢĻ
Example 1: posted<|endoftext|>You should know this<< about>> offensive line coaches: they are large, demanding<< men>>
Example 2: Media Day 2015ĊĊLSU<< defensive>> end Isaiah Washington (94) speaks<< to the>>
Example 3:<< running backs>>," he said. .. Defensive<< end>> Carroll Phillips is improving and his injury is
Example 4:<< line>>, with the left side âĢĶ namely<< tackle>> Byron Bell at<< tackle>> and<< guard>> Amini
""", "[1,0,0,1,1]"),
    ("""Latent explanation: The word "guys" in the phrase "you guys".

Test examples:

Example 0: if you are<< comfortable>> with it. You<< guys>> support me in many other ways already and
Example 1: birth control access<|endoftext|> but I assure you<< women>> in Kentucky aren't laughing as they struggle
Example 2:âĢĻs gig! I hope you guys<< LOVE>> her, and<< please>> be nice,
Example 3:American, told<< Hannity>> that âĢľyou<< guys>> are playing the race card.âĢĿ
Example 4:<< the>><|endoftext|>ľI want to<< remind>> you all that 10 days ago (director Massimil
""", "[0,0,0,0,0]"),
    ("""Latent explanation: "of" before words that start with a capital letter.

Test examples:

Example 0: climate, TomblinâĢĻs Chief<< of>> Staff Charlie Lorensen said.Ċ
Example 1: no wonderworking relics, no true Body and Blood<< of>> Christ, no true Baptism
Example 2:ĊĊDeborah Sathe, Head<< of>> Talent Development and Production at Film London,
Example 3:ĊĊIt has been devised by Director<< of>> Public Prosecutions (DPP)
Example 4: and fair investigation not even include the Director<< of>> Athletics? Â· Finally, we believe the
""", "[1,1,1,1,1]"),
)

# delphi's GENERATION_PROMPT (both scorer prompt files), verbatim.
JUDGE_USER = """Latent explanation: {explanation}

Text examples:

{examples}
"""


def _token(text: str) -> str:
    """A token as shown: a newline as ``\\n`` (not in delphi: one example stays on one line, so the
    ``Example i:`` lines cannot be confused; delphi's GPT-2 tokens show ``Ċ`` for the same reason)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def highlight(context: Context, threshold: float = HIGHLIGHT_THRESHOLD) -> str:
    """delphi's ``Explainer._highlight``: runs of tokens above ``threshold`` x the context's maximum
    between ``<<`` and ``>>``."""
    top = max(context.activations) * threshold
    out, inside = [], False
    for token, act in zip(context.tokens, context.activations):
        if (act > top) != inside:
            out.append("<<" if not inside else ">>")
            inside = not inside
        out.append(_token(token))
    return "".join(out) + (">>" if inside else "")


def listed_activations(context: Context, feature_max: float, threshold: float = HIGHLIGHT_THRESHOLD) -> str:
    """delphi's ``_join_activations``: ``Activations: ("tok" : n), ...`` for tokens above the threshold,
    ``n`` = ceil(10 x activation / the feature's maximum over its shown contexts), clamped to 0..10
    (delphi's ``normalize_activations``)."""
    top = max(context.activations) * threshold
    listed = [(token, act) for token, act in zip(context.tokens, context.activations) if act > top]
    scale = 10.0 / max(feature_max, 1e-6)
    parts = [f'("{_token(token)}" : {min(10, max(0, math.ceil(act * scale)))}), '
             for token, act in listed[:MAX_LISTED_ACTIVATIONS]]
    return "Activations: " + "".join(parts)


def explainer_messages(evidence: FeatureEvidence) -> list[Message]:
    """The explainer's chat: system, delphi's three few-shot pairs, then ``evidence.top`` highlighted,
    each followed by its activations (delphi's default explainer with ``activations=True``).

    Not in delphi: each example is numbered ``Example i:`` as in the few-shot examples (delphi's own
    prompt builder leaves its real examples unnumbered). The checkpoint is not named, so a feature's
    per-checkpoint explanations come from the same prompt and differ only by their evidence."""
    feature_max = max(max(c.activations) for c in evidence.top)
    lines = []
    for i, context in enumerate(evidence.top, start=1):
        lines += [f"Example {i}: {highlight(context)}", listed_activations(context, feature_max)]
    messages = [{"role": "system", "content": EXPLAINER_SYSTEM}]
    for user, assistant in EXPLAINER_FEW_SHOT:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages + [{"role": "user", "content": "\n" + "\n".join(lines) + "\n"}]


_EXPLANATION = re.compile(r"\[EXPLANATION\]:[ \t]*(.*)")
_COMPLEXITY = re.compile(r"\[COMPLEXITY\]:\s*(\S*)")


def parse_explanation(reply: str) -> tuple[str | None, int | None, list[str]]:
    """The explanation text (the last ``[EXPLANATION]:`` line; None when absent), its complexity
    (the last ``[COMPLEXITY]:`` value when it is one of 1-5; else None) and what was missing or wrong."""
    issues: list[str] = []
    texts = [m.strip() for m in _EXPLANATION.findall(reply) if m.strip()]
    if not texts:
        issues.append("no [EXPLANATION]: line in the reply")
    scores = _COMPLEXITY.findall(reply)
    complexity = None
    if not scores:
        issues.append("no [COMPLEXITY]: line in the reply")
    elif scores[-1].strip(".").isdigit() and int(scores[-1].strip(".")) in COMPLEXITY_LEVELS:
        complexity = int(scores[-1].strip("."))
    else:
        issues.append(f"complexity {scores[-1]!r} is not one of 1-5")
    return (texts[-1] if texts else None), complexity, issues


def _judge_messages(system: str, few_shot: Sequence[tuple[str, str]], explanation: str, shown: Sequence[str]) -> list[Message]:
    """delphi's ``Classifier._build_prompt``: ``Example i: text`` lines, numbered from 0, under the explanation."""
    examples = "\n".join(f"Example {i}: {text}" for i, text in enumerate(shown))
    messages = [{"role": "system", "content": system}]
    for user, assistant in few_shot:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages + [{"role": "user", "content": JUDGE_USER.format(explanation=explanation, examples=examples)}]


def detection_messages(explanation: str, contexts: Sequence[Context]) -> list[Message]:
    """Detection: the plain text of each context (delphi: no highlight)."""
    return _judge_messages(DETECTION_SYSTEM, DETECTION_FEW_SHOT, explanation,
                           ["".join(_token(t) for t in c.tokens) for c in contexts])


def fuzz_messages(explanation: str, contexts: Sequence[Context]) -> list[Message]:
    """Fuzzing: each context with the token at ``marked`` between ``<<`` and ``>>`` (the stage moves half
    the marks to tokens the feature does not fire on; delphi marks runs above a threshold instead)."""
    shown = ["".join(f"<<{_token(t)}>>" if i == c.marked else _token(t) for i, t in enumerate(c.tokens))
             for c in contexts]
    return _judge_messages(FUZZ_SYSTEM, FUZZ_FEW_SHOT, explanation, shown)


def parse_verdicts(reply: str, count: int) -> tuple[list[bool] | None, str]:
    """delphi's ``Classifier._parse``: the first ``[...]`` in the reply as a JSON list of ``count``
    0/1 (or true/false) values. None and the reason when it is not one (delphi logs and gives None)."""
    match = re.search(r"\[.*?\]", reply, re.DOTALL)
    if match is None:
        return None, "no [...] list in the reply"
    try:
        values = json.loads(match.group(0))
    except json.JSONDecodeError as err:
        return None, f"the list is not valid JSON ({err.msg})"
    if len(values) != count:
        return None, f"the list has {len(values)} values for {count} examples"
    if any(v not in (0, 1) or isinstance(v, float) for v in values):  # True/False equal 1/0 and pass
        return None, "the list holds values other than 0 and 1"
    return [bool(v) for v in values], ""
