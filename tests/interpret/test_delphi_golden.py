"""crosstime's judge prompts against the prompts delphi's own code writes (tests/fixtures/delphi/: made by
eai-delphi 0.1.3's prompt modules, see PROVENANCE.md): every message, system, few-shot and the examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crosstime.interpret.contracts import Context
from crosstime.interpret.prompts import detection_messages, fuzz_messages

GOLDEN = json.loads((Path(__file__).parents[1] / "fixtures" / "delphi" / "prompts.json").read_text(encoding="utf-8"))


def contexts(texts: list[str]) -> list[Context]:
    """Contexts whose tokens are the words of ``text`` (with their leading spaces); the token inside
    ``<<`` ``>>`` is the marked one."""
    out = []
    for text in texts:
        words = text.replace("<<", "").replace(">>", "").split(" ")
        tokens = (words[0], *(" " + w for w in words[1:]))
        marked = next((i for i, t in enumerate(tokens) if f"<<{t}>>" in text or (i == 0 and text.startswith("<<"))), 0)
        out.append(Context(tokens=tokens, activations=tuple(1.0 if i == marked else 0.0 for i in range(len(tokens))),
                           marked=marked))
    return out


@pytest.mark.parametrize("task,build", [("detection", detection_messages), ("fuzz", fuzz_messages)])
def test_judge_prompts_are_delphis(task, build):
    ours = build(GOLDEN["explanation"], contexts(GOLDEN["texts"][task]))
    assert ours == GOLDEN[task]


def test_a_changed_explanation_is_not_delphis_prompt():  # the near miss: the comparison can fail
    ours = detection_messages(GOLDEN["explanation"] + ".", contexts(GOLDEN["texts"]["detection"]))
    assert ours[:-1] == GOLDEN["detection"][:-1] and ours[-1] != GOLDEN["detection"][-1]
