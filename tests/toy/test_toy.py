"""The toy world: grammar properties, minimal pairs, tokenizer, determinism, the cached build."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from crosstime.series import open_series
from crosstime.toy import (
    PAIR_TYPES,
    Grammar,
    ToyConfig,
    build_toy_world,
    check_agreement,
    make_pairs,
    make_tokenizer,
    pythia_schedule,
    read_build,
)
from crosstime.tasks import TOY_TASKS
from crosstime.toy import grammar as G
from crosstime.toy.pretrain import TASKS

def words(text: str) -> list[str]:
    """Split rendered text back into grammar words ("runs." → "runs", ".")."""
    return text.replace(".", " .").split()


# A build small enough for seconds: tiny model, few steps, small corpus.
TINY = ToyConfig(n_train_sentences=600, n_heldout_sentences=20, n_pairs=8, n_layers=1, d_model=16, n_heads=2,
                 d_ffn=32, seq_len=16, batch_size=4, steps=5, warmup_steps=2)


# -- grammar -------------------------------------------------------------------------------
def test_lexicon_size_and_irregulars():
    assert len({sg for sg, _ in G.NOUNS}) >= 90
    irregular = [(sg, pl) for sg, pl in G.NOUNS if pl not in (sg + "s", sg + "es") and not (
        sg.endswith("y") and pl == sg[:-1] + "ies")]
    assert len(irregular) >= 12, irregular
    assert {("man", "men"), ("child", "children"), ("mouse", "mice")} <= set(irregular)
    # every noun form and verb form has exactly one number
    forms = [f for pair in G.NOUNS for f in pair]
    assert len(forms) == len(set(forms))
    assert all(sg != pl for sg, pl in G.NOUNS + G.ALL_VERBS)


def test_every_generated_sentence_agrees():
    """Independent check from the lexicon: every finite verb is annotated with its subject
    and its number matches the subject's (a conjoined subject is plural)."""
    sentences = Grammar(seed=3).sentences(3000)
    bad = [(s.text, check_agreement(s)) for s in sentences if check_agreement(s)]
    assert not bad, bad[:3]
    words = Counter(w for s in sentences for w in s.words)
    # the grammar really produces the constructions the issue asks for
    for needed in ("is", "are", "was", "were", "has", "have", "that", "who", "which", "and", "men", "children",
                   "these", "several", "a", "the"):
        assert words[needed] > 0, needed
    assert any(len(a.controllers) == 2 for s in sentences for a in s.agreements)  # conjoined subjects


def test_checker_catches_disagreement():
    s = Grammar(seed=1).sentence()
    a = s.agreements[0]
    verb = s.words[a.verb]
    pair = next(p for p in G.ALL_VERBS if verb in p)
    s.words[a.verb] = pair[1] if verb == pair[0] else pair[0]
    assert check_agreement(s)


def test_attractors_often_of_opposite_number():
    """Nouns between a verb's subject and the verb (PP / RC attractors) are often of the
    opposite number: about half the time."""
    opposite = same = 0
    for s in Grammar(seed=5).sentences(2000):
        for a in s.agreements:
            if len(a.controllers) != 1:
                continue
            head = s.words[a.controllers[0]]
            for w in s.words[a.controllers[0] + 1: a.verb]:
                if w in G.NOUN_NUMBER:
                    same += G.NOUN_NUMBER[w] == G.NOUN_NUMBER[head]
                    opposite += G.NOUN_NUMBER[w] != G.NOUN_NUMBER[head]
    assert opposite > 200 and 0.35 < opposite / (opposite + same) < 0.65


@pytest.mark.parametrize("pair_type", PAIR_TYPES)
def test_minimal_pairs_differ_only_in_the_verb(pair_type):
    rows = make_pairs(pair_type, 200, seed=0)
    assert len(rows) == 200 and len({r["sentence_good"] for r in rows}) == 200
    numbers = Counter()
    for r in rows:
        good, bad = words(r["sentence_good"]), words(r["sentence_bad"])
        assert len(good) == len(bad)
        diff = [i for i, (a, b) in enumerate(zip(good, bad)) if a != b]
        assert len(diff) == 1
        i = diff[0]
        assert good[i] == r["one_prefix_word_good"] and bad[i] == r["one_prefix_word_bad"]
        assert " ".join(good[:i]) == r["one_prefix_prefix"]
        assert G.VERB_NUMBER[good[i]] != G.VERB_NUMBER[bad[i]]
        assert r["UID"] == pair_type and set(r) >= {"sentence_good", "sentence_bad", "one_prefix_prefix",
                                                    "one_prefix_word_good", "one_prefix_word_bad", "UID", "pairID"}
        prefix = good[:i]
        head = prefix[1] if prefix[1] in G.NOUN_NUMBER else prefix[2]  # "the (adj) N"
        assert G.VERB_NUMBER[good[i]] == G.NOUN_NUMBER[head]
        numbers[G.NOUN_NUMBER[head]] += 1
        nouns_after = [w for w in prefix[prefix.index(head) + 1:] if w in G.NOUN_NUMBER]
        if pair_type in ("pp_attractor", "rc_attractor"):
            assert nouns_after and G.NOUN_NUMBER[nouns_after[0]] != G.NOUN_NUMBER[head]
        else:
            assert not nouns_after
        if pair_type == "irregular_plural":
            assert any(head in p for p in G.IRREGULAR)
        if pair_type == "rc_attractor":
            assert any(w in ("that", "who", "which") for w in prefix)
        if pair_type == "pp_attractor":
            assert any(w in G.PREPOSITIONS for w in prefix)
    assert numbers["sg"] == numbers["pl"]  # balanced: always-"is" scores exactly 50%


def test_pair_continuations_grammatical_for_both_verb_forms():
    """The words after the verb are the same whichever number the verb has: twins share them."""
    for pair_type in PAIR_TYPES:
        rows = make_pairs(pair_type, 40, seed=1)
        for a, b in zip(rows[0::2], rows[1::2]):
            wa, wb = words(a["sentence_good"]), words(b["sentence_good"])
            i, j = len(words(a["one_prefix_prefix"])), len(words(b["one_prefix_prefix"]))
            assert wa[i + 1:] == wb[j + 1:]
            assert G.VERB_NUMBER[wa[i]] != G.VERB_NUMBER[wb[j]]


# -- tokenizer -----------------------------------------------------------------------------
def test_tokenizer_prepends_bos_and_matches_word_ids(tmp_path):
    tok = make_tokenizer()
    vocab = tok.get_vocab()
    assert [vocab[t] for t in ("<pad>", "<unk>", "<bos>", "<eos>")] == [0, 1, 2, 3]
    for s in Grammar(seed=2).sentences(50):
        assert tok(s.text).input_ids == [tok.bos_token_id] + [vocab[w] for w in s.words]
        assert tok(s.text, add_special_tokens=False).input_ids == [vocab[w] for w in s.words]
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("The men are happy.").input_ids == tok("the men are happy.").input_ids
    assert again("the men are happy.").input_ids[0] == again.bos_token_id == 2
    assert again("the zebras").input_ids[-1] == again.unk_token_id


def test_pythia_schedule():
    assert pythia_schedule(1500) == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1500]
    assert pythia_schedule(2000)[-2:] == [1000, 2000]
    assert pythia_schedule(5) == [0, 1, 2, 4, 5]


def test_checkpoint_steps_add_an_even_grid_to_the_pythia_schedule():
    assert ToyConfig(steps=1000, checkpoint_every=128).checkpoint_steps() == [
        0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 640, 768, 896, 1000]
    assert ToyConfig(steps=1000, checkpoint_every=0).checkpoint_steps() == pythia_schedule(1000)
    assert ToyConfig(steps=300, checkpoint_every=100).checkpoint_steps() == [0, 1, 2, 4, 8, 16, 32, 64, 100, 128,
                                                                             200, 256, 300]
    assert TINY.checkpoint_steps() == [0, 1, 2, 4, 5]  # no grid point before step 5


# -- building ------------------------------------------------------------------------------
def _weights(root, rev):
    from safetensors.torch import load_file

    return load_file(str(root / rev / "model.safetensors"))


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    """A TINY build, plus in-memory copies of the models as they were saved (by folder name)."""
    import copy

    from transformers import PreTrainedModel

    saved = {}
    real_save = PreTrainedModel.save_pretrained

    def recording_save(self, folder, *args, **kwargs):
        saved[Path(folder).name] = copy.deepcopy(self).eval()
        return real_save(self, folder, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PreTrainedModel, "save_pretrained", recording_save)
        root = build_toy_world(tmp_path_factory.mktemp("tiny") / "a", TINY, progress=False)
    return root, saved


def test_tiny_build_is_deterministic_and_complete(tiny_build, tmp_path):
    a, _ = tiny_build
    b = build_toy_world(tmp_path / "b", TINY, progress=False)
    for rev in ("step0", "step1", "step5"):
        wa, wb = _weights(a, rev), _weights(b, rev)
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not torch.equal(_weights(a, "step0")["embed_out.weight"], _weights(a, "step5")["embed_out.weight"])
    for f in ("corpus/train.txt", "corpus/heldout.txt", "pairs/rc_attractor.jsonl", "step5/tokenizer.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes()

    # layout: series, corpus, pairs, build.json; no temporary folders left behind
    assert [p.name for p in tmp_path.iterdir()] == ["b"]
    series = open_series(a)
    assert series.family == "toy"
    assert series.revisions == ["step0", "step1", "step2", "step4", "step5"]
    assert [c.tokens for c in series] == [s * TINY.batch_size * TINY.seq_len for s in (0, 1, 2, 4, 5)]
    train = (a / "corpus" / "train.txt").read_text().splitlines()
    heldout = (a / "corpus" / "heldout.txt").read_text().splitlines()
    assert len(train) == 600 and len(heldout) == 20 and not set(heldout) & set(train)
    for t in TASKS:
        rows = [json.loads(line) for line in (a / "pairs" / f"{t}.jsonl").read_text().splitlines()]
        assert len(rows) == 8 and rows[0]["UID"] == t
    assert sorted(p.stem for p in (a / "pairs").glob("*.jsonl")) == sorted(TOY_TASKS)  # what tasks.py names
    build = read_build(a)
    assert set(build["accuracy"]) == set(series.revisions)
    assert build["config"] == TINY.model_dump() and build["timing"]["total_s"] > 0

    with pytest.raises(FileExistsError, match="already exists"):
        build_toy_world(a, TINY, progress=False)


def test_local_series_round_trip(tiny_build):
    """Each model the build saves reloads through open_series with identical logits."""
    root, saved = tiny_build
    series = open_series(root)
    assert sorted(saved) == sorted(series.revisions)
    tok = series.load_tokenizer()
    ids = torch.tensor([tok("the men near the dog are happy.").input_ids])
    for rev in ("step0", "step5"):
        model = series.load_model(rev)
        assert type(model).__name__ == "GPTNeoXForCausalLM"
        with torch.no_grad():
            assert torch.equal(model(ids).logits, saved[rev](ids).logits)
    with torch.no_grad():
        assert not torch.equal(series.load_model("step0")(ids).logits, saved["step5"](ids).logits)


def test_bad_config_is_rejected_before_work():
    with pytest.raises(ValueError, match="divisible"):
        ToyConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="even"):
        ToyConfig(n_pairs=7)


def test_toy_world_cache_and_concurrent_builder(tiny_build, tmp_path, monkeypatch):
    """toy_world returns a cached build without rebuilding; if another builder's result
    appears while we build, it is kept and ours is discarded (no leftover temporary folders)."""
    import shutil

    from crosstime.toy import pretrain, toy_world

    monkeypatch.setenv("CROSSTIME_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "toy" / TINY.key()
    shutil.copytree(tiny_build[0], cached)
    stamp = (cached / "build.json").stat().st_mtime_ns
    assert toy_world(TINY, progress=False) == cached and (cached / "build.json").stat().st_mtime_ns == stamp

    other_cfg = TINY.model_copy(update={"seed": 7})
    target = tmp_path / "cache" / "toy" / other_cfg.key()
    rival = build_toy_world(tmp_path / "rival", other_cfg, progress=False)
    (rival / "RIVAL").write_text("the other builder won")
    # a different seed gives different weights
    assert not torch.equal(_weights(rival, "step0")["embed_out.weight"], _weights(cached, "step0")["embed_out.weight"])
    real = pretrain.write_series_manifest

    def racing(root, *args, **kwargs):  # the rival finishes while we are still building
        out = real(root, *args, **kwargs)
        if not target.exists():
            shutil.copytree(rival, target)
        return out

    monkeypatch.setattr(pretrain, "write_series_manifest", racing)  # the name the build calls
    assert toy_world(other_cfg, progress=False) == target
    assert (target / "RIVAL").is_file()
    assert sorted(p.name for p in (tmp_path / "cache" / "toy").iterdir()) == sorted([TINY.key(), other_cfg.key()])


def test_toy_world_waits_for_a_live_builder(tiny_build, tmp_path, monkeypatch):
    """A caller that finds another live process building the same world waits for its result."""
    import os
    import shutil
    import threading

    from crosstime.toy import toy_world

    monkeypatch.setenv("CROSSTIME_CACHE", str(tmp_path))
    target = tmp_path / "toy" / TINY.key()
    in_progress = target.parent / f".{target.name}.tmp-{os.getpid()}-abcd"  # a live pid: ours
    in_progress.mkdir(parents=True)
    result = {}
    waiter = threading.Thread(target=lambda: result.setdefault("path", toy_world(TINY, progress=False)))
    waiter.start()
    waiter.join(timeout=1.0)
    assert waiter.is_alive()  # waiting, not building
    shutil.copytree(tiny_build[0], in_progress, dirs_exist_ok=True)
    (in_progress / "FIRST").write_text("built by the other process")
    os.rename(in_progress, target)
    waiter.join(timeout=30)
    assert result["path"] == target and (target / "FIRST").is_file()


# -- the real toy world (built once per session, cached across sessions) --------------------
def test_toy_world_accuracy_table(toy_world):
    build = read_build(toy_world)
    series = open_series(toy_world)
    assert series.family == "toy" and series.revisions[0] == "step0"
    acc = build["accuracy"]
    assert set(acc) == set(series.revisions)
    for c in series:
        for task in TASKS:
            value = acc[c.revision][task]
            if c.step <= 64:
                assert 0.40 <= value <= 0.60, (c.revision, task, value)
    final = series.revisions[-1]
    assert all(acc[final][t] >= 0.95 for t in TASKS), acc[final]


def _onset(values: list[float], threshold: float) -> int | None:
    """Index of the first checkpoint from which every value is at least ``threshold``."""
    for i in range(len(values)):
        if min(values[i:]) >= threshold:
            return i
    return None


def test_toy_world_learns_previous_token_first_at_every_threshold(toy_world):
    """The second paper's order: previous-token copying is learned strictly before agreement across
    attractors and before induction, for every accuracy threshold in [0.80, 0.95]. Onsets change only
    where the threshold passes a measured accuracy, so 0.80 and the measured accuracies in (0.80, 0.95]
    cover the interval. (build.json's accuracy is the scan's: the same pairs, p(good) > p(bad).)"""
    acc = read_build(toy_world)["accuracy"]
    revisions = open_series(toy_world).revisions
    curves = {t: [acc[r][t] for r in revisions] for t in TASKS}
    thresholds = {0.80, 0.95} | {v for values in curves.values() for v in values if 0.80 < v <= 0.95}
    for threshold in sorted(thresholds):
        first = _onset(curves["previous_token"], threshold)
        assert first is not None, threshold
        for later in ("pp_attractor", "rc_attractor", "induction"):
            onset = _onset(curves[later], threshold)
            assert onset is None or first < onset, (threshold, later, revisions[first], revisions[onset])


def test_toy_world_accuracy_recomputed_from_saved_checkpoint(toy_world):
    """build.json's accuracy is what the saved final checkpoint scores, and the batched
    (grouped-by-length) scorer agrees with a slow one-prefix-at-a-time full-softmax reference."""
    from crosstime.toy import accuracy_table, agreement_correct, encode_pairs

    series = open_series(toy_world)
    tok = series.load_tokenizer()
    final = series.revisions[-1]
    model = series.load_model(final)
    rows = [json.loads(line) for line in (toy_world / "pairs" / "rc_attractor.jsonl").read_text().splitlines()]
    prefixes, good, bad = encode_pairs(rows, tok)
    assert accuracy_table(model, {"rc": (prefixes, good, bad)})["rc"] == read_build(toy_world)["accuracy"][final]["rc_attractor"]

    early = series.load_model("step256")  # mid-transition: many pairs wrong, so both outcomes occur
    sub = slice(0, 80)
    batched = agreement_correct(early, prefixes[sub], good[sub], bad[sub])
    with torch.no_grad():
        slow = torch.tensor([
            bool(lp[g] > lp[b])
            for p, g, b in zip(prefixes[sub], good[sub], bad[sub])
            for lp in [early(torch.tensor([p])).logits[0, -1].log_softmax(-1)]
        ])
    assert 0 < int(slow.sum()) < len(slow)
    assert int((batched != slow).sum()) <= 1  # at most one float near-tie


# -- the probe pair files (previous_token, induction) against the toy world's own rules --------
def _rows(root: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (root / "pairs" / f"{task}.jsonl").read_text().splitlines()]


def _check_probe_rows(rows: list[dict], vocabulary: set[str]) -> None:
    """Distinct pairs, each differing from its bad sentence in the last word only, twins balanced."""
    assert len({(r["one_prefix_prefix"], r["one_prefix_word_good"]) for r in rows}) == len(rows)
    for r in rows:
        good, bad = r["sentence_good"].split(), r["sentence_bad"].split()
        assert good[:-1] == bad[:-1] == r["one_prefix_prefix"].split()
        assert good[-1] == r["one_prefix_word_good"] != bad[-1] == r["one_prefix_word_bad"]
        assert set(good + bad) <= vocabulary
    # twins: every answer is as often correct as wrong, so a model blind to the context scores 50%
    correct = Counter(r["one_prefix_word_good"] for r in rows)
    wrong = Counter(r["one_prefix_word_bad"] for r in rows)
    assert correct == wrong


def test_previous_token_pairs_follow_the_copy_rule():
    from crosstime.probes import COPY_MARKER, copy_pairs

    rows = copy_pairs(G.PROBE_POOL, 200, seed=0)
    _check_probe_rows(rows, set(G.PROBE_POOL) | {COPY_MARKER})
    for r in rows:
        prefix = r["one_prefix_prefix"].split()
        assert prefix[-1] == COPY_MARKER and r["one_prefix_word_good"] == prefix[-2]
        # every earlier marker in the context is also followed by the word before it
        for i, w in enumerate(prefix[:-1]):
            if w == COPY_MARKER:
                assert prefix[i + 1] == prefix[i - 1]


def test_induction_pairs_follow_the_earlier_occurrence():
    from crosstime.probes import induction_pairs

    rows = induction_pairs(G.PROBE_POOL, 200, seed=0)
    _check_probe_rows(rows, set(G.PROBE_POOL))
    for r in rows:
        prefix = r["one_prefix_prefix"].split()
        last = prefix[-1]
        earlier = [i for i, w in enumerate(prefix[:-1]) if w == last]
        assert len(earlier) == 1  # the span's words are distinct: one earlier occurrence
        assert r["one_prefix_word_good"] == prefix[earlier[0] + 1]  # what followed it
        assert r["one_prefix_word_bad"] not in prefix  # the wrong answer is not in the span


def test_toy_corpus_mixes_probe_documents():
    """The configured shares of copy and induction documents, each a valid document of its kind."""
    from crosstime.probes import COPY_MARKER
    from crosstime.toy.pretrain import corpus_lines

    lines = corpus_lines(ToyConfig(copy_share=0.2, induction_share=0.3), 4000, seed=0)
    grammar_words = set(G.vocabulary()) - set(G.PROBE_POOL) - {COPY_MARKER, "."}
    probes = [w for w in lines if not set(w) & grammar_words]

    def repeated(w: list[str]) -> bool:
        body, half = w[:-1], (len(w) - 1) // 2
        return len(body) % 2 == 0 and body[:half] == body[half:] and len(set(body[:half])) == half

    induction = [w for w in probes if repeated(w)]
    copy = [w for w in probes if not repeated(w)]
    assert abs(len(copy) / 4000 - 0.2) < 0.03 and abs(len(induction) / 4000 - 0.3) < 0.03
    assert all(w[-1] == "." for w in probes)
    for w in copy:  # every marker repeats the word before it
        assert all(w[i + 1] == w[i - 1] for i, x in enumerate(w) if x == COPY_MARKER)
