"""The toy grammar's parser and labels (crosstime.toy.labels) against the generator and by hand."""

from __future__ import annotations

import random

import numpy as np

from crosstime.probes import copy_document, induction_document
from crosstime.toy.grammar import PROBE_POOL, Agreement, Grammar, make_pairs
from crosstime.toy.labels import (
    context_labels,
    line_labels,
    parse,
    parse_agreements,
    parse_all,
)


def test_parser_recovers_the_generators_agreements():
    """6,000 generated sentences: the generator's agreements are always among the parses, and equal
    the parse wherever it is unique; lines with two derivations are rare (the documented ambiguity)."""
    ambiguous = 0
    total = 0
    for seed in (0, 1, 2):
        grammar = Grammar(seed=seed)
        for _ in range(2000):
            s = grammar.sentence()
            found = [list(p.agreements) for p in parse_all(s.words)]
            assert s.agreements in found, s.text
            total += 1
            if len(found) == 1:
                assert parse_agreements(s.words) == s.agreements, s.text
            else:
                ambiguous += 1
                assert len(found) == 2 and "and" in s.words, s.text
    assert total == 6000 and ambiguous < 0.005 * total


def test_pair_sentences_parse_and_their_ungrammatical_twins_do_not():
    """Minimal pairs: the good sentence parses with the verb at the prefix's end; the bad one (verb
    number swapped) is not a grammar sentence."""
    for pair_type in ("simple_agreement", "pp_attractor", "rc_attractor", "irregular_plural"):
        for row in make_pairs(pair_type, n_pairs=100, seed=3):
            good = row["sentence_good"][:-1].split() + ["."]
            bad = row["sentence_bad"][:-1].split() + ["."]
            verb_at = len(row["one_prefix_prefix"].split())
            found = parse(good)
            assert found is not None and any(a.verb == verb_at for a in found.agreements), row["sentence_good"]
            assert parse(bad) is None, row["sentence_bad"]


def test_probe_documents_are_not_grammar_sentences():
    rng = random.Random(0)
    for _ in range(2000):
        assert parse(copy_document(PROBE_POOL, rng) + ["."]) is None
        assert parse(induction_document(PROBE_POOL, rng) + ["."]) is None
    assert parse(["the", "dog", "runs"]) is None  # no full stop: cut line
    assert parse(["dog", "runs", "."]) is None  # starts mid-sentence


def _labels(text: str):
    words = text.split()
    found = parse(words)
    assert found is not None
    return found, {k: v.tolist() for k, v in line_labels(words, found).items()}


def test_labels_of_a_pp_attractor_sentence_by_hand():
    #           0    1     2     3    4    5    6
    found, lab = _labels("the dogs near the cat run .")
    assert list(found.agreements) == [Agreement(5, (1,))]
    assert lab["subject_number"] == [0, 2, 2, 2, 2, 0, 0]  # dogs … cat carry plural
    assert lab["attractor"] == [0, 0, 1, 1, 1, 0, 0]  # the PP
    assert lab["subject_end"] == [0, 0, 0, 0, 1, 0, 0]  # right before "run"


def test_labels_of_an_object_relative_and_a_coordinated_clause_by_hand():
    #           0   1   2    3   4    5   6  7     8   9 10  11     12
    found, lab = _labels("the man that the dogs see is happy and a cat sleeps .")
    assert list(found.agreements) == [Agreement(5, (4,)), Agreement(6, (1,)), Agreement(11, (10,))]
    assert found.roles == ("relative", "clause", "clause")
    # man … see: singular (for "is"), but "dogs" carries plural: the next verb ("see") needs it
    assert lab["subject_number"] == [0, 1, 1, 1, 2, 1, 0, 0, 0, 0, 1, 0, 0]
    assert lab["attractor"] == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]  # the relative clause
    assert lab["subject_end"] == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0]  # before see, is, sleeps


def test_coordinated_verb_phrases_add_no_subject_span():
    found, lab = _labels("the dog often runs and sleeps .")
    assert list(found.agreements) == [Agreement(3, (1,)), Agreement(5, (1,))]
    assert found.roles == ("clause", "coordinated")
    assert lab["subject_number"] == [0, 1, 1, 0, 0, 0, 0]
    assert lab["subject_end"] == [0, 0, 1, 0, 0, 0, 0]  # the adverb is right before the verb
    assert lab["attractor"] == [0] * 7


def test_context_labels_only_label_complete_lines():
    """A context: a fragment after the first <bos>, a sentence, a probe document, a cut sentence."""
    from crosstime.toy import make_tokenizer

    tok = make_tokenizer()
    id_to_word = tok.convert_ids_to_tokens(list(range(len(tok))))
    bos = tok.bos_token_id
    fragment = "cat runs ."
    sentence = "the dogs near the cat run ."
    probe = "dog again dog cat ."
    cut = "the dog"
    ids = []
    for text in (fragment, sentence, probe, cut):
        ids += tok(text).input_ids
    ids = np.array(ids)
    lab = context_labels(ids, id_to_word, bos)
    n_frag, n_sent, n_probe = 4, 8, 6  # with their <bos> (the tokenizer splits "." off)
    start = n_frag + 1  # the sentence's first word
    expected = [-1] * len(ids)
    expected[start:start + 7] = [0, 2, 2, 2, 2, 0, 0]
    assert lab["subject_number"].tolist() == expected
    assert (lab["attractor"][start + 2:start + 5] == 1).all()
    assert (lab["attractor"][:start] == -1).all() and (lab["attractor"][n_frag + n_sent:] == -1).all()
    assert len(ids) == n_frag + n_sent + n_probe + 3
