"""Probe texts and minimal pairs for the mechanisms the second paper orders: copying the previous
token, and induction (copying the token that followed an earlier occurrence of the current one).

Both are built from a *pool* of words, each of which the target tokenizer turns into one
token: the toy world passes its content words; for a real model's tokenizer the pool comes
from that tokenizer (see the module's real-tokenizer helpers). The pairs follow BLiMP's JSONL
schema (``one_prefix_prefix``, ``one_prefix_word_good``, ``one_prefix_word_bad``, …), so scan
and attribution read them like any other task.

- **Induction** (the standard measure: a repeated random span). The prefix is a span of
  ``k`` distinct random words followed by its first ``j`` words again; the correct answer is
  the span's word ``j`` (what followed the current word's earlier occurrence), the wrong one
  another pool word that is not in the span. Twins: each pair comes with a twin whose span
  holds the wrong word at place ``j`` instead, so the twins share the last prefix word and a
  model that reads only the last word (or none) scores exactly 50%.
- **Copy (previous token)**: random words, some followed by the marker word and the word
  again (``dog again dog``). At the marker the correct answer is the word right before it,
  which only a previous-token mechanism can see; twins swap that word with the wrong one.

- **IOI** (indirect-object identification, Wang et al. 2022): ``When Mary and John went to the
  store, John gave a drink to`` → ``Mary`` (the indirect object), not ``John`` (the subject), in
  both name orders (ABBA, BABA) over :data:`IOI_TEMPLATES`. Twins swap the two names, so a model
  that prefers one name scores exactly 50%.

The same functions write the toy world's pretraining documents (:func:`induction_document`,
:func:`copy_document`) and its probe pairs, so what is trained and what is tested agree.

**Real tokenizers.** :func:`single_token_words` gives a pool for any tokenizer (byte-level BPE,
SentencePiece, word-level), :func:`single_token_names` the IOI names, and :func:`check_pairs`
verifies that every row's answers are one token each (and, for the word-pool probes, that the
prefix is one token per word), so a pair measures what it says. :func:`make_probe_rows` does all
three for ``crosstime tasks make``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

from crosstime.errors import CrosstimeError

COPY_MARKER = "again"


class ProbeError(CrosstimeError):
    """Probe pairs that cannot be made: too small a pool, an odd count, a tokenizer that splits a word."""


def _distinct(pool: Sequence[str], rng: random.Random, k: int, exclude: Sequence[str] = ()) -> list[str]:
    """``k`` distinct words of ``pool`` not in ``exclude``, in random order."""
    banned = set(exclude)
    candidates = [w for w in pool if w not in banned]
    if len(candidates) < k:
        raise ProbeError(f"a pool of {len(candidates)} usable words cannot give {k} distinct ones")
    return rng.sample(candidates, k)


def induction_document(pool: Sequence[str], rng: random.Random, span: tuple[int, int] = (4, 8)) -> list[str]:
    """A span of distinct random words, then the same span again: ``[w1 … wk w1 … wk]``."""
    words = _distinct(pool, rng, rng.randint(*span))
    return words + words


def copy_document(pool: Sequence[str], rng: random.Random, length: tuple[int, int] = (4, 8),
                  p_copy: float = 0.5, marker: str = COPY_MARKER) -> list[str]:
    """Random words; after each, with probability ``p_copy``, the marker and the word again."""
    words: list[str] = []
    for w in (rng.choice(pool) for _ in range(rng.randint(*length))):
        words.append(w)
        if rng.random() < p_copy:
            words += [marker, w]
    return words


def _row(prefix: list[str], good: str, bad: str, uid: str, term: str, pair_id: int) -> dict:
    """One BLiMP-schema row: the good and bad sentences are the prefix and one answer each."""
    return {
        "sentence_good": " ".join(prefix + [good]),
        "sentence_bad": " ".join(prefix + [bad]),
        "one_prefix_prefix": " ".join(prefix),
        "one_prefix_word_good": good,
        "one_prefix_word_bad": bad,
        "field": "mechanism",
        "linguistics_term": term,
        "UID": uid,
        "simple_LM_method": True,
        "one_prefix_method": True,
        "two_prefix_method": False,
        "lexically_identical": False,
        "pairID": str(pair_id),
    }


def _twinned(make, n_pairs: int, seed: int, what: str) -> list[dict]:
    """``n_pairs`` rows from ``make(rng) -> [(prefix, good, bad), (twin…)]``, distinct prefixes+answers."""
    if n_pairs % 2:
        raise ProbeError(f"n_pairs ({n_pairs}) must be even: {what} pairs come in twins")
    rng = random.Random(f"{seed}-{what}")
    rows: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for _ in range(50 * n_pairs):
        if len(rows) == n_pairs:
            return rows
        twins = make(rng)
        keys = [(" ".join(prefix), good) for prefix, good, _ in twins]
        if any(k in seen for k in keys):
            continue
        seen.update(keys)
        for prefix, good, bad in twins:
            rows.append(_row(prefix, good, bad, what, what, len(rows)))
    raise ProbeError(f"could not make {n_pairs} distinct {what} pairs from this pool; ask for fewer pairs")


def induction_pairs(pool: Sequence[str], n_pairs: int = 300, seed: int = 0,
                    span: tuple[int, int] = (5, 8)) -> list[dict]:
    """Induction minimal pairs (see the module docstring): ``k`` in ``span``, ``j`` in ``[2, k-1]``."""
    def make(rng: random.Random):
        k = rng.randint(*span)
        words = _distinct(pool, rng, k)
        j = rng.randint(2, k - 1)
        other = _distinct(pool, rng, 1, exclude=words)[0]
        twin = list(words)
        twin[j] = other  # the twin's span holds the other word at place j
        return [(words + words[:j], words[j], other), (twin + twin[:j], other, words[j])]

    return _twinned(make, n_pairs, seed, "induction")


def copy_pairs(pool: Sequence[str], n_pairs: int = 300, seed: int = 0, length: tuple[int, int] = (2, 6),
               marker: str = COPY_MARKER) -> list[dict]:
    """Previous-token (copy) minimal pairs: ``… w again`` → ``w`` (see the module docstring)."""
    def make(rng: random.Random):
        context = copy_document(pool, rng, length=(length[0] - 1, length[1] - 1), marker=marker)
        word, other = _distinct(pool, rng, 2)
        return [(context + [word, marker], word, other), (context + [other, marker], other, word)]

    return _twinned(make, n_pairs, seed, "previous_token")


# -- IOI (indirect-object identification) ------------------------------------------------------

# Wang et al. 2022's templates, each ending right before the indirect object. {first} and {second}
# are the two names in the order they are introduced; {subject} repeats one of them (the giver).
IOI_TEMPLATES = (
    "When {first} and {second} went to the {place}, {subject} gave a {object} to",
    "Then, {first} and {second} went to the {place}. {subject} gave a {object} to",
    "Then, {first} and {second} had a lot of fun at the {place}. {subject} gave a {object} to",
    "Then, {first} and {second} were working at the {place}. {subject} decided to give a {object} to",
    "Then, {first} and {second} were thinking about going to the {place}. {subject} wanted to give a {object} to",
    "Then, {first} and {second} had a long argument, and afterwards {subject} said to",
    "After {first} and {second} went to the {place}, {subject} gave a {object} to",
    "When {first} and {second} got a {object} at the {place}, {subject} decided to give it to",
    "When {first} and {second} got a {object} at the {place}, {subject} decided to give the {object} to",
    "While {first} and {second} were working at the {place}, {subject} gave a {object} to",
    "While {first} and {second} were commuting to the {place}, {subject} gave a {object} to",
    "After the lunch, {first} and {second} went to the {place}. {subject} gave a {object} to",
    "Afterwards, {first} and {second} went to the {place}. {subject} gave a {object} to",
    "Friends {first} and {second} found a {object} at the {place}. {subject} gave it to",
)
IOI_PLACES = ("store", "garden", "restaurant", "school", "hospital", "office", "station", "park")
IOI_OBJECTS = ("drink", "ring", "book", "basketball", "computer", "necklace", "snack", "letter")
IOI_ORDERS = ("ABBA", "BABA")  # ABBA: the indirect object is named first; BABA: the subject is
# Common first names (Wang et al.'s list); :func:`single_token_names` keeps those a tokenizer makes one token.
IOI_NAMES = tuple("""
Michael Christopher Jessica Matthew Ashley Jennifer Joshua Amanda Daniel David James Robert John Joseph
Andrew Ryan Brandon Jason Justin Sarah William Jonathan Stephanie Brian Nicole Nicholas Anthony Heather
Eric Elizabeth Adam Megan Melissa Kevin Steven Thomas Timothy Christina Kyle Rachel Laura Lauren Amber
Brittany Danielle Richard Kimberly Jeffrey Amy Crystal Michelle Tiffany Jeremy Benjamin Mark Emily Aaron
Charles Rebecca Jacob Stephen Patrick Sean Erin Jamie Kelly Samantha Nathan Sara Dustin Paul Angela Tyler
Scott Katherine Andrea Gregory Erica Mary Travis Lisa Kenneth Bryan Lindsey Kristen Jose Alexander Jesse
Katie Lindsay Shannon Vanessa Courtney Christine Alicia Cody Allison Bradley Samuel Tom Anna Peter Kate
""".split())


def ioi_prefix(template: str, indirect_object: str, subject: str, place: str, obj: str, order: str) -> str:
    """One IOI prefix: ``template`` with the names in ``order`` (ABBA or BABA) and the subject repeated."""
    if order not in IOI_ORDERS:
        raise ProbeError(f"IOI order {order!r} must be one of {', '.join(IOI_ORDERS)}")
    first, second = (indirect_object, subject) if order == "ABBA" else (subject, indirect_object)
    return template.format(first=first, second=second, subject=subject, place=place, object=obj)


def ioi_pairs(names: Sequence[str], n_pairs: int = 300, seed: int = 0,
              templates: Sequence[str] = IOI_TEMPLATES) -> list[dict]:
    """IOI minimal pairs: good = the indirect object, bad = the subject; the twin swaps the two names."""
    def make(rng: random.Random):
        template, order = rng.choice(templates), rng.choice(IOI_ORDERS)
        place, obj = rng.choice(IOI_PLACES), rng.choice(IOI_OBJECTS)
        io, s = _distinct(names, rng, 2)
        return [(ioi_prefix(template, io, s, place, obj, order).split(" "), io, s),
                (ioi_prefix(template, s, io, place, obj, order).split(" "), s, io)]

    return _twinned(make, n_pairs, seed, "ioi")


# -- pools for a real tokenizer -----------------------------------------------------------------

def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids without special tokens, as :func:`crosstime.tasks.build_pairs` encodes texts."""
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []


def _word_ids(tokenizer, words: list[str]) -> dict[str, tuple[int, int]]:
    """For each word that is one token both at the start of a text and after a space, its two ids
    ``(first, later)``: ``"w"`` and ``" w"`` differ for byte-level BPE (``w``, ``Ġw``) and are the
    same for SentencePiece (``▁w``) and word-level tokenizers. ``w w`` must encode as exactly those two."""
    unk = tokenizer.unk_token_id
    ids = {}
    for word, alone, twice in zip(words, _encode(tokenizer, words), _encode(tokenizer, [f"{w} {w}" for w in words])):
        if len(alone) == 1 and len(twice) == 2 and twice[0] == alone[0] and unk not in twice:
            ids[word] = (twice[0], twice[1])
    return ids


def _joined_ok(tokenizer, words: list[str], ids: dict[str, tuple[int, int]], chunk: int = 32) -> list[str]:
    """``words`` less those that do not stay one token each in a space-separated run of pool words
    (a merge across the space): each run of ``chunk`` words must encode to its words' ids."""
    kept: list[str] = []
    for start in range(0, len(words), chunk):
        run = words[start:start + chunk]
        while run:
            expected = [ids[run[0]][0]] + [ids[w][1] for w in run[1:]]
            got = _encode(tokenizer, [" ".join(run)])[0]
            if got == expected:
                break
            bad = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(run) - 1))
            del run[bad]  # the word whose token did not come out as itself
        kept += run
    return kept


def single_token_words(tokenizer, limit: int | None = None, min_len: int = 3) -> list[str]:
    """Lower-case ASCII words of at least ``min_len`` letters that ``tokenizer`` turns into one token,
    both as a text's first word and after a space, and one token each in a space-separated run of
    the whole pool (a word that merges with its neighbour there is dropped). That run checks
    neighbours in pool order only; :func:`check_pairs` checks every probe's actual text.

    Both forms are required because a probe prefix starts with a pool word and has no leading space
    (byte-level BPE has no ``Ġ`` there); requiring it keeps the probe texts unchanged (no lead word),
    so the toy world's training documents and pairs stay the same. Order: by token id (for BPE, the
    order of merges: frequent words first), deterministic; at most ``limit`` words.
    """
    special = set(tokenizer.all_special_ids)
    seen: set[str] = set()
    candidates = []
    for token, tok_id in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
        if tok_id in special:
            continue
        word = tokenizer.convert_tokens_to_string([token]).strip()
        if len(word) >= min_len and word.isascii() and word.isalpha() and word.islower() and word not in seen:
            seen.add(word)
            candidates.append(word)
    ids = _word_ids(tokenizer, candidates)
    words = _joined_ok(tokenizer, [w for w in candidates if w in ids], ids)
    return words[:limit] if limit is not None else words


def single_token_names(tokenizer, names: Sequence[str] = IOI_NAMES) -> list[str]:
    """The ``names`` that ``tokenizer`` makes one token after a space (where IOI asks for them), in order."""
    names = list(names)
    later = _encode(tokenizer, [f"{n} {n}" for n in names])
    alone = _encode(tokenizer, names)
    unk = tokenizer.unk_token_id
    return [n for n, a, t in zip(names, alone, later) if len(t) == len(a) + 1 and t[:len(a)] == a and unk not in t]


def _row_tokens_problem(prefix: list[int], good: list[int], bad: list[int], n_words: int | None,
                        unk: int | None) -> str | None:
    """What is wrong with one row's encodings (None: the answers are one differing token each)."""
    for name, ids in (("good", good), ("bad", bad)):
        if len(ids) != len(prefix) + 1 or ids[:len(prefix)] != prefix:
            return f"the {name} answer is not one token after the prefix"
    if good[-1] == bad[-1]:
        return "the good and bad answers are the same token"
    if unk is not None and (unk in good or unk in bad):
        return "a word is the unknown token"
    if n_words is not None and len(prefix) != n_words:
        return f"the prefix's {n_words} words are {len(prefix)} tokens"
    return None


def check_pairs(rows: list[dict], tokenizer, words_are_tokens: bool = True) -> None:
    """Raise :class:`ProbeError` naming the first row whose good and bad answers are not one differing
    token each after its prefix (or, with ``words_are_tokens``, whose prefix is not one token per word)."""
    prefixes = [r["one_prefix_prefix"] for r in rows]
    encoded = zip(_encode(tokenizer, prefixes),
                  _encode(tokenizer, [r["one_prefix_prefix"] + " " + r["one_prefix_word_good"] for r in rows]),
                  _encode(tokenizer, [r["one_prefix_prefix"] + " " + r["one_prefix_word_bad"] for r in rows]))
    for i, (row, (prefix, good, bad)) in enumerate(zip(rows, encoded)):
        n_words = len(row["one_prefix_prefix"].split()) if words_are_tokens else None
        problem = _row_tokens_problem(prefix, good, bad, n_words, tokenizer.unk_token_id)
        if problem:
            raise ProbeError(f"row {i} (pairID {row['pairID']}, {row['UID']}: {row['one_prefix_prefix']!r} → "
                             f"{row['one_prefix_word_good']!r}/{row['one_prefix_word_bad']!r}): {problem} "
                             f"for this tokenizer")


# -- the tasks for one tokenizer -------------------------------------------------------------

PROBE_KINDS = ("induction", "previous_token", "ioi")
MIN_POOL = 20  # fewer single-token words make the random spans repeat too often to be random
MIN_NAMES = 8


def make_probe_rows(kind: str, tokenizer, n_pairs: int = 300, seed: int = 0) -> list[dict]:
    """``n_pairs`` checked rows of probe ``kind`` (:data:`PROBE_KINDS`) for ``tokenizer``."""
    if kind not in PROBE_KINDS:
        raise ProbeError(f"unknown probe kind {kind!r}; choose one of {', '.join(PROBE_KINDS)}")
    if kind == "ioi":
        names = single_token_names(tokenizer)
        if len(names) < MIN_NAMES:
            raise ProbeError(f"this tokenizer makes only {len(names)} of the {len(IOI_NAMES)} IOI names one token "
                             f"(ioi needs {MIN_NAMES}); use a tokenizer of an English model")
        rows = ioi_pairs(names, n_pairs, seed)
        check_pairs(rows, tokenizer, words_are_tokens=False)
        return rows
    pool = [w for w in single_token_words(tokenizer) if w != COPY_MARKER]
    if kind == "previous_token" and COPY_MARKER not in _word_ids(tokenizer, [COPY_MARKER]):
        raise ProbeError(f"this tokenizer splits the copy marker {COPY_MARKER!r} (previous_token needs it one "
                         f"token, at a text's start and after a space)")
    if len(pool) < MIN_POOL:
        raise ProbeError(f"this tokenizer has only {len(pool)} single-token lower-case words ({kind} needs "
                         f"{MIN_POOL}); use a tokenizer with a larger vocabulary")
    rows = induction_pairs(pool, n_pairs, seed) if kind == "induction" else copy_pairs(pool, n_pairs, seed)
    check_pairs(rows, tokenizer)
    return rows


def rows_jsonl(rows: list[dict]) -> str:
    """The rows as JSONL text, one row a line (the schema :func:`crosstime.tasks.load_jsonl_task` reads)."""
    return "".join(json.dumps(row) + "\n" for row in rows)
