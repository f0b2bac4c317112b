"""The rule-based explainer and judge against planted answers: each rule fires on its planted case and
not on a near miss; a correct explanation detects its feature, a shuffled one scores at chance."""

from __future__ import annotations

import random

import pytest

from crosstime.interpret.contracts import Context, Explanation, FeatureEvidence
from crosstime.interpret.rules import LADDER, RuleExplainer, RuleJudge, parse
from crosstime.interpret.scoring import balanced_accuracy, score, shuffled


def ctx(words: str, marked: int = -1, acts=None, **labels) -> Context:
    tokens = tuple(" " + w for w in words.split())
    marked = marked % len(tokens)
    acts = acts or tuple(1.0 if t == marked else 0.0 for t in range(len(tokens)))
    return Context(tokens, tuple(acts), marked, tuple((k, tuple(v)) for k, v in labels.items()))


def explain(kind: str, top: list[Context], feature: int = 0) -> Explanation:
    return RuleExplainer({feature: kind}).explain([FeatureEvidence(feature, None, tuple(top), (), ())])[0]


def test_current_token_planted_and_near_miss():
    e = explain("current_token", [ctx("the cat runs", 1), ctx("a cat", 1), ctx("the dog", 1)])
    assert e.text == 'the current token is " cat"' and e.complexity == 1
    judge = RuleJudge()
    assert judge.detect(e, [ctx("my cat sleeps"), ctx("my cats sleep")]) == [True, False]
    assert judge.fuzz(e, [ctx("my cat sleeps", 1), ctx("my cat sleeps", 2)]) == [True, False]


def test_previous_token_planted_and_near_miss():
    e = explain("previous_token", [ctx("the cat", 1), ctx("the dog", 1)])
    assert e.text == 'the previous token is " the"' and e.complexity == 2
    # near miss: " the" is the last token, so no token follows it
    assert RuleJudge().detect(e, [ctx("see the man"), ctx("see a man the")]) == [True, False]
    assert RuleJudge().fuzz(e, [ctx("see the man", 2), ctx("see the man", 1)]) == [True, False]


def test_induction_planted_near_miss_and_boundary():
    e = explain("induction", [ctx("a b c x a b c")])
    assert e.complexity == 3 and parse(e.text).kind == "induction"
    judge = RuleJudge(boundary=" <bos>")
    planted, near = ctx("a b c x a b c"), ctx("a b c x a b d")
    assert judge.detect(e, [planted, near]) == [True, False]
    assert judge.fuzz(e, [planted, ctx("a b c x a b c", 5)]) == [True, False]
    assert judge.detect(e, [ctx("<bos> a b x <bos> a b")]) == [False]  # n-grams with the boundary never count


@pytest.mark.parametrize("label, group, near", [("attractor", 1, 0), ("subject_end", 1, 0), ("subject_number", 2, 1)])
def test_grammar_labels_planted_and_near_miss(label, group, near):
    top = [ctx("the keys of the cabinet", 3, **{label: [0, 0, 0, group, 0]})]
    e = explain(label, top)
    assert e.complexity == LADDER[label] and parse(e.text).group == group
    planted = ctx("the keys of the cabinet", 3, **{label: [0, 0, 0, group, group]})
    missed = ctx("the keys of the cabinet", 3, **{label: [near, near, near, near, -1]})
    unlabelled = ctx("the keys of the cabinet", 3)
    assert RuleJudge().detect(e, [planted, missed, unlabelled]) == [True, False, False]
    assert RuleJudge().fuzz(e, [planted, ctx("a b c d e", 0, **{label: [0, group, 0, 0, 0]})]) == [True, False]


def test_subject_number_names_the_majority_group():
    top = [ctx("the dogs run", 1, subject_number=[2, 2, 0]), ctx("the dog runs", 1, subject_number=[1, 1, 0]),
           ctx("some dogs run", 1, subject_number=[2, 2, 0])]
    assert explain("subject_number", top).text.startswith("inside a plural subject")


def test_untyped_feature_and_unparsable_explanation():
    assert explain("other", [ctx("a b")]).text == "" and explain("other", [ctx("a b")]).complexity is None
    vague = Explanation(0, None, "fires on animals", 2, "gpt")
    assert RuleJudge().detect(vague, [ctx("a cat")]) == [None]
    assert RuleJudge().fuzz(vague, [ctx("a cat")]) == [None]


def test_balanced_accuracy_by_hand():
    # answered: (T,T) tp, (T,F) fp, (F,F) tn; the None is left out: TPR 1/1, TNR 1/2
    assert balanced_accuracy([True, True, False, None], [True, False, False, True]) == (0.75, 1, 2)
    assert balanced_accuracy([True, False], [True, True]) == (None, 2, 0)


def _world(n_features: int, seed: int) -> tuple[list[FeatureEvidence], list[Explanation]]:
    """Feature i fires exactly on the word w_i; contexts of 8 random words from 12."""
    rng = random.Random(seed)
    vocab = [f"w{j}" for j in range(12)]

    def context(feature_word: str, fire: bool) -> Context:
        words = [rng.choice([w for w in vocab if w != feature_word]) for _ in range(8)]
        if fire:
            words[rng.randrange(8)] = feature_word
        acts = [1.0 if w == feature_word else 0.0 for w in words]
        marked = acts.index(1.0) if fire else rng.randrange(8)
        return Context(tuple(" " + w for w in words), tuple(acts), marked)

    evidence = [FeatureEvidence(i, None, tuple(context(vocab[i], True) for _ in range(5)),
                                tuple(context(vocab[i], True) for _ in range(20)),
                                tuple(context(vocab[i], False) for _ in range(20))) for i in range(n_features)]
    return evidence, RuleExplainer({i: "current_token" for i in range(n_features)}).explain(evidence)


def test_correct_explanations_detect_and_shuffled_ones_score_at_chance():
    evidence, explanations = _world(10, seed=1)
    assert [e.text for e in explanations] == [f'the current token is " w{i}"' for i in range(10)]
    judge = RuleJudge()
    own = [score(judge, e, ev) for e, ev in zip(explanations, evidence)]
    assert all(s.detection == 1.0 and s.fuzzing == 1.0 for s in own)
    other = shuffled(explanations, seed=0)
    assert all(a.text != b.text and a.feature == b.feature for a, b in zip(other, explanations))
    chance = [score(judge, e, ev) for e, ev in zip(other, evidence)]
    mean_detection = sum(s.detection for s in chance) / len(chance)
    mean_fuzzing = sum(s.fuzzing for s in chance) / len(chance)
    assert 0.4 < mean_detection < 0.6 and 0.4 < mean_fuzzing < 0.6
