"""Tasks: minimal pairs → token ids (BLiMP, CLAMS, toy-style files), the metric, padding, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_word_tokenizer, tiny_model

from crosstime.tasks import (
    SUBJECTVERB_PARADIGMS, Task, TaskError, evaluate_task, expand_task_names, forward_logits, left_pad,
    load_task, packaged_blimp_dir, pair_metric, sequence_logprob, special_prefix,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"  # beside the checkout, when there is one
BLIMP = packaged_blimp_dir()
REAL_CLAMS_SIMPLE = SHARED / "clams" / "en_simple_agrmt.jsonl"


def clams_simple_rows() -> list[dict]:
    """80 rows in the CLAMS simple-agreement format as processed for "Crosscoding Through Time"
    (subject, verb, adjective; leading-space answers), built here so the tests need no data
    outside the repository."""
    rows = []
    for noun in ("doctor", "lawyer", "painter", "singer", "driver", "writer", "student", "baker", "nurse", "guard"):
        for plural in (False, True):
            subject = f"The {noun}s" if plural else f"The {noun}"
            good, bad = ("are", "is") if plural else ("is", "are")
            for adj in ("tall", "old", "young", "short"):
                rows.append({"sentence_good": f"{subject} {good} {adj}", "sentence_bad": f"{subject} {bad} {adj}",
                             "clean_prefix": subject, "clean_answer": f" {good}", "patch_answer": f" {bad}",
                             "skip": False})
    return rows


@pytest.fixture(scope="module")
def clams_simple(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clams") / "en_simple_agrmt.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in clams_simple_rows()))
    return path


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def blimp_texts() -> list[str]:
    return [r[k] for p in SUBJECTVERB_PARADIGMS for r in rows_of(BLIMP / f"{p}.jsonl") for k in ("sentence_good", "sentence_bad")]


@pytest.fixture(scope="module")
def bpe_tokenizer(clams_simple):
    """A small byte-level BPE trained on the BLiMP agreement sentences (no BOS, like Pythia's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<pad>", "<unk>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(blimp_texts() + [r["sentence_good"] for r in rows_of(clams_simple)], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")


def bos_word_tokenizer(words):
    """A word-level tokenizer that prepends <bos> to every text, like the toy world's."""
    from tokenizers import processors

    tok = make_word_tokenizer(words)
    bos = tok.convert_tokens_to_ids("<bos>")
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    return tok


# -- construction on real files ------------------------------------------------------------------


def test_blimp_with_word_tokenizer_keeps_representable_pairs_and_counts_the_rest():
    path = BLIMP / "distractor_agreement_relational_noun.jsonl"
    rows = rows_of(path)
    fields = ("sentence_good", "sentence_bad", "one_prefix_prefix", "one_prefix_word_good", "one_prefix_word_bad")
    words = sorted({w for r in rows for k in fields for w in r[k].split()})
    removed = {"senators", "slopes."}  # make some pairs unrepresentable
    tok = bos_word_tokenizer([w for w in words if w not in removed])
    task = load_task(path, tok)
    vocab = tok.get_vocab()
    expected = [r for r in rows if not removed & set(r["one_prefix_prefix"].split())]
    assert len(task) == len(expected)
    (stats,) = task.stats
    assert stats.total == 1000 and stats.kept == len(expected)
    assert stats.dropped == {"unknown token": 1000 - len(expected)}
    for i in (0, 7, len(expected) - 1):  # ids built independently from the words
        r = expected[i]
        assert task.prefixes[i] == [vocab["<bos>"]] + [vocab[w] for w in r["one_prefix_prefix"].split()]
        assert int(task.correct[i]) == vocab[r["one_prefix_word_good"].split()[0]]
        assert int(task.wrong[i]) == vocab[r["one_prefix_word_bad"].split()[0]]
        sentence_ok = not removed & set(r["sentence_good"].split())
        assert bool(task.sentence_ok[i]) == sentence_ok
        if sentence_ok:  # the whole-sentence metric conditions on BOS, like lm-eval
            assert task.good[i] == [vocab["<bos>"]] + [vocab[w] for w in r["sentence_good"].split()]


def test_subjectverb_with_bpe_tokenizer(bpe_tokenizer):
    tok = bpe_tokenizer
    task = load_task("subjectverb", tok)
    assert [s.source for s in task.stats] == list(SUBJECTVERB_PARADIGMS)
    assert sum(s.kept for s in task.stats) == len(task) > 2000
    for s in task.stats:
        assert s.kept + sum(s.dropped.values()) == s.total == 1000
    rows = {p: rows_of(BLIMP / f"{p}.jsonl") for p in SUBJECTVERB_PARADIGMS}
    by_source = {}
    for i, src in enumerate(task.sources):
        by_source.setdefault(src, []).append(i)
    for src, idx in by_source.items():
        for i in idx[:40]:
            p, c, w = task.prefixes[i], int(task.correct[i]), int(task.wrong[i])
            assert c != w and special_prefix(tok) == []
            text = tok.decode(p + [c])
            # prefix + correct is a token prefix of prefix + " " + good of some row of this paradigm
            hits = [r for r in rows[src] if (r["one_prefix_prefix"] + " " + r["one_prefix_word_good"]).startswith(text)]
            assert hits, text
            r = hits[0]
            good = tok(r["one_prefix_prefix"] + " " + r["one_prefix_word_good"], add_special_tokens=False)["input_ids"]
            bad = tok(r["one_prefix_prefix"] + " " + r["one_prefix_word_bad"], add_special_tokens=False)["input_ids"]
            assert good[:len(p) + 1] == p + [c] and bad[:len(p) + 1] == p + [w]
            # no BOS: the sentence is conditioned on EOS (lm-eval's prefix token when there is no BOS)
            assert task.good[i][0] == tok.eos_token_id


def test_multi_token_answers_first_token_or_drop(bpe_tokenizer):
    path = BLIMP / "regular_plural_subject_verb_agreement_1.jsonl"
    first = load_task(path, bpe_tokenizer)
    only_single = load_task(path, bpe_tokenizer, multi_token="drop")
    (s1,), (s2,) = first.stats, only_single.stats
    assert s1.multi_token > 0
    assert s2.kept == s1.kept - s1.multi_token and s2.dropped["multi-token answer"] == s1.multi_token


def _check_clams_rederived(path: Path, bpe_tokenizer=None) -> None:
    rows = rows_of(path)
    words = sorted({w for r in rows for k in ("sentence_good", "sentence_bad") for w in r[k].split()})
    tok = make_word_tokenizer(words)
    vocab = tok.get_vocab()
    task = load_task(path, tok)
    assert len(task) == len(rows) == 80
    for i in (0, 41, 79):
        g, b = rows[i]["sentence_good"].split(), rows[i]["sentence_bad"].split()
        n = next(k for k in range(len(g)) if g[k] != b[k])
        assert task.prefixes[i] == [vocab[w] for w in g[:n]]
        assert (int(task.correct[i]), int(task.wrong[i])) == (vocab[g[n]], vocab[b[n]])
    if bpe_tokenizer is not None:
        # the BPE split differs from the stored BLOOM one but still puts the verb right after the prefix
        task = load_task(path, bpe_tokenizer)
        assert len(task) == 80
        assert bpe_tokenizer.decode(task.prefixes[0]) == rows[0]["clean_prefix"]
        assert bpe_tokenizer.decode([int(task.correct[0])]) == rows[0]["clean_answer"]
        assert bpe_tokenizer.decode([int(task.wrong[0])]) == rows[0]["patch_answer"]


def test_clams_rederived_for_the_tokenizer(clams_simple, bpe_tokenizer):
    _check_clams_rederived(clams_simple, bpe_tokenizer)


@pytest.mark.skipif(not REAL_CLAMS_SIMPLE.is_file(), reason="the real CLAMS data is beside the checkout only")
def test_real_clams_file_rederived_for_a_word_tokenizer():
    _check_clams_rederived(REAL_CLAMS_SIMPLE)


def test_named_task_from_search_dir_and_groups(tmp_path):
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    row = {"sentence_good": "the dog runs .", "sentence_bad": "the dog run .", "one_prefix_prefix": "the dog",
           "one_prefix_word_good": "runs", "one_prefix_word_bad": "run"}
    (pairs / "simple_agreement.jsonl").write_text(json.dumps(row) + "\n")
    tok = make_word_tokenizer()
    task = load_task("simple_agreement", tok, search_dirs=[pairs])
    vocab = tok.get_vocab()
    assert task.prefixes == [[vocab["the"], vocab["dog"]]] and task.name == "simple_agreement"
    assert expand_task_names(["toy", "subjectverb,simple_agreement"]) == [
        "simple_agreement", "pp_attractor", "rc_attractor", "irregular_plural", "previous_token", "induction",
        "subjectverb"]


TOY_LOOKUP = """
import sys
sys.path.insert(0, {tests!r})
from conftest import make_word_tokenizer
from crosstime.tasks import TaskError, load_task
for dirs in ([], [{empty!r}]):
    try:
        load_task("simple_agreement", make_word_tokenizer(), search_dirs=dirs)
    except TaskError as err:
        print("error:", err)
print("toy imported:", any(name.startswith("crosstime.toy") for name in sys.modules))
"""


def test_toy_task_name_without_its_folder_names_the_fix_and_builds_nothing(tmp_path):
    """No implicit toy world: the name resolves through search dirs only, and the error says which folder."""
    import os
    import subprocess
    import sys

    empty = tmp_path / "no_pairs_here"
    empty.mkdir()
    env = dict(os.environ, CROSSTIME_CACHE=str(tmp_path / "cache"))  # a build would land here
    code = TOY_LOOKUP.format(tests=str(Path(__file__).resolve().parents[1]), empty=str(empty))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    for line in errors:
        assert "'simple_agreement' is a toy-world task" in line
        assert "search_dirs=[toy_world() / 'pairs']" in line
    assert "none were given" in errors[0] and str(empty) in errors[1]
    assert "toy imported: False" in done.stdout
    assert not (tmp_path / "cache").exists()


def test_toy_tasks_load_from_the_toy_worlds_pairs_folder(toy_world):
    from crosstime.series import open_series
    from crosstime.tasks import TOY_TASKS

    tok = open_series(toy_world).load_tokenizer()
    vocab = tok.get_vocab()
    for name in TOY_TASKS:
        rows = rows_of(toy_world / "pairs" / f"{name}.jsonl")
        task = load_task(name, tok, search_dirs=[toy_world / "pairs"])
        (stats,) = task.stats
        assert task.name == name and stats.total == len(rows) and stats.path == str(toy_world / "pairs" / f"{name}.jsonl")
        assert stats.dropped == {} and len(task) == len(rows) > 0  # written in the toy vocabulary
        r = rows[0]  # the toy tokenizer: <bos> + one id per word
        assert task.prefixes[0] == [vocab["<bos>"]] + [vocab[w] for w in r["one_prefix_prefix"].split()]
        assert int(task.correct[0]) == vocab[r["one_prefix_word_good"]]


def test_subjectverb_is_shipped_with_its_license():
    for p in SUBJECTVERB_PARADIGMS:
        assert (BLIMP / f"{p}.jsonl").is_file()
        if (SHARED / "blimp").is_dir():
            assert (BLIMP / f"{p}.jsonl").read_bytes() == (SHARED / "blimp" / f"{p}.jsonl").read_bytes()
    notice = (BLIMP / "NOTICE").read_text()
    assert "CC-BY-4.0" in notice or "Attribution 4.0" in notice
    assert "Warstadt" in notice


# -- bad input ------------------------------------------------------------------------------------


def test_unknown_task_lists_known_ones():
    with pytest.raises(TaskError) as err:
        load_task("subjverb", make_word_tokenizer())
    text = str(err.value)
    assert "unknown task 'subjverb'" in text and "did you mean subjectverb" in text
    for name in ("subjectverb", "simple_agreement", "regular_plural_subject_verb_agreement_1"):
        assert name in text


def test_missing_field_names_file_and_line(tmp_path):
    good = {"sentence_good": "the dog runs", "sentence_bad": "the dog run", "one_prefix_prefix": "the dog",
            "one_prefix_word_good": "runs", "one_prefix_word_bad": "run"}
    bad = dict(good)
    del bad["one_prefix_word_bad"]
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(TaskError, match=r"broken\.jsonl, line 3: .*one_prefix_word_bad"):
        load_task(path, make_word_tokenizer())


def test_tokenizer_that_drops_every_pair_is_an_error():
    with pytest.raises(TaskError, match=r"keeps none of the pairs of task 'subjectverb'.*unknown token"):
        load_task("subjectverb", make_word_tokenizer())
    empty = Task("empty", [], torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), [], [],
                 torch.zeros(0, dtype=torch.bool), [], [])
    with pytest.raises(TaskError, match="no pairs"):
        evaluate_task(None, empty)  # raises before touching a model


# -- metric, padding -----------------------------------------------------------------------------


def hand_task(tok, bos: bool = False) -> Task:
    """Pairs of very different prefix lengths, so batches need a lot of left padding.

    With ``bos`` the prefixes start with <bos> like the sentences, so prefix + correct starts the
    good sentence (the metric can be read from the sentence pass)."""
    v = tok.get_vocab()
    texts = [("the dog", "runs", "run"), ("the big old dogs near the man", "run", "runs"),
             ("a cat", "sleeps", "sleep"), ("the children with the red cat that the man", "sleep", "sleeps"),
             ("men", "are", "is"), ("the small child", "was", "were")]
    prefixes = [[v["<bos>"]] * bos + [v[w] for w in p.split()] for p, _, _ in texts]
    head = [] if bos else [v["<bos>"]]
    good = [head + p + [v[c], v["."]] for p, (_, c, _) in zip(prefixes, texts)]
    bad = [head + p + [v[w], v["."]] for p, (_, _, w) in zip(prefixes, texts)]
    return Task("hand", prefixes, torch.tensor([v[c] for _, c, _ in texts]), torch.tensor([v[w] for _, _, w in texts]),
                good, bad, torch.ones(len(texts), dtype=torch.bool), ["hand"] * len(texts), [])


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "llama", "bloom"])
def test_metric_matches_hand_computation_and_is_padding_invariant(arch):
    tok = make_word_tokenizer()
    model = tiny_model(arch, vocab_size=len(tok))
    task = hand_task(tok)
    expected = []
    with torch.no_grad():
        for p, c, w in zip(task.prefixes, task.correct.tolist(), task.wrong.tolist()):
            logp = model(torch.tensor([p])).logits[0, -1].log_softmax(-1)  # one unpadded sequence
            expected.append(float(logp[w] - logp[c]))
    expected = torch.tensor(expected)
    one_by_one = pair_metric(model, task, batch_size=1)
    padded = pair_metric(model, task, batch_size=len(task))
    torch.testing.assert_close(one_by_one, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded, expected, atol=1e-5, rtol=1e-5)
    res = evaluate_task(model, task, batch_size=4)
    assert res.accuracy == pytest.approx(float((expected < 0).float().mean()))
    assert res.mean_m == pytest.approx(float(expected.mean()), abs=1e-6)
    # whole-sentence comparison against per-sentence sums of log-probabilities
    with torch.no_grad():
        def total(seq):
            lp = model(torch.tensor([seq])).logits[0, :-1].log_softmax(-1)
            return float(lp[torch.arange(len(seq) - 1), torch.tensor(seq[1:])].sum())
        margins = torch.tensor([total(b) - total(g) for g, b in zip(task.good, task.bad)])
    torch.testing.assert_close(sequence_logprob(model, task.bad, 3) - sequence_logprob(model, task.good, 3), margins,
                               atol=1e-4, rtol=1e-5)
    assert res.sentence_accuracy == pytest.approx(float((margins < 0).float().mean()))


def test_left_padding_needs_positions_from_the_mask():
    """The padding test can fail: GPT-2 (absolute positions) fed left padding without position ids differs."""
    tok = make_word_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok))
    task = hand_task(tok)
    ids, mask = left_pad(task.prefixes)
    with torch.no_grad():
        right = forward_logits(model, ids, mask)[:, -1]
        naive = model(input_ids=ids, attention_mask=mask).logits[:, -1]
        alone = model(torch.tensor([task.prefixes[0]])).logits[0, -1]
    torch.testing.assert_close(right[0], alone, atol=1e-5, rtol=1e-5)
    assert (naive[0] - alone).abs().max() > 1e-3


def test_metric_read_from_the_sentence_pass_equals_the_prefix_pass():
    tok = make_word_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok))
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    for bos, passes in ((True, 1), (False, 2)):  # sentences only / sentences + prefixes
        task = hand_task(tok, bos=bos)
        calls.clear()
        res = evaluate_task(model, task, batch_size=64)
        assert len(calls) == passes
        torch.testing.assert_close(res.m, pair_metric(model, task, batch_size=1), atol=1e-5, rtol=1e-5)


def test_blimp_with_the_toy_tokenizer_on_the_pairs_it_can_represent():
    toy = pytest.importorskip("crosstime.toy")
    tok = toy.make_tokenizer()
    path = BLIMP / "irregular_plural_subject_verb_agreement_1.jsonl"
    task = load_task(path, tok)
    vocab = tok.get_vocab()
    rows = rows_of(path)

    def words(text):  # the toy tokenizer lower-cases and splits off punctuation
        return text.lower().replace(".", " .").replace(",", " ,").split()

    representable = [r for r in rows if all(w in vocab for w in words(r["one_prefix_prefix"] + " " + r["one_prefix_word_good"]
                                                                       + " " + r["one_prefix_word_bad"]))]
    (stats,) = task.stats
    assert 0 < len(task) == len(representable) < 1000
    assert stats.dropped == {"unknown token": 1000 - len(representable)}
    r = representable[0]
    assert task.prefixes[0] == [vocab["<bos>"]] + [vocab[w] for w in words(r["one_prefix_prefix"])]
    assert int(task.correct[0]) == vocab[words(r["one_prefix_word_good"])[0]]
