"""Pretrain a tiny GPT-NeoX on the toy grammar and save it as a local checkpoint series.

``build_toy_world(out, config)`` writes, atomically (a temporary folder renamed at the end,
so a killed build never looks complete)::

    out/
      series.json              family "toy"; tokens = step × batch_size × seq_len
      step0/ step1/ … stepN/   model.save_pretrained + tokenizer.save_pretrained (Pythia schedule, and
                               every ``checkpoint_every`` steps: ToyConfig.checkpoint_steps)
      corpus/train.txt         one document per line: the training corpus
      corpus/heldout.txt       documents drawn the same way, no grammar sentence of train.txt
      pairs/<task>.jsonl       minimal pairs in BLiMP's schema (TOY_TASKS: the agreement types,
                               previous_token, induction)

The corpus mixes three kinds of line, so the model learns several mechanisms at different
times (the second paper's ordered phases): grammar sentences (unigram and bigram statistics,
then agreement across attractors), copy documents (``dog again dog``: at the marker the next
word is the previous one, a previous-token mechanism) and induction documents (a random span
repeated: the second half is predictable only by copying what followed the current word's
earlier occurrence). ``copy_share`` and ``induction_share`` are the shares of lines.
      build.json               settings, timing, loss and agreement accuracy by checkpoint

``toy_world(config)`` builds once per distinct config (and code version) under
``$CROSSTIME_CACHE`` (default ``~/.cache/crosstime``) and returns the cached folder.

The tokenizer is word level and **prepends ``<bos>`` to every encoded text** (the
default ``add_special_tokens=True``), exactly as every training sentence starts with
``<bos>``; pass ``add_special_tokens=False`` to get the bare word ids.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import random
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from crosstime.checkpoints import Checkpoint, write_series_manifest
from crosstime.files import write_json, write_text
from crosstime.probes import copy_document, copy_pairs, induction_document, induction_pairs
from crosstime.progress import Bar
from crosstime.toy.grammar import PAIR_TYPES, PROBE_POOL, Grammar, make_pairs, render, vocabulary

# Bump when a code change alters what a build produces, so cached toy worlds are rebuilt.
TOY_VERSION = 3
# The mechanism probes, in the order the second paper reports them, after the agreement types.
PROBE_TYPES = ("previous_token", "induction")
TASKS = PAIR_TYPES + PROBE_TYPES  # one pairs/<task>.jsonl each (crosstime.tasks.TOY_TASKS names them)
SPECIAL_TOKENS = ["<pad>", "<unk>", "<bos>", "<eos>"]
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)


class ToyConfig(BaseModel):
    """Everything that determines a toy world; equal configs give bit-identical builds
    (on the same machine and torch version)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a typo or an inf is an error, not a setting

    seed: int = Field(0, description="Seeds the grammar, the pairs, the weights and the data order.")
    # corpus and pairs
    n_train_sentences: int = Field(120_000, gt=0, description="Training corpus size (lines: sentences and probe documents).")
    n_heldout_sentences: int = Field(5_000, ge=0, description="Held-out lines (no grammar sentence of the training corpus).")
    n_pairs: int = Field(300, ge=2, description="Minimal pairs per task (even: pairs come in twins).")
    # 0.3 / 0.3 (was 0.1 / 0.35): with more copy documents previous-token copying is learned well before
    # agreement across attractors and before induction, at every accuracy threshold from 0.8 to 0.95
    # (benchmarks/toy_phase_order.py); with 0.1 / 0.35 it tied agreement at step512.
    copy_share: float = Field(0.3, ge=0, lt=1, description="Share of corpus lines that are copy documents.")
    induction_share: float = Field(0.3, ge=0, lt=1, description="Share of corpus lines that are induction documents.")
    # model (GPT-NeoX, the Pythia architecture)
    n_layers: int = Field(2, gt=0)
    d_model: int = Field(128, gt=0)
    n_heads: int = Field(4, gt=0)
    d_ffn: int = Field(512, gt=0)
    rotary_pct: float = Field(0.25, gt=0, le=1)
    # optimisation
    seq_len: int = Field(64, ge=8, description="Tokens per training context.")
    batch_size: int = Field(32, gt=0, description="Contexts per step; tokens per step = batch_size × seq_len.")
    steps: int = Field(1000, gt=0, description="Optimizer steps; the last checkpoint is saved here.")
    checkpoint_every: int = Field(128, ge=0, description="Besides the Pythia schedule, save a checkpoint every this "
                                                         "many steps (0: none): the log-spaced schedule leaves 512 "
                                                         "steps between its last two checkpoints, where the phases "
                                                         "separate.")
    lr: float = Field(3e-3, gt=0)
    warmup_steps: int = Field(500, ge=0, description="Linear warm-up from 0, then cosine decay; long, so that checkpoints up to step 64 stay at chance.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine decays to lr × min_lr_ratio at the final step.")
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    # One thread by default: on a shared 2-core machine, 2 threads under contention ran 10x
    # slower per step (measured: 8.2 s vs 0.8 s) as the OpenMP workers wait on each other;
    # on idle cores 2 threads are ~1.4x faster (pass threads=2 / --threads 2).
    threads: int = Field(1, gt=0, description="torch threads during the build (fixed: part of the config, for determinism).")

    @model_validator(mode="after")
    def _check(self) -> "ToyConfig":
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.n_pairs % 2:
            raise ValueError(f"n_pairs ({self.n_pairs}) must be even: pairs come in singular/plural twins")
        return self

    def checkpoint_steps(self) -> list[int]:
        """The steps saved: :func:`pythia_schedule` and every ``checkpoint_every`` steps, in order."""
        every = range(self.checkpoint_every, self.steps, self.checkpoint_every) if self.checkpoint_every else ()
        return sorted({*pythia_schedule(self.steps), *every})

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def key(self) -> str:
        """Short hash of the settings and the code version: the cache folder name."""
        text = json.dumps({"version": TOY_VERSION, **self.model_dump()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def pythia_schedule(final_step: int) -> list[int]:
    """Checkpoint steps like Pythia's: 0, 1, 2, 4, …, 512, then every 1000, and the final step."""
    steps = [0] + [2**i for i in range(10) if 2**i <= final_step]
    steps += list(range(1000, final_step + 1, 1000))
    if steps[-1] != final_step:
        steps.append(final_step)
    return steps


# -- tokenizer ---------------------------------------------------------------------------
def make_tokenizer(model_max_length: int = 128):
    """Word-level ``PreTrainedTokenizerFast`` over the grammar's vocabulary.

    ids: <pad>=0, <unk>=1, <bos>=2, <eos>=3, then :func:`~crosstime.toy.grammar.vocabulary`.
    Lower-cases, splits on whitespace and punctuation, and prepends ``<bos>`` to every text
    (``add_special_tokens=True``, the default); ``<eos>`` is never added automatically.
    """
    from transformers import PreTrainedTokenizerFast  # lazy: start-up time (transformers: ~2 s)

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + vocabulary())}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B:1", special_tokens=[("<bos>", BOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>",
        model_max_length=model_max_length,
    )


def word_ids(words: list[str], vocab: dict[str, int]) -> list[int]:
    """Token ids of a word list, *without* ``<bos>`` (same as the tokenizer on its text)."""
    return [vocab[w] for w in words]


# -- model and data ----------------------------------------------------------------------
def make_model(config: ToyConfig, vocab_size: int):
    """A freshly initialised GPT-NeoX (seed the RNG first)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM  # lazy: start-up time (transformers: ~2 s)

    cfg = GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=config.d_model, num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads, intermediate_size=config.d_ffn, rotary_pct=config.rotary_pct,
        max_position_embeddings=max(128, config.seq_len), bos_token_id=BOS_ID, eos_token_id=EOS_ID,
        pad_token_id=PAD_ID, use_cache=False, attention_dropout=0.0, hidden_dropout=0.0,
        tie_word_embeddings=False,
    )
    return GPTNeoXForCausalLM(cfg)


def token_stream(lines: list[list[str]], vocab: dict[str, int]) -> torch.Tensor:
    """``<bos> w1 … wn`` for each line (a list of words), concatenated: LongTensor [n_tokens]."""
    ids: list[int] = []
    for words in lines:
        ids.append(BOS_ID)
        ids.extend(vocab[w] for w in words)
    return torch.tensor(ids, dtype=torch.long)


def corpus_lines(config: ToyConfig, n_lines: int, seed: int, exclude: set[str] = frozenset()) -> list[list[str]]:
    """``n_lines`` documents (word lists) whose texts are not in ``exclude``: grammar sentences and
    the shares ``copy_share`` / ``induction_share`` of probe documents (:mod:`crosstime.probes`),
    which end with ``.`` like a sentence."""
    grammar, mix = Grammar(seed=seed), random.Random(f"{seed}-documents")
    lines: list[list[str]] = []
    for _ in range(100 * n_lines + 100):
        if len(lines) == n_lines:
            break
        r = mix.random()
        if r < config.copy_share:
            words = copy_document(PROBE_POOL, mix) + ["."]
        elif r < config.copy_share + config.induction_share:
            words = induction_document(PROBE_POOL, mix) + ["."]
        else:
            words = grammar.sentence().words
        if render(words) not in exclude:
            lines.append(words)
    return lines


def lr_at(step: int, config: ToyConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up, cosine decay."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


# -- agreement accuracy ------------------------------------------------------------------
def encode_pairs(rows: list[dict], tokenizer) -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
    """Prefix ids (with ``<bos>``), correct and wrong verb ids of BLiMP-schema rows."""
    prefixes = [tokenizer(r["one_prefix_prefix"]).input_ids for r in rows]
    good = [tokenizer(r["one_prefix_word_good"], add_special_tokens=False).input_ids for r in rows]
    bad = [tokenizer(r["one_prefix_word_bad"], add_special_tokens=False).input_ids for r in rows]
    if any(len(g) != 1 or len(b) != 1 for g, b in zip(good, bad)):
        raise ValueError("every pair's verbs must be single tokens")
    return prefixes, torch.tensor([g[0] for g in good]), torch.tensor([b[0] for b in bad])


@torch.no_grad()
def agreement_correct(model, prefixes: list[list[int]], good: torch.Tensor, bad: torch.Tensor,
                      batch_size: int = 512) -> torch.Tensor:
    """Whether p(correct verb) > p(wrong verb) after each prefix: BoolTensor [N].

    Prefixes are grouped by length, so no padding is involved (each batch is exact).
    """
    correct = torch.zeros(len(prefixes), dtype=torch.bool)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prefixes):
        by_len.setdefault(len(p), []).append(i)
    device = next(model.parameters()).device
    for idx in by_len.values():
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            ids = torch.tensor([prefixes[i] for i in chunk], device=device)
            last = model(input_ids=ids).logits[:, -1].float().cpu()  # [b, V]
            rows = torch.arange(len(chunk))
            # same softmax normaliser on both sides: comparing logits = comparing probabilities
            correct[chunk] = last[rows, good[chunk]] > last[rows, bad[chunk]]
    return correct


def accuracy_table(model, encoded: dict[str, tuple]) -> dict[str, float]:
    """Agreement accuracy per pair type (share of pairs where the correct verb wins)."""
    return {name: round(agreement_correct(model, *enc).float().mean().item(), 4) for name, enc in encoded.items()}


# -- the build ---------------------------------------------------------------------------
def _builder_alive(tmp: Path) -> bool | None:
    """Whether the process that owns temporary build folder ``tmp`` runs (None: unknown)."""
    try:
        os.kill(int(tmp.name.rsplit(".tmp-", 1)[1].split("-")[0]), 0)
        return True
    except ProcessLookupError:
        return False
    except (ValueError, IndexError, PermissionError):
        return None


def _remove_stale_builds(out: Path) -> None:
    """Delete temporary build folders for ``out`` left by killed builders (dead pids)."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        if _builder_alive(tmp) is False:
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class _Data:
    """The corpus and pairs of one build: the token windows pretraining draws from ([n, T])."""

    train: list[list[str]]
    heldout: list[list[str]]
    pairs: dict[str, list[dict]]
    tokenizer: object
    encoded: dict[str, tuple]
    n_tokens: int
    windows: torch.Tensor  # [n_windows, T]
    held_windows: torch.Tensor  # [≤ 64, T]


def _make_data(config: ToyConfig, tmp: Path) -> _Data:
    """Generate the corpus and pairs, write them under ``tmp``, and cut the token windows."""
    train = corpus_lines(config, config.n_train_sentences, config.seed)
    train_texts = [render(words) for words in train]
    heldout = corpus_lines(config, config.n_heldout_sentences, config.seed + 1_000_003, exclude=set(train_texts))
    write_text(tmp / "corpus" / "train.txt", "\n".join(train_texts) + "\n")
    write_text(tmp / "corpus" / "heldout.txt", "\n".join(render(words) for words in heldout) + "\n")
    pairs = {t: make_pairs(t, config.n_pairs, seed=config.seed) for t in PAIR_TYPES}
    pairs["previous_token"] = copy_pairs(PROBE_POOL, config.n_pairs, seed=config.seed)
    pairs["induction"] = induction_pairs(PROBE_POOL, config.n_pairs, seed=config.seed)
    for t, rows in pairs.items():
        write_text(tmp / "pairs" / f"{t}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = make_tokenizer(max(128, config.seq_len))
    vocab = tokenizer.get_vocab()
    stream = token_stream(train, vocab)
    n_windows = len(stream) // config.seq_len
    heldout_stream = token_stream(heldout, vocab)
    n_held = min(len(heldout_stream) // config.seq_len, 64)
    return _Data(train, heldout, pairs, tokenizer, {t: encode_pairs(rows, tokenizer) for t, rows in pairs.items()},
                 len(stream), stream[: n_windows * config.seq_len].view(n_windows, config.seq_len),
                 heldout_stream[: n_held * config.seq_len].view(n_held, config.seq_len))


def _optimiser(model, config: ToyConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, betas=(0.9, 0.95), foreach=True,
    )


class _Checkpoints:
    """Saves the model at the schedule's steps into ``tmp/stepN`` with its accuracy and losses."""

    def __init__(self, tmp: Path, config: ToyConfig, data: _Data):
        self.tmp, self.config, self.data = tmp, config, data
        self.saved: list[Checkpoint] = []
        self.accuracy: dict[str, dict[str, float]] = {}
        self.loss: dict[str, dict[str, float | None]] = {}
        self.seconds = 0.0

    def save(self, model, step: int, train_loss: float | None) -> None:
        t = time.time()
        rev = f"step{step}"
        model.eval()
        self.accuracy[rev] = accuracy_table(model, self.data.encoded)
        held, held_loss = self.data.held_windows, None
        if len(held):
            with torch.no_grad():
                logits = model(input_ids=held).logits
                held_loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                              held[:, 1:].reshape(-1)).item()
        model.train()
        model.save_pretrained(self.tmp / rev)
        self.data.tokenizer.save_pretrained(self.tmp / rev)
        self.saved.append(Checkpoint(rev, step, step * self.config.tokens_per_step))
        self.loss[rev] = {"train": None if train_loss is None else round(train_loss, 4),
                          "heldout": None if held_loss is None else round(held_loss, 4)}
        self.seconds += time.time() - t


def _pretrain(model, config: ToyConfig, data: _Data, checkpoints: _Checkpoints, progress: bool) -> None:
    """AdamW on next-token prediction over shuffled windows (a fresh deterministic order each epoch)."""
    opt = _optimiser(model, config)
    data_gen = torch.Generator().manual_seed(config.seed)
    n_windows = len(data.windows)
    order, cursor = torch.randperm(n_windows, generator=data_gen), 0
    schedule = set(config.checkpoint_steps())
    model.train()
    checkpoints.save(model, 0, None)
    bar = Bar(total=config.steps, desc="toy pretraining", unit="step", disable=not progress, dynamic_ncols=True)
    running = None
    for step in range(config.steps):
        if cursor + config.batch_size > n_windows:  # next epoch
            order, cursor = torch.randperm(n_windows, generator=data_gen), 0
        batch = data.windows[order[cursor: cursor + config.batch_size]]  # [B, T]
        cursor += config.batch_size
        for group in opt.param_groups:
            group["lr"] = lr_at(step, config)
        logits = model(input_ids=batch).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        bar.update(1)
        if step + 1 in schedule:
            checkpoints.save(model, step + 1, loss.item())
            acc = checkpoints.accuracy[f"step{step + 1}"]
            bar.set_postfix(loss=f"{running:.3f}", acc=f"{min(acc.values()):.2f}-{max(acc.values()):.2f}")
    bar.close()


def _write_build(tmp: Path, config: ToyConfig, data: _Data, checkpoints: _Checkpoints, timing: dict) -> None:
    write_series_manifest(tmp, checkpoints.saved, family="toy", tokens_per_step=config.tokens_per_step,
                          toy_key=config.key())
    write_json(tmp / "build.json", {
        "config": config.model_dump(),
        "key": config.key(),
        "toy_version": TOY_VERSION,
        "tokens_per_step": config.tokens_per_step,
        "n_train_tokens": data.n_tokens,
        "epochs": round(config.steps * config.batch_size / len(data.windows), 3),
        "timing": timing,
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": config.threads,
                    "cpu_count": os.cpu_count()},
        "accuracy": checkpoints.accuracy,
        "loss": checkpoints.loss,
        "n_pairs": {t: len(r) for t, r in data.pairs.items()},
    })


def _publish(tmp: Path, out: Path, overwrite: bool) -> Path:
    """Rename the finished build to ``out`` (a concurrent builder that finished first wins)."""
    if out.exists():
        if not overwrite:  # a concurrent builder finished first: keep its result
            shutil.rmtree(tmp, ignore_errors=True)
            return out
        shutil.rmtree(out)
    try:
        os.rename(tmp, out)
    except OSError:
        if not out.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # lost a race: the other build is as good
    return out


def build_toy_world(out: str | Path, config: ToyConfig | None = None, progress: bool = True,
                    overwrite: bool = False) -> Path:
    """Build the toy world into ``out`` (see the module docstring); return ``out``.

    Built in a temporary sibling folder and renamed at the end. If ``out`` exists: with
    ``overwrite`` it is replaced, otherwise a :class:`FileExistsError` is raised before any
    work — unless it appeared *during* the build (a concurrent builder), in which case the
    finished build is discarded and ``out`` is kept.
    """
    from transformers.utils import logging as hf_logging  # lazy: start-up time (transformers: ~2 s)

    config = config or ToyConfig()
    out = Path(out).expanduser().absolute()
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another --out or pass overwrite=True (--force)")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    old_threads, hf_bars = torch.get_num_threads(), hf_logging.is_progress_bar_enabled()
    t_start = time.time()
    try:
        torch.set_num_threads(config.threads)
        hf_logging.disable_progress_bar()  # one progress bar: ours
        data = _make_data(config, tmp)
        timing = {"corpus_s": round(time.time() - t_start, 2)}
        torch.manual_seed(config.seed)
        model = make_model(config, len(data.tokenizer.get_vocab()))
        checkpoints = _Checkpoints(tmp, config, data)
        t_train = time.time()
        _pretrain(model, config, data, checkpoints, progress)
        timing["train_s"] = round(time.time() - t_train - checkpoints.seconds, 2)
        timing["checkpoints_s"] = round(checkpoints.seconds, 2)
        timing["total_s"] = round(time.time() - t_start, 2)
        _write_build(tmp, config, data, checkpoints, timing)
        return _publish(tmp, out, overwrite)
    finally:
        torch.set_num_threads(old_threads)
        if hf_bars:
            hf_logging.enable_progress_bar()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


CACHE_ENV = "CROSSTIME_CACHE"


def cache_root() -> Path:
    """Where built toy worlds are kept: ``$CROSSTIME_CACHE``, default ``~/.cache/crosstime``."""
    return Path(os.environ.get(CACHE_ENV, "~/.cache/crosstime")).expanduser()


def toy_world_path(config: ToyConfig | None = None) -> Path:
    """Where the toy world for ``config`` (default settings if None) is cached, built or not."""
    return cache_root() / "toy" / (config or ToyConfig()).key()


def toy_world_cached(config: ToyConfig | None = None) -> bool:
    """Whether the toy world for ``config`` is built in the cache (:func:`toy_world` would reuse it)."""
    return (toy_world_path(config) / "build.json").is_file()


def toy_world(config: ToyConfig | None = None, progress: bool = True) -> Path:
    """The toy world for ``config`` (default settings if None), built once and cached.

    Cached under ``$CROSSTIME_CACHE/toy/<key>`` (default ``~/.cache/crosstime``), where the
    key hashes the settings and :data:`TOY_VERSION`; a build says where on stderr. Safe with concurrent callers: a caller
    that finds a live build of the same world waits for it; callers that build anyway each
    build into their own temporary folder and the first rename wins.
    """
    config = config or ToyConfig()
    target = toy_world_path(config)
    # Another process on this machine is building the same world: wait for it rather than
    # spend the (shared) CPU twice. If it dies, build ourselves.
    while not (target / "build.json").is_file() and any(
        _builder_alive(t) for t in target.parent.glob(f".{target.name}.tmp-*")
    ):
        time.sleep(2.0)
    if (target / "build.json").is_file():
        return target
    print(f"building the toy world in {target} (once: about 2 min on 2 CPU cores, then reused; "
          f"set {CACHE_ENV} to build it elsewhere)", file=sys.stderr, flush=True)
    try:
        return build_toy_world(target, config, progress=progress)
    except FileExistsError:  # another process finished between our check and our build
        if (target / "build.json").is_file():
            return target
        raise


def read_build(root: str | Path) -> dict:
    """The ``build.json`` of a built toy world."""
    return json.loads((Path(root) / "build.json").read_text())


__all__ = [
    "ToyConfig", "build_toy_world", "toy_world", "make_tokenizer", "make_model", "agreement_correct",
    "accuracy_table", "encode_pairs", "pythia_schedule", "read_build", "TOY_VERSION", "render",
    "toy_world_cached", "toy_world_path",
]
