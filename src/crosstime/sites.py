"""Sites: the residual stream at the output of decoder block ``L``, read and written.

A *site* is the output of decoder block ``L`` (0-based), which Hugging Face exposes as
``hidden_states[L + 1]`` of ``output_hidden_states=True`` (for the last block HF applies
the final norm to ``hidden_states[-1]``; our site stays the raw block output there).

One small adapter per architecture family says where the blocks, the final norm and the
unembedding live; nothing else in crosstime branches on the model's architecture.

    read_site(model, input_ids, layer)            -> [B, T, d], forward stopped after block L
    with patch_site(model, layer, fn): model(...)  block L's output replaced by fn(output)
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from crosstime.errors import CrosstimeError


@dataclass(frozen=True)
class Adapter:
    """Where the parts of one architecture family live, as attribute paths from the model."""

    family: str
    blocks: str  # the ModuleList of decoder blocks
    final_norm: str  # the norm applied after the last block
    unembed: str  # the output projection to the vocabulary
    embed: str  # the token embedding

    def get(self, model: nn.Module, path: str) -> nn.Module:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part)
        return obj


# model_type (config.model_type) -> adapter. Add a family by adding a row.
ADAPTERS: dict[str, Adapter] = {
    "gpt_neox": Adapter("gpt_neox", "gpt_neox.layers", "gpt_neox.final_layer_norm", "lm_head", "gpt_neox.embed_in"),
    "llama": Adapter("llama", "model.layers", "model.norm", "lm_head", "model.embed_tokens"),
    "olmo": Adapter("llama", "model.layers", "model.norm", "lm_head", "model.embed_tokens"),
    "olmo2": Adapter("llama", "model.layers", "model.norm", "lm_head", "model.embed_tokens"),
    "mistral": Adapter("llama", "model.layers", "model.norm", "lm_head", "model.embed_tokens"),
    "qwen2": Adapter("llama", "model.layers", "model.norm", "lm_head", "model.embed_tokens"),
    "bloom": Adapter("bloom", "transformer.h", "transformer.ln_f", "lm_head", "transformer.word_embeddings"),
    "gpt2": Adapter("gpt2", "transformer.h", "transformer.ln_f", "lm_head", "transformer.wte"),
}


class UnsupportedArchitecture(CrosstimeError):
    pass


class LayerOutOfRange(CrosstimeError):
    pass


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter for ``model``, chosen by ``model.config.model_type``."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ADAPTERS:
        raise UnsupportedArchitecture(
            f"crosstime has no site adapter for model_type={model_type!r}; "
            f"supported: {', '.join(sorted(ADAPTERS))}. Add a row to crosstime.sites.ADAPTERS."
        )
    return ADAPTERS[model_type]


def blocks(model: nn.Module) -> nn.ModuleList:
    adapter = adapter_for(model)
    return adapter.get(model, adapter.blocks)


def n_layers(model: nn.Module) -> int:
    return len(blocks(model))


def check_layer(model: nn.Module, layer: int) -> None:
    """Raise a clear error when ``layer`` is not a block index of ``model``."""
    depth = n_layers(model)
    if not isinstance(layer, int) or not 0 <= layer < depth:
        raise LayerOutOfRange(
            f"layer {layer} is out of range: this model has {depth} decoder blocks, "
            f"so --layer must be in 0..{depth - 1} (block L's output = hidden_states[L+1])."
        )


def final_norm(model: nn.Module) -> nn.Module:
    adapter = adapter_for(model)
    return adapter.get(model, adapter.final_norm)


def unembedding(model: nn.Module) -> nn.Module:
    adapter = adapter_for(model)
    return adapter.get(model, adapter.unembed)


def _hidden(output: torch.Tensor | tuple) -> torch.Tensor:
    """Blocks return a tensor (most families in transformers 5) or a tuple whose first item is it."""
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output: torch.Tensor | tuple, hidden: torch.Tensor) -> torch.Tensor | tuple:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class _StopForward(Exception):
    def __init__(self, value: torch.Tensor):
        self.value = value


def read_site(
    model: nn.Module,
    input_ids: torch.Tensor,
    layer: int,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Block ``layer``'s output ``[B, T, d]``; the forward pass stops right after that block.

    No compute is spent on later blocks, the final norm or the unembedding.
    """
    check_layer(model, layer)

    def stop(_module, _args, output):
        raise _StopForward(_hidden(output))

    handle = blocks(model)[layer].register_forward_hook(stop)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward as stopped:
        return stopped.value
    finally:
        handle.remove()
    raise RuntimeError(f"block {layer} was never called during the forward pass")  # pragma: no cover


@contextlib.contextmanager
def patch_site(
    model: nn.Module, layer: int, fn: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Within the block, block ``layer``'s output ``h [B, T, d]`` is replaced by ``fn(h)``.

    ``fn`` may be differentiable (attribution takes gradients through it).
    """
    check_layer(model, layer)

    def replace(_module, _args, output):
        hidden = _hidden(output)
        new = fn(hidden)
        if new.shape != hidden.shape:
            raise ValueError(f"site replacement has shape {tuple(new.shape)}, expected {tuple(hidden.shape)}")
        return _with_hidden(output, new.to(hidden.dtype))

    handle = blocks(model)[layer].register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()


# -- weights fingerprint -------------------------------------------------------------------------
# A checkpoint's weight fingerprint: a cheap hash of a few fixed tensors. Some public ``step*``
# branches have served another checkpoint's weights under their name; the scan and the harvest
# fingerprint every checkpoint they load, record it, and warn when two revisions are identical
# (the harvest also refuses a checkpoint whose weights changed under its chunks).
#
# The fixed choice (changing it changes every fingerprint): in this order, each tensor's name,
# shape and dtype, then its first values as float32 bytes: the token embedding's first
# EMBED_ROWS rows; every parameter of the first and of the last decoder block, first PER_TENSOR
# values each; every parameter of the final norm, whole. Training moves all of these from step to
# step, so two checkpoints of one run differ here; identical fingerprints mean identical weights in
# practice. A change confined to middle blocks is not seen (a cheap hash, not a proof). The same
# weights loaded in bfloat16 have another fingerprint.

EMBED_ROWS = 16
PER_TENSOR = 4096


def _fingerprinted(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The fixed parts of ``model`` a fingerprint hashes: ``(label with shape and dtype, values)``."""
    adapter = adapter_for(model)
    embed = adapter.get(model, adapter.embed).weight
    blocks = adapter.get(model, adapter.blocks)
    parts = [("embed", embed, embed[:EMBED_ROWS])]
    for label, block in (("first_block", blocks[0]), ("last_block", blocks[len(blocks) - 1])):
        parts += [(f"{label}.{name}", p, p.reshape(-1)[:PER_TENSOR]) for name, p in block.named_parameters()]
    norm = adapter.get(model, adapter.final_norm)
    parts += [(f"final_norm.{name}", p, p) for name, p in norm.named_parameters()]
    return [(f"{name} {tuple(full.shape)} {full.dtype}", part) for name, full, part in parts]


def weights_fingerprint(model: nn.Module) -> str:
    """A 16-hex-digit fingerprint of ``model``'s weights (see the comment above for what is hashed)."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for label, values in _fingerprinted(model):
            digest.update(label.encode())
            digest.update(values.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
