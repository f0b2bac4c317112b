"""The local transformers chat backend on a tiny model saved in the test (nothing downloaded)."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from crosstime.interpret.backends import LLMError, TransformersChat
from crosstime.interpret.cache import ReplyCache
from crosstime.interpret.llm import LLMClient

WORDS = ["<unk>", "<pad>", "<eos>", "system", "user", "assistant", ":", "hello", "explain", "the", "cat", "[EXPLANATION]"]
TEMPLATE = "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}{% if add_generation_prompt %}assistant :{% endif %}"


def save_tiny_chat_model(folder, chat_template=TEMPLATE, n_positions=64):
    vocab = {word: i for i, word in enumerate(WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(WORDS), n_positions=n_positions, n_embd=16, n_layer=1, n_head=2,
                                      bos_token_id=2, eos_token_id=2)).save_pretrained(folder)
    return folder


def test_local_chat_model_replies_and_counts_tokens(tmp_path):
    backend = TransformersChat(save_tiny_chat_model(tmp_path / "model"))
    messages = [{"role": "system", "content": "explain"}, {"role": "user", "content": "hello the cat"}]
    reply = backend.complete(messages, {"max_tokens": 5, "temperature": 0.0})
    # the template by hand: "system : explain user : hello the cat assistant :" is 10 words of the vocabulary
    assert reply.prompt_tokens == 10 and 1 <= reply.completion_tokens <= 5
    assert reply.model == backend.model_id and backend.model_id.startswith("transformers:")
    assert set(reply.text.split()) <= set(WORDS)
    assert backend.complete(messages, {"max_tokens": 5, "temperature": 0.0}) == reply  # greedy: the same reply


def test_local_chat_model_through_the_cache(tmp_path):
    backend = TransformersChat(save_tiny_chat_model(tmp_path / "model"))
    client = LLMClient(backend, ReplyCache(tmp_path / "cache"), concurrency=2)
    requests = [([{"role": "user", "content": word}], {"max_tokens": 3, "temperature": 0.0}) for word in ("hello", "cat")]
    first = client.complete_all(requests)
    assert client.complete_all(requests) == first and client.stats == {"cached": 2, "sent": 2, "retries": 0}


def test_a_model_without_chat_template_is_refused(tmp_path):
    folder = save_tiny_chat_model(tmp_path / "model", chat_template=None)
    with pytest.raises(LLMError, match="no chat template"):
        TransformersChat(folder)
    with pytest.raises(LLMError, match="not a saved transformers model"):
        TransformersChat(tmp_path / "nothing")
