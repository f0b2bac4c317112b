"""How the LLM prompts show the evidence and how replies are read (no server)."""

from __future__ import annotations

from pathlib import Path

from crosstime.interpret import prompts
from crosstime.interpret.backends import parse_retry_after
from crosstime.interpret.cache import request_key
from crosstime.interpret.contracts import Context, FeatureEvidence
from crosstime.interpret.prompts import (
    detection_messages,
    explainer_messages,
    fuzz_messages,
    highlight,
    listed_activations,
    parse_explanation,
    parse_verdicts,
)


def test_highlight_marks_runs_above_three_tenths_of_the_maximum():
    context = Context(tokens=("a", " b", " c", " d", "\n", "e"), activations=(0.0, 10.0, 3.5, 2.9, 9.0, 4.0), marked=1)
    assert highlight(context) == "a<< b c>> d<<\\ne>>"  # 3.5 > 3 is in, 2.9 is out; a newline shown as \n


def test_listed_activations_scale_to_the_feature_maximum():
    context = Context(tokens=("x", " y", " z"), activations=(0.0, 4.0, 2.0), marked=1)
    # ceil(10 * a / 8): 4 -> 5, 2 -> 3 (delphi's normalisation, the feature's maximum 8 over its contexts)
    assert listed_activations(context, feature_max=8.0) == 'Activations: (" y" : 5), (" z" : 3), '


def test_explainer_prompt_numbers_each_top_context():
    top = (Context(("I", " ran"), (0.0, 2.0), 1), Context(("we", " ran"), (0.0, 1.0), 1))
    messages = explainer_messages(FeatureEvidence(5, "step8", top, (), ()))
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert messages[-1]["content"] == ('\nExample 1: I<< ran>>\nActivations: (" ran" : 10), \n'
                                       'Example 2: we<< ran>>\nActivations: (" ran" : 5), \n')
    assert "step8" not in "".join(m["content"] for m in messages)  # every view gets the same prompt


def test_judge_prompts_show_plain_and_marked_text():
    contexts = [Context(("A", " b"), (0.0, 1.0), 0), Context(("C", " d"), (0.0, 0.0), 1)]
    detect = detection_messages("letters", contexts)[-1]["content"]
    fuzz = fuzz_messages("letters", contexts)[-1]["content"]
    assert detect == "Latent explanation: letters\n\nText examples:\n\nExample 0: A b\nExample 1: C d\n"
    assert fuzz == "Latent explanation: letters\n\nText examples:\n\nExample 0: <<A>> b\nExample 1: C<< d>>\n"


def test_parse_explanation():
    assert parse_explanation("thinking...\n[EXPLANATION]: plural nouns\n[COMPLEXITY]: 3") == ("plural nouns", 3, [])
    assert parse_explanation("[EXPLANATION]: x\n[COMPLEXITY]: 4.") == ("x", 4, [])
    assert parse_explanation("[EXPLANATION]: x") == ("x", None, ["no [COMPLEXITY]: line in the reply"])
    assert parse_explanation("[EXPLANATION]: x\n[COMPLEXITY]: 7") == ("x", None, ["complexity '7' is not one of 1-5"])
    assert parse_explanation("I cannot tell.\n[COMPLEXITY]: 2") == (None, 2, ["no [EXPLANATION]: line in the reply"])


def test_parse_verdicts():
    assert parse_verdicts("[1, 0, 1]", 3) == ([True, False, True], "")
    assert parse_verdicts("Answer: [true, false]", 2) == ([True, False], "")
    assert parse_verdicts("[1, 0]", 3) == (None, "the list has 2 values for 3 examples")
    assert parse_verdicts("[1, 0, yes]", 3)[0] is None
    assert parse_verdicts("[1, 2]", 2) == (None, "the list holds values other than 0 and 1")
    assert parse_verdicts("[0.5, 1]", 2)[0] is None
    assert parse_verdicts("one, zero", 2) == (None, "no [...] list in the reply")


def test_retry_after_seconds_or_date():
    assert parse_retry_after("2") == 2.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


def test_request_key_changes_with_model_messages_and_params():
    messages = [{"role": "user", "content": "hi"}]
    key = request_key("m", messages, {"temperature": 0.0})
    assert key == request_key("m", list(messages), {"temperature": 0.0})
    assert len({key, request_key("n", messages, {"temperature": 0.0}), request_key("m", messages, {"temperature": 1.0}),
                request_key("m", [{"role": "user", "content": "hi!"}], {"temperature": 0.0})}) == 4


def test_the_docs_show_every_prompt_verbatim():
    doc = (Path(__file__).parents[2] / "docs" / "interpret-llm.md").read_text(encoding="utf-8")
    texts = [prompts.EXPLAINER_SYSTEM, prompts.DETECTION_SYSTEM, prompts.FUZZ_SYSTEM, prompts.JUDGE_USER,
             prompts.COMPLEXITY_RUBRIC]
    for few_shot in (prompts.EXPLAINER_FEW_SHOT, prompts.DETECTION_FEW_SHOT, prompts.FUZZ_FEW_SHOT):
        texts += [text for pair in few_shot for text in pair]
    missing = [text[:60] for text in texts if f"```text\n{text.strip(chr(10))}\n```" not in doc]
    assert missing == []
