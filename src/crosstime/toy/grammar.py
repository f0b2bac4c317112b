"""A probabilistic grammar of English-like sentences with subject–verb number agreement.

The grammar is small but has the structure that makes agreement interesting:

- noun lemmas in singular and plural, regular (dog/dogs) and irregular (man/men, child/children);
- intransitive and transitive verbs in both numbers, is/are, was/were, has/have;
- adjectives, adverbs, prepositions, number-marked (a, this, these, several …) and
  unmarked (the) determiners;
- relative clauses (that/who/which; subject- and object-relatives), coordination of
  clauses, verb phrases and noun phrases (a conjoined subject takes a plural verb);
- subject noun phrases carrying *attractors*: a noun inside a prepositional phrase or a
  relative clause, of opposite number half the time, standing between the subject's head
  noun and its verb.

Every generated :class:`Sentence` records, for each finite verb, which noun(s) control its
number (:attr:`Sentence.agreements`), so tests can check agreement independently of the
generator, and minimal pairs know exactly which word to swap.

Minimal pairs (:func:`make_pairs`) follow BLiMP's JSONL schema. Each pair type is
generated in *twins* that differ in every number (head noun, attractor, verb): a model that
ignores the subject (e.g. always prefers "is") scores exactly 50%.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from crosstime.probes import COPY_MARKER

SG, PL = "sg", "pl"


def _other(number: str) -> str:
    return PL if number == SG else SG


# -- lexicon ---------------------------------------------------------------------------
# (singular, plural). Animate nouns can do things (verbs, "who"); inanimate ones take "which".
ANIMATE_REGULAR = [
    ("dog", "dogs"), ("cat", "cats"), ("horse", "horses"), ("bird", "birds"), ("cow", "cows"),
    ("pig", "pigs"), ("duck", "ducks"), ("rabbit", "rabbits"), ("bear", "bears"), ("lion", "lions"),
    ("tiger", "tigers"), ("monkey", "monkeys"), ("snake", "snakes"), ("frog", "frogs"), ("fox", "foxes"),
    ("student", "students"), ("teacher", "teachers"), ("doctor", "doctors"), ("farmer", "farmers"),
    ("pilot", "pilots"), ("writer", "writers"), ("singer", "singers"), ("dancer", "dancers"),
    ("painter", "painters"), ("lawyer", "lawyers"), ("nurse", "nurses"), ("king", "kings"),
    ("queen", "queens"), ("boy", "boys"), ("girl", "girls"), ("friend", "friends"),
    ("neighbor", "neighbors"), ("baker", "bakers"), ("driver", "drivers"), ("player", "players"),
    ("artist", "artists"), ("soldier", "soldiers"), ("guest", "guests"),
]
ANIMATE_IRREGULAR = [
    ("man", "men"), ("woman", "women"), ("child", "children"), ("person", "people"),
    ("mouse", "mice"), ("goose", "geese"), ("ox", "oxen"), ("wolf", "wolves"), ("thief", "thieves"),
    ("wife", "wives"), ("calf", "calves"), ("louse", "lice"),
]
INANIMATE_REGULAR = [
    ("book", "books"), ("car", "cars"), ("house", "houses"), ("table", "tables"), ("chair", "chairs"),
    ("box", "boxes"), ("tree", "trees"), ("flower", "flowers"), ("garden", "gardens"),
    ("window", "windows"), ("door", "doors"), ("road", "roads"), ("river", "rivers"), ("hill", "hills"),
    ("lake", "lakes"), ("city", "cities"), ("song", "songs"), ("letter", "letters"),
    ("picture", "pictures"), ("bottle", "bottles"), ("cup", "cups"), ("key", "keys"), ("bag", "bags"),
    ("lamp", "lamps"), ("clock", "clocks"), ("ship", "ships"), ("train", "trains"),
    ("bridge", "bridges"), ("tower", "towers"), ("school", "schools"), ("park", "parks"),
    ("church", "churches"), ("bus", "buses"), ("stone", "stones"), ("boat", "boats"),
    ("village", "villages"), ("wall", "walls"), ("basket", "baskets"),
]
INANIMATE_IRREGULAR = [
    ("foot", "feet"), ("tooth", "teeth"), ("knife", "knives"), ("leaf", "leaves"), ("shelf", "shelves"),
    ("loaf", "loaves"), ("cactus", "cacti"), ("fungus", "fungi"), ("crisis", "crises"),
    ("phenomenon", "phenomena"), ("criterion", "criteria"),
]
ANIMATE = ANIMATE_REGULAR + ANIMATE_IRREGULAR
INANIMATE = INANIMATE_REGULAR + INANIMATE_IRREGULAR
NOUNS = ANIMATE + INANIMATE
IRREGULAR = ANIMATE_IRREGULAR + INANIMATE_IRREGULAR
REGULAR = ANIMATE_REGULAR + INANIMATE_REGULAR
_ANIMATE_SET = {form for pair in ANIMATE for form in pair}

# (3rd person singular, plural)
INTRANSITIVE = [
    ("sleeps", "sleep"), ("runs", "run"), ("laughs", "laugh"), ("smiles", "smile"), ("swims", "swim"),
    ("waits", "wait"), ("works", "work"), ("sings", "sing"), ("dances", "dance"), ("jumps", "jump"),
    ("arrives", "arrive"), ("rests", "rest"), ("walks", "walk"), ("falls", "fall"), ("shouts", "shout"),
    ("wins", "win"),
]
TRANSITIVE = [
    ("sees", "see"), ("likes", "like"), ("knows", "know"), ("finds", "find"), ("follows", "follow"),
    ("helps", "help"), ("watches", "watch"), ("admires", "admire"), ("chases", "chase"),
    ("loves", "love"), ("remembers", "remember"), ("visits", "visit"), ("carries", "carry"),
    ("paints", "paint"), ("hates", "hate"), ("greets", "greet"),
]
COPULA = [("is", "are"), ("was", "were")]
HAVE = ("has", "have")
ALL_VERBS = INTRANSITIVE + TRANSITIVE + COPULA + [HAVE]
VERB_NUMBER = {**{sg: SG for sg, _ in ALL_VERBS}, **{pl: PL for _, pl in ALL_VERBS}}
NOUN_NUMBER = {**{sg: SG for sg, _ in NOUNS}, **{pl: PL for _, pl in NOUNS}}

ADJECTIVES = [
    "big", "small", "red", "old", "young", "happy", "tall", "quiet", "clever", "brave", "tired",
    "hungry", "green", "new", "angry", "busy", "famous", "lazy", "kind", "strange",
]
FREQUENCY_ADVERBS = ["often", "rarely", "always", "never", "usually", "sometimes"]  # before a lexical verb
MANNER_ADVERBS = ["quickly", "slowly", "quietly", "happily"]  # after an intransitive verb
ADVERBS = FREQUENCY_ADVERBS + MANNER_ADVERBS
PREPOSITIONS = ["near", "behind", "beside", "with", "under", "above", "from", "without", "around"]
DET_SG = ["a", "this", "each", "every", "one"]  # "a" becomes "an" before a vowel
DET_PL = ["these", "those", "several", "many", "two", "three"]
DET_ANY = ["the"]
RELATIVIZERS = ["that", "who", "which"]
CONJUNCTIONS = ["and", "but"]
PUNCTUATION = ["."]
# The probe documents (crosstime.probes) use random content words and the copy marker.
# Verbs are left out of the pool so random word sequences add no agreement statistics.
PROBE_POOL = [f for p in NOUNS for f in p] + ADJECTIVES


def vocabulary() -> list[str]:
    """Every word the grammar can produce, in a fixed order."""
    words: list[str] = []
    for group in (
        DET_ANY, DET_SG, ["an"], DET_PL, [f for p in NOUNS for f in p], [f for p in ALL_VERBS for f in p],
        ADJECTIVES, ADVERBS, PREPOSITIONS, RELATIVIZERS, CONJUNCTIONS, PUNCTUATION, [COPY_MARKER],
    ):
        for w in group:
            if w not in words:
                words.append(w)
    return words


# -- sentences -------------------------------------------------------------------------
@dataclass
class Agreement:
    """Finite verb at ``verb`` agrees with the noun(s) at ``controllers`` (word indices).

    Several controllers = a conjoined subject ("the man and the dogs"), which is plural.
    """

    verb: int
    controllers: tuple[int, ...]


@dataclass
class Sentence:
    words: list[str] = field(default_factory=list)
    agreements: list[Agreement] = field(default_factory=list)

    @property
    def text(self) -> str:
        return render(self.words)


def render(words: list[str]) -> str:
    """``['the', 'dog', 'runs', '.']`` → ``'the dog runs.'`` (punctuation attached)."""
    out = ""
    for w in words:
        out += w if (w in PUNCTUATION or not out) else " " + w
    return out


def expected_number(words: list[str], controllers: tuple[int, ...]) -> str:
    """Number a verb must have given its controller nouns (read from the lexicon)."""
    if len(controllers) > 1:
        return PL
    return NOUN_NUMBER[words[controllers[0]]]


def check_agreement(sentence: Sentence) -> list[str]:
    """Problems with ``sentence``'s agreement, from the lexicon alone (empty = fine).

    Checks that every finite verb form in the sentence is annotated and that its number
    matches its controller(s).
    """
    problems = []
    annotated = {a.verb for a in sentence.agreements}
    for i, w in enumerate(sentence.words):
        if w in VERB_NUMBER and i not in annotated:
            problems.append(f"verb {w!r} at {i} has no controller")
    for a in sentence.agreements:
        verb = sentence.words[a.verb]
        if any(sentence.words[c] not in NOUN_NUMBER for c in a.controllers):
            problems.append(f"controller of {verb!r} is not a noun")
            continue
        want = expected_number(sentence.words, a.controllers)
        if VERB_NUMBER.get(verb) != want:
            problems.append(f"{verb!r} at {a.verb} should be {want}")
    return problems


class Grammar:
    """A seeded sampler of sentences. All randomness comes from one ``random.Random``."""

    def __init__(self, seed: int = 0, p_pp: float = 0.3, p_rc: float = 0.25, p_adj: float = 0.3,
                 p_adv: float = 0.15, p_coord_clause: float = 0.12, p_coord_vp: float = 0.1,
                 p_coord_subject: float = 0.04, p_marked_det: float = 0.35):
        self.rng = random.Random(seed)
        self.p_pp, self.p_rc, self.p_adj, self.p_adv = p_pp, p_rc, p_adj, p_adv
        self.p_coord_clause, self.p_coord_vp, self.p_coord_subject = p_coord_clause, p_coord_vp, p_coord_subject
        self.p_marked_det = p_marked_det

    # small helpers ------------------------------------------------------------------
    def _pick(self, options):
        """One uniform draw. Always consumes exactly one ``random()`` (``random.choice`` may
        consume more for some list lengths), so singular/plural twins replay the same stream
        and share every word except the number-marked ones."""
        return options[int(self.rng.random() * len(options))]

    def _number(self) -> str:
        return self._pick((SG, PL))

    def _det(self, number: str, marked: bool | None = None) -> str:
        if marked is None:
            marked = self.rng.random() < self.p_marked_det
        if not marked:
            return "the"
        return self._pick(DET_SG if number == SG else DET_PL)

    def np(self, s: Sentence, number: str, animate: bool | None = None, lemma=None, marked: bool | None = None,
           adj: bool | None = None) -> tuple[int, bool]:
        """Append ``Det (Adj) N``; return the head noun's index and animacy."""
        if lemma is None:
            if animate is None:
                animate = self.rng.random() < 0.6
            lemma = self._pick(ANIMATE if animate else INANIMATE)
        animate = lemma[0] in _ANIMATE_SET
        det = self._det(number, marked)
        words = []
        if adj if adj is not None else self.rng.random() < self.p_adj:
            words.append(self._pick(ADJECTIVES))
        noun = lemma[0] if number == SG else lemma[1]
        words.append(noun)
        if det == "a" and words[0][0] in "aeiou":
            det = "an"
        s.words.append(det)
        s.words.extend(words)
        return len(s.words) - 1, animate

    def _finite(self, s: Sentence, pair: tuple[str, str], number: str, controllers: tuple[int, ...]) -> None:
        s.words.append(pair[0] if number == SG else pair[1])
        s.agreements.append(Agreement(len(s.words) - 1, controllers))

    # phrases -------------------------------------------------------------------------
    def pp(self, s: Sentence, number: str | None = None) -> int:
        s.words.append(self._pick(PREPOSITIONS))
        head, _ = self.np(s, number or self._number())
        return head

    def rc(self, s: Sentence, head: int, head_number: str, animate: bool, number: str | None = None,
           kind: str | None = None) -> int:
        """Relative clause on the noun at ``head``; returns the index of the noun inside it."""
        s.words.append(self._pick(["that", "who" if animate else "which"]))
        kind = kind or self._pick(("subject", "object"))
        inner_number = number or self._number()
        if kind == "subject":  # the man who sees the dogs
            if animate:
                self._finite(s, self._pick(TRANSITIVE), head_number, (head,))
            else:
                self._finite(s, self._pick(COPULA + [HAVE]), head_number, (head,))
                if s.words[-1] not in ("has", "have"):  # "which is near the house"
                    s.words.append(self._pick(PREPOSITIONS))
            inner, _ = self.np(s, inner_number)
        else:  # the man that the dogs see
            inner, _ = self.np(s, inner_number, animate=True)
            self._finite(s, self._pick(TRANSITIVE), inner_number, (inner,))
        return inner

    def subject(self, s: Sentence, number: str, attractor: str | None = None, animate: bool | None = None,
                lemma=None, marked: bool | None = None, adj: bool | None = None,
                attractor_number: str | None = None, rc_kind: str | None = None) -> tuple[tuple[int, ...], str, bool]:
        """A subject NP; returns (controller indices, number, animate).

        ``attractor``: None (sampled), "none", "pp" or "rc".
        """
        if attractor is None and lemma is None and self.rng.random() < self.p_coord_subject:
            a, anim_a = self.np(s, self._number())
            s.words.append("and")
            b, anim_b = self.np(s, self._number())
            return (a, b), PL, anim_a and anim_b
        head, animate = self.np(s, number, animate=animate, lemma=lemma, marked=marked, adj=adj)
        if attractor is None:
            r = self.rng.random()
            attractor = "pp" if r < self.p_pp else "rc" if r < self.p_pp + self.p_rc else "none"
        if attractor == "pp":
            self.pp(s, attractor_number)
        elif attractor == "rc":
            self.rc(s, head, number, animate, attractor_number, rc_kind)
        return (head,), number, animate

    def vp(self, s: Sentence, controllers: tuple[int, ...], number: str, animate: bool, kind: str | None = None) -> None:
        """A verb phrase whose finite verb agrees with ``controllers``."""
        if kind is None:
            kinds = ["intransitive", "transitive", "copula", "have"] if animate else ["copula", "copula", "have"]
            kind = self._pick(kinds)
            if kind in ("intransitive", "transitive") and self.rng.random() < self.p_adv:
                s.words.append(self._pick(FREQUENCY_ADVERBS))
        if kind == "intransitive":
            self._finite(s, self._pick(INTRANSITIVE), number, controllers)
            if self.rng.random() < 0.3:
                s.words.append(self._pick(MANNER_ADVERBS))
        elif kind == "transitive":
            self._finite(s, self._pick(TRANSITIVE), number, controllers)
            self.object(s)
        elif kind == "copula":
            self._finite(s, self._pick(COPULA), number, controllers)
            if self.rng.random() < 0.7:
                s.words.append(self._pick(ADJECTIVES))
                if self.rng.random() < 0.1:
                    s.words.append("and")
                    s.words.append(self._pick([a for a in ADJECTIVES if a != s.words[-2]]))
            else:
                self.pp(s)
        else:
            self._finite(s, HAVE, number, controllers)
            self.object(s)
        if kind in ("intransitive", "transitive") and self.rng.random() < self.p_coord_vp:
            s.words.append("and")
            self.vp(s, controllers, number, animate, kind=self._pick(("intransitive", "transitive")))

    def object(self, s: Sentence) -> None:
        self.np(s, self._number())
        r = self.rng.random()
        if r < 0.15:
            self.pp(s)
        elif r < 0.22:
            s.words.append("and")
            self.np(s, self._number())

    def clause(self, s: Sentence) -> None:
        controllers, number, animate = self.subject(s, self._number())
        self.vp(s, controllers, number, animate)

    def sentence(self) -> Sentence:
        s = Sentence()
        self.clause(s)
        if self.rng.random() < self.p_coord_clause:
            s.words.append(self._pick(CONJUNCTIONS))
            self.clause(s)
        s.words.append(".")
        return s

    def sentences(self, n: int) -> list[Sentence]:
        return [self.sentence() for _ in range(n)]


# -- minimal pairs -----------------------------------------------------------------------
PAIR_TYPES = ("simple_agreement", "pp_attractor", "rc_attractor", "irregular_plural")


def _pair_twin(grammar: Grammar, pair_type: str, number: str, rng_state) -> tuple[list[str], int, tuple[str, str]]:
    """One pair sentence whose head noun has ``number``; returns (words, verb index, verb pair).

    Both twins start from the same ``rng_state`` and consume it identically, so they share
    every lexical choice and differ only in number-marked words."""
    grammar.rng.setstate(rng_state)
    s = Sentence()
    if pair_type == "simple_agreement":
        lemma = grammar._pick(REGULAR)
        controllers, _, animate = grammar.subject(s, number, attractor="none", lemma=lemma, marked=False)
    elif pair_type == "irregular_plural":
        lemma = grammar._pick(IRREGULAR)
        controllers, _, animate = grammar.subject(s, number, attractor="none", lemma=lemma, marked=False)
    elif pair_type == "pp_attractor":
        lemma = grammar._pick(NOUNS)
        controllers, _, animate = grammar.subject(s, number, attractor="pp", lemma=lemma, marked=False,
                                                  attractor_number=_other(number))
    elif pair_type == "rc_attractor":
        lemma = grammar._pick(ANIMATE)
        controllers, _, animate = grammar.subject(s, number, attractor="rc", lemma=lemma, marked=False,
                                                  attractor_number=_other(number),
                                                  rc_kind=grammar._pick(("subject", "object")))
    else:
        raise ValueError(f"unknown pair type {pair_type!r}; choose one of {', '.join(PAIR_TYPES)}")
    # The verb and what follows it are sampled after the subject: same state → same words.
    kind = grammar._pick(["intransitive", "transitive", "copula", "have"] if animate else ["copula", "have"])
    verb_at = len(s.words)
    grammar.vp(s, controllers, number, animate, kind=kind)
    s.words.append(".")
    verb_pair = next(p for p in ALL_VERBS if s.words[verb_at] in p)
    return s.words, verb_at, verb_pair


def make_pairs(pair_type: str, n_pairs: int = 300, seed: int = 0) -> list[dict]:
    """``n_pairs`` minimal pairs of ``pair_type`` in BLiMP's JSONL schema.

    Pairs come in twins (all numbers flipped, same words otherwise), so singular and plural
    subjects are exactly balanced. The good and bad sentences differ only in the verb, and
    the continuation after the verb is grammatical with either verb form.
    """
    if pair_type not in PAIR_TYPES:
        raise ValueError(f"unknown pair type {pair_type!r}; choose one of {', '.join(PAIR_TYPES)}")
    # No VP coordination in pairs: a second agreeing verb would make the continuation
    # depend on the subject's number.
    grammar = Grammar(seed=seed, p_coord_vp=0.0)
    master = random.Random(f"{seed}-{pair_type}")
    rows, seen = [], set()
    attempts = 0
    while len(rows) < n_pairs:
        attempts += 1
        if attempts > 50 * n_pairs:
            raise RuntimeError(f"could not make {n_pairs} distinct {pair_type} pairs")
        state = random.Random(master.getrandbits(64)).getstate()
        twins = [_pair_twin(grammar, pair_type, number, state) for number in (SG, PL)]
        key = tuple(" ".join(w) for w, _, _ in twins)
        if key in seen:
            continue
        seen.add(key)
        for words, verb_at, verb_pair in twins:
            good = words[verb_at]
            bad = verb_pair[1] if good == verb_pair[0] else verb_pair[0]
            bad_words = list(words)
            bad_words[verb_at] = bad
            rows.append({
                "sentence_good": render(words),
                "sentence_bad": render(bad_words),
                "one_prefix_prefix": render(words[:verb_at]),
                "one_prefix_word_good": good,
                "one_prefix_word_bad": bad,
                "field": "morphology",
                "linguistics_term": "subject_verb_agreement",
                "UID": pair_type,
                "simple_LM_method": True,
                "one_prefix_method": True,
                "two_prefix_method": False,
                "lexically_identical": False,
                "pairID": str(len(rows)),
            })
    return rows[:n_pairs]
