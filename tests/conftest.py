"""Shared test fixtures: tiny local checkpoint series built in seconds, no download."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests must never reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tests write only into temporary folders: the toy world they build (about 2 min, once) is cached
# under the system's temp folder, reused by later runs, never in the user's ~/.cache.
TEST_CACHE = Path(tempfile.gettempdir()) / f"crosstime-tests-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
os.environ.setdefault("CROSSTIME_CACHE", str(TEST_CACHE))
# and the libraries' own caches and logs (matplotlib's font cache, W&B's debug logs) go there too, not to ~
for _variable, _folder in (("MPLCONFIGDIR", "matplotlib"), ("WANDB_CACHE_DIR", "wandb/cache"),
                           ("WANDB_CONFIG_DIR", "wandb/config")):
    os.environ.setdefault(_variable, str(TEST_CACHE / _folder))
torch.set_num_threads(2)

WORDS = (
    "the a dog dogs cat cats man men child children is are was were runs run sleeps sleep "
    "near with of that who big small red old . , and"
).split()


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` random sentences of 3–12 of :data:`WORDS` (seeded)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A training text of 800 sentences in the tiny series' vocabulary."""
    path = tmp_path_factory.mktemp("corpus") / "train.txt"
    path.write_text("\n".join(sentences(800)) + "\n")
    return path


def make_word_tokenizer(words=WORDS):
    """A word-level ``PreTrainedTokenizerFast`` over ``words`` plus <pad>, <unk>, <bos>, <eos>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["<pad>", "<unk>", "<bos>", "<eos>", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>"
    )


def tiny_model(arch: str = "gpt_neox", vocab_size: int = 40, layers: int = 3, d: int = 32, seed: int = 0):
    """A tiny random causal LM of one of the four adapter families."""
    from transformers import (
        BloomConfig, BloomForCausalLM, GPT2Config, GPT2LMHeadModel,
        GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM,
    )

    torch.manual_seed(seed)
    if arch == "gpt_neox":
        cfg = GPTNeoXConfig(vocab_size=vocab_size, hidden_size=d, num_hidden_layers=layers, num_attention_heads=4,
                            intermediate_size=2 * d, max_position_embeddings=128, rotary_pct=0.25,
                            bos_token_id=2, eos_token_id=3, pad_token_id=0)
        return GPTNeoXForCausalLM(cfg).eval()
    if arch == "llama":
        cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=d, num_hidden_layers=layers, num_attention_heads=4,
                          intermediate_size=2 * d, max_position_embeddings=128, bos_token_id=2, eos_token_id=3, pad_token_id=0)
        return LlamaForCausalLM(cfg).eval()
    if arch == "bloom":
        cfg = BloomConfig(vocab_size=vocab_size, hidden_size=d, n_layer=layers, n_head=4, bos_token_id=2, eos_token_id=3, pad_token_id=0)
        return BloomForCausalLM(cfg).eval()
    if arch == "gpt2":
        cfg = GPT2Config(vocab_size=vocab_size, n_embd=d, n_layer=layers, n_head=4, n_positions=128,
                         bos_token_id=2, eos_token_id=3, pad_token_id=0)
        return GPT2LMHeadModel(cfg).eval()
    raise ValueError(arch)


def make_tiny_series(root: Path, steps=(0, 10, 100), arch: str = "gpt_neox", layers: int = 3, d: int = 32,
                     adjust=None) -> Path:
    """A local series of random tiny models (one seed per step), each saved with the tokenizer;
    ``adjust(model)``, if given, edits each model in place before it is saved."""
    from crosstime.checkpoints import Checkpoint, write_series_manifest

    tokenizer = make_word_tokenizer()
    ckpts = []
    for step in steps:
        model = tiny_model(arch, vocab_size=len(tokenizer), layers=layers, d=d, seed=step)
        if adjust is not None:
            with torch.no_grad():
                adjust(model)
        model.save_pretrained(root / f"step{step}")
        tokenizer.save_pretrained(root / f"step{step}")
        ckpts.append(Checkpoint(f"step{step}", step, step * 1000))
    write_series_manifest(root, ckpts)
    return root


@pytest.fixture(scope="session")
def tiny_series(tmp_path_factory) -> Path:
    """Three random tiny GPT-NeoX checkpoints (steps 0, 10, 100) as a local series."""
    return make_tiny_series(tmp_path_factory.mktemp("tiny_series"))


@pytest.fixture(scope="session")
def toy_world() -> Path:
    """The default toy world (a local series + corpus/ + pairs/ + build.json), built once and
    cached under $CROSSTIME_CACHE (for the tests: TEST_CACHE, in the temp folder) across test sessions."""
    from crosstime.toy import toy_world as build

    return build(progress=False)


@pytest.fixture(scope="session")
def demo_run(toy_world, tmp_path_factory):
    """The default `crosstime demo` (the run the docs quote; a few minutes on 2 cores), run once per
    session: tests/app/test_demo.py and tests/app/test_docs.py read it. Tests that re-run stages copy it first."""
    from crosstime.demo import DemoConfig, demo

    return demo(DemoConfig(run=tmp_path_factory.mktemp("demo") / "run", progress=False))
