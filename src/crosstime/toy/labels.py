"""The toy grammar's own labels, recovered from text by a rule-based parser.

:func:`parse_all` reads the words of one line the way :class:`~crosstime.toy.grammar.Grammar`
writes them (clauses, subjects with PP or relative-clause attractors, conjoined subjects,
objects with a PP or a coordinated NP, VP coordination, clause coordination with and/but) and
returns every structure the grammar could have produced them with, each with its agreements
(verb index, controller indices) in the generator's order (:attr:`Sentence.agreements`:
increasing verb index). The grammar's own constraints prune the search: verb number equals
the controller's, ``who`` only after an animate noun and ``which`` after an inanimate one, an
object relative's subject is animate, an inanimate subject takes only a copula or *have*, a
coordinated copula adjective differs from the first. A line that is not a grammar sentence
(the probe documents of :mod:`crosstime.probes`: random nouns and adjectives, the copy
marker) has no parse.

Ambiguity. A few strings have two derivations the generator can produce: after a transitive
verb, ``… sees the cat and the man and the women run .`` is an object coordination followed by
a clause (controller ``women``) or a plain object followed by a clause with a conjoined subject
(controllers ``man``, ``women``). No parser can tell them apart. They are rare and the two
readings equally frequent (172 ambiguous lines in 200,000 sentences of seeds 0–9, 86 of each
reading), so :func:`parse` returns the first parse in search order (object coordination first)
and :func:`parse_all` all of them.

Labels (:func:`line_labels`), per word of a parsed line:

- ``subject_number`` (0 none, 1 singular, 2 plural): the words from a subject's first
  controller noun up to the word before its finite verb carry the subject's number; for a
  relative clause's own verb likewise (its controller is the head noun for a subject
  relative, the inner noun for an object relative). Where spans nest (the inner subject of
  an object relative inside the outer subject) the nearest verb wins: the word carries the
  number the next finite verb needs. Coordinated VPs (``runs and sleeps``) add no span.
- ``attractor`` (bool): the words of a PP or relative clause inside a clause's subject
  (preposition or relativiser up to the clause's last word), i.e. between the subject's head
  noun and its verb; a frequency adverb before the verb is not part of it.
- ``subject_end`` (bool): the word right before a clause's or a relative clause's finite verb
  (where the model must produce the verb's number); coordinated VPs' verbs are left out (the
  word before them is ``and``, not the end of a subject).

:func:`context_labels` labels a context of token ids: only complete lines (from a ``<bos>``
other than the context's first token to the next ``.``) are labelled; every other position
gets -1 (unlabelled), as do the ``<bos>`` tokens themselves. :class:`GrammarLabeller` holds
a vocabulary and labels contexts so (the toy series' token labeller,
:meth:`crosstime.series.CheckpointSeries.labeller`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from crosstime.toy.grammar import (
    ADJECTIVES,
    ANIMATE,
    COPULA,
    DET_ANY,
    DET_PL,
    DET_SG,
    FREQUENCY_ADVERBS,
    HAVE,
    INTRANSITIVE,
    MANNER_ADVERBS,
    NOUN_NUMBER,
    PL,
    PREPOSITIONS,
    SG,
    TRANSITIVE,
    VERB_NUMBER,
    Agreement,
)

LABELS = ("subject_number", "attractor", "subject_end")
UNLABELLED = -1
NUMBER_GROUPS = {"none": 0, SG: 1, PL: 2}  # subject_number group ids

_ANIMATE = {form for pair in ANIMATE for form in pair}
_DET_NUMBER = {**{d: SG for d in DET_SG + ["an"]}, **{d: PL for d in DET_PL}, **{d: None for d in DET_ANY}}
_INTRANSITIVE = {f for p in INTRANSITIVE for f in p}
_TRANSITIVE = {f for p in TRANSITIVE for f in p}
_COPULA = {f for p in COPULA for f in p}
_HAVE = set(HAVE)
_ADJECTIVES, _PREPOSITIONS = set(ADJECTIVES), set(PREPOSITIONS)
_FREQUENCY, _MANNER = set(FREQUENCY_ADVERBS), set(MANNER_ADVERBS)


@dataclass(frozen=True)
class Parse:
    """One derivation of a line: ``agreements`` in increasing verb order, each with its ``role``
    (``clause``, ``relative`` or ``coordinated``), and the ``attractors`` (half-open word spans of
    the PPs / relative clauses inside clause subjects)."""

    agreements: tuple[Agreement, ...]
    roles: tuple[str, ...]
    attractors: tuple[tuple[int, int], ...]


# A partial derivation: the next word index and the events so far, each
# ("agree", verb, controllers, role) or ("attractor", start, end).
_Events = tuple[tuple, ...]


class _Parser:
    """Backtracking recursive descent over ``words``; every method yields the alternatives."""

    def __init__(self, words: Sequence[str]):
        self.w = list(words)

    def at(self, i: int) -> str | None:
        return self.w[i] if i < len(self.w) else None

    def np(self, i: int, animate: bool | None = None) -> Iterator[tuple[int, int, str, bool]]:
        """``Det (Adj) N`` -> (next index, head index, number, animate)."""
        det = self.at(i)
        if det not in _DET_NUMBER:
            return
        j = i + 1 + (self.at(i + 1) in _ADJECTIVES)
        noun = self.at(j)
        if noun not in NOUN_NUMBER:
            return
        number, noun_animate = NOUN_NUMBER[noun], noun in _ANIMATE
        if _DET_NUMBER[det] not in (None, number) or (animate is not None and animate != noun_animate):
            return
        yield j + 1, j, number, noun_animate

    def verb(self, i: int, forms: set[str], number: str, controllers: tuple[int, ...], role: str):
        w = self.at(i)
        if w in forms and VERB_NUMBER[w] == number:
            yield i + 1, (("agree", i, controllers, role),)

    def pp(self, i: int) -> Iterator[tuple[int, _Events]]:
        if self.at(i) in _PREPOSITIONS:
            for j, _, _, _ in self.np(i + 1):
                yield j, ()

    def rc(self, i: int, head: int, number: str, animate: bool) -> Iterator[tuple[int, _Events]]:
        if self.at(i) not in ("that", "who" if animate else "which"):
            return
        i += 1
        if animate:  # subject relative: the man who sees the dogs
            for j, ev in self.verb(i, _TRANSITIVE, number, (head,), "relative"):
                for k, _, _, _ in self.np(j):
                    yield k, ev
        else:  # the book which is near the houses / which has the keys
            for j, ev in self.verb(i, _COPULA, number, (head,), "relative"):
                if self.at(j) in _PREPOSITIONS:
                    for k, _, _, _ in self.np(j + 1):
                        yield k, ev
            for j, ev in self.verb(i, _HAVE, number, (head,), "relative"):
                for k, _, _, _ in self.np(j):
                    yield k, ev
        for j, inner, inner_number, _ in self.np(i, animate=True):  # object relative: the man that the dogs see
            yield from self.verb(j, _TRANSITIVE, inner_number, (inner,), "relative")

    def subject(self, i: int) -> Iterator[tuple[int, _Events, tuple[int, ...], str, bool]]:
        """-> (next index, events, controllers, number, animate)."""
        for j, head, number, animate in self.np(i):
            yield j, (), (head,), number, animate
            for k, ev in self.pp(j):
                yield k, ev + (("attractor", j, k),), (head,), number, animate
            for k, ev in self.rc(j, head, number, animate):
                yield k, ev + (("attractor", j, k),), (head,), number, animate
            if self.at(j) == "and":
                for k, b, _, animate_b in self.np(j + 1):
                    yield k, (), (head, b), PL, animate and animate_b

    def object(self, i: int) -> Iterator[tuple[int, _Events]]:
        for j, _, _, _ in self.np(i):
            if self.at(j) == "and":  # coordination first: parse()'s choice on the rare ambiguous lines
                for k, _, _, _ in self.np(j + 1):
                    yield k, ()
            yield j, ()
            yield from self.pp(j)

    def vp(self, i: int, ctrl: tuple[int, ...], number: str, animate: bool, role: str = "clause"):
        """A verb phrase; ``role`` "coordinated" for the second of coordinated VPs (verb first)."""
        start = i
        if role == "clause" and animate and self.at(i) in _FREQUENCY:
            i += 1
        lexical: list[tuple[int, _Events]] = []
        if animate or role == "coordinated":
            for j, ev in self.verb(i, _INTRANSITIVE, number, ctrl, role):
                lexical.append((j, ev))
                if self.at(j) in _MANNER:
                    lexical.append((j + 1, ev))
            for j, ev in self.verb(i, _TRANSITIVE, number, ctrl, role):
                lexical += [(k, ev + ev2) for k, ev2 in self.object(j)]
        for j, ev in lexical:
            yield j, ev
            if self.at(j) == "and":
                for k, ev2 in self.vp(j + 1, ctrl, number, animate, "coordinated"):
                    yield k, ev + ev2
        if i != start or role == "coordinated":
            return  # copula and have take no adverb and are never coordinated VPs
        for j, ev in self.verb(i, _COPULA, number, ctrl, role):
            adjective = self.at(j)
            if adjective in _ADJECTIVES:
                yield j + 1, ev
                if self.at(j + 1) == "and" and self.at(j + 2) in _ADJECTIVES and self.at(j + 2) != adjective:
                    yield j + 3, ev
            for k, ev2 in self.pp(j):
                yield k, ev + ev2
        for j, ev in self.verb(i, _HAVE, number, ctrl, role):
            for k, ev2 in self.object(j):
                yield k, ev + ev2

    def clause(self, i: int) -> Iterator[tuple[int, _Events]]:
        for j, ev, ctrl, number, animate in self.subject(i):
            for k, ev2 in self.vp(j, ctrl, number, animate):
                yield k, ev + ev2

    def sentence(self) -> Iterator[_Events]:
        end = len(self.w) - 1
        if end < 1 or self.w[end] != ".":
            return
        for j, ev in self.clause(0):
            if j == end:
                yield ev
            elif self.at(j) in ("and", "but"):
                for k, ev2 in self.clause(j + 1):
                    if k == end:
                        yield ev + ev2


def _to_parse(events: _Events) -> Parse:
    agree = sorted((e for e in events if e[0] == "agree"), key=lambda e: e[1])
    return Parse(tuple(Agreement(v, c) for _, v, c, _ in agree), tuple(r for _, _, _, r in agree),
                 tuple((s, e) for kind, s, e, *_ in events if kind == "attractor"))


def parse_all(words: Sequence[str]) -> list[Parse]:
    """Every derivation of ``words`` (one line, ending with ``.``) by the grammar; [] for none."""
    return [_to_parse(ev) for ev in _Parser(words).sentence()]


def parse(words: Sequence[str]) -> Parse | None:
    """The first derivation of ``words`` in search order (see the module docstring), or None when
    the line is not a grammar sentence."""
    return next((_to_parse(ev) for ev in _Parser(words).sentence()), None)


def parse_agreements(words: Sequence[str]) -> list[Agreement] | None:
    """The agreements of ``words`` as :attr:`Sentence.agreements` records them, or None."""
    found = parse(words)
    return None if found is None else list(found.agreements)


def line_labels(words: Sequence[str], found: Parse) -> dict[str, np.ndarray]:
    """Per-word labels of a parsed line (see the module docstring): ``subject_number`` int8 [n]
    (0 none, 1 singular, 2 plural), ``attractor`` and ``subject_end`` int8 [n] (0/1)."""
    n = len(words)
    number = np.zeros(n, dtype=np.int8)
    attractor = np.zeros(n, dtype=np.int8)
    subject_end = np.zeros(n, dtype=np.int8)
    spans = [(a, r) for a, r in zip(found.agreements, found.roles) if r != "coordinated"]
    for a, _ in sorted(spans, key=lambda ar: -ar[0].verb):  # nearest verb last, so it wins
        group = PL if len(a.controllers) > 1 else NOUN_NUMBER[words[a.controllers[0]]]
        number[min(a.controllers):a.verb] = NUMBER_GROUPS[group]
        subject_end[a.verb - 1] = 1
    for start, end in found.attractors:
        attractor[start:end] = 1
    return {"subject_number": number, "attractor": attractor, "subject_end": subject_end}


def context_labels(ids: np.ndarray, id_to_word: Sequence[str], bos_id: int) -> dict[str, np.ndarray]:
    """Labels of one context of token ids ``[T]``: {label: int8 [T]}, -1 outside complete parsed lines.

    A complete line runs from a ``<bos>`` after position 0 (the context's first line may start
    mid-sentence, its BOS inserted by the packing) to the first ``.`` before the next ``<bos>``;
    a line cut by the context's end, or that does not parse, stays unlabelled.
    """
    T = len(ids)
    out = {name: np.full(T, UNLABELLED, dtype=np.int8) for name in LABELS}
    starts = [int(b) for b in np.flatnonzero(ids == bos_id) if b > 0]
    for b, nxt in zip(starts, starts[1:] + [T]):
        words = [id_to_word[int(t)] for t in ids[b + 1:nxt]]
        if "." not in words:
            continue
        words = words[:words.index(".") + 1]
        found = parse(words)
        if found is None:
            continue
        for name, values in line_labels(words, found).items():
            out[name][b + 1:b + 1 + len(words)] = values
    return out


@dataclass(frozen=True)
class GrammarLabeller:
    """The grammar's labels (:data:`LABELS`) of contexts of token ids, over one vocabulary:
    ``id_to_word`` (token id -> word) and ``bos_id`` (the line-start token)."""

    id_to_word: tuple[str, ...]
    bos_id: int

    @property
    def properties(self) -> tuple[str, ...]:
        return LABELS

    def label(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """:func:`context_labels` of one context ``[T]``: {label: int8 [T]}."""
        return context_labels(ids, self.id_to_word, self.bos_id)
