"""A checkpoint's weight fingerprint: a cheap hash of a few fixed tensors.

Some public ``step*`` branches have served another checkpoint's weights under their name;
a store must never mix weights other than those it names. The harvest fingerprints every
checkpoint it loads, records it in the manifest (and in each chunk's sidecar), warns when
two revisions have identical fingerprints, and refuses to add chunks to a checkpoint whose
weights no longer match the fingerprint its chunks were computed with.

The fixed choice (changing it changes every fingerprint): in this order, each tensor's
name, shape and dtype, then its first values as float32 bytes:

- the token embedding's first :data:`EMBED_ROWS` rows;
- every parameter of the first and of the last decoder block, first :data:`PER_TENSOR` values each;
- every parameter of the final norm, whole.

Training moves all of these from step to step (the embedding and the norms included), so
two different checkpoints of one run differ here; identical fingerprints mean identical
weights in practice. A change confined to middle blocks is not seen (a cheap hash, not a
proof). ``model_dtype`` is part of the record beside it: the same weights loaded in
bfloat16 have another fingerprint.

Only torch and :mod:`crosstime.sites` are needed, so other layers (the scan) can use it;
it belongs on the ground floor (``crosstime/``) once they do.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from crosstime.sites import adapter_for

EMBED_ROWS = 16
PER_TENSOR = 4096


def _tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
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
    """A 16-hex-digit fingerprint of ``model``'s weights (see the module docstring for what is hashed)."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for label, values in _tensors(model):
            digest.update(label.encode())
            digest.update(values.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
