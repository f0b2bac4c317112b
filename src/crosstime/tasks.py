"""Tasks: minimal pairs reduced to token ids, and the metric on them.

A :class:`Task` is a list of minimal pairs, each reduced for one tokenizer to

    prefix ids  (list[int], including the BOS token when the tokenizer adds one)
    correct id  (the first token where the good continuation differs from the bad one)
    wrong id    (the bad continuation's token at that place)

stored as ids and never re-tokenised from decoded strings (decoded sub-tokens do not
always re-tokenise to themselves). The whole good/bad sentences are kept as ids too, for
the lm-eval-harness style whole-sentence comparison.

Loaders (:func:`load_task`) read files only, never build or train a model: task names resolve
to the packaged BLiMP paradigms or to ``NAME.jsonl`` in the caller's ``search_dirs`` (the toy
tasks live in the toy world's ``pairs/``, which the caller passes). Two schemas:

- BLiMP JSONL with ``one_prefix_prefix`` / ``one_prefix_word_good`` / ``one_prefix_word_bad``
  (the original paradigm files, and the toy world's pair files which share the schema):
  tokenise ``prefix + " " + word`` for both words, take the longest common token prefix;
  the tokens right after it are the two answers, which differ by construction.
- Any JSONL with only ``sentence_good`` / ``sentence_bad`` (CLAMS; the stored
  ``clean_prefix`` split was made for BLOOM's tokenizer and is ignored): the same longest
  common token prefix, taken over the two whole sentences.

**Multi-token answers.** Only the first *differing* token is scored: with a BPE tokenizer
``" hasn't"`` / ``" haven't"`` become ``[" hasn", "'t"]`` / ``[" haven", "'t"]`` and the pair
compares ``" hasn"`` with ``" haven"``; ``" boycotts"`` / ``" boycott"`` sharing a first
piece move that piece into the prefix and compare the next pieces. Pairs where one
answer is a strict token prefix of the other (nothing to compare) are dropped. Per source
file, :class:`SourceStats` counts kept pairs, dropped pairs by reason, and kept pairs whose
answers run on past the scored token (``multi_token``) — the whole-sentence metric scores
those fully. Pass ``multi_token="drop"`` to keep only pairs whose answers are one token.

**Unrepresentable pairs.** A pair whose prefix or answers contain the tokenizer's unknown
token is dropped with a count (never scored on ``<unk>``); a task left with no pairs is an
error that says so (never an accuracy over 0 pairs).

Metric per pair: ``m = log p(wrong) − log p(correct)`` at the last prefix token;
accuracy = share of pairs with ``m < 0`` (:func:`pair_metric`, :func:`evaluate_task`).
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from crosstime.errors import CrosstimeError

# -- names ------------------------------------------------------------------------

SUBJECTVERB_PARADIGMS = (
    "distractor_agreement_relational_noun",
    "distractor_agreement_relative_clause",
    "irregular_plural_subject_verb_agreement_1",
    "regular_plural_subject_verb_agreement_1",
)
TOY_TASKS = ("simple_agreement", "pp_attractor", "rc_attractor", "irregular_plural", "previous_token", "induction")
# Names that stand for several tasks (expanded by :func:`expand_task_names`).
TASK_GROUPS = {"toy": TOY_TASKS, "blimp_sva": SUBJECTVERB_PARADIGMS}

BLIMP_FIELDS = ("one_prefix_prefix", "one_prefix_word_good", "one_prefix_word_bad")
SENTENCE_FIELDS = ("sentence_good", "sentence_bad")


class TaskError(CrosstimeError):
    """A task that cannot be built: unknown name, malformed file, or no usable pairs."""


# -- the task -----------------------------------------------------------------------

@dataclass
class SourceStats:
    """How one source file fared with one tokenizer."""

    source: str
    path: str
    total: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    multi_token: int = 0  # kept pairs whose answers continue past the scored token

    def as_dict(self) -> dict:
        return {"source": self.source, "path": self.path, "total": self.total, "kept": self.kept,
                "dropped": dict(self.dropped), "multi_token": self.multi_token}


@dataclass
class Task:
    """Minimal pairs as token ids for one tokenizer.

    prefixes:     list of N prefix id lists (variable length, BOS included if the tokenizer adds it)
    correct:      LongTensor [N], the good answer's first differing token
    wrong:        LongTensor [N], the bad answer's first differing token
    good, bad:    list of N whole-sentence id lists, each starting with one context token
                  (BOS, else EOS: :func:`sentence_context_id`; with neither, the sentence's first
                  token is the context and goes unscored); empty where not representable
    sentence_ok:  BoolTensor [N], whether good/bad are usable for the whole-sentence metric
    sources:      list of N source names (paradigm) per pair
    stats:        one :class:`SourceStats` per source file
    """

    name: str
    prefixes: list[list[int]]
    correct: torch.Tensor
    wrong: torch.Tensor
    good: list[list[int]]
    bad: list[list[int]]
    sentence_ok: torch.Tensor
    sources: list[str]
    stats: list[SourceStats]

    def __len__(self) -> int:
        return len(self.prefixes)

    def __repr__(self) -> str:
        kept = ", ".join(f"{s.source}: {s.kept}/{s.total}" for s in self.stats)
        return f"Task({self.name!r}, {len(self)} pairs; {kept})"

    def subset(self, index: Sequence[int]) -> Task:
        index = list(index)
        keep_sources = {self.sources[i] for i in index}
        return Task(
            self.name,
            [self.prefixes[i] for i in index],
            self.correct[index],
            self.wrong[index],
            [self.good[i] for i in index],
            [self.bad[i] for i in index],
            self.sentence_ok[index],
            [self.sources[i] for i in index],
            [s for s in self.stats if s.source in keep_sources],
        )

    def summary(self) -> dict:
        return {"name": self.name, "n": len(self), "sources": [s.as_dict() for s in self.stats]}


def _concat(name: str, parts: list[Task]) -> Task:
    return Task(
        name,
        [p for t in parts for p in t.prefixes],
        torch.cat([t.correct for t in parts]),
        torch.cat([t.wrong for t in parts]),
        [s for t in parts for s in t.good],
        [s for t in parts for s in t.bad],
        torch.cat([t.sentence_ok for t in parts]),
        [s for t in parts for s in t.sources],
        [s for t in parts for s in t.stats],
    )


# -- tokenisation helpers ---------------------------------------------------------------

def special_prefix(tokenizer) -> list[int]:
    """The ids the tokenizer puts before any text by default (``[bos]`` for the toy's, ``[]`` for Pythia's)."""
    probe = "a b c"
    with_special = list(tokenizer(probe)["input_ids"])
    without = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    for start in range(len(with_special) - len(without) + 1):
        if with_special[start:start + len(without)] == without:
            return with_special[:start]
    return []


def sentence_context_id(tokenizer) -> int | None:
    """The one token the whole-sentence metric conditions on (lm-eval's ``prefix_token_id``): BOS, else EOS."""
    for tok_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tok_id is not None:
            return int(tok_id)
    return None


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


# -- reading files ------------------------------------------------------------------------

def read_jsonl(path: str | Path, required: Sequence[str]) -> list[dict]:
    """Rows of a JSONL file; a row that is not JSON or lacks a required field raises naming file and line."""
    path = Path(path)
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise TaskError(f"{path}, line {line_no}: not valid JSON ({err.msg})") from err
            missing = [f for f in required if not isinstance(row.get(f), str)]
            if missing:
                raise TaskError(
                    f"{path}, line {line_no}: row is missing field(s) {', '.join(missing)} "
                    f"(every row needs {', '.join(required)}); fix or remove that line"
                )
            rows.append(row)
    return rows


def _file_schema(path: Path) -> tuple[str, ...]:
    """BLiMP one-prefix fields if the file's first row has them, else the whole-sentence fields."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    break
                return BLIMP_FIELDS + SENTENCE_FIELDS if "one_prefix_prefix" in first else SENTENCE_FIELDS
    return SENTENCE_FIELDS


def build_pairs(
    tokenizer,
    rows: list[dict],
    source: str,
    path: str = "",
    multi_token: str = "first",
) -> tuple[Task, SourceStats]:
    """Reduce rows (BLiMP one-prefix or whole-sentence schema) to token-id pairs for ``tokenizer``."""
    if multi_token not in ("first", "drop"):
        raise TaskError(f"multi_token must be 'first' or 'drop', not {multi_token!r}")
    lead = special_prefix(tokenizer)
    ctx = sentence_context_id(tokenizer)
    unk = tokenizer.unk_token_id
    one_prefix = bool(rows) and "one_prefix_prefix" in rows[0]
    if one_prefix:
        good_texts = [r["one_prefix_prefix"] + " " + r["one_prefix_word_good"] for r in rows]
        bad_texts = [r["one_prefix_prefix"] + " " + r["one_prefix_word_bad"] for r in rows]
    else:
        good_texts = [r["sentence_good"] for r in rows]
        bad_texts = [r["sentence_bad"] for r in rows]
    good_enc, bad_enc = _encode(tokenizer, good_texts), _encode(tokenizer, bad_texts)
    sent_good = _encode(tokenizer, [r["sentence_good"] for r in rows])
    sent_bad = _encode(tokenizer, [r["sentence_bad"] for r in rows])

    stats = SourceStats(source, path, total=len(rows))
    dropped: Counter[str] = Counter()
    prefixes, correct, wrong, goods, bads, ok = [], [], [], [], [], []
    for g, b, sg, sb in zip(good_enc, bad_enc, sent_good, sent_bad):
        if unk is not None and (unk in g or unk in b):
            dropped["unknown token"] += 1
            continue
        n = _common_prefix_len(g, b)
        if n == len(g) or n == len(b):
            dropped["no differing answer token" if len(g) == len(b) else "one answer is a token prefix of the other"] += 1
            continue
        if n == 0 and not lead:
            dropped["answers differ at the first token (empty prefix)"] += 1
            continue
        runs_on = len(g) > n + 1 or len(b) > n + 1
        if runs_on and multi_token == "drop":
            dropped["multi-token answer"] += 1
            continue
        stats.multi_token += runs_on
        prefixes.append(lead + g[:n])
        correct.append(g[n])
        wrong.append(b[n])
        sentence_fine = not (unk is not None and (unk in sg or unk in sb)) and sg != sb
        head = [ctx] if ctx is not None else []
        goods.append(head + sg if sentence_fine else [])
        bads.append(head + sb if sentence_fine else [])
        ok.append(sentence_fine)
    stats.kept = len(prefixes)
    stats.dropped = dict(dropped)
    task = Task(
        source, prefixes, torch.tensor(correct, dtype=torch.long), torch.tensor(wrong, dtype=torch.long),
        goods, bads, torch.tensor(ok, dtype=torch.bool), [source] * len(prefixes), [stats],
    )
    return task, stats


def load_jsonl_task(path: str | Path, tokenizer, name: str | None = None, multi_token: str = "first") -> Task:
    """One JSONL file (BLiMP or CLAMS schema) as a task, without the empty-task check."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"task file {path} does not exist")
    rows = read_jsonl(path, _file_schema(path))
    task, _ = build_pairs(tokenizer, rows, name or path.stem, str(path), multi_token)
    return task


# -- names → files ----------------------------------------------------------------------

def packaged_blimp_dir() -> Path:
    """The BLiMP paradigms shipped with crosstime (CC-BY-4.0; see data/blimp/NOTICE)."""
    return Path(str(resources.files("crosstime") / "data" / "blimp"))


def _toy_task_missing(name: str, search_dirs: list[Path]) -> str:
    """Why toy task ``name`` was not found, and the fix: its pairs live in the toy world's ``pairs/``."""
    where = ", ".join(str(d) for d in search_dirs) or "none were given"
    return (f"task {name!r} is a toy-world task, and no search dir holds {name}.jsonl (search dirs: {where}); "
            "pass the toy world's pairs/ folder, e.g. search_dirs=[toy_world() / 'pairs'] with "
            "crosstime.toy.toy_world (a stage given the toy world as its series searches its pairs/ itself)")


def known_tasks(search_dirs: Iterable[str | Path] = ()) -> list[str]:
    """Every task name :func:`load_task` resolves, given these extra folders of ``*.jsonl``."""
    names = ["subjectverb", *TASK_GROUPS, *SUBJECTVERB_PARADIGMS, *TOY_TASKS]
    for folder in search_dirs:
        folder = Path(folder)
        if folder.is_dir():
            names += sorted(p.stem for p in folder.glob("*.jsonl"))
    return list(dict.fromkeys(names))


def expand_task_names(names: Iterable[str]) -> list[str]:
    """Split comma lists and expand groups (``toy`` → the four toy tasks)."""
    out: list[str] = []
    for item in names:
        for name in (part.strip() for part in str(item).split(",")):
            if name:
                out += list(TASK_GROUPS.get(name, (name,)))
    return list(dict.fromkeys(out))


def load_task(
    name_or_path: str | Path,
    tokenizer,
    search_dirs: Iterable[str | Path] = (),
    multi_token: str = "first",
) -> Task:
    """A task by name or JSONL path, reduced to token ids for ``tokenizer``.

    Names: ``subjectverb`` (the four BLiMP one-prefix agreement paradigms, shipped with
    crosstime), each of those paradigms by its own name, and any ``NAME.jsonl`` in
    ``search_dirs`` (searched in order; a file there wins over a packaged paradigm of the same
    name). The toy tasks (``simple_agreement``, ``pp_attractor``, ``rc_attractor``,
    ``irregular_plural``) are such files: pass the toy world's ``pairs/`` folder in
    ``search_dirs``. A path to a ``.jsonl`` file loads that file. Loading a task reads files
    only: it never builds or trains a model.

    Raises :class:`TaskError` for an unknown name (listing the known ones), a toy task name with
    no search dir holding it (naming the folder to pass), a malformed row (file and line), or a
    tokenizer that keeps none of the task's pairs.
    """
    search_dirs = [Path(d) for d in search_dirs]
    text = str(name_or_path)
    path = Path(text).expanduser()
    if text.endswith(".jsonl") or path.is_file():
        if not path.is_file():
            raise TaskError(f"task file {path} does not exist")
        task = load_jsonl_task(path, tokenizer, multi_token=multi_token)
    elif text == "subjectverb":
        root = packaged_blimp_dir()
        parts = [load_jsonl_task(root / f"{p}.jsonl", tokenizer, multi_token=multi_token) for p in SUBJECTVERB_PARADIGMS]
        task = _concat("subjectverb", parts)
    elif text in TASK_GROUPS:
        raise TaskError(f"{text!r} names a group of tasks ({', '.join(TASK_GROUPS[text])}); expand it with expand_task_names")
    else:
        found = next((d / f"{text}.jsonl" for d in search_dirs if (d / f"{text}.jsonl").is_file()), None)
        if found is None and text in SUBJECTVERB_PARADIGMS:
            found = packaged_blimp_dir() / f"{text}.jsonl"
        if found is None and text in TOY_TASKS:
            raise TaskError(_toy_task_missing(text, search_dirs))
        if found is None:
            known = known_tasks(search_dirs)
            near = difflib.get_close_matches(text, known, n=3, cutoff=0.5)
            raise TaskError(
                f"unknown task {text!r}" + (f" (did you mean {', '.join(near)}?)" if near else "")
                + f"; known tasks: {', '.join(known)}; or pass a path to a BLiMP/CLAMS-style .jsonl file"
            )
        task = load_jsonl_task(found, tokenizer, name=text, multi_token=multi_token)
    if len(task) == 0:
        detail = "; ".join(
            f"{s.source}: {s.total} rows, dropped " + ", ".join(f"{v} {k}" for k, v in s.dropped.items())
            for s in task.stats
        )
        raise TaskError(
            f"tokenizer {type(tokenizer).__name__} (vocabulary {len(tokenizer)}) keeps none of the pairs of task "
            f"{text!r} ({detail}); no accuracy can be reported. Use a tokenizer that covers the task's words, "
            "or a task written in its vocabulary."
        )
    return task


# -- evaluation ------------------------------------------------------------------------------

def left_pad(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``input_ids [B, T]`` and ``attention_mask [B, T]`` (1 = real token)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        if len(seq):
            ids[row, width - len(seq):] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids, mask


def right_pad(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids [B, T]`` and ``attention_mask [B, T]`` (1 = real token), pad id 0.

    Each row's tokens keep positions 0..len-1, as in training, so no position ids are needed
    (the mask hides the padding).
    """
    width = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(seqs):
        ids[row, :len(seq)] = torch.as_tensor(list(seq))
        mask[row, :len(seq)] = 1
    return ids, mask


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids ``[B, T]`` counted from each row's first real token (pads get 0)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _accepts_position_ids(model) -> bool:
    return "position_ids" in inspect.signature(model.forward).parameters


def forward_logits(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, T, V]`` of a left-padded batch.

    Positions come from the mask, so a left-padded row sees exactly the positions it would
    alone (absolute-position models such as GPT-2 need this; rotary ones are shift-invariant
    but get correct ids anyway; BLOOM's ALiBi takes no position ids and reads the mask).
    """
    device = next(model.parameters()).device
    kwargs = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "use_cache": False}
    if _accepts_position_ids(model):
        kwargs["position_ids"] = positions_from_mask(mask).to(device)
    return model(**kwargs).logits


def _batches_by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches of similar length (less padding); the caller scatters results back."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def pair_metric(model, task: Task, batch_size: int = 64) -> torch.Tensor:
    """``m [N] = log p(wrong) − log p(correct)`` at the last prefix token (float32, CPU)."""
    out = torch.empty(len(task), dtype=torch.float32)
    for index in _batches_by_length([len(p) for p in task.prefixes], batch_size):
        ids, mask = left_pad([task.prefixes[i] for i in index])
        logp = forward_logits(model, ids, mask)[:, -1].float().log_softmax(-1).cpu()
        rows = torch.arange(len(index))
        out[index] = logp[rows, task.wrong[index]] - logp[rows, task.correct[index]]
    return out


@torch.no_grad()
def sequence_logprob(
    model,
    seqs: Sequence[Sequence[int]],
    batch_size: int = 64,
    probes: Sequence[tuple[int, int, int] | None] | None = None,
):
    """Sum of ``log p(token_t | tokens_<t)`` over t ≥ 1 for each sequence: ``[N]`` (float32, CPU).

    Task sentences start with one context token (BOS or EOS, as lm-eval-harness conditions
    BLiMP sentences on), so every real sentence token is scored.

    ``probes`` (one per sequence, or None) asks, in the same forward pass, for
    ``log p(a) − log p(b)`` of the next-token distribution after position ``pos`` for a probe
    ``(pos, a, b)``; then returns ``(sums [N], probe values [N], NaN where no probe)``.
    """
    out = torch.zeros(len(seqs), dtype=torch.float32)
    probe_out = torch.full((len(seqs),), float("nan"))
    for index in _batches_by_length([len(s) for s in seqs], batch_size):
        ids, mask = left_pad([seqs[i] for i in index])
        logp = forward_logits(model, ids, mask).float().log_softmax(-1).cpu()  # [B, T, V]
        target = ids[:, 1:]
        token_lp = logp[:, :-1].gather(-1, target.unsqueeze(-1)).squeeze(-1)
        scored = mask[:, 1:] * mask[:, :-1]  # target real and predicted from a real token
        out[index] = (token_lp * scored).sum(-1)
        if probes is not None:
            width = ids.shape[1]
            for row, i in enumerate(index):
                if probes[i] is not None:
                    pos, a, b = probes[i]
                    col = width - len(seqs[i]) + pos  # left padding shifts every row
                    probe_out[i] = logp[row, col, a] - logp[row, col, b]
    return out if probes is None else (out, probe_out)


@dataclass
class TaskResult:
    """Metric of one task on one model."""

    task: str
    n: int
    m: torch.Tensor  # [N]
    accuracy: float
    mean_m: float
    n_sentence: int = 0
    sentence_accuracy: float | None = None  # share with log p(good) > log p(bad), whole sentences
    sentence_margin: torch.Tensor | None = None  # [n_sentence] log p(bad) − log p(good)

    def as_row(self) -> dict:
        return {"task": self.task, "n": self.n, "accuracy": self.accuracy, "mean_m": self.mean_m,
                "n_sentence": self.n_sentence, "sentence_accuracy": self.sentence_accuracy}


def evaluate_task(model, task: Task, batch_size: int = 64, sentence: bool = True) -> TaskResult:
    """Pair metric and accuracy; with ``sentence`` also the whole-sentence log-likelihood accuracy.

    Where a pair's prefix + correct answer starts its good sentence (the usual case), its metric
    is read from the sentence's forward pass instead of a separate prefix pass (same numbers,
    a third fewer forwards).
    """
    if len(task) == 0:
        raise TaskError(f"task {task.name!r} has no pairs; no accuracy can be reported")
    m = torch.full((len(task),), float("nan"))
    usable = [i for i in range(len(task)) if bool(task.sentence_ok[i])] if sentence else []
    margin = None
    if usable:
        probes = []
        for i in usable:
            p, g = task.prefixes[i], task.good[i]
            shares = len(g) > len(p) and g[:len(p)] == p and g[len(p)] == int(task.correct[i])
            probes.append((len(p) - 1, int(task.wrong[i]), int(task.correct[i])) if shares else None)
        seqs = [task.good[i] for i in usable] + [task.bad[i] for i in usable]
        lp, probe = sequence_logprob(model, seqs, batch_size, probes + [None] * len(usable))
        margin = lp[len(usable):] - lp[:len(usable)]
        for k, i in enumerate(usable):
            if probes[k] is not None:
                m[i] = probe[k]
    rest = [i for i in range(len(task)) if torch.isnan(m[i])]
    if rest:
        m[rest] = pair_metric(model, task.subset(rest), batch_size)
    result = TaskResult(task.name, len(task), m, int((m < 0).sum()) / len(task), float(m.double().mean()))
    if margin is not None:
        result.n_sentence = len(usable)
        result.sentence_accuracy = int((margin < 0).sum()) / len(usable)
        result.sentence_margin = margin
    return result
