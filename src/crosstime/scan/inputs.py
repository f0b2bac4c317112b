"""Everything the scan needs before its first model load, checked once: the series and layer, the
tasks, the device, the corpus samples and the n-gram statistics.

Bad input fails here (:func:`prepare`), before the stage forgets its record or writes a file.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from crosstime.checkpoints import Checkpoint
from crosstime.distributed import resolve_device
from crosstime.scan.config import ScanConfig, ScanError
from crosstime.scan.dynamics import NgramModel
from crosstime.series import CheckpointSeries, SeriesError, open_series
from crosstime.tasks import Task, expand_task_names, load_task, special_prefix


@dataclass
class ScanInputs:
    """Everything fixed before the sweep: checked once, shared by every checkpoint."""

    series: CheckpointSeries
    checkpoints: list[Checkpoint]
    task_names: list[str]
    tasks: list[Task]
    sim_seqs: list[list[int]]  # token ids whose site activations are compared (positions ≥ 1)
    heldout_seqs: list[list[int]]  # held-out documents for loss and KL
    ngram: NgramModel | None
    device: torch.device
    d_model: int | None = None


def read_lines(path: Path, limit: int | None = None) -> list[str]:
    """The non-empty lines of ``path``, stripped (the first ``limit`` of them)."""
    lines = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line:
                lines.append(line)
                if limit is not None and len(lines) >= limit:
                    break
    return lines


def encode_docs(tokenizer, docs: list[str], max_length: int | None = None) -> list[list[int]]:
    """Token ids of each document, led by the tokenizer's special prefix (BOS where it adds one), truncated."""
    lead = special_prefix(tokenizer)
    enc = tokenizer(docs, add_special_tokens=False)["input_ids"] if docs else []
    out = [lead + list(ids) for ids in enc]
    return [s[:max_length] for s in out] if max_length else out


def train_sample(path: Path, tokenizer, budget: int) -> list[list[int]]:
    """The first documents of ``path`` until ``budget`` tokens (for n-gram statistics)."""
    seqs, have, batch = [], 0, []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                batch.append(line.strip())
            if len(batch) == 1024:
                enc = encode_docs(tokenizer, batch)
                seqs, have, batch = seqs + enc, have + sum(map(len, enc)), []
                if have >= budget:
                    return seqs
    return seqs + encode_docs(tokenizer, batch)


def similarity_sequences(tasks: list[Task], budget: int, seed: int) -> list[list[int]]:
    """Task sentences (good ones; prefix + correct answer where a sentence is unusable) until ``budget``
    tokens at positions ≥ 1, drawn round-robin across tasks in a seeded order."""
    rng = random.Random(seed)
    pools = []
    for task in tasks:
        seqs = [task.good[i] if bool(task.sentence_ok[i]) else task.prefixes[i] + [int(task.correct[i])]
                for i in range(len(task))]
        rng.shuffle(seqs)
        pools.append(seqs)
    out, have = [], 0
    for i in range(max((len(p) for p in pools), default=0)):
        for pool in pools:
            if i < len(pool) and have < budget and len(pool[i]) > 1:
                out.append(pool[i])
                have += len(pool[i]) - 1
        if have >= budget:
            break
    return out


def cap_tokens(seqs: list[list[int]], budget: int) -> list[list[int]]:
    """The first sequences of two or more tokens until ``budget`` tokens at positions ≥ 1."""
    out, have = [], 0
    for s in seqs:
        if have >= budget:
            break
        if len(s) > 1:
            out.append(s)
            have += len(s) - 1
    return out


def default_tasks(series: CheckpointSeries) -> list[str]:
    """The tasks of a series folder with ``pairs/*.jsonl`` (the toy world), else ``subjectverb``."""
    pairs = series.local_root / "pairs" if series.is_local else None
    if pairs is not None and pairs.is_dir() and any(pairs.glob("*.jsonl")):
        return sorted(p.stem for p in pairs.glob("*.jsonl"))
    return ["subjectverb"]


def corpus_paths(config: ScanConfig, series: CheckpointSeries) -> tuple[Path | None, Path | None]:
    """The held-out and training corpora: as given, else the series folder's corpus/ files, else None."""
    root = series.local_root / "corpus" if series.is_local else None
    heldout = config.corpus or (root / "heldout.txt" if root is not None and (root / "heldout.txt").is_file() else None)
    train = config.train_corpus or (root / "train.txt" if root is not None and (root / "train.txt").is_file() else None)
    for name, path in (("corpus", heldout), ("train_corpus", train)):
        if path is not None and not Path(path).is_file():
            raise ScanError(f"{name} {path} does not exist (expected a text file, one document per line)")
    return heldout, train


def _open(config: ScanConfig) -> tuple[CheckpointSeries, Any]:
    """The series (its checkpoints compatible) and its first checkpoint's HF config, the layer checked."""
    try:
        series = open_series(config.series, revisions=config.revisions)
    except SeriesError as err:
        raise ScanError(str(err)) from err
    first_cfg = series.load_config(series.checkpoints[0].revision)
    depth = getattr(first_cfg, "num_hidden_layers", None) or getattr(first_cfg, "n_layer", None)
    if depth is not None and not 0 <= config.layer < depth:
        raise ScanError(f"layer {config.layer} is out of range: {series.source} has {depth} decoder blocks, "
                        f"so --layer must be in 0..{depth - 1}")
    if series.is_local:
        series.check_compatible()
    return series, first_cfg


def _load_tasks(config: ScanConfig, series: CheckpointSeries, tokenizer) -> tuple[list[str], list[Task]]:
    """The task names (groups expanded) and the tasks; a local series' pairs/ is searched for names."""
    search = [series.local_root / "pairs"] if series.is_local else []
    names = expand_task_names(config.tasks or default_tasks(series))
    if not names:
        raise ScanError("no tasks given; pass --tasks (e.g. subjectverb, toy, or a .jsonl path)")
    return names, [load_task(name, tokenizer, search_dirs=search) for name in names]  # TaskError before any work


def _heldout(config: ScanConfig, heldout: Path | None, tokenizer) -> list[list[int]]:
    """``corpus_sequences`` documents of the held-out corpus in a seeded random order, truncated."""
    if heldout is None:
        return []
    docs = read_lines(heldout)
    random.Random(config.seed).shuffle(docs)
    return encode_docs(tokenizer, docs[:config.corpus_sequences], config.max_length)


def prepare(config: ScanConfig) -> ScanInputs:
    """Open the series, check the layer, load every task and corpus sample: all bad input fails here."""
    device = resolve_device(config.device)  # checked when the config was made
    series, first_cfg = _open(config)
    tokenizer = series.load_tokenizer()
    names, tasks = _load_tasks(config, series, tokenizer)
    heldout, train = corpus_paths(config, series)
    if config.similarity_source == "corpus" and heldout is None:
        raise ScanError("similarity_source='corpus' needs a held-out corpus: pass --corpus FILE")
    heldout_seqs = _heldout(config, heldout, tokenizer)
    if config.similarity_source == "corpus":
        sim_seqs = cap_tokens(heldout_seqs, config.similarity_tokens)
    else:
        sim_seqs = similarity_sequences(tasks, config.similarity_tokens, config.seed)
    ngram = None
    if heldout_seqs and train is not None:
        if not any(len(s) >= 2 for s in heldout_seqs):
            raise ScanError(f"the held-out corpus sample of {heldout} has no document of two or more tokens "
                            "(after truncation to --max-length); give a corpus with longer documents")
        vocab = max(int(getattr(first_cfg, "vocab_size", 0) or 0), len(tokenizer))
        ngram = NgramModel.fit(train_sample(train, tokenizer, config.ngram_tokens), vocab)
    d_model = getattr(first_cfg, "hidden_size", None) or getattr(first_cfg, "n_embd", None)
    return ScanInputs(series, list(series.checkpoints), names, tasks, sim_seqs, heldout_seqs, ngram, device, d_model)
