"""Probe pairs (induction, copy, IOI) for real tokenizers: pools, checks, the task file, the CLI.

The tokenizers are made here in a second, no download: the toy world's word-level one, a
byte-level BPE (GPT-2/Pythia style, ``Ġ``) and a SentencePiece-style BPE (Llama style, ``▁``)
trained on the packaged BLiMP sentences plus a few IOI sentences (so some names are one token).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crosstime.probes import (
    COPY_MARKER,
    IOI_NAMES,
    IOI_ORDERS,
    IOI_TEMPLATES,
    ProbeError,
    check_pairs,
    copy_pairs,
    induction_pairs,
    ioi_pairs,
    ioi_prefix,
    make_probe_rows,
    rows_jsonl,
    single_token_names,
    single_token_words,
)

BLIMP = Path(__file__).resolve().parents[2] / "src" / "crosstime" / "data" / "blimp"
TRAIN_NAMES = ("Mary", "John", "Sarah", "Tom", "Anna", "David", "James", "Paul", "Lisa", "Mark", "Kate", "Peter")


def _training_texts() -> list[str]:
    sentences = []
    for path in sorted(BLIMP.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()[:150]]
        sentences += [r["sentence_good"].lower() for r in rows]
    words = [w for s in sentences for w in s.split()]  # each word also as a text's first word
    ioi = [ioi_prefix(t, a, b, "store", "drink", "ABBA") + f" {a}"
           for t in IOI_TEMPLATES for a in TRAIN_NAMES for b in TRAIN_NAMES if a != b]
    copies = [f"{w} {COPY_MARKER} {w}" for w in words[:300]] + [COPY_MARKER] * 20  # the copy marker, one token
    return sentences + words + ioi + copies


def _train(style: str):
    """A BPE ``PreTrainedTokenizerFast`` of ``style`` "bytelevel" (Ġ) or "metaspace" (▁, Llama's fast tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token=None if style == "bytelevel" else "<unk>"))
    if style == "bytelevel":
        core.pre_tokenizer, core.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
        alphabet, special = pre_tokenizers.ByteLevel.alphabet(), ["<|endoftext|>"]
    else:
        core.pre_tokenizer, core.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
        alphabet, special = [], ["<unk>", "<s>", "</s>"]
    core.train_from_iterator(_training_texts(), trainers.BpeTrainer(
        vocab_size=1500, special_tokens=special, initial_alphabet=alphabet, show_progress=False))
    if style == "bytelevel":
        return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def bpe():
    return _train("bytelevel")


@pytest.fixture(scope="module")
def metaspace():
    return _train("metaspace")


@pytest.fixture(scope="module")
def toy_tok():
    from crosstime.toy import make_tokenizer

    return make_tokenizer()


def _words(row: dict) -> tuple[list[str], str, str]:
    return row["one_prefix_prefix"].split(" "), row["one_prefix_word_good"], row["one_prefix_word_bad"]


def _assert_minimal_pairs(rows: list[dict]) -> None:
    """No repeated prefix+answer; good and bad sentences differ in exactly their last word."""
    keys = [(r["one_prefix_prefix"], r["one_prefix_word_good"]) for r in rows]
    assert len(set(keys)) == len(keys)
    for row in rows:
        prefix, good, bad = _words(row)
        good_sentence, bad_sentence = row["sentence_good"].split(" "), row["sentence_bad"].split(" ")
        assert good_sentence == prefix + [good] and bad_sentence == prefix + [bad]
        assert good != bad


def _assert_twins(rows: list[dict]) -> None:
    """Rows 2k and 2k+1 are twins: the good answer of one is the bad answer of the other."""
    assert len(rows) % 2 == 0
    for first, second in zip(rows[::2], rows[1::2]):
        assert (first["one_prefix_word_good"], first["one_prefix_word_bad"]) == \
            (second["one_prefix_word_bad"], second["one_prefix_word_good"])
    goods = [r["one_prefix_word_good"] for r in rows]
    bads = [r["one_prefix_word_bad"] for r in rows]
    assert sorted(goods) == sorted(bads)  # balanced: every word is good exactly as often as it is bad


# -- induction and copy pairs ------------------------------------------------------------------

@pytest.mark.parametrize("tokenizer_name", ["toy_tok", "bpe", "metaspace"])
def test_induction_pairs_answer_what_followed_the_earlier_occurrence(tokenizer_name, request):
    tok = request.getfixturevalue(tokenizer_name)
    rows = induction_pairs(single_token_words(tok), 200, seed=3)
    _assert_minimal_pairs(rows)
    _assert_twins(rows)
    for row in rows:
        prefix, good, bad = _words(row)
        last = prefix[-1]
        earlier = [i for i in range(len(prefix) - 1) if prefix[i] == last]
        assert len(earlier) == 1, row  # the current word occurred once before
        assert good == prefix[earlier[0] + 1]  # … and the good answer is the word that followed it
        assert bad not in prefix
    for first, second in zip(rows[::2], rows[1::2]):
        assert _words(first)[0][-1] == _words(second)[0][-1]  # twins end on the same word


def test_copy_pairs_answer_the_word_before_the_marker(toy_tok):
    rows = copy_pairs(single_token_words(toy_tok), 200, seed=1)
    _assert_minimal_pairs(rows)
    _assert_twins(rows)
    for row in rows:
        prefix, good, _ = _words(row)
        assert prefix[-1] == COPY_MARKER and good == prefix[-2]


# -- single-token pools --------------------------------------------------------------------------

def test_single_token_words_of_the_toy_tokenizer_are_its_long_enough_words(toy_tok):
    from crosstime.toy.grammar import vocabulary

    expected = [w for w in vocabulary() if w.isalpha() and len(w) >= 3]  # a word-level vocabulary: all one token
    assert single_token_words(toy_tok) == expected
    assert single_token_words(toy_tok, min_len=2) == [w for w in vocabulary() if w.isalpha() and len(w) >= 2]
    assert single_token_words(toy_tok, limit=5) == expected[:5]


@pytest.mark.parametrize("tokenizer_name", ["bpe", "metaspace"])
def test_single_token_words_are_one_token_alone_after_a_space_and_in_a_run(tokenizer_name, request):
    tok = request.getfixturevalue(tokenizer_name)
    words = single_token_words(tok)
    assert len(words) > 100 and words == single_token_words(tok)  # deterministic
    assert len(set(words)) == len(words)
    for w in words:
        assert w.isalpha() and w.islower() and len(w) >= 3
        assert len(tok.tokenize(w)) == 1 and len(tok.tokenize(f"x {w}")) == len(tok.tokenize("x")) + 1
    assert len(tok(" ".join(words), add_special_tokens=False)["input_ids"]) == len(words)
    assert {"the", "were", "that", "these"} <= set(words)  # frequent in the training text, at its starts too
    lead = len(tok.tokenize("x"))
    split = [w for w in ("references", "legislatures", "disliked") if len(tok.tokenize(f"x {w}")) > lead + 1]
    assert split and not set(split) & set(words)  # words this small vocabulary splits are left out


def test_a_word_merged_with_its_neighbour_across_the_space_is_dropped():
    """A SentencePiece model that does not split on spaces can merge "of the" into one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "▁": 1, "o": 2, "f": 3, "t": 4, "h": 5, "e": 6, "▁of": 7, "▁the": 8, "▁o": 9, "▁t": 10,
             "▁th": 11, "▁of▁the": 12}
    merges = [("▁", "o"), ("▁o", "f"), ("▁", "t"), ("▁t", "h"), ("▁th", "e"), ("▁of", "▁the")]
    core = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>"))
    core.pre_tokenizer, core.decoder = pre_tokenizers.Metaspace(split=False), decoders.Metaspace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")
    assert [tok.tokenize(w) for w in ("of", "the", "th")] == [["▁of"], ["▁the"], ["▁th"]]  # each alone: one token
    assert tok.tokenize("of the") == ["▁of▁the"]  # … but together one token for two words
    words = single_token_words(tok, min_len=2)
    assert words == ["the", "th"]  # "of" went: in token-id order the run was "of the th"
    assert tok.tokenize(" ".join(words)) == ["▁the", "▁th"]


def test_single_token_names_are_one_token_after_a_space(bpe):
    names = single_token_names(bpe)
    assert set(TRAIN_NAMES) <= set(names) <= set(IOI_NAMES)
    assert names == [n for n in IOI_NAMES if n in names]  # IOI_NAMES' order
    for name in names:
        assert bpe.tokenize(f"to {name}")[-1] == "Ġ" + name
    assert "Christopher" not in names  # never in the training text: several pieces


# -- check_pairs and the written task -------------------------------------------------------------

def test_check_pairs_names_the_row_that_is_not_one_token_per_word(bpe):
    rows = induction_pairs(single_token_words(bpe), 10, seed=0)
    check_pairs(rows, bpe)  # all fine
    broken = [dict(r) for r in rows]
    broken[3]["one_prefix_word_good"] = "references"  # several BPE tokens
    with pytest.raises(ProbeError, match=r"row 3 \(pairID 3, induction.*good answer is not one token"):
        check_pairs(broken, bpe)
    broken = [dict(r) for r in rows]
    broken[5]["one_prefix_prefix"] = "legislatures " + broken[5]["one_prefix_prefix"]
    with pytest.raises(ProbeError, match=r"row 5 .*prefix's \d+ words are \d+ tokens"):
        check_pairs(broken, bpe)
    check_pairs(broken, bpe, words_are_tokens=False)  # IOI-style rows: only the answers must be one token


@pytest.mark.parametrize("kind", ["induction", "previous_token", "ioi"])
def test_the_loaded_task_keeps_every_pair_with_the_expected_ids(kind, bpe, tmp_path):
    from crosstime.tasks import load_jsonl_task

    rows = make_probe_rows(kind, bpe, n_pairs=60, seed=2)
    path = tmp_path / f"{kind}.jsonl"
    path.write_text(rows_jsonl(rows))
    task = load_jsonl_task(path, bpe)
    assert len(task) == len(rows) == 60
    expected_good = [bpe.convert_tokens_to_ids("Ġ" + r["one_prefix_word_good"]) for r in rows]
    expected_bad = [bpe.convert_tokens_to_ids("Ġ" + r["one_prefix_word_bad"]) for r in rows]
    assert task.correct.tolist() == expected_good and task.wrong.tolist() == expected_bad
    if kind != "ioi":  # one token per prefix word
        assert [len(p) for p in task.prefixes] == [len(r["one_prefix_prefix"].split()) for r in rows]


def test_toy_tokenizer_task_ids_are_the_words_ids(toy_tok, tmp_path):
    from crosstime.tasks import load_jsonl_task

    rows = make_probe_rows("induction", toy_tok, n_pairs=20)
    path = tmp_path / "induction.jsonl"
    path.write_text(rows_jsonl(rows))
    task = load_jsonl_task(path, toy_tok)
    vocab = toy_tok.get_vocab()
    assert task.correct.tolist() == [vocab[r["one_prefix_word_good"]] for r in rows]
    assert [p[0] for p in task.prefixes] == [toy_tok.bos_token_id] * 20


# -- IOI -------------------------------------------------------------------------------------------

def test_ioi_prefixes_match_hand_written_ones():
    by_start = {t.split(" {")[0]: t for t in IOI_TEMPLATES}
    assert ioi_prefix(IOI_TEMPLATES[0], "Mary", "John", "store", "drink", "ABBA") == \
        "When Mary and John went to the store, John gave a drink to"
    assert ioi_prefix(IOI_TEMPLATES[0], "Mary", "John", "store", "drink", "BABA") == \
        "When John and Mary went to the store, John gave a drink to"
    assert ioi_prefix(by_start["Friends"], "Anna", "Tom", "park", "ring", "ABBA") == \
        "Friends Anna and Tom found a ring at the park. Tom gave it to"
    assert ioi_prefix(IOI_TEMPLATES[5], "Lisa", "Paul", "office", "book", "BABA") == \
        "Then, Paul and Lisa had a long argument, and afterwards Paul said to"
    assert ioi_prefix(IOI_TEMPLATES[8], "Kate", "Mark", "school", "letter", "ABBA") == \
        "When Kate and Mark got a letter at the school, Mark decided to give the letter to"
    with pytest.raises(ProbeError, match="order"):
        ioi_prefix(IOI_TEMPLATES[0], "Mary", "John", "store", "drink", "AABB")


def _template_pattern(template: str) -> re.Pattern:
    """A regex matching ``template``'s instances; a field repeated in the template repeats its value."""
    pattern, seen = re.escape(template), set()
    for name in re.findall(r"\{(\w+)\}", template):
        group = f"(?P={name})" if name in seen else f"(?P<{name}>\\w+)"
        pattern = pattern.replace(re.escape("{" + name + "}"), group, 1)
        seen.add(name)
    return re.compile(pattern)


def test_ioi_pairs_ask_for_the_name_mentioned_once():
    names = list(TRAIN_NAMES)
    rows = ioi_pairs(names, 300, seed=0)
    _assert_minimal_pairs(rows)
    _assert_twins(rows)
    orders, templates = set(), set()
    for row in rows:
        prefix, good, bad = _words(row)
        words = [w.strip(",.") for w in prefix]
        assert words.count(good) == 1 and words.count(bad) == 2  # the indirect object once, the subject twice
        assert prefix[-1] == "to" and row["UID"] == "ioi"
        orders.add("ABBA" if words.index(good) < words.index(bad) else "BABA")
        matches = [t for t in IOI_TEMPLATES if _template_pattern(t).fullmatch(row["one_prefix_prefix"])]
        assert len(matches) == 1, row  # exactly one template, instantiated with …
        assert _template_pattern(matches[0]).fullmatch(row["one_prefix_prefix"])["subject"] == bad  # … the subject
        templates.add(matches[0])
    assert orders == set(IOI_ORDERS)
    assert templates == set(IOI_TEMPLATES)
    for first, second in zip(rows[::2], rows[1::2]):  # twins: the same sentence with the names swapped
        a, b = first["one_prefix_word_good"], first["one_prefix_word_bad"]
        swapped = " ".join({a: b, b: a}.get(w, w) for w in first["one_prefix_prefix"].replace(",", " ,").split(" "))
        assert swapped.replace(" ,", ",") == second["one_prefix_prefix"]


# -- the command line -----------------------------------------------------------------------------

def _invoke(args: list) -> object:
    from crosstime.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], prog_name="crosstime")


def _one_line_error(result, text: str) -> None:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.output


def test_cli_writes_a_task_file_and_refuses_bad_input(bpe, toy_tok, tmp_path):
    from crosstime.tasks import load_task
    from crosstime.toy.grammar import vocabulary
    from conftest import make_word_tokenizer

    bpe_dir, toy_dir = tmp_path / "bpe", tmp_path / "toy_tokenizer"
    bpe.save_pretrained(bpe_dir)
    toy_tok.save_pretrained(toy_dir)
    out = tmp_path / "ioi.jsonl"
    result = _invoke(["tasks", "make", "ioi", "--out", out, "--tokenizer", bpe_dir, "--n", 40, "--seed", 1])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: 40 ioi pairs" in result.output
    assert [json.loads(line) for line in out.read_text().splitlines()] == ioi_pairs(single_token_names(bpe), 40, 1)
    assert len(load_task(out, bpe)) == 40

    before = out.read_text()
    _one_line_error(_invoke(["tasks", "make", "ioi", "--out", out, "--tokenizer", bpe_dir]), "already exists")
    assert out.read_text() == before
    assert _invoke(["tasks", "make", "induction", "--out", out, "--tokenizer", bpe_dir, "--n", 10,
                    "--force"]).exit_code == 0
    assert len(out.read_text().splitlines()) == 10
    new = tmp_path / "new.jsonl"
    _one_line_error(_invoke(["tasks", "make", "bigram", "--out", new]), "unknown task kind 'bigram'")
    _one_line_error(_invoke(["tasks", "make", "ioi", "--out", new, "--tokenizer", toy_dir]),
                    "makes only 0 of the")
    split_marker = make_word_tokenizer([w for w in vocabulary() if w != COPY_MARKER])
    with pytest.raises(ProbeError, match="splits the copy marker 'again'"):
        make_probe_rows("previous_token", split_marker, 10)
    _one_line_error(_invoke(["tasks", "make", "induction", "--out", new, "--tokenizer", bpe_dir, "--n", 7]),
                    "must be even")
    _one_line_error(_invoke(["tasks", "make", "induction", "--out", new, "--tokenizer", tmp_path]),
                    "neither a tokenizer folder")
    assert not new.exists()


def test_too_small_a_vocabulary_is_refused(tmp_path):
    from conftest import make_word_tokenizer

    tiny = make_word_tokenizer(["the", "dog", "cat", "man", "runs", "sleeps", "big", "red", "old", "near", "a", "."])
    with pytest.raises(ProbeError, match="only 10 single-token lower-case words"):
        make_probe_rows("induction", tiny, 10)
